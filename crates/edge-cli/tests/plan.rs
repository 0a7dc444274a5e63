//! `cutpoint-edge plan`, run as a user runs it: the real binary, real files, real exit codes.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

mod common;
use common::{edge, json_output, one_line_error};

fn repo_file(rel: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join(rel).to_string_lossy().into_owned()
}

fn json_plan(args: &[&str]) -> Value {
    let mut all = vec!["plan", "--json"];
    all.extend_from_slice(args);
    json_output(edge(&all))
}

#[test]
fn json_has_the_documented_keys_and_consistent_figures() {
    let alexnet = repo_file("examples/graphs/alexnet.json");
    let v = json_plan(&[
        "--graph",
        &alexnet,
        "--uplink-mbps",
        "5.85",
        "--rtt-ms",
        "20",
    ]);
    for key in [
        "solver",
        "objective",
        "cloud_nodes",
        "edge_nodes",
        "transfers",
        "predicted_ms",
        "baselines",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["solver"], "chain");
    assert_eq!(v["objective"], "latency");
    let p = &v["predicted_ms"];
    let parts: f64 = ["edge", "upload", "cloud", "download", "rtt"]
        .iter()
        .map(|k| p[k].as_f64().expect("number"))
        .sum();
    let total = p["total"].as_f64().expect("number");
    assert!((parts - total).abs() < 1e-9);
    let edge_only = v["baselines"]["edge_only_ms"].as_f64().expect("number");
    let cloud_only = v["baselines"]["cloud_only_ms"].as_f64().expect("number");
    assert!(total <= edge_only && total <= cloud_only);
    // Cloud-only sends the 602 112-byte input at 5.85·10^6 bit/s, then 20 ms RTT and the result.
    let input_up_ms = 602_112.0 * 8.0 / 5.85e6 * 1e3;
    assert!(cloud_only > input_up_ms + 20.0);
    // Every node is on exactly one side, and a chain cut sends exactly one tensor up.
    let cloud = v["cloud_nodes"].as_array().expect("array").len();
    let edge = v["edge_nodes"].as_array().expect("array").len();
    assert_eq!(cloud + edge, 23);
    assert_eq!(v["edge_nodes"][0], "input");
    let transfers = v["transfers"].as_array().expect("array");
    assert_eq!(transfers.len(), 1);
    assert!(transfers[0]["tensor"].is_string() && transfers[0]["bytes"].is_u64());
    // The shipped graphs carry no encodings: every tensor travels raw.
    assert_eq!(transfers[0]["encoding"], "raw");
    assert_eq!(transfers[0]["raw_bytes"], transfers[0]["bytes"]);
}

/// Runs `cutpoint-edge` with `args`, writing `text` to its standard input.
fn edge_with_stdin(args: &[&str], text: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cutpoint-edge"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(text.as_bytes())
        .expect("write graph");
    child.wait_with_output().expect("it finishes")
}

#[test]
fn reads_the_graph_from_stdin() {
    let text = std::fs::read_to_string(repo_file("examples/graphs/resnet18.json"))
        .expect("example exists");
    let out = edge_with_stdin(
        &["plan", "--graph", "-", "--uplink-mbps", "100", "--json"],
        &text,
    );
    let v = json_output(out);
    assert_eq!(v["solver"], "mincut");
}

/// input (1 MB raw, or 50 kB as `jpeg`: 5 ms to encode, 2 ms to decode) → a → b.
const ENCODED_GRAPH: &str = r#"{"name": "compressible", "nodes": [
    {"id": "input", "inputs": [],        "edge_ms": 0,   "cloud_ms": 0, "out_bytes": 1000000,
     "encodings": [{"name": "jpeg", "bytes": 50000, "edge_ms": 5, "cloud_ms": 2}]},
    {"id": "a",     "inputs": ["input"], "edge_ms": 100, "cloud_ms": 1, "out_bytes": 250000},
    {"id": "b",     "inputs": ["a"],     "edge_ms": 200, "cloud_ms": 2, "out_bytes": 1000}]}"#;

#[test]
fn encoded_transfers_report_their_encoding_and_sizes() {
    // At 8 Mbit/s up, 1 down, 10 ms RTT and load ×2, edge-only costs 300 ms and raw cloud-only
    // 1024 ms, but the input as jpeg costs 5 + 50 + 2·3 + 2 + 8 + 10 = 81 ms: cloud-only wins.
    let flags = [
        "plan",
        "--graph",
        "-",
        "--uplink-mbps",
        "8",
        "--downlink-mbps",
        "1",
        "--rtt-ms",
        "10",
        "--load-factor",
        "2",
    ];
    let v = json_output(edge_with_stdin(
        &[&flags[..], &["--json"]].concat(),
        ENCODED_GRAPH,
    ));
    assert_eq!(v["cloud_nodes"], serde_json::json!(["a", "b"]));
    let transfers = v["transfers"].as_array().expect("array");
    assert_eq!(transfers.len(), 1);
    let t = &transfers[0];
    assert_eq!(t["tensor"], "input");
    assert_eq!(t["direction"], "up");
    assert_eq!(t["encoding"], "jpeg");
    assert_eq!(t["bytes"], 50_000);
    assert_eq!(t["raw_bytes"], 1_000_000);
    let p = &v["predicted_ms"];
    let ms = |k: &str| p[k].as_f64().expect("number");
    for (key, want) in [
        ("edge", 5.0),
        ("upload", 50.0),
        ("cloud", 8.0),
        ("total", 81.0),
    ] {
        assert!(
            (ms(key) - want).abs() < 1e-9,
            "{key}: {} != {want}",
            ms(key)
        );
    }
    assert_eq!(v["objective_value"].as_f64(), Some(ms("total")));

    let out = edge_with_stdin(&flags, ENCODED_GRAPH);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sends up: input as jpeg (48.8 KiB, 976.6 KiB raw)"),
        "{text}"
    );
}

#[test]
fn solvers_agree_through_the_cli() {
    let resnet = repo_file("examples/graphs/resnet18.json");
    let total = |solver: &str| {
        json_plan(&[
            "--graph",
            &resnet,
            "--uplink-mbps",
            "18.88",
            "--rtt-ms",
            "5",
            "--solver",
            solver,
        ])["predicted_ms"]["total"]
            .as_f64()
            .expect("number")
    };
    let mincut = total("mincut");
    assert!((total("dp") - mincut).abs() < 1e-9);
    assert!((total("auto") - mincut).abs() < 1e-9);
    // The single-cut baseline is a restriction of mincut's search: never better.
    assert!(total("prefix") >= mincut - 1e-9);
}

#[test]
fn energy_objective_reports_millijoules() {
    let alexnet = repo_file("examples/graphs/alexnet.json");
    let v = json_plan(&[
        "--graph",
        &alexnet,
        "--uplink-mbps",
        "18.88",
        "--objective",
        "energy",
        "--compute-w",
        "2.5",
        "--transmit-w",
        "1.2",
        "--idle-w",
        "0.3",
    ]);
    assert_eq!(v["objective"], "energy");
    assert_eq!(v["objective_unit"], "mJ");
    let p = &v["predicted_ms"];
    let ms = |k: &str| p[k].as_f64().expect("number");
    let mj =
        2.5 * ms("edge") + 1.2 * ms("upload") + 0.3 * (ms("cloud") + ms("download") + ms("rtt"));
    assert!((v["objective_value"].as_f64().expect("number") - mj).abs() < 1e-6);
    assert!(v["baselines"]["edge_only_mj"].is_f64());
}

#[test]
fn a_device_class_supplies_the_powers_and_an_override_replaces_one() {
    let alexnet = repo_file("examples/graphs/alexnet.json");
    let plan_mj = |extra: &[&str]| {
        let mut args = vec![
            "--graph",
            &alexnet,
            "--uplink-mbps",
            "5.85",
            "--objective",
            "energy",
        ];
        args.extend_from_slice(extra);
        let v = json_plan(&args);
        let powers = &v["powers_w"];
        assert!(
            powers["source"]
                .as_str()
                .is_some_and(|s| s.starts_with("device class ")),
            "{v}"
        );
        let p = &v["predicted_ms"];
        let ms = |k: &str| p[k].as_f64().expect("number");
        (
            v["objective_value"].as_f64().expect("number"),
            [
                ms("edge"),
                ms("upload"),
                ms("cloud") + ms("download") + ms("rtt"),
            ],
        )
    };
    // The Raspberry Pi class: 6.4 W computing, 2.7 + 1.55 W transmitting, 2.7 W idle, with
    // where those figures come from.
    let (mj, [edge, up, rest]) = plan_mj(&["--device-class", "raspberry-pi"]);
    assert!(
        (mj - (6.4 * edge + 4.25 * up + 2.7 * rest)).abs() < 1e-6,
        "{mj}"
    );
    // No class named: the phone's powers.
    let (mj, [edge, up, rest]) = plan_mj(&[]);
    assert!(
        (mj - (3.0 * edge + 4.1 * up + 0.6 * rest)).abs() < 1e-6,
        "{mj}"
    );
    // One override, the class's other two.
    let (mj, [edge, up, rest]) = plan_mj(&["--device-class", "jetson", "--idle-w", "0"]);
    assert!((mj - (5.6 * edge + 3.15 * up)).abs() < 1e-6, "{mj} {rest}");
}

#[test]
fn human_output_shows_the_cut_beside_the_baselines() {
    let alexnet = repo_file("examples/graphs/alexnet.json");
    let out = edge(&[
        "plan",
        "--graph",
        &alexnet,
        "--uplink-mbps",
        "18.88",
        "--rtt-ms",
        "20",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "cut:",
        "sends up: features.2 as raw (",
        "chosen (chain)",
        "edge-only",
        "cloud-only",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn the_stream_objective_reports_the_slowest_stage() {
    let resnet = repo_file("examples/graphs/resnet18.json");
    let v = json_plan(&[
        "--graph",
        &resnet,
        "--uplink-mbps",
        "5.85",
        "--objective",
        "stream",
    ]);
    assert_eq!(
        (v["objective"].as_str(), v["objective_unit"].as_str()),
        (Some("stream"), Some("ms/frame"))
    );
    let p = &v["predicted_ms"];
    let ms = |k: &str| p[k].as_f64().expect("number");
    let slowest = [
        ms("edge"),
        ms("upload"),
        ms("cloud") + ms("wait"),
        ms("download"),
    ]
    .into_iter()
    .fold(0.0, f64::max);
    assert!(
        (v["objective_value"].as_f64().expect("number") - slowest).abs() < 1e-6,
        "{v}"
    );
    // A solver of sums refuses it.
    let err = one_line_error(&[
        "plan",
        "--graph",
        &resnet,
        "--uplink-mbps",
        "5.85",
        "--objective",
        "stream",
        "--solver",
        "dp",
    ]);
    assert!(
        err.contains("use auto, chain, mincut or exhaustive"),
        "{err}"
    );
}

#[test]
fn bad_input_gives_one_line_errors() {
    let alexnet = repo_file("examples/graphs/alexnet.json");
    let resnet = repo_file("examples/graphs/resnet18.json");
    let plan = |extra: &[&str]| {
        let mut args = vec!["plan", "--graph", alexnet.as_str(), "--uplink-mbps", "1"];
        args.extend_from_slice(extra);
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
    };
    let owned = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    // Each case: the arguments, and what the one-line error must mention.
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            owned(&["plan", "--graph", &alexnet, "--uplink-mbps", "fast"]),
            vec!["--uplink-mbps"],
        ),
        (
            owned(&[
                "plan",
                "--graph",
                "/no/such/graph.json",
                "--uplink-mbps",
                "1",
            ]),
            vec!["/no/such/graph.json"],
        ),
        (
            owned(&["plan", "--graph", &alexnet, "--uplink-mbps", "0"]),
            vec!["--uplink-mbps 0"],
        ),
        (
            owned(&["plan", "--graph", &alexnet, "--uplink-mbps", "-2"]),
            vec!["--uplink-mbps -2"],
        ),
        (
            owned(&["plan", "--graph", &alexnet, "--uplink-mbps", "1e-300"]),
            vec!["1e-300"],
        ),
        (plan(&["--load-factor", "0.5"]), vec!["--load-factor"]),
        (
            plan(&["--objective", "energy", "--device-class", "toaster"]),
            vec!["toaster", "raspberry-pi"],
        ),
        (
            plan(&["--objective", "energy", "--compute-w=-1"]),
            vec!["--compute-w -1"],
        ),
        (plan(&["--idle-w", "1"]), vec!["--objective energy"]),
        (
            plan(&["--device-class", "jetson"]),
            vec!["--objective energy"],
        ),
        (
            plan(&["--solver", "chain", "--allow-return"]),
            vec!["--solver dp"],
        ),
        (
            owned(&[
                "plan",
                "--graph",
                &resnet,
                "--uplink-mbps",
                "1",
                "--solver",
                "chain",
            ]),
            vec!["mincut"],
        ),
        (
            owned(&[
                "plan",
                "--graph",
                &resnet,
                "--uplink-mbps",
                "1",
                "--solver",
                "exhaustive",
            ]),
            vec!["mincut"],
        ),
        (
            owned(&["plan", "--uplink-mbps", "1"]),
            vec!["--graph <FILE>"],
        ),
        (
            owned(&["plan", "--grpah", &alexnet, "--uplink-mbps", "1"]),
            vec!["--graph"],
        ),
    ];
    for (args, needles) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = one_line_error(&args);
        for needle in needles {
            assert!(
                err.contains(needle),
                "{args:?}: {err:?} does not mention {needle:?}"
            );
        }
    }
}

#[test]
fn invalid_graphs_name_the_node() {
    let dir = std::env::temp_dir().join(format!("cutpoint-plan-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("cycle.json");
    std::fs::write(
        &path,
        r#"{"nodes": [
        {"id": "input", "inputs": [], "edge_ms": 0, "cloud_ms": 0, "out_bytes": 4},
        {"id": "a", "inputs": ["input", "b"], "edge_ms": 1, "cloud_ms": 1, "out_bytes": 4},
        {"id": "b", "inputs": ["a"], "edge_ms": 1, "cloud_ms": 1, "out_bytes": 4}]}"#,
    )
    .expect("write graph");
    let err = one_line_error(&[
        "plan",
        "--graph",
        &path.to_string_lossy(),
        "--uplink-mbps",
        "1",
    ]);
    assert!(
        err.contains("cycle") && (err.contains("`a`") || err.contains("`b`")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn help_teaches_with_examples() {
    let out = edge(&["plan", "--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Examples:") && text.contains("--uplink-mbps"),
        "{text}"
    );
}
