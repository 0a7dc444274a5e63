//! Flags shared by the model commands: which network, and where its weights come from.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use models::{Backend, Kernels, Model, Net, zoo};
use runtime::{DEFAULT_SEED, WeightsSource};

/// Which network: a zoo model by name, or a model spec file.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct ModelArgs {
    /// Zoo model: lenet, alexnet, vgg16, mobilenet_v2, resnet18, resnet50 or googlenet.
    #[arg(long, value_name = "NAME")]
    model: Option<String>,
    /// Model spec JSON file (the node list with each layer's kind, plus the input shape), as
    /// `graph --model M --spec` writes it; instead of --model.
    #[arg(long, value_name = "FILE")]
    model_spec: Option<PathBuf>,
}

impl ModelArgs {
    /// Builds the network the flags name.
    pub fn build(&self) -> Result<Net> {
        build_net(self.model.as_deref(), self.model_spec.as_deref())
    }
}

/// Builds a network from a model spec file, or else from a zoo name.
pub fn build_net(model: Option<&str>, model_spec: Option<&Path>) -> Result<Net> {
    if let Some(path) = model_spec {
        return Ok(Net::from_spec_file(path)?);
    }
    Ok(zoo::build(model.unwrap_or_default())?)
}

/// Where the weights come from: `--weights FILE`, or else `--seed N`.
#[derive(Args, Debug)]
pub struct WeightsArgs {
    /// Weights as a torchvision state_dict in safetensors format; a server the command uses
    /// must serve the same file [default: seeded weights].
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Seed for the weights when --weights is not given (a server's --seed must match), and
    /// for the inputs the command makes up when it is given none.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SEED)]
    pub seed: u64,
}

impl WeightsArgs {
    /// The weights the flags name.
    pub fn source(&self) -> WeightsSource {
        match &self.weights {
            Some(path) => WeightsSource::File(path.clone()),
            None => WeightsSource::Seeded(self.seed),
        }
    }
}

/// The network on `backend` with weights from `source`, running `kernels`.
pub fn load_model(
    net: Net,
    source: &WeightsSource,
    backend: Backend,
    kernels: Kernels,
) -> Result<Model> {
    let weights = source.weights(&net)?;
    Ok(Model::with_kernels(
        net,
        weights,
        &backend.device()?,
        kernels,
    )?)
}

/// Parses `--kernels fast|plain`.
pub fn parse_kernels(name: &str) -> Result<Kernels, String> {
    name.parse::<Kernels>().map_err(|e| e.to_string())
}
