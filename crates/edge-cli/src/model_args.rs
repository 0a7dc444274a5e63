//! Flags shared by the model commands (`graph`, `local`, `layers`): which network, which backend.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use models::{Backend, Kernels, Model, Net, Weights, zoo};

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

/// The network on `backend` with weights from `weights` (torchvision names) or from `seed`.
pub fn load_model(
    net: Net,
    weights: Option<&PathBuf>,
    seed: u64,
    backend: Backend,
    kernels: Kernels,
) -> Result<Model> {
    let device = backend.device()?;
    let weights = match weights {
        Some(path) => models::load_safetensors(path, &net)?,
        None => Weights::seeded(&net, seed),
    };
    Ok(Model::with_kernels(net, weights, &device, kernels)?)
}

/// Parses `--kernels fast|plain`.
pub fn parse_kernels(name: &str) -> Result<Kernels, String> {
    name.parse::<Kernels>().map_err(|e| e.to_string())
}
