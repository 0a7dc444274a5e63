//! `cutpoint-edge fidelity`: what each lossy boundary codec costs in accuracy, at every cut.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use cli_common::BackendArg;
use lab::{FidelityReport, measure_fidelity, read_images};
use models::{HostTensor, Kernels, Net};
use transport::Codec;

use crate::model_args::{ModelArgs, WeightsArgs, load_model};

/// Measure what the lossy boundary codecs (f16, int8) cost in accuracy, at every cut.
///
/// Each input runs through the whole network once for the exact output. Then, for every cut of
/// the network's topological order and every lossy codec, the tensors that cross the cut are
/// encoded, decoded and handed to the rest of the network, as a split run does over the wire.
/// It reports, per cut and codec, the share of inputs whose top-1 class is unchanged and the
/// largest relative error of the output (max |a − b| / max |b|). Use it to choose `--max-loss`
/// for `run`, `tasks`, `demo`, `sweep` and `plan`. The figures mean most with real weights
/// (--weights) and real images (--images).
#[derive(Args)]
#[command(after_help = "Examples:
  cutpoint-edge fidelity --model resnet18 --weights resnet18.safetensors --images photos/
  cutpoint-edge fidelity --model alexnet --seeded 8 --json

Lossless codecs (and raw f32) change nothing and are not listed.")]
pub struct FidelityArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    weights: WeightsArgs,
    /// A directory of JPEG or PNG images, each preprocessed as for ImageNet (the model must
    /// take 3x224x224).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "seeded",
        conflicts_with = "seeded"
    )]
    images: Option<PathBuf>,
    /// This many seeded random inputs instead of --images.
    #[arg(long, value_name = "N")]
    seeded: Option<usize>,
    #[command(flatten)]
    backend: BackendArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub fn run(args: &FidelityArgs) -> Result<()> {
    let net = args.model.build()?;
    let inputs = match (&args.images, args.seeded) {
        (Some(dir), _) => images(dir, &net)?,
        (None, Some(0)) => bail!("--seeded needs at least one input"),
        (None, Some(n)) => (0..n)
            .map(|i| models::seeded_input(&net, 1, args.weights.seed.wrapping_add(i as u64)))
            .collect::<Result<_, _>>()?,
        (None, None) => bail!("give the inputs with --images DIR or --seeded N"),
    };
    let name = net.name().to_string();
    let model = load_model(
        net,
        &args.weights.source(),
        args.backend.backend,
        Kernels::default(),
    )?;
    let rows = measure_fidelity(&model, &inputs, &Codec::ALL)?;
    let report = FidelityReport {
        model: name,
        weights: match &args.weights.weights {
            Some(path) => path.display().to_string(),
            None => format!("seeded (seed {})", args.weights.seed),
        },
        inputs: inputs.len(),
        rows,
    };
    crate::emit(args.json, &report, FidelityReport::render)
}

/// The images in `dir` ([`lab::read_images`]), for a network that takes them.
fn images(dir: &Path, net: &Net) -> Result<Vec<HostTensor>> {
    if net.input_shape() != [3, 224, 224] {
        bail!(
            "--images gives 3x224x224 inputs but `{}` takes {:?}; use --seeded N",
            net.name(),
            net.input_shape()
        );
    }
    read_images(dir).context("--images")
}
