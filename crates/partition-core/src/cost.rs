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
//! The stream objective is not a sum: a pipelined stream's time per frame is its slowest stage,
//!
//! ```text
//! S(C) = max(edge, upload, cloud + W·[C ≠ ∅], download)
//! ```
//!
//! with each part summed as in L(C) (round trips overlap with other frames, so they do not
//! count). Ties go to the lower L(C). The crossing tensors' forms are then chosen together for
//! the whole placement: every combination is tried when there are at most
//! [`MAX_STREAM_FORM_COMBINATIONS`], which makes the choice exact (always, on a chain, where one
//! tensor crosses); above that, starting from the latency-cheapest forms, one tensor at a time
//! takes the form that lowers (S, L) most, until none does.
//!
//! [`Encoding`]: crate::Encoding

use crate::graph::Graph;
use crate::scenario::{Objective, Scenario};

/// Most combinations of forms tried one by one for the stream objective; above it, the forms
/// are improved one tensor at a time.
const MAX_STREAM_FORM_COMBINATIONS: usize = 512;
/// Most passes over the crossing tensors when improving their forms one at a time.
const STREAM_FORM_PASSES: usize = 8;

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
        Breakdown::priced(graph, scenario, cloud).0
    }

    /// The breakdown of a placement, with the form each tensor that goes up travels in (its
    /// node and [`Upload`], in topological order).
    pub(crate) fn priced(
        graph: &Graph,
        scenario: &Scenario,
        cloud: &[bool],
    ) -> (Breakdown, Vec<(usize, Upload)>) {
        let link = scenario.link();
        let mut b = Breakdown::default();
        let mut round_trips = 0u32;
        let mut going_up = Vec::new();
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
                going_up.push(v);
            }
        }
        let sink = graph.sink();
        if cloud[sink] {
            b.download_ms += link.download_ms(graph.out_bytes(sink));
            round_trips += 1;
        }
        b.rtt_ms = f64::from(round_trips) * link.rtt_ms();
        b.wait_ms = f64::from(round_trips) * scenario.wait_ms();
        b.total_ms = b.sum();
        let uploads = choose_uploads(graph, scenario, &b, &going_up);
        let b = uploads.iter().fold(b, |b, (_, up)| b.plus(up));
        (b, uploads)
    }

    /// This breakdown with one more tensor sent up in the form `up`.
    pub(crate) fn plus(mut self, up: &Upload) -> Breakdown {
        self.edge_ms += up.edge_ms;
        self.upload_ms += up.upload_ms;
        self.cloud_ms += up.cloud_ms;
        self.total_ms = self.sum();
        self
    }

    /// The six parts added up.
    fn sum(&self) -> f64 {
        self.edge_ms
            + self.upload_ms
            + self.cloud_ms
            + self.download_ms
            + self.rtt_ms
            + self.wait_ms
    }

    /// The time per frame of a pipelined stream, in ms: the slowest of the edge, the uplink,
    /// the cloud with its expected wait, and the downlink.
    pub fn bottleneck_ms(&self) -> f64 {
        self.edge_ms
            .max(self.upload_ms)
            .max(self.cloud_ms + self.wait_ms)
            .max(self.download_ms)
    }

    /// The four stages of a pipelined stream, in ms: edge, uplink, cloud with its wait, downlink.
    pub(crate) fn stages(&self) -> [f64; 4] {
        [
            self.edge_ms,
            self.upload_ms,
            self.cloud_ms + self.wait_ms,
            self.download_ms,
        ]
    }

    /// The objective's value for this breakdown: ms for latency, mJ for energy, ms per frame
    /// for the stream.
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
            Objective::Stream => self.bottleneck_ms(),
        }
    }

    /// What the solvers compare, lower is better: the objective's value, then for the stream
    /// the end-to-end latency that breaks its ties.
    pub(crate) fn rank(&self, objective: &Objective) -> (f64, f64) {
        let tie = match objective {
            Objective::Stream => self.total_ms,
            Objective::Latency | Objective::Energy { .. } => 0.0,
        };
        (self.objective_value(objective), tie)
    }
}

/// The form each tensor in `going_up` travels in, given the rest of the placement's costs
/// (`base`): the cheapest under a summed objective, and for the stream the forms that lower
/// the slowest stage (see the module's notes).
fn choose_uploads(
    graph: &Graph,
    scenario: &Scenario,
    base: &Breakdown,
    going_up: &[usize],
) -> Vec<(usize, Upload)> {
    let cheapest = going_up
        .iter()
        .map(|&u| (u, Upload::cheapest(graph, scenario, u)));
    if *scenario.objective() != Objective::Stream {
        return cheapest.collect();
    }
    let options: Vec<Vec<Upload>> = going_up
        .iter()
        .map(|&u| Upload::options(graph, scenario, u).collect())
        .collect();
    let mut pick: Vec<usize> = cheapest
        .map(|(_, up)| up.encoding.map_or(0, |i| i + 1))
        .collect();
    let rank = |pick: &[usize]| {
        let b = pick
            .iter()
            .zip(&options)
            .fold(*base, |b, (&p, forms)| b.plus(&forms[p]));
        b.rank(&Objective::Stream)
    };
    let combinations = options
        .iter()
        .try_fold(1usize, |n, forms| n.checked_mul(forms.len()))
        .unwrap_or(usize::MAX);
    if combinations <= MAX_STREAM_FORM_COMBINATIONS {
        pick = best_combination(&options, rank);
    } else {
        descend(&options, &mut pick, rank);
    }
    going_up
        .iter()
        .zip(pick.iter().zip(&options))
        .map(|(&u, (&p, forms))| (u, forms[p]))
        .collect()
}

/// The combination of forms (one index per tensor into its `options`) that `rank` puts first,
/// trying every one; ties go to the earlier combination, raw first.
fn best_combination(options: &[Vec<Upload>], rank: impl Fn(&[usize]) -> (f64, f64)) -> Vec<usize> {
    let mut pick = vec![0; options.len()];
    let mut best = (rank(&pick), pick.clone());
    // Count through the combinations like an odometer, the last tensor fastest.
    loop {
        let Some(i) = (0..pick.len())
            .rev()
            .find(|&i| pick[i] + 1 < options[i].len())
        else {
            return best.1;
        };
        pick[i] += 1;
        pick[i + 1..].iter_mut().for_each(|p| *p = 0);
        let candidate = rank(&pick);
        if candidate < best.0 {
            best = (candidate, pick.clone());
        }
    }
}

/// Improves `pick` one tensor at a time: each takes the form that `rank` puts first given the
/// others, until a pass changes nothing or [`STREAM_FORM_PASSES`] passes have run.
fn descend(options: &[Vec<Upload>], pick: &mut [usize], rank: impl Fn(&[usize]) -> (f64, f64)) {
    let mut best = rank(pick);
    for _ in 0..STREAM_FORM_PASSES {
        let mut improved = false;
        for i in 0..pick.len() {
            let mut keep = pick[i];
            for form in 0..options[i].len() {
                pick[i] = form;
                let candidate = rank(pick);
                if candidate < best {
                    best = candidate;
                    keep = form;
                    improved = true;
                }
            }
            pick[i] = keep;
        }
        if !improved {
            break;
        }
    }
}

/// What each kind of time weighs in a sum the solvers minimise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Factors {
    /// Edge compute, encoding included.
    pub compute: f64,
    /// The uplink.
    pub transmit: f64,
    /// Cloud compute, decoding included.
    pub cloud: f64,
    /// The downlink.
    pub down: f64,
    /// Each round trip's latency.
    pub round_trip: f64,
    /// Each request's expected wait at the cloud.
    pub wait: f64,
}

impl Factors {
    /// The objective's own weights: all 1 for latency, the three powers (W) for energy. The
    /// stream objective is not a sum; its tensors start from the latency weights.
    pub fn of(objective: &Objective) -> Factors {
        match *objective {
            Objective::Latency | Objective::Stream => Factors::stages([1.0, 1.0, 1.0, 1.0], 1.0),
            Objective::Energy {
                compute_w,
                transmit_w,
                idle_w,
            } => Factors::stages([compute_w, transmit_w, idle_w, idle_w], idle_w),
        }
    }

    /// Weights for the four stream stages (edge, uplink, cloud with its wait, downlink), and
    /// for the round trips.
    pub fn stages([compute, transmit, cloud, down]: [f64; 4], round_trip: f64) -> Factors {
        Factors {
            compute,
            transmit,
            cloud,
            down,
            round_trip,
            wait: cloud,
        }
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
    /// Every form tensor `u` can go up in: raw first, then its encodings in order.
    pub fn options<'a>(
        graph: &'a Graph,
        scenario: &'a Scenario,
        u: usize,
    ) -> impl Iterator<Item = Upload> + 'a {
        let link = scenario.link();
        let raw_bytes = graph.out_bytes(u);
        let raw = Upload {
            encoding: None,
            bytes: raw_bytes,
            edge_ms: 0.0,
            upload_ms: link.upload_ms(raw_bytes),
            cloud_ms: 0.0,
        };
        let encoded = graph
            .encodings(u)
            .iter()
            .enumerate()
            .map(move |(i, e)| Upload {
                encoding: Some(i),
                bytes: e.bytes,
                edge_ms: e.edge_ms,
                upload_ms: link.upload_ms(e.bytes),
                cloud_ms: e.cloud_ms,
            });
        std::iter::once(raw).chain(encoded)
    }

    /// The cheapest way to send tensor `u` up under the scenario's objective. Ties go to raw,
    /// then to the earlier-listed encoding.
    pub fn cheapest(graph: &Graph, scenario: &Scenario, u: usize) -> Upload {
        Upload::cheapest_under(graph, scenario, u, Factors::of(scenario.objective()))
    }

    /// The cheapest way to send tensor `u` up under the given weights; the one place where
    /// the choice for a sum is made.
    pub fn cheapest_under(
        graph: &Graph,
        scenario: &Scenario,
        u: usize,
        factors: Factors,
    ) -> Upload {
        let mut options = Upload::options(graph, scenario, u);
        let raw = options.next().expect("raw is always an option");
        options.fold(raw, |best, candidate| {
            if candidate.weight(factors) < best.weight(factors) {
                candidate
            } else {
                best
            }
        })
    }

    /// Its cost under the weights.
    fn weight(&self, f: Factors) -> f64 {
        f.compute * self.edge_ms + f.transmit * self.upload_ms + f.cloud * self.cloud_ms
    }
}

/// Per-node costs in the objective's unit, as the solvers consume them.
///
/// `edge[v]` is paid when v runs on the edge, `cloud[v]` when it runs on the cloud, `up[u]` once
/// when tensor u goes up (in its cheapest form), `down[u]` once when it comes down,
/// and `rtt` per round trip (the round trip and the cloud's expected wait).
pub(crate) struct Weights {
    pub edge: Vec<f64>,
    pub cloud: Vec<f64>,
    pub up: Vec<f64>,
    pub down: Vec<f64>,
    pub rtt: f64,
}

impl Weights {
    /// The weights of the scenario's objective (latency or energy).
    pub fn new(graph: &Graph, scenario: &Scenario) -> Weights {
        Weights::under(graph, scenario, Factors::of(scenario.objective()))
    }

    /// The weights of a weighted sum of the kinds of time.
    pub fn under(graph: &Graph, scenario: &Scenario, f: Factors) -> Weights {
        let link = scenario.link();
        let n = graph.len();
        Weights {
            edge: (0..n).map(|v| f.compute * graph.edge_ms(v)).collect(),
            cloud: (0..n)
                .map(|v| f.cloud * scenario.load_factor() * graph.cloud_ms(v))
                .collect(),
            up: (0..n)
                .map(|v| Upload::cheapest_under(graph, scenario, v, f).weight(f))
                .collect(),
            down: (0..n)
                .map(|v| f.down * link.download_ms(graph.out_bytes(v)))
                .collect(),
            rtt: f.round_trip * link.rtt_ms() + f.wait * scenario.wait_ms(),
        }
    }

    /// What running the sink on the cloud adds: one round trip and the result's download.
    pub fn result(&self, sink: usize) -> f64 {
        self.rtt + self.down[sink]
    }

    /// The weighted cost of a successor-closed placement.
    pub fn of_placement(&self, graph: &Graph, cloud: &[bool]) -> f64 {
        let mut total = 0.0;
        for v in 0..graph.len() {
            total += if cloud[v] {
                self.cloud[v]
            } else {
                self.edge[v]
            };
            if !cloud[v] && graph.consumers(v).iter().any(|&w| cloud[w]) {
                total += self.up[v];
            }
        }
        if cloud[graph.sink()] {
            total += self.result(graph.sink());
        }
        total
    }
}
