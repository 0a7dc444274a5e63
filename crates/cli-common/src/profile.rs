//! `profile`: sweep this machine's layer latencies into a directory of CSVs.

use std::path::PathBuf;

use clap::Args;
use models::zoo;
use predictor::Role;
use predictor::{
    LayerClass, PredictorError, SpellGuard, SweepConfig, SweepSize, run_in_pass, run_sweep,
};

use crate::backend::BackendArg;
use runtime::Table;

/// Time seeded samples of every layer class on this machine, one CSV per class.
///
/// Each class's configuration space covers every layer of the zoo and reaches beyond it. An
/// interrupted sweep resumes where it stopped when run again with the same --out. Then every
/// layer of the zoo's networks is timed inside their own forward passes (--in-pass), so that
/// the profile also learns from layers in their real context. Train a device profile from the
/// directory with `train --data DIR`.
#[derive(Args, Debug)]
#[command(
    allow_negative_numbers = true,
    after_help = "Examples:
  cutpoint-edge profile --out sweeps/edge --quick --cpu-quota 0.3   # an emulated 0.3-CPU edge (root)
  cutpoint-cloud profile --out sweeps/cloud --quick
  cutpoint-edge train --data sweeps/edge --out edge.profile"
)]
pub struct ProfileArgs {
    /// Directory for the per-class CSVs; a sweep already there is resumed.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The quick sweep: small layers, about two minutes on two cores; good enough for the demo.
    #[arg(long)]
    quick: bool,
    #[command(flatten)]
    backend: BackendArg,
    /// Run under a cgroup-v1 CPU quota of F CPUs (e.g. 0.3), emulating a slower device.
    /// Needs root; without it the sweep stops rather than profile unconstrained.
    #[arg(long, value_name = "F")]
    cpu_quota: Option<f64>,
    /// Seed of the sampled layer configurations.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// At most N samples per class (below the sweep's own count), for a fast trial run.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    samples: Option<u64>,
    /// Zoo models whose layers are also timed inside their own forward passes (3 warm-up and
    /// 11 timed rounds of one pass of each model): comma-separated names, `all`, or `none`.
    /// `train` learns from them, prices their layers at these times, and reports how well it
    /// predicts each of them without its own layers. Twelve small seeded networks (`small-0`
    /// to `small-11`: eight LeNet-sized, four of MobileNetV2's blocks) are timed beside them,
    /// so that small layers and depthwise ones have in-pass rows from more than one network.
    /// The models are held at once: about 1.4 GB for the whole zoo, most of it VGG16's
    /// weights; name fewer on a small device.
    #[arg(long, value_name = "MODELS", default_value = "all")]
    in_pass: String,
    /// Hide the progress bars.
    #[arg(long)]
    no_progress: bool,
}

/// Runs the sweep for a device in `role` and returns the summary to print.
pub fn profile(args: &ProfileArgs, role: Role) -> Result<String, PredictorError> {
    let config = SweepConfig {
        out_dir: args.out.clone(),
        size: if args.quick {
            SweepSize::Quick
        } else {
            SweepSize::Full
        },
        backend: args.backend.backend,
        cpu_quota: args.cpu_quota,
        seed: args.seed,
        classes: LayerClass::ALL.to_vec(),
        max_samples: args.samples.map(|n| n as usize),
        progress: !args.no_progress,
    };
    let mut nets = crate::train::model_names(&args.in_pass)?
        .iter()
        .map(|name| zoo::build(name))
        .collect::<Result<Vec<_>, _>>()?;
    if !nets.is_empty() {
        nets.extend(predictor::small_nets(args.seed)?);
    }
    let mut guard = SpellGuard::on(config.backend)?;
    let (meta, summaries) = run_sweep(&config, &mut guard)?;
    let (_, passes) = run_in_pass(&config, &nets, &mut guard)?;
    let steadiness = guard.steadiness();
    steadiness.write(&args.out)?;
    let mut table = Table::new(&["class", "resumed", "measured", "total"]);
    for s in &summaries {
        table.row(vec![
            s.class.name().to_string(),
            s.resumed.to_string(),
            s.measured.to_string(),
            (s.resumed + s.measured).to_string(),
        ]);
    }
    let quota = meta
        .cpu_quota
        .map_or("none".to_string(), |q| format!("{q} CPU"));
    let mut in_pass = Table::new(&[
        "model",
        "layers",
        "in-pass ms",
        "whole pass ms",
        "beyond nodes ms",
    ]);
    for p in &passes {
        in_pass.row(vec![
            p.model.clone(),
            p.layers.to_string(),
            format!("{:.2}", p.total_ms),
            format!("{:.2}", p.pass.whole_ms),
            format!("{:.3}", p.pass.overhead_ms()),
        ]);
    }
    let in_pass = if passes.is_empty() {
        String::new()
    } else {
        format!(
            "\nLayers timed inside their networks' passes:\n\n{}",
            in_pass.render()
        )
    };
    let steady = format!(
        "\nRounds measured: {}; run again in a slow spell of this machine: {} (a reference pass over {}× its usual {:.3} ms, the lower quartile of the reference passes: the times above are the machine as it usually runs).\n{}",
        steadiness.kept,
        steadiness.redone,
        predictor::SLOW_LIMIT,
        steadiness.calm_ms,
        steadiness
            .warning()
            .map_or(String::new(), |w| format!("Warning: {w}\n")),
    );
    Ok(format!(
        "Swept {} ({} backend, {} threads, CPU quota {quota}) into {}\n\n{}{in_pass}{steady}\nNext: cutpoint-{} train --data {} --out {}.profile\n",
        meta.device,
        meta.backend,
        meta.threads,
        args.out.display(),
        table.render(),
        role.name(),
        args.out.display(),
        role.name(),
    ))
}
