//! Neurosurgeon's solver: on a chain, try every split point and keep the cheapest. O(n), and
//! exact for every objective, the stream's included: a chain's split sends one tensor up.

use crate::cost::{Breakdown, Upload, Weights};
use crate::error::SolveError;
use crate::graph::Graph;
use crate::plan::{Method, Plan};
use crate::scenario::{Objective, Scenario};

/// Splitting after node k runs nodes 0..=k on the edge and k+1.. on the cloud; k = n−1 is
/// edge-only. Ties go to the split with more work on the edge.
pub(super) fn solve(graph: &Graph, scenario: &Scenario) -> Result<Plan, SolveError> {
    if let Some(v) = graph.branching_node() {
        return Err(SolveError::NotAChain(graph.id(v).to_string()));
    }
    let best_k = match scenario.objective() {
        Objective::Stream => stream_split(graph, scenario),
        Objective::Latency | Objective::Energy { .. } => summed_split(graph, scenario),
    };
    let cloud = (0..graph.len()).map(|v| v > best_k).collect();
    Ok(Plan::build(graph, scenario, Method::Chain, cloud))
}

/// The split that minimises `Σ_{i≤k} edge + Σ_{i>k} cloud + upload(k) + result`.
fn summed_split(graph: &Graph, scenario: &Scenario) -> usize {
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
    best_k
}

/// The split that minimises the slowest stage, `max(Σ_{i≤k} edge + encode(k), send(k),
/// Σ_{i>k} cloud + decode(k) + W, result)`, over every form tensor k can travel in; ties go to
/// the lower latency.
fn stream_split(graph: &Graph, scenario: &Scenario) -> usize {
    let n = graph.len();
    let link = scenario.link();
    let edge_total: f64 = (0..n).map(|v| graph.edge_ms(v)).sum();
    let edge_only = Breakdown {
        edge_ms: edge_total,
        total_ms: edge_total,
        ..Breakdown::default()
    };
    let mut best = edge_only.rank(&Objective::Stream);
    let mut best_k = n - 1;
    let mut edge_prefix = edge_total;
    let mut cloud_suffix = 0.0;
    for k in (0..n - 1).rev() {
        edge_prefix -= graph.edge_ms(k + 1);
        cloud_suffix += scenario.load_factor() * graph.cloud_ms(k + 1);
        let before_upload = Breakdown {
            edge_ms: edge_prefix,
            cloud_ms: cloud_suffix,
            download_ms: link.download_ms(graph.out_bytes(graph.sink())),
            rtt_ms: link.rtt_ms(),
            wait_ms: scenario.wait_ms(),
            ..Breakdown::default()
        };
        for up in Upload::options(graph, scenario, k) {
            let rank = before_upload.plus(&up).rank(&Objective::Stream);
            if rank < best {
                best = rank;
                best_k = k;
            }
        }
    }
    best_k
}
