//! `cutpoint-edge layers`: per-layer latency and output size (Neurosurgeon's layer
//! characterisation), as a table, a CSV and a plot.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use models::{Backend, HostTensor, Kernels, LayerTiming, Net};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::json;

use crate::model_args::{ModelArgs, load_model, parse_kernels};
use crate::plot::{Figure, PlotFormat, draw_x_labels, plot_format, render};
use runtime::cli::Table;
use runtime::cli::parse_backend;

/// Measure each layer's latency and output size on this machine.
///
/// One forward pass records every activation; then each node runs on its real inputs, --warmup
/// times unmeasured and --runs times measured (the device is synchronised after each run), and
/// its median latency is reported with its output size. The input is deterministic pseudo-random
/// data of the model's input shape. A whole forward pass is timed the same way, for comparison
/// with the layers' sum. --plot draws Neurosurgeon's layer figure: latency bars with the output
/// size as a line.
#[derive(Args)]
#[command(after_help = "Examples:
  cutpoint-edge layers --model alexnet
  cutpoint-edge layers --model vgg16 --runs 20 --csv vgg16.csv --plot vgg16.svg
  cutpoint-edge layers --model resnet18 --backend ndarray --json")]
pub struct LayersArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Backend: flex (default, fastest on CPU), ndarray, or wgpu (each needs its cargo feature).
    #[arg(long, value_name = "NAME", default_value = "flex", value_parser = parse_backend)]
    backend: Backend,
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
    let model = load_model(net, None, args.seed, args.backend, args.kernels)?;
    let input = input_data(model.net(), args.batch as usize, args.seed)?;
    let forward_ms = model.time_forward(&input, args.warmup as usize, args.runs as usize)?;
    let timings = model.time_layers(input, args.warmup as usize, args.runs as usize)?;
    let name = model.net().name().to_string();

    if let Some(path) = &args.csv {
        std::fs::write(path, csv(&timings))
            .with_context(|| format!("cannot write CSV to {}", path.display()))?;
    }
    if let (Some(path), Some(format)) = (&args.plot, plot) {
        let title = format!(
            "{name} on {}, batch {}: per-layer latency and output size",
            args.backend, args.batch
        );
        draw(path, format, &title, &timings)?;
    }
    let total_ms: f64 = timings.iter().map(|t| t.median_ms).sum();
    if args.json {
        let layers: Vec<_> = timings
            .iter()
            .map(|t| json!({"id": t.id, "kind": t.kind, "median_ms": t.median_ms, "out_bytes": t.out_bytes}))
            .collect();
        let report = json!({
            "model": name,
            "backend": args.backend.name(),
            "kernels": args.kernels.name(),
            "batch": args.batch,
            "warmup": args.warmup,
            "runs": args.runs,
            "total_ms": total_ms,
            "forward_median_ms": forward_ms,
            "layers": layers,
        });
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
        println!(
            "A whole forward pass: {forward_ms:.3} ms (median of {}). Layers timed one by one run warm; in a pass each finds the cache holding the previous layer's data.",
            args.runs
        );
    }
    Ok(())
}

/// Deterministic pseudo-random input in [-1, 1) of shape `[batch, ...input shape]`.
fn input_data(net: &Net, batch: usize, seed: u64) -> Result<HostTensor> {
    let mut shape = vec![batch];
    shape.extend_from_slice(net.input_shape());
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| anyhow!("input shape {shape:?} is too large"))?;
    // SplitMix64: small, fast and good enough for test data.
    let mut state = seed ^ 0x5EED_1A7E_D00D_F00D;
    let data = (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Ok(HostTensor::new(shape, data)?)
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

fn draw(path: &Path, format: PlotFormat, title: &str, timings: &[LayerTiming]) -> Result<()> {
    // The input node has no latency; plot the layers.
    let layers = timings.get(1..).unwrap_or_default();
    if layers.is_empty() {
        bail!("the model has no layers to plot");
    }
    let width = (160 + 16 * layers.len() as u32).clamp(800, 4000);
    render(path, format, (width, 600), &LayerFigure { title, layers })
}

/// Neurosurgeon's layer figure: a latency bar per layer (left axis, ms) and the output size of
/// each layer as a line (right axis, KB), layers in execution order along the x axis.
struct LayerFigure<'a> {
    title: &'a str,
    layers: &'a [LayerTiming],
}

impl Figure for LayerFigure<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        figure(root, self.title, self.layers)
    }
}

fn figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    layers: &[LayerTiming],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let n = layers.len();
    let max_ms = layers
        .iter()
        .map(|t| t.median_ms)
        .fold(0.0, f64::max)
        .max(1e-3);
    let max_kb = layers
        .iter()
        .map(|t| t.out_bytes as f64 / 1e3)
        .fold(0.0, f64::max)
        .max(1e-3);
    let x_range = -0.5..(n as f64 - 0.5);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(110)
        .y_label_area_size(70)
        .right_y_label_area_size(80)
        .build_cartesian_2d(x_range.clone(), 0.0..max_ms * 1.1)?
        .set_secondary_coord(x_range, 0.0..max_kb * 1.1);

    chart
        .configure_mesh()
        .disable_x_mesh()
        // The layer ids are drawn below, each starting at its bar and running down the page.
        .x_labels(0)
        .y_desc("latency (ms)")
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc("output size (KB)")
        .draw()?;

    let bar = RGBColor(70, 110, 180);
    chart
        .draw_series(layers.iter().enumerate().map(|(i, t)| {
            let x = i as f64;
            Rectangle::new([(x - 0.35, 0.0), (x + 0.35, t.median_ms)], bar.filled())
        }))?
        .label("latency (ms)")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], bar.filled()));
    let line = RGBColor(200, 80, 40);
    chart
        .draw_secondary_series(LineSeries::new(
            layers
                .iter()
                .enumerate()
                .map(|(i, t)| (i as f64, t.out_bytes as f64 / 1e3)),
            line.stroke_width(2),
        ))?
        .label("output size (KB)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], line.stroke_width(2)));
    let ids: Vec<&str> = layers.iter().map(|t| t.id.as_str()).collect();
    draw_x_labels(root, &ids, |x| chart.backend_coord(&(x, 0.0)))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
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
