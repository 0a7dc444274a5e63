//! The cost model of docs/DESIGN.md, evaluated for a given placement of nodes.
//!
//! For a cloud set C (and edge set E = V \ C):
//!
//! ```text
//! L(C) = Σ_E edge_ms + λ·Σ_C cloud_ms
//!      + Σ_{u∈E with a consumer in C} upload(u)        (each crossing tensor paid once)
//!      + Σ_{u∈C with a consumer in E} download(u)      (only when returns are allowed)
//!      + [sink ∈ C]·download(sink)                      (the result comes home)
//!      + (rtt + W) · ([sink ∈ C] + #{u ∈ C with a consumer in E})
//! ```
//!
//! W is the cloud's expected wait for a new request ([`Scenario::with_wait`]): each request
//! queues once, so it is paid with each round trip.
//!
//! For a successor-closed C the two return terms vanish and this is exactly docs/DESIGN.md's L(C):
//! one round trip and the result download whenever C ≠ ∅. With returns allowed, every tensor
//! that comes back to the edge is the reply to a request, so it costs its download and one
//! more round trip; later edge consumers reuse the copy for free.
//!
//! A tensor that goes up travels raw or in one of its node's [`Encoding`]s c, whichever is
//! cheapest under the objective:
//!
//! ```text
//! upload(u) = min(s(u)/Bu,  min_c e_c(u) + s_c(u)/Bu + d_c(u))       (latency)
//! ```
//!
//! and for energy the same minimum over `Pc·e_c + Pt·s_c/Bu + Pi·d_c` (raw: `Pt·s(u)/Bu`). Ties
//! go to raw, then to the earlier-listed encoding. In a [`Breakdown`] the encode time counts as
//! edge time, the encoded bytes' time as upload time and the decode time as cloud time; the
//! load factor λ scales layers only, not decoding. The choice is one term per tensor, so every
//! solver stays exact. Tensors that come down, and the result, travel raw.
//!
//! [`Encoding`]: crate::Encoding

use crate::graph::Graph;
use crate::scenario::{Objective, Scenario};

/// A plan's predicted cost, split into where the time goes. All in ms.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Breakdown {
    /// Time computing on the edge, encoding included.
    pub edge_ms: f64,
    /// Time sending tensors up, each as raw or encoded as chosen.
    pub upload_ms: f64,
    /// Time computing on the cloud: layers after the load factor, plus decoding (which the
    /// load factor does not scale).
    pub cloud_ms: f64,
    /// Time sending tensors down, the result included.
    pub download_ms: f64,
    /// Round-trip latency paid.
    pub rtt_ms: f64,
    /// The cloud's expected queueing wait paid, once per request to it.
    pub wait_ms: f64,
    /// The sum of the six parts: the end-to-end latency.
    pub total_ms: f64,
}

impl Breakdown {
    /// The breakdown of placing the nodes marked `true` in `cloud` on the cloud.
    ///
    /// `cloud` must have one entry per node; callers check this.
    pub(crate) fn of_placement(graph: &Graph, scenario: &Scenario, cloud: &[bool]) -> Breakdown {
        let link = scenario.link();
        let mut b = Breakdown::default();
        let mut round_trips = 0u32;
        for v in 0..graph.len() {
            if cloud[v] {
                b.cloud_ms += scenario.load_factor() * graph.cloud_ms(v);
            } else {
                b.edge_ms += graph.edge_ms(v);
            }
            let crosses = graph.consumers(v).iter().any(|&w| cloud[w] != cloud[v]);
            if crosses && cloud[v] {
                b.download_ms += link.download_ms(graph.out_bytes(v));
                round_trips += 1;
            } else if crosses {
                let up = Upload::cheapest(graph, scenario, v);
                b.edge_ms += up.edge_ms;
                b.upload_ms += up.upload_ms;
                b.cloud_ms += up.cloud_ms;
            }
        }
        let sink = graph.sink();
        if cloud[sink] {
            b.download_ms += link.download_ms(graph.out_bytes(sink));
            round_trips += 1;
        }
        b.rtt_ms = f64::from(round_trips) * link.rtt_ms();
        b.wait_ms = f64::from(round_trips) * scenario.wait_ms();
        b.total_ms = b.edge_ms + b.upload_ms + b.cloud_ms + b.download_ms + b.rtt_ms + b.wait_ms;
        b
    }

    /// The objective's value for this breakdown: ms for latency, mJ for energy.
    pub fn objective_value(&self, objective: &Objective) -> f64 {
        match *objective {
            Objective::Latency => self.total_ms,
            Objective::Energy {
                compute_w,
                transmit_w,
                idle_w,
            } => {
                compute_w * self.edge_ms
                    + transmit_w * self.upload_ms
                    + idle_w * (self.cloud_ms + self.download_ms + self.rtt_ms + self.wait_ms)
            }
        }
    }
}

/// What each kind of time weighs under the objective: `[compute, transmit, idle]`, all 1 for
/// latency and the three powers (W) for energy.
fn powers(objective: &Objective) -> [f64; 3] {
    match *objective {
        Objective::Latency => [1.0, 1.0, 1.0],
        Objective::Energy {
            compute_w,
            transmit_w,
            idle_w,
        } => [compute_w, transmit_w, idle_w],
    }
}

/// How a tensor goes up: raw or one of its encodings, with the time it adds on each side.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Upload {
    /// The index into the node's encodings; `None` for raw.
    pub encoding: Option<usize>,
    /// Bytes sent.
    pub bytes: u64,
    /// Encode time on the edge.
    pub edge_ms: f64,
    /// Time on the uplink.
    pub upload_ms: f64,
    /// Decode time on the cloud.
    pub cloud_ms: f64,
}

impl Upload {
    /// The cheapest way to send tensor `u` up under the scenario's objective. Ties go to raw,
    /// then to the earlier-listed encoding. The one place where the choice is made.
    pub fn cheapest(graph: &Graph, scenario: &Scenario, u: usize) -> Upload {
        let link = scenario.link();
        let raw_bytes = graph.out_bytes(u);
        let raw = Upload {
            encoding: None,
            bytes: raw_bytes,
            edge_ms: 0.0,
            upload_ms: link.upload_ms(raw_bytes),
            cloud_ms: 0.0,
        };
        let powers = powers(scenario.objective());
        let encoded = graph.encodings(u).iter().enumerate().map(|(i, e)| Upload {
            encoding: Some(i),
            bytes: e.bytes,
            edge_ms: e.edge_ms,
            upload_ms: link.upload_ms(e.bytes),
            cloud_ms: e.cloud_ms,
        });
        encoded.fold(raw, |best, candidate| {
            if candidate.weight(powers) < best.weight(powers) {
                candidate
            } else {
                best
            }
        })
    }

    /// Its cost in the objective's unit, given [`powers`].
    fn weight(&self, [compute, transmit, idle]: [f64; 3]) -> f64 {
        compute * self.edge_ms + transmit * self.upload_ms + idle * self.cloud_ms
    }
}

/// Per-node costs in the objective's unit, as the solvers consume them.
///
/// `edge[v]` is paid when v runs on the edge, `cloud[v]` when it runs on the cloud, `up[u]` once
/// when tensor u goes up (in its [`Upload::cheapest`] form), `down[u]` once when it comes down,
/// and `rtt` per round trip (the round trip and the cloud's expected wait).
pub(crate) struct Weights {
    pub edge: Vec<f64>,
    pub cloud: Vec<f64>,
    pub up: Vec<f64>,
    pub down: Vec<f64>,
    pub rtt: f64,
}

impl Weights {
    pub fn new(graph: &Graph, scenario: &Scenario) -> Weights {
        let powers = powers(scenario.objective());
        let [compute, _, idle] = powers;
        let link = scenario.link();
        let n = graph.len();
        Weights {
            edge: (0..n).map(|v| compute * graph.edge_ms(v)).collect(),
            cloud: (0..n)
                .map(|v| idle * scenario.load_factor() * graph.cloud_ms(v))
                .collect(),
            up: (0..n)
                .map(|v| Upload::cheapest(graph, scenario, v).weight(powers))
                .collect(),
            down: (0..n)
                .map(|v| idle * link.download_ms(graph.out_bytes(v)))
                .collect(),
            rtt: idle * (link.rtt_ms() + scenario.wait_ms()),
        }
    }

    /// What running the sink on the cloud adds: one round trip and the result's download.
    pub fn result(&self, sink: usize) -> f64 {
        self.rtt + self.down[sink]
    }
}
