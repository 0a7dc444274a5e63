//! Weights under torchvision's key names (`features.0.weight`, `layer1.0.bn1.running_var`, ...):
//! seeded initialisation and the check that a weights set fits a network.

use std::collections::BTreeMap;

use partition_core::synthetic::SplitMix64;

use crate::error::ModelError;
use crate::layer::{LayerKind, Shape};
use crate::net::Net;
use crate::tensor::HostTensor;

/// A network's weights and buffers by torchvision key, in host memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Weights {
    tensors: BTreeMap<String, HostTensor>,
}

/// Every key the network needs, with its shape, in node order (torchvision's `state_dict` order
/// for the zoo models, without `num_batches_tracked`).
pub fn expected_keys(net: &Net) -> Vec<(String, Shape)> {
    net.nodes()
        .iter()
        .flat_map(|node| {
            node.spec()
                .kind
                .tensors()
                .into_iter()
                .map(move |t| (format!("{}.{}", node.id(), t.suffix), t.shape))
        })
        .collect()
}

impl Weights {
    /// An empty set.
    pub fn new() -> Weights {
        Weights::default()
    }

    /// Deterministic weights for `net` from `seed`.
    ///
    /// Each tensor draws from its own stream ([`SplitMix64`]), seeded by `seed` and its key, so a
    /// layer's weights do not depend on the rest of the network. Convolution and linear weights are He-uniform
    /// (`±sqrt(6 / fan_in)`), biases `±1/sqrt(fan_in)`; batch norm gets weights and running
    /// variances in [0.8, 1.2] and biases and running means in [-0.1, 0.1], so activations stay
    /// of order one through deep networks.
    pub fn seeded(net: &Net, seed: u64) -> Weights {
        let mut tensors = BTreeMap::new();
        for node in net.nodes() {
            let kind = &node.spec().kind;
            let fan_in = match *kind {
                LayerKind::Conv2d {
                    in_channels,
                    kernel_size,
                    groups,
                    ..
                } => (in_channels / groups.max(1)) * kernel_size[0] * kernel_size[1],
                LayerKind::Linear { in_features, .. } => in_features,
                _ => 1,
            };
            let fan_in = fan_in.max(1) as f32;
            for t in kind.tensors() {
                let key = format!("{}.{}", node.id(), t.suffix);
                let (low, high) = match (kind, t.suffix) {
                    (LayerKind::BatchNorm2d { .. }, "weight" | "running_var") => (0.8, 1.2),
                    (LayerKind::BatchNorm2d { .. }, _) => (-0.1, 0.1),
                    (_, "weight") => {
                        let bound = (6.0 / fan_in).sqrt();
                        (-bound, bound)
                    }
                    _ => {
                        let bound = 1.0 / fan_in.sqrt();
                        (-bound, bound)
                    }
                };
                let n: usize = t.shape.iter().product();
                let mut rng = SplitMix64::new(seed ^ fnv1a(key.as_bytes()));
                let data = (0..n)
                    .map(|_| low + (high - low) * rng.unit_f32())
                    .collect();
                // The length matches the shape by construction.
                if let Ok(tensor) = HostTensor::new(t.shape, data) {
                    tensors.insert(key, tensor);
                }
            }
        }
        Weights { tensors }
    }

    /// Adds or replaces a tensor.
    pub fn insert(&mut self, key: impl Into<String>, tensor: HostTensor) {
        self.tensors.insert(key.into(), tensor);
    }

    /// The tensor under `key`.
    pub fn get(&self, key: &str) -> Option<&HostTensor> {
        self.tensors.get(key)
    }

    /// Removes and returns the tensor under `key`.
    pub fn take(&mut self, key: &str) -> Option<HostTensor> {
        self.tensors.remove(key)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Keys and tensors in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &HostTensor)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Checks that the set has exactly the keys `net` needs, with the right shapes. One error
    /// lists the missing keys, unexpected keys and shape mismatches (the first few, on one line).
    pub fn check(&self, net: &Net) -> Result<(), ModelError> {
        let expected = expected_keys(net);
        let mut problems = Vec::new();
        for (key, shape) in &expected {
            match self.tensors.get(key) {
                None => problems.push(format!("missing {key} {shape:?}")),
                Some(t) if t.shape() != shape.as_slice() => problems.push(format!(
                    "shape mismatch {key}: file has {:?}, network needs {shape:?}",
                    t.shape()
                )),
                Some(_) => {}
            }
        }
        let known: std::collections::HashSet<&str> =
            expected.iter().map(|(k, _)| k.as_str()).collect();
        for key in self.tensors.keys() {
            if !known.contains(key.as_str()) {
                problems.push(format!("unexpected {key}"));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        // One line: the first few problems, and how many more there are.
        const SHOWN: usize = 8;
        let mut details = problems[..problems.len().min(SHOWN)].join("; ");
        if problems.len() > SHOWN {
            details.push_str(&format!("; and {} more", problems.len() - SHOWN));
        }
        Err(ModelError::Weights {
            net: net.name().to_string(),
            details,
        })
    }
}

/// 64-bit FNV-1a, to derive a stream seed from a key.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo;

    const PINNED_FIRST_VALUES: [&str; 3] = ["-0.121311", "0.055713", "-0.406024"];

    #[test]
    fn seeded_weights_fit_and_are_deterministic() {
        let net = zoo::build("lenet").expect("lenet");
        let a = Weights::seeded(&net, 7);
        a.check(&net).expect("seeded weights fit");
        assert_eq!(a, Weights::seeded(&net, 7));
        assert_ne!(a, Weights::seeded(&net, 8));
        let w = a.get("features.0.weight").expect("conv weight");
        assert_eq!(w.shape(), &[6, 1, 5, 5]);
        let bound = (6.0f32 / 25.0).sqrt();
        assert!(w.data().iter().all(|x| x.abs() <= bound));
    }

    /// Seeded weights are a contract between builds: an edge and a cloud built from different
    /// versions must load the same weights for the same seed. These are the first values of
    /// LeNet's first convolution at seed 7; a change here breaks that contract.
    #[test]
    fn seeded_weights_are_the_same_in_every_build() {
        let net = zoo::build("lenet").expect("lenet");
        let w = Weights::seeded(&net, 7);
        let data = w.get("features.0.weight").expect("conv weight").data();
        let first: Vec<String> = data[..3].iter().map(|x| format!("{x:.6}")).collect();
        assert_eq!(first, PINNED_FIRST_VALUES);
    }

    #[test]
    fn keys_follow_torchvision() {
        let net = zoo::build("resnet18").expect("resnet18");
        let keys: Vec<String> = expected_keys(&net).into_iter().map(|(k, _)| k).collect();
        // torchvision's state_dict has 122 entries, 20 of them `num_batches_tracked`.
        assert_eq!(keys.len(), 102);
        for key in [
            "conv1.weight",
            "bn1.running_var",
            "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.running_mean",
            "fc.bias",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key}");
        }
    }

    #[test]
    fn check_lists_every_problem() {
        let net = zoo::build("lenet").expect("lenet");
        let mut w = Weights::seeded(&net, 1);
        w.take("features.0.bias");
        w.insert(
            "classifier.4.weight",
            HostTensor::new(vec![10, 83], vec![0.0; 830]).expect("tensor"),
        );
        w.insert(
            "extra.weight",
            HostTensor::new(vec![1], vec![0.0]).expect("tensor"),
        );
        let msg = w.check(&net).expect_err("three problems").to_string();
        assert!(msg.contains("missing features.0.bias"), "{msg}");
        assert!(
            msg.contains("classifier.4.weight") && msg.contains("[10, 84]"),
            "{msg}"
        );
        assert!(msg.contains("unexpected extra.weight"), "{msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }

    #[test]
    fn a_long_list_of_problems_is_cut_short() {
        let net = zoo::build("resnet18").expect("resnet18");
        let msg = Weights::new().check(&net).expect_err("empty").to_string();
        let missing = expected_keys(&net).len();
        assert!(msg.contains(&format!("and {} more", missing - 8)), "{msg}");
    }
}
