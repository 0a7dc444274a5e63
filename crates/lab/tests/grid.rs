//! The grid (`cutpoint-edge sweep`'s emulated mode) on a tiny chain: every split point measured
//! in every cell over a real loopback cloud, with one best cut per cell and honest regret.

use lab::{GridConfig, grid_csv, run_grid};
use models::{Backend, zoo};
use transport::Loss;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cut_of_every_cell_is_measured_and_judged() {
    let cache = tempfile::tempdir().expect("temp dir");
    let lenet = zoo::build("lenet").expect("lenet");
    let config = GridConfig {
        net: lenet.clone(),
        uplinks_mbps: vec![0.5, 200.0],
        edge_cpus: vec![0.5, 1.0],
        rtt_ms: 20.0,
        repeats: 1,
        backend: Backend::Flex,
        cache_dir: cache.path().to_path_buf(),
        sweep_samples: Some(8),
        progress: false,
        max_loss: Loss::Exact,
    };
    let mut reported = 0;
    let (rows, cells) = run_grid(&config, |rows, cell| {
        reported += 1;
        assert!(rows.iter().all(|r| r.uplink_mbps == cell.uplink_mbps));
    })
    .await
    .expect("the grid runs");

    assert_eq!((reported, cells.len()), (4, 4));
    for cell in &cells {
        let mine: Vec<_> = rows
            .iter()
            .filter(|r| r.edge_cpu == cell.edge_cpu && r.uplink_mbps == cell.uplink_mbps)
            .collect();
        // A chain: every split point as raw f32, the input alone on the edge (cloud-only)
        // through edge-only; and those cuts the planner would compress, compressed (labelled
        // with their codec). No plan is measured twice.
        let raw = mine.iter().filter(|r| !r.cut.contains(" (")).count();
        assert_eq!(raw, lenet.len());
        assert!(
            mine.iter()
                .filter(|r| r.cut.contains(" ("))
                .all(|r| r.cut.ends_with(" (lossless)")),
            "exact allows only lossless"
        );
        let mut labels: Vec<&str> = mine.iter().map(|r| r.cut.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), mine.len());
        assert_eq!(mine.iter().filter(|r| r.best).count(), 1);
        assert!(mine.iter().filter(|r| r.chosen).count() <= 1);
        let best = mine.iter().find(|r| r.best).expect("a best cut");
        assert_eq!(best.cut, cell.best);
        assert!(mine.iter().all(|r| r.e2e_ms >= best.e2e_ms));
        assert!(cell.regret >= 1.0, "{cell:?}");
        assert!(
            cell.edge_scale.is_finite() && cell.edge_scale > 0.0,
            "{cell:?}"
        );
        assert!(mine.iter().any(|r| r.cut == "edge-only"));
        assert!(mine.iter().any(|r| r.cut == "cloud-only"));
        assert!(cell.speedup_over_edge.is_some_and(|s| s > 0.0));
        assert!(cell.speedup_over_cloud.is_some_and(|s| s > 0.0));
        // Edge-only never touches the link or the cloud.
        let edge = mine
            .iter()
            .find(|r| r.cut == "edge-only")
            .expect("edge-only");
        assert_eq!((edge.transfer_ms, edge.cloud_ms), (0.0, 0.0));
        // Every request that uses the cloud crosses the 20 ms relay at least once each way.
        let cloud = mine
            .iter()
            .find(|r| r.cut == "cloud-only")
            .expect("cloud-only");
        assert!(cloud.e2e_ms >= 20.0, "{cloud:?}");
        // The link's time is what is left of the end-to-end time after compute: the RTT at least.
        assert!(cloud.transfer_ms >= 20.0, "{cloud:?}");
        let sum = cloud.local_ms + cloud.transfer_ms + cloud.cloud_ms;
        assert!((sum - cloud.e2e_ms).abs() < 1e-6, "{cloud:?}");
    }

    let csv = grid_csv(&rows);
    assert_eq!(csv.lines().count(), rows.len() + 1);
    assert!(csv.starts_with("edge_cpu,uplink_mbps,cut,e2e_ms,local_ms,transfer_ms,cloud_ms,"));
}
