//! `cutpoint-edge sweep` as a user runs it: the real binary, a real in-process cloud, a tiny
//! chain, and the files it promises.

use std::process::Command;

use serde_json::Value;

mod common;
use common::one_line_error;

#[test]
fn a_tiny_sweep_writes_well_formed_csv_and_json_with_every_cut_measured() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out_dir = tmp.path().join("grid");
    let out = Command::new(env!("CARGO_BIN_EXE_cutpoint-edge"))
        .args([
            "sweep",
            "--model",
            "lenet",
            "--uplink-mbps",
            "0.5,200",
            "--edge-cpu",
            "0.5",
        ])
        .args([
            "--repeats",
            "1",
            "--rtt-ms",
            "10",
            "--profile-samples",
            "8",
            "--json",
            "--out",
        ])
        .arg(&out_dir)
        .env("XDG_CACHE_HOME", tmp.path().join("cache"))
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("grid.json")).expect("grid.json"),
    )
    .expect("grid.json is JSON");
    assert_eq!(printed, written);

    let lenet_nodes = models::zoo::build("lenet").expect("lenet").len();
    let rows = printed["rows"].as_array().expect("rows");
    let cells = printed["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 2);
    assert_eq!(rows.len(), 2 * lenet_nodes);
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
