//! The cloud's own costs and load, over real loopback QUIC: a server measures and publishes
//! its per-node costs, sessions plan with them (fetched once per server and weights), a
//! model's load time stays out of compute, and a busy server's expected wait moves the cut
//! to the edge and back.

mod common;

use std::time::Duration;

use common::{Cloud, client_config, edge_config, input, lenet, load, small_resnet, start};
use models::{Net, zoo};
use partition_core::Graph;
use runtime::{CloudConfig, CloudCostSource, EdgeConfig, EdgeSession, SplitMode};

/// LeNet's costs as a pessimist would assume them: the edge at 10 MFLOP/s, the cloud a
/// thousand times slower still. Planned with these, nothing goes to the cloud.
fn pessimistic(net: &Net) -> Graph {
    let edge_ms: Vec<f64> = net
        .nodes()
        .iter()
        .map(|n| n.spec().flops as f64 / 1e4)
        .collect();
    let cloud_ms: Vec<f64> = edge_ms.iter().map(|ms| ms * 1000.0).collect();
    net.graph(&edge_ms, &cloud_ms).expect("graph")
}

/// Settings that plan for a fast link, with or without the server's published costs.
fn config(use_published_costs: bool) -> EdgeConfig {
    EdgeConfig {
        uplink_mbps: Some(1000.0),
        use_published_costs,
        ..edge_config(SplitMode::Auto)
    }
}

async fn session(cloud: &Cloud, dir: &std::path::Path, config: EdgeConfig) -> EdgeSession {
    let net = lenet();
    let mut session = EdgeSession::new(load(&net, 0), pessimistic(&net), config).expect("session");
    session
        .connect(client_config(cloud, dir))
        .await
        .expect("connects");
    session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_plans_with_the_costs_the_cloud_publishes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cloud = start(dir.path(), CloudConfig::default(), &[]).await;
    let net = lenet();

    // Told its costs are authoritative, the session keeps the pessimist's and stays home.
    let mut given = session(&cloud, dir.path(), config(false)).await;
    assert_eq!(given.cloud_cost_source(), &CloudCostSource::Given);
    let outcome = given.infer(input(&net, 1, 1)).await.expect("runs");
    assert_eq!(outcome.cut_kind(), "edge-only");
    assert_eq!(cloud.server.costs_published(), 0);

    // Learning the cloud's real costs, it sends the work there.
    let mut learned = session(&cloud, dir.path(), config(true)).await;
    assert!(
        matches!(
            learned.cloud_cost_source(),
            CloudCostSource::Published { .. }
        ),
        "{:?}",
        learned.cloud_cost_source()
    );
    assert_eq!(cloud.server.costs_published(), 1);
    let client = learned.client().expect("connected");
    let table = client
        .costs(net.name(), learned.weights_hash())
        .await
        .expect("published");
    assert_eq!(table.nodes.len(), net.len());
    for node in &table.nodes {
        let v = learned.graph().index_of(&node.id).expect("a node");
        assert_eq!(learned.graph().cloud_ms(v), node.ms, "{}", node.id);
    }
    let outcome = learned.infer(input(&net, 1, 1)).await.expect("runs");
    assert_ne!(outcome.cut_kind(), "edge-only", "{}", outcome.cut_summary());
    assert_eq!(outcome.fallback, None);

    // Other weights are refused, not priced with this model's table.
    let other = client.costs(net.name(), "not-these-weights").await;
    assert!(other.is_err());
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costs_are_fetched_once_per_server_and_again_from_another() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = start(dir.path(), CloudConfig::default(), &[]).await;
    let mut session = session(&first, dir.path(), config(true)).await;
    assert_eq!(first.server.costs_published(), 1);
    // The same server again (a reconnect): the cached table serves.
    session
        .connect(client_config(&first, dir.path()))
        .await
        .expect("reconnects");
    assert_eq!(first.server.costs_published(), 1);
    let CloudCostSource::Published { fingerprint, .. } = session.cloud_cost_source().clone() else {
        panic!("published costs expected");
    };
    assert_eq!(fingerprint, first.fingerprint.to_string());

    // Another server (another certificate) is asked for its own.
    let other_dir = tempfile::tempdir().expect("temp dir");
    std::fs::copy(dir.path().join("token"), other_dir.path().join("token")).expect("token");
    let second = start(other_dir.path(), CloudConfig::default(), &[]).await;
    assert_ne!(second.fingerprint, first.fingerprint);
    session
        .connect(client_config(&second, other_dir.path()))
        .await
        .expect("connects");
    assert_eq!(second.server.costs_published(), 1);
    let CloudCostSource::Published { fingerprint, .. } = session.cloud_cost_source().clone() else {
        panic!("published costs expected");
    };
    assert_eq!(fingerprint, second.fingerprint.to_string());
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loading_a_model_is_reported_apart_from_compute() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cloud = start(dir.path(), CloudConfig::default(), &[]).await;
    let net = lenet();
    let config = EdgeConfig {
        use_published_costs: false,
        ..edge_config(SplitMode::CloudOnly)
    };
    let mut session = EdgeSession::new(load(&net, 0), pessimistic(&net), config).expect("session");
    session
        .connect(client_config(&cloud, dir.path()))
        .await
        .expect("connects");
    // The first request loads LeNet (and measures its costs); the second finds it loaded.
    let first = session.infer(input(&net, 1, 1)).await.expect("served");
    let second = session.infer(input(&net, 1, 2)).await.expect("served");
    assert_eq!(
        (first.fallback.as_ref(), second.fallback.as_ref()),
        (None, None)
    );
    assert!(first.measured.load_ms > 0.0, "{:?}", first.measured);
    assert_eq!(second.measured.load_ms, 0.0);
    // Loading measured fourteen whole passes; the service-time mean holds only compute.
    let stats = cloud.server.stats();
    let mean = stats.mean_service_ms.expect("two served");
    assert!(
        mean < first.measured.load_ms,
        "{mean} ≥ {}",
        first.measured.load_ms
    );
    cloud.stop().await;
}

/// Models preloaded together are measured together, in rounds of one pass of each, and each
/// publishes a cost for every node; an unknown model is refused before anything loads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_preloaded_together_each_publish_their_costs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let resnet = small_resnet();
    let cloud = start(
        dir.path(),
        CloudConfig::default(),
        std::slice::from_ref(&resnet),
    )
    .await;
    let net = lenet();
    let unknown = cloud
        .server
        .preload_all(&[net.name(), "no-such-model"])
        .await
        .expect_err("an unknown model");
    let message = unknown.to_string();
    assert!(
        message.contains("no-such-model") && message.contains("resnet18"),
        "{message}"
    );
    let loaded = cloud
        .server
        .preload_all(&[net.name(), resnet.name()])
        .await
        .expect("preloads");
    // Preloading again loads nothing new: the same weights.
    let again = cloud.server.preload(resnet.name()).await.expect("loaded");
    assert_eq!(again, loaded[1].weights_hash);
    let session = session(&cloud, dir.path(), config(true)).await;
    let client = session.client().expect("connected");
    for (net, model) in [&net, &resnet].into_iter().zip(&loaded) {
        assert_eq!(model.id, net.name());
        let table = client
            .costs(net.name(), &model.weights_hash)
            .await
            .expect("published");
        assert_eq!(table.nodes.len(), net.len(), "{}", net.name());
        assert!(table.method.contains("2 models"), "{}", table.method);
        assert!(
            table.method.contains("beyond its nodes"),
            "{}",
            table.method
        );
        assert!(table.nodes.iter().all(|n| n.ms.is_finite() && n.ms >= 0.0));
        let pass_ms: f64 = table.nodes.iter().map(|n| n.ms).sum();
        assert!(pass_ms > 0.0);
        assert_eq!(model.pass_ms, pass_ms, "{}", net.name());
    }
    cloud.stop().await;
}

/// How many hog requests fill the busy server's queue.
const HOGS: usize = 40;

/// A busy server's expected wait moves the cut to the edge, and back once it drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_cloud_moves_the_cut_to_the_edge_and_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A network that keeps the one worker busy for a while per request (tens of ms).
    let hog = zoo::build_with_input("resnet18", vec![3, 112, 112]).expect("resnet18");
    // Each hog runs alone (no batching), so that several queue behind one and the wait is
    // the unbatched queue's: 0 when idle, several hogs' service times when busy.
    let config = CloudConfig {
        workers: 1,
        queue_capacity: 64,
        batch_max: 1,
        ..CloudConfig::default()
    };
    let cloud = start(dir.path(), config, std::slice::from_ref(&hog)).await;
    cloud.server.preload(hog.name()).await.expect("loads");
    let net = lenet();
    // The edge takes 10 ms for the whole of LeNet, shared by FLOPs, and the cloud is a hundred
    // times faster: idle, the cloud wins. Three queued hogs wait far longer than 10 ms.
    let total_flops: f64 = net.nodes().iter().map(|n| n.spec().flops as f64).sum();
    let edge_ms: Vec<f64> = net
        .nodes()
        .iter()
        .map(|n| 10.0 * n.spec().flops as f64 / total_flops)
        .collect();
    let cloud_ms: Vec<f64> = edge_ms.iter().map(|ms| ms / 100.0).collect();
    let graph = net.graph(&edge_ms, &cloud_ms).expect("graph");
    let mut session = EdgeSession::new(
        load(&net, 0),
        graph,
        EdgeConfig {
            min_saving: 0.0,
            ..config_fast_link()
        },
    )
    .expect("session");
    session
        .connect(client_config(&cloud, dir.path()))
        .await
        .expect("connects");
    let idle = session.infer(input(&net, 1, 1)).await.expect("runs");
    assert_ne!(idle.cut_kind(), "edge-only", "{}", idle.cut_summary());
    assert_eq!(idle.wait_ms, 0.0);

    // Hog requests from another client fill the queue. They are many, so that the queue stays
    // busy for many polls however fast this machine serves one.
    let hog_model = load(&hog, 0);
    let hog_session = EdgeSession::new(
        hog_model,
        common::graph_of(&hog),
        edge_config(SplitMode::CloudOnly),
    )
    .expect("hog session");
    let hog_client = std::sync::Arc::new(
        transport::Client::connect(client_config(&cloud, dir.path()))
            .await
            .expect("hog connects"),
    );
    let hog_input = input(&hog, 1, 9);
    let mut hogs = Vec::new();
    for _ in 0..HOGS {
        let request = hog_request(&hog_session, &hog_input);
        let client = hog_client.clone();
        hogs.push(tokio::spawn(async move { client.infer(request).await }));
    }
    // Once one has finished, the server's mean service time is a hog's.
    common::wait_for(
        "a hog served and more queued",
        Duration::from_secs(120),
        || {
            let stats = cloud.server.stats();
            stats.served >= 2 && stats.waiting >= 3
        },
    )
    .await;
    // A status reply carries the wait; the next plan pays it and stays home.
    session
        .client()
        .expect("connected")
        .status()
        .await
        .expect("status");
    let busy = session.infer(input(&net, 1, 2)).await.expect("runs");
    assert!(busy.wait_ms > 0.0, "{}", busy.wait_ms);
    assert_eq!(busy.cut_kind(), "edge-only", "wait {} ms", busy.wait_ms);

    // Drained, the cloud is worth it again.
    for hog in hogs {
        hog.await.expect("joins").expect("a hog served");
    }
    session
        .client()
        .expect("connected")
        .status()
        .await
        .expect("status");
    let drained = session.infer(input(&net, 1, 3)).await.expect("runs");
    assert_eq!(drained.wait_ms, 0.0);
    assert_ne!(drained.cut_kind(), "edge-only", "{}", drained.cut_summary());
    cloud.stop().await;
}

/// Settings for a fast link with the session's own costs.
fn config_fast_link() -> EdgeConfig {
    config(false)
}

/// A cloud-only request of `input` for the hog network, as its session would send it.
fn hog_request(session: &EdgeSession, input: &models::HostTensor) -> transport::InferRequest {
    let net = session.model().net();
    let wire = runtime::to_wire(input, "input").expect("wire");
    transport::InferRequest {
        model_id: net.name().to_string(),
        weights_hash: session.weights_hash().to_string(),
        cloud_nodes: net.nodes()[1..]
            .iter()
            .map(|n| n.id().to_string())
            .collect(),
        boundary: [(net.nodes()[0].id().to_string(), wire)]
            .into_iter()
            .collect(),
        input_file: None,
    }
}
