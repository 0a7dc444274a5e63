//! Model spec files: a network described as JSON, read by [`Net::from_spec`] and written by
//! [`Net::to_spec`].
//!
//! The format is graph JSON's node list with `kind` and hyper-parameters in place of costs, plus
//! the input shape per sample:
//!
//! ```json
//! { "name": "tiny",
//!   "input_shape": [3, 32, 32],
//!   "nodes": [
//!     {"id": "input",   "inputs": [],          "kind": "input"},
//!     {"id": "conv",    "inputs": ["input"],   "kind": "conv2d", "in_channels": 3,
//!      "out_channels": 8, "kernel_size": [3, 3], "padding": [1, 1]},
//!     {"id": "relu",    "inputs": ["conv"],    "kind": "relu"},
//!     {"id": "flatten", "inputs": ["relu"],    "kind": "flatten"},
//!     {"id": "fc",      "inputs": ["flatten"], "kind": "linear", "in_features": 8192,
//!      "out_features": 10}
//!   ] }
//! ```
//!
//! Nodes may come in any order; the one node of kind `input` must have the id `input`. Omitted
//! hyper-parameters take PyTorch's defaults; unknown fields are errors that name the node.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use partition_core::{Graph, NodeSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ModelError;
use crate::layer::{LayerKind, Shape};
use crate::net::{INPUT_ID, Net, NetBuilder};

/// A network description: the document a spec file holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetSpec {
    /// The network's name.
    pub name: String,
    /// Input shape per sample, without the batch dimension: `[C, H, W]` or `[F]`.
    pub input_shape: Shape,
    /// The nodes, in any order.
    pub nodes: Vec<SpecNode>,
}

/// One node of a [`NetSpec`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpecNode {
    /// Unique id (a torchvision module path for zoo models).
    pub id: String,
    /// Ids of the nodes this node consumes, in argument order.
    pub inputs: Vec<String>,
    /// Kind and hyper-parameters, written beside `id` and `inputs`.
    #[serde(flatten)]
    pub kind: LayerKind,
}

fn spec_err(message: impl Into<String>) -> ModelError {
    ModelError::Spec(message.into())
}

impl NetSpec {
    /// Parses spec JSON. Errors name the node and field at fault.
    pub fn from_json(text: &str) -> Result<NetSpec, ModelError> {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| spec_err(format!("not valid JSON: {e}")))?;
        let Value::Object(mut doc) = doc else {
            return Err(spec_err(
                "the top level must be an object with `name`, `input_shape` and `nodes`",
            ));
        };
        if let Some(key) = doc
            .keys()
            .find(|k| !["name", "input_shape", "nodes"].contains(&k.as_str()))
        {
            return Err(spec_err(format!(
                "unknown top-level field `{key}`; expected `name`, `input_shape` and `nodes`"
            )));
        }
        let name = match doc.remove("name") {
            None => String::new(),
            Some(Value::String(s)) => s,
            Some(_) => return Err(spec_err("`name` must be a string")),
        };
        let input_shape = doc
            .remove("input_shape")
            .ok_or_else(|| spec_err("missing `input_shape`, e.g. [3, 224, 224]"))?;
        let input_shape: Shape = serde_json::from_value(input_shape).map_err(|e| {
            spec_err(format!(
                "`input_shape` must be a list of positive integers: {e}"
            ))
        })?;
        let Some(Value::Array(nodes)) = doc.remove("nodes") else {
            return Err(spec_err("missing `nodes` array"));
        };
        let nodes = nodes
            .into_iter()
            .enumerate()
            .map(|(i, node)| parse_node(i, node))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NetSpec {
            name,
            input_shape,
            nodes,
        })
    }

    /// Writes the spec as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

fn parse_node(position: usize, node: Value) -> Result<SpecNode, ModelError> {
    let Value::Object(mut fields) = node else {
        return Err(spec_err(format!("node #{position} must be an object")));
    };
    let id = match fields.remove("id") {
        Some(Value::String(id)) => id,
        _ => return Err(spec_err(format!("node #{position} needs a string `id`"))),
    };
    let inputs = match fields.remove("inputs") {
        None => Vec::new(),
        Some(value) => serde_json::from_value(value)
            .map_err(|_| spec_err(format!("node `{id}`: `inputs` must be a list of node ids")))?,
    };
    let kind = LayerKind::deserialize(Value::Object(Map::from_iter(fields)))
        .map_err(|e| spec_err(format!("node `{id}`: {e}")))?;
    Ok(SpecNode { id, inputs, kind })
}

impl Net {
    /// Builds and checks a network from its spec: structure (unique ids, known inputs, no
    /// cycle, one input, one output), then every node's shapes in topological order.
    pub fn from_spec(spec: &NetSpec) -> Result<Net, ModelError> {
        let inputs_nodes: Vec<&str> = spec
            .nodes
            .iter()
            .filter(|n| n.kind == LayerKind::Input)
            .map(|n| n.id.as_str())
            .collect();
        if inputs_nodes != [INPUT_ID] {
            return Err(ModelError::InputNode(format!(
                "a spec needs exactly one node of kind `input` with id `{INPUT_ID}`; found {} ({})",
                inputs_nodes.len(),
                inputs_nodes.join(", ")
            )));
        }
        // partition-core validates the structure (unique ids, known inputs, no cycle, one
        // source and one sink) with errors that name the node.
        let structure: Vec<NodeSpec> = spec
            .nodes
            .iter()
            .map(|n| NodeSpec {
                id: n.id.clone(),
                inputs: n.inputs.clone(),
                edge_ms: 0.0,
                cloud_ms: 0.0,
                out_bytes: 0.0,
                encodings: Vec::new(),
            })
            .collect();
        let graph = Graph::new(spec.name.clone(), structure)?;
        if graph.id(graph.source()) != INPUT_ID {
            return Err(ModelError::InputNode(format!(
                "node `{}` has no inputs; only `{INPUT_ID}` may, and `{INPUT_ID}` itself must list none",
                graph.id(graph.source())
            )));
        }
        let mut builder = NetBuilder::new(spec.name.clone(), spec.input_shape.clone())?;
        let mut index = HashMap::new();
        for position in file_order_topological(spec) {
            let node = &spec.nodes[position];
            if node.kind == LayerKind::Input {
                index.insert(node.id.as_str(), builder.input());
                continue;
            }
            let inputs: Vec<usize> = node.inputs.iter().map(|id| index[id.as_str()]).collect();
            let added = builder.add(node.id.clone(), node.kind.clone(), &inputs)?;
            index.insert(node.id.as_str(), added);
        }
        builder.build()
    }

    /// Parses spec JSON and builds the network (see [`NetSpec::from_json`], [`Net::from_spec`]).
    pub fn from_spec_json(text: &str) -> Result<Net, ModelError> {
        Net::from_spec(&NetSpec::from_json(text)?)
    }

    /// Reads a spec JSON file (`cutpoint-edge graph --spec` output) and builds the network. The
    /// error names the file.
    pub fn from_spec_file(path: &std::path::Path) -> Result<Net, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|error| ModelError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Net::from_spec_json(&text).map_err(|e| {
            let reason = match e {
                ModelError::Spec(message) => message,
                other => other.to_string(),
            };
            ModelError::Spec(format!("{}: {reason}", path.display()))
        })
    }

    /// The network's spec, nodes in topological order. `Net::from_spec` gives it back unchanged.
    pub fn to_spec(&self) -> NetSpec {
        NetSpec {
            name: self.name().to_string(),
            input_shape: self.input_shape().to_vec(),
            nodes: self
                .nodes()
                .iter()
                .map(|node| SpecNode {
                    id: node.id().to_string(),
                    inputs: node
                        .inputs()
                        .iter()
                        .map(|&u| self.nodes()[u].id().to_string())
                        .collect(),
                    kind: node.spec().kind.clone(),
                })
                .collect(),
        }
    }

    /// The network as a partition graph with these per-node costs (indexed like the nodes).
    pub fn graph(&self, edge_ms: &[f64], cloud_ms: &[f64]) -> Result<Graph, ModelError> {
        Ok(Graph::from_layer_graph(
            self.name(),
            self,
            edge_ms,
            cloud_ms,
        )?)
    }

    /// Graph JSON (docs/DESIGN.md's format) with zero costs, as `cutpoint-edge graph` prints it.
    pub fn graph_json(&self) -> Result<String, ModelError> {
        let zeros = vec![0.0; self.len()];
        Ok(self.graph(&zeros, &zeros)?.to_json())
    }
}

/// A topological order of a structurally valid spec that keeps the file's order wherever it can:
/// of the nodes whose inputs are all placed, the one earliest in the file comes next. A file that
/// is already in topological order keeps its order exactly.
fn file_order_topological(spec: &NetSpec) -> Vec<usize> {
    let position: HashMap<&str, usize> = spec
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut pending: Vec<usize> = spec.nodes.iter().map(|n| n.inputs.len()).collect();
    let mut consumers = vec![Vec::new(); spec.nodes.len()];
    for (v, node) in spec.nodes.iter().enumerate() {
        for input in &node.inputs {
            if let Some(&u) = position.get(input.as_str()) {
                consumers[u].push(v);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..spec.nodes.len())
        .filter(|&v| pending[v] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(spec.nodes.len());
    while let Some(Reverse(u)) = ready.pop() {
        order.push(u);
        for &w in &consumers[u] {
            pending[w] -= 1;
            if pending[w] == 0 {
                ready.push(Reverse(w));
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo;

    const TINY: &str = r#"{ "name": "tiny", "input_shape": [3, 8, 8], "nodes": [
        {"id": "fc", "inputs": ["flatten"], "kind": "linear", "in_features": 512, "out_features": 10},
        {"id": "input", "inputs": [], "kind": "input"},
        {"id": "conv", "inputs": ["input"], "kind": "conv2d", "in_channels": 3,
         "out_channels": 8, "kernel_size": [3, 3], "padding": [1, 1]},
        {"id": "relu", "inputs": ["conv"], "kind": "relu"},
        {"id": "flatten", "inputs": ["relu"], "kind": "flatten"}
    ] }"#;

    #[test]
    fn a_spec_file_builds_and_its_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("models-spec-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = dir.join("tiny.json");
        std::fs::write(&good, TINY).expect("write");
        assert_eq!(Net::from_spec_file(&good).expect("builds").name(), "tiny");
        let bad = dir.join("bad.json");
        std::fs::write(&bad, "{").expect("write");
        let err = Net::from_spec_file(&bad).expect_err("not JSON").to_string();
        assert!(err.contains("bad.json"), "{err}");
        let err = Net::from_spec_file(&dir.join("absent.json")).expect_err("no file");
        assert!(err.to_string().contains("absent.json"), "{err}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn every_zoo_model_round_trips_unchanged() {
        for name in zoo::MODELS {
            let net = zoo::build(name).expect("zoo model");
            let json = net.to_spec().to_json();
            let back = Net::from_spec_json(&json).expect("spec reads back");
            assert!(back == net, "{name} changed in the round trip");
            assert_eq!(back.to_spec().to_json(), json, "{name}");
        }
    }

    #[test]
    fn any_order_and_pytorch_defaults() {
        let net = Net::from_spec_json(TINY).expect("valid spec");
        let ids: Vec<&str> = net.nodes().iter().map(|n| n.id()).collect();
        assert_eq!(ids, ["input", "conv", "relu", "flatten", "fc"]);
        let conv = &net.nodes()[1].spec().kind;
        assert!(matches!(
            conv,
            LayerKind::Conv2d {
                stride: [1, 1],
                groups: 1,
                bias: true,
                ..
            }
        ));
        assert_eq!(net.output_shape(), &[10]);
    }

    #[test]
    fn shape_mismatch_names_node_and_both_shapes() {
        let text = TINY.replace("512", "500");
        let err = Net::from_spec_json(&text).expect_err("mismatch");
        let msg = err.to_string();
        assert!(
            msg.contains("`fc`") && msg.contains("[512]") && msg.contains("[500]"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_field_and_kind_name_the_node() {
        let text = TINY.replace("\"padding\"", "\"paddin\"");
        let msg = Net::from_spec_json(&text).expect_err("typo").to_string();
        assert!(msg.contains("`conv`") && msg.contains("paddin"), "{msg}");
        let text = TINY.replace("\"relu\"}", "\"gelu\"}");
        let msg = Net::from_spec_json(&text).expect_err("kind").to_string();
        assert!(msg.contains("`relu`") && msg.contains("gelu"), "{msg}");
    }

    #[test]
    fn structural_errors() {
        let cycle = TINY.replace(r#""inputs": ["input"]"#, r#""inputs": ["relu"]"#);
        assert!(Net::from_spec_json(&cycle).is_err());
        let dangling = TINY.replace(r#"["conv"]"#, r#"["nope"]"#);
        let msg = Net::from_spec_json(&dangling)
            .expect_err("dangling")
            .to_string();
        assert!(msg.contains("nope"), "{msg}");
        let no_input = TINY.replace(r#""kind": "input""#, r#""kind": "relu""#);
        assert!(Net::from_spec_json(&no_input).is_err());
        assert!(Net::from_spec_json("[1, 2]").is_err());
        assert!(Net::from_spec_json(r#"{"input_shape": [3], "nodes": [], "x": 1}"#).is_err());
        let bad_shape = TINY.replace("[3, 8, 8]", "[3, -8, 8]");
        assert!(Net::from_spec_json(&bad_shape).is_err());
    }

    #[test]
    fn graph_json_has_zero_costs_and_sizes() {
        let net = zoo::build("lenet").expect("lenet");
        let graph = Graph::from_json(&net.graph_json().expect("graph json")).expect("parses");
        assert_eq!(graph.len(), net.len());
        assert_eq!(graph.out_bytes(0), 32 * 32 * 4);
        assert_eq!(graph.edge_ms(3), 0.0);
    }
}
