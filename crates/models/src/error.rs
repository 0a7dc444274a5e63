//! The crate's error type.

use partition_core::GraphError;
use thiserror::Error;

/// Everything that can go wrong while building, loading or running a network.
///
/// Every variant names the node, field or file at fault, and the message says what to change.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The node list is not a valid DAG (duplicate id, unknown input, cycle, several sources...).
    #[error("invalid network structure: {0}")]
    Graph(#[from] GraphError),

    /// A node has a different number of inputs than its kind takes.
    #[error(
        "node `{node}` ({kind}) takes {expected} input(s) but is given {got}; fix its `inputs` list"
    )]
    InputCount {
        /// The node's id.
        node: String,
        /// The node's kind.
        kind: &'static str,
        /// What the kind takes, in words ("1", "at least 2").
        expected: &'static str,
        /// How many inputs the node lists.
        got: usize,
    },

    /// An input tensor's shape does not fit the layer.
    #[error("node `{node}`: input shape {got:?} does not fit, expected {expected}; {hint}")]
    ShapeMismatch {
        /// The node's id.
        node: String,
        /// The shape the layer needs, in words or as a shape.
        expected: String,
        /// The shape the node was given (per sample, without the batch dimension).
        got: Vec<usize>,
        /// What to change.
        hint: &'static str,
    },

    /// A hyper-parameter is out of range.
    #[error("node `{node}`: `{field}` {reason}")]
    BadParameter {
        /// The node's id.
        node: String,
        /// The hyper-parameter.
        field: &'static str,
        /// Why the value is rejected.
        reason: String,
    },

    /// The `input` node is missing, repeated, or something other than `input` has no inputs.
    #[error("{0}")]
    InputNode(String),

    /// A spec file could not be parsed.
    #[error("model spec: {0}")]
    Spec(String),

    /// An id that no node of the network has.
    #[error(
        "no node `{0}` in this network; ids follow torchvision module paths (`graph --model M` lists them)"
    )]
    UnknownNode(String),

    /// A cloud node set that cannot be run as a plan.
    #[error("invalid cut: {0}")]
    InvalidCut(String),

    /// A node to run needs a tensor that neither the part nor the boundary provides.
    #[error(
        "node `{node}` needs the output of `{input}`, which is neither in the part being run nor among the tensors handed in"
    )]
    MissingBoundary {
        /// The node that cannot run.
        node: String,
        /// The missing input.
        input: String,
    },

    /// A tensor handed in does not have the shape its node produces.
    #[error("tensor for node `{node}` has shape {got:?}, expected {expected:?} (batch first)")]
    TensorShape {
        /// The node whose output the tensor stands for.
        node: String,
        /// The shape the network produces there (with the batch dimension given).
        expected: Vec<usize>,
        /// The shape handed in.
        got: Vec<usize>,
    },

    /// A host tensor's data length does not match its shape, or its rank is unsupported.
    #[error("tensor data: {0}")]
    TensorData(String),

    /// A weights set that does not fit the network.
    #[error(
        "weights do not fit network `{net}`: {details}; use weights exported from the same architecture (scripts/export_torchvision.py)"
    )]
    Weights {
        /// The network's name.
        net: String,
        /// The missing keys, unexpected keys and shape mismatches, `; `-separated.
        details: String,
    },

    /// A file could not be read or written.
    ///
    /// The I/O error is part of the message rather than a `source`, so that error reporters that
    /// print the chain do not repeat it.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },

    /// A file's contents are not in the expected format (`.npy`, safetensors, image).
    #[error("{what}: {message}")]
    Format {
        /// The format, and the file where known.
        what: String,
        /// What is wrong and what to do.
        message: String,
    },

    /// The backend could not read a tensor back.
    #[error("backend error: {0}")]
    Backend(String),

    /// An unknown zoo model or backend name.
    #[error("unknown {what} `{name}`; choose one of: {choices}")]
    UnknownName {
        /// "model" or "backend".
        what: &'static str,
        /// The name given.
        name: String,
        /// The names that exist.
        choices: String,
    },

    /// The caller stopped the run between two nodes (nobody waits for its result any more).
    #[error("the run was stopped after node `{after}`: nobody waits for its result any more")]
    Stopped {
        /// The last node that ran.
        after: String,
    },
}
