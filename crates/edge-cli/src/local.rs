//! `cutpoint-edge local`: run a model on this machine, whole or split at a cut, with no network.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use models::{HostTensor, Kernels, Net};

use crate::model_args::{ModelArgs, WeightsArgs, load_model, parse_kernels};
use cli_common::BackendArg;
use runtime::run_local;

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
    #[command(flatten)]
    weights: WeightsArgs,
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
        &args.weights.source(),
        args.backend.backend,
        args.kernels,
    )?;
    let (output, mut report) = run_local(
        &model,
        input,
        cut.as_ref(),
        (args.backend.backend, args.kernels),
    )?;
    if let Some(path) = &args.save_output {
        models::save_npy(path, &output)?;
        report.saved_output = Some(path.display().to_string());
    }
    crate::emit(args.json, &report, runtime::LocalReport::render)
}

/// Reads `image` (ImageNet preprocessing) or `input` (a float32 .npy file) and checks it
/// against the network's input shape, adding the batch dimension to a single sample.
fn read_input(image: Option<&Path>, input: Option<&Path>, net: &Net) -> Result<HostTensor> {
    let want = net.input_shape();
    if let Some(path) = image {
        if want != [3, 224, 224] {
            bail!(
                "--image gives a 3x224x224 tensor but `{}` takes {want:?}; give a .npy tensor with --input instead",
                net.name()
            );
        }
        return Ok(models::load_image(path)?);
    }
    let Some(path) = input else {
        bail!("give the input with --input X.npy or --image IMG");
    };
    Ok(runtime::read_npy_input(path, net)?)
}
