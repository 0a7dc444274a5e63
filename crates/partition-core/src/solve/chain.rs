//! Neurosurgeon's solver: on a chain, try every split point and keep the cheapest. O(n).

use crate::cost::Weights;
use crate::error::SolveError;
use crate::graph::Graph;
use crate::plan::{Method, Plan};
use crate::scenario::Scenario;

/// Splitting after node k runs nodes 0..=k on the edge and k+1.. on the cloud, and costs
/// `Σ_{i≤k} edge + Σ_{i>k} cloud + upload(k) + result`; k = n−1 is edge-only. Ties go to the
/// split with more work on the edge.
pub(super) fn solve(graph: &Graph, scenario: &Scenario) -> Result<Plan, SolveError> {
    if let Some(v) = graph.branching_node() {
        return Err(SolveError::NotAChain(graph.id(v).to_string()));
    }
    let w = Weights::new(graph, scenario);
    let n = graph.len();
    let sink = graph.sink();
    let edge_total: f64 = w.edge.iter().sum();
    // Walk k from n−1 down to 0, moving node k+1 from the edge sum to the cloud sum.
    let mut best_k = n - 1;
    let mut best = edge_total;
    let mut edge_prefix = edge_total;
    let mut cloud_suffix = 0.0;
    for k in (0..n - 1).rev() {
        edge_prefix -= w.edge[k + 1];
        cloud_suffix += w.cloud[k + 1];
        let cost = edge_prefix + cloud_suffix + w.up[k] + w.result(sink);
        if cost < best {
            best = cost;
            best_k = k;
        }
    }
    let cloud = (0..n).map(|v| v > best_k).collect();
    Ok(Plan::build(graph, scenario, Method::Chain, cloud))
}
