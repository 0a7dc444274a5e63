//! torchvision `state_dict`s as safetensors files, under torchvision's own key names.
//!
//! `scripts/export_torchvision.py` writes such a file from a pretrained torchvision model.

use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::error::ModelError;
use crate::net::Net;
use crate::tensor::HostTensor;
use crate::weights::Weights;

fn format_err(message: impl Into<String>) -> ModelError {
    ModelError::Format {
        what: "safetensors".into(),
        message: message.into(),
    }
}

/// Parses safetensors bytes into weights. Every tensor must be float32 (`F32`), except
/// BatchNorm's `num_batches_tracked` counters, which are skipped.
pub fn read_safetensors(bytes: &[u8]) -> Result<Weights, ModelError> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| format_err(e.to_string()))?;
    let mut weights = Weights::new();
    for (name, view) in file.iter() {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        if view.dtype() != Dtype::F32 {
            return Err(format_err(format!(
                "tensor `{name}` is {:?}; only F32 is supported (export with `.float()`)",
                view.dtype()
            )));
        }
        let data = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        weights.insert(name, HostTensor::new(view.shape().to_vec(), data)?);
    }
    Ok(weights)
}

/// Reads a safetensors file and checks it against `net`: missing keys, unexpected keys and shape
/// mismatches are listed together in one error.
pub fn load_safetensors(path: &Path, net: &Net) -> Result<Weights, ModelError> {
    let bytes = std::fs::read(path).map_err(|error| ModelError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let weights = read_safetensors(&bytes).map_err(|e| match e {
        ModelError::Format { message, .. } => ModelError::Format {
            what: format!("safetensors file {}", path.display()),
            message,
        },
        other => other,
    })?;
    weights.check(net)?;
    Ok(weights)
}

/// Serialises weights as safetensors (F32, little-endian), keys as they are.
pub fn write_safetensors(weights: &Weights) -> Result<Vec<u8>, ModelError> {
    let bytes: Vec<(&str, Vec<usize>, Vec<u8>)> = weights
        .iter()
        .map(|(key, t)| {
            let data = t.data().iter().flat_map(|x| x.to_le_bytes()).collect();
            (key, t.shape().to_vec(), data)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(key, shape, data)| {
            TensorView::new(Dtype::F32, shape.clone(), data).map(|view| (*key, view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format_err(e.to_string()))?;
    safetensors::serialize(views, None).map_err(|e| format_err(e.to_string()))
}

/// Writes weights to a safetensors file under their torchvision names.
pub fn save_safetensors(path: &Path, weights: &Weights) -> Result<(), ModelError> {
    let bytes = write_safetensors(weights)?;
    std::fs::write(path, bytes).map_err(|error| ModelError::Io {
        path: path.to_path_buf(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo;

    #[test]
    fn round_trip_keeps_every_tensor() {
        let net = zoo::build("lenet").expect("lenet");
        let weights = Weights::seeded(&net, 3);
        let bytes = write_safetensors(&weights).expect("serialise");
        assert_eq!(read_safetensors(&bytes).expect("parse"), weights);
        let path =
            std::env::temp_dir().join(format!("models-test-{}.safetensors", std::process::id()));
        save_safetensors(&path, &weights).expect("save");
        let loaded = load_safetensors(&path, &net).expect("load");
        std::fs::remove_file(&path).expect("clean up");
        assert_eq!(loaded, weights);
    }

    #[test]
    fn num_batches_tracked_is_ignored_and_problems_are_listed() {
        let net = zoo::build("resnet18").expect("resnet18");
        let mut weights = Weights::seeded(&net, 3);
        let counter = HostTensor::new(vec![], vec![0.0]).expect("scalar");
        weights.insert("bn1.num_batches_tracked", counter);
        weights.take("layer1.0.bn1.running_var");
        weights.insert(
            "aux1.fc.weight",
            HostTensor::new(vec![1], vec![0.0]).expect("t"),
        );
        let parsed = read_safetensors(&write_safetensors(&weights).expect("write")).expect("read");
        assert!(parsed.get("bn1.num_batches_tracked").is_none());
        let msg = parsed.check(&net).expect_err("two problems").to_string();
        assert!(
            msg.contains("missing layer1.0.bn1.running_var [64]"),
            "{msg}"
        );
        assert!(msg.contains("unexpected aux1.fc.weight"), "{msg}");
    }

    #[test]
    fn garbage_and_other_dtypes_are_errors() {
        assert!(read_safetensors(b"definitely not safetensors").is_err());
        let data = [0u8; 8];
        let view = TensorView::new(Dtype::F64, vec![1], &data).expect("view");
        let bytes = safetensors::serialize([("fc.weight", view)], None).expect("serialise");
        let msg = read_safetensors(&bytes).expect_err("f64").to_string();
        assert!(msg.contains("fc.weight") && msg.contains("F32"), "{msg}");
    }
}
