//! Seeded synthetic graphs with realistic cost ranges, for tests, benches and experiments.
//!
//! Shapes: chains (AlexNet/VGG-like), residual stacks (ResNet-like skip connections),
//! inception stacks (2–4 parallel branches joined by a concat) and random DAGs. The same seed
//! always gives the same graph.

use crate::graph::{Graph, NodeSpec};

/// A small, fast, seedable generator (SplitMix64). Good enough for test data; not for crypto.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, 1) as f32, from 24 random bits (so every value is exact): seeded weights
    /// and inputs.
    pub fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform integer in [lo, hi]; `lo` when the range is empty.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// Log-uniform in [lo, hi] (both > 0).
    pub fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + self.unit() * (hi.ln() - lo.ln())).exp()
    }
}

/// Builds graphs node by node with random but plausible costs.
struct Builder {
    rng: SplitMix64,
    nodes: Vec<NodeSpec>,
}

impl Builder {
    fn new(seed: u64) -> Builder {
        let input = NodeSpec {
            id: "input".into(),
            inputs: vec![],
            edge_ms: 0.0,
            cloud_ms: 0.0,
            out_bytes: 602_112.0,
            encodings: Vec::new(),
        };
        Builder {
            rng: SplitMix64::new(seed),
            nodes: vec![input],
        }
    }

    /// Adds a layer fed by `inputs` (node indices) and returns its index. Edge time spans
    /// 0.05–40 ms, the cloud is 2–30× faster, and outputs span 1 KB–3 MB.
    fn layer(&mut self, name: String, inputs: &[usize]) -> usize {
        let edge_ms = self.rng.log_uniform(0.05, 40.0);
        let speedup = self.rng.log_uniform(2.0, 30.0);
        let out_bytes = self.rng.log_uniform(1e3, 3e6).round();
        self.nodes.push(NodeSpec {
            id: name,
            inputs: inputs.iter().map(|&i| self.nodes[i].id.clone()).collect(),
            edge_ms,
            cloud_ms: edge_ms / speedup,
            out_bytes,
            encodings: Vec::new(),
        });
        self.nodes.len() - 1
    }

    fn finish(self, name: String) -> Graph {
        // The builders below always produce one source and one sink, so this cannot fail.
        Graph::new(name, self.nodes).unwrap_or_else(|e| unreachable!("synthetic graph: {e}"))
    }
}

/// A chain: the input and `layers` layers.
pub fn chain(layers: usize, seed: u64) -> Graph {
    let mut b = Builder::new(seed);
    let mut prev = 0;
    for i in 0..layers {
        prev = b.layer(format!("layer{i}"), &[prev]);
    }
    b.finish(format!("synthetic chain of {layers} layers (seed {seed})"))
}

/// A stem, then `blocks` residual blocks (1–2 convolutions and an add that takes the block's
/// input as a skip connection, sometimes through a projection), then a head.
pub fn residual(blocks: usize, seed: u64) -> Graph {
    let mut b = Builder::new(seed);
    let mut x = b.layer("stem".into(), &[0]);
    for i in 0..blocks {
        let mut y = x;
        for j in 0..b.rng.range(1, 2) {
            y = b.layer(format!("block{i}.conv{j}"), &[y]);
        }
        let skip = if b.rng.range(0, 3) == 0 {
            b.layer(format!("block{i}.downsample"), &[x])
        } else {
            x
        };
        x = b.layer(format!("block{i}.add"), &[y, skip]);
    }
    b.layer("head".into(), &[x]);
    b.finish(format!(
        "synthetic residual stack of {blocks} blocks (seed {seed})"
    ))
}

/// A stem, then `modules` inception modules (2–4 branches of 1–3 layers, joined by a concat),
/// then a head.
pub fn inception(modules: usize, seed: u64) -> Graph {
    let mut b = Builder::new(seed);
    let mut x = b.layer("stem".into(), &[0]);
    for i in 0..modules {
        let mut ends = Vec::new();
        for j in 0..b.rng.range(2, 4) {
            let mut y = x;
            for k in 0..b.rng.range(1, 3) {
                y = b.layer(format!("inception{i}.branch{j}.{k}"), &[y]);
            }
            ends.push(y);
        }
        x = b.layer(format!("inception{i}.concat"), &ends);
    }
    b.layer("head".into(), &[x]);
    b.finish(format!(
        "synthetic inception stack of {modules} modules (seed {seed})"
    ))
}

/// A random DAG of `nodes` nodes (at least 2). Each node takes 1–3 inputs, mostly from the
/// few nodes just before it; any node left without a consumer feeds a later node, so the
/// model's output is the only sink.
pub fn random_dag(nodes: usize, seed: u64) -> Graph {
    let nodes = nodes.max(2);
    let mut b = Builder::new(seed);
    let mut inputs: Vec<Vec<usize>> = vec![Vec::new()];
    for v in 1..nodes {
        let mut ins = vec![v - 1];
        for _ in 0..b.rng.range(0, 2) {
            let u = v - b.rng.range(2, 8).min(v);
            if !ins.contains(&u) {
                ins.push(u);
            }
        }
        inputs.push(ins);
    }
    let mut consumed = vec![false; nodes];
    for &u in inputs.iter().flatten() {
        consumed[u] = true;
    }
    let orphans: Vec<usize> = (1..nodes - 1).filter(|&u| !consumed[u]).collect();
    for u in orphans {
        let w = b.rng.range(u + 1, nodes - 1);
        inputs[w].push(u);
    }
    for (v, ins) in inputs.iter().enumerate().skip(1) {
        b.layer(format!("n{v}"), ins);
    }
    b.finish(format!(
        "synthetic random DAG of {nodes} nodes (seed {seed})"
    ))
}
