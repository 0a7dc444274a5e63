//! Inputs for a network: a seeded random sample, a float32 `.npy` tensor file, or an image file
//! as the application holds it.

use std::path::Path;

use models::{HostTensor, Net};

use crate::error::RuntimeError;

/// The input shape an image file is decoded and preprocessed to (ImageNet's).
const IMAGE_INPUT: [usize; 3] = [3, 224, 224];

/// Reads a float32 `.npy` tensor for `net`: a batch (`[N, ...input shape]`), or one sample
/// (the input shape), which gets the batch dimension.
pub fn read_npy_input(path: &Path, net: &Net) -> Result<HostTensor, RuntimeError> {
    let want = net.input_shape();
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
    let dims: Vec<String> = want.iter().map(ToString::to_string).collect();
    Err(RuntimeError::InputFile {
        path: path.to_path_buf(),
        reason: format!(
            "it has shape {shape:?} but `{}` takes [N, {}] (or {want:?} for one sample)",
            net.name(),
            dims.join(", ")
        ),
    })
}

/// Reads a JPEG or PNG file for [`crate::EdgeSession::infer_image`], checking that `net` takes
/// ImageNet's 3x224x224 input and that the file's header is an image's.
pub fn read_image_file(path: &Path, net: &Net) -> Result<Vec<u8>, RuntimeError> {
    let fault = |reason: String| RuntimeError::InputFile {
        path: path.to_path_buf(),
        reason,
    };
    if net.input_shape() != IMAGE_INPUT {
        return Err(fault(format!(
            "an image gives a 3x224x224 input but `{}` takes {:?}; give a float32 .npy tensor instead",
            net.name(),
            net.input_shape()
        )));
    }
    let file = std::fs::read(path).map_err(|e| fault(format!("cannot read it: {e}")))?;
    models::image_dimensions(&file).map_err(|e| fault(e.to_string()))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_inputs_get_a_batch_dimension_or_say_what_fits() {
        let dir = tempfile::tempdir().expect("scratch dir");
        let net = models::zoo::build("lenet").expect("lenet");
        let one = dir.path().join("one.npy");
        let sample = HostTensor::new(vec![1, 32, 32], vec![0.5; 32 * 32]).expect("tensor");
        models::save_npy(&one, &sample).expect("write");
        assert_eq!(
            read_npy_input(&one, &net).expect("reads").shape(),
            &[1, 1, 32, 32]
        );
        let wrong = dir.path().join("wrong.npy");
        let rgb = HostTensor::new(vec![2, 3, 32, 32], vec![0.0; 2 * 3 * 32 * 32]).expect("tensor");
        models::save_npy(&wrong, &rgb).expect("write");
        let err = read_npy_input(&wrong, &net)
            .expect_err("wrong shape")
            .to_string();
        assert!(
            err.contains("wrong.npy")
                && err.contains("[2, 3, 32, 32]")
                && err.contains("[N, 1, 32, 32]"),
            "{err}"
        );
    }

    #[test]
    fn image_files_need_an_imagenet_network_and_an_image() {
        let dir = tempfile::tempdir().expect("scratch dir");
        let jpeg = dir.path().join("cat.jpg");
        std::fs::write(&jpeg, models::SAMPLE_JPEG).expect("write");
        let lenet = models::zoo::build("lenet").expect("lenet");
        let err = read_image_file(&jpeg, &lenet)
            .expect_err("LeNet takes 1x32x32")
            .to_string();
        assert!(err.contains("cat.jpg") && err.contains(".npy"), "{err}");
        let alexnet = models::zoo::build("alexnet").expect("alexnet");
        assert_eq!(
            read_image_file(&jpeg, &alexnet).expect("an image").len(),
            models::SAMPLE_JPEG.len()
        );
        let text = dir.path().join("notes.png");
        std::fs::write(&text, "not an image").expect("write");
        let err = read_image_file(&text, &alexnet)
            .expect_err("not an image")
            .to_string();
        assert!(
            err.contains("notes.png") && err.contains("JPEG or PNG"),
            "{err}"
        );
    }
}
