//! `cutpoint-edge layers`: per-layer latency and output size (Neurosurgeon's layer
//! characterisation), as a table, a CSV and a plot.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use models::Kernels;

use crate::model_args::{ModelArgs, load_model, parse_kernels};
use cli_common::BackendArg;
use lab::{LayersConfig, TimingMode, draw_layers, layers_csv, measure_layers, plot_format};
use runtime::WeightsSource;

/// Measure each layer's latency and output size on this machine.
///
/// One forward pass records every activation; then each node runs on its real inputs, --warmup
/// times unmeasured and --runs times measured (the device is synchronised after each run), and
/// its median latency is reported with its output size. With --in-pass, the nodes are timed
/// inside --warmup + --runs whole forward passes instead, each node from the end of the one
/// before it (the device synchronised after every node), so that each finds the caches as a real
/// pass leaves them; with --cold, each node alone after the caches are evicted. The input is deterministic pseudo-random data of the model's input shape. A
/// whole forward pass is timed the same way, for comparison with the layers' sum. --plot draws
/// Neurosurgeon's layer figure: latency bars with the output size as a line.
#[derive(Args)]
#[command(after_help = "Examples:
  cutpoint-edge layers --model alexnet
  cutpoint-edge layers --model alexnet --in-pass
  cutpoint-edge layers --model alexnet --cold
  cutpoint-edge layers --model vgg16 --runs 20 --csv vgg16.csv --plot vgg16.svg
  cutpoint-edge layers --model resnet18 --backend ndarray --json")]
pub struct LayersArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    backend: BackendArg,
    /// Kernels: fast (default: folded batch norms, fused activations, cutpoint's own
    /// convolutions on flex) or plain (every layer by Burn's own operations, for comparison).
    #[arg(long, value_name = "NAME", default_value = "fast", value_parser = parse_kernels)]
    kernels: Kernels,
    /// Samples per batch.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    batch: u32,
    /// Unmeasured runs of each layer before the measured ones.
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    warmup: u32,
    /// Measured runs of each layer; the median is reported.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    runs: u32,
    /// Seed for the weights and the input data.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Also write the measurements as CSV to this file.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Also draw the layer figure to this file (.svg or .png).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Time each node inside whole forward passes, in order, rather than alone and warm.
    #[arg(long)]
    in_pass: bool,
    /// Time each node alone, but with the caches evicted before each run (its weights cold,
    /// its input just written), as the profiler's sweep times its layers.
    #[arg(long, conflicts_with = "in_pass")]
    cold: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub fn run(args: &LayersArgs) -> Result<()> {
    // Check the plot's file name before spending time on measurements.
    let plot = args
        .plot
        .as_deref()
        .map(|p| plot_format(p, "--plot"))
        .transpose()?;
    let net = args.model.build()?;
    let source = WeightsSource::Seeded(args.seed);
    let model = load_model(net, &source, args.backend.backend, args.kernels)?;
    let input = models::seeded_input(model.net(), args.batch as usize, args.seed)?;
    let config = LayersConfig {
        backend: args.backend.backend,
        kernels: args.kernels,
        batch: args.batch,
        warmup: args.warmup,
        runs: args.runs,
        mode: if args.in_pass {
            TimingMode::InPass
        } else if args.cold {
            TimingMode::Cold
        } else {
            TimingMode::Alone
        },
    };
    let (report, timings) = measure_layers(&model, input, &config)?;
    if let Some(path) = &args.csv {
        std::fs::write(path, layers_csv(&timings))
            .with_context(|| format!("cannot write CSV to {}", path.display()))?;
    }
    if let (Some(path), Some(format)) = (&args.plot, plot) {
        let title = format!(
            "{} on {}, batch {}: per-layer latency and output size",
            report.model, args.backend.backend, args.batch
        );
        draw_layers(path, format, &title, &timings)?;
    }
    crate::emit(args.json, &report, lab::LayersReport::render)
}
