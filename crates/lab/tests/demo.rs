//! The demo's code path with a tiny model: a real quick profile (capped), a real in-process
//! loopback cloud, shaped uplinks, and every strategy run over the network.

use lab::{DemoConfig, Strategy, demo_csv, run_demo};
use models::{Backend, zoo};
use partition_core::DeviceClass;
use runtime::quick_profile;
use transport::Loss;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_every_strategy_per_case_and_caches_its_profile() {
    let cache = tempfile::tempdir().expect("temp dir");
    let lenet = zoo::build("lenet").expect("lenet");
    let input_bytes = 4 * lenet.input_shape().iter().product::<usize>() as u64;
    let config = DemoConfig {
        models: vec![lenet.clone()],
        uplinks_mbps: vec![0.5, 200.0],
        edge_slowdown: 20.0,
        repeats: 1,
        backend: Backend::Flex,
        cache_dir: cache.path().to_path_buf(),
        sweep_samples: Some(8),
        progress: false,
        max_loss: Loss::Exact,
        objective: DeviceClass::Phone.powers().objective(),
    };
    let mut cases = Vec::new();
    let rows = run_demo(&config, |case| cases.push(case.to_vec()))
        .await
        .expect("the demo runs");

    // One case per uplink, each with the strategies in order, reported as it finished: LeNet
    // takes no image, so cloud-only sends its tensor, raw.
    assert_eq!(cases.len(), 2);
    assert_eq!(rows.len(), 6);
    for (case, uplink) in cases.iter().zip([0.5, 200.0]) {
        let strategies: Vec<Strategy> = case.iter().map(|r| r.strategy).collect();
        assert_eq!(
            strategies,
            [Strategy::Chosen, Strategy::EdgeOnly, Strategy::CloudOnlyRaw]
        );
        for row in case {
            assert_eq!(row.model, "lenet");
            assert_eq!(row.uplink_mbps, uplink);
            assert_eq!(row.fallback, None, "{row:?}");
            assert!(row.measured.total_ms > 0.0 && row.predicted.total_ms > 0.0);
            // Planned for a phone's energy: every row carries its predicted mJ.
            let mj = row.predicted_mj.expect("predicted energy");
            let expected = row.predicted.objective_value(&config.objective);
            assert!(mj > 0.0 && (mj - expected).abs() < 1e-9, "{row:?}");
        }
        let edge = &case[1];
        assert_eq!((edge.cut.as_str(), edge.upload_bytes), ("edge-only", 0));
        assert_eq!(
            edge.measured.upload_ms, 0.0,
            "edge-only never uses the link"
        );
        let cloud = &case[2];
        assert_eq!(
            (cloud.cut.as_str(), cloud.upload_bytes),
            ("cloud-only", input_bytes)
        );
        assert!(
            cloud.measured.cloud_ms > 0.0,
            "the cloud computed: {cloud:?}"
        );
        // The chosen cut is one of the network's: a label the others use or a named tensor,
        // with the codec the exact budget allows when it compresses.
        let chosen = &case[0];
        let (cut, how) = chosen
            .cut
            .split_once(" (")
            .unwrap_or((chosen.cut.as_str(), ""));
        assert!(how.is_empty() || how == "lossless)", "{}", chosen.cut);
        assert!(
            cut == "edge-only"
                || cut == "cloud-only"
                || cut
                    .strip_prefix("after ")
                    .is_some_and(|ids| ids.split('+').all(|id| lenet.index_of(id).is_ok())),
            "{}",
            chosen.cut
        );
    }

    // The CSV has a header and one line per row.
    let csv = demo_csv(&rows);
    assert_eq!(csv.lines().count(), 7);
    assert!(csv.starts_with("model,uplink_mbps,strategy,cut,"));
    assert!(
        csv.lines()
            .next()
            .is_some_and(|h| h.contains(",predicted_edge_mj,"))
    );
    assert!(
        csv.contains("lenet,0.5,cloud-only (raw f32),cloud-only,"),
        "{csv}"
    );

    // The profile was built once and is now cached.
    let again = quick_profile(cache.path(), Backend::Flex, &[lenet], Some(8), false)
        .expect("cached profile");
    assert!(!again.built);
    assert!(again.path.starts_with(cache.path()));
}
