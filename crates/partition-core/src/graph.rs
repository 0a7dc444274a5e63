//! The model as a solver sees it: a DAG of nodes, each with an output size and two costs.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

use crate::error::GraphError;

/// What a solver needs to know about a model's structure.
///
/// Nodes are numbered `0..node_count()` in topological order: every input of node `i` has an
/// index below `i`. Node 0 is usually the raw input. `models::Net` implements this trait, and so
/// does [`Graph`].
pub trait LayerGraph {
    /// Number of nodes.
    fn node_count(&self) -> usize;
    /// The node's id (torchvision module path, or `input`).
    fn node_id(&self, node: usize) -> &str;
    /// The indices of the node's inputs, each below `node`.
    fn node_inputs(&self, node: usize) -> &[usize];
    /// Size of the node's output tensor in bytes.
    fn out_bytes(&self, node: usize) -> u64;
}

/// One node as written in graph JSON or built by hand, before validation.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    /// Unique id.
    pub id: String,
    /// Ids of the nodes whose outputs this node consumes.
    pub inputs: Vec<String>,
    /// Time to run the node on the edge, in ms.
    pub edge_ms: f64,
    /// Time to run the node on the cloud, in ms (before the load factor).
    pub cloud_ms: f64,
    /// Size of the node's output in bytes, unencoded (raw f32).
    pub out_bytes: f64,
    /// Encodings the output may travel in instead of raw, if it crosses the link; empty when
    /// it always travels raw.
    pub encodings: Vec<Encoding>,
}

/// One way to send a node's output up encoded instead of raw: its size on the wire and the
/// time each side spends on the codec.
///
/// A crossing tensor travels in whichever of raw and its encodings costs the least under the
/// objective (see [`Breakdown`](crate::Breakdown)); raw is always available and is called
/// `raw`, so no encoding may take that name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Encoding {
    /// The codec's name, unique within its node (for example `int8+lz4`).
    pub name: String,
    /// Size of the encoded tensor in bytes.
    pub bytes: u64,
    /// Time to encode on the edge, in ms.
    pub edge_ms: f64,
    /// Time to decode on the cloud, in ms (not scaled by the cloud's load factor).
    pub cloud_ms: f64,
}

/// A validated model graph with per-node costs, stored in topological order.
///
/// It has exactly one source (the raw input, which always runs on the edge) and exactly one
/// sink (the model's output). Every number is finite and non-negative.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    name: String,
    ids: Vec<String>,
    inputs: Vec<Vec<usize>>,
    consumers: Vec<Vec<usize>>,
    out_bytes: Vec<u64>,
    edge_ms: Vec<f64>,
    cloud_ms: Vec<f64>,
    encodings: Vec<Vec<Encoding>>,
}

/// Largest byte count that an `f64` holds exactly (2^53).
const MAX_EXACT_BYTES: u64 = 1 << 53;

/// The name of the implicit choice to send a tensor unencoded.
const RAW: &str = "raw";

/// Largest per-node time accepted (about 11.6 days), so that no sum of costs overflows.
pub const MAX_NODE_MS: f64 = 1e9;

impl Graph {
    /// Validates `nodes` (given in any order) and stores them in topological order.
    ///
    /// Rejects duplicate ids, unknown or repeated inputs, cycles, a source or sink count other
    /// than one, negative or non-finite numbers, and encodings that are unnamed, named twice
    /// or named `raw`, each with an error that names the node.
    pub fn new(name: impl Into<String>, nodes: Vec<NodeSpec>) -> Result<Graph, GraphError> {
        if nodes.is_empty() {
            return Err(GraphError::Empty);
        }
        let mut position = HashMap::with_capacity(nodes.len());
        for (i, node) in nodes.iter().enumerate() {
            if position.insert(node.id.as_str(), i).is_some() {
                return Err(GraphError::DuplicateId(node.id.clone()));
            }
            check_ms(&node.id, "edge_ms", node.edge_ms)?;
            check_ms(&node.id, "cloud_ms", node.cloud_ms)?;
            if whole_bytes(node.out_bytes).is_none() {
                return Err(GraphError::BadNumber {
                    node: node.id.clone(),
                    field: "out_bytes",
                    value: node.out_bytes,
                    hint: BYTES_HINT,
                });
            }
            check_encodings(&node.id, &node.encodings)?;
        }
        let mut inputs = Vec::with_capacity(nodes.len());
        for node in &nodes {
            let mut resolved = Vec::with_capacity(node.inputs.len());
            for input in &node.inputs {
                let &p = position
                    .get(input.as_str())
                    .ok_or_else(|| GraphError::UnknownInput {
                        node: node.id.clone(),
                        input: input.clone(),
                    })?;
                if resolved.contains(&p) {
                    return Err(GraphError::RepeatedInput {
                        node: node.id.clone(),
                        input: input.clone(),
                    });
                }
                resolved.push(p);
            }
            inputs.push(resolved);
        }
        let order = topological_order(&nodes, &inputs)?;
        let mut rank = vec![0; nodes.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r;
        }
        let graph = Graph {
            name: name.into(),
            ids: order.iter().map(|&i| nodes[i].id.clone()).collect(),
            inputs: order
                .iter()
                .map(|&i| inputs[i].iter().map(|&p| rank[p]).collect())
                .collect(),
            consumers: Vec::new(),
            out_bytes: order.iter().map(|&i| nodes[i].out_bytes as u64).collect(),
            edge_ms: order.iter().map(|&i| nodes[i].edge_ms).collect(),
            cloud_ms: order.iter().map(|&i| nodes[i].cloud_ms).collect(),
            encodings: order.iter().map(|&i| nodes[i].encodings.clone()).collect(),
        };
        graph.with_consumers().checked_ends()
    }

    /// Builds a graph from any [`LayerGraph`] and per-node costs (indexed like the layer graph).
    pub fn from_layer_graph(
        name: impl Into<String>,
        layers: &impl LayerGraph,
        edge_ms: &[f64],
        cloud_ms: &[f64],
    ) -> Result<Graph, GraphError> {
        let n = layers.node_count();
        for (what, got) in [("edge_ms", edge_ms.len()), ("cloud_ms", cloud_ms.len())] {
            if got != n {
                return Err(GraphError::CostLength {
                    what,
                    got,
                    expected: n,
                });
            }
        }
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let mut inputs = Vec::new();
            for &p in layers.node_inputs(i) {
                if p >= i {
                    return Err(GraphError::NotTopological {
                        index: i,
                        node: layers.node_id(i).to_string(),
                        input: p,
                    });
                }
                inputs.push(layers.node_id(p).to_string());
            }
            nodes.push(NodeSpec {
                id: layers.node_id(i).to_string(),
                inputs,
                edge_ms: edge_ms[i],
                cloud_ms: cloud_ms[i],
                out_bytes: layers.out_bytes(i) as f64,
                encodings: Vec::new(),
            });
        }
        Graph::new(name, nodes)
    }

    fn with_consumers(mut self) -> Graph {
        let mut consumers = vec![Vec::new(); self.ids.len()];
        for (v, ins) in self.inputs.iter().enumerate() {
            for &u in ins {
                consumers[u].push(v);
            }
        }
        self.consumers = consumers;
        self
    }

    fn checked_ends(self) -> Result<Graph, GraphError> {
        let sources: Vec<&str> = (0..self.len())
            .filter(|&v| self.inputs[v].is_empty())
            .map(|v| self.id(v))
            .collect();
        if sources.len() != 1 {
            return Err(GraphError::SourceCount {
                count: sources.len(),
                ids: sources.join(", "),
            });
        }
        let sinks: Vec<&str> = (0..self.len())
            .filter(|&v| self.consumers[v].is_empty())
            .map(|v| self.id(v))
            .collect();
        if sinks.len() != 1 {
            return Err(GraphError::SinkCount {
                count: sinks.len(),
                ids: sinks.join(", "),
            });
        }
        Ok(self)
    }

    /// The graph's name (free text; shipped examples say where their costs came from).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Always false: a valid graph has at least its input node.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The node's id.
    pub fn id(&self, node: usize) -> &str {
        &self.ids[node]
    }

    /// The position of the node with this id, if there is one.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.ids.iter().position(|x| x == id)
    }

    /// Inputs of `node`, all with lower indices.
    pub fn inputs(&self, node: usize) -> &[usize] {
        &self.inputs[node]
    }

    /// Consumers of `node`, all with higher indices.
    pub fn consumers(&self, node: usize) -> &[usize] {
        &self.consumers[node]
    }

    /// Size of the node's output tensor in bytes.
    pub fn out_bytes(&self, node: usize) -> u64 {
        self.out_bytes[node]
    }

    /// The encodings the node's output may travel in besides raw, as given.
    pub fn encodings(&self, node: usize) -> &[Encoding] {
        &self.encodings[node]
    }

    /// The name of a way to send the node's output: `raw` for `None`, else the name of that
    /// entry of [`Graph::encodings`] (as in [`Transfer::encoding`](crate::Transfer)).
    pub fn encoding_name(&self, node: usize, encoding: Option<usize>) -> &str {
        encoding.map_or(RAW, |i| &self.encodings[node][i].name)
    }

    /// Time to run the node on the edge, in ms.
    pub fn edge_ms(&self, node: usize) -> f64 {
        self.edge_ms[node]
    }

    /// Time to run the node on the cloud, in ms, before the load factor.
    pub fn cloud_ms(&self, node: usize) -> f64 {
        self.cloud_ms[node]
    }

    /// The raw input: the one node without inputs. It is always index 0.
    pub fn source(&self) -> usize {
        0
    }

    /// The model's output: the one node that nothing consumes. It is always the last index.
    pub fn sink(&self) -> usize {
        self.len() - 1
    }

    /// True when the nodes form one path: no node has more than one input or consumer.
    pub fn is_chain(&self) -> bool {
        self.branching_node().is_none()
    }

    /// The first node with more than one input or consumer, if any.
    pub fn branching_node(&self) -> Option<usize> {
        (0..self.len()).find(|&v| self.inputs[v].len() > 1 || self.consumers[v].len() > 1)
    }

    /// The same graph with every edge cost, encoding times included, multiplied by `factor`: an
    /// edge device that many times slower (or, below 1, faster). The factor must be finite and
    /// positive, and the scaled costs must stay within [`MAX_NODE_MS`].
    pub fn with_edge_scaled(&self, factor: f64) -> Result<Graph, GraphError> {
        let scale = |ms: &mut f64| {
            *ms *= factor;
            factor.is_finite() && factor > 0.0 && ms.is_finite() && *ms <= MAX_NODE_MS
        };
        let hint = " after scaling; use a finite, positive scale factor";
        let mut scaled = self.clone();
        for v in 0..scaled.len() {
            if !scale(&mut scaled.edge_ms[v]) {
                return Err(GraphError::BadNumber {
                    node: self.ids[v].clone(),
                    field: "edge_ms",
                    value: scaled.edge_ms[v],
                    hint,
                });
            }
            for (index, e) in scaled.encodings[v].iter_mut().enumerate() {
                if !scale(&mut e.edge_ms) {
                    return Err(GraphError::BadEncodingNumber {
                        node: self.ids[v].clone(),
                        index,
                        field: "edge_ms",
                        value: e.edge_ms,
                        hint,
                    });
                }
            }
        }
        Ok(scaled)
    }

    /// The same graph with other cloud costs: `cloud_ms` gives each node's time by id (a cloud
    /// that measured itself). Every node must have a finite time in `[0, MAX_NODE_MS]`; the
    /// error names the first that has none or a bad one.
    pub fn with_cloud_costs(
        &self,
        cloud_ms: impl Fn(&str) -> Option<f64>,
    ) -> Result<Graph, GraphError> {
        let mut priced = self.clone();
        for v in 0..priced.len() {
            let id = &self.ids[v];
            let ms = cloud_ms(id).ok_or_else(|| GraphError::BadNumber {
                node: id.clone(),
                field: "cloud_ms",
                value: f64::NAN,
                hint: " (no cloud cost was given for this node)",
            })?;
            if !(ms.is_finite() && (0.0..=MAX_NODE_MS).contains(&ms)) {
                return Err(GraphError::BadNumber {
                    node: id.clone(),
                    field: "cloud_ms",
                    value: ms,
                    hint: "",
                });
            }
            priced.cloud_ms[v] = ms;
        }
        Ok(priced)
    }

    /// The same graph with other encodings: one list per node, in topological order (the
    /// order of [`Graph::node_specs`]). Use it to swap in fresh codec estimates without
    /// validating the structure again. The lists are checked as [`Graph::new`] checks them.
    pub fn with_encodings(&self, encodings: Vec<Vec<Encoding>>) -> Result<Graph, GraphError> {
        if encodings.len() != self.len() {
            return Err(GraphError::CostLength {
                what: "encodings",
                got: encodings.len(),
                expected: self.len(),
            });
        }
        for (id, list) in self.ids.iter().zip(&encodings) {
            check_encodings(id, list)?;
        }
        Ok(Graph {
            encodings,
            ..self.clone()
        })
    }

    /// The nodes as [`NodeSpec`]s, in topological order.
    pub fn node_specs(&self) -> Vec<NodeSpec> {
        (0..self.len())
            .map(|v| NodeSpec {
                id: self.ids[v].clone(),
                inputs: self.inputs[v]
                    .iter()
                    .map(|&u| self.ids[u].clone())
                    .collect(),
                edge_ms: self.edge_ms[v],
                cloud_ms: self.cloud_ms[v],
                out_bytes: self.out_bytes[v] as f64,
                encodings: self.encodings[v].clone(),
            })
            .collect()
    }
}

impl LayerGraph for Graph {
    fn node_count(&self) -> usize {
        self.len()
    }
    fn node_id(&self, node: usize) -> &str {
        self.id(node)
    }
    fn node_inputs(&self, node: usize) -> &[usize] {
        self.inputs(node)
    }
    fn out_bytes(&self, node: usize) -> u64 {
        Graph::out_bytes(self, node)
    }
}

/// What a byte count must be, for error messages.
pub(crate) const BYTES_HINT: &str = ", a whole number of bytes up to 2^53";

/// What a time must be, for error messages.
const MS_HINT: &str = " and at most 1e9 ms";

/// `value` as a byte count: a whole number in [0, 2^53], which an `f64` holds exactly.
pub(crate) fn whole_bytes(value: f64) -> Option<u64> {
    let whole = value >= 0.0 && value.fract() == 0.0 && value <= MAX_EXACT_BYTES as f64;
    whole.then_some(value as u64)
}

fn valid_ms(value: f64) -> bool {
    (0.0..=MAX_NODE_MS).contains(&value)
}

fn check_ms(node: &str, field: &'static str, value: f64) -> Result<(), GraphError> {
    if valid_ms(value) {
        Ok(())
    } else {
        Err(GraphError::BadNumber {
            node: node.to_string(),
            field,
            value,
            hint: MS_HINT,
        })
    }
}

/// Checks a node's encodings: each named (not `raw`, not twice), with a byte count that an
/// `f64` holds exactly and times within [0, [`MAX_NODE_MS`]].
fn check_encodings(node: &str, encodings: &[Encoding]) -> Result<(), GraphError> {
    for (index, e) in encodings.iter().enumerate() {
        let fix = if e.name.is_empty() {
            Some("give every encoding a non-empty name")
        } else if e.name == RAW {
            Some("`raw` is reserved for sending the tensor unencoded; pick another name")
        } else if encodings[..index].iter().any(|other| other.name == e.name) {
            Some("each name may appear once per node")
        } else {
            None
        };
        if let Some(fix) = fix {
            return Err(GraphError::BadEncodingName {
                node: node.to_string(),
                index,
                name: e.name.clone(),
                fix,
            });
        }
        let bad = |field, value, hint| GraphError::BadEncodingNumber {
            node: node.to_string(),
            index,
            field,
            value,
            hint,
        };
        if e.bytes > MAX_EXACT_BYTES {
            return Err(bad("bytes", e.bytes as f64, BYTES_HINT));
        }
        for (field, value) in [("edge_ms", e.edge_ms), ("cloud_ms", e.cloud_ms)] {
            if !valid_ms(value) {
                return Err(bad(field, value, MS_HINT));
            }
        }
    }
    Ok(())
}

/// Kahn's algorithm. Ready nodes are taken in the order they were given, so a file that is
/// already topologically sorted keeps its order.
fn topological_order(nodes: &[NodeSpec], inputs: &[Vec<usize>]) -> Result<Vec<usize>, GraphError> {
    let n = nodes.len();
    let mut pending: Vec<usize> = inputs.iter().map(Vec::len).collect();
    let mut consumers = vec![Vec::new(); n];
    for (v, ins) in inputs.iter().enumerate() {
        for &u in ins {
            consumers[u].push(v);
        }
    }
    let mut ready: VecDeque<usize> = (0..n).filter(|&v| pending[v] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(u) = ready.pop_front() {
        order.push(u);
        for &w in &consumers[u] {
            pending[w] -= 1;
            if pending[w] == 0 {
                ready.push_back(w);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Some node is still waiting. Walk back along inputs that are still waiting too: every
    // such node has one, so the walk must revisit a node, and that node lies on a cycle.
    let mut seen = vec![false; n];
    let mut v = (0..n).find(|&v| pending[v] > 0).unwrap_or(0);
    while !seen[v] {
        seen[v] = true;
        v = inputs[v]
            .iter()
            .copied()
            .find(|&u| pending[u] > 0)
            .unwrap_or(v);
    }
    Err(GraphError::Cycle(nodes[v].id.clone()))
}

#[cfg(test)]
mod tests {
    use super::Encoding;
    use crate::synthetic;

    #[test]
    fn scaling_the_edge_leaves_everything_else_alone() {
        let graph = synthetic::residual(3, 7);
        let codec = Encoding {
            name: "int8".into(),
            bytes: 1000,
            edge_ms: 0.25,
            cloud_ms: 0.5,
        };
        let graph = graph
            .with_encodings(vec![vec![codec]; graph.len()])
            .expect("valid encodings");
        let slow = graph.with_edge_scaled(10.0).expect("scales");
        for v in 0..graph.len() {
            assert_eq!(slow.edge_ms(v), 10.0 * graph.edge_ms(v));
            assert_eq!(slow.cloud_ms(v), graph.cloud_ms(v));
            assert_eq!(slow.out_bytes(v), graph.out_bytes(v));
            assert_eq!(slow.inputs(v), graph.inputs(v));
            let e = &slow.encodings(v)[0];
            assert_eq!((e.edge_ms, e.cloud_ms, e.bytes), (2.5, 0.5, 1000));
        }
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300] {
            assert!(graph.with_edge_scaled(bad).is_err(), "{bad}");
        }
    }
}
