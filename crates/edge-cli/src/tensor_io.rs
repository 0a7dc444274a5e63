//! What the commands that run a model share: reading the input (`--input X.npy` or
//! `--image IMG`), a seeded input when none is given, and the top-5 ImageNet classes of an
//! output.

use std::path::Path;

use anyhow::{Result, bail};
use models::{HostTensor, IMAGENET_CLASS_COUNT, Net, imagenet_class, top_k};
use serde::Serialize;

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

/// One of a sample's most likely ImageNet classes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScore {
    /// The class index.
    pub class: usize,
    /// The class name.
    pub name: &'static str,
    /// Its softmax probability.
    pub probability: f32,
}

/// The five most likely ImageNet classes of each sample, when the output is `[N, 1000]`.
pub fn top5(output: &HostTensor) -> Option<Vec<Vec<ClassScore>>> {
    let [n, classes] = *output.shape() else {
        return None;
    };
    if classes != IMAGENET_CLASS_COUNT {
        return None;
    }
    let samples = (0..n)
        .map(|i| {
            let logits = &output.data()[i * classes..(i + 1) * classes];
            top_k(logits, 5)
                .into_iter()
                .map(|(class, probability)| ClassScore {
                    class,
                    name: imagenet_class(class).unwrap_or("?"),
                    probability,
                })
                .collect()
        })
        .collect();
    Some(samples)
}

/// [`top5`]'s classes as text: a ranked list per sample.
pub fn render_top5(samples: &[Vec<ClassScore>]) -> String {
    let mut out = String::new();
    for (i, ranked) in samples.iter().enumerate() {
        out += &format!("top-5 (sample {i}):\n");
        for (rank, entry) in ranked.iter().enumerate() {
            out += &format!(
                "  {}. {:>6.2}%  {} ({})\n",
                rank + 1,
                entry.probability * 100.0,
                entry.name,
                entry.class,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top5_needs_a_thousand_logits() {
        let small = HostTensor::new(vec![1, 10], vec![0.0; 10]).expect("tensor");
        assert!(top5(&small).is_none());
        let mut logits = vec![0.0; 1000];
        logits[7] = 5.0;
        let out = HostTensor::new(vec![1, 1000], logits).expect("tensor");
        let ranked = top5(&out).expect("top-5");
        assert_eq!(ranked[0][0].class, 7);
        assert!(render_top5(&ranked).contains("1. "));
    }
}
