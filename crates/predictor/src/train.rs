//! Training: from a sweep directory to a `DeviceProfile` and an honest accuracy report.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::ceiling::Ceiling;
use crate::class::LayerClass;
use crate::dataset::{
    Measurement, PassTime, SweepMeta, csv_path, in_pass_dir, in_pass_models, in_pass_root,
    read_class,
};
use crate::error::PredictorError;
use crate::features::{self, Context};
use crate::profile::{DeviceProfile, MeasuredLayer, Role};
use crate::regress::{Accuracy, Candidate, Fitted, cross_validate, folds};

/// Fewest samples a class needs to be trained and evaluated.
pub const MIN_SAMPLES: usize = 8;

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The profile's name.
    pub name: String,
    /// Edge or cloud.
    pub role: Role,
    /// Seed of the splits and the randomised regressors.
    pub seed: u64,
    /// Share of each class held out for the report, e.g. 0.2.
    pub holdout: f64,
    /// Folds of the cross-validation that picks the regressor.
    pub folds: usize,
}

/// Held-out accuracy of one class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassReport {
    /// The class name.
    pub class: &'static str,
    /// Samples in the sweep, the layers timed inside passes included.
    pub samples: usize,
    /// Of those, layers of real networks timed inside their passes.
    pub in_pass: usize,
    /// The regressor cross-validation chose.
    pub chosen: &'static str,
    /// Cross-validated mean absolute log error of each candidate.
    pub cv_log_error: BTreeMap<&'static str, f64>,
    /// The chosen regressor on the held-out split.
    pub ours: Accuracy,
    /// The same on the held-out split's layers of real networks timed inside their passes
    /// (`n` is 0 where the split has none): the layers that plans price, each timed as a pass
    /// runs it, where the sampled layers' cold timings repeat less well from one sweep to the
    /// next.
    pub ours_in_pass: Accuracy,
    /// Neurosurgeon's linear baseline on the same split.
    pub baseline: Accuracy,
}

/// A network's whole latency predicted by regressors trained without its own layers, against
/// the sum of its layers as timed inside its passes: how well the profile predicts a network
/// it has not seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldOutModel {
    /// The network's name.
    pub model: String,
    /// Its layers timed inside its passes, added up, ms.
    pub in_pass_ms: f64,
    /// The same layers predicted without them, added up, ms.
    pub predicted_ms: f64,
    /// (predicted − in-pass) ÷ in-pass, in %.
    pub error_pct: f64,
    /// The same sums for each layer class the network has, in the classes' order: where the
    /// error comes from.
    pub by_class: Vec<HeldOutClass>,
}

/// One layer class's share of a [`HeldOutModel`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldOutClass {
    /// The class's name.
    pub class: &'static str,
    /// The network's layers of the class.
    pub layers: usize,
    /// Those layers timed inside the network's passes, added up, ms.
    pub in_pass_ms: f64,
    /// The same layers predicted without the network's own layers, added up, ms.
    pub predicted_ms: f64,
}

impl HeldOutClass {
    /// (predicted − in-pass) ÷ in-pass, in %.
    pub fn error_pct(&self) -> f64 {
        error_pct(self.predicted_ms, self.in_pass_ms)
    }
}

/// (`predicted` − `in_pass`) ÷ `in_pass`, in %.
fn error_pct(predicted: f64, in_pass: f64) -> f64 {
    100.0 * (predicted - in_pass) / in_pass.max(1e-9)
}

/// A class's rows: the sweep's sampled layers, then the layers timed inside networks' passes,
/// each with the index of its network in [`TrainingData::models`].
struct ClassData {
    rows: Vec<Measurement>,
    model: Vec<Option<usize>>,
}

impl ClassData {
    /// Our features of row `i`, in the context it was timed in: inside a pass for a
    /// network's layer, alone and cold for a sampled one.
    fn features(&self, class: LayerClass, i: usize) -> Vec<f64> {
        let context = if self.model[i].is_some() {
            Context::InPass
        } else {
            Context::Cold
        };
        let row = &self.rows[i];
        features::ours(class, &row.spec, row.conv, context)
    }
}

/// Everything a sweep directory holds, by class.
struct TrainingData {
    models: Vec<String>,
    classes: BTreeMap<LayerClass, ClassData>,
    meta: SweepMeta,
    /// The sweep's probe's whole pass against its node, where the sweep timed it.
    pass: Option<PassTime>,
}

impl TrainingData {
    /// Reads `dir`'s sampled layers and its networks' in-pass layers; all must have been
    /// measured under one set of conditions.
    fn read(dir: &Path) -> Result<TrainingData, PredictorError> {
        let models = in_pass_models(dir)?;
        let mut meta: Option<SweepMeta> = None;
        let mut classes = BTreeMap::new();
        for class in LayerClass::ALL {
            let mut data = ClassData {
                rows: Vec::new(),
                model: Vec::new(),
            };
            let sources = std::iter::once((None, csv_path(dir, class))).chain(
                models
                    .iter()
                    .enumerate()
                    .map(|(m, name)| (Some(m), csv_path(&in_pass_dir(dir, name), class))),
            );
            for (model, path) in sources {
                if !path.exists() {
                    continue;
                }
                let (found, rows) = read_class(&path)?;
                match &meta {
                    Some(m) if *m != found => {
                        return Err(PredictorError::BadData {
                            path,
                            reason: format!(
                                "measured on {} (backend {}), unlike the other files of {}; keep one device per directory",
                                found.device,
                                found.backend,
                                dir.display()
                            ),
                        });
                    }
                    _ => meta = Some(found),
                }
                data.model.extend(std::iter::repeat_n(model, rows.len()));
                data.rows.extend(rows);
            }
            if data.rows.is_empty() {
                continue;
            }
            if data.rows.len() < MIN_SAMPLES {
                return Err(PredictorError::BadData {
                    path: csv_path(dir, class),
                    reason: format!(
                        "only {} samples of {}; training needs at least {MIN_SAMPLES}: resume the sweep (run `profile` again with the same --out)",
                        data.rows.len(),
                        class.name()
                    ),
                });
            }
            classes.insert(class, data);
        }
        let meta = meta.ok_or_else(|| PredictorError::BadData {
            path: dir.to_path_buf(),
            reason: "no sweep CSVs here; run `profile --out DIR` first".into(),
        })?;
        let pass = PassTime::read(&in_pass_root(dir))?;
        Ok(TrainingData {
            models,
            classes,
            meta,
            pass,
        })
    }

    /// Every distinct layer timed inside a network's passes (its spec and how it ran), with the
    /// mean of its in-pass times, in the order first met.
    fn measured_layers(&self) -> Vec<MeasuredLayer> {
        let mut sums: Vec<(&Measurement, f64, usize)> = Vec::new();
        for data in self.classes.values() {
            let in_pass = data
                .rows
                .iter()
                .zip(&data.model)
                .filter(|(_, m)| m.is_some());
            for (row, _) in in_pass {
                let same = |(first, _, _): &&mut (&Measurement, f64, usize)| {
                    first.spec == row.spec && first.conv == row.conv
                };
                match sums.iter_mut().find(same) {
                    Some((_, sum, n)) => {
                        *sum += row.median_ms;
                        *n += 1;
                    }
                    None => sums.push((row, row.median_ms, 1)),
                }
            }
        }
        sums.into_iter()
            .map(|(first, sum, n)| MeasuredLayer {
                spec: first.spec.clone(),
                conv: first.conv,
                ms: sum / n as f64,
            })
            .collect()
    }
}

/// Trains one regressor per class found in `dir` (the sampled layers and the networks' layers
/// timed inside their passes together) and reports held-out accuracy.
///
/// Per class: a seeded split holds out `holdout` of the samples; k-fold cross-validation on
/// the rest picks a candidate; the pick and the baseline are scored on the held-out part;
/// finally the pick is refitted on every sample and stored. The layers timed inside passes
/// are stored too, each priced at its measurement ([`MeasuredLayer`]).
pub fn train(
    dir: &Path,
    options: &TrainOptions,
) -> Result<(DeviceProfile, Vec<ClassReport>), PredictorError> {
    let data = TrainingData::read(dir)?;
    let mut models = BTreeMap::new();
    let mut ceilings = BTreeMap::new();
    let mut reports = Vec::new();
    for (&class, class_data) in &data.classes {
        let (model, mut report) = train_class(class, class_data, options)?;
        report.in_pass = class_data.model.iter().filter(|m| m.is_some()).count();
        models.insert(class, model);
        ceilings.insert(class, Ceiling::of(&class_data.rows));
        reports.push(report);
    }
    let measured = data.measured_layers();
    let pass_ms = data.pass.as_ref().map_or(0.0, PassTime::overhead_ms);
    let meta = data.meta;
    let profile = DeviceProfile {
        name: options.name.clone(),
        role: options.role,
        device: meta.device,
        backend: meta.backend,
        threads: meta.threads,
        cpu_quota: meta.cpu_quota,
        crate_version: env!("CARGO_PKG_VERSION").to_string(),
        models,
        measured,
        ceilings,
        pass_ms,
    };
    Ok((profile, reports))
}

/// For each network whose layers `dir` holds as timed inside its passes: its whole latency
/// predicted by `profile`'s regressors (each class's chosen candidate) refitted on every row
/// but that network's, against what its layers measured. Empty when `dir` has no such
/// networks.
pub fn held_out_models(
    dir: &Path,
    profile: &DeviceProfile,
    options: &TrainOptions,
) -> Result<Vec<HeldOutModel>, PredictorError> {
    let data = TrainingData::read(dir)?;
    let mut held_out = Vec::new();
    for (m, name) in data.models.iter().enumerate() {
        let mut by_class = Vec::new();
        for (&class, class_data) in &data.classes {
            let (own, others): (Vec<usize>, Vec<usize>) =
                (0..class_data.rows.len()).partition(|&i| class_data.model[i] == Some(m));
            if own.is_empty() {
                continue;
            }
            let fail = |reason: String| PredictorError::Regression {
                class: class.name(),
                reason,
            };
            let candidate = profile
                .models
                .get(&class)
                .map(Fitted::candidate)
                .ok_or_else(|| fail("the profile has no regressor for it".into()))?;
            let x = |idx: &[usize]| -> Vec<Vec<f64>> {
                idx.iter().map(|&i| class_data.features(class, i)).collect()
            };
            let y = |idx: &[usize]| -> Vec<f64> {
                idx.iter().map(|&i| class_data.rows[i].median_ms).collect()
            };
            let fitted =
                Fitted::fit(candidate, &x(&others), &y(&others), options.seed).map_err(fail)?;
            let ceiling = Ceiling::of(others.iter().map(|&i| &class_data.rows[i]));
            let predicted = fitted.predict(&x(&own)).map_err(fail)?;
            let predicted = own.iter().zip(predicted).map(|(&i, p)| {
                let row = &class_data.rows[i];
                ceiling.bound(p, &row.spec, row.conv)
            });
            by_class.push(HeldOutClass {
                class: class.name(),
                layers: own.len(),
                in_pass_ms: y(&own).iter().sum(),
                predicted_ms: predicted.sum(),
            });
        }
        let in_pass_ms: f64 = by_class.iter().map(|c| c.in_pass_ms).sum();
        let predicted_ms: f64 = by_class.iter().map(|c| c.predicted_ms).sum();
        held_out.push(HeldOutModel {
            model: name.clone(),
            in_pass_ms,
            predicted_ms,
            error_pct: error_pct(predicted_ms, in_pass_ms),
            by_class,
        });
    }
    Ok(held_out)
}

/// The accuracy of `predicted` (one value per index of `test`, in its order) against the
/// measured times `ms` (indexed by sample), over the samples `keep` accepts.
fn accuracy_where(
    test: &[usize],
    predicted: &[f64],
    ms: &[f64],
    keep: impl Fn(usize) -> bool,
) -> Accuracy {
    let (predicted, measured): (Vec<f64>, Vec<f64>) = test
        .iter()
        .zip(predicted)
        .filter(|&(&i, _)| keep(i))
        .map(|(&i, &p)| (p, ms[i]))
        .unzip();
    Accuracy::of(&predicted, &measured)
}

fn train_class(
    class: LayerClass,
    data: &ClassData,
    options: &TrainOptions,
) -> Result<(Fitted, ClassReport), PredictorError> {
    let fail = |reason: String| PredictorError::Regression {
        class: class.name(),
        reason,
    };
    let rows = &data.rows;
    let ours: Vec<Vec<f64>> = (0..rows.len()).map(|i| data.features(class, i)).collect();
    let base: Vec<Vec<f64>> = rows.iter().map(|m| features::baseline(&m.spec)).collect();
    let ms: Vec<f64> = rows.iter().map(|m| m.median_ms).collect();
    let k = ((1.0 / options.holdout.clamp(0.05, 0.5)).round() as usize).max(2);
    let split = folds(rows.len(), k, options.seed);
    let test = split.first().cloned().unwrap_or_default();
    let train: Vec<usize> = (0..rows.len()).filter(|i| !test.contains(i)).collect();
    let pick = |x: &[Vec<f64>], idx: &[usize]| -> Vec<Vec<f64>> {
        idx.iter().map(|&i| x[i].clone()).collect()
    };
    let ys = |idx: &[usize]| -> Vec<f64> { idx.iter().map(|&i| ms[i]).collect() };

    let mut cv_log_error = BTreeMap::new();
    for candidate in Candidate::OURS {
        if let Some(score) = cross_validate(
            candidate,
            &pick(&ours, &train),
            &ys(&train),
            options.folds,
            options.seed,
        ) {
            cv_log_error.insert(candidate.name(), score);
        }
    }
    let mut ranked: Vec<Candidate> = Candidate::OURS
        .into_iter()
        .filter(|c| cv_log_error.contains_key(c.name()))
        .collect();
    ranked.sort_by(|a, b| cv_log_error[a.name()].total_cmp(&cv_log_error[b.name()]));

    // Ours are bounded by the best rates of the training split's kernels; Neurosurgeon's
    // baseline is scored as it is.
    let ceiling = Ceiling::of(train.iter().map(|&i| &rows[i]));
    // Each held-out sample's prediction, in the split's order.
    let held_out = |candidate: Candidate, x: &[Vec<f64>]| -> Result<Vec<f64>, String> {
        let model = Fitted::fit(candidate, &pick(x, &train), &ys(&train), options.seed)?;
        let mut predicted = model.predict(&pick(x, &test))?;
        if candidate != Candidate::NeurosurgeonLinear {
            for (p, &i) in predicted.iter_mut().zip(&test) {
                *p = ceiling.bound(*p, &rows[i].spec, rows[i].conv);
            }
        }
        Ok(predicted)
    };
    // The best cross-validated candidate that also fits the held-out split and every sample:
    // a fit on more samples can still fail where every fold's succeeded.
    let mut last_failure = "no candidate could be fitted in cross-validation".to_string();
    let found = ranked.into_iter().find_map(|candidate| {
        let fitted = held_out(candidate, &ours).and_then(|predicted| {
            Ok((predicted, Fitted::fit(candidate, &ours, &ms, options.seed)?))
        });
        fitted
            .map_err(|e| last_failure = e)
            .ok()
            .map(|(predicted, model)| (candidate, predicted, model))
    });
    let (chosen, predicted, model) = found.ok_or_else(|| fail(last_failure))?;
    let baseline = held_out(Candidate::NeurosurgeonLinear, &base).map_err(fail)?;
    let report = ClassReport {
        class: class.name(),
        samples: rows.len(),
        in_pass: 0,
        chosen: chosen.name(),
        cv_log_error,
        ours: Accuracy::of(&predicted, &ys(&test)),
        ours_in_pass: accuracy_where(&test, &predicted, &ms, |i| data.model[i].is_some()),
        baseline: Accuracy::of(&baseline, &ys(&test)),
    };
    Ok((model, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_over_a_subset_pairs_each_prediction_with_its_own_sample() {
        // Held out: samples 0, 2 and 3, predicted in that order; sample 2 is left out.
        let ms = [1.0, 9.0, 2.0, 3.0];
        let within = accuracy_where(&[0, 2, 3], &[1.0, 5.0, 3.2], &ms, |i| i != 2);
        assert_eq!(within.n, 2);
        assert_eq!(within.within_10pct, 1.0);
        // Sample 2 alone: 5 against 2 is off by 150 %.
        let off = accuracy_where(&[0, 2, 3], &[1.0, 5.0, 3.2], &ms, |i| i == 2);
        assert_eq!(off.n, 1);
        assert_eq!(off.within_10pct, 0.0);
        assert!((off.mape_pct - 150.0).abs() < 1e-9, "{off:?}");
        // None kept: no samples, not a share of nothing.
        assert_eq!(accuracy_where(&[0], &[1.0], &ms, |_| false).n, 0);
    }
}
