//! Throughput of a stream of frames from one edge over a shaped uplink: one at a time against
//! pipelined, planned for latency and for the stream objective ([`lab::run_stream`]). Each
//! round runs every mode once, in an order that rotates; one line per run, then the median
//! throughput per mode and the pipelined-against-one-by-one ratio.
//!
//! ```sh
//! cargo bench -p lab --bench pipeline
//! CUTPOINT_BENCH_MODELS=resnet18 CUTPOINT_BENCH_UPLINK_MBPS=5.85 cargo bench -p lab --bench pipeline
//! ```
//!
//! Settings (environment): `CUTPOINT_BENCH_MODELS` (zoo names, default `alexnet,resnet18`),
//! `CUTPOINT_BENCH_UPLINK_MBPS` (default 18.88, Neurosurgeon's Wi-Fi), `CUTPOINT_BENCH_RTT_MS`
//! (default 20), `CUTPOINT_BENCH_EDGE_SLOWDOWN` (default 10, as the demo),
//! `CUTPOINT_BENCH_FRAMES` (default 30), `CUTPOINT_BENCH_DEPTH` (default 3),
//! `CUTPOINT_BENCH_ROUNDS` (default 3). The profile is cached where the demo caches it.

mod common;

use common::env_number;
use lab::{StreamConfig, StreamMode, StreamRow, run_stream};
use models::{Backend, median, zoo};

fn main() {
    // As the binaries do: the pool's workers each on a CPU of their own.
    models::pin_global_pool();
    let models =
        std::env::var("CUTPOINT_BENCH_MODELS").unwrap_or_else(|_| "alexnet,resnet18".into());
    let config = StreamConfig {
        models: models
            .split(',')
            .map(|m| zoo::build(m.trim()).unwrap_or_else(|e| panic!("model `{m}`: {e}")))
            .collect(),
        uplink_mbps: env_number("CUTPOINT_BENCH_UPLINK_MBPS", 18.88),
        rtt_ms: env_number("CUTPOINT_BENCH_RTT_MS", 20.0),
        edge_slowdown: env_number("CUTPOINT_BENCH_EDGE_SLOWDOWN", 10.0),
        frames: env_number("CUTPOINT_BENCH_FRAMES", 30),
        depth: env_number("CUTPOINT_BENCH_DEPTH", 3),
        rounds: env_number("CUTPOINT_BENCH_ROUNDS", 3),
        backend: Backend::Flex,
        cache_dir: runtime::default_cache_dir().expect("a cache directory"),
        sweep_samples: None,
        progress: true,
    };
    println!(
        "uplink {} Mbit/s, rtt {} ms, edge {}x slower than this machine, {} frames, {} in flight",
        config.uplink_mbps, config.rtt_ms, config.edge_slowdown, config.frames, config.depth
    );
    let runtime = runtime::async_runtime().expect("a Tokio runtime");
    let rows = runtime
        .block_on(run_stream(&config, |row| {
            let s = &row.summary;
            println!(
                "{:<10} round {}  {:<26} {:>7.2} frames/s  p50 {:>8.1} ms  cut {}{}",
                row.model,
                row.round,
                row.mode.name(),
                s.throughput_per_s,
                s.latency_ms.p50.unwrap_or(f64::NAN),
                row.cut,
                row.predicted_frame_ms.map_or(String::new(), |ms| format!(
                    "  ({ms:.1} ms/frame predicted)"
                ))
            );
        }))
        .expect("the comparison runs");
    println!("\nmedian over rounds:");
    for net in &config.models {
        let of = |mode: StreamMode| -> Vec<&StreamRow> {
            rows.iter()
                .filter(|r| r.model == net.name() && r.mode == mode)
                .collect()
        };
        let throughput = |mode| {
            median(
                of(mode)
                    .iter()
                    .map(|r| r.summary.throughput_per_s)
                    .collect(),
            )
        };
        let p50 = |mode| {
            median(
                of(mode)
                    .iter()
                    .filter_map(|r| r.summary.latency_ms.p50)
                    .collect(),
            )
        };
        let base = throughput(StreamMode::OneByOne);
        for mode in StreamMode::ALL {
            println!(
                "{:<10} {:<26} {:>7.2} frames/s ({:.2}x one by one)  p50 {:>8.1} ms",
                net.name(),
                mode.name(),
                throughput(mode),
                throughput(mode) / base,
                p50(mode)
            );
        }
    }
}
