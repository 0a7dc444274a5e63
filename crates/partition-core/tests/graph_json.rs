//! Graph JSON parsing and validation: every rejection names the node at fault.

use partition_core::{Encoding, Graph, GraphError, LayerGraph, NodeSpec};

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
            encodings: vec![],
        },
        NodeSpec {
            id: "a".into(),
            inputs: vec!["input".into()],
            edge_ms: 1.0,
            cloud_ms: f64::NAN,
            out_bytes: 1.0,
            encodings: vec![],
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

/// input → a → out, where `a` carries `encodings` (a JSON array, spliced in as given).
fn with_encodings(encodings: &str) -> String {
    format!(
        r#"{{"name": "t", "nodes": [
        {{"id": "input", "inputs": [], "edge_ms": 0, "cloud_ms": 0, "out_bytes": 100}},
        {{"id": "a", "inputs": ["input"], "edge_ms": 1, "cloud_ms": 0.5, "out_bytes": 100,
          "encodings": {encodings}}},
        {{"id": "out", "inputs": ["a"], "edge_ms": 1, "cloud_ms": 0.5, "out_bytes": 4}}]}}"#
    )
}

#[test]
fn encodings_parse_and_round_trip() {
    let g = Graph::from_json(&with_encodings(
        r#"[{"name": "int8+lz4", "bytes": 20, "edge_ms": 0.21, "cloud_ms": 0.08},
            {"name": "fp16", "bytes": 50.0, "edge_ms": 0, "cloud_ms": 0}]"#,
    ))
    .expect("valid graph");
    assert_eq!(
        g.encodings(1),
        &[
            Encoding {
                name: "int8+lz4".into(),
                bytes: 20,
                edge_ms: 0.21,
                cloud_ms: 0.08
            },
            Encoding {
                name: "fp16".into(),
                bytes: 50,
                edge_ms: 0.0,
                cloud_ms: 0.0
            }
        ]
    );
    assert!(g.encodings(0).is_empty() && g.encodings(2).is_empty());
    assert_eq!(g.encoding_name(1, Some(1)), "fp16");
    assert_eq!(g.node_specs()[1].encodings, g.encodings(1));
    let text = g.to_json();
    assert_eq!(text.matches("\"encodings\"").count(), 1, "{text}");
    let again = Graph::from_json(&text).expect("own output parses");
    assert_eq!(g, again);
    assert_eq!(again.to_json(), text);
}

#[test]
fn graphs_without_encodings_write_the_same_json_as_before() {
    let g = parse(&[node("input", &[]), node("a", &["input"])]).expect("valid graph");
    let want = r#"{
  "name": "t",
  "nodes": [
    {
      "id": "input",
      "inputs": [],
      "edge_ms": 1.0,
      "cloud_ms": 0.5,
      "out_bytes": 100
    },
    {
      "id": "a",
      "inputs": [
        "input"
      ],
      "edge_ms": 1.0,
      "cloud_ms": 0.5,
      "out_bytes": 100
    }
  ]
}"#;
    assert_eq!(g.to_json(), want);
    let empty = Graph::from_json(&with_encodings("[]")).expect("an empty list is no encodings");
    assert!(!empty.to_json().contains("encodings"));
}

#[test]
fn bad_encodings_name_the_node_and_the_field() {
    let ok = r#""name": "q", "bytes": 10, "edge_ms": 1, "cloud_ms": 1"#;
    let one = |fields: &str| format!("[{{{fields}}}]");
    // Each case: the `encodings` value, and what the error must mention besides node `a`.
    let cases = [
        ("{}".to_string(), vec!["encodings", "array"]),
        ("[3]".to_string(), vec!["encodings[0]", "object"]),
        (
            one(r#""bytes": 10, "edge_ms": 1, "cloud_ms": 1"#),
            vec!["encodings[0]", "`name`"],
        ),
        (
            one(r#""name": 7, "bytes": 10, "edge_ms": 1, "cloud_ms": 1"#),
            vec!["`name`"],
        ),
        (
            one(r#""name": "q", "edge_ms": 1, "cloud_ms": 1"#),
            vec!["encodings[0]", "`bytes`"],
        ),
        (
            one(r#""name": "q", "bytes": 10, "cloud_ms": 1"#),
            vec!["encodings[0]", "`edge_ms`"],
        ),
        (
            one(r#""name": "q", "bytes": 10, "edge_ms": 1"#),
            vec!["encodings[0]", "`cloud_ms`"],
        ),
        (
            one(r#""name": "q", "bytes": -1, "edge_ms": 1, "cloud_ms": 1"#),
            vec!["encodings[0].bytes", "-1"],
        ),
        (
            one(r#""name": "q", "bytes": 2.5, "edge_ms": 1, "cloud_ms": 1"#),
            vec!["encodings[0].bytes", "whole"],
        ),
        (
            one(r#""name": "q", "bytes": 1e17, "edge_ms": 1, "cloud_ms": 1"#),
            vec!["encodings[0].bytes", "2^53"],
        ),
        (
            one(r#""name": "q", "bytes": 10, "edge_ms": -1, "cloud_ms": 1"#),
            vec!["encodings[0].edge_ms", "-1"],
        ),
        (
            one(r#""name": "q", "bytes": 10, "edge_ms": 1, "cloud_ms": 1e300"#),
            vec!["encodings[0].cloud_ms", "1e9 ms"],
        ),
        (
            one(r#""name": "", "bytes": 10, "edge_ms": 1, "cloud_ms": 1"#),
            vec!["encodings[0]", "non-empty name"],
        ),
        (
            one(r#""name": "raw", "bytes": 10, "edge_ms": 1, "cloud_ms": 1"#),
            vec!["`raw`", "reserved"],
        ),
        (
            format!("[{{{ok}}}, {{{ok}}}]"),
            vec!["encodings[1]", "`q`", "once"],
        ),
    ];
    for (encodings, needles) in cases {
        let err = Graph::from_json(&with_encodings(&encodings)).expect_err(&encodings);
        let text = err.to_string();
        for needle in needles.iter().chain(&["`a`"]) {
            assert!(
                text.contains(needle),
                "{encodings}: {text:?} lacks {needle:?}"
            );
        }
    }
    let err = Graph::from_json(&with_encodings(&one(
        r#""name": "q", "bytes": 10, "edge_ms": -1, "cloud_ms": 1"#,
    )))
    .expect_err("negative edge_ms");
    assert!(matches!(
        err,
        GraphError::BadEncodingNumber { node, index: 0, field: "edge_ms", .. } if node == "a"
    ));
}

#[test]
fn with_encodings_validates_like_new() {
    let g = parse(&[node("input", &[]), node("a", &["input"])]).expect("valid graph");
    let codec = |name: &str, bytes: u64, edge_ms: f64| Encoding {
        name: name.into(),
        bytes,
        edge_ms,
        cloud_ms: 0.0,
    };
    let swapped = g
        .with_encodings(vec![vec![codec("q", 10, 0.5)], vec![]])
        .expect("valid encodings");
    assert_eq!(swapped.encodings(0), &[codec("q", 10, 0.5)]);
    assert_eq!(swapped.node_specs()[0].inputs, g.node_specs()[0].inputs);
    assert!(matches!(
        g.with_encodings(vec![vec![]]),
        Err(GraphError::CostLength {
            what: "encodings",
            got: 1,
            expected: 2
        })
    ));
    let bad = [
        (codec("q", (1 << 53) + 1, 0.0), "bytes"),
        (codec("q", 10, f64::NAN), "edge_ms"),
        (codec("q", 10, f64::INFINITY), "edge_ms"),
    ];
    for (e, want) in bad {
        let err = g.with_encodings(vec![vec![], vec![e]]).expect_err(want);
        assert!(
            matches!(&err, GraphError::BadEncodingNumber { node, field, .. } if node == "a" && *field == want),
            "{err:?}"
        );
    }
    let err = g
        .with_encodings(vec![vec![codec("raw", 1, 0.0)], vec![]])
        .expect_err("reserved name");
    assert!(matches!(err, GraphError::BadEncodingName { node, index: 0, .. } if node == "input"));
    let mut specs = g.node_specs();
    specs[1].encodings = vec![codec("q", 1, 0.0), codec("q", 2, 0.0)];
    let err = Graph::new("t", specs).expect_err("a name used twice");
    assert!(matches!(err, GraphError::BadEncodingName { index: 1, .. }));
}
