//! Task queues over a real loopback server ([`LocalCloud`]): LeNet (a chain), ResNet-18 on
//! 32×32 inputs (a DAG) and a tiny network on ImageNet-sized inputs (for image files), priced
//! by FLOP-based cost graphs; and the connect-or-run-locally policy the queue connects with.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{edge_config, graph_of, lenet, load, small_resnet};
use models::{Net, SAMPLE_JPEG};
use partition_core::Objective;
use runtime::tasks::{
    QueueConfig, Task, TaskInput, TaskQueue, TaskRecord, TaskReport, TaskResult, random_tasks,
    read_tasks, task_networks,
};
use runtime::{CloudConfig, Costs, EdgeConfig, EdgeSession, LocalCloud, RuntimeError, SplitMode};
use transport::Token;

/// A small network on ImageNet-sized inputs, so that a task can give it a photograph.
fn tiny_image_net() -> Net {
    Net::from_spec_json(
        r#"{ "name": "tiny224", "input_shape": [3, 224, 224], "nodes": [
            {"id": "input", "inputs": [], "kind": "input"},
            {"id": "conv", "inputs": ["input"], "kind": "conv2d", "in_channels": 3,
             "out_channels": 8, "kernel_size": [8, 8], "stride": [8, 8]},
            {"id": "relu", "inputs": ["conv"], "kind": "relu"},
            {"id": "flatten", "inputs": ["relu"], "kind": "flatten"},
            {"id": "fc", "inputs": ["flatten"], "kind": "linear", "in_features": 6272,
             "out_features": 10}
        ] }"#,
    )
    .expect("spec")
}

/// FLOP-based cost graphs for `nets` (`graph_of`: 10 MFLOP/s on the edge, 20× on the cloud).
fn costs_of(nets: &[Net]) -> Costs {
    let mut costs = Costs::new();
    for net in nets {
        costs
            .add_graph(format!("{} FLOP costs", net.name()), graph_of(net))
            .expect("one graph per model");
    }
    costs
}

/// A queue with a session per network, planning with `split`.
fn queue_of(nets: &[Net], split: SplitMode, seed: u64) -> TaskQueue {
    let config = QueueConfig {
        seed,
        ..QueueConfig::default()
    };
    queue_with(nets, edge_config(split), config)
}

/// A queue with a session per network, each with `edge`'s settings.
fn queue_with(nets: &[Net], edge: EdgeConfig, config: QueueConfig) -> TaskQueue {
    let costs = costs_of(nets);
    costs.check(nets).expect("every network has costs");
    let mut queue = TaskQueue::new(config);
    for net in nets {
        let (session, origin) = costs.session(load(net, 0), edge.clone()).expect("session");
        queue.add(session, origin).expect("one session per model");
    }
    queue
}

/// A cloud on loopback serving the zoo and `nets`.
fn serve(nets: &[Net]) -> LocalCloud {
    LocalCloud::start(CloudConfig::default(), nets).expect("cloud starts")
}

/// Connects `queue` to `cloud` (no warnings), runs `tasks`, and checks that every record was
/// handed on once, in queue order, as its task finished.
async fn connect_and_run(queue: &mut TaskQueue, cloud: &LocalCloud, tasks: &[Task]) -> TaskReport {
    let warnings = queue
        .connect(cloud.client_config())
        .await
        .expect("connects");
    assert!(warnings.is_empty(), "{warnings:?}");
    let mut seen = Vec::new();
    let report = queue
        .run(tasks, |record| seen.push(record.index))
        .await
        .expect("runs");
    assert_eq!(
        seen,
        (1..=tasks.len()).collect::<Vec<_>>(),
        "one call per task, in queue order"
    );
    report
}

/// The cloud served exactly the tasks whose cut used it.
fn assert_served_what_used_the_cloud(report: &TaskReport, cloud: &LocalCloud) {
    let used_cloud = report
        .tasks
        .iter()
        .filter(|r| r.done().is_some_and(|d| d.cut.kind != "edge-only"))
        .count() as u64;
    assert_eq!(cloud.server().stats().served, used_cloud);
}

/// The records' fallback flags, in queue order.
fn fallbacks(records: &[TaskRecord]) -> Vec<bool> {
    records
        .iter()
        .map(|r| r.done().expect("ran").fallback.is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_over_a_chain_and_a_dag_records_every_task() {
    let resnet = small_resnet();
    let cloud = serve(std::slice::from_ref(&resnet));
    let tasks = random_tasks(10, &["lenet", "resnet18"], 3).expect("tasks");
    let nets = task_networks(&tasks, std::slice::from_ref(&resnet)).expect("networks");
    assert_eq!(nets.len(), 2, "both models drawn");
    let mut queue = queue_of(&nets, SplitMode::Auto, 0);
    // The models in the order first drawn (ResNet first for seed 3), with their costs' origin.
    let models: Vec<(String, String)> = queue
        .models()
        .into_iter()
        .map(|m| (m.model, m.costs))
        .collect();
    assert_eq!(models[0].0, tasks[0].model);
    for (model, costs) in &models {
        assert_eq!(costs, &format!("{model} FLOP costs"));
    }
    let report = connect_and_run(&mut queue, &cloud, &tasks).await;
    assert_eq!(report.tasks.len(), 10);
    for (record, task) in report.tasks.iter().zip(&tasks) {
        assert_eq!(record.model, task.model);
        assert_eq!(record.input, TaskInput::Seeded);
        let done = record.done().expect("ran");
        assert_eq!(done.fallback, None, "{record}");
        assert!(done.predicted_ms > 0.0 && done.measured_ms > 0.0);
        // The words and the report describe the same cut.
        let words = match done.cut.kind {
            "edge-only" => "edge-only",
            "cloud-only" => "cloud-only (",
            _ => "after ",
        };
        assert!(done.cut_summary.starts_with(words), "{record}");
        assert_eq!(
            done.cut.cloud_nodes.is_empty(),
            done.cut.kind == "edge-only"
        );
        let line = record.to_string();
        assert!(line.contains(&done.cut_summary) && line.contains(&task.model));
    }
    assert_served_what_used_the_cloud(&report, &cloud);

    let summary = &report.summary;
    assert_eq!(
        (summary.tasks, summary.completed, summary.failed),
        (10, 10, 0)
    );
    assert_eq!(summary.fallbacks, 0);
    let changes = report
        .tasks
        .iter()
        .filter(|r| r.done().is_some_and(|d| d.cut_changed))
        .count();
    assert_eq!(summary.cut_changes, changes);
    let latency = summary.latency_ms;
    let slowest = report
        .tasks
        .iter()
        .filter_map(|r| r.done().map(|d| d.measured_ms))
        .fold(0.0, f64::max);
    let (mean, p50, p95) = (
        latency.mean.expect("mean"),
        latency.p50.expect("p50"),
        latency.p95.expect("p95"),
    );
    assert!(mean > 0.0 && p50 <= p95 && p95 <= slowest);

    // The JSON `cutpoint-edge tasks --json` prints.
    let json = serde_json::to_value(&report).expect("JSON");
    assert_eq!(json["summary"]["failed"], 0);
    assert_eq!(json["tasks"][0]["index"], 1);
    assert_eq!(json["tasks"][0]["input"], serde_json::Value::Null);
    assert!(json["tasks"][0]["cut"]["crossing"].is_array());
    assert!(json["tasks"][0].get("cut_summary").is_none());
    assert!(json["tasks"][0].get("error").is_none());
    drop(queue);
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_queue_plans_for_the_stream_and_hands_records_on_in_order() {
    let resnet = small_resnet();
    let cloud = serve(std::slice::from_ref(&resnet));
    let tasks = random_tasks(12, &["lenet", "resnet18"], 5).expect("tasks");
    let nets = task_networks(&tasks, std::slice::from_ref(&resnet)).expect("networks");
    let edge = EdgeConfig {
        objective: Objective::Stream,
        ..edge_config(SplitMode::Auto)
    };
    let config = QueueConfig {
        pipeline: 3,
        ..QueueConfig::default()
    };
    let mut queue = queue_with(&nets, edge, config);
    let report = connect_and_run(&mut queue, &cloud, &tasks).await;
    for (record, task) in report.tasks.iter().zip(&tasks) {
        assert_eq!(record.model, task.model);
        let done = record.done().expect("ran");
        assert_eq!(done.fallback, None, "{record}");
        // The slowest stage of a plan is one part of its latency.
        let frame_ms = done.predicted_frame_ms.expect("planned for the stream");
        assert!(frame_ms > 0.0 && frame_ms <= done.predicted_ms, "{record}");
        assert_eq!(done.predicted_mj, None);
        assert!(
            record.to_string().contains("ms/frame predicted"),
            "{record}"
        );
    }
    assert_served_what_used_the_cloud(&report, &cloud);
    let summary = &report.summary;
    assert_eq!(
        (summary.completed, summary.failed, summary.pipeline),
        (12, 0, 3)
    );
    assert!(
        (summary.throughput_per_s - 12.0 * 1e3 / summary.wall_ms).abs() < 1e-9,
        "{summary}"
    );
    assert!(
        summary
            .to_string()
            .contains("pipelined, 3 frames in flight"),
        "{summary}"
    );

    // The lanes come back to the queue: it runs again, one task at a time as well.
    let again = queue.run(&tasks[..4], |_| {}).await.expect("runs again");
    assert_eq!(again.summary.completed, 4);
    drop(queue);
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_depth_out_of_range_is_refused_before_connecting() {
    let net = lenet();
    for depth in [0, runtime::tasks::MAX_PIPELINE + 1] {
        let config = QueueConfig {
            pipeline: depth,
            ..QueueConfig::default()
        };
        let mut queue = queue_with(
            std::slice::from_ref(&net),
            edge_config(SplitMode::Auto),
            config,
        );
        let err = queue
            .connect(runtime::Servers::new(Vec::new()))
            .await
            .expect_err("out of range");
        assert!(
            err.to_string().contains("frames in flight is out of range"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_finish_locally_once_the_cloud_stops() {
    let net = lenet();
    let cloud = serve(&[]);
    let mut queue = queue_of(std::slice::from_ref(&net), SplitMode::CloudOnly, 0);
    queue
        .connect(cloud.client_config())
        .await
        .expect("connects");
    let tasks = random_tasks(3, &["lenet"], 0).expect("tasks");
    let served = queue.run(&tasks, |_| {}).await.expect("runs");
    assert_eq!(fallbacks(&served.tasks), [false; 3]);
    assert_eq!(cloud.server().stats().served, 3);

    // The queue goes on with the same sessions after the cloud has gone.
    cloud.stop().await;
    let local = queue.run(&tasks, |_| {}).await.expect("runs");
    assert_eq!(fallbacks(&local.tasks), [true; 3]);
    assert_eq!(local.summary.fallbacks, 3);
    assert_eq!((local.summary.completed, local.summary.failed), (3, 0));
    let line = local.tasks[0].to_string();
    assert!(line.contains("fallback: "), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_and_tensor_tasks_change_the_cut_and_bad_inputs_fail_alone() {
    let dir = tempfile::tempdir().expect("scratch dir");
    let tiny = tiny_image_net();
    let cloud = serve(std::slice::from_ref(&tiny));
    std::fs::write(dir.path().join("cat.jpg"), SAMPLE_JPEG).expect("image");
    let queue_file = dir.path().join("queue.txt");
    std::fs::write(
        &queue_file,
        "# the photograph, then seeded inputs and files that cannot be used\n\
         tiny224 cat.jpg\n\
         tiny224\n\
         tiny224 missing.npy\n\
         lenet cat.jpg   # LeNet takes 1x32x32, not an image\n\
         tiny224 cat.jpg\n",
    )
    .expect("tasks file");
    let tasks = read_tasks(&queue_file).expect("parses");
    assert_eq!(
        tasks[0].input,
        TaskInput::Image(dir.path().join("cat.jpg")),
        "relative to the file's directory"
    );
    let nets = task_networks(&tasks, std::slice::from_ref(&tiny)).expect("networks");
    let mut queue = queue_of(&nets, SplitMode::CloudOnly, 0);
    queue
        .connect(cloud.client_config())
        .await
        .expect("connects");
    let report = queue.run(&tasks, |_| {}).await.expect("runs");

    let errors: Vec<Option<&str>> = report
        .tasks
        .iter()
        .map(|r| match &r.result {
            TaskResult::Failed { error } => Some(error.as_str()),
            TaskResult::Done(_) => None,
        })
        .collect();
    assert!(
        errors[2].is_some_and(|e| e.contains("missing.npy")),
        "{errors:?}"
    );
    assert!(
        errors[3].is_some_and(|e| e.contains("cat.jpg") && e.contains("`lenet`")),
        "{errors:?}"
    );
    assert_eq!(errors.iter().filter(|e| e.is_some()).count(), 2);
    // Cloud-only sends the file for an image and the tensor for a seeded input: every tiny224
    // task after its first changes the cut.
    let done: Vec<_> = report.tasks.iter().filter_map(TaskRecord::done).collect();
    assert!(done[0].cut.sends_file && done[0].cut_summary.contains("image file up"));
    assert!(!done[1].cut.sends_file && done[1].cut_summary.contains("up: input"));
    assert!(done[2].cut.sends_file);
    assert_eq!(
        done.iter().map(|d| d.cut_changed).collect::<Vec<_>>(),
        [false, true, true]
    );
    assert_eq!(done[0].cut.sent[0].bytes, SAMPLE_JPEG.len() as u64);
    let summary = &report.summary;
    assert_eq!(
        (summary.completed, summary.failed, summary.cut_changes),
        (3, 2, 2)
    );
    assert_eq!(summary.fallbacks, 0);
    let json = serde_json::to_value(&report.tasks[2]).expect("JSON");
    assert_eq!(
        json["input"],
        dir.path().join("missing.npy").display().to_string()
    );
    assert!(json["error"].is_string() && json.get("cut").is_none());
    drop(queue);
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_without_a_session_stops_the_queue_before_it_starts() {
    let mut queue = queue_of(&[lenet()], SplitMode::EdgeOnly, 0);
    let tasks = [
        Task {
            model: "lenet".into(),
            input: TaskInput::Seeded,
        },
        Task {
            model: "alexnet".into(),
            input: TaskInput::Seeded,
        },
    ];
    let mut calls = 0;
    let err = queue
        .run(&tasks, |_| calls += 1)
        .await
        .expect_err("no session for alexnet")
        .to_string();
    assert!(err.contains("`alexnet`") && err.contains("lenet"), "{err}");
    assert_eq!(calls, 0, "no task ran");
    let (session, _) = costs_of(&[lenet()])
        .session(load(&lenet(), 0), EdgeConfig::default())
        .expect("session");
    let err = queue
        .add(session, "again")
        .expect_err("a second lenet session");
    assert!(err.to_string().contains("one session per model"), "{err}");
}

/// A session for LeNet that has never connected.
fn lenet_session() -> EdgeSession {
    let net = lenet();
    EdgeSession::new(
        load(&net, 0),
        graph_of(&net),
        edge_config(SplitMode::CloudOnly),
    )
    .expect("session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cloud_is_a_warning_and_tasks_run_locally() {
    // A loopback port with nothing behind it.
    let addr = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port");
    let cloud = serve(&[]);
    let mut config = cloud.client_config();
    config.server = addr.to_string();
    config.connect_timeout = Duration::from_millis(500);
    let mut session = lenet_session();
    let warning = session
        .connect_or_run_locally(config.clone())
        .await
        .expect("not fatal")
        .expect("a warning");
    assert!(
        warning.contains(&addr.to_string()) && warning.contains("running locally"),
        "{warning}"
    );
    let outcome = session
        .infer(models::seeded_input(&lenet(), 1, 1).expect("input"))
        .await
        .expect("runs locally");
    assert!(outcome.fallback.is_some());

    // A queue connects the same way: one warning per model, then every task falls back.
    let mut queue = TaskQueue::new(QueueConfig::default());
    queue.add(lenet_session(), "FLOP costs").expect("session");
    let warnings = queue.connect(config).await.expect("not fatal");
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].starts_with("lenet: cannot reach the cloud"),
        "{warnings:?}"
    );
    let report = queue
        .run(&random_tasks(2, &["lenet"], 0).expect("tasks"), |_| {})
        .await
        .expect("runs");
    assert_eq!(report.summary.fallbacks, 2);
    drop(queue);
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reachable_cloud_connects_and_a_refusal_or_a_bad_address_is_an_error() {
    let cloud = serve(&[]);
    let mut session = lenet_session();
    let warning = session
        .connect_or_run_locally(cloud.client_config())
        .await
        .expect("connects");
    assert_eq!(warning, None);
    assert!(session.is_connected());

    let mut wrong = cloud.client_config();
    wrong.token = Token::parse("not-the-token-the-server-printed", "test").expect("token");
    let err = lenet_session()
        .connect_or_run_locally(wrong)
        .await
        .expect_err("refused");
    assert!(matches!(err, RuntimeError::Connect { .. }), "{err}");
    assert!(err.to_string().contains("token"), "{err}");

    let mut nowhere = cloud.client_config();
    nowhere.server = "no-such-host.invalid:4433".into();
    let err = lenet_session()
        .connect_or_run_locally(nowhere)
        .await
        .expect_err("does not resolve");
    assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
    drop(session);
    cloud.stop().await;
}

#[test]
fn a_tasks_file_that_cannot_be_read_says_which() {
    let err = read_tasks(Path::new("/nonexistent/queue.txt"))
        .expect_err("no such file")
        .to_string();
    assert!(
        err.contains("/nonexistent/queue.txt") && err.contains("cannot read"),
        "{err}"
    );
}
