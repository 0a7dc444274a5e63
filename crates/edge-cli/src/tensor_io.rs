//! What the commands that run a model share: reading the input (`--input X.npy` or
//! `--image IMG`), a seeded input when none is given, and the top-5 ImageNet classes of an
//! output.

use std::path::Path;

use anyhow::{Result, bail};
use models::{HostTensor, IMAGENET_CLASS_COUNT, Net, imagenet_class, top_k};
use serde_json::{Value, json};

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
    let tensor = models::load_npy(path)?;
    let shape = tensor.shape().to_vec();
    if shape == want {
        let (mut shape, data) = tensor.into_parts();
        shape.insert(0, 1);
        return Ok(HostTensor::new(shape, data)?);
    }
    if shape.len() == want.len() + 1 && shape[1..] == *want && shape[0] > 0 {
        return Ok(tensor);
    }
    bail!(
        "--input {} has shape {shape:?} but `{}` takes [N, {}] (or {want:?} for one sample)",
        path.display(),
        net.name(),
        want.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// One sample of the network's input shape (batch 1) with values in [-1, 1), the same for
/// the same seed.
pub fn seeded_input(net: &Net, seed: u64) -> Result<HostTensor> {
    let mut shape = vec![1];
    shape.extend_from_slice(net.input_shape());
    let count: usize = shape.iter().product();
    let mut rng = SplitMix::new(seed);
    let data = (0..count).map(|_| rng.unit() * 2.0 - 1.0).collect();
    Ok(HostTensor::new(shape, data)?)
}

/// A small deterministic generator (SplitMix64): seeded inputs and random task draws.
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator whose sequence depends only on `seed`.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// An index in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// The five most likely ImageNet classes of each sample, when the output is `[N, 1000]`.
pub fn top5(output: &HostTensor) -> Option<Value> {
    let [n, classes] = *output.shape() else {
        return None;
    };
    if classes != IMAGENET_CLASS_COUNT {
        return None;
    }
    let samples: Vec<Value> = (0..n)
        .map(|i| {
            let logits = &output.data()[i * classes..(i + 1) * classes];
            let ranked: Vec<Value> = top_k(logits, 5)
                .into_iter()
                .map(|(class, probability)| {
                    json!({
                        "class": class,
                        "name": imagenet_class(class).unwrap_or("?"),
                        "probability": probability,
                    })
                })
                .collect();
            Value::Array(ranked)
        })
        .collect();
    Some(Value::Array(samples))
}

/// [`top5`]'s classes as text: a ranked list per sample.
pub fn render_top5(samples: &Value) -> String {
    let mut out = String::new();
    for (i, ranked) in samples.as_array().into_iter().flatten().enumerate() {
        out += &format!("top-5 (sample {i}):\n");
        for (rank, entry) in ranked.as_array().into_iter().flatten().enumerate() {
            out += &format!(
                "  {}. {:>6.2}%  {} ({})\n",
                rank + 1,
                entry["probability"].as_f64().unwrap_or_default() * 100.0,
                entry["name"].as_str().unwrap_or_default(),
                entry["class"],
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_inputs_fit_the_network_and_repeat() {
        let net = models::zoo::build("lenet").expect("lenet");
        let a = seeded_input(&net, 3).expect("input");
        assert_eq!(a.shape(), &[1, 1, 32, 32]);
        assert!(a.data().iter().all(|x| (-1.0..1.0).contains(x)));
        assert_eq!(a, seeded_input(&net, 3).expect("input"));
        assert_ne!(a, seeded_input(&net, 4).expect("input"));
    }

    #[test]
    fn draws_stay_in_range() {
        let mut rng = SplitMix::new(1);
        let draws: Vec<usize> = (0..100).map(|_| rng.below(3)).collect();
        assert!(draws.iter().all(|&d| d < 3));
        assert!((0..3).all(|k| draws.contains(&k)));
    }

    #[test]
    fn top5_needs_a_thousand_logits() {
        let small = HostTensor::new(vec![1, 10], vec![0.0; 10]).expect("tensor");
        assert!(top5(&small).is_none());
        let mut logits = vec![0.0; 1000];
        logits[7] = 5.0;
        let out = HostTensor::new(vec![1, 1000], logits).expect("tensor");
        let ranked = top5(&out).expect("top-5");
        assert_eq!(ranked[0][0]["class"], 7);
        assert!(render_top5(&ranked).contains("1. "));
    }
}
