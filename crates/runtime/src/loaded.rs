//! A network with its weights on a device and the hash of those weights: what both sides load.

use std::fmt;
use std::path::PathBuf;

use models::{Backend, Model, Net, Weights, load_safetensors};

use crate::error::RuntimeError;
use crate::weights_hash::weights_hash;

/// The seed both sides use for weights when none is given: the edge CLI's `--seed` default.
pub const DEFAULT_SEED: u64 = 0;

/// Where a network's weights come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsSource {
    /// Deterministic weights from this seed ([`Weights::seeded`]).
    Seeded(u64),
    /// A safetensors file under torchvision's key names.
    File(PathBuf),
}

impl Default for WeightsSource {
    fn default() -> Self {
        WeightsSource::Seeded(DEFAULT_SEED)
    }
}

impl WeightsSource {
    /// Reads or generates `net`'s weights. A file that does not fit the network is an error
    /// that lists every missing, unexpected or misshapen tensor.
    pub fn weights(&self, net: &Net) -> Result<Weights, RuntimeError> {
        Ok(match self {
            WeightsSource::Seeded(seed) => Weights::seeded(net, *seed),
            WeightsSource::File(path) => load_safetensors(path, net)?,
        })
    }
}

impl fmt::Display for WeightsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightsSource::Seeded(seed) => write!(f, "seeded weights (seed {seed})"),
            WeightsSource::File(path) => write!(f, "weights file {}", path.display()),
        }
    }
}

/// A [`Model`] ready to run, with the [`weights_hash`] of the weights it was built from.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The network and its weights on a device.
    pub model: Model,
    /// SHA-256 of the weights (see [`weights_hash`]).
    pub weights_hash: String,
}

impl LoadedModel {
    /// Reads or generates the weights, hashes them and puts them on `backend`'s device.
    ///
    /// A file that does not fit the network is an error that lists every missing, unexpected or
    /// misshapen tensor.
    pub fn load(
        net: Net,
        source: &WeightsSource,
        backend: Backend,
    ) -> Result<LoadedModel, RuntimeError> {
        let weights = source.weights(&net)?;
        LoadedModel::from_weights(net, weights, backend)
    }

    /// Hashes `weights` and puts them on `backend`'s device.
    pub fn from_weights(
        net: Net,
        weights: Weights,
        backend: Backend,
    ) -> Result<LoadedModel, RuntimeError> {
        let weights_hash = weights_hash(&weights);
        let model = Model::new(net, weights, &backend.device()?)?;
        Ok(LoadedModel {
            model,
            weights_hash,
        })
    }
}
