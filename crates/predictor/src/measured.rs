//! The `measured` cost source: time a model's own layers directly, with no regression.
//!
//! Tests use it, and so do experiments that need the truth to compare a plan against.

use models::{Model, median};
use serde::Serialize;

use crate::error::PredictorError;
use crate::profile::DeviceProfile;
use crate::rounds::{SpellGuard, after_own_passes};

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
    /// Sum of the profile's per-layer predictions and its pass cost
    /// ([`DeviceProfile::pass_ms`]), in ms.
    pub predicted_ms: f64,
    /// Median of the measured whole forward passes, in ms.
    pub measured_ms: f64,
    /// (predicted − measured) ÷ measured, in %.
    pub error_pct: f64,
}

/// Predicts each of `models`' whole latency with `profile` and measures its forward pass on
/// a seeded random input: `warmup` unmeasured rounds and then `rounds` measured ones, each
/// round one pass of every model in turn ([`SpellGuard::rounds`]: a round in a slow spell is
/// run again), each measured pass right after unmeasured ones of the same model
/// ([`after_own_passes`]), the median kept. The models are all held at once.
pub fn check_models(
    profile: &DeviceProfile,
    models: &[Model],
    warmup: usize,
    rounds: usize,
    seed: u64,
    guard: &mut SpellGuard,
) -> Result<Vec<ModelCheck>, PredictorError> {
    let inputs = models
        .iter()
        .map(|model| models::seeded_input(model.net(), 1, seed))
        .collect::<Result<Vec<_>, _>>()?;
    let passes = guard.rounds(models.len(), warmup, rounds.max(1), |i| {
        after_own_passes(&models[i], &inputs[i], |model, input| {
            model.time_forward(input, 0, 1)
        })
    })?;
    models
        .iter()
        .zip(passes)
        .map(|(model, passes)| {
            let predicted_ms: f64 = profile.side_costs(model.net(), profile.role)?.iter().sum();
            let measured_ms = median(passes);
            Ok(ModelCheck {
                model: model.net().name().to_string(),
                predicted_ms,
                measured_ms,
                error_pct: 100.0 * (predicted_ms - measured_ms) / measured_ms.max(1e-9),
            })
        })
        .collect()
}
