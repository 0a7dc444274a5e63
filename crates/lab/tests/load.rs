//! The load generator against a real in-process cloud on loopback: 64 sessions, each with its
//! own connection, 100 requests each, every answer checked against a local run.

use std::time::Duration;

use lab::{LoadConfig, run_load};
use models::{Backend, Net, zoo};
use runtime::{
    CloudConfig, DEFAULT_SEED, EdgeConfig, EdgeSession, LoadedModel, LocalCloud, Servers,
    SplitMode, WeightsSource,
};

/// A session for `net` that sends everything but the input to the cloud.
fn cloud_session(net: &Net) -> Result<EdgeSession, lab::LabError> {
    let model = LoadedModel::load(
        net.clone(),
        &WeightsSource::Seeded(DEFAULT_SEED),
        Backend::Flex,
    )?;
    let ms: Vec<f64> = net
        .nodes()
        .iter()
        .map(|n| n.spec().flops as f64 / 1e6)
        .collect();
    let graph = net.graph(&ms, &ms)?;
    let config = EdgeConfig {
        split: SplitMode::CloudOnly,
        use_published_costs: false,
        ..EdgeConfig::default()
    };
    Ok(EdgeSession::new(model, graph, config)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_lose_nothing_and_get_right_answers() {
    let net = zoo::build("lenet").expect("lenet");
    // Room in the queue for every client, so that the server answers them all.
    let cloud = LocalCloud::start(
        CloudConfig {
            queue_capacity: 64,
            ..CloudConfig::default()
        },
        &[],
    )
    .expect("cloud starts");
    let config = LoadConfig {
        clients: 64,
        requests: 100,
        timeout: Duration::from_secs(1800),
        ..LoadConfig::default()
    };
    let report = run_load(
        || cloud_session(&net),
        &Servers::from(cloud.client_config()),
        &config,
    )
    .await
    .expect("the load runs");
    println!("{}", report.render());
    assert_eq!(report.sent, 6400, "{report:?}");
    assert_eq!(
        (report.lost, report.wrong, report.not_sent),
        (0, 0, 0),
        "{report:?}"
    );
    assert_eq!(report.answered, 6400);
    assert_eq!(
        report.in_cloud + report.edge_only + report.fallbacks,
        report.answered
    );
    assert_eq!(report.busy, 0, "65 places for 64 clients: {report:?}");
    let stats = cloud.server().stats();
    // Warm-ups and measured requests that ran in the cloud.
    assert!(stats.served >= report.in_cloud, "{stats:?}");
    assert!(report.in_cloud > 0, "{report:?}");
    assert!(
        stats.batches < stats.served,
        "64 clients on one worker share batches: {stats:?}"
    );
    assert!(report.latency_ms.p50 <= report.latency_ms.p99);
    cloud.stop().await;
}
