//! Graph JSON, the exchange format of DESIGN.md:
//! `{"name": …, "nodes": [{"id", "inputs", "edge_ms", "cloud_ms", "out_bytes"}, …]}`.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::GraphError;
use crate::graph::{Graph, NodeSpec};

impl Graph {
    /// Parses graph JSON and validates it. Errors name the node and the field at fault.
    pub fn from_json(text: &str) -> Result<Graph, GraphError> {
        let doc: Value = serde_json::from_str(text).map_err(|e| GraphError::Json(e.to_string()))?;
        let doc = doc
            .as_object()
            .ok_or_else(|| GraphError::Json("the top level must be an object".into()))?;
        let name = match doc.get("name") {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(GraphError::Json("`name` must be a string".into())),
        };
        let nodes = doc
            .get("nodes")
            .and_then(Value::as_array)
            .ok_or_else(|| GraphError::Json("expected a `nodes` array at the top level".into()))?;
        let specs = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| parse_node(i, node))
            .collect::<Result<Vec<_>, _>>()?;
        Graph::new(name, specs)
    }

    /// Writes the graph as pretty-printed graph JSON, nodes in topological order.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Doc<'a> {
            name: &'a str,
            nodes: Vec<Node>,
        }
        #[derive(Serialize)]
        struct Node {
            id: String,
            inputs: Vec<String>,
            edge_ms: f64,
            cloud_ms: f64,
            out_bytes: u64,
        }
        let nodes = self
            .node_specs()
            .into_iter()
            .map(|s| Node {
                id: s.id,
                inputs: s.inputs,
                edge_ms: s.edge_ms,
                cloud_ms: s.cloud_ms,
                out_bytes: s.out_bytes as u64,
            })
            .collect();
        let doc = Doc {
            name: self.name(),
            nodes,
        };
        // Serialising plain strings and finite numbers cannot fail.
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }
}

fn parse_node(index: usize, node: &Value) -> Result<NodeSpec, GraphError> {
    let fields = node
        .as_object()
        .ok_or_else(|| GraphError::Json(format!("node #{index} must be an object")))?;
    let id = match fields.get("id") {
        Some(Value::String(id)) => id.clone(),
        _ => {
            return Err(GraphError::Json(format!(
                "node #{index} needs a string `id`"
            )));
        }
    };
    let inputs = match fields.get("inputs") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_string).ok_or_else(|| {
                    GraphError::Json(format!(
                        "node `{id}`: `inputs` must hold node ids (strings)"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(GraphError::Json(format!(
                "node `{id}` needs an `inputs` array (empty for the raw input)"
            )));
        }
    };
    Ok(NodeSpec {
        edge_ms: number(fields, &id, "edge_ms")?,
        cloud_ms: number(fields, &id, "cloud_ms")?,
        out_bytes: number(fields, &id, "out_bytes")?,
        id,
        inputs,
    })
}

fn number(fields: &Map<String, Value>, id: &str, field: &str) -> Result<f64, GraphError> {
    fields
        .get(field)
        .and_then(Value::as_f64)
        .ok_or_else(|| GraphError::Json(format!("node `{id}` needs a numeric `{field}`")))
}
