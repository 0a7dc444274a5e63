//! Random synthetic graphs with random encoding tables, shared by the property tests of
//! encoded tensors and of the stream objective.

use partition_core::synthetic::{SplitMix64, chain, inception, random_dag, residual};
use partition_core::{Encoding, Graph, MAX_EXHAUSTIVE_NODES};
use proptest::prelude::*;

/// An encoding of a node's output: its name, bytes on the wire, encode and decode ms.
pub fn encoding(name: &str, bytes: u64, edge_ms: f64, cloud_ms: f64) -> Encoding {
    Encoding {
        name: name.into(),
        bytes,
        edge_ms,
        cloud_ms,
    }
}

/// Which synthetic family, its size parameter and seed.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// `chain(n)`.
    Chain(usize),
    /// `residual(n)`.
    Residual(usize),
    /// `inception(n)`.
    Inception(usize),
    /// `random_dag(n)`.
    RandomDag(usize),
}

/// Graphs small enough for the exhaustive reference.
pub fn small_shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        (1usize..MAX_EXHAUSTIVE_NODES).prop_map(Shape::Chain),
        (1usize..5).prop_map(Shape::Residual),
        (1usize..2).prop_map(Shape::Inception),
        (2usize..=MAX_EXHAUSTIVE_NODES).prop_map(Shape::RandomDag),
    ]
}

/// The synthetic graph, with 0–3 random encodings per node: sizes from 1 % to 300 % of the raw
/// size, codec times from 0 to 30 ms (log-uniform above 1 µs, and sometimes exactly 0).
pub fn build(shape: Shape, seed: u64) -> Graph {
    let graph = match shape {
        Shape::Chain(n) => chain(n, seed),
        Shape::Residual(n) => residual(n, seed),
        Shape::Inception(n) => inception(n, seed),
        Shape::RandomDag(n) => random_dag(n, seed),
    };
    let mut rng = SplitMix64::new(seed ^ 0xE4C0_D146);
    let tables = (0..graph.len())
        .map(|v| {
            (0..rng.range(0, 3))
                .map(|i| {
                    let raw = graph.out_bytes(v) as f64;
                    let bytes = (raw * rng.log_uniform(0.01, 3.0)).round() as u64;
                    encoding(&format!("codec{i}"), bytes, time(&mut rng), time(&mut rng))
                })
                .collect()
        })
        .collect();
    graph
        .with_encodings(tables)
        .expect("generated encodings are valid")
}

/// A codec time: 0 one time in five, else log-uniform in [1 µs, 30 ms].
fn time(rng: &mut SplitMix64) -> f64 {
    if rng.range(0, 4) == 0 {
        0.0
    } else {
        rng.log_uniform(1e-3, 30.0)
    }
}
