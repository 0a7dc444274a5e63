//! `cutpoint-edge profile`, `train`, and planning a model from two device profiles, run as a
//! user runs them: the real binary on a tiny real sweep of this machine.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

mod common;
use common::{edge, ok, tiny_sweep};

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[test]
fn a_sweep_without_a_class_trains_and_names_the_models_it_cannot_check() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("sweep");
    tiny_sweep(path(&data));
    // As an interrupted sweep leaves it: no grouped convolutions, which MobileNetV2 needs.
    std::fs::remove_file(data.join("grouped_conv.csv")).expect("the class's file");
    let profile = tmp.path().join("edge.profile");
    let out = ok(&[
        "train",
        "--data",
        path(&data),
        "--out",
        path(&profile),
        "--check-models",
        "lenet,mobilenet_v2",
        "--check-runs",
        "1",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&out).expect("stdout is JSON");
    let checked = report["models"].as_array().expect("models");
    assert_eq!(checked.len(), 1, "{report}");
    assert_eq!(checked[0]["model"], "lenet");
    let unpriced = report["models_unpriced"].as_array().expect("unpriced");
    assert_eq!(unpriced.len(), 1, "{report}");
    assert_eq!(unpriced[0]["model"], "mobilenet_v2");
    let reason = unpriced[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("grouped_conv"), "{reason}");
    assert!(std::fs::metadata(&profile).expect("profile written").len() > 0);
}

#[test]
fn profiles_price_a_model_and_plan_it_like_the_graph_they_print() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("sweep");
    let sweep = tiny_sweep(path(&data));
    assert!(sweep.contains("cutpoint-edge train --data"), "{sweep}");
    let edge_profile = tmp.path().join("edge.profile");
    let cloud_profile = tmp.path().join("cloud.profile");
    let trained = ok(&[
        "train",
        "--data",
        path(&data),
        "--out",
        path(&edge_profile),
        "--check-models",
        "none",
    ]);
    assert!(trained.contains("(edge role)"), "{trained}");
    ok(&[
        "train",
        "--data",
        path(&data),
        "--out",
        path(&cloud_profile),
        "--role",
        "cloud",
        "--check-models",
        "none",
    ]);

    let profiles = [
        "--edge-profile",
        path(&edge_profile),
        "--cloud-profile",
        path(&cloud_profile),
    ];
    // The graph with predicted costs: every layer that computes costs something.
    let mut args = vec!["graph", "--model", "lenet"];
    args.extend_from_slice(&profiles);
    let graph_json = ok(&args);
    let graph: Value = serde_json::from_str(&graph_json).expect("graph JSON");
    let nodes = graph["nodes"].as_array().expect("nodes");
    let conv = nodes
        .iter()
        .find(|n| n["id"] == "features.0")
        .expect("lenet's first convolution");
    assert!(conv["edge_ms"].as_f64().expect("edge_ms") > 0.0, "{conv}");
    assert!(conv["cloud_ms"].as_f64().expect("cloud_ms") > 0.0, "{conv}");

    // Planning the model from the profiles equals planning the graph they print.
    let mut args = vec!["plan", "--json", "--model", "lenet", "--uplink-mbps", "5"];
    args.extend_from_slice(&profiles);
    let direct: Value = serde_json::from_str(&ok(&args)).expect("plan JSON");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cutpoint-edge"))
        .args(["plan", "--json", "--graph", "-", "--uplink-mbps", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(graph_json.as_bytes())
        .expect("graph written");
    let out = child.wait_with_output().expect("plan finishes");
    assert!(out.status.success());
    let via_graph: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    assert_eq!(direct["cloud_nodes"], via_graph["cloud_nodes"]);
    // The same costs summed in each graph's own topological order: equal up to rounding.
    let value = |v: &Value| v["objective_value"].as_f64().expect("objective value");
    let (a, b) = (value(&direct), value(&via_graph));
    assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "{a} vs {b}");

    // With a loss budget, the model's codecs are measured on a run and priced in: the plan
    // runs, and its breakdown never exceeds the raw-only plan's.
    let mut args = vec![
        "plan",
        "--json",
        "--model",
        "lenet",
        "--uplink-mbps",
        "5",
        "--max-loss",
        "int8",
    ];
    args.extend_from_slice(&profiles);
    let encoded: Value = serde_json::from_str(&ok(&args)).expect("plan JSON");
    assert!(
        value(&encoded) <= value(&direct) * (1.0 + 1e-12),
        "{encoded}"
    );
    // An image input needs a model that takes one.
    let mut args = vec![
        "plan",
        "--model",
        "lenet",
        "--uplink-mbps",
        "5",
        "--image",
        "cat.jpg",
    ];
    args.extend_from_slice(&profiles);
    let out = edge(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("3x224x224") && err.contains("`lenet`"),
        "{err}"
    );

    // Profiles given for the wrong side are refused with what to do.
    let out = edge(&[
        "plan",
        "--model",
        "lenet",
        "--uplink-mbps",
        "5",
        "--edge-profile",
        path(&cloud_profile),
        "--cloud-profile",
        path(&edge_profile),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("trained for the cloud") && err.contains("--role"),
        "{err}"
    );
}

#[test]
fn plan_needs_one_source_of_costs() {
    let cases: [(&[&str], &str); 3] = [
        (&["plan", "--uplink-mbps", "5"], "--graph"),
        (
            &["plan", "--uplink-mbps", "5", "--model", "lenet"],
            "--edge-profile",
        ),
        (
            &[
                "plan",
                "--uplink-mbps",
                "5",
                "--graph",
                "g.json",
                "--model",
                "lenet",
            ],
            "cannot be used with",
        ),
    ];
    for (args, needle) in cases {
        let out = edge(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
