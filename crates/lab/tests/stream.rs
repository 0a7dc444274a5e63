//! The stream comparison's code path with a tiny model: a real quick profile (capped), a real
//! in-process loopback cloud behind a relay, a shaped uplink, and every mode over the network.

use lab::{StreamConfig, StreamMode, run_stream};
use models::{Backend, zoo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_runs_every_frame_in_rotating_order() {
    let cache = tempfile::tempdir().expect("temp dir");
    let config = StreamConfig {
        models: vec![zoo::build("lenet").expect("lenet")],
        uplink_mbps: 50.0,
        rtt_ms: 10.0,
        edge_slowdown: 5.0,
        frames: 6,
        depth: 3,
        rounds: 2,
        backend: Backend::Flex,
        cache_dir: cache.path().to_path_buf(),
        sweep_samples: Some(8),
        progress: false,
    };
    let mut seen = Vec::new();
    let rows = run_stream(&config, |row| seen.push((row.round, row.mode)))
        .await
        .expect("the comparison runs");
    // Round 2 starts where round 1's second mode was, so no mode always goes first.
    use StreamMode::*;
    assert_eq!(
        seen,
        [
            (1, OneByOne),
            (1, PipelinedLatency),
            (1, PipelinedStream),
            (2, PipelinedLatency),
            (2, PipelinedStream),
            (2, OneByOne),
        ]
    );
    for row in &rows {
        let s = &row.summary;
        assert_eq!((s.completed, s.failed, s.fallbacks), (6, 0, 0), "{row:?}");
        let depth = if row.mode == OneByOne { 1 } else { 3 };
        assert_eq!(s.pipeline, depth);
        assert!(s.throughput_per_s > 0.0 && s.wall_ms > 0.0);
        assert_eq!(
            row.predicted_frame_ms.is_some(),
            row.mode == PipelinedStream,
            "{row:?}"
        );
        assert_ne!(row.cut, "-");
    }

    let mut bad = config.clone();
    bad.depth = 1;
    let err = run_stream(&bad, |_| {})
        .await
        .expect_err("depth 1 is not a pipeline");
    assert!(err.to_string().contains("give 2 to 16"), "{err}");
}
