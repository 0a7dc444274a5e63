//! Cloud throughput with many edges at once: cross-client batching on against off.
//!
//! For each model, split and client count it starts an in-process cloud on loopback (one
//! worker, a queue with room for every client, so that no request is refused), runs the load
//! generator ([`lab::run_load`]: every client its own session and connection, requests one
//! after another, every answer checked against a local run), once with batching off
//! (`batch_max` 1) and once on (the defaults, or `CUTPOINT_BENCH_BATCH_MAX` and
//! `CUTPOINT_BENCH_BATCH_WAIT_MS`), alternating which goes first, and prints one line each:
//! throughput, p50 and p99 latency, and the mean batch the server formed.
//!
//! ```sh
//! cargo bench -p lab --bench batching
//! CUTPOINT_BENCH_MODELS=alexnet,vgg16@64 CUTPOINT_BENCH_CLIENTS=32 cargo bench -p lab --bench batching
//! ```
//!
//! Settings (environment): `CUTPOINT_BENCH_MODELS` (zoo names, `NAME@SIZE` for a square input
//! of that size; default `lenet,resnet18@64,alexnet`), `CUTPOINT_BENCH_CLIENTS` (default
//! `16,32`), `CUTPOINT_BENCH_REQUESTS` (per client, default 10), `CUTPOINT_BENCH_SPLITS`
//! (`cloud`, `mid` — the successor closure of the middle node —, default `cloud,mid`). The
//! clients run in the same process as the server: at a split their edge parts compete with it
//! for the cores.

use std::collections::BTreeSet;
use std::time::Duration;

mod common;

use common::env_number;
use lab::{LabError, LoadConfig, LoadReport, run_load};
use models::{Backend, Net, zoo};
use runtime::{
    CloudConfig, DEFAULT_BATCH_MAX, DEFAULT_BATCH_WAIT, DEFAULT_SEED, EdgeConfig, EdgeSession,
    LoadedModel, LocalCloud, Servers, SplitMode, WeightsSource,
};

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn build(spec: &str) -> Net {
    let built = match spec.split_once('@') {
        Some((name, size)) => {
            let size: usize = size
                .parse()
                .unwrap_or_else(|_| panic!("`{spec}`: the size after @ is not a number"));
            zoo::build_with_input(name, vec![3, size, size])
        }
        None => zoo::build(spec),
    };
    built.unwrap_or_else(|e| panic!("model `{spec}`: {e}"))
}

/// The cloud node set of `split`: `cloud` (all but the input) or `mid` (the successor closure
/// of the middle node).
fn split_mode(net: &Net, split: &str) -> SplitMode {
    match split {
        "cloud" => SplitMode::CloudOnly,
        "mid" => {
            let mut set = BTreeSet::from([net.len() / 2]);
            let mut stack = vec![net.len() / 2];
            while let Some(u) = stack.pop() {
                for &w in net.consumers(u) {
                    if set.insert(w) {
                        stack.push(w);
                    }
                }
            }
            SplitMode::Fixed(
                set.into_iter()
                    .map(|u| net.nodes()[u].id().to_string())
                    .collect(),
            )
        }
        other => panic!("split `{other}`: use cloud or mid"),
    }
}

/// One load run against a fresh cloud with `batch_max` and `batch_wait`; returns the report
/// and the mean batch the server formed.
async fn measure(
    net: &Net,
    model: &LoadedModel,
    split: &SplitMode,
    clients: usize,
    requests: usize,
    batching: (usize, Duration),
) -> (LoadReport, f64) {
    let cloud = LocalCloud::start(
        CloudConfig {
            queue_capacity: clients,
            batch_max: batching.0,
            batch_wait: batching.1,
            ..CloudConfig::default()
        },
        std::slice::from_ref(net),
    )
    .expect("cloud starts");
    cloud
        .server()
        .preload(net.name())
        .await
        .expect("model loads");
    let ms: Vec<f64> = net
        .nodes()
        .iter()
        .map(|n| n.spec().flops as f64 / 1e6)
        .collect();
    let graph = net.graph(&ms, &ms).expect("graph");
    let make = || -> Result<EdgeSession, LabError> {
        let config = EdgeConfig {
            split: split.clone(),
            use_published_costs: false,
            request_timeout: Duration::from_secs(600),
            ..EdgeConfig::default()
        };
        Ok(EdgeSession::new(model.clone(), graph.clone(), config)?)
    };
    let config = LoadConfig {
        clients,
        requests,
        timeout: Duration::from_secs(1800),
        ..LoadConfig::default()
    };
    let before = cloud.server().stats();
    let report = run_load(make, &Servers::from(cloud.client_config()), &config)
        .await
        .expect("the load runs");
    let after = cloud.server().stats();
    let batches = (after.batches - before.batches).max(1);
    let mean_batch = (after.served - before.served) as f64 / batches as f64;
    cloud.stop().await;
    (report, mean_batch)
}

fn main() {
    let models = env_list("CUTPOINT_BENCH_MODELS", "lenet,resnet18@64,alexnet");
    let clients: Vec<usize> = env_list("CUTPOINT_BENCH_CLIENTS", "16,32")
        .iter()
        .map(|c| c.parse().expect("CUTPOINT_BENCH_CLIENTS: numbers"))
        .collect();
    let splits = env_list("CUTPOINT_BENCH_SPLITS", "cloud,mid");
    let requests = env_number("CUTPOINT_BENCH_REQUESTS", 10usize);
    let on = (
        env_number("CUTPOINT_BENCH_BATCH_MAX", DEFAULT_BATCH_MAX),
        Duration::from_secs_f64(
            env_number(
                "CUTPOINT_BENCH_BATCH_WAIT_MS",
                DEFAULT_BATCH_WAIT.as_secs_f64() * 1e3,
            ) / 1e3,
        ),
    );
    let off = (1, Duration::ZERO);
    let runtime = runtime::async_runtime().expect("a Tokio runtime");
    println!(
        "batching on: up to {} samples within {} ms; one worker; {requests} requests per client",
        on.0,
        on.1.as_secs_f64() * 1e3
    );
    println!(
        "{:<14} {:<6} {:>7} {:>9} {:>10} {:>9} {:>9} {:>10} {:>8}",
        "model",
        "split",
        "clients",
        "batching",
        "req/s",
        "p50 ms",
        "p99 ms",
        "mean batch",
        "speed-up"
    );
    let mut round = 0;
    for spec in &models {
        let net = build(spec);
        let model = LoadedModel::load(
            net.clone(),
            &WeightsSource::Seeded(DEFAULT_SEED),
            Backend::Flex,
        )
        .expect("model");
        for split in &splits {
            let mode = split_mode(&net, split);
            for &n in &clients {
                // Alternate which setting runs first, so that neither always meets a warmer
                // (or busier) machine.
                let order = if round % 2 == 0 { [off, on] } else { [on, off] };
                round += 1;
                let mut rows = Vec::new();
                for batching in order {
                    let (report, mean_batch) =
                        runtime.block_on(measure(&net, &model, &mode, n, requests, batching));
                    assert_eq!(
                        (report.lost, report.wrong, report.fallbacks),
                        (0, 0, 0),
                        "{}",
                        report.render()
                    );
                    rows.push((batching.0 > 1, report, mean_batch));
                }
                rows.sort_by_key(|r| r.0);
                let speedup = rows[1].1.throughput_rps / rows[0].1.throughput_rps.max(1e-9);
                for (batched, report, mean_batch) in &rows {
                    println!(
                        "{:<14} {:<6} {:>7} {:>9} {:>10.1} {:>9.1} {:>9.1} {:>10.2} {:>8}",
                        spec,
                        split,
                        n,
                        if *batched { "on" } else { "off" },
                        report.throughput_rps,
                        report.latency_ms.p50,
                        report.latency_ms.p99,
                        mean_batch,
                        if *batched {
                            format!("{speedup:.2}x")
                        } else {
                            String::new()
                        }
                    );
                }
            }
        }
    }
}
