//! The predictor's errors. Each names the file, class or setting at fault and what to do.

use std::path::PathBuf;

use thiserror::Error;

/// Anything that can go wrong while profiling, training or predicting.
#[derive(Debug, Error)]
pub enum PredictorError {
    /// A file or directory could not be read or written.
    #[error("{action} `{path}`: {source}")]
    Io {
        /// What was being done (`cannot write`, ...).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A sweep CSV is malformed.
    #[error("sweep data `{path}`: {reason}")]
    BadData {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The CPU quota could not be applied; profiling stops rather than run unconstrained.
    #[error("cannot set a CPU quota of {quota}: {reason}")]
    Quota {
        /// The requested share of one CPU.
        quota: f64,
        /// Why, and what to do.
        reason: String,
    },
    /// A model (network) could not be built, loaded or run.
    #[error(transparent)]
    Model(#[from] models::ModelError),
    /// A regressor could not be fitted or evaluated.
    #[error("{class}: regression failed: {reason}")]
    Regression {
        /// The layer class.
        class: &'static str,
        /// smartcore's explanation.
        reason: String,
    },
    /// A profile file is not one this version can read.
    #[error("profile `{path}`: {reason}")]
    Profile {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The profile has no regressor for a layer class the network uses.
    #[error(
        "the profile `{profile}` has no model for {class} layers (node `{node}`); re-run the sweep including that class and train again"
    )]
    MissingClass {
        /// The profile's name.
        profile: String,
        /// The missing class.
        class: &'static str,
        /// A node that needs it.
        node: String,
    },
    /// A profile was given for the other side of the link.
    #[error(
        "the profile `{profile}` was trained for the {found}, but is given as the {wanted}'s; pass the {wanted}'s profile, or train this sweep again with `train --role {wanted}`"
    )]
    WrongRole {
        /// The profile's name.
        profile: String,
        /// Its role.
        found: &'static str,
        /// The role it was given for.
        wanted: &'static str,
    },
}

impl PredictorError {
    /// An IO error on `path`.
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        PredictorError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
