//! What the commands that run a model share: reading the input (`--input X.npy` or
//! `--image IMG`).

use std::path::Path;

use anyhow::{Result, bail};
use models::{HostTensor, Net};

/// Reads `image` (ImageNet preprocessing) or `input` (a float32 .npy file) and checks it
/// against the network's input shape, adding the batch dimension to a single sample.
pub fn read_input(image: Option<&Path>, input: Option<&Path>, net: &Net) -> Result<HostTensor> {
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
