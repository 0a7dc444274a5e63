//! [`Net`]: a network as a DAG of named, shape-checked layers, and [`Cut`], a valid cloud set.

use std::collections::HashMap;

use partition_core::LayerGraph;

use crate::error::ModelError;
use crate::layer::{LayerKind, LayerSpec, Shape};

/// The id of every network's input node.
pub const INPUT_ID: &str = "input";

/// One node of a [`Net`].
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    id: String,
    inputs: Vec<usize>,
    spec: LayerSpec,
}

impl Node {
    /// The node's id: a torchvision module path, a functional op's name, or `input`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Indices of the nodes whose outputs this node consumes, in argument order.
    pub fn inputs(&self) -> &[usize] {
        &self.inputs
    }

    /// Kind, hyper-parameters, shapes and costs.
    pub fn spec(&self) -> &LayerSpec {
        &self.spec
    }
}

/// A network: named nodes in topological order, node 0 the input, the last node the output.
///
/// Every node's spec has been inferred and checked against its inputs' shapes, so a `Net` is
/// always consistent. Build one with [`NetBuilder`], from the zoo, or from a spec file.
#[derive(Debug, Clone, PartialEq)]
pub struct Net {
    name: String,
    nodes: Vec<Node>,
    consumers: Vec<Vec<usize>>,
    index: HashMap<String, usize>,
}

impl Net {
    /// The network's name (the zoo name, or the spec file's `name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of nodes, the input included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a network has at least its input node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The nodes in topological order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node at `index`, if there is one.
    pub fn node(&self, index: usize) -> Option<&Node> {
        self.nodes.get(index)
    }

    /// Indices of the nodes that consume `index`'s output (empty for the sink or a bad index).
    pub fn consumers(&self, index: usize) -> &[usize] {
        self.consumers.get(index).map_or(&[], Vec::as_slice)
    }

    /// The index of the node with this id.
    pub fn index_of(&self, id: &str) -> Result<usize, ModelError> {
        self.index
            .get(id)
            .copied()
            .ok_or_else(|| ModelError::UnknownNode(id.to_string()))
    }

    /// The input shape per sample, e.g. `[3, 224, 224]`.
    pub fn input_shape(&self) -> &[usize] {
        &self.nodes[0].spec.output_shape
    }

    /// The output shape per sample, e.g. `[1000]`.
    pub fn output_shape(&self) -> &[usize] {
        &self.nodes[self.sink()].spec.output_shape
    }

    /// Index of the output node (always the last).
    pub fn sink(&self) -> usize {
        self.nodes.len() - 1
    }

    /// Learnable parameters in total, as torchvision's `sum(p.numel() for p in m.parameters())`.
    pub fn param_count(&self) -> u64 {
        self.nodes.iter().map(|n| n.spec.params).sum()
    }

    /// FLOPs of one forward pass for one sample.
    pub fn flops(&self) -> u64 {
        self.nodes.iter().map(|n| n.spec.flops).sum()
    }

    /// True when no node has more than one input or consumer: every cut is a split point.
    pub fn is_chain(&self) -> bool {
        (0..self.len()).all(|v| self.nodes[v].inputs.len() <= 1 && self.consumers[v].len() <= 1)
    }

    /// Validates a cloud node set given by ids: every id must exist, `input` must stay on the
    /// edge, and the set must be closed under successors. The empty set (edge only) is valid.
    pub fn cut<S: AsRef<str>>(&self, cloud_ids: &[S]) -> Result<Cut, ModelError> {
        let mut cloud = vec![false; self.len()];
        for id in cloud_ids {
            cloud[self.index_of(id.as_ref())?] = true;
        }
        self.cut_from_mask(cloud)
    }

    /// Validates a cloud node set given as one flag per node (true: runs on the cloud).
    pub fn cut_from_mask(&self, cloud: Vec<bool>) -> Result<Cut, ModelError> {
        if cloud.len() != self.len() {
            return Err(ModelError::InvalidCut(format!(
                "the mask has {} entries but the network has {} nodes",
                cloud.len(),
                self.len()
            )));
        }
        if cloud[0] {
            return Err(ModelError::InvalidCut(format!(
                "`{INPUT_ID}` is in the cloud set, but the raw input always stays on the edge; remove it"
            )));
        }
        for v in 0..self.len() {
            if !cloud[v] {
                continue;
            }
            if let Some(&w) = self.consumers[v].iter().find(|&&w| !cloud[w]) {
                return Err(ModelError::InvalidCut(format!(
                    "`{}` is on the cloud but its consumer `{}` is not, and no tensor may flow back to the edge; add `{}` to the cloud set",
                    self.nodes[v].id, self.nodes[w].id, self.nodes[w].id
                )));
            }
        }
        Ok(Cut { cloud })
    }
}

impl LayerGraph for Net {
    fn node_count(&self) -> usize {
        self.len()
    }
    fn node_id(&self, node: usize) -> &str {
        &self.nodes[node].id
    }
    fn node_inputs(&self, node: usize) -> &[usize] {
        &self.nodes[node].inputs
    }
    fn out_bytes(&self, node: usize) -> u64 {
        self.nodes[node].spec.out_bytes
    }
}

/// A validated split: which nodes run on the cloud. Made by [`Net::cut`] or [`Net::cut_from_mask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    cloud: Vec<bool>,
}

impl Cut {
    /// One flag per node: true when the node runs on the cloud.
    pub fn cloud_mask(&self) -> &[bool] {
        &self.cloud
    }

    /// One flag per node: true when the node runs on the edge (the complement).
    pub fn edge_mask(&self) -> Vec<bool> {
        self.cloud.iter().map(|&c| !c).collect()
    }

    /// True when nothing runs on the cloud.
    pub fn is_edge_only(&self) -> bool {
        !self.cloud.contains(&true)
    }
}

/// Builds a [`Net`] node by node, inferring and checking each node's shapes as it is added.
///
/// Nodes must be added after their inputs, so the builder's order is a topological order.
#[derive(Debug, Clone)]
pub struct NetBuilder {
    name: String,
    nodes: Vec<Node>,
    index: HashMap<String, usize>,
}

impl NetBuilder {
    /// Starts a network whose input node `input` has this per-sample shape.
    pub fn new(name: impl Into<String>, input_shape: Shape) -> Result<NetBuilder, ModelError> {
        let spec = LayerSpec::input(INPUT_ID, input_shape)?;
        let mut index = HashMap::new();
        index.insert(INPUT_ID.to_string(), 0);
        Ok(NetBuilder {
            name: name.into(),
            nodes: vec![Node {
                id: INPUT_ID.to_string(),
                inputs: Vec::new(),
                spec,
            }],
            index,
        })
    }

    /// The input node's index (always 0).
    pub fn input(&self) -> usize {
        0
    }

    /// The output shape of an already added node.
    pub fn shape(&self, node: usize) -> Option<&[usize]> {
        self.nodes.get(node).map(|n| n.spec.output_shape.as_slice())
    }

    /// Adds a node consuming `inputs` (indices returned by earlier calls) and returns its index.
    ///
    /// Fails on a duplicate id, an input index not yet added, or a shape that does not fit.
    pub fn add(
        &mut self,
        id: impl Into<String>,
        kind: LayerKind,
        inputs: &[usize],
    ) -> Result<usize, ModelError> {
        let id = id.into();
        if self.index.contains_key(&id) {
            return Err(ModelError::Graph(partition_core::GraphError::DuplicateId(
                id,
            )));
        }
        let mut shapes = Vec::with_capacity(inputs.len());
        for (k, &i) in inputs.iter().enumerate() {
            if inputs[..k].contains(&i) {
                let input = self.nodes.get(i).map_or("?", |n| n.id.as_str());
                return Err(ModelError::Graph(
                    partition_core::GraphError::RepeatedInput {
                        node: id,
                        input: input.to_string(),
                    },
                ));
            }
            let input = self.nodes.get(i).ok_or_else(|| {
                ModelError::Spec(format!(
                    "node `{id}` names input index {i}, which is not added yet"
                ))
            })?;
            shapes.push(input.spec.output_shape.clone());
        }
        let spec = LayerSpec::infer(&id, kind, shapes)?;
        let index = self.nodes.len();
        self.index.insert(id.clone(), index);
        self.nodes.push(Node {
            id,
            inputs: inputs.to_vec(),
            spec,
        });
        Ok(index)
    }

    /// Finishes the network. The last node added is the output; every other node must have a
    /// consumer, or the network would have more than one sink.
    pub fn build(self) -> Result<Net, ModelError> {
        let mut consumers = vec![Vec::new(); self.nodes.len()];
        for (v, node) in self.nodes.iter().enumerate() {
            for &u in &node.inputs {
                consumers[u].push(v);
            }
        }
        let last = self.nodes.len() - 1;
        let dangling: Vec<&str> = (0..last)
            .filter(|&v| consumers[v].is_empty())
            .map(|v| self.nodes[v].id.as_str())
            .collect();
        if !dangling.is_empty() {
            return Err(ModelError::Graph(partition_core::GraphError::SinkCount {
                count: dangling.len() + 1,
                ids: format!("{}, {}", dangling.join(", "), self.nodes[last].id),
            }));
        }
        Ok(Net {
            name: self.name,
            nodes: self.nodes,
            consumers,
            index: self.index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diamond() -> Net {
        let mut b = NetBuilder::new("diamond", vec![2, 4, 4]).expect("input");
        let x = b.input();
        let a = b.add("a", LayerKind::Relu, &[x]).expect("a");
        let c = b.add("c", LayerKind::Relu6, &[x]).expect("c");
        let s = b.add("sum", LayerKind::Add, &[a, c]).expect("sum");
        b.add("flatten", LayerKind::Flatten, &[s]).expect("flatten");
        b.build().expect("valid")
    }

    #[test]
    fn builder_infers_shapes_and_layer_graph() {
        let net = diamond();
        assert_eq!(net.node_count(), 5);
        assert_eq!(net.output_shape(), &[32]);
        assert_eq!(net.node_inputs(3), &[1, 2]);
        assert_eq!(net.out_bytes(4), 128);
        assert!(!net.is_chain());
    }

    #[test]
    fn cuts_are_validated() {
        let net = diamond();
        assert!(net.cut::<&str>(&[]).expect("edge only").is_edge_only());
        net.cut(&["sum", "flatten"]).expect("valid cut");
        let err = net.cut(&["a", "flatten"]).expect_err("not closed");
        assert!(
            err.to_string().contains("`a`") && err.to_string().contains("`sum`"),
            "{err}"
        );
        let err = net
            .cut(&["input", "a", "c", "sum", "flatten"])
            .expect_err("input");
        assert!(err.to_string().contains("input"), "{err}");
        let err = net.cut(&["nope"]).expect_err("unknown");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn dangling_node_is_rejected() {
        let mut b = NetBuilder::new("d", vec![4]).expect("input");
        let x = b.input();
        b.add("a", LayerKind::Relu, &[x]).expect("a");
        b.add("b", LayerKind::Relu, &[x]).expect("b");
        let err = b.build().expect_err("two sinks");
        assert!(err.to_string().contains('a'), "{err}");
    }
}
