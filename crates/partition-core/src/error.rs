//! Error types. Every variant names the node, flag or value at fault and says what would fix it.

use thiserror::Error;

/// A number as a person wants to read it: plain when ordinary, scientific when extreme.
pub fn readable(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude != 0.0 && !(1e-4..1e9).contains(&magnitude) {
        format!("{value:e}")
    } else {
        format!("{value}")
    }
}

/// A graph that cannot be used: malformed JSON, or a structure that breaks docs/DESIGN.md's rules.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GraphError {
    /// The text is not valid JSON, or a field has the wrong type.
    #[error("graph JSON is malformed: {0}")]
    Json(String),
    /// The graph has no nodes at all.
    #[error("the graph has no nodes; it needs at least the raw input node")]
    Empty,
    /// Two nodes share an id.
    #[error("node id `{0}` appears more than once; node ids must be unique")]
    DuplicateId(String),
    /// A node lists an input that is not a node of the graph.
    #[error("node `{node}` lists input `{input}`, which is not a node of the graph")]
    UnknownInput {
        /// The node whose input list is wrong.
        node: String,
        /// The missing input.
        input: String,
    },
    /// A node lists the same input twice.
    #[error("node `{node}` lists input `{input}` twice; list each input once")]
    RepeatedInput {
        /// The node whose input list is wrong.
        node: String,
        /// The repeated input.
        input: String,
    },
    /// The graph has a cycle; a model must be a DAG.
    #[error("node `{0}` lies on a cycle; a model graph must be acyclic")]
    Cycle(String),
    /// The graph does not have exactly one source (a node without inputs).
    #[error(
        "the graph has {count} sources ({ids}); it needs exactly one node without inputs, the raw input"
    )]
    SourceCount {
        /// How many sources there are.
        count: usize,
        /// Their ids, comma-separated.
        ids: String,
    },
    /// The graph does not have exactly one sink (a node that nothing consumes).
    #[error(
        "the graph has {count} sinks ({ids}); it needs exactly one node that nothing consumes, the model's output"
    )]
    SinkCount {
        /// How many sinks there are.
        count: usize,
        /// Their ids, comma-separated.
        ids: String,
    },
    /// A cost or size is negative, NaN or infinite, or a byte count is not a whole number.
    #[error("node `{node}` has {field} = {}; it must be a finite number ≥ 0{hint}", readable(*.value))]
    BadNumber {
        /// The node at fault.
        node: String,
        /// The field at fault (`edge_ms`, `cloud_ms` or `out_bytes`).
        field: &'static str,
        /// The value found.
        value: f64,
        /// Extra guidance, empty when there is none.
        hint: &'static str,
    },
    /// An encoding of a node's output has no name, a name used twice in the node, or the name
    /// `raw`, which stands for sending the tensor unencoded.
    #[error("node `{node}` has encodings[{index}] named `{name}`; {fix}")]
    BadEncodingName {
        /// The node at fault.
        node: String,
        /// The encoding's position in the node's list.
        index: usize,
        /// The name found.
        name: String,
        /// What would fix it.
        fix: &'static str,
    },
    /// An encoding's byte count or time is negative, non-finite or too large, or its byte count
    /// is not a whole number.
    #[error("node `{node}` has encodings[{index}].{field} = {}; it must be a finite number ≥ 0{hint}", readable(*.value))]
    BadEncodingNumber {
        /// The node at fault.
        node: String,
        /// The encoding's position in the node's list.
        index: usize,
        /// The field at fault (`bytes`, `edge_ms` or `cloud_ms`).
        field: &'static str,
        /// The value found.
        value: f64,
        /// Extra guidance, empty when there is none.
        hint: &'static str,
    },
    /// A `LayerGraph` implementation broke the trait's contract.
    #[error(
        "node {index} (`{node}`) takes input {input}, which does not come before it; a LayerGraph lists nodes in topological order"
    )]
    NotTopological {
        /// Position of the node in the layer graph.
        index: usize,
        /// Its id.
        node: String,
        /// The offending input position.
        input: usize,
    },
    /// Per-node cost or encoding lists do not match the graph's size.
    #[error("{what} has {got} entries but the graph has {expected} nodes; give one per node")]
    CostLength {
        /// Which vector is wrong.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The node count.
        expected: usize,
    },
}

/// Link, objective or load parameters that are out of range.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ScenarioError {
    /// A rate, time, power or factor is out of its range.
    #[error("{name} = {} is out of range: {expected}", readable(*.value))]
    OutOfRange {
        /// The parameter (named as the CLI flag names it, e.g. `uplink_mbps`).
        name: &'static str,
        /// The value given.
        value: f64,
        /// What is accepted.
        expected: &'static str,
    },
}

/// A plan that could not be produced.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SolveError {
    /// The chain solver was asked to solve a graph that branches.
    #[error(
        "node `{0}` branches (more than one input or consumer), so the graph is not a chain; use the mincut solver"
    )]
    NotAChain(String),
    /// The graph is too large for exhaustive enumeration.
    #[error(
        "exhaustive search handles at most {max} nodes and the graph has {nodes}; use mincut (exact on any DAG)"
    )]
    TooLargeForExhaustive {
        /// The graph's node count.
        nodes: usize,
        /// The limit.
        max: usize,
    },
    /// The DP's state space (3^live tensors) would be too large.
    #[error(
        "the dp solver would track {live} live tensors at node `{node}` ({states} states); use mincut, or dp only on narrower graphs"
    )]
    TooWideForDp {
        /// The node at which the frontier got too wide.
        node: String,
        /// Live tensors at that point.
        live: usize,
        /// States that would be needed.
        states: usize,
    },
    /// A fixed plan names a node that does not exist.
    #[error("cloud node `{0}` is not a node of the graph")]
    UnknownNode(String),
    /// A plan puts the raw input on the cloud.
    #[error("node `{0}` is the raw input; it always stays on the edge")]
    InputOnCloud(String),
    /// A plan sends a tensor from the cloud back to the edge, which the no-return model forbids.
    #[error(
        "node `{node}` is on the cloud but its consumer `{consumer}` is on the edge; add `{consumer}` to the cloud set (no tensor returns to the edge)"
    )]
    NotSuccessorClosed {
        /// The cloud node.
        node: String,
        /// Its consumer on the edge.
        consumer: String,
    },
    /// A placement vector does not match the graph's size.
    #[error("the placement covers {got} nodes but the graph has {expected}")]
    PlacementLength {
        /// Length given.
        got: usize,
        /// Node count.
        expected: usize,
    },
    /// The solver minimises sums of per-node costs and cannot minimise this objective.
    #[error(
        "the {solver} solver minimises a sum of per-layer costs, and the {objective} objective is not one; use auto, chain, mincut or exhaustive"
    )]
    ObjectiveNotSupported {
        /// The solver asked.
        solver: &'static str,
        /// The objective's name.
        objective: &'static str,
    },
    /// The hysteresis share is not in [0, 1).
    #[error("hysteresis min_saving = {0} is out of range: it must lie in [0, 1)")]
    BadHysteresis(f64),
}
