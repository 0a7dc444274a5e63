//! DADS's solver: the plan as an s–t minimum cut, exact on any DAG.
//!
//! The source side of the cut is the edge, the sink side the cloud. With the solver weights
//! (ms for latency, mJ for energy):
//! - `s → v` costs `cloud[v]` (paid when v is on the cloud); the model's output also carries
//!   the result download and the round trip here, because it is on the cloud exactly when the
//!   cloud set is non-empty. The raw input gets ∞: it never leaves the edge.
//! - `v → t` costs `edge[v]` (paid when v is on the edge).
//! - A tensor u with one consumer w gets `u → w` at `up[u]`. With several consumers it gets an
//!   auxiliary node a: `u → a` at `up[u]` and `a → w` at ∞, so it is paid once however many
//!   consumers sit on the cloud.
//! - Every data edge u → w also gets `w → u` at ∞, which keeps the cloud set successor-closed.
//!
//! Every s–t path crosses a finite `v → t`, `u → w` or `u → a` edge, so the flow is bounded.
//! The cloud set is the sink's side of the cut: the nodes that can still reach t in the
//! residual network. The ∞ edges make it successor-closed and keep the input out of it.

use super::maxflow::FlowNetwork;
use crate::cost::Weights;
use crate::graph::Graph;
use crate::plan::{Method, Plan};
use crate::scenario::Scenario;

pub(super) fn solve(graph: &Graph, scenario: &Scenario) -> Plan {
    let cloud = cut(graph, &Weights::new(graph, scenario));
    Plan::build(graph, scenario, Method::MinCut, cloud)
}

/// The cloud set that minimises the sum of the weights `w`.
pub(super) fn cut(graph: &Graph, w: &Weights) -> Vec<bool> {
    let n = graph.len();
    let shared: Vec<usize> = (0..n).filter(|&u| graph.consumers(u).len() > 1).collect();
    let (s, t) = (n + shared.len(), n + shared.len() + 1);
    let edge_hint = 3 * n + shared.len() * 4;
    let mut net = FlowNetwork::new(n + shared.len() + 2, edge_hint);
    let (source, sink) = (graph.source(), graph.sink());
    for v in 0..n {
        let cloud_cost = if v == source {
            f64::INFINITY
        } else if v == sink {
            w.cloud[v] + w.result(sink)
        } else {
            w.cloud[v]
        };
        net.add(s, v, cloud_cost, 0.0);
        net.add(v, t, w.edge[v], 0.0);
    }
    let mut aux = n;
    for u in 0..n {
        match graph.consumers(u) {
            [] => {}
            &[c] => net.add(u, c, w.up[u], f64::INFINITY),
            consumers => {
                net.add(u, aux, w.up[u], 0.0);
                for &c in consumers {
                    net.add(aux, c, f64::INFINITY, 0.0);
                    net.add(c, u, f64::INFINITY, 0.0);
                }
                aux += 1;
            }
        }
    }
    let mut cloud_side = net.min_cut_sink_side(s, t);
    cloud_side.truncate(n);
    cloud_side
}
