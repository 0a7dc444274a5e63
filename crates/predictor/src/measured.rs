//! The `measured` cost source: time a model's own layers directly, with no regression.
//!
//! Tests use it, and so do experiments that need the truth to compare a plan against.

use models::Model;
use serde::Serialize;

use crate::error::PredictorError;
use crate::profile::DeviceProfile;

/// Median latency of every node of `model` in ms, in node order, timed on a seeded random
/// input of batch 1 after `warmup` unmeasured runs per node.
pub fn measured_costs(
    model: &Model,
    warmup: usize,
    runs: usize,
    seed: u64,
) -> Result<Vec<f64>, PredictorError> {
    let input = models::seeded_input(model.net(), 1, seed)?;
    Ok(model
        .time_layers(input, warmup, runs)?
        .into_iter()
        .map(|t| t.median_ms)
        .collect())
}

/// A whole network's predicted latency (the sum over its layers) against its measured
/// forward pass on this machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelCheck {
    /// The network's name.
    pub model: String,
    /// Sum of the profile's per-layer predictions, in ms.
    pub predicted_ms: f64,
    /// Median of the measured whole forward passes, in ms.
    pub measured_ms: f64,
    /// (predicted − measured) ÷ measured, in %.
    pub error_pct: f64,
}

/// Predicts `model`'s whole latency with `profile` and measures its forward pass (median of
/// `runs` after `warmup`), on a seeded random input.
pub fn check_model(
    profile: &DeviceProfile,
    model: &Model,
    warmup: usize,
    runs: usize,
    seed: u64,
) -> Result<ModelCheck, PredictorError> {
    let predicted_ms: f64 = profile.layer_costs(model.net())?.iter().sum();
    let input = models::seeded_input(model.net(), 1, seed)?;
    let measured_ms = model.time_forward(&input, warmup, runs)?;
    Ok(ModelCheck {
        model: model.net().name().to_string(),
        predicted_ms,
        measured_ms,
        error_pct: 100.0 * (predicted_ms - measured_ms) / measured_ms.max(1e-9),
    })
}
