//! Plans on hand-computed examples: units, baselines, fixed cuts, solver refusals, hysteresis.

use partition_core::synthetic::{inception, random_dag};
use partition_core::{
    Direction, Graph, Hysteresis, Link, Method, Objective, Plan, Scenario, ScenarioError,
    SolveError, Solver,
};

/// input (1 MB) → a (edge 10, cloud 1, 250 kB) → b (edge 20, cloud 2, 1 kB output).
fn three_nodes() -> Graph {
    Graph::from_json(
        r#"{"name": "three", "nodes": [
        {"id": "input", "inputs": [],        "edge_ms": 0,  "cloud_ms": 0, "out_bytes": 1000000},
        {"id": "a",     "inputs": ["input"], "edge_ms": 10, "cloud_ms": 1, "out_bytes": 250000},
        {"id": "b",     "inputs": ["a"],     "edge_ms": 20, "cloud_ms": 2, "out_bytes": 1000}]}"#,
    )
    .expect("valid graph")
}

fn latency(up_mbps: f64, down_mbps: f64, rtt_ms: f64) -> Scenario {
    Scenario::latency(Link::new(up_mbps, down_mbps, rtt_ms).expect("valid link"))
}

#[test]
fn megabits_are_ten_to_the_six_bits() {
    let link = Link::new(8.0, 2.0, 0.0).expect("valid link");
    // 1 MB = 8 Mbit: one second up at 8 Mbit/s, four seconds down at 2 Mbit/s.
    assert_eq!(link.upload_ms(1_000_000), 1000.0);
    assert_eq!(link.download_ms(1_000_000), 4000.0);
}

#[test]
fn chain_picks_the_hand_computed_split() {
    let g = three_nodes();
    // 8 Mbit/s up, 1 Mbit/s down, 10 ms RTT. Candidates:
    //   edge-only                 30
    //   split after a: 10 + 250 (a up) + 2 + 10 (rtt) + 8 (b down) = 280
    //   cloud-only: 1000 (input up) + 3 + 10 + 8 = 1021
    let s = latency(8.0, 1.0, 10.0);
    let plan = Solver::Chain.solve(&g, &s).expect("chain");
    assert_eq!(plan.cloud_nodes(), Vec::<usize>::new());
    assert_eq!(plan.value(), 30.0);

    // At 800 Mbit/s up and down, with no RTT: split after a costs 10 + 2.5 + 2 + 0.01 = 14.51,
    // cloud-only costs 10 + 3 + 0.01 = 13.01, which wins.
    let s = latency(800.0, 800.0, 0.0);
    let plan = Solver::Chain.solve(&g, &s).expect("chain");
    assert_eq!(plan.cloud_nodes(), vec![1, 2]);
    let b = plan.breakdown();
    assert!((b.upload_ms - 10.0).abs() < 1e-9);
    assert!((b.download_ms - 0.01).abs() < 1e-9);
    assert!((b.total_ms - 13.01).abs() < 1e-9);
    assert_eq!(
        plan.transfers(),
        &[partition_core::Transfer {
            tensor: 0,
            encoding: None,
            bytes: 1_000_000,
            raw_bytes: 1_000_000,
            direction: Direction::Up
        }]
    );
}

#[test]
fn load_factor_scales_cloud_time() {
    let g = three_nodes();
    let link = Link::new(800.0, 800.0, 0.0).expect("valid link");
    let loaded = Scenario::new(link, Objective::Latency, 3.0).expect("valid scenario");
    let plan = Plan::cloud_only(&g, &loaded);
    assert!((plan.breakdown().cloud_ms - 9.0).abs() < 1e-9);
}

#[test]
fn energy_weighs_each_part_with_its_power() {
    let g = three_nodes();
    let link = Link::new(8.0, 1.0, 10.0).expect("valid link");
    let energy = Objective::Energy {
        compute_w: 2.0,
        transmit_w: 1.0,
        idle_w: 0.5,
    };
    let s = Scenario::new(link, energy, 1.0).expect("valid scenario");
    let plan = Plan::fixed(&g, &s, &["b"]).expect("valid cut");
    // 2 W × 10 ms + 1 W × 250 ms + 0.5 W × (2 + 8 + 10) ms = 280 mJ.
    assert!((plan.value() - 280.0).abs() < 1e-9, "{}", plan.value());
    assert_eq!(plan.method(), Method::Fixed);
}

#[test]
fn scenario_rejects_out_of_range_values() {
    assert!(matches!(
        Link::new(0.0, 1.0, 0.0),
        Err(ScenarioError::OutOfRange {
            name: "uplink_mbps",
            ..
        })
    ));
    assert!(matches!(
        Link::new(1.0, f64::INFINITY, 0.0),
        Err(ScenarioError::OutOfRange {
            name: "downlink_mbps",
            ..
        })
    ));
    assert!(matches!(
        Link::new(1e-300, 1.0, 0.0),
        Err(ScenarioError::OutOfRange {
            name: "uplink_mbps",
            ..
        })
    ));
    assert!(matches!(
        Link::new(1.0, 1.0, -1.0),
        Err(ScenarioError::OutOfRange { name: "rtt_ms", .. })
    ));
    let link = Link::new(1.0, 1.0, 0.0).expect("valid link");
    assert!(matches!(
        Scenario::new(link, Objective::Latency, 0.5),
        Err(ScenarioError::OutOfRange {
            name: "load_factor",
            ..
        })
    ));
    let energy = Objective::Energy {
        compute_w: 1.0,
        transmit_w: -1.0,
        idle_w: 0.0,
    };
    assert!(matches!(
        Scenario::new(link, energy, 1.0),
        Err(ScenarioError::OutOfRange {
            name: "transmit_w",
            ..
        })
    ));
}

#[test]
fn fixed_plans_are_checked() {
    let g = three_nodes();
    let s = latency(10.0, 10.0, 0.0);
    assert_eq!(
        Plan::fixed(&g, &s, &["a"]),
        Err(SolveError::NotSuccessorClosed {
            node: "a".into(),
            consumer: "b".into()
        })
    );
    assert_eq!(
        Plan::fixed(&g, &s, &["input", "a", "b"]),
        Err(SolveError::InputOnCloud("input".into()))
    );
    assert_eq!(
        Plan::fixed(&g, &s, &["nope"]),
        Err(SolveError::UnknownNode("nope".into()))
    );
    let empty: [&str; 0] = [];
    let plan = Plan::fixed(&g, &s, &empty).expect("empty cloud set is edge-only");
    assert_eq!(plan.value(), Plan::edge_only(&g, &s).value());
}

#[test]
fn solvers_refuse_what_they_cannot_do() {
    let s = latency(10.0, 10.0, 0.0);
    let dag = inception(2, 7);
    assert!(matches!(
        Solver::Chain.solve(&dag, &s),
        Err(SolveError::NotAChain(_))
    ));
    let big = random_dag(100, 1);
    assert!(matches!(
        Solver::Exhaustive {
            allow_return: false
        }
        .solve(&big, &s),
        Err(SolveError::TooLargeForExhaustive { nodes: 100, .. })
    ));
    // 14 branches fed by one node and joined by one concat: 14 tensors are live at once.
    let mut nodes = vec![
        r#"{"id": "input", "inputs": [], "edge_ms": 0, "cloud_ms": 0, "out_bytes": 1}"#.to_string(),
    ];
    let branches: Vec<String> = (0..14).map(|i| format!("\"b{i}\"")).collect();
    for i in 0..14 {
        nodes.push(format!(
            r#"{{"id": "b{i}", "inputs": ["input"], "edge_ms": 1, "cloud_ms": 1, "out_bytes": 1}}"#
        ));
    }
    nodes.push(format!(
        r#"{{"id": "cat", "inputs": [{}], "edge_ms": 1, "cloud_ms": 1, "out_bytes": 1}}"#,
        branches.join(",")
    ));
    let wide = Graph::from_json(&format!(r#"{{"nodes": [{}]}}"#, nodes.join(","))).expect("valid");
    assert!(matches!(
        Solver::Dp {
            allow_return: false
        }
        .solve(&wide, &s),
        Err(SolveError::TooWideForDp { .. })
    ));
    assert!(Solver::MinCut.solve(&wide, &s).is_ok());
}

#[test]
fn mincut_handles_large_dags() {
    let g = random_dag(10_000, 3);
    let s = latency(5.85, 5.85, 20.0);
    let plan = Solver::Auto.solve(&g, &s).expect("mincut");
    assert_eq!(plan.method(), Method::MinCut);
    assert!(plan.value() <= Plan::edge_only(&g, &s).value());
    assert!(plan.value() <= Plan::cloud_only(&g, &s).value());
}

#[test]
fn returning_to_the_edge_can_pay_off() {
    // A cheap-on-cloud layer, then a layer the cloud is slow at, then a tiny output: with
    // returns allowed, only the middle layer goes up and its small output comes back down.
    let g = Graph::from_json(
        r#"{"nodes": [
        {"id": "input", "inputs": [],        "edge_ms": 0,   "cloud_ms": 0,   "out_bytes": 1000},
        {"id": "heavy", "inputs": ["input"], "edge_ms": 100, "cloud_ms": 1,   "out_bytes": 1000},
        {"id": "odd",   "inputs": ["heavy"], "edge_ms": 1,   "cloud_ms": 50,  "out_bytes": 1000}]}"#,
    )
    .expect("valid graph");
    let s = latency(8.0, 8.0, 2.0);
    let no_return = Solver::Dp {
        allow_return: false,
    }
    .solve(&g, &s)
    .expect("dp");
    let with_return = Solver::Dp { allow_return: true }.solve(&g, &s).expect("dp");
    // heavy on cloud, odd back on edge: 1 up + 1 + 1 down + 2 rtt + 1 = 6 ms.
    assert_eq!(with_return.cloud_nodes(), vec![1]);
    assert!(
        (with_return.value() - 6.0).abs() < 1e-9,
        "{}",
        with_return.value()
    );
    assert!(with_return.value() < no_return.value());
    assert_eq!(with_return.transfers()[1].direction, Direction::Down);
}

#[test]
fn hysteresis_keeps_the_cut_until_the_saving_is_worth_it() {
    let g = three_nodes();
    let mut h = Hysteresis::new(0.05).expect("valid share");
    let fast = latency(800.0, 800.0, 0.0);
    let first = h
        .choose(&g, &fast, Solver::Auto.solve(&g, &fast).expect("solve"))
        .expect("choose");
    assert!(first.switched);
    assert_eq!(first.plan.cloud_nodes(), vec![1, 2]);

    // A slightly slower link: cloud-only (13.0 + 1000·8e-3/760) still beats splitting; nothing moves.
    let wobble = latency(760.0, 800.0, 0.0);
    let d = h
        .choose(&g, &wobble, Solver::Auto.solve(&g, &wobble).expect("solve"))
        .expect("choose");
    assert!(!d.switched);

    // At 4 Mbit/s edge-only (30 ms) beats cloud-only (≈ 2013 ms) by far: it switches.
    let slow = latency(4.0, 4.0, 0.0);
    let d = h
        .choose(&g, &slow, Solver::Auto.solve(&g, &slow).expect("solve"))
        .expect("choose");
    assert!(d.switched);
    assert!(d.plan.cloud_nodes().is_empty());

    // A candidate that saves less than 5 % is ignored even though it is cheaper.
    let s = latency(800.0, 800.0, 0.0);
    let mut h = Hysteresis::new(0.05).expect("valid share");
    let split = Plan::fixed(&g, &s, &["b"]).expect("valid cut"); // 14.51 ms
    h.choose(&g, &s, split).expect("choose");
    let cloud = Plan::cloud_only(&g, &s); // 13.01 ms: saves 10 %, so it is taken
    assert!(h.choose(&g, &s, cloud).expect("choose").switched);
    let mut h = Hysteresis::new(0.2).expect("valid share");
    h.choose(&g, &s, Plan::fixed(&g, &s, &["b"]).expect("valid cut"))
        .expect("choose");
    let d = h.choose(&g, &s, Plan::cloud_only(&g, &s)).expect("choose");
    assert!(!d.switched, "a 10 % saving is below a 20 % threshold");
    assert_eq!(d.plan.cloud_nodes(), vec![2]);

    assert!(matches!(
        Hysteresis::new(1.0),
        Err(SolveError::BadHysteresis(_))
    ));
}

/// The cloud's expected wait is paid once by any plan that uses the cloud and never by
/// edge-only, so a long enough wait moves the cut to the edge; it does not scale the layers.
#[test]
fn the_expected_wait_is_paid_once_and_moves_the_cut_to_the_edge() {
    let graph = partition_core::synthetic::chain(8, 3);
    let link = Link::new(1000.0, 1000.0, 1.0).expect("link");
    let idle = Scenario::latency(link);
    let cloud_only = Plan::cloud_only(&graph, &idle);
    let busy = idle.with_wait(250.0).expect("a wait");
    let waiting = Plan::cloud_only(&graph, &busy);
    assert_eq!(waiting.breakdown().wait_ms, 250.0);
    assert_eq!(
        waiting.breakdown().cloud_ms,
        cloud_only.breakdown().cloud_ms
    );
    assert!((waiting.breakdown().total_ms - cloud_only.breakdown().total_ms - 250.0).abs() < 1e-9);
    assert_eq!(Plan::edge_only(&graph, &busy).breakdown().wait_ms, 0.0);

    // A wait longer than the whole network on the edge leaves nothing worth sending.
    let edge_total: f64 = (0..graph.len()).map(|v| graph.edge_ms(v)).sum();
    let swamped = idle.with_wait(edge_total + 1.0).expect("a wait");
    for solver in [Solver::Chain, Solver::MinCut] {
        let plan = solver.solve(&graph, &swamped).expect("plan");
        assert!(
            plan.cloud_nodes().is_empty(),
            "{solver:?} still uses the cloud"
        );
    }
    assert!(idle.with_wait(-1.0).is_err());
    assert!(idle.with_wait(f64::NAN).is_err());
}
