//! Cross-client batching on loopback against a real [`CloudServer`](runtime::CloudServer):
//! requests from different sessions for the same model run as one batch, at one cut or at
//! several (sharing the nodes all of them run), each client gets its own rows, and a request
//! for another model runs alone beside them. The batches form from requests waiting behind a
//! busy worker, so what forms does not depend on timing. Every output is checked against a
//! local run of the same input.

mod common;

use std::time::Duration;

use common::{Cloud, closure, input, lenet, load, local_forward, session, start};
use models::{HostTensor, Net, relative_difference, zoo};
use runtime::{CloudConfig, EdgeConfig, EdgeSession, SplitMode};

/// One client's request: its session, its input and the output a local run gives.
struct Client {
    session: EdgeSession,
    input: HostTensor,
    expected: HostTensor,
}

async fn client(
    cloud: &Cloud,
    dir: &std::path::Path,
    net: &Net,
    split: SplitMode,
    batch: usize,
    seed: u32,
) -> Client {
    // Room for waiting behind a slow request in a debug build.
    let config = EdgeConfig {
        request_timeout: Duration::from_secs(120),
        ..common::edge_config(split)
    };
    let mut session = session(cloud, dir, net, config).await;
    // A first request loads the model and measures the link; the one below is the one timed
    // together with the others.
    let warm = session
        .infer(input(net, 1, seed + 1000))
        .await
        .expect("warm-up");
    assert_eq!(warm.fallback, None, "the warm-up runs in the cloud");
    let input = input(net, batch, seed);
    let expected = local_forward(&load(net, 0), &input);
    Client {
        session,
        input,
        expected,
    }
}

/// Starts the hog's request, and once it runs, every client's; waits until all of those wait
/// behind it, so that the batches form from the queue; then checks every output against the
/// local run's and waits for the queue to drain (a member's answer can reach its client a
/// moment before the queue's books are closed on it).
async fn behind_the_hog(cloud: &Cloud, mut hog: Client, clients: Vec<Client>) {
    let waiting = clients.len();
    let hog = tokio::spawn(async move {
        let outcome = hog.session.infer(hog.input.clone()).await.expect("runs");
        (outcome, hog.expected)
    });
    common::wait_for("the hog runs", Duration::from_secs(60), || {
        cloud.server.stats().running == 1
    })
    .await;
    let mut tasks = Vec::new();
    for mut c in clients {
        tasks.push(tokio::spawn(async move {
            let outcome = c.session.infer(c.input.clone()).await.expect("runs");
            (outcome, c.expected)
        }));
    }
    common::wait_for(
        "every client waits behind the hog",
        Duration::from_secs(120),
        || cloud.server.stats().waiting == waiting,
    )
    .await;
    tasks.push(hog);
    for task in tasks {
        let (outcome, expected) = task.await.expect("task");
        assert_eq!(outcome.fallback, None, "served by the cloud");
        assert_eq!(outcome.output.shape(), expected.shape());
        let difference = relative_difference(&outcome.output, &expected);
        assert!(
            difference <= 1e-4,
            "{}: {difference}",
            outcome.cut_summary()
        );
    }
    common::wait_for("the queue drains", Duration::from_secs(10), || {
        let stats = cloud.server.stats();
        (stats.running, stats.waiting) == (0, 0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_and_lone_requests_each_get_their_own_result() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lenet = lenet();
    // A request that keeps the one worker busy while the others queue behind it.
    let hog = zoo::build_with_input("resnet18", vec![3, 112, 112]).expect("resnet18");
    // Seven samples fill a batch. No window: a batch takes the requests already waiting, so
    // what forms depends on the queue, not on timing.
    let config = CloudConfig {
        batch_max: 7,
        batch_wait: Duration::ZERO,
        ..CloudConfig::default()
    };
    let cloud = start(dir.path(), config, std::slice::from_ref(&hog)).await;
    let mid = closure(&lenet, lenet.len() / 2);
    // 32 samples: long enough that every client (which may first probe a link estimate gone
    // stale while the others warmed up) queues behind it, under the whole suite too.
    let hog = client(&cloud, dir.path(), &hog, SplitMode::CloudOnly, 32, 20).await;
    let mut clients = Vec::new();
    // Six samples for LeNet in the cloud: four clients, two of them sending batches of two.
    for (i, batch) in [1, 2, 1, 2].into_iter().enumerate() {
        clients.push(
            client(
                &cloud,
                dir.path(),
                &lenet,
                SplitMode::CloudOnly,
                batch,
                i as u32,
            )
            .await,
        );
    }
    // LeNet at another cut joins them for the nodes the whole batch runs.
    clients.push(client(&cloud, dir.path(), &lenet, SplitMode::Fixed(mid), 1, 10).await);
    let before = cloud.server.stats();
    behind_the_hog(&cloud, hog, clients).await;
    let after = cloud.server.stats();
    assert_eq!(
        after.served - before.served,
        6,
        "every request ran to its end"
    );
    // The hog alone (another model), and the five LeNet requests at two cuts together.
    assert_eq!(after.batches - before.batches, 2, "{after:?}");
    assert_eq!(after.largest_batch, 5, "{after:?}");
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_at_three_cuts_of_a_dag_share_one_batch() {
    let dir = tempfile::tempdir().expect("temp dir");
    // MobileNetV2's inverted residuals on 32×32 inputs, behind a ResNet-18 hog.
    let net = zoo::build_with_input("mobilenet_v2", vec![3, 32, 32]).expect("mobilenet_v2");
    let hog = zoo::build_with_input("resnet18", vec![3, 112, 112]).expect("resnet18");
    let config = CloudConfig {
        batch_wait: Duration::ZERO,
        ..CloudConfig::default()
    };
    let nets = [hog.clone(), net.clone()];
    let cloud = start(dir.path(), config, &nets).await;
    // A long hog (32 samples): the clients compute their edge parts before they queue.
    let hog = client(&cloud, dir.path(), &hog, SplitMode::CloudOnly, 32, 20).await;
    // Cloud-only, from a node inside the residual blocks (whose closure takes in a skip
    // connection's add), and from one later still; their shared nodes are the last cut's.
    let (early, late) = (net.len() / 3, 2 * net.len() / 3);
    let splits = [
        (SplitMode::CloudOnly, 1),
        (SplitMode::Fixed(closure(&net, early)), 2),
        (SplitMode::Fixed(closure(&net, late)), 1),
    ];
    let mut clients = Vec::new();
    for (i, (split, batch)) in splits.into_iter().enumerate() {
        clients.push(client(&cloud, dir.path(), &net, split, batch, 30 + i as u32).await);
    }
    let before = cloud.server.stats();
    behind_the_hog(&cloud, hog, clients).await;
    let after = cloud.server.stats();
    assert_eq!(after.served - before.served, 4);
    assert_eq!(after.batches - before.batches, 2, "{after:?}");
    assert_eq!(after.largest_batch, 3, "{after:?}");
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_batching_off_every_request_runs_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let net = lenet();
    let config = CloudConfig {
        batch_max: 1,
        ..CloudConfig::default()
    };
    let cloud = start(dir.path(), config, &[]).await;
    let mut clients = Vec::new();
    for i in 0..4 {
        clients.push(client(&cloud, dir.path(), &net, SplitMode::CloudOnly, 1, i).await);
    }
    let before = cloud.server.stats();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| tokio::spawn(async move { (c.session.infer(c.input).await, c.expected) }))
        .collect();
    for task in tasks {
        let (outcome, expected) = task.await.expect("task");
        let outcome = outcome.expect("runs");
        assert!(relative_difference(&outcome.output, &expected) <= 1e-4);
    }
    let after = cloud.server.stats();
    assert_eq!(after.served - before.served, 4);
    assert_eq!(after.batches - before.batches, 4);
    assert_eq!(after.largest_batch, 1);
    assert_eq!(after.wait_ms, 0.0, "an idle unbatched server has no window");
    cloud.stop().await;
}
