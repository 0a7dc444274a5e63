//! Regressors from smartcore, chosen per layer class by k-fold cross-validation.
//!
//! Our candidates learn ln(ms) from [`features::ours`](crate::features::ours): latency spans
//! four orders of magnitude, and a log target makes every layer count by its relative error.
//! The Neurosurgeon baseline is a plain linear regression of ms on
//! [`features::baseline`](crate::features::baseline). smartcore's SVR is not offered: it does
//! not deserialise in 0.7.

use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::linear_regression::{LinearRegression, LinearRegressionParameters};
use smartcore::linear::ridge_regression::{RidgeRegression, RidgeRegressionParameters};
use smartcore::xgboost::{XGRegressor, XGRegressorParameters};

use partition_core::synthetic::SplitMix64;

type Matrix = DenseMatrix<f64>;

/// A kind of regressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Candidate {
    /// Neurosurgeon's baseline: linear regression of ms on raw sizes.
    NeurosurgeonLinear,
    /// Linear regression of ln(ms) on our log features (a fitted power law).
    LogLinear,
    /// Ridge regression of ln(ms) on our features.
    Ridge,
    /// Random forest on our features.
    RandomForest,
    /// Gradient-boosted trees (`XGRegressor`) on our features.
    Boosted,
    /// A random forest learning what a log-linear power law (fitted by ridge regression) leaves
    /// over. Trees alone predict no more than the largest latency they saw; over a power law
    /// they extrapolate with it.
    ForestOverPowerLaw,
    /// Boosted trees learning what a log-linear power law (fitted by ridge regression) leaves
    /// over.
    BoostedOverPowerLaw,
}

impl Candidate {
    /// The candidates cross-validation chooses from.
    pub const OURS: [Candidate; 6] = [
        Candidate::LogLinear,
        Candidate::Ridge,
        Candidate::RandomForest,
        Candidate::Boosted,
        Candidate::ForestOverPowerLaw,
        Candidate::BoostedOverPowerLaw,
    ];

    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Candidate::NeurosurgeonLinear => "neurosurgeon-linear",
            Candidate::LogLinear => "log-linear",
            Candidate::Ridge => "ridge",
            Candidate::RandomForest => "random-forest",
            Candidate::Boosted => "xgboost",
            Candidate::ForestOverPowerLaw => "forest+power-law",
            Candidate::BoostedOverPowerLaw => "xgboost+power-law",
        }
    }

    fn log_target(self) -> bool {
        self != Candidate::NeurosurgeonLinear
    }
}

/// A fitted regressor. Serialisable: it is what a `DeviceProfile` stores.
#[derive(Debug, Serialize, Deserialize)]
pub struct Fitted {
    /// The feature columns the model reads: those that were not the same in every sample it was
    /// fitted on. A constant column says nothing about latency, and ridge regression, which
    /// divides each column by its spread, turns one into NaN.
    columns: Vec<usize>,
    model: Model,
}

/// The regressor itself, over the kept columns.
#[derive(Debug, Serialize, Deserialize)]
enum Model {
    /// A linear model (the baseline, or log-linear).
    Linear(Candidate, LinearRegression<f64, f64, Matrix, Vec<f64>>),
    /// Ridge regression.
    Ridge(RidgeRegression<f64, f64, Matrix, Vec<f64>>),
    /// A random forest.
    Forest(RandomForestRegressor<f64, f64, Matrix, Vec<f64>>),
    /// Boosted trees.
    Boosted(XGRegressor<f64, f64, Matrix, Vec<f64>>),
    /// A power law (log-linear, ridge-regularised) plus trees (a `Forest` or `Boosted`) fitted
    /// to its residuals in log space.
    OverPowerLaw(
        Candidate,
        RidgeRegression<f64, f64, Matrix, Vec<f64>>,
        Box<Model>,
    ),
}

/// The columns of `rows` whose value is not the same in every row.
fn varying_columns(rows: &[Vec<f64>]) -> Vec<usize> {
    let width = rows.iter().map(Vec::len).min().unwrap_or(0);
    (0..width)
        .filter(|&c| rows.iter().any(|row| row[c] != rows[0][c]))
        .collect()
}

/// `rows` cut down to `columns`, as a matrix.
fn matrix(rows: &[Vec<f64>], columns: &[usize]) -> Result<Matrix, String> {
    let needed = columns.last().map_or(0, |&c| c + 1);
    let kept = rows
        .iter()
        .map(|row| {
            if row.len() < needed {
                return Err(format!(
                    "a feature row has {} values, but the model reads {needed}; train the profile again with this version",
                    row.len()
                ));
            }
            Ok(columns.iter().map(|&c| row[c]).collect())
        })
        .collect::<Result<Vec<Vec<f64>>, String>>()?;
    DenseMatrix::from_2d_vec(&kept).map_err(|e| e.to_string())
}

impl Fitted {
    /// Fits `candidate` to rows of features `x` and latencies `ms`.
    pub fn fit(
        candidate: Candidate,
        x: &[Vec<f64>],
        ms: &[f64],
        seed: u64,
    ) -> Result<Fitted, String> {
        if x.is_empty() {
            return Err("no samples to fit".into());
        }
        let columns = varying_columns(x);
        if columns.is_empty() {
            return Err(
                "every feature is the same in all samples; sweep more varied layers".into(),
            );
        }
        let m = matrix(x, &columns)?;
        let y: Vec<f64> = if candidate.log_target() {
            ms.iter().map(|&t| t.max(1e-6).ln()).collect()
        } else {
            ms.to_vec()
        };
        let fitted = Fitted {
            columns,
            model: fit_target(candidate, &m, y, seed)?,
        };
        // A fit that cannot even reproduce its own samples finitely is of no use.
        fitted
            .predict(x)
            .map_err(|e| format!("{}: {e}", candidate.name()))?;
        Ok(fitted)
    }

    /// Which candidate this is.
    pub fn candidate(&self) -> Candidate {
        self.model.candidate()
    }

    /// Predicted latencies in ms (never negative) for rows of features, or an error where one
    /// comes out infinite or NaN.
    pub fn predict(&self, x: &[Vec<f64>]) -> Result<Vec<f64>, String> {
        let raw = self.model.predict_target(&matrix(x, &self.columns)?)?;
        let ms: Vec<f64> = if self.candidate().log_target() {
            raw.into_iter().map(f64::exp).collect()
        } else {
            raw.into_iter().map(|t| t.max(0.0)).collect()
        };
        match ms.iter().find(|t| !t.is_finite()) {
            Some(t) => Err(format!(
                "predicted a latency of {t} ms; the layer may lie far outside the sweep, so profile with the full sweep (`profile` without `--quick`)"
            )),
            None => Ok(ms),
        }
    }
}

impl Model {
    fn candidate(&self) -> Candidate {
        match self {
            Model::Linear(c, _) => *c,
            Model::Ridge(_) => Candidate::Ridge,
            Model::Forest(_) => Candidate::RandomForest,
            Model::Boosted(_) => Candidate::Boosted,
            Model::OverPowerLaw(c, _, _) => *c,
        }
    }

    /// Predictions in the space the model was fitted in (ln ms for our candidates).
    fn predict_target(&self, m: &Matrix) -> Result<Vec<f64>, String> {
        let e = |e: smartcore::error::Failed| e.to_string();
        Ok(match self {
            Model::Linear(_, r) => r.predict(m).map_err(e)?,
            Model::Ridge(r) => r.predict(m).map_err(e)?,
            Model::Forest(r) => r.predict(m).map_err(e)?,
            Model::Boosted(r) => r.predict(m).map_err(e)?,
            Model::OverPowerLaw(_, base, trees) => {
                let law = base.predict(m).map_err(e)?;
                let rest = trees.predict_target(m)?;
                law.iter().zip(rest).map(|(a, b)| a + b).collect()
            }
        })
    }
}

/// The ridge regressions' parameters (the ridge candidate's and the power laws').
fn ridge() -> RidgeRegressionParameters<f64> {
    RidgeRegressionParameters::default().with_alpha(0.1)
}

/// Fits `candidate` to the target `y` (already in the candidate's space).
fn fit_target(candidate: Candidate, m: &Matrix, y: Vec<f64>, seed: u64) -> Result<Model, String> {
    let e = |e: smartcore::error::Failed| e.to_string();
    Ok(match candidate {
        Candidate::NeurosurgeonLinear | Candidate::LogLinear => Model::Linear(
            candidate,
            LinearRegression::fit(m, &y, LinearRegressionParameters::default()).map_err(e)?,
        ),
        Candidate::Ridge => Model::Ridge(RidgeRegression::fit(m, &y, ridge()).map_err(e)?),
        Candidate::RandomForest => {
            let params = RandomForestRegressorParameters::default()
                .with_n_trees(100)
                .with_min_samples_leaf(1)
                .with_seed(seed);
            Model::Forest(RandomForestRegressor::fit(m, &y, params).map_err(e)?)
        }
        Candidate::Boosted => {
            let params = XGRegressorParameters::default()
                .with_n_estimators(200)
                .with_learning_rate(0.1)
                .with_max_depth(4)
                .with_base_score(y.iter().sum::<f64>() / y.len() as f64)
                .with_seed(seed);
            Model::Boosted(XGRegressor::fit(m, &y, params).map_err(e)?)
        }
        Candidate::ForestOverPowerLaw | Candidate::BoostedOverPowerLaw => {
            // Ridge, not least squares: features nearly collinear in the samples (a layer
            // kind the sweep varies little) would otherwise get huge opposite weights, and a
            // network whose layers vary them was predicted at 1e22 ms.
            let base = RidgeRegression::fit(m, &y, ridge()).map_err(e)?;
            let law = base.predict(m).map_err(e)?;
            let rest: Vec<f64> = y.iter().zip(&law).map(|(t, l)| t - l).collect();
            let trees = if candidate == Candidate::ForestOverPowerLaw {
                Candidate::RandomForest
            } else {
                Candidate::Boosted
            };
            Model::OverPowerLaw(candidate, base, Box::new(fit_target(trees, m, rest, seed)?))
        }
    })
}

/// Accuracy of predictions against measurements.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Accuracy {
    /// Samples compared.
    pub n: usize,
    /// Root mean squared error, in ms.
    pub rmse_ms: f64,
    /// Mean absolute percentage error, in %.
    pub mape_pct: f64,
    /// Share of samples predicted within ±10 %, in [0, 1].
    pub within_10pct: f64,
}

impl Accuracy {
    /// Compares predictions with measurements (pairs in the same order).
    pub fn of(predicted: &[f64], measured: &[f64]) -> Accuracy {
        let n = predicted.len().min(measured.len());
        if n == 0 {
            return Accuracy::default();
        }
        let pairs = predicted.iter().zip(measured);
        let mse = pairs.clone().map(|(p, m)| (p - m) * (p - m)).sum::<f64>() / n as f64;
        let rel: Vec<f64> = pairs.map(|(p, m)| (p - m).abs() / m.max(1e-6)).collect();
        Accuracy {
            n,
            rmse_ms: mse.sqrt(),
            mape_pct: 100.0 * rel.iter().sum::<f64>() / n as f64,
            within_10pct: rel.iter().filter(|&&r| r <= 0.10).count() as f64 / n as f64,
        }
    }
}

/// Shuffled indices `0..n`, split into `k` folds (fewer if there are fewer samples).
pub fn folds(n: usize, k: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..n).rev() {
        idx.swap(i, rng.range(0, i));
    }
    let k = k.clamp(1, n.max(1));
    (0..k)
        .map(|f| idx.iter().copied().skip(f).step_by(k).collect())
        .collect()
}

/// Mean absolute log error of `candidate` under k-fold cross-validation (lower is better), or
/// `None` when a fold cannot be fitted.
pub fn cross_validate(
    candidate: Candidate,
    x: &[Vec<f64>],
    ms: &[f64],
    k: usize,
    seed: u64,
) -> Option<f64> {
    let folds = folds(x.len(), k, seed);
    if folds.len() < 2 {
        return None;
    }
    let mut total = 0.0;
    let mut count = 0;
    for test in &folds {
        let train: Vec<usize> = (0..x.len()).filter(|i| !test.contains(i)).collect();
        let pick = |idx: &[usize]| -> (Vec<Vec<f64>>, Vec<f64>) {
            (
                idx.iter().map(|&i| x[i].clone()).collect(),
                idx.iter().map(|&i| ms[i]).collect(),
            )
        };
        let (tx, ty) = pick(&train);
        let (vx, vy) = pick(test);
        let model = Fitted::fit(candidate, &tx, &ty, seed).ok()?;
        let predicted = model.predict(&vx).ok()?;
        for (p, m) in predicted.iter().zip(&vy) {
            total += (p.max(1e-6) / m.max(1e-6)).ln().abs();
            count += 1;
        }
    }
    (count > 0).then(|| total / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of (ln size, a noise-free feature) with latency 0.002 · size^0.9 ms.
    fn power_law(sizes: impl Iterator<Item = f64>) -> (Vec<Vec<f64>>, Vec<f64>) {
        sizes
            .map(|s| (vec![s.ln(), (s * 7.0).sin()], 0.002 * s.powf(0.9)))
            .unzip()
    }

    #[test]
    fn trees_over_a_power_law_extrapolate_where_trees_alone_cannot() {
        let (x, ms) = power_law((1..=60).map(|i| 1000.0 * i as f64));
        // Ten times larger than anything seen.
        let (far_x, far_ms) = power_law([6e5, 1e6].into_iter());
        let error = |candidate| {
            let model = Fitted::fit(candidate, &x, &ms, 1).expect("fits");
            let predicted = model.predict(&far_x).expect("predicts");
            predicted
                .iter()
                .zip(&far_ms)
                .map(|(p, m)| (p / m).ln().abs())
                .fold(0.0, f64::max)
        };
        assert!(error(Candidate::ForestOverPowerLaw) < 0.05);
        assert!(error(Candidate::BoostedOverPowerLaw) < 0.05);
        // A forest alone predicts at most the largest latency it saw: several times too low.
        assert!(error(Candidate::RandomForest) > 1.0);
    }

    #[test]
    fn every_candidate_fits_and_predicts_positive_latencies() {
        let (x, ms) = power_law((1..=40).map(|i| 50.0 * i as f64));
        for candidate in Candidate::OURS {
            let model = Fitted::fit(candidate, &x, &ms, 3).expect("fits");
            assert_eq!(model.candidate(), candidate);
            let predicted = model.predict(&x).expect("predicts");
            assert!(predicted.iter().all(|&p| p > 0.0), "{}", candidate.name());
        }
    }

    /// A feature that is the same in every sample (a sweep that drew no grouped convolution
    /// has ln(1 + groups) = ln 2 throughout) must not turn the fit into NaN: ridge regression
    /// standardises each column by its spread, which is zero there.
    #[test]
    fn a_feature_constant_in_every_sample_is_left_out_of_the_fit() {
        // 25 samples: smartcore's E[x²] − E[x]² comes out below zero for ln 2, so its
        // standard deviation is NaN rather than zero.
        let (x, ms) = power_law((1..=25).map(|i| 300.0 * i as f64));
        let with_constant: Vec<Vec<f64>> = x
            .iter()
            .map(|row| [row.as_slice(), &[2f64.ln()]].concat())
            .collect();
        for candidate in Candidate::OURS {
            let model = Fitted::fit(candidate, &with_constant, &ms, 1).expect("fits");
            let predicted = model.predict(&with_constant).expect("predicts");
            assert!(
                predicted.iter().all(|p| p.is_finite()),
                "{}: {predicted:?}",
                candidate.name()
            );
            let mean_log_error = predicted
                .iter()
                .zip(&ms)
                .map(|(p, m)| (p / m).ln().abs())
                .sum::<f64>()
                / ms.len() as f64;
            assert!(
                mean_log_error < 0.3,
                "{}: {mean_log_error}",
                candidate.name()
            );
        }
    }
}
