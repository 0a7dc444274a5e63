//! The crate's error type.

use models::ModelError;
use partition_core::{GraphError, ScenarioError, SolveError};
use predictor::PredictorError;
use thiserror::Error;
use transport::{ClientError, ErrorCode};

/// Everything that can stop a session or a server from doing what was asked.
///
/// Every variant names the model, node, setting or server at fault and says what to do. Faults
/// that local execution can absorb (an unreachable or busy cloud, a timeout) are not errors:
/// [`crate::EdgeSession::infer`] runs locally and reports them in
/// [`crate::Outcome::fallback`].
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// Building, loading or running a network failed.
    #[error(transparent)]
    Model(#[from] ModelError),

    /// A device profile could not predict the network's costs.
    #[error(transparent)]
    Predictor(#[from] PredictorError),

    /// A plan could not be made (an unknown node in a fixed split, a set that sends tensors
    /// back to the edge...).
    #[error("planning: {0}")]
    Solve(#[from] SolveError),

    /// The link, load or objective is out of range.
    #[error("planning: {0}")]
    Scenario(#[from] ScenarioError),

    /// A request's planning graph is invalid (a cost estimate out of range).
    #[error("planning: {0}")]
    Graph(#[from] GraphError),

    /// A setting is out of range.
    #[error("invalid setting `{name}`: {reason}")]
    Config {
        /// The setting.
        name: &'static str,
        /// Why, and what to use instead.
        reason: String,
    },

    /// The cost graph given to a session is not the network's.
    #[error(
        "the cost graph does not match network `{net}`: {reason}; build it from the same network (`Net::graph` or `DeviceProfile::predict_graph`)"
    )]
    GraphMismatch {
        /// The network's name.
        net: String,
        /// The first difference found.
        reason: String,
    },

    /// The input does not have the network's input shape.
    #[error(
        "the input has shape {got:?}, but network `{net}` takes [N, {expected}] (batch first); resize or reshape it"
    )]
    Input {
        /// The network's name.
        net: String,
        /// The per-sample input shape, written out.
        expected: String,
        /// The shape given.
        got: Vec<usize>,
    },

    /// A tensor could not be converted between the network and the wire.
    #[error("tensor {what}: {reason}")]
    Tensor {
        /// Which tensor.
        what: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Connecting to the cloud failed.
    #[error("cannot use the cloud at {server}: {error}")]
    Connect {
        /// `host:port`.
        server: String,
        /// What went wrong (part of the message rather than a `source`, so that reporters that
        /// print the chain do not repeat it).
        error: Box<ClientError>,
    },

    /// The cloud does not serve the session's model.
    #[error(
        "the cloud at {server} does not serve model `{model}` (it serves: {offered}); start `cutpoint-cloud serve` with `--model-spec` for this network"
    )]
    NotOffered {
        /// `host:port`.
        server: String,
        /// The model asked for.
        model: String,
        /// The models on offer, comma-separated.
        offered: String,
    },

    /// The cloud holds other weights for the model than the edge.
    #[error(
        "the cloud at {server} holds other weights for `{model}` than this edge (cloud {cloud_hash}, edge {edge_hash}); load the same weights on both sides (the same --weights file, or the same seed)"
    )]
    WeightsMismatch {
        /// `host:port`.
        server: String,
        /// The model.
        model: String,
        /// The edge's weights hash.
        edge_hash: String,
        /// The cloud's weights hash.
        cloud_hash: String,
    },

    /// The cloud refused the request for a reason that running locally would hide: the model,
    /// the weights or the request is wrong.
    #[error("the cloud refused the request ({code:?}): {message}")]
    Refused {
        /// The server's error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },

    /// The protocol failed in a way that is not a network fault (a reply that does not fit the
    /// request, an undecodable frame).
    #[error("cloud request failed: {0}")]
    Protocol(Box<ClientError>),

    /// The in-process loopback cloud could not start.
    #[error("cannot start the in-process cloud: {reason}")]
    LocalCloud {
        /// What failed (the certificate, the token or the loopback socket).
        reason: String,
    },

    /// A compute task stopped without a result (it panicked or the runtime is shutting down).
    #[error("a compute task did not finish: {0}")]
    Task(String),
    /// No cost graph is for a network, and no device profiles price it either.
    #[error(
        "no cost graph is for model `{model}` ({graphs}); give a cost graph whose \"name\" is `{model}` (`cutpoint-edge graph` output with costs), or an edge and a cloud device profile"
    )]
    NoCosts {
        /// The network's name.
        model: String,
        /// The graphs given and the models they are for, or that none was given.
        graphs: String,
    },

    /// An entry of a server list is not `HOST:PORT`.
    #[error(
        "`{entry}` is not HOST:PORT; give one server as HOST:PORT, or several separated by commas"
    )]
    NotHostPort {
        /// The entry.
        entry: String,
    },

    /// Two cost graphs are for the same network.
    #[error("{first} and {second} are both for model `{model}`; give one cost graph per model")]
    DuplicateCosts {
        /// The network's name.
        model: String,
        /// Where the first graph came from.
        first: String,
        /// Where the second graph came from.
        second: String,
    },

    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}; the system may be out of threads or memory")]
    AsyncRuntime(std::io::Error),

    /// An input file (a tensor or an image) cannot be used for the network.
    #[error("input file {}: {reason}", path.display())]
    InputFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it, and what to give instead.
        reason: String,
    },

    /// A tasks file cannot be read or has a line that is not a task.
    #[error("tasks file {}{}: {reason}", path.display(), line.map(|n| format!(":{n}")).unwrap_or_default())]
    TasksFile {
        /// The file.
        path: std::path::PathBuf,
        /// The line at fault (from 1), when one is.
        line: Option<usize>,
        /// What is wrong, and how a task is written.
        reason: String,
    },

    /// A task names a model the queue cannot run.
    #[error("task model `{model}`: {reason}")]
    TaskModel {
        /// The model named.
        model: String,
        /// Why it cannot run, and what to do.
        reason: String,
    },
}
