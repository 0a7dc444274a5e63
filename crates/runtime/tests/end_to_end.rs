//! Collaborative inference over a real loopback QUIC server: split outputs equal local ones, and
//! the automatic cut is the solver's.

mod common;

use std::sync::Arc;

use common::{
    client_config, closure, edge_config, graph_of, input, lenet, load, local_forward, session,
    small_resnet, start,
};
use models::{Net, relative_difference};
use partition_core::{Hysteresis, Objective, Scenario, Solver};
use runtime::{CloudConfig, EdgeSession, SplitMode};
use transport::Shaper;

/// Edge-only, cloud-only, and the successor closures of nodes spread over the network.
fn cuts(net: &Net) -> Vec<SplitMode> {
    let n = net.len();
    let mut cuts = vec![SplitMode::EdgeOnly, SplitMode::CloudOnly];
    for v in [1, n / 5, 2 * n / 5, 3 * n / 5, 4 * n / 5, n - 1] {
        cuts.push(SplitMode::Fixed(closure(net, v.max(1))));
    }
    cuts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_inference_equals_a_local_forward_pass_at_every_cut() {
    let dir = tempfile::tempdir().expect("temp dir");
    let resnet = small_resnet();
    let cloud = start(
        dir.path(),
        CloudConfig::default(),
        std::slice::from_ref(&resnet),
    )
    .await;
    for net in [common::lenet(), resnet] {
        let expected = local_forward(&load(&net, 0), &input(&net, 2, 7));
        let mut session = session(&cloud, dir.path(), &net, edge_config(SplitMode::EdgeOnly)).await;
        let mut several_tensors = false;
        for cut in cuts(&net) {
            let served = cloud.server.stats().served;
            session.set_split(cut.clone()).expect("a valid cut");
            let outcome = session
                .infer(input(&net, 2, 7))
                .await
                .expect("request completes");
            assert_eq!(outcome.fallback, None, "{} at {cut}", net.name());
            let diff = relative_difference(&outcome.output, &expected);
            assert!(
                diff <= 1e-5,
                "{} at {cut}: relative difference {diff}",
                net.name()
            );
            // The cloud ran exactly the requests whose plan used it; edge-only never reached it.
            let remote = !outcome.cloud_nodes.is_empty();
            assert_eq!(
                cloud.server.stats().served,
                served + u64::from(remote),
                "{cut}"
            );
            if let SplitMode::Fixed(ids) = &cut {
                assert_eq!(&outcome.cloud_nodes, ids);
            }
            assert_eq!(outcome.predicted, *outcome.plan.breakdown());
            several_tensors |= outcome.plan.transfers().len() > 1;
        }
        // The DAG's cuts include one where a residual branch crosses beside the main path.
        assert_eq!(several_tensors, !net.is_chain(), "{}", net.name());
    }
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_split_is_the_solvers_plan_for_the_link_and_load_used() {
    let dir = tempfile::tempdir().expect("temp dir");
    let resnet = small_resnet();
    let cloud = start(
        dir.path(),
        CloudConfig::default(),
        std::slice::from_ref(&resnet),
    )
    .await;
    for net in [common::lenet(), resnet] {
        let expected = local_forward(&load(&net, 0), &input(&net, 1, 3));
        let mut session = session(&cloud, dir.path(), &net, edge_config(SplitMode::Auto)).await;
        let mut replica = Hysteresis::default();
        let mut placements = Vec::new();
        for uplink_mbps in [1000.0, 0.001, 0.0011, 3.0, 1000.0] {
            session
                .set_uplink_override(Some(uplink_mbps))
                .expect("in range");
            let outcome = session.infer(input(&net, 1, 3)).await.expect("completes");
            assert_eq!(outcome.fallback, None);
            assert_eq!(outcome.link.uplink_mbps(), uplink_mbps);
            assert!(relative_difference(&outcome.output, &expected) <= 1e-5);
            let scenario = Scenario::new(outcome.link, Objective::Latency, 1.0)
                .and_then(|s| s.with_wait(outcome.wait_ms))
                .expect("scenario");
            // The graph the session planned on: its own, with this request's encodings.
            assert_eq!(outcome.graph.len(), session.graph().len());
            let solved = Solver::Auto
                .solve(&outcome.graph, &scenario)
                .expect("solves");
            let chosen = replica
                .choose(&outcome.graph, &scenario, solved)
                .expect("hysteresis");
            assert!(
                outcome.plan.same_placement(&chosen.plan),
                "{} at {uplink_mbps} Mbit/s: session cut {:?}, solver cut {:?}",
                net.name(),
                outcome.cloud_nodes,
                chosen.plan.cloud_nodes()
            );
            assert_eq!(outcome.switched, chosen.switched);
            placements.push(outcome.plan.placement().to_vec());
        }
        // The link decides: a fast uplink and a slow one give different cuts.
        assert_ne!(placements[0], placements[1], "{}", net.name());
    }
    cloud.stop().await;
}

/// The lanes of a session are one device: over one 20 Mbit/s uplink, uploads that overlap
/// each measure the link, as a session alone does, and not their share of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_of_a_session_measure_the_uplink_they_share() {
    let dir = tempfile::tempdir().expect("temp dir");
    let net = lenet();
    let cloud = start(
        dir.path(),
        CloudConfig::default(),
        std::slice::from_ref(&net),
    )
    .await;
    let mut config = client_config(&cloud, dir.path());
    config.uplink_shaper = Some(Arc::new(Shaper::new(20.0, 0).expect("shaper")));
    let new_session = || {
        EdgeSession::new(
            load(&net, 0),
            graph_of(&net),
            edge_config(SplitMode::CloudOnly),
        )
        .expect("session")
    };
    let uplink = |session: &EdgeSession| {
        let client = session.client().expect("connected");
        async move {
            client.probe(512 * 1024, 0).await.expect("probe");
            client.link().uplink.expect("measured").mbps
        }
    };
    let mut alone = new_session();
    alone.connect(config.clone()).await.expect("connects");
    let alone = uplink(&alone).await;
    let mut first = new_session();
    first.connect(config.clone()).await.expect("connects");
    let mut second = first.lane();
    second.connect(config).await.expect("connects");
    let (a, b) = tokio::join!(uplink(&first), uplink(&second));
    for up in [a, b] {
        assert!(
            up > 0.8 * alone && up < 1.25 * alone,
            "a lane measured {up} Mbit/s; a session alone {alone}"
        );
    }
    cloud.stop().await;
}
