//! The reference solver: cost every feasible placement and keep the cheapest.
//!
//! Without returns it enumerates the successor-closed sets by visiting nodes in reverse
//! topological order: a node may join the cloud only if all its consumers already have. With
//! returns it enumerates every placement that keeps the input on the edge (2^(n−1)). Each
//! candidate is costed by the cost model itself, independently of the other solvers' weights.

use crate::cost::Breakdown;
use crate::error::SolveError;
use crate::graph::Graph;
use crate::plan::{Method, Plan};
use crate::scenario::Scenario;

/// Largest graph the exhaustive solver accepts.
pub const MAX_EXHAUSTIVE_NODES: usize = 22;

pub(super) fn solve(
    graph: &Graph,
    scenario: &Scenario,
    allow_return: bool,
) -> Result<Plan, SolveError> {
    let n = graph.len();
    if n > MAX_EXHAUSTIVE_NODES {
        return Err(SolveError::TooLargeForExhaustive {
            nodes: n,
            max: MAX_EXHAUSTIVE_NODES,
        });
    }
    let mut search = Search {
        graph,
        scenario,
        allow_return,
        cloud: vec![false; n],
        best: None,
    };
    search.visit(n - 1);
    let cloud = search
        .best
        .map(|(_, c)| c)
        .unwrap_or_else(|| vec![false; n]);
    let method = Method::Exhaustive { allow_return };
    Ok(Plan::build(graph, scenario, method, cloud))
}

struct Search<'a> {
    graph: &'a Graph,
    scenario: &'a Scenario,
    allow_return: bool,
    cloud: Vec<bool>,
    best: Option<((f64, f64), Vec<bool>)>,
}

impl Search<'_> {
    /// Decides node `v` (nodes above `v` are decided), then recurses to `v − 1`. Node 0, the
    /// raw input, always stays on the edge, so reaching it completes a placement.
    fn visit(&mut self, v: usize) {
        if v == 0 {
            let b = Breakdown::of_placement(self.graph, self.scenario, &self.cloud);
            let value = b.rank(self.scenario.objective());
            if self.best.as_ref().is_none_or(|(best, _)| value < *best) {
                self.best = Some((value, self.cloud.clone()));
            }
            return;
        }
        self.visit(v - 1);
        let may_join = self.allow_return || self.graph.consumers(v).iter().all(|&w| self.cloud[w]);
        if may_join {
            self.cloud[v] = true;
            self.visit(v - 1);
            self.cloud[v] = false;
        }
    }
}
