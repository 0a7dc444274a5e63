//! Images in (torchvision's ImageNet evaluation preprocessing) and class scores out (top-k).

use std::path::Path;

use image::RgbImage;
use image::imageops::{self, FilterType};

use partition_core::synthetic::SplitMix64;

use crate::error::ModelError;
use crate::net::Net;
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

/// `batch` samples of `net`'s input shape with values uniform in [-1, 1): the same for the same
/// seed, on every machine. Test data and the inputs the commands use when given none.
pub fn seeded_input(net: &Net, batch: usize, seed: u64) -> Result<HostTensor, ModelError> {
    let mut shape = vec![batch];
    shape.extend_from_slice(net.input_shape());
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| ModelError::TensorData(format!("input shape {shape:?} is too large")))?;
    let mut rng = SplitMix64::new(seed);
    let data = (0..count).map(|_| rng.unit_f32() * 2.0 - 1.0).collect();
    HostTensor::new(shape, data)
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
    let bytes = std::fs::read(path).map_err(|e| ModelError::Format {
        what: format!("image {}", path.display()),
        message: format!("{e}; give a readable JPEG or PNG file"),
    })?;
    decode_image(&bytes).map_err(|e| match e {
        ModelError::Format { message, .. } => ModelError::Format {
            what: format!("image {}", path.display()),
            message,
        },
        other => other,
    })
}

/// The widest or tallest image [`decode_image`] accepts, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 8192;

/// The most memory [`decode_image`] lets the decoder allocate (256 MiB).
const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// Decodes an encoded JPEG or PNG image held in memory and preprocesses it (see
/// [`preprocess`]). Edge and cloud both call this on the same bytes, so an image sent as a
/// file gives bit-for-bit the tensor the edge would have computed.
///
/// The bytes may come from the network: the format is read from the magic bytes (JPEG or PNG
/// only), and an image wider or taller than [`MAX_IMAGE_SIDE`], or one whose decoding would
/// allocate more than 256 MiB, is refused before its pixels are decoded.
pub fn decode_image(bytes: &[u8]) -> Result<HostTensor, ModelError> {
    let bad = |message: String| ModelError::Format {
        what: "image".into(),
        message,
    };
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
    match reader.format() {
        Some(image::ImageFormat::Jpeg | image::ImageFormat::Png) => {}
        _ => {
            return Err(bad(
                "not a JPEG or PNG image; give a JPEG or PNG file".into()
            ));
        }
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| {
        bad(format!(
            "{e}; give a JPEG or PNG file of at most {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels"
        ))
    })?;
    preprocess(&image.to_rgb8())
}

/// The width and height of an encoded JPEG or PNG image, read from its header only.
pub fn image_dimensions(bytes: &[u8]) -> Result<(u32, u32), ModelError> {
    image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())
        .and_then(|r| r.into_dimensions().map_err(|e| e.to_string()))
        .map_err(|message| ModelError::Format {
            what: "image".into(),
            message: format!("{message}; give a JPEG or PNG file"),
        })
}

/// A photograph as a camera application holds it: "Chelsea the cat" from scikit-image's
/// sample data (CC0), a 451×300 JPEG of 27 833 bytes (`data/chelsea.LICENSE.md`). The demo
/// sends it, and tests use it as a real image.
pub const SAMPLE_JPEG: &[u8] = include_bytes!("../data/chelsea.jpg");

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
    fn seeded_inputs_fit_the_network_repeat_and_stay_in_range() {
        let net = crate::zoo::build("lenet").expect("lenet");
        let a = seeded_input(&net, 2, 7).expect("input");
        assert_eq!(a.shape()[0], 2);
        assert_eq!(&a.shape()[1..], net.input_shape());
        assert!(a.data().iter().all(|v| (-1.0..1.0).contains(v)));
        assert_eq!(a.data(), seeded_input(&net, 2, 7).expect("again").data());
        assert_ne!(a.data(), seeded_input(&net, 2, 8).expect("other").data());
    }

    #[test]
    fn seeded_inputs_keep_their_values() {
        // The first values for seed 0, as `cutpoint-edge run` has always drawn them: a change
        // here changes every seeded input (and the outputs recorded against them).
        let net = crate::zoo::build("lenet").expect("lenet");
        let x = seeded_input(&net, 1, 0).expect("input");
        let first: Vec<u32> = x.data()[..3].iter().map(|v| v.to_bits()).collect();
        assert_eq!(first, [0x3f44_4150, 0xbe0c_3b10, 0xbf72_7746]);
    }

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
    fn the_sample_photo_decodes_and_matches_its_header() {
        assert_eq!(image_dimensions(SAMPLE_JPEG).expect("header"), (451, 300));
        let x = decode_image(SAMPLE_JPEG).expect("decodes");
        assert_eq!(x.shape(), &[1, 3, 224, 224]);
        // A photograph, not a constant: the channels vary.
        let (lo, hi) = x
            .data()
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert!(hi - lo > 2.0, "{lo}..{hi}");
    }

    #[test]
    fn decoding_refuses_other_formats_cut_headers_and_huge_images() {
        // A JPEG cut short still decodes (the rows it lacks come out grey); a header cut
        // short does not.
        for bytes in [&b"GIF89a...."[..], b"", &SAMPLE_JPEG[..100]] {
            match decode_image(bytes) {
                Ok(_) => panic!("{} bytes decoded", bytes.len()),
                Err(err) => assert!(err.to_string().contains("JPEG or PNG"), "{err}"),
            }
        }
        // A PNG header that declares 100000 x 100000 pixels is refused before any pixel.
        let mut png = Vec::new();
        RgbImage::from_pixel(4, 4, Rgb([1, 2, 3]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("png");
        // IHDR's width and height sit at bytes 16..24, its CRC (over bytes 12..29) at 29..33.
        png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32fast::hash(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        match decode_image(&png) {
            Ok(_) => panic!("a 100000 x 100000 PNG decoded"),
            Err(err) => assert!(err.to_string().contains("8192x8192"), "{err}"),
        }
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
