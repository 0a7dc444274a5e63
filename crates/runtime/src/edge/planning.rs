//! The graph one request is planned on: the session's cost graph with this request's encoding
//! estimates, and, when the input is an image file, a source node for the file in front of
//! `input`.
//!
//! With a file, `input` becomes a node like any other: it decodes and preprocesses the file,
//! at the edge's cost when it runs on the edge and at the cloud's when it runs there, and its
//! input is the file's bytes. A plan that puts `input` on the cloud is cloud-only sending the
//! file; every other plan decodes on the edge. So the choice between sending the photo and
//! sending a tensor is made by the same exact solvers, with no special case.

use std::collections::{BTreeMap, HashMap};

use models::INPUT_ID;
use partition_core::{Direction, Graph, NodeSpec, Plan};
use transport::Codec;

use crate::error::RuntimeError;

/// The id of the image file's node in a planning graph.
pub const INPUT_FILE_ID: &str = "input_file";

/// An image file as the application handed it in.
#[derive(Debug, Clone)]
pub(crate) struct FileInput {
    /// The encoded file.
    pub bytes: Vec<u8>,
    /// Its width times its height.
    pub pixels: u64,
}

/// A planning graph and how its nodes map to the network's.
#[derive(Debug, Clone)]
pub(crate) struct PlanningGraph {
    /// The graph the solver sees.
    pub graph: Graph,
    /// The network's index of each graph node; `None` for the file node.
    to_net: Vec<Option<usize>>,
    /// The graph index of `input`.
    input: usize,
    /// Whether the graph has a file node.
    has_file: bool,
}

/// What the edge pays and the cloud pays for decoding an image file, in ms.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileCosts {
    /// The file's size.
    pub bytes: u64,
    /// Decoding and preprocessing on the edge.
    pub edge_ms: f64,
    /// The same on the cloud.
    pub cloud_ms: f64,
    /// Whether the plan may send the file itself (else it is always decoded on the edge).
    pub may_send: bool,
}

impl PlanningGraph {
    /// `base` (indexed like `to_net`) with `encodings` (one list per base node) and, with
    /// `file`, the file's node in front of `input` (or, when the file may not be sent, its
    /// decoding priced on the edge as `input`'s cost).
    pub fn build(
        base: &Graph,
        to_net: &[usize],
        encodings: Vec<Vec<partition_core::Encoding>>,
        file: Option<FileCosts>,
    ) -> Result<PlanningGraph, RuntimeError> {
        let with_encodings = base.with_encodings(encodings)?;
        let Some(file) = file else {
            return Ok(PlanningGraph {
                graph: with_encodings,
                to_net: to_net.iter().map(|&v| Some(v)).collect(),
                input: base.source(),
                has_file: false,
            });
        };
        let mut specs = with_encodings.node_specs();
        for spec in specs.iter_mut().filter(|s| s.id == INPUT_ID) {
            spec.edge_ms = file.edge_ms;
            if file.may_send {
                spec.inputs = vec![INPUT_FILE_ID.to_string()];
                spec.cloud_ms = file.cloud_ms;
            }
        }
        if file.may_send {
            specs.insert(
                0,
                NodeSpec {
                    id: INPUT_FILE_ID.to_string(),
                    inputs: Vec::new(),
                    edge_ms: 0.0,
                    cloud_ms: 0.0,
                    out_bytes: file.bytes as f64,
                    encodings: Vec::new(),
                },
            );
        }
        // Validation keeps the nodes' order only where it is already topological, so the
        // network's indices are found again by id.
        let graph = Graph::new(base.name(), specs)?;
        let base_index: HashMap<&str, usize> = (0..base.len()).map(|g| (base.id(g), g)).collect();
        let to_net = (0..graph.len())
            .map(|p| base_index.get(graph.id(p)).map(|&g| to_net[g]))
            .collect();
        let input = graph.index_of(INPUT_ID).unwrap_or(0);
        Ok(PlanningGraph {
            graph,
            to_net,
            input,
            has_file: file.may_send,
        })
    }

    /// Whether the graph has a node for an image file.
    pub fn has_file(&self) -> bool {
        self.has_file
    }

    /// Whether `plan` sends the image file (runs `input` on the cloud).
    pub fn sends_file(&self, plan: &Plan) -> bool {
        self.has_file && plan.is_cloud(self.input)
    }

    /// The cloud's decode time the plan predicts: the chosen codecs' decoding, and the file's
    /// decoding and preprocessing when the plan sends it.
    pub fn predicted_decode_ms(&self, plan: &Plan) -> f64 {
        let codecs: f64 = plan
            .transfers()
            .iter()
            .filter_map(|t| {
                t.encoding
                    .map(|i| self.graph.encodings(t.tensor)[i].cloud_ms)
            })
            .sum();
        let file = if self.sends_file(plan) {
            self.graph.cloud_ms(self.input)
        } else {
            0.0
        };
        codecs + file
    }

    /// The plan's cloud set as one flag per network node (the network's order).
    pub fn net_mask(&self, plan: &Plan, net_len: usize) -> Vec<bool> {
        let mut mask = vec![false; net_len];
        for p in plan.cloud_nodes() {
            if let Some(v) = self.to_net[p] {
                mask[v] = true;
            }
        }
        mask
    }

    /// The codec of every network node's tensor that the plan sends up.
    pub fn codecs(&self, plan: &Plan) -> Result<BTreeMap<usize, Codec>, RuntimeError> {
        let mut codecs = BTreeMap::new();
        for t in plan.transfers() {
            let Some(v) = self.to_net[t.tensor].filter(|_| t.direction == Direction::Up) else {
                continue;
            };
            let codec = match t.encoding {
                None => Codec::Raw,
                Some(i) => {
                    let name = &self.graph.encodings(t.tensor)[i].name;
                    name.parse::<Codec>().map_err(|e| RuntimeError::Config {
                        name: "encodings",
                        reason: format!("node `{}`: {e}", self.graph.id(t.tensor)),
                    })?
                }
            };
            codecs.insert(v, codec);
        }
        Ok(codecs)
    }
}
