//! What can go wrong in an experiment.

use runtime::RuntimeError;

/// Why an experiment could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The edge session, the in-process cloud or the quick profile failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),

    /// An experiment's setting is out of range.
    #[error("invalid {name}: {reason}")]
    Config {
        /// The setting.
        name: &'static str,
        /// Why, and what to use instead.
        reason: String,
    },

    /// A compute task stopped without a result (it panicked or the runtime is shutting down).
    #[error("a compute task did not finish: {0}")]
    Task(String),

    /// The UDP relay that adds the round-trip time could not start.
    #[error("the RTT relay could not start: {0}; check that loopback UDP ports are free")]
    Relay(String),

    /// Real shaping could not be set up or used (namespaces, tc, the CPU cgroup, or one of the
    /// processes that run in them).
    #[error(
        "real shaping: {step} failed: {reason}; it needs root, iproute2 and the cgroup-v1 cpu controller (or use the emulated mode)"
    )]
    Testbed {
        /// The step that failed.
        step: String,
        /// Why.
        reason: String,
    },

    /// The worker binary that runs real shaping's processes is not beside this program.
    #[error(
        "real shaping needs the worker binary cutpoint-lab-worker, which is not in {dir}; it is built beside cutpoint-edge: run `cargo build --release -p edge-cli` (or `cargo install --path crates/edge-cli`)"
    )]
    WorkerMissing {
        /// Where it was looked for.
        dir: String,
    },

    /// A grid cut's request fell back to the edge, so its time is not the cut's.
    #[error(
        "the sweep could not measure the cut {cut} at {uplink_mbps} Mbit/s on the cloud: the request fell back to the edge ({reason}); check the cloud and the link, then run the sweep again"
    )]
    CutFellBack {
        /// The cut.
        cut: String,
        /// The cell's uplink, Mbit/s.
        uplink_mbps: f64,
        /// Why the request fell back.
        reason: String,
    },

    /// A file or directory could not be read, or a result file or its directory could not be
    /// written.
    #[error("cannot {action} {path}: {reason}")]
    File {
        /// `read`, `create` (a directory) or `write` (a file).
        action: &'static str,
        /// The file or directory.
        path: String,
        /// Why.
        reason: String,
    },

    /// A directory of images holds none, or too many.
    #[error("{dir} holds {problem}")]
    Images {
        /// The directory.
        dir: String,
        /// What it holds, and what to give instead.
        problem: String,
    },

    /// A figure could not be drawn or written.
    #[error("cannot draw the figure {path}: {reason}")]
    Plot {
        /// The figure's file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Creates `dir` and its parents.
pub(crate) fn create_dir(dir: &std::path::Path) -> Result<(), LabError> {
    std::fs::create_dir_all(dir).map_err(|e| LabError::File {
        action: "create",
        path: dir.display().to_string(),
        reason: e.to_string(),
    })
}

/// Writes `text` to `path`.
pub(crate) fn write_file(path: &std::path::Path, text: &str) -> Result<(), LabError> {
    std::fs::write(path, text).map_err(|e| LabError::File {
        action: "write",
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Lets `?` lift the errors of the crates below the runtime as the runtime words them.
macro_rules! through_runtime {
    ($($error:ty),*) => {$(
        impl From<$error> for LabError {
            fn from(e: $error) -> LabError {
                LabError::Runtime(RuntimeError::from(e))
            }
        }
    )*};
}

through_runtime!(
    models::ModelError,
    predictor::PredictorError,
    partition_core::SolveError,
    partition_core::ScenarioError,
    partition_core::GraphError
);
