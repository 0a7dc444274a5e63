//! `cutpoint-edge local`: run a model on this machine, whole or split at a cut, with no network.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use models::Kernels;
use serde::Serialize;

use crate::model_args::{ModelArgs, load_model, parse_kernels};
use crate::tensor_io::read_input;
use cli_common::BackendArg;
use runtime::{ClassScore, render_top5, top5};

/// Run a model on this machine, whole or split at a cut, with no network.
///
/// The input is a float32 .npy tensor in C order ([N, ...input shape], or the input shape alone
/// for one sample) or a JPEG/PNG image (resized to 256, centre-cropped to 224 and normalised as
/// torchvision does for ImageNet). With --cut the listed nodes form the cloud part: the edge part
/// runs first, then the cloud part, in this process, and the tensors that would cross the link
/// are reported. When the output has 1000 logits the top-5 ImageNet classes are printed.
#[derive(Args)]
#[command(after_help = "Examples:
  cutpoint-edge local --model resnet18 --weights resnet18.safetensors --image cat.jpg
  cutpoint-edge local --model lenet --input digits.npy --save-output logits.npy
  cutpoint-edge local --model alexnet --image cat.jpg --cut classifier.1,classifier.2,classifier.3,\\
classifier.4,classifier.5,classifier.6

Without --weights the weights come from --seed, so the classes printed are meaningless;
scripts/export_torchvision.py exports pretrained torchvision weights.")]
pub struct LocalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Weights as a torchvision state_dict in safetensors format [default: seeded weights].
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// Seed for the weights when --weights is not given.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Input tensor: a float32 .npy file in C order.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "image",
        conflicts_with = "image"
    )]
    input: Option<PathBuf>,
    /// Input image (JPEG or PNG), preprocessed as for ImageNet; the model must take 3x224x224.
    #[arg(long, value_name = "FILE")]
    image: Option<PathBuf>,
    /// Write the output tensor to this .npy file (float32, C order).
    #[arg(long, value_name = "FILE")]
    save_output: Option<PathBuf>,
    /// The cloud node set, as comma-separated node ids (see `graph`); it must be closed under
    /// successors and must not contain `input` [default: run everything as one part].
    #[arg(long, value_name = "ID,ID,...", value_delimiter = ',')]
    cut: Option<Vec<String>>,
    #[command(flatten)]
    backend: BackendArg,
    /// Kernels: fast (default: folded batch norms, fused activations, cutpoint's own
    /// convolutions on flex) or plain (every layer by Burn's own operations, for comparison).
    #[arg(long, value_name = "NAME", default_value = "fast", value_parser = parse_kernels)]
    kernels: Kernels,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub fn run(args: &LocalArgs) -> Result<()> {
    let net = args.model.build()?;
    let input = read_input(args.image.as_deref(), args.input.as_deref(), &net)?;
    let cut = match &args.cut {
        Some(ids) => {
            let ids: Vec<&str> = ids
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .collect();
            Some(net.cut(&ids).context("--cut")?)
        }
        None => None,
    };
    let model = load_model(
        net,
        args.weights.as_ref(),
        args.seed,
        args.backend.backend,
        args.kernels,
    )?;
    let net = model.net();
    let input_shape = input.shape().to_vec();
    let x = model.upload(input)?;

    let start = Instant::now();
    let (output, cut_report) = match &cut {
        None => (model.forward(x)?, None),
        Some(cut) => {
            let boundary = model.run_edge(cut, x)?;
            let edge_ms = start.elapsed().as_secs_f64() * 1e3;
            let crossing: Vec<LocalCrossing> = if cut.is_edge_only() {
                Vec::new()
            } else {
                boundary
                    .iter()
                    .map(|(&node, value)| {
                        let elements: usize = value.shape().iter().product();
                        LocalCrossing {
                            id: net.nodes()[node].id().to_string(),
                            shape: value.shape().to_vec(),
                            bytes: elements * 4,
                        }
                    })
                    .collect()
            };
            let cloud_start = Instant::now();
            let y = model.run_cloud(cut, boundary)?;
            let cloud_ms = cloud_start.elapsed().as_secs_f64() * 1e3;
            let cloud_nodes = net
                .nodes()
                .iter()
                .zip(cut.cloud_mask())
                .filter(|&(_, &c)| c)
                .map(|(n, _)| n.id().to_string())
                .collect();
            let report = LocalCut {
                cloud_nodes,
                crossing,
                edge_ms,
                cloud_ms,
            };
            (y, Some(report))
        }
    };
    let output = output.to_host()?;
    let total_ms = start.elapsed().as_secs_f64() * 1e3;
    let saved_output = match &args.save_output {
        Some(path) => {
            models::save_npy(path, &output)?;
            Some(path.display().to_string())
        }
        None => None,
    };
    let report = LocalReport {
        model: net.name().to_string(),
        backend: args.backend.backend.name(),
        kernels: args.kernels.name(),
        input_shape,
        cut: cut_report,
        total_ms,
        output_shape: output.shape().to_vec(),
        saved_output,
        top5: top5(&output),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// `local --json`: the run, and with `--cut` both parts and the tensors between them.
#[derive(Serialize)]
struct LocalReport {
    model: String,
    backend: &'static str,
    kernels: &'static str,
    input_shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cut: Option<LocalCut>,
    total_ms: f64,
    output_shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    saved_output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top5: Option<Vec<Vec<ClassScore>>>,
}

/// The two parts of a `--cut` run.
#[derive(Serialize)]
struct LocalCut {
    cloud_nodes: Vec<String>,
    crossing: Vec<LocalCrossing>,
    edge_ms: f64,
    cloud_ms: f64,
}

/// A tensor that crosses the cut, as raw f32.
#[derive(Serialize)]
struct LocalCrossing {
    id: String,
    shape: Vec<usize>,
    bytes: usize,
}

/// A shape as JSON writes it: `[1,3,224,224]`.
fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    format!("[{}]", dims.join(","))
}

/// The report as text.
fn render(report: &LocalReport) -> String {
    let mut out = format!(
        "model {} on {}: input {} -> output {} in {:.1} ms\n",
        report.model,
        report.backend,
        shape_text(&report.input_shape),
        shape_text(&report.output_shape),
        report.total_ms,
    );
    if let Some(cut) = &report.cut {
        let bytes: usize = cut.crossing.iter().map(|t| t.bytes).sum();
        out += &format!(
            "cut: edge part {:.1} ms, {} cloud node(s) {:.1} ms; {} tensor(s), {} bytes, cross to the cloud\n",
            cut.edge_ms,
            cut.cloud_nodes.len(),
            cut.cloud_ms,
            cut.crossing.len(),
            bytes,
        );
        for t in &cut.crossing {
            out += &format!("  {} {} ({} bytes)\n", t.id, shape_text(&t.shape), t.bytes);
        }
    }
    if let Some(path) = &report.saved_output {
        out += &format!("output written to {path}\n");
    }
    if let Some(samples) = &report.top5 {
        out += &render_top5(samples);
    }
    out
}
