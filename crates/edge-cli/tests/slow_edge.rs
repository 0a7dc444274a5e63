//! A slow edge and a fast cloud on one machine: `cutpoint-edge run` under a cgroup-v1 CPU
//! quota, timing its own layers as it runs there (`--measure-edge`), against a cloud in this
//! test process with no quota that publishes the costs it measured on itself. Needs root and
//! the cgroup-v1 `cpu` controller; `.ci/run` runs it where it can.

use std::path::Path;
use std::process::Command;

use lab::testbed::CpuCgroup;
use models::{Net, zoo};
use runtime::{CloudConfig, LocalCloud};
use serde_json::Value;

mod common;
use common::json_output;

/// The CPUs the edge gets: a tenth of one, so that it is about ten times slower than the cloud.
const EDGE_CPUS: f64 = 0.1;

/// ResNet-18 on 32×32 inputs, under its own name: enough work per layer for the quota to show.
fn small_resnet() -> Net {
    let net = zoo::build_with_input("resnet18", vec![3, 32, 32]).expect("resnet18");
    let mut spec = net.to_spec();
    spec.name = "resnet18_32".into();
    Net::from_spec(&spec).expect("renamed resnet18")
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

/// `cutpoint-edge run ARGS --json`, started inside `cgroup` (the shell joins it, then becomes
/// the edge), and its report.
fn run_in(cgroup: &CpuCgroup, args: &[&str]) -> Value {
    let procs = cgroup.dir().join("cgroup.procs");
    json_output(
        Command::new("sh")
            .arg("-c")
            .arg(r#"echo $$ > "$0" && exec "$@""#)
            .arg(&procs)
            .arg(env!("CARGO_BIN_EXE_cutpoint-edge"))
            .arg("run")
            .args(args)
            .arg("--json")
            .output()
            .expect("the edge runs"),
    )
}

/// Run by `.ci/run` as root where the cgroup-v1 cpu controller is mounted
/// (`cargo test -p edge-cli --test slow_edge -- --ignored`).
#[test]
#[ignore = "needs root and the cgroup-v1 cpu controller at /sys/fs/cgroup/cpu"]
fn a_slow_edge_offloads_at_100_mbits_because_it_learned_the_clouds_costs() {
    assert!(
        Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists(),
        "this test needs the cgroup-v1 cpu controller at /sys/fs/cgroup/cpu"
    );
    let cgroup = CpuCgroup::create("slow-edge").expect("a CPU cgroup (needs root)");
    cgroup.set_cpus(EDGE_CPUS).expect("the quota");

    let dir = tempfile::tempdir().expect("temp dir");
    let net = small_resnet();
    let spec = dir.path().join("resnet.spec.json");
    std::fs::write(&spec, net.to_spec().to_json()).expect("spec");
    let runtime = runtime::async_runtime().expect("runtime");
    let cloud = {
        let _inside = runtime.enter();
        LocalCloud::start(CloudConfig::default(), std::slice::from_ref(&net)).expect("cloud")
    };
    let token = dir.path().join("token");
    std::fs::write(&token, cloud.token().expose()).expect("token file");
    let addr = cloud.addr().to_string();
    let known = dir.path().join("known_servers");
    let base = [
        "--connect",
        &addr,
        "--token-file",
        s(&token),
        "--known-servers",
        s(&known),
        "--model-spec",
        s(&spec),
        "--measure-edge",
        "--uplink-mbps",
        "100",
    ];

    // Learning the cloud's own costs, the slow edge sends the work there.
    let learned = run_in(&cgroup, &base);
    let with_no_costs: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--no-published-costs"])
        .collect();
    // Told to ignore them, it assumes the cloud is as slow as itself and keeps everything.
    let assumed = run_in(&cgroup, &with_no_costs);
    runtime.block_on(cloud.stop());
    for (label, v) in [("learned", &learned), ("assumed", &assumed)] {
        eprintln!(
            "{label}: {} plan, predicted {} ms {}, measured {}",
            v["cut"]["kind"], v["predicted_ms"]["total"], v["predicted_ms"], v["measured_ms"]
        );
    }

    let cloud_source = |v: &Value| v["costs"]["cloud"].as_str().unwrap_or("").to_string();
    assert!(
        cloud_source(&learned).starts_with("published by the server"),
        "{learned}"
    );
    assert_ne!(learned["cut"]["kind"], "edge-only", "{learned}");
    assert_eq!(learned["fallback"], Value::Null, "{learned}");
    assert!(
        learned["measured_ms"]["cloud"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0),
        "the cloud computed: {learned}"
    );
    assert!(
        cloud_source(&assumed).starts_with("as given with the edge's"),
        "{assumed}"
    );
    assert_eq!(assumed["cut"]["kind"], "edge-only", "{assumed}");
    // Both runs priced the edge by timing it under the quota.
    for v in [&learned, &assumed] {
        assert!(
            v["costs"]["edge"]
                .as_str()
                .is_some_and(|e| e.starts_with("measured on this device")),
            "{v}"
        );
        assert_eq!(v["link"]["planned"]["uplink_mbps"], 100.0, "{v}");
    }
}
