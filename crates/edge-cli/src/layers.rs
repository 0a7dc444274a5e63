//! `cutpoint-edge layers`: per-layer latency and output size (Neurosurgeon's layer
//! characterisation), as a table, a CSV and a plot.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use models::{Kernels, LayerTiming};
use serde::Serialize;

use crate::model_args::{ModelArgs, load_model, parse_kernels};
use cli_common::BackendArg;
use lab::{draw_layers, plot_format};
use runtime::Table;

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
    let model = load_model(net, None, args.seed, args.backend.backend, args.kernels)?;
    let input = models::seeded_input(model.net(), args.batch as usize, args.seed)?;
    let (warmup, runs) = (args.warmup as usize, args.runs as usize);
    let forward_ms = model.time_forward(&input, warmup, runs)?;
    let (timings, timing) = if args.in_pass {
        (model.time_in_pass(input, warmup, runs)?, "in-pass")
    } else if args.cold {
        (model.time_layers_cold(input, warmup, runs)?, "cold")
    } else {
        (model.time_layers(input, warmup, runs)?, "alone")
    };
    let name = model.net().name().to_string();

    if let Some(path) = &args.csv {
        std::fs::write(path, csv(&timings))
            .with_context(|| format!("cannot write CSV to {}", path.display()))?;
    }
    if let (Some(path), Some(format)) = (&args.plot, plot) {
        let title = format!(
            "{name} on {}, batch {}: per-layer latency and output size",
            args.backend.backend, args.batch
        );
        draw_layers(path, format, &title, &timings)?;
    }
    let total_ms: f64 = timings.iter().map(|t| t.median_ms).sum();
    if args.json {
        let report = LayersReport {
            model: &name,
            backend: args.backend.backend.name(),
            kernels: args.kernels.name(),
            vector_path: models::VectorPath::current().name(),
            batch: args.batch,
            warmup: args.warmup,
            runs: args.runs,
            timing,
            total_ms,
            forward_median_ms: forward_ms,
            layers: timings
                .iter()
                .map(|t| LayerRow {
                    id: &t.id,
                    kind: t.kind,
                    median_ms: t.median_ms,
                    out_bytes: t.out_bytes,
                })
                .collect(),
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut table = Table::new(&["node", "kind", "median_ms", "out_bytes"]);
        for t in &timings {
            table.row(vec![
                t.id.clone(),
                t.kind.to_string(),
                format!("{:.3}", t.median_ms),
                t.out_bytes.to_string(),
            ]);
        }
        table.row(vec![
            "total".into(),
            String::new(),
            format!("{total_ms:.3}"),
            String::new(),
        ]);
        print!("{}", table.render());
        let how = if args.in_pass {
            "each layer inside whole passes, from the end of the layer before it"
        } else if args.cold {
            "each layer one by one after evicting the caches, so its weights come from memory as in a pass of a network larger than the cache"
        } else {
            "each layer one by one, warm, whereas in a pass each finds the cache holding the previous layer's data; --in-pass times them there"
        };
        println!(
            "A whole forward pass: {forward_ms:.3} ms (median of {}). Timing: {timing} ({how}). Vector path: {}.",
            args.runs,
            models::VectorPath::current()
        );
    }
    Ok(())
}

/// `layers --json`.
#[derive(Serialize)]
struct LayersReport<'a> {
    model: &'a str,
    backend: &'static str,
    kernels: &'static str,
    /// The vector instructions cutpoint's own kernels ran (`avx512`, `avx2` or `other`).
    vector_path: &'static str,
    batch: u32,
    warmup: u32,
    runs: u32,
    /// How the layers were timed: `in-pass` (inside whole passes), `alone` (one by one, warm)
    /// or `cold` (one by one, caches evicted before each run).
    timing: &'static str,
    total_ms: f64,
    forward_median_ms: f64,
    layers: Vec<LayerRow<'a>>,
}

/// One node's median time and output size.
#[derive(Serialize)]
struct LayerRow<'a> {
    id: &'a str,
    kind: &'static str,
    median_ms: f64,
    out_bytes: u64,
}

/// One row per node: `node,kind,median_ms,out_bytes`.
fn csv(timings: &[LayerTiming]) -> String {
    let mut out = String::from("node,kind,median_ms,out_bytes\n");
    for t in timings {
        // Node ids are module paths (letters, digits, `.`, `_`); quote anything else.
        let id = if t.id.contains([',', '"', '\n']) {
            format!("\"{}\"", t.id.replace('"', "\"\""))
        } else {
            t.id.clone()
        };
        let _ = writeln!(out, "{id},{},{:.6},{}", t.kind, t.median_ms, t.out_bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(id: &str, ms: f64, bytes: u64) -> LayerTiming {
        LayerTiming {
            node: 0,
            id: id.into(),
            kind: "conv2d",
            median_ms: ms,
            out_bytes: bytes,
        }
    }

    #[test]
    fn csv_has_a_header_and_one_row_per_node() {
        let text = csv(&[timing("input", 0.0, 16), timing("a,b", 1.5, 8)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "node,kind,median_ms,out_bytes");
        assert_eq!(lines[1], "input,conv2d,0.000000,16");
        assert_eq!(lines[2], "\"a,b\",conv2d,1.500000,8");
    }
}
