//! Graph JSON, the exchange format of docs/DESIGN.md:
//! `{"name": …, "nodes": [{"id", "inputs", "edge_ms", "cloud_ms", "out_bytes"}, …]}`, where a
//! node may also list `"encodings": [{"name", "bytes", "edge_ms", "cloud_ms"}, …]`.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::GraphError;
use crate::graph::{BYTES_HINT, Encoding, Graph, NodeSpec, whole_bytes};

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

    /// Writes the graph as pretty-printed graph JSON, nodes in topological order. A node's
    /// `encodings` are written only when it has some.
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
            #[serde(skip_serializing_if = "Vec::is_empty")]
            encodings: Vec<Encoding>,
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
                encodings: s.encodings,
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
    let at = format!("`{id}`");
    let edge_ms = number(fields, &at, "edge_ms")?;
    let cloud_ms = number(fields, &at, "cloud_ms")?;
    let out_bytes = number(fields, &at, "out_bytes")?;
    let encodings = match fields.get("encodings") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_encoding(&id, i, item))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(GraphError::Json(format!(
                "node `{id}`: `encodings` must be an array of {{name, bytes, edge_ms, cloud_ms}} objects"
            )));
        }
    };
    Ok(NodeSpec {
        edge_ms,
        cloud_ms,
        out_bytes,
        id,
        inputs,
        encodings,
    })
}

/// Parses `encodings[index]` of node `id`. Names and times are checked by [`Graph::new`];
/// the byte count is checked here, before it becomes an integer.
fn parse_encoding(id: &str, index: usize, item: &Value) -> Result<Encoding, GraphError> {
    let at = format!("`{id}`: encodings[{index}]");
    let fields = item
        .as_object()
        .ok_or_else(|| GraphError::Json(format!("node {at} must be an object")))?;
    let name = match fields.get("name") {
        Some(Value::String(name)) => name.clone(),
        _ => return Err(GraphError::Json(format!("node {at} needs a string `name`"))),
    };
    let bytes = number(fields, &at, "bytes")?;
    let bytes = whole_bytes(bytes).ok_or_else(|| GraphError::BadEncodingNumber {
        node: id.to_string(),
        index,
        field: "bytes",
        value: bytes,
        hint: BYTES_HINT,
    })?;
    Ok(Encoding {
        name,
        bytes,
        edge_ms: number(fields, &at, "edge_ms")?,
        cloud_ms: number(fields, &at, "cloud_ms")?,
    })
}

/// The number in `field`; `at` names the node (and encoding) for the error.
fn number(fields: &Map<String, Value>, at: &str, field: &str) -> Result<f64, GraphError> {
    fields
        .get(field)
        .and_then(Value::as_f64)
        .ok_or_else(|| GraphError::Json(format!("node {at} needs a numeric `{field}`")))
}
