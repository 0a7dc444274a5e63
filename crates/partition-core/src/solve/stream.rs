//! The stream objective on a DAG: the cloud set whose slowest pipeline stage is fastest.
//!
//! The slowest of four sums is not a sum, so no single minimum cut finds it. The search costs
//! three families of successor-closed cloud sets, each of which holds every split of a chain:
//! - the topological suffixes (everything after position k);
//! - each node with all its descendants;
//! - everything but a node and its ancestors (the edge runs exactly what that node needs);
//!
//! (on graphs of more than [`FAMILY_SIZE`] nodes, that many of each, spread over the order)
//! and the minimum cuts of weighted sums of the four stages (edge, uplink, cloud with its wait,
//! downlink). For weights λ ≥ 0 with Σλ = 1 the weighted sum is a sum, which DADS's minimum cut
//! minimises exactly, and since a maximum is at least any weighted mean of its terms, that
//! minimum is a lower bound on the optimum. The search moves λ towards the stages that were
//! slow (multiplicative weights) for at most [`ROUNDS`] rounds and keeps the best bound. It
//! stops early once a plan meets the bound (no plan is faster), or when [`PATIENCE`] rounds in
//! a row found no better plan.
//!
//! The plan is the best candidate, ties going to the lower latency. It can miss an optimum
//! that none of these sets reaches; `partition-core`'s tests measure how often against
//! exhaustive search.

use super::mincut;
use crate::cost::{Breakdown, Factors, Weights};
use crate::graph::Graph;
use crate::plan::{Method, Plan};
use crate::scenario::{Objective, Scenario};

/// Rounds of the search, each one minimum cut.
pub(crate) const ROUNDS: usize = 40;
/// Rounds in a row without a better plan after which the search stops.
pub(crate) const PATIENCE: usize = 5;
/// How fast weight moves towards the slow stages.
const STEP: f64 = 0.5;
/// The most sets of each family that the search costs.
const FAMILY_SIZE: usize = 256;

/// The best plan found, with a lower bound on the best plan's time per frame.
pub(super) fn search(graph: &Graph, scenario: &Scenario) -> (Plan, f64) {
    let mut best = Best::new(graph, scenario);
    for cloud in closed_families(graph) {
        best.consider(cloud);
    }
    best.consider(mincut::cut(
        graph,
        &Weights::under(graph, scenario, Factors::of(&Objective::Latency)),
    ));
    let mut bound = 0.0f64;
    let mut lambda = [0.25; 4];
    let mut idle = 0;
    for _ in 0..ROUNDS {
        let weights = Weights::under(graph, scenario, Factors::stages(lambda, 0.0));
        let cloud = mincut::cut(graph, &weights);
        bound = bound.max(weights.of_placement(graph, &cloud));
        let before = best.rank;
        let stages = best.consider(cloud).stages();
        idle = if best.rank < before { 0 } else { idle + 1 };
        if best.rank.0 <= bound || idle == PATIENCE {
            break;
        }
        let slowest = stages.iter().copied().fold(0.0, f64::max);
        if slowest <= 0.0 {
            break;
        }
        for (l, s) in lambda.iter_mut().zip(stages) {
            *l *= (STEP * s / slowest).exp();
        }
        let sum: f64 = lambda.iter().sum();
        lambda.iter_mut().for_each(|l| *l /= sum);
    }
    let plan = Plan::build(graph, scenario, Method::MinCut, best.cloud);
    (plan, bound)
}

/// The best cloud set seen so far.
struct Best<'a> {
    graph: &'a Graph,
    scenario: &'a Scenario,
    cloud: Vec<bool>,
    rank: (f64, f64),
}

impl<'a> Best<'a> {
    /// Starts from edge-only.
    fn new(graph: &'a Graph, scenario: &'a Scenario) -> Best<'a> {
        let cloud = vec![false; graph.len()];
        let rank = Breakdown::of_placement(graph, scenario, &cloud).rank(&Objective::Stream);
        Best {
            graph,
            scenario,
            cloud,
            rank,
        }
    }

    /// Costs a successor-closed cloud set without the input, keeps it if it ranks first, and
    /// returns its breakdown.
    fn consider(&mut self, cloud: Vec<bool>) -> Breakdown {
        let b = Breakdown::of_placement(self.graph, self.scenario, &cloud);
        let rank = b.rank(&Objective::Stream);
        if rank < self.rank {
            self.rank = rank;
            self.cloud = cloud;
        }
        b
    }
}

/// The topological suffixes, each node's descendants, and the complements of each node's
/// ancestors: successor-closed sets that leave the input on the edge. On a graph of more than
/// [`FAMILY_SIZE`] nodes, each family takes that many nodes spread evenly over the topological
/// order, so that the search stays O(n) sets of O(n) work each only up to that size.
fn closed_families(graph: &Graph) -> impl Iterator<Item = Vec<bool>> + '_ {
    let n = graph.len();
    let source = graph.source();
    let picked = move || (0..n.min(FAMILY_SIZE)).map(move |i| i * n / n.min(FAMILY_SIZE));
    let suffixes = picked().map(move |k| (0..n).map(|v| v > k).collect());
    let below = picked().map(move |v| reach(n, v, |u| graph.consumers(u)));
    let outside = picked().map(move |v| {
        let mut cloud = reach(n, v, |u| graph.inputs(u));
        cloud.iter_mut().for_each(|c| *c = !*c);
        cloud
    });
    suffixes
        .chain(below)
        .chain(outside)
        .filter(move |cloud: &Vec<bool>| !cloud[source])
}

/// The nodes reachable from `start` (itself included) along `next`.
fn reach<'g>(n: usize, start: usize, next: impl Fn(usize) -> &'g [usize]) -> Vec<bool> {
    let mut seen = vec![false; n];
    let mut stack = vec![start];
    seen[start] = true;
    while let Some(u) = stack.pop() {
        for &w in next(u) {
            if !seen[w] {
                seen[w] = true;
                stack.push(w);
            }
        }
    }
    seen
}
