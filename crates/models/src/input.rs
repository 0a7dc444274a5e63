//! Images in (torchvision's ImageNet evaluation preprocessing) and class scores out (top-k).

use std::path::Path;

use image::RgbImage;
use image::imageops::{self, FilterType};

use crate::error::ModelError;
use crate::tensor::HostTensor;

/// The 1000 ImageNet-1k class names, one a line, in the standard class-index order (the order of
/// the sorted WordNet ids that torchvision's classifiers are trained on).
const IMAGENET_CLASSES: &str = include_str!("../data/imagenet_classes.txt");

/// The number of ImageNet-1k classes, and of logits a zoo classifier outputs.
pub const IMAGENET_CLASS_COUNT: usize = 1000;

/// The 1000 ImageNet-1k class names, indexed by class (`0` is "tench", `999` "toilet tissue").
pub fn imagenet_classes() -> Vec<&'static str> {
    IMAGENET_CLASSES.lines().collect()
}

/// The name of ImageNet-1k class `index`, or `None` past the last class.
pub fn imagenet_class(index: usize) -> Option<&'static str> {
    IMAGENET_CLASSES.lines().nth(index)
}

/// ImageNet channel means (RGB), as torchvision normalises.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// torchvision's `Resize(256)`, `CenterCrop(224)`, `ToTensor()`, `Normalize(mean, std)`:
/// the shorter side is scaled to 256 (bilinear, antialiased when shrinking), the centre
/// 224×224 is cut out, and each channel is normalised. Returns `[1, 3, 224, 224]`.
///
/// An image more than 64 times as long as it is wide (or the reverse) is an error.
pub fn preprocess(image: &RgbImage) -> Result<HostTensor, ModelError> {
    const SHORT: u32 = 256;
    const CROP: u32 = 224;
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return Err(ModelError::Format {
            what: "image".into(),
            message: "the image is empty".into(),
        });
    }
    // As torchvision: the long side is truncated, not rounded.
    let long = |a: u32, b: u32| u64::from(SHORT) * u64::from(a) / u64::from(b);
    let (rw, rh) = if w <= h {
        (u64::from(SHORT), long(h, w))
    } else {
        (long(w, h), u64::from(SHORT))
    };
    // A sliver of an image (say 1 x 100000) would grow to gigabytes at 256 on its short side.
    if rw.max(rh) > MAX_LONG_SIDE {
        return Err(ModelError::Format {
            what: "image".into(),
            message: format!(
                "a {w}x{h} image is too elongated: scaled to 256 on its short side it would be {rw}x{rh}; crop it to an aspect ratio of at most {}:1 first",
                MAX_LONG_SIDE / u64::from(SHORT)
            ),
        });
    }
    let (rw, rh) = (rw as u32, rh as u32);
    let resized = imageops::resize(image, rw, rh, FilterType::Triangle);
    let left = ((f64::from(rw - CROP)) / 2.0).round() as u32;
    let top = ((f64::from(rh - CROP)) / 2.0).round() as u32;
    let crop = imageops::crop_imm(&resized, left, top, CROP, CROP).to_image();
    let plane = (CROP * CROP) as usize;
    let mut data = vec![0.0f32; 3 * plane];
    for (i, pixel) in crop.pixels().enumerate() {
        for c in 0..3 {
            data[c * plane + i] =
                (f32::from(pixel[c]) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
    HostTensor::new(vec![1, 3, CROP as usize, CROP as usize], data)
}

/// The longest side a resized image may have (64 times the short side).
const MAX_LONG_SIDE: u64 = 64 * 256;

/// Decodes a JPEG or PNG file and preprocesses it (see [`preprocess`]).
pub fn load_image(path: &Path) -> Result<HostTensor, ModelError> {
    let image = image::open(path).map_err(|e| ModelError::Format {
        what: format!("image {}", path.display()),
        message: format!("{e}; give a JPEG or PNG file"),
    })?;
    preprocess(&image.to_rgb8())
}

/// The `k` most likely classes of one sample's logits, as `(class index, softmax probability)`,
/// most likely first.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let mut ranked: Vec<(usize, f32)> = exp.iter().map(|&e| e / sum).enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(k);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn constant_image_normalises_per_channel() {
        let image = RgbImage::from_pixel(300, 400, Rgb([255, 0, 128]));
        let x = preprocess(&image).expect("preprocess");
        assert_eq!(x.shape(), &[1, 3, 224, 224]);
        let plane = 224 * 224;
        for (c, value) in [255.0f32, 0.0, 128.0].into_iter().enumerate() {
            let expected = (value / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            let channel = &x.data()[c * plane..(c + 1) * plane];
            assert!(
                channel.iter().all(|&v| (v - expected).abs() < 1e-5),
                "channel {c}"
            );
        }
    }

    #[test]
    fn crop_is_centred() {
        // A 256x512 image whose top and bottom quarters are black and middle white: the
        // centre 224 rows are all white after the (identity) resize.
        let image = RgbImage::from_fn(256, 512, |_, y| {
            if (128..384).contains(&y) {
                Rgb([255; 3])
            } else {
                Rgb([0; 3])
            }
        });
        let x = preprocess(&image).expect("preprocess");
        let white = (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
        assert!(
            x.data()[..224 * 224]
                .iter()
                .all(|&v| (v - white).abs() < 1e-5)
        );
    }

    #[test]
    fn png_file_loads_and_garbage_is_an_error() {
        let dir = std::env::temp_dir();
        let png = dir.join(format!("models-test-{}.png", std::process::id()));
        RgbImage::from_pixel(32, 48, Rgb([10, 20, 30]))
            .save(&png)
            .expect("write png");
        let x = load_image(&png).expect("load png");
        std::fs::remove_file(&png).expect("clean up");
        assert_eq!(x.shape(), &[1, 3, 224, 224]);
        let bad = dir.join(format!("models-test-{}.jpg", std::process::id()));
        std::fs::write(&bad, b"not an image").expect("write");
        let err = load_image(&bad).expect_err("garbage");
        std::fs::remove_file(&bad).expect("clean up");
        assert!(err.to_string().contains("JPEG or PNG"), "{err}");
    }

    #[test]
    fn elongated_image_is_an_error_not_a_huge_allocation() {
        let image = RgbImage::from_pixel(1, 100, Rgb([0; 3]));
        let err = preprocess(&image).expect_err("too elongated");
        assert!(err.to_string().contains("aspect ratio"), "{err}");
        assert!(preprocess(&RgbImage::new(0, 0)).is_err());
    }

    #[test]
    fn class_names_are_the_1000_imagenet_classes_in_order() {
        let names = imagenet_classes();
        assert_eq!(names.len(), IMAGENET_CLASS_COUNT);
        assert_eq!(IMAGENET_CLASSES.lines().count(), 1000);
        assert!(names.iter().all(|n| !n.trim().is_empty() && n.trim() == *n));
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), 1000, "class names are distinct");
        for (index, name) in [
            (0, "tench"),
            (1, "goldfish"),
            (151, "Chihuahua"),
            (207, "golden retriever"),
            (281, "tabby"),
            (409, "analog clock"),
            (504, "coffee mug"),
            (817, "sports car"),
            (948, "Granny Smith"),
            (999, "toilet tissue"),
        ] {
            assert_eq!(imagenet_class(index), Some(name), "class {index}");
        }
        assert_eq!(imagenet_class(1000), None);
    }

    #[test]
    fn top_k_ranks_softmax_probabilities() {
        let top = top_k(&[0.0, 2.0, 1.0, 2.0], 3);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1, 3, 2]);
        let total: f32 = top_k(&[0.0, 2.0, 1.0, 2.0], 10).iter().map(|t| t.1).sum();
        assert!((total - 1.0).abs() < 1e-6);
    }
}
