//! Encoded crossing tensors: hand-computed examples, and property tests of every solver against
//! the exhaustive reference and against the cost model written out again here, with random
//! per-tensor encoding tables.

use partition_core::{
    Direction, Encoding, Graph, Link, MAX_EXHAUSTIVE_NODES, Method, Objective, Plan, Scenario,
    Solver, Transfer,
};
use proptest::prelude::*;

mod common;
use common::{close, scenario};
#[path = "common/encoded.rs"]
mod encoded;
use encoded::{Shape, build, encoding, small_shape};

/// input (1 MB raw, or 50 kB as `jpeg`: 5 ms to encode, 2 ms to decode) → a (edge 100, cloud 1,
/// 250 kB) → b (edge 200, cloud 2, 1 kB output).
fn compressible() -> Graph {
    Graph::from_json(
        r#"{"name": "compressible", "nodes": [
        {"id": "input", "inputs": [],        "edge_ms": 0,   "cloud_ms": 0, "out_bytes": 1000000,
         "encodings": [{"name": "jpeg", "bytes": 50000, "edge_ms": 5, "cloud_ms": 2}]},
        {"id": "a",     "inputs": ["input"], "edge_ms": 100, "cloud_ms": 1, "out_bytes": 250000},
        {"id": "b",     "inputs": ["a"],     "edge_ms": 200, "cloud_ms": 2, "out_bytes": 1000}]}"#,
    )
    .expect("valid graph")
}

#[test]
fn a_small_encoding_of_the_input_moves_the_cut_to_the_cloud() {
    // 8 Mbit/s up, 1 Mbit/s down, 10 ms RTT, cloud load ×2. Raw, the candidates are
    //   edge-only                                              300
    //   split after a: 100 + 250 (a up) + 2·2 + 8 (b down) + 10 = 372
    //   cloud-only: 1000 (input up) + 2·3 + 8 + 10              = 1024
    // and edge-only wins. Encoded, cloud-only costs 5 (encode) + 50 (50 kB up) + 2·3 + 2
    // (decode, not scaled by the load) + 8 + 10 = 81, and wins.
    let link = Link::new(8.0, 1.0, 10.0).expect("valid link");
    let s = Scenario::new(link, Objective::Latency, 2.0).expect("valid scenario");
    let encoded = compressible();
    let raw = encoded
        .with_encodings(vec![Vec::new(); encoded.len()])
        .expect("no encodings is valid");
    let exhaustive = Solver::Exhaustive {
        allow_return: false,
    };
    for solver in [
        Solver::Chain,
        Solver::MinCut,
        Solver::Prefix,
        Solver::Dp {
            allow_return: false,
        },
        exhaustive,
    ] {
        let plan = solver.solve(&raw, &s).expect("solves");
        assert!(plan.cloud_nodes().is_empty(), "{solver:?}");
        assert_eq!(plan.value(), 300.0, "{solver:?}");

        let plan = solver.solve(&encoded, &s).expect("solves");
        assert_eq!(plan.cloud_nodes(), vec![1, 2], "{solver:?}");
        let b = plan.breakdown();
        let want = [5.0, 50.0, 8.0, 8.0, 10.0, 81.0];
        let got = [
            b.edge_ms,
            b.upload_ms,
            b.cloud_ms,
            b.download_ms,
            b.rtt_ms,
            b.total_ms,
        ];
        for (g, w) in got.iter().zip(want) {
            assert!(close(*g, w), "{solver:?}: {got:?} != {want:?}");
        }
        assert!(close(plan.value(), 81.0));
        assert_eq!(
            plan.transfers(),
            &[Transfer {
                tensor: 0,
                encoding: Some(0),
                bytes: 50_000,
                raw_bytes: 1_000_000,
                direction: Direction::Up,
            }]
        );
    }
    assert_eq!(encoded.encoding_name(0, Some(0)), "jpeg");
    assert_eq!(encoded.encoding_name(0, None), "raw");
}

#[test]
fn energy_and_latency_pick_different_encodings() {
    // The input (1 MB) may go as `zstd` (250 kB, 100 ms to encode) or `tiny` (100 kB, 2 s to
    // decode on the cloud). At 8 Mbit/s, cloud-only sends it up; per way of sending it:
    //              latency (ms)           energy, 10 W compute, 1 W transmit, 0.1 W idle (mJ)
    //   raw        1000                   1000
    //   zstd       100 + 250 = 350        10·100 + 250 = 1250
    //   tiny       100 + 2000 = 2100      100 + 0.1·2000 = 300
    let graph = Graph::from_json(
        r#"{"nodes": [
        {"id": "input", "inputs": [], "edge_ms": 0, "cloud_ms": 0, "out_bytes": 1000000,
         "encodings": [{"name": "zstd", "bytes": 250000, "edge_ms": 100, "cloud_ms": 0},
                       {"name": "tiny", "bytes": 100000, "edge_ms": 0, "cloud_ms": 2000}]},
        {"id": "out", "inputs": ["input"], "edge_ms": 1, "cloud_ms": 1, "out_bytes": 1000}]}"#,
    )
    .expect("valid graph");
    let link = Link::new(8.0, 8.0, 0.0).expect("valid link");
    let latency = Plan::cloud_only(&graph, &Scenario::latency(link));
    assert_eq!(latency.transfers()[0].encoding, Some(0));
    assert_eq!(latency.transfers()[0].bytes, 250_000);
    assert!(close(latency.value(), 100.0 + 250.0 + 1.0 + 1.0));

    let energy = Objective::Energy {
        compute_w: 10.0,
        transmit_w: 1.0,
        idle_w: 0.1,
    };
    let s = Scenario::new(link, energy, 1.0).expect("valid scenario");
    let plan = Plan::cloud_only(&graph, &s);
    let t = plan.transfers()[0];
    assert_eq!(graph.encoding_name(t.tensor, t.encoding), "tiny");
    assert_eq!((t.bytes, t.raw_bytes), (100_000, 1_000_000));
    let b = plan.breakdown();
    assert!(close(b.edge_ms, 0.0) && close(b.upload_ms, 100.0), "{b:?}");
    assert!(
        close(b.cloud_ms, 2001.0) && close(b.download_ms, 1.0),
        "{b:?}"
    );
    // 1 W × 100 ms + 0.1 W × (2001 + 1) ms.
    assert!(close(plan.value(), 300.2), "{}", plan.value());
}

#[test]
fn ties_go_to_raw_then_to_the_earlier_encoding() {
    let graph = compressible();
    let s = Scenario::latency(Link::new(8.0, 1.0, 10.0).expect("valid link"));
    let same_as_raw = encoding("copy", graph.out_bytes(0), 0.0, 0.0);
    let tied = |list: Vec<Encoding>| {
        let mut tables = vec![Vec::new(); graph.len()];
        tables[0] = list;
        let g = graph.with_encodings(tables).expect("valid encodings");
        Plan::cloud_only(&g, &s).transfers()[0].encoding
    };
    assert_eq!(tied(vec![same_as_raw.clone()]), None);
    let half = encoding("half", 500_000, 0.0, 0.0);
    let half_again = encoding("half-again", 500_000, 0.0, 0.0);
    assert_eq!(
        tied(vec![same_as_raw, half.clone(), half_again.clone()]),
        Some(1)
    );
    assert_eq!(tied(vec![half_again, half]), Some(0));
}

#[test]
fn tensors_that_come_down_travel_raw() {
    // `heavy` runs on the cloud and its output comes back to `odd` on the edge; its encoding
    // would be cheaper, but only uploads are encoded.
    let graph = Graph::from_json(
        r#"{"nodes": [
        {"id": "input", "inputs": [],        "edge_ms": 0,   "cloud_ms": 0,  "out_bytes": 1000},
        {"id": "heavy", "inputs": ["input"], "edge_ms": 100, "cloud_ms": 1,  "out_bytes": 1000,
         "encodings": [{"name": "small", "bytes": 10, "edge_ms": 0, "cloud_ms": 0}]},
        {"id": "odd",   "inputs": ["heavy"], "edge_ms": 1,   "cloud_ms": 50, "out_bytes": 1000}]}"#,
    )
    .expect("valid graph");
    let s = Scenario::latency(Link::new(8.0, 8.0, 2.0).expect("valid link"));
    let plan = Solver::Dp { allow_return: true }
        .solve(&graph, &s)
        .expect("dp");
    assert_eq!(plan.cloud_nodes(), vec![1]);
    let down = plan.transfers()[1];
    assert_eq!(down.direction, Direction::Down);
    assert_eq!((down.encoding, down.bytes), (None, 1000));
    // 1 (input up) + 1 (heavy) + 1 (down) + 2 (rtt) + 1 (odd).
    assert!(close(plan.value(), 6.0), "{}", plan.value());
}

// ---- Property tests ----

/// Graphs small enough to enumerate every placement, returns included (2^(n−1)).
fn tiny_shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        (1usize..13).prop_map(Shape::Chain),
        (1usize..3).prop_map(Shape::Residual),
        Just(Shape::Inception(1)),
        (2usize..=13).prop_map(Shape::RandomDag),
    ]
}

/// `[compute, transmit, idle]` weights of the objective.
fn powers(s: &Scenario) -> [f64; 3] {
    match *s.objective() {
        Objective::Latency => [1.0, 1.0, 1.0],
        Objective::Energy {
            compute_w,
            transmit_w,
            idle_w,
        } => [compute_w, transmit_w, idle_w],
        Objective::Stream => {
            panic!("these properties cover the summed objectives (stream.rs covers the stream)")
        }
    }
}

/// Every way to send tensor u up, raw first: (encoding, bytes, encode ms, upload ms, decode ms).
fn ways_up(graph: &Graph, s: &Scenario, u: usize) -> Vec<(Option<usize>, u64, f64, f64, f64)> {
    let up_ms = |bytes: u64| bytes as f64 * 8.0 / (s.link().uplink_mbps() * 1e6) * 1e3;
    let raw = graph.out_bytes(u);
    let mut ways = vec![(None, raw, 0.0, up_ms(raw), 0.0)];
    for (i, e) in graph.encodings(u).iter().enumerate() {
        ways.push((Some(i), e.bytes, e.edge_ms, up_ms(e.bytes), e.cloud_ms));
    }
    ways
}

/// The objective-weighted cost of one way up.
fn way_cost(s: &Scenario, way: &(Option<usize>, u64, f64, f64, f64)) -> f64 {
    let [compute, transmit, idle] = powers(s);
    compute * way.2 + transmit * way.3 + idle * way.4
}

/// The cost model written out again, independently of the crate: the time parts (edge, upload,
/// cloud, download, and round trips with the cloud's expected wait) of a placement, each tensor
/// going up in its cheapest way.
fn recompute(graph: &Graph, s: &Scenario, cloud: &[bool]) -> [f64; 5] {
    let down = |bytes: u64| bytes as f64 * 8.0 / (s.link().downlink_mbps() * 1e6) * 1e3;
    let mut parts = [0.0; 5];
    let mut trips = 0.0;
    for v in 0..graph.len() {
        if cloud[v] {
            parts[2] += graph.cloud_ms(v) * s.load_factor();
        } else {
            parts[0] += graph.edge_ms(v);
        }
        if !graph.consumers(v).iter().any(|&w| cloud[w] != cloud[v]) {
            continue;
        }
        if cloud[v] {
            parts[3] += down(graph.out_bytes(v));
            trips += 1.0;
        } else {
            let ways = ways_up(graph, s, v);
            let best = ways
                .iter()
                .map(|w| way_cost(s, w))
                .fold(f64::INFINITY, f64::min);
            let cheapest = ways
                .iter()
                .find(|w| way_cost(s, w) <= best)
                .expect("raw is always a way");
            parts[0] += cheapest.2;
            parts[1] += cheapest.3;
            parts[2] += cheapest.4;
        }
    }
    if cloud[graph.sink()] {
        parts[3] += down(graph.out_bytes(graph.sink()));
        trips += 1.0;
    }
    parts[4] = trips * (s.link().rtt_ms() + s.wait_ms());
    parts
}

fn objective_value(s: &Scenario, [edge, up, cloud, down, rtt]: [f64; 5]) -> f64 {
    let [compute, transmit, idle] = powers(s);
    compute * edge + transmit * up + idle * (cloud + down + rtt)
}

/// The plan's figures equal the recomputation and its own placement costed afresh, and each
/// upload goes in the cheapest way (within rounding, since the test computes rates its own way).
fn check_plan(graph: &Graph, s: &Scenario, plan: &Plan) -> Result<(), TestCaseError> {
    let parts = recompute(graph, s, plan.placement());
    prop_assert!(
        close(plan.value(), objective_value(s, parts)),
        "{}: {} != recomputed {}",
        plan.method(),
        plan.value(),
        objective_value(s, parts)
    );
    let b = plan.breakdown();
    let got = [
        b.edge_ms,
        b.upload_ms,
        b.cloud_ms,
        b.download_ms,
        b.rtt_ms + b.wait_ms,
    ];
    for (g, want) in got.iter().zip(parts) {
        prop_assert!(close(*g, want), "{}: {got:?} != {parts:?}", plan.method());
    }
    prop_assert!(close(plan.value(), b.objective_value(s.objective())));
    let again = Plan::from_placement(graph, s, Method::Fixed, plan.placement().to_vec())
        .expect("a solver's placement is valid");
    prop_assert_eq!(plan.value(), again.value());
    prop_assert_eq!(plan.breakdown(), again.breakdown());
    for t in plan.transfers() {
        prop_assert_eq!(t.raw_bytes, graph.out_bytes(t.tensor));
        if t.direction == Direction::Down {
            prop_assert_eq!((t.encoding, t.bytes), (None, t.raw_bytes));
            continue;
        }
        let ways = ways_up(graph, s, t.tensor);
        let chosen = ways
            .iter()
            .find(|w| w.0 == t.encoding)
            .expect("the chosen encoding exists");
        prop_assert_eq!(t.bytes, chosen.1);
        let cost = way_cost(s, chosen);
        for way in &ways {
            prop_assert!(
                cost <= way_cost(s, way) + 1e-9 * cost.max(1.0),
                "{}: {:?} costs {cost}, {:?} costs {}",
                graph.id(t.tensor),
                t.encoding,
                way.0,
                way_cost(s, way)
            );
        }
    }
    Ok(())
}

fn solve(solver: Solver, graph: &Graph, s: &Scenario) -> Plan {
    solver.solve(graph, s).expect("solver accepts this graph")
}

/// The reference for `prefix`: every split of the topological order where at most one tensor
/// crosses, costed by the cost model.
fn prefix_brute_force(graph: &Graph, s: &Scenario) -> f64 {
    (0..graph.len())
        .map(|k| (0..graph.len()).map(|v| v > k).collect::<Vec<bool>>())
        .map(|cloud| Plan::from_placement(graph, s, Method::Prefix, cloud).expect("valid"))
        .filter(|p| p.transfers().len() <= 1)
        .map(|p| p.value())
        .fold(f64::INFINITY, f64::min)
}

proptest! {
    #[test]
    fn every_solver_equals_exhaustive_with_encodings(shape in small_shape(), seed: u64, s in scenario(1.5..4.0)) {
        let graph = build(shape, seed);
        prop_assume!(graph.len() <= MAX_EXHAUSTIVE_NODES);
        let reference = solve(Solver::Exhaustive { allow_return: false }, &graph, &s);
        check_plan(&graph, &s, &reference)?;
        let mut solvers = vec![Solver::MinCut, Solver::Dp { allow_return: false }, Solver::Auto];
        if graph.is_chain() {
            solvers.push(Solver::Chain);
        }
        for solver in solvers {
            let plan = solve(solver, &graph, &s);
            check_plan(&graph, &s, &plan)?;
            prop_assert!(close(plan.value(), reference.value()),
                "{solver:?} {} vs exhaustive {} on {}", plan.value(), reference.value(), graph.name());
        }
        let prefix = solve(Solver::Prefix, &graph, &s);
        check_plan(&graph, &s, &prefix)?;
        prop_assert!(close(prefix.value(), prefix_brute_force(&graph, &s)));
        prop_assert!(reference.value() <= prefix.value() * (1.0 + 1e-12));
        for baseline in [Plan::edge_only(&graph, &s), Plan::cloud_only(&graph, &s)] {
            check_plan(&graph, &s, &baseline)?;
            prop_assert!(reference.value() <= baseline.value() * (1.0 + 1e-12));
        }
    }

    #[test]
    fn dp_with_returns_equals_exhaustive_with_encodings(shape in tiny_shape(), seed: u64, s in scenario(1.5..4.0)) {
        let graph = build(shape, seed);
        prop_assume!(graph.len() <= 13);
        let reference = solve(Solver::Exhaustive { allow_return: true }, &graph, &s);
        let by_dp = solve(Solver::Dp { allow_return: true }, &graph, &s);
        check_plan(&graph, &s, &reference)?;
        check_plan(&graph, &s, &by_dp)?;
        prop_assert!(close(by_dp.value(), reference.value()),
            "dp {} vs exhaustive {} on {}", by_dp.value(), reference.value(), graph.name());
    }

    #[test]
    fn encodings_never_cost_more_than_raw(shape in small_shape(), seed: u64, s in scenario(1.5..4.0)) {
        let graph = build(shape, seed);
        let raw = graph.with_encodings(vec![Vec::new(); graph.len()]).expect("valid");
        let with = solve(Solver::MinCut, &graph, &s);
        let without = solve(Solver::MinCut, &raw, &s);
        prop_assert!(with.value() <= without.value() * (1.0 + 1e-12));
        let same_cut = without.reprice(&graph, &s).expect("valid placement");
        prop_assert!(same_cut.value() <= without.value() * (1.0 + 1e-12));
    }
}
