//! Neurosurgeon applied to a DAG the way its ports do: cut the topological order once, and only
//! where at most one tensor crosses. A baseline for comparisons, not an optimum: on branching
//! graphs it cannot cut beside a residual or inception branch, which DADS's min-cut can.

use crate::cost::Weights;
use crate::graph::Graph;
use crate::plan::{Method, Plan};
use crate::scenario::Scenario;

/// Splitting after position k runs nodes 0..=k on the edge and the rest on the cloud. The split
/// is allowed when at most one tensor of 0..=k is read after k (k = n−1 is edge-only). Its cost
/// is `Σ_{i≤k} edge + Σ_{i>k} cloud + upload(u) + result`, where u is the crossing tensor. Ties
/// go to the split with more work on the edge. O(n + E): the crossing tensors of every split
/// are counted with a difference array over each tensor's span up to its last reader.
pub(super) fn solve(graph: &Graph, scenario: &Scenario) -> Plan {
    let w = Weights::new(graph, scenario);
    let n = graph.len();
    let sink = graph.sink();
    // Tensor u crosses the splits k in u..last_reader(u); count them, and sum their indices
    // so that a split with exactly one crossing tensor knows which one it is.
    let mut count = vec![0i64; n + 1];
    let mut index_sum = vec![0i64; n + 1];
    for u in 0..n {
        if let Some(&last) = graph.consumers(u).iter().max() {
            count[u] += 1;
            count[last] -= 1;
            index_sum[u] += u as i64;
            index_sum[last] -= u as i64;
        }
    }
    let edge_total: f64 = w.edge.iter().sum();
    let mut best_k = n - 1;
    let mut best = edge_total;
    let mut edge_prefix = 0.0;
    let mut cloud_suffix: f64 = w.cloud.iter().sum();
    let (mut crossing, mut crossing_sum) = (0i64, 0i64);
    for k in 0..n - 1 {
        edge_prefix += w.edge[k];
        cloud_suffix -= w.cloud[k];
        crossing += count[k];
        crossing_sum += index_sum[k];
        if crossing != 1 {
            continue;
        }
        let u = crossing_sum as usize;
        let cost = edge_prefix + cloud_suffix + w.up[u] + w.result(sink);
        if cost < best {
            best = cost;
            best_k = k;
        }
    }
    let cloud = (0..n).map(|v| v > best_k).collect();
    Plan::build(graph, scenario, Method::Prefix, cloud)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Link;
    use crate::solve::Solver;
    use crate::synthetic;

    fn scenarios() -> Vec<Scenario> {
        [0.5, 5.85, 100.0, 10_000.0]
            .into_iter()
            .map(|mbps| Scenario::latency(Link::new(mbps, mbps * 4.0, 20.0).expect("link")))
            .collect()
    }

    /// The reference: cost every prefix split with at most one crossing tensor.
    fn brute_force(graph: &Graph, scenario: &Scenario) -> f64 {
        (0..graph.len())
            .map(|k| (0..graph.len()).map(|v| v > k).collect::<Vec<bool>>())
            .map(|cloud| Plan::build(graph, scenario, Method::Prefix, cloud))
            .filter(|p| p.transfers().len() <= 1)
            .map(|p| p.value())
            .fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn on_chains_it_is_neurosurgeons_chain_solver() {
        for seed in 0..20 {
            let graph = synthetic::chain(30, seed);
            for s in scenarios() {
                let prefix = solve(&graph, &s);
                let chain = Solver::Chain.solve(&graph, &s).expect("a chain");
                assert!(prefix.same_placement(&chain), "seed {seed}");
            }
        }
    }

    #[test]
    fn on_dags_it_is_the_best_single_tensor_prefix_and_never_beats_mincut() {
        for seed in 0..20 {
            for graph in [
                synthetic::residual(6, seed),
                synthetic::inception(4, seed),
                synthetic::random_dag(40, seed),
            ] {
                for s in scenarios() {
                    let prefix = solve(&graph, &s);
                    assert!(prefix.transfers().len() <= 1, "seed {seed}");
                    let reference = brute_force(&graph, &s);
                    assert!(
                        (prefix.value() - reference).abs() <= 1e-9 * reference.max(1.0),
                        "seed {seed}: {} vs {reference}",
                        prefix.value()
                    );
                    let mincut = Solver::MinCut.solve(&graph, &s).expect("solves");
                    assert!(mincut.value() <= prefix.value() + 1e-9, "seed {seed}");
                }
            }
        }
    }
}
