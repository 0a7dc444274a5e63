//! Layer features: what a regressor sees of a [`LayerSpec`].
//!
//! Two feature sets per class. `ours` feeds the chosen regressors: log-transformed FLOPs,
//! input and output elements and parameters, plus the class's hyper-parameters. `baseline` is
//! Neurosurgeon's: a few raw sizes per layer type for a plain linear regression, kept to show
//! what the better models buy. Both are pure functions of the spec, so featurisation is
//! deterministic.

use models::{LayerKind, LayerSpec};

use crate::class::LayerClass;

/// Version of the feature definitions. Sweeps and profiles of another version are refused; bump
/// [`PROFILE_FORMAT_VERSION`](crate::PROFILE_FORMAT_VERSION) with it.
pub const FEATURE_SCHEMA_VERSION: u32 = 1;

fn elements(shape: &[usize]) -> f64 {
    shape.iter().map(|&d| d as f64).product()
}

fn ln1p(x: f64) -> f64 {
    x.ln_1p()
}

/// Spatial size (height) of a `[C, H, W]` shape, 1 for vectors.
fn height(shape: &[usize]) -> f64 {
    if shape.len() == 3 {
        shape[1] as f64
    } else {
        1.0
    }
}

fn channels(shape: &[usize]) -> f64 {
    shape.first().copied().unwrap_or(1) as f64
}

/// Our features for `spec`, whose class is `class`.
pub fn ours(class: LayerClass, spec: &LayerSpec) -> Vec<f64> {
    let input = spec.input_shapes.first().map(Vec::as_slice).unwrap_or(&[]);
    let in_elems: f64 = spec.input_shapes.iter().map(|s| elements(s)).sum();
    let out_elems = elements(&spec.output_shape);
    let mut f = vec![
        ln1p(spec.flops as f64),
        ln1p(in_elems),
        ln1p(out_elems),
        ln1p(spec.params as f64),
    ];
    match (&spec.kind, class) {
        (
            LayerKind::Conv2d {
                in_channels,
                out_channels,
                kernel_size,
                stride,
                groups,
                ..
            },
            _,
        ) => f.extend([
            ln1p(*in_channels as f64),
            ln1p(*out_channels as f64),
            kernel_size[0] as f64,
            stride[0] as f64,
            ln1p(height(input)),
            ln1p(height(&spec.output_shape)),
            ln1p(*groups as f64),
        ]),
        (
            LayerKind::Linear {
                in_features,
                out_features,
                ..
            },
            _,
        ) => f.extend([ln1p(*in_features as f64), ln1p(*out_features as f64)]),
        (
            LayerKind::MaxPool2d {
                kernel_size,
                stride,
                ..
            },
            _,
        )
        | (
            LayerKind::AvgPool2d {
                kernel_size,
                stride,
                ..
            },
            _,
        ) => f.extend([
            kernel_size[0] as f64,
            stride[0] as f64,
            ln1p(channels(input)),
            ln1p(height(input)),
            ln1p(height(&spec.output_shape)),
            0.0,
        ]),
        (LayerKind::AdaptiveAvgPool2d { output_size }, _) => f.extend([
            (height(input) / output_size[0] as f64).ceil(),
            0.0,
            ln1p(channels(input)),
            ln1p(height(input)),
            ln1p(height(&spec.output_shape)),
            1.0,
        ]),
        (LayerKind::Relu6, _) => f.extend([1.0, ln1p(channels(input)), ln1p(height(input))]),
        (_, LayerClass::Activation) => f.extend([0.0, ln1p(channels(input)), ln1p(height(input))]),
        (_, LayerClass::BatchNorm) => f.extend([ln1p(channels(input)), ln1p(height(input))]),
        (_, LayerClass::Add | LayerClass::Concat) => f.extend([
            spec.input_shapes.len() as f64,
            ln1p(channels(input)),
            ln1p(height(input)),
        ]),
        _ => {}
    }
    f
}

/// Neurosurgeon's features: for convolutions the input feature-map size and
/// (filter size / stride)² × filters; for linear layers input and output neurons; for every
/// other layer the input and output sizes.
pub fn baseline(spec: &LayerSpec) -> Vec<f64> {
    let in_elems: f64 = spec.input_shapes.iter().map(|s| elements(s)).sum();
    match &spec.kind {
        LayerKind::Conv2d {
            out_channels,
            kernel_size,
            stride,
            ..
        } => {
            let ratio = kernel_size[0] as f64 / stride[0] as f64;
            vec![in_elems, ratio * ratio * *out_channels as f64]
        }
        LayerKind::Linear {
            in_features,
            out_features,
            ..
        } => vec![*in_features as f64, *out_features as f64],
        _ => vec![in_elems, elements(&spec.output_shape)],
    }
}
