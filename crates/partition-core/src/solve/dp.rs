//! Shortest path over (layer, placement) states, after JointDNN.
//!
//! Nodes are visited in topological order. A state records, for every *live* tensor (computed,
//! and still needed by a node not yet visited), where a copy of it is: on the edge, on the
//! cloud, or on both once it has been transferred. Placing node v on a site pays its compute
//! there and the transfer of each input not yet on that site (each tensor is sent at most once
//! per direction). A tensor sent down to the edge pays its download and one round trip; a cloud
//! sink pays the result download and one round trip. This is exactly the cost model of
//! `cost.rs`, so the DP is exact.
//!
//! Without `allow_return`, no edge node may take a cloud tensor: the plans are docs/DESIGN.md's
//! successor-closed sets, and the DP's optimum equals `chain` and `mincut`. With it, the
//! computation may come back to the edge (the JointDNN model), which can only lower the optimum.
//!
//! Complexity: with w the largest number of live tensors, there are at most 3^w states per
//! layer, each expanded into 2 placements that touch at most d inputs, so time is O(n · 3^w · d)
//! and memory O(n · 3^w). A chain has w = 1 (O(n)); a ResNet has w ≤ 2; an inception module
//! with four branches w ≤ 5. Graphs whose frontier needs more than [`MAX_STATES`] states are
//! refused with a pointer to `mincut`.

use std::collections::HashMap;

use crate::cost::Weights;
use crate::error::SolveError;
use crate::graph::Graph;
use crate::plan::{Method, Plan};
use crate::scenario::Scenario;

/// Most states the DP keeps for one layer (3^12).
pub const MAX_STATES: usize = 531_441;

/// Where the copies of a live tensor are: bit 0 = edge, bit 1 = cloud.
const EDGE: u64 = 1;
const CLOUD: u64 = 2;

/// A state after some layer: the sites of each live tensor, 2 bits per tensor in live order.
#[derive(Clone, Copy)]
struct Entry {
    cost: f64,
    /// Index of the predecessor state in the previous layer.
    prev: usize,
    /// Whether the layer's node runs on the cloud.
    on_cloud: bool,
}

pub(super) fn solve(
    graph: &Graph,
    scenario: &Scenario,
    allow_return: bool,
) -> Result<Plan, SolveError> {
    let w = Weights::new(graph, scenario);
    let n = graph.len();
    let sink = graph.sink();
    let last_use: Vec<usize> = (0..n)
        .map(|u| graph.consumers(u).iter().copied().max().unwrap_or(u))
        .collect();
    // layers[0] is the empty start; layers[v + 1] holds the states after node v, and
    // keys[i] is the live-tensor sites of the i-th state of the newest layer.
    let start = Entry {
        cost: 0.0,
        prev: 0,
        on_cloud: false,
    };
    let mut layers: Vec<Vec<Entry>> = Vec::with_capacity(n + 1);
    layers.push(vec![start]);
    let mut live: Vec<usize> = Vec::new();
    let mut keys: Vec<u64> = vec![0];
    for v in 0..n {
        // Slots of v's inputs in the current live list, and the live list after v.
        let input_slots: Vec<(usize, usize)> = graph
            .inputs(v)
            .iter()
            .map(|&u| (u, live.iter().position(|&x| x == u).unwrap_or(0)))
            .collect();
        let kept: Vec<usize> = (0..live.len()).filter(|&i| last_use[live[i]] > v).collect();
        let mut next_live: Vec<usize> = kept.iter().map(|&i| live[i]).collect();
        if !graph.consumers(v).is_empty() {
            next_live.push(v);
        }
        if next_live.len() > 32 || 3usize.saturating_pow(next_live.len() as u32) > MAX_STATES {
            return Err(SolveError::TooWideForDp {
                node: graph.id(v).to_string(),
                live: next_live.len(),
                states: 3usize.saturating_pow(next_live.len() as u32),
            });
        }
        let sites: &[bool] = if v == graph.source() {
            &[false]
        } else {
            &[false, true]
        };
        let mut index: HashMap<u64, usize> = HashMap::new();
        let mut next_keys = Vec::new();
        let mut layer: Vec<Entry> = Vec::new();
        let prev_layer = &layers[v];
        for (si, (&key, entry)) in keys.iter().zip(prev_layer).enumerate() {
            for &on_cloud in sites {
                let need = if on_cloud { CLOUD } else { EDGE };
                let mut key = key;
                let mut cost = entry.cost + if on_cloud { w.cloud[v] } else { w.edge[v] };
                let mut feasible = true;
                for &(u, slot) in &input_slots {
                    let held = (key >> (2 * slot)) & 3;
                    if held & need != 0 {
                        continue;
                    }
                    if on_cloud {
                        cost += w.up[u];
                    } else if allow_return {
                        cost += w.down[u] + w.rtt;
                    } else {
                        feasible = false;
                        break;
                    }
                    key |= need << (2 * slot);
                }
                if !feasible {
                    continue;
                }
                if v == sink && on_cloud {
                    cost += w.result(sink);
                }
                let mut next_key = 0u64;
                for (j, &i) in kept.iter().enumerate() {
                    next_key |= ((key >> (2 * i)) & 3) << (2 * j);
                }
                if !graph.consumers(v).is_empty() {
                    next_key |= need << (2 * kept.len());
                }
                let candidate = Entry {
                    cost,
                    prev: si,
                    on_cloud,
                };
                match index.get(&next_key) {
                    Some(&at) if layer[at].cost <= cost => {}
                    Some(&at) => layer[at] = candidate,
                    None => {
                        index.insert(next_key, layer.len());
                        next_keys.push(next_key);
                        layer.push(candidate);
                    }
                }
            }
        }
        layers.push(layer);
        keys = next_keys;
        live = next_live;
    }
    // After the sink nothing is live, so the last layer holds one state; edge-only is always
    // feasible, so it is never empty.
    let mut at = 0;
    let mut cloud = vec![false; n];
    for v in (0..n).rev() {
        let entry = layers[v + 1][at];
        cloud[v] = entry.on_cloud;
        at = entry.prev;
    }
    let method = Method::Dp { allow_return };
    Ok(Plan::build(graph, scenario, method, cloud))
}
