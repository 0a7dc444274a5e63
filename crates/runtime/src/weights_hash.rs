//! A stable fingerprint of a network's weights, so that the edge and the cloud can check that
//! they run the same network before any tensor crosses the link.

use models::Weights;
use sha2::{Digest, Sha256};

/// SHA-256 of `weights`, as 64 lowercase hex digits.
///
/// The digest covers, for every tensor in key order: the key's length and bytes, the rank, each
/// dimension, and the f32 values as little-endian bytes (lengths and dimensions as u64
/// little-endian). It depends on nothing else, so two processes that hold the same weights agree
/// whatever the platform, backend or file they came from, and any change to a key, a shape or a
/// single value changes it.
pub fn weights_hash(weights: &Weights) -> String {
    let mut hasher = Sha256::new();
    for (key, tensor) in weights.iter() {
        hasher.update((key.len() as u64).to_le_bytes());
        hasher.update(key.as_bytes());
        hasher.update((tensor.shape().len() as u64).to_le_bytes());
        for &d in tensor.shape() {
            hasher.update((d as u64).to_le_bytes());
        }
        let mut bytes = Vec::with_capacity(tensor.data().len() * 4);
        for x in tensor.data() {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        hasher.update(&bytes);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use models::{HostTensor, zoo};

    fn tensor(shape: Vec<usize>, data: Vec<f32>) -> HostTensor {
        HostTensor::new(shape, data).expect("tensor")
    }

    #[test]
    fn same_weights_same_hash_any_change_differs() {
        let net = zoo::build("lenet").expect("lenet");
        let a = weights_hash(&Weights::seeded(&net, 0));
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, weights_hash(&Weights::seeded(&net, 0)));
        assert_ne!(a, weights_hash(&Weights::seeded(&net, 1)));

        let mut w = Weights::new();
        w.insert("fc.weight", tensor(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
        let base = weights_hash(&w);
        let mut reshaped = Weights::new();
        reshaped.insert("fc.weight", tensor(vec![4, 1], vec![1.0, 2.0, 3.0, 4.0]));
        let mut renamed = Weights::new();
        renamed.insert("fc.weights", tensor(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
        let mut nudged = Weights::new();
        nudged.insert(
            "fc.weight",
            tensor(vec![2, 2], vec![1.0, 2.0, 3.0, 4.000001]),
        );
        for other in [reshaped, renamed, nudged] {
            assert_ne!(base, weights_hash(&other));
        }
    }

    #[test]
    fn key_boundaries_are_unambiguous() {
        // "ab" + "c..." must not hash like "a" + "bc...": lengths are part of the digest.
        let mut one = Weights::new();
        one.insert("ab", tensor(vec![1], vec![0.0]));
        let mut two = Weights::new();
        two.insert("a", tensor(vec![1], vec![0.0]));
        assert_ne!(weights_hash(&one), weights_hash(&two));
        assert_eq!(
            weights_hash(&Weights::new()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
