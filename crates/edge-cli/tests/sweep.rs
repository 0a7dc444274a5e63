//! `cutpoint-edge sweep` as a user runs it: the real binary, a real in-process cloud, a tiny
//! chain, and the files it promises.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod common;
use common::{json_output, one_line_error};

/// Runs `cutpoint-edge sweep ARGS --json` with its cache under `tmp`, checks that it succeeds, and
/// returns the report it printed.
fn sweep_json(tmp: &Path, args: &[&str]) -> Value {
    json_output(
        Command::new(env!("CARGO_BIN_EXE_cutpoint-edge"))
            .arg("sweep")
            .args(args)
            .arg("--json")
            .env("XDG_CACHE_HOME", tmp.join("cache"))
            .output()
            .expect("the binary runs"),
    )
}

#[test]
fn a_tiny_sweep_writes_well_formed_csv_and_json_with_every_cut_measured() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out_dir = tmp.path().join("grid");
    let printed = sweep_json(
        tmp.path(),
        &[
            "--model",
            "lenet",
            "--uplink-mbps",
            "0.5,200",
            "--edge-cpu",
            "0.5",
            "--repeats",
            "1",
            "--rtt-ms",
            "10",
            "--profile-samples",
            "8",
            "--shaping",
            "emulated",
            "--out",
            out_dir.to_str().expect("UTF-8 path"),
        ],
    );
    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("grid.json")).expect("grid.json"),
    )
    .expect("grid.json is JSON");
    assert_eq!(printed, written);

    let lenet_nodes = models::zoo::build("lenet").expect("lenet").len();
    let rows = printed["rows"].as_array().expect("rows");
    let cells = printed["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 2);
    // Every split point as raw f32, plus the cuts the planner would compress, compressed.
    let raw = |r: &&Value| !r["cut"].as_str().is_some_and(|c| c.contains(" ("));
    assert_eq!(rows.iter().filter(raw).count(), 2 * lenet_nodes);
    assert!(
        rows.iter().filter(|r| !raw(r)).all(|r| r["cut"]
            .as_str()
            .is_some_and(|c| c.ends_with(" (lossless)"))),
        "{printed}"
    );
    assert_eq!(printed["max_loss"], "exact");
    for cell in cells {
        let regret = cell["regret"].as_f64().expect("regret");
        assert!(regret >= 1.0);
        let best = cell["best"].as_str().expect("best");
        let marked: Vec<&Value> = rows
            .iter()
            .filter(|r| r["uplink_mbps"] == cell["uplink_mbps"] && r["best"] == true)
            .collect();
        assert_eq!(marked.len(), 1);
        assert_eq!(marked[0]["cut"], best);
    }
    assert_eq!(printed["summary"]["cells"], 2);
    assert_eq!(printed["rtt_ms"], 10.0);
    assert!(
        printed["shaping"]
            .as_str()
            .is_some_and(|s| s.starts_with("emulated")),
        "{printed}"
    );

    let png = std::fs::read(out_dir.join("grid.png")).expect("grid.png");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "grid.png is a PNG");
    let csv = std::fs::read_to_string(out_dir.join("grid.csv")).expect("grid.csv");
    assert_eq!(csv.lines().count(), rows.len() + 1);
    assert!(
        csv.lines().skip(1).all(|l| l.split(',').count() == 10),
        "{csv}"
    );
}

#[test]
fn bad_grids_are_one_line_errors() {
    let err = one_line_error(&["sweep", "--model", "lenet", "--edge-cpu", "1.5"]);
    assert!(err.contains("(0, 1]"), "{err}");
    let err = one_line_error(&["sweep", "--model", "lenet", "--rtt-ms=-5"]);
    assert!(err.contains("rtt_ms"), "{err}");
    let err = one_line_error(&["sweep", "--model", "lenet", "--uplink-mbps", "fast"]);
    assert!(err.contains("--uplink-mbps"), "{err}");
}

/// A chain whose input (3 x 112 x 112 floats, 150 528 bytes) is big enough for its upload to
/// show the link's rate: pool, flatten, linear 3 -> 10.
const WIDE_INPUT_SPEC: &str = r#"{
  "name": "wide-input",
  "input_shape": [3, 112, 112],
  "nodes": [
    {"id": "input", "inputs": [], "kind": "input"},
    {"id": "pool", "inputs": ["input"], "kind": "adaptive_avg_pool2d", "output_size": [1, 1]},
    {"id": "flatten", "inputs": ["pool"], "kind": "flatten"},
    {"id": "fc", "inputs": ["flatten"], "kind": "linear", "in_features": 3, "out_features": 10}
  ]
}"#;

/// Whether real shaping can run here: the cgroup-v1 CPU controller is mounted and this process
/// may make network namespaces (root with iproute2); the probe namespace is removed at once.
fn can_shape_for_real() -> bool {
    if !std::path::Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists() {
        return false;
    }
    let name = format!("cutpoint-probe-{}", std::process::id());
    let made = Command::new("ip")
        .args(["netns", "add", &name])
        .output()
        .is_ok_and(|o| o.status.success());
    if made {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
    }
    made
}

/// Run by `.ci/run` where it can shape (`cargo test -p edge-cli --test sweep -- --ignored`).
#[test]
#[ignore = "needs root, iproute2 and the cgroup-v1 cpu controller at /sys/fs/cgroup/cpu"]
fn a_real_shaping_cell_uploads_at_the_tc_rate() {
    assert!(
        can_shape_for_real(),
        "real shaping needs root, iproute2 and the cgroup-v1 cpu controller at /sys/fs/cgroup/cpu"
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let spec = tmp.path().join("wide.json");
    std::fs::write(&spec, WIDE_INPUT_SPEC).expect("write spec");
    let out_dir = tmp.path().join("grid");
    let report = sweep_json(
        tmp.path(),
        &[
            "--model-spec",
            spec.to_str().expect("UTF-8 path"),
            "--uplink-mbps",
            "4",
            "--edge-cpu",
            "0.5",
            "--rtt-ms",
            "0",
            "--repeats",
            "1",
            "--profile-samples",
            "8",
            "--shaping",
            "real",
            "--out",
            out_dir.to_str().expect("UTF-8 path"),
        ],
    );
    assert!(
        report["shaping"]
            .as_str()
            .is_some_and(|s| s.starts_with("real shaping")),
        "{report}"
    );
    let rows = report["rows"].as_array().expect("rows");
    let raw = rows
        .iter()
        .filter(|r| !r["cut"].as_str().is_some_and(|c| c.contains(" (")))
        .count();
    assert_eq!(
        raw, 4,
        "every split point of the chain, as raw f32: {report}"
    );
    // Cloud-only uploads the whole input; at 4 Mbit/s that takes 301 ms. The rest of the link
    // time is a round trip through the relay (no delay here) and the 40-byte answer, which
    // comes back unshaped.
    let cloud_only = rows
        .iter()
        .find(|r| r["cut"] == "cloud-only")
        .expect("cloud-only row");
    let transfer_ms = cloud_only["transfer_ms"].as_f64().expect("transfer_ms");
    let at_rate_ms = 3.0 * 112.0 * 112.0 * 4.0 * 8.0 / 4e6 * 1e3;
    assert!(
        (transfer_ms - at_rate_ms).abs() <= 0.2 * at_rate_ms,
        "measured {transfer_ms:.1} ms, the tc rate gives {at_rate_ms:.1} ms: {cloud_only}"
    );
    // No namespace outlives the sweep.
    let left = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(!left.lines().any(|l| l.starts_with("cutpoint-")), "{left}");
}
