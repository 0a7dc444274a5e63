//! Graph JSON parsing and validation: every rejection names the node at fault.

use partition_core::{Graph, GraphError, LayerGraph, NodeSpec};

fn node(id: &str, inputs: &[&str]) -> String {
    let inputs: Vec<String> = inputs.iter().map(|i| format!("\"{i}\"")).collect();
    format!(
        r#"{{"id": "{id}", "inputs": [{}], "edge_ms": 1.0, "cloud_ms": 0.5, "out_bytes": 100}}"#,
        inputs.join(", ")
    )
}

fn doc(nodes: &[String]) -> String {
    format!(r#"{{"name": "t", "nodes": [{}]}}"#, nodes.join(", "))
}

fn parse(nodes: &[String]) -> Result<Graph, GraphError> {
    Graph::from_json(&doc(nodes))
}

#[test]
fn nodes_in_any_order_are_sorted_topologically() {
    let g = parse(&[
        node("fc", &["conv"]),
        node("conv", &["input"]),
        node("input", &[]),
    ])
    .expect("valid graph");
    let ids: Vec<&str> = (0..g.len()).map(|v| g.id(v)).collect();
    assert_eq!(ids, ["input", "conv", "fc"]);
    assert_eq!(g.source(), 0);
    assert_eq!(g.sink(), 2);
    assert_eq!(g.inputs(2), &[1]);
    assert_eq!(g.consumers(0), &[1]);
    assert!(g.is_chain());
}

#[test]
fn json_round_trips() {
    let g = parse(&[
        node("input", &[]),
        node("a", &["input"]),
        node("b", &["input"]),
        node("cat", &["a", "b"]),
    ])
    .expect("valid graph");
    assert!(!g.is_chain());
    let again = Graph::from_json(&g.to_json()).expect("own output parses");
    assert_eq!(g, again);
}

#[test]
fn duplicate_id_is_named() {
    let err = parse(&[
        node("input", &[]),
        node("a", &["input"]),
        node("a", &["input"]),
    ]);
    assert_eq!(err, Err(GraphError::DuplicateId("a".into())));
}

#[test]
fn unknown_input_is_named() {
    let err = parse(&[node("input", &[]), node("a", &["inptu"])]);
    assert_eq!(
        err,
        Err(GraphError::UnknownInput {
            node: "a".into(),
            input: "inptu".into()
        })
    );
}

#[test]
fn repeated_input_is_named() {
    let err = parse(&[node("input", &[]), node("a", &["input", "input"])]);
    assert!(matches!(err, Err(GraphError::RepeatedInput { node, .. }) if node == "a"));
}

#[test]
fn cycle_names_a_node_on_it() {
    let err = parse(&[
        node("input", &[]),
        node("a", &["input", "c"]),
        node("b", &["a"]),
        node("c", &["b"]),
        node("out", &["c"]),
    ]);
    match err {
        Err(GraphError::Cycle(id)) => assert!(["a", "b", "c"].contains(&id.as_str()), "{id}"),
        other => panic!("expected a cycle error, got {other:?}"),
    }
}

#[test]
fn two_sources_are_rejected() {
    let err = parse(&[
        node("input", &[]),
        node("other", &[]),
        node("a", &["input", "other"]),
    ]);
    assert_eq!(
        err,
        Err(GraphError::SourceCount {
            count: 2,
            ids: "input, other".into()
        })
    );
}

#[test]
fn two_sinks_are_rejected() {
    let err = parse(&[
        node("input", &[]),
        node("a", &["input"]),
        node("b", &["input"]),
    ]);
    assert_eq!(
        err,
        Err(GraphError::SinkCount {
            count: 2,
            ids: "a, b".into()
        })
    );
}

#[test]
fn negative_and_fractional_numbers_are_named() {
    let bad = r#"{"nodes": [
        {"id": "input", "inputs": [], "edge_ms": 0, "cloud_ms": 0, "out_bytes": 10},
        {"id": "a", "inputs": ["input"], "edge_ms": -1, "cloud_ms": 0, "out_bytes": 10}]}"#;
    let err = Graph::from_json(bad).expect_err("negative edge_ms");
    assert!(matches!(&err, GraphError::BadNumber { node, field: "edge_ms", .. } if node == "a"));
    assert!(err.to_string().contains("`a`"), "{err}");

    let bad = bad.replace(
        r#""edge_ms": -1, "cloud_ms": 0, "out_bytes": 10"#,
        r#""edge_ms": 1, "cloud_ms": 0, "out_bytes": 2.5"#,
    );
    let err = Graph::from_json(&bad).expect_err("fractional bytes");
    assert!(matches!(
        err,
        GraphError::BadNumber {
            field: "out_bytes",
            ..
        }
    ));
}

#[test]
fn non_finite_numbers_are_named() {
    let nodes = vec![
        NodeSpec {
            id: "input".into(),
            inputs: vec![],
            edge_ms: 0.0,
            cloud_ms: 0.0,
            out_bytes: 1.0,
        },
        NodeSpec {
            id: "a".into(),
            inputs: vec!["input".into()],
            edge_ms: 1.0,
            cloud_ms: f64::NAN,
            out_bytes: 1.0,
        },
    ];
    let err = Graph::new("t", nodes.clone()).expect_err("NaN cloud_ms");
    assert!(matches!(err, GraphError::BadNumber { node, field: "cloud_ms", .. } if node == "a"));
    let mut huge = nodes;
    huge[1].cloud_ms = 0.5;
    huge[1].edge_ms = 1e300;
    let err = Graph::new("t", huge).expect_err("absurd edge_ms");
    assert!(matches!(
        err,
        GraphError::BadNumber {
            field: "edge_ms",
            ..
        }
    ));
}

#[test]
fn malformed_json_says_what_is_missing() {
    assert!(matches!(Graph::from_json("{"), Err(GraphError::Json(_))));
    assert!(matches!(Graph::from_json("[]"), Err(GraphError::Json(_))));
    assert_eq!(Graph::from_json(r#"{"nodes": []}"#), Err(GraphError::Empty));
    let err = Graph::from_json(
        r#"{"nodes": [{"id": "input", "inputs": [], "edge_ms": 0, "out_bytes": 1}]}"#,
    )
    .expect_err("cloud_ms missing");
    assert!(
        err.to_string().contains("`input`") && err.to_string().contains("cloud_ms"),
        "{err}"
    );
}

/// A hand-rolled `LayerGraph`, as `models::Net` will be.
struct Layers {
    ids: Vec<&'static str>,
    inputs: Vec<Vec<usize>>,
}

impl LayerGraph for Layers {
    fn node_count(&self) -> usize {
        self.ids.len()
    }
    fn node_id(&self, node: usize) -> &str {
        self.ids[node]
    }
    fn node_inputs(&self, node: usize) -> &[usize] {
        &self.inputs[node]
    }
    fn out_bytes(&self, node: usize) -> u64 {
        node as u64 * 10
    }
}

#[test]
fn layer_graphs_convert_and_contract_breaches_are_caught() {
    let layers = Layers {
        ids: vec!["input", "conv", "fc"],
        inputs: vec![vec![], vec![0], vec![1]],
    };
    let g = Graph::from_layer_graph("l", &layers, &[0.0, 2.0, 1.0], &[0.0, 0.2, 0.1])
        .expect("valid layer graph");
    assert_eq!(g.out_bytes(2), 20);
    assert_eq!(g.edge_ms(1), 2.0);

    let err = Graph::from_layer_graph("l", &layers, &[0.0, 2.0], &[0.0, 0.2, 0.1]);
    assert!(matches!(
        err,
        Err(GraphError::CostLength {
            what: "edge_ms",
            got: 2,
            expected: 3
        })
    ));

    let backwards = Layers {
        ids: vec!["input", "conv", "fc"],
        inputs: vec![vec![], vec![2], vec![1]],
    };
    let err = Graph::from_layer_graph("l", &backwards, &[0.0; 3], &[0.0; 3]);
    assert!(matches!(
        err,
        Err(GraphError::NotTopological {
            index: 1,
            input: 2,
            ..
        })
    ));
}
