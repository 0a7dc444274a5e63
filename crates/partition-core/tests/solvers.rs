//! Property tests: every solver against the exhaustive reference and against docs/DESIGN.md's cost
//! formula, recomputed here from scratch, on random chains, residual DAGs and inception DAGs.

use partition_core::synthetic::{chain, inception, residual};
use partition_core::{Direction, Graph, MAX_EXHAUSTIVE_NODES, Objective, Plan, Scenario, Solver};
use proptest::prelude::*;

mod common;
use common::{close, scenario};

/// Which synthetic family, its size parameter and seed.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Chain(usize),
    Residual(usize),
    Inception(usize),
}

fn build(shape: Shape, seed: u64) -> Graph {
    match shape {
        Shape::Chain(n) => chain(n, seed),
        Shape::Residual(n) => residual(n, seed),
        Shape::Inception(n) => inception(n, seed),
    }
}

/// Graphs small enough for the exhaustive reference.
fn small_shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        (1usize..20).prop_map(Shape::Chain),
        (1usize..5).prop_map(Shape::Residual),
        (1usize..2).prop_map(Shape::Inception),
    ]
}

/// Graphs small enough to enumerate every placement, returns included (2^(n−1)).
fn tiny_shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        (1usize..13).prop_map(Shape::Chain),
        (1usize..3).prop_map(Shape::Residual),
        Just(Shape::Inception(1)),
    ]
}

/// Larger graphs, where mincut and dp (both exact) check each other.
fn large_shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        (20usize..120).prop_map(Shape::Chain),
        (5usize..30).prop_map(Shape::Residual),
        (2usize..8).prop_map(Shape::Inception),
    ]
}

/// docs/DESIGN.md's cost model written out again, independently of the crate: the time parts
/// (edge, upload, cloud, download, rtt, wait) of a placement, returns to the edge included:
/// each request to the cloud pays a round trip and the cloud's expected wait.
fn recompute(graph: &Graph, s: &Scenario, cloud: &[bool]) -> [f64; 6] {
    let link = s.link();
    let seconds_to_ms = 1e3;
    let up = |bytes: u64| bytes as f64 * 8.0 / (link.uplink_mbps() * 1e6) * seconds_to_ms;
    let down = |bytes: u64| bytes as f64 * 8.0 / (link.downlink_mbps() * 1e6) * seconds_to_ms;
    let mut parts = [0.0; 6];
    let mut trips = 0.0;
    for v in 0..graph.len() {
        if cloud[v] {
            parts[2] += graph.cloud_ms(v) * s.load_factor();
        } else {
            parts[0] += graph.edge_ms(v);
        }
        let other_side = |w: &usize| cloud[*w] != cloud[v];
        if graph.consumers(v).iter().any(other_side) {
            if cloud[v] {
                parts[3] += down(graph.out_bytes(v));
                trips += 1.0;
            } else {
                parts[1] += up(graph.out_bytes(v));
            }
        }
    }
    if cloud[graph.sink()] {
        parts[3] += down(graph.out_bytes(graph.sink()));
        trips += 1.0;
    }
    parts[4] = trips * link.rtt_ms();
    parts[5] = trips * s.wait_ms();
    parts
}

fn objective_value(s: &Scenario, parts: [f64; 6]) -> f64 {
    let [edge, up, cloud, down, rtt, wait] = parts;
    match *s.objective() {
        Objective::Latency => parts.iter().sum(),
        Objective::Energy {
            compute_w,
            transmit_w,
            idle_w,
        } => compute_w * edge + transmit_w * up + idle_w * (cloud + down + rtt + wait),
        Objective::Stream => {
            panic!("these properties cover the summed objectives (stream.rs covers the stream)")
        }
    }
}

/// The plan's figures equal the recomputation, the input stays on the edge and, unless
/// `returns` is allowed, the cloud set is successor-closed.
fn check_plan(
    graph: &Graph,
    s: &Scenario,
    plan: &Plan,
    returns: bool,
) -> Result<(), TestCaseError> {
    let parts = recompute(graph, s, plan.placement());
    let b = plan.breakdown();
    let got = [
        b.edge_ms,
        b.upload_ms,
        b.cloud_ms,
        b.download_ms,
        b.rtt_ms,
        b.wait_ms,
    ];
    for (g, want) in got.iter().zip(parts) {
        prop_assert!(
            close(*g, want),
            "{}: breakdown {got:?} != recomputed {parts:?}",
            plan.method()
        );
    }
    prop_assert!(close(b.total_ms, parts.iter().sum()));
    prop_assert!(close(plan.value(), objective_value(s, parts)));
    prop_assert!(
        !plan.is_cloud(graph.source()),
        "{}: input on the cloud",
        plan.method()
    );
    for t in plan.transfers() {
        let crosses = graph
            .consumers(t.tensor)
            .iter()
            .any(|&w| plan.is_cloud(w) != plan.is_cloud(t.tensor));
        prop_assert!(crosses);
        prop_assert_eq!(t.bytes, graph.out_bytes(t.tensor));
        prop_assert_eq!(t.direction == Direction::Down, plan.is_cloud(t.tensor));
    }
    if !returns {
        for u in plan.cloud_nodes() {
            for &w in graph.consumers(u) {
                prop_assert!(
                    plan.is_cloud(w),
                    "{}: {} → {} returns",
                    plan.method(),
                    graph.id(u),
                    graph.id(w)
                );
            }
        }
    }
    Ok(())
}

fn solve(solver: Solver, graph: &Graph, s: &Scenario) -> Plan {
    solver.solve(graph, s).expect("solver accepts this graph")
}

proptest! {
    #[test]
    fn mincut_and_dp_equal_exhaustive(shape in small_shape(), seed: u64, s in scenario(1.0..4.0)) {
        let graph = build(shape, seed);
        prop_assume!(graph.len() <= MAX_EXHAUSTIVE_NODES);
        let reference = solve(Solver::Exhaustive { allow_return: false }, &graph, &s);
        check_plan(&graph, &s, &reference, false)?;
        for solver in [Solver::MinCut, Solver::Dp { allow_return: false }, Solver::Auto] {
            let plan = solve(solver, &graph, &s);
            check_plan(&graph, &s, &plan, false)?;
            prop_assert!(close(plan.value(), reference.value()),
                "{solver:?} {} vs exhaustive {} on {}", plan.value(), reference.value(), graph.name());
        }
        for baseline in [Plan::edge_only(&graph, &s), Plan::cloud_only(&graph, &s)] {
            check_plan(&graph, &s, &baseline, false)?;
            prop_assert!(reference.value() <= baseline.value() * (1.0 + 1e-12));
        }
    }

    #[test]
    fn chain_equals_mincut_on_chains(n in 1usize..300, seed: u64, s in scenario(1.0..4.0)) {
        let graph = chain(n, seed);
        let by_chain = solve(Solver::Chain, &graph, &s);
        let by_mincut = solve(Solver::MinCut, &graph, &s);
        check_plan(&graph, &s, &by_chain, false)?;
        prop_assert!(close(by_chain.value(), by_mincut.value()));
        prop_assert!(by_chain.transfers().len() <= 1);
    }

    #[test]
    fn dp_equals_mincut_on_larger_dags(shape in large_shape(), seed: u64, s in scenario(1.0..4.0)) {
        let graph = build(shape, seed);
        let by_mincut = solve(Solver::MinCut, &graph, &s);
        let by_dp = solve(Solver::Dp { allow_return: false }, &graph, &s);
        let with_return = solve(Solver::Dp { allow_return: true }, &graph, &s);
        check_plan(&graph, &s, &by_mincut, false)?;
        check_plan(&graph, &s, &by_dp, false)?;
        check_plan(&graph, &s, &with_return, true)?;
        prop_assert!(close(by_dp.value(), by_mincut.value()));
        prop_assert!(with_return.value() <= by_dp.value() * (1.0 + 1e-12));
    }

    #[test]
    fn dp_with_returns_equals_exhaustive_with_returns(shape in tiny_shape(), seed: u64, s in scenario(1.0..4.0)) {
        let graph = build(shape, seed);
        prop_assume!(graph.len() <= 13);
        let reference = solve(Solver::Exhaustive { allow_return: true }, &graph, &s);
        let by_dp = solve(Solver::Dp { allow_return: true }, &graph, &s);
        let no_return = solve(Solver::Dp { allow_return: false }, &graph, &s);
        check_plan(&graph, &s, &reference, true)?;
        check_plan(&graph, &s, &by_dp, true)?;
        prop_assert!(close(by_dp.value(), reference.value()),
            "dp {} vs exhaustive {} on {}", by_dp.value(), reference.value(), graph.name());
        prop_assert!(by_dp.value() <= no_return.value() * (1.0 + 1e-12));
    }
}
