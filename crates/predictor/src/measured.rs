//! The `measured` cost source: time a model's own layers directly, with no regression.
//!
//! Tests use it, and so do experiments that need the truth to compare a plan against.

use models::{HostTensor, Model};
use partition_core::synthetic::SplitMix64;

use crate::error::PredictorError;

/// Median latency of every node of `model` in ms, in node order, timed on a seeded random
/// input of batch 1 after `warmup` unmeasured runs per node.
pub fn measured_costs(
    model: &Model,
    warmup: usize,
    runs: usize,
    seed: u64,
) -> Result<Vec<f64>, PredictorError> {
    let shape: Vec<usize> = [1]
        .into_iter()
        .chain(model.net().input_shape().iter().copied())
        .collect();
    let mut rng = SplitMix64::new(seed);
    let data = (0..shape.iter().product())
        .map(|_| (rng.unit() * 2.0 - 1.0) as f32)
        .collect();
    let input = HostTensor::new(shape, data)?;
    Ok(model
        .time_layers(input, warmup, runs)?
        .into_iter()
        .map(|t| t.median_ms)
        .collect())
}
