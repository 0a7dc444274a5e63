//! `train`: from a sweep directory to a device profile, with an honest accuracy report.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use models::{Backend, Model, zoo};
use predictor::{
    ClassReport, DeviceProfile, HeldOutModel, ModelCheck, PassTime, PredictorError, Role,
    SpellGuard, Steadiness, TrainOptions, apply_cpu_quota,
};
use serde::Serialize;

use runtime::Table;

/// Train a device profile from a sweep directory and report how well it predicts.
///
/// Per layer class, k-fold cross-validation picks a regressor (log-linear, ridge, random
/// forest or xgboost); a held-out split scores it beside Neurosurgeon's linear baseline (RMSE,
/// MAPE, share within ±10 %), and scores the held-out layers timed inside a network's passes
/// on their own too. The layers of the networks that `profile` timed inside their own passes
/// are training data too, and the profile prices each of them at its in-pass time; each such
/// network is then predicted by the chosen regressors alone, refitted without its own layers,
/// the test of a network the profile has not seen. Last, each zoo model's whole
/// latency by the profile is compared with its measured forward pass on this machine, under
/// the sweep's CPU quota.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  cutpoint-edge train --data sweeps/edge --out edge.profile
  cutpoint-edge train --data sweeps/cloud --out cloud.profile --role cloud --check-models none
  cutpoint-edge train --data sweeps/edge --out edge.profile --check-models lenet,alexnet --json")]
pub struct TrainArgs {
    /// Sweep directory written by `profile --out DIR`.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Where to write the profile (MessagePack).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The device's role [default: edge for cutpoint-edge, cloud for cutpoint-cloud].
    #[arg(long, value_enum)]
    role: Option<RoleArg>,
    /// A name for reports [default: the --out file's stem].
    #[arg(long)]
    name: Option<String>,
    /// Share of each class held out for the accuracy report.
    #[arg(long, value_name = "F", default_value_t = 0.2)]
    holdout: f64,
    /// Folds of the cross-validation that picks each class's regressor.
    #[arg(long, value_name = "K", default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..=20))]
    folds: u64,
    /// Seed of the splits and the randomised regressors.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Zoo models whose whole-model prediction is checked against a measured forward pass:
    /// `all`, `none`, or names separated by commas. A model with a layer class the sweep lacks
    /// is named as not checked.
    #[arg(long, value_name = "LIST", default_value = "all")]
    check_models: String,
    /// Timed forward passes per checked model, in rounds of one pass of each model (the
    /// median is kept, after one warm-up round)
    #[arg(long, value_name = "N", default_value_t = 9, value_parser = clap::value_parser!(u64).range(1..=1000))]
    check_runs: u64,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// `--role` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum RoleArg {
    Edge,
    Cloud,
}

/// The models to check, or why none are.
enum Checks {
    /// The models checked, those the profile cannot price (a class the sweep left out), how
    /// steady the machine was through the check's rounds, and the lower quartile of the
    /// reference passes timed through them, ms ([`SpellGuard::own_calm_ms`]).
    Done {
        checks: Vec<ModelCheck>,
        unpriced: Vec<Unpriced>,
        steadiness: Steadiness,
        anchor_ms: Option<f64>,
    },
    Skipped(String),
}

/// A model left out of the whole-model check, and why.
#[derive(Serialize)]
struct Unpriced {
    model: String,
    reason: String,
}

/// Trains, saves the profile, checks the zoo models, and returns the report to print.
/// `default_role` is the binary's own role.
pub fn train(args: &TrainArgs, default_role: Role) -> Result<String, PredictorError> {
    if !(args.holdout > 0.0 && args.holdout < 1.0) {
        return Err(PredictorError::BadData {
            path: args.data.clone(),
            reason: format!(
                "--holdout {} is not a share: give one between 0 and 1, e.g. 0.2",
                args.holdout
            ),
        });
    }
    let role = match args.role {
        Some(RoleArg::Edge) => Role::Edge,
        Some(RoleArg::Cloud) => Role::Cloud,
        None => default_role,
    };
    let name = args.name.clone().unwrap_or_else(|| {
        args.out
            .file_stem()
            .map_or("profile".into(), |s| s.to_string_lossy().into_owned())
    });
    let names = model_names(&args.check_models)?;
    let options = TrainOptions {
        name,
        role,
        seed: args.seed,
        holdout: args.holdout,
        folds: args.folds as usize,
    };
    let (profile, reports) = predictor::train(&args.data, &options)?;
    profile.save(&args.out)?;
    let unseen = predictor::held_out_models(&args.data, &profile, &options)?;
    let sweep = Steadiness::read(&args.data)?;
    let calm_ms = sweep.map_or(0.0, |s| s.calm_ms);
    let in_pass_anchor_ms = PassTime::read(&predictor::in_pass_root(&args.data))?
        .map(|p| p.anchor_ms)
        .filter(|&ms| ms > 0.0);
    let checks = check_models(
        &profile,
        &names,
        args.check_runs as usize,
        args.seed,
        calm_ms,
    )?;
    let speed = SweepSpeed {
        steadiness: sweep,
        in_pass_anchor_ms,
    };
    Ok(if args.json {
        json_report(args, &profile, &reports, &unseen, speed, &checks)?
    } else {
        text_report(args, &profile, &reports, &unseen, speed, &checks)
    })
}

/// How the machine ran through the sweep: its steadiness, and the anchor through the in-pass
/// rounds that priced the networks' layers (`None` where the sweep did not record it).
#[derive(Clone, Copy)]
struct SweepSpeed {
    steadiness: Option<Steadiness>,
    in_pass_anchor_ms: Option<f64>,
}

impl SweepSpeed {
    /// The anchor to set the check's against, ms, and what it was timed through: the in-pass
    /// rounds' where recorded, else the whole sweep's calm.
    fn reference(&self) -> Option<(f64, &'static str)> {
        match (self.in_pass_anchor_ms, self.steadiness) {
            (Some(ms), _) => Some((ms, "the sweep's in-pass rounds")),
            (None, Some(s)) if s.calm_ms > 0.0 => Some((s.calm_ms, "the sweep")),
            _ => None,
        }
    }
}

/// Parses `--check-models`.
pub(crate) fn model_names(list: &str) -> Result<Vec<String>, PredictorError> {
    let names: Vec<String> = match list.trim() {
        "all" => zoo::MODELS.iter().map(|m| m.to_string()).collect(),
        "none" | "" => Vec::new(),
        list => list.split(',').map(|m| m.trim().to_string()).collect(),
    };
    for name in &names {
        zoo::default_input_shape(name)?;
    }
    Ok(names)
}

/// Measures each named zoo model under the profile's conditions (backend, CPU quota), its
/// rounds judged against the sweep's calm reference pass `calm_ms` (0 where unknown) as well.
fn check_models(
    profile: &DeviceProfile,
    names: &[String],
    runs: usize,
    seed: u64,
    calm_ms: f64,
) -> Result<Checks, PredictorError> {
    if names.is_empty() {
        return Ok(Checks::Skipped(
            "not asked for (--check-models none)".into(),
        ));
    }
    let backend: Backend = profile.backend.parse()?;
    if let Some(quota) = profile.cpu_quota {
        // The forward passes must run under the quota the layers were swept under.
        if let Err(e) = apply_cpu_quota(quota) {
            return Ok(Checks::Skipped(format!(
                "the sweep ran under a CPU quota and this run cannot set it ({e})"
            )));
        }
    }
    let device = backend.device()?;
    // A model with a layer class the sweep left out (an interrupted sweep, a cached one of a
    // few classes) is named as unchecked rather than failing the report after the profile is
    // written.
    let mut unpriced = Vec::new();
    let mut models = Vec::new();
    for name in names {
        let net = zoo::build(name)?;
        match profile.layer_costs(&net) {
            Ok(_) => models.push(Model::seeded(net, seed, &device)?),
            Err(e) => unpriced.push(Unpriced {
                model: name.clone(),
                reason: e.to_string(),
            }),
        }
    }
    let mut guard = SpellGuard::on(backend)?.with_calm(calm_ms);
    let checks = predictor::check_models(profile, &models, 1, runs, seed, &mut guard)?;
    Ok(Checks::Done {
        checks,
        unpriced,
        steadiness: guard.steadiness(),
        anchor_ms: guard.own_calm_ms(),
    })
}

/// Share of all held-out layers predicted within ±10 %, over every class.
fn overall_within(reports: &[ClassReport], pick: fn(&ClassReport) -> predictor::Accuracy) -> f64 {
    let n: usize = reports.iter().map(|r| pick(r).n).sum();
    let hits: f64 = reports
        .iter()
        .map(|r| pick(r).within_10pct * pick(r).n as f64)
        .sum();
    if n == 0 { 0.0 } else { hits / n as f64 }
}

fn text_report(
    args: &TrainArgs,
    profile: &DeviceProfile,
    reports: &[ClassReport],
    unseen: &[HeldOutModel],
    speed: SweepSpeed,
    checks: &Checks,
) -> String {
    let quota = profile
        .cpu_quota
        .map_or("none".to_string(), |q| format!("{q} CPU"));
    let mut out = format!(
        "Profile `{}` ({} role): {}, {} backend, {} threads, CPU quota {quota}\nwritten to {}\n\nHeld-out accuracy per class (ours = regressor chosen by cross-validation; baseline = Neurosurgeon's linear regression):\n\n",
        profile.name,
        profile.role.name(),
        profile.device,
        profile.backend,
        profile.threads,
        args.out.display(),
    );
    let mut table = Table::new(&[
        "class",
        "samples",
        "in pass",
        "chosen",
        "RMSE ms",
        "MAPE %",
        "±10 %",
        "in pass ±10 %",
        "base RMSE",
        "base MAPE",
        "base ±10",
    ]);
    for r in reports {
        table.row(vec![
            r.class.to_string(),
            r.samples.to_string(),
            r.in_pass.to_string(),
            r.chosen.to_string(),
            format!("{:.3}", r.ours.rmse_ms),
            format!("{:.1}", r.ours.mape_pct),
            format!("{:.0} %", 100.0 * r.ours.within_10pct),
            if r.ours_in_pass.n == 0 {
                "-".to_string()
            } else {
                format!(
                    "{:.0} % of {}",
                    100.0 * r.ours_in_pass.within_10pct,
                    r.ours_in_pass.n
                )
            },
            format!("{:.3}", r.baseline.rmse_ms),
            format!("{:.1}", r.baseline.mape_pct),
            format!("{:.0} %", 100.0 * r.baseline.within_10pct),
        ]);
    }
    out.push_str(&table.render());
    out.push_str(&format!(
        "\nAll classes: {:.0} % of held-out layers within ±10 % (baseline {:.0} %; goal ≥ 90 %); of the held-out layers of real networks timed inside their passes, {:.0} %.\n",
        100.0 * overall_within(reports, |r| r.ours),
        100.0 * overall_within(reports, |r| r.baseline),
        100.0 * overall_within(reports, |r| r.ours_in_pass),
    ));
    match speed.steadiness {
        Some(s) => {
            out.push_str(&format!(
                "The sweep's last run measured {} rounds and ran {} again in slow spells of the machine (a reference pass over {}× its usual {:.3} ms): the profile prices the machine as it usually runs, its slow spells set aside.\n",
                s.kept,
                s.redone,
                predictor::SLOW_LIMIT,
                s.calm_ms
            ));
            if let Some(warning) = s.warning() {
                out.push_str(&format!("Warning: the sweep: {warning}\n"));
            }
        }
        None => out.push_str("The sweep did not record how steady the machine was.\n"),
    }
    if !unseen.is_empty() {
        out.push_str("\nNetworks unseen (each predicted by the chosen regressors refitted without its own layers, against its layers timed inside its passes; goal within ±10 %):\n\n");
        let rows = unseen
            .iter()
            .map(|m| (&m.model, m.in_pass_ms, m.predicted_ms, m.error_pct));
        out.push_str(&error_table("in-pass ms", rows));
        for model in unseen.iter().filter(|m| m.error_pct.abs() > 10.0) {
            out.push_str(&format!(
                "\n{} unseen, by layer class (in-pass ms → predicted ms):\n",
                model.model
            ));
            for c in &model.by_class {
                out.push_str(&format!(
                    "  {:<12} {:>4} layers  {:>9.3} → {:>9.3}  {:>+7.1} %  ({:+.3} ms of the network's error)\n",
                    c.class,
                    c.layers,
                    c.in_pass_ms,
                    c.predicted_ms,
                    c.error_pct(),
                    c.predicted_ms - c.in_pass_ms
                ));
            }
        }
    }
    match checks {
        Checks::Skipped(why) => out.push_str(&format!("\nWhole-model check skipped: {why}.\n")),
        Checks::Done {
            checks,
            unpriced,
            steadiness,
            anchor_ms,
        } => {
            out.push_str(&format!(
                "\nWhole models (the sum of the profile's layer costs and its pass cost of {:.3} ms against a measured forward pass; the {} layers timed inside the sweep's passes are priced at their in-pass times, the others predicted):\n\n",
                profile.pass_ms,
                profile.measured_layers()
            ));
            let rows = checks
                .iter()
                .map(|c| (&c.model, c.measured_ms, c.predicted_ms, c.error_pct));
            out.push_str(&error_table("measured ms", rows));
            for u in unpriced {
                out.push_str(&format!("Not checked: {}: {}\n", u.model, u.reason));
            }
            if let Some(warning) = steadiness.warning() {
                out.push_str(&format!("Warning: the check: {warning}\n"));
            }
            if let (Some(check), Some((reference, through))) = (anchor_ms, speed.reference()) {
                out.push_str(&format!(
                    "The reference pass took {check:.3} ms through the check against {reference:.3} ms through {through} (×{:.2}): how much slower (above 1) or faster this machine ran the reference pass than while it was profiled.\n",
                    check / reference
                ));
            }
        }
    }
    out
}

/// A table of models with what was predicted, what they measured (`measured` names the
/// column) and the error in %.
fn error_table<'a>(
    measured: &str,
    rows: impl Iterator<Item = (&'a String, f64, f64, f64)>,
) -> String {
    let mut table = Table::new(&["model", "predicted ms", measured, "error"]);
    for (model, measured_ms, predicted_ms, error_pct) in rows {
        table.row(vec![
            model.clone(),
            format!("{predicted_ms:.2}"),
            format!("{measured_ms:.2}"),
            format!("{error_pct:+.1} %"),
        ]);
    }
    table.render()
}

/// `train --json`: the profile, each class's held-out accuracy against the baseline, and the
/// zoo checks.
#[derive(Serialize)]
struct TrainReport<'a> {
    profile: String,
    name: &'a str,
    role: &'static str,
    device: &'a str,
    backend: &'a str,
    threads: usize,
    cpu_quota: Option<f64>,
    classes: &'a [ClassReport],
    held_out_within_10pct: Within,
    /// How steady the machine was through the sweep's last run, where it recorded it.
    sweep_steadiness: Option<Steadiness>,
    /// The anchor through the sweep's in-pass rounds, ms, where it recorded it: how fast the
    /// machine ran while the networks' layers were timed.
    in_pass_anchor_ms: Option<f64>,
    /// Networks predicted without their own layers.
    unseen: &'a [HeldOutModel],
    /// Distinct layers timed inside the sweep's passes, priced at their in-pass times.
    measured_layers: usize,
    /// What a pass costs beyond its nodes, ms ([`DeviceProfile::pass_ms`]).
    pass_ms: f64,
    models: &'a [ModelCheck],
    /// How steady the machine was through the check's rounds.
    models_steadiness: Option<&'a Steadiness>,
    /// The lower quartile of the reference passes timed through the check, ms: against
    /// `in_pass_anchor_ms` (or the sweep's `calm_ms`), how fast the machine ran then.
    models_anchor_ms: Option<f64>,
    /// Models the profile cannot price, left out of `models`.
    models_unpriced: &'a [Unpriced],
    models_skipped: Option<&'a str>,
}

/// The share of held-out samples predicted within 10 %, ours and the baseline's, and ours on
/// the held-out layers of real networks timed inside their passes.
#[derive(Serialize)]
struct Within {
    ours: f64,
    baseline: f64,
    ours_in_pass: f64,
}

fn json_report(
    args: &TrainArgs,
    profile: &DeviceProfile,
    reports: &[ClassReport],
    unseen: &[HeldOutModel],
    speed: SweepSpeed,
    checks: &Checks,
) -> Result<String, PredictorError> {
    let (models, models_unpriced, models_steadiness, models_anchor_ms, models_skipped) =
        match checks {
            Checks::Done {
                checks,
                unpriced,
                steadiness,
                anchor_ms,
            } => (
                checks.as_slice(),
                unpriced.as_slice(),
                Some(steadiness),
                *anchor_ms,
                None,
            ),
            Checks::Skipped(why) => (&[][..], &[][..], None, None, Some(why.as_str())),
        };
    let report = TrainReport {
        profile: args.out.display().to_string(),
        name: &profile.name,
        role: profile.role.name(),
        device: &profile.device,
        backend: &profile.backend,
        threads: profile.threads,
        cpu_quota: profile.cpu_quota,
        classes: reports,
        held_out_within_10pct: Within {
            ours: overall_within(reports, |r| r.ours),
            baseline: overall_within(reports, |r| r.baseline),
            ours_in_pass: overall_within(reports, |r| r.ours_in_pass),
        },
        sweep_steadiness: speed.steadiness,
        in_pass_anchor_ms: speed.in_pass_anchor_ms,
        unseen,
        measured_layers: profile.measured_layers(),
        pass_ms: profile.pass_ms,
        models,
        models_steadiness,
        models_anchor_ms,
        models_unpriced,
        models_skipped,
    };
    let text = serde_json::to_string_pretty(&report).map_err(|e| PredictorError::Profile {
        path: args.out.clone(),
        reason: format!("the report could not be written as JSON: {e}"),
    })?;
    Ok(text + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_is_set_against_the_in_pass_rounds_where_the_sweep_recorded_them() {
        let steadiness = Steadiness {
            kept: 10,
            redone: 0,
            slow_kept: 0,
            calm_ms: 0.7,
            fastest_ms: 0.4,
        };
        let speed = |in_pass_anchor_ms| SweepSpeed {
            steadiness: Some(steadiness),
            in_pass_anchor_ms,
        };
        assert_eq!(
            speed(Some(0.44)).reference(),
            Some((0.44, "the sweep's in-pass rounds"))
        );
        assert_eq!(speed(None).reference(), Some((0.7, "the sweep")));
        let none = SweepSpeed {
            steadiness: None,
            in_pass_anchor_ms: None,
        };
        assert_eq!(none.reference(), None);
    }
}
