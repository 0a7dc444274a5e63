//! `cutpoint-edge load` against a real cloud server: a `runtime::LocalCloud` on loopback QUIC
//! in the test process, the real binary as a fleet of edges.

use models::zoo;
use runtime::{CloudConfig, LocalCloud};
use serde_json::Value;

mod common;
use common::{ok, one_line_error};

#[test]
fn load_reports_every_request_as_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = runtime::async_runtime().expect("runtime");
    let cloud = {
        let _inside = runtime.enter();
        LocalCloud::start(CloudConfig::default(), &[]).expect("cloud starts")
    };
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    std::fs::write(path("token"), cloud.token().expose()).expect("token file");
    // Costs for LeNet's nodes, so that no profile is swept; the split is forced anyway.
    let net = zoo::build("lenet").expect("lenet");
    let mut graph: Value =
        serde_json::from_str(&ok(&["graph", "--model", "lenet"])).expect("graph JSON");
    for node in graph["nodes"].as_array_mut().expect("nodes") {
        let v = net
            .index_of(node["id"].as_str().expect("id"))
            .expect("node");
        node["edge_ms"] = (net.nodes()[v].spec().flops as f64 / 1e5).into();
        node["cloud_ms"] = (net.nodes()[v].spec().flops as f64 / 1e6).into();
    }
    std::fs::write(path("lenet.graph.json"), graph.to_string()).expect("graph file");
    let addr = cloud.addr().to_string();
    let (token, known, graph) = (
        path("token"),
        path("known_servers"),
        path("lenet.graph.json"),
    );
    // Every run: this server, this model, these costs.
    let common = [
        "load",
        "--connect",
        &addr,
        "--token-file",
        &token,
        "--known-servers",
        &known,
        "--model",
        "lenet",
        "--graph",
        &graph,
    ];
    let with = |more: &[&'static str]| -> Vec<&str> { [&common[..], more].concat() };
    let served = cloud.server().stats().served;
    let args = with(&[
        "--split",
        "cloud",
        "--clients",
        "4",
        "--requests",
        "5",
        "--json",
    ]);
    let report: Value = serde_json::from_str(&ok(&args)).expect("load prints JSON");
    assert_eq!(report["sent"], 20, "{report}");
    assert_eq!(report["answered"], 20, "{report}");
    assert_eq!(report["in_cloud"], 20, "{report}");
    assert_eq!(
        (report["lost"].as_u64(), report["wrong"].as_u64()),
        (Some(0), Some(0))
    );
    let latency = |key: &str| report["latency_ms"][key].as_f64().expect("latency");
    assert!(latency("p50") <= latency("p95") && latency("p95") <= latency("p99"));
    assert!(report["throughput_rps"].as_f64().expect("throughput") > 0.0);
    // The four warm-ups and the twenty requests, all on the server.
    assert_eq!(cloud.server().stats().served - served, 24);
    // The first connection pinned the server once, however many clients connected.
    let pinned = std::fs::read_to_string(&known).expect("pinned");
    assert_eq!(pinned.lines().count(), 1, "{pinned}");

    let error = one_line_error(&with(&["--clients", "0"]));
    assert!(error.contains("clients"), "{error}");
    runtime.block_on(cloud.stop());
}
