//! The crate's own CPU kernels, used on the flex backend for the layers that dominate a forward
//! pass (see [`crate::Kernels`]). They read and write plain `f32` slices; `Model` hands them a
//! tensor's host data (free on flex for a tensor nobody else holds) and wraps their output.
//!
//! The vocabulary the kernels share ([`ConvShape`], [`Activation`], [`ShapeError`]) lives here.
//! Each kernel file imports it from here and builds on the lower-level pieces: `gemm` (the one
//! matrix product), `plane` (the padded, phase-split plane of the sliding-window kernels,
//! depthwise convolution and max pooling), `vector` (the vector path and its loads and stores)
//! and `scratch` (per-thread buffers). `conv` hands 3×3, stride-1 layers to `winograd`; no
//! kernel file imports another otherwise.

use std::fmt;
use std::str::FromStr;

use crate::error::ModelError;
use crate::layer::LayerKind;

mod add;
mod aligned;
mod avg_pool;
mod blocked;
#[cfg(target_arch = "x86_64")]
mod channel_blocks;
mod choice;
mod conv;
mod depthwise;
mod direct;
mod gemm;
mod halving;
mod huge_pages;
mod in_place;
mod linear;
mod max3x3;
mod patches;
mod plane;
mod pointwise;
mod pool;
mod prefetch;
pub(crate) mod recycled;
mod scratch;
mod strided_max;
mod tile_products;
mod transpose;
mod vector;
mod winograd;

pub(crate) use add::add_into;
pub(crate) use avg_pool::{AvgWindow, avg_pool2d};
pub(crate) use blocked::{BlockedDepthwise, BlockedMaps, BlockedPointwise};
pub use choice::{ConvKernel, ConvRun};
pub(crate) use conv::PackedConv;
pub(crate) use depthwise::DepthwiseConv;
pub(crate) use linear::DenseLinear;
pub(crate) use plane::Window;
pub(crate) use pool::{max_pool2d, plane_means};
pub use vector::{VECTOR_PATH_VAR, VectorPath};

/// What a layer applies to its output after the bias, element by element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// Nothing.
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
}

impl Activation {
    /// The activation of one value.
    #[inline(always)]
    pub(crate) fn of(self, v: f32) -> f32 {
        match self {
            Activation::Identity => v,
            Activation::Relu => v.max(0.0),
            Activation::Relu6 => v.clamp(0.0, 6.0),
        }
    }

    /// Applies the activation to every element of `data`.
    #[inline(always)]
    pub(crate) fn apply(self, data: &mut [f32]) {
        match self {
            Activation::Identity => {}
            Activation::Relu => data.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Relu6 => data.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0)),
        }
    }

    /// Applies the activation to every lane of `v`.
    #[inline(always)]
    pub(crate) fn apply_vector<S: pulp::Simd>(self, simd: S, v: S::f32s) -> S::f32s {
        match self {
            Activation::Identity => v,
            Activation::Relu => simd.max_f32s(v, simd.splat_f32s(0.0)),
            Activation::Relu6 => {
                simd.min_f32s(simd.max_f32s(v, simd.splat_f32s(0.0)), simd.splat_f32s(6.0))
            }
        }
    }
}

/// A convolution's packed weight (laid out for the kernel that runs it), bias and activation:
/// what each of the crate's convolution kernels takes besides its input and output.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operands<'a> {
    /// The weight, packed for the kernel.
    pub weight: &'a [f32],
    /// `[out]`.
    pub bias: &'a [f32],
    /// Applied to every output.
    pub activation: Activation,
    /// Whether the output already holds a tensor of its shape to add to every result before
    /// the activation (a residual block's shortcut), rather than values to overwrite.
    pub residual: bool,
}

/// A convolution's hyper-parameters, as in [`crate::LayerKind::Conv2d`], less `groups`, which
/// the kernel taking the shape implies: [`PackedConv`] (and its Winograd path) runs it dense
/// (`groups = 1`, a `[out, in, kh, kw]` weight), [`DepthwiseConv`] one filter per channel
/// (`groups = in_channels = out_channels`, a `[channels, 1, kh, kw]` weight, which
/// [`DepthwiseConv::new`] checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvShape {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Zero padding on each side.
    pub padding: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
}

impl ConvShape {
    /// A convolution layer's shape and group count; `None` for any other layer.
    pub(crate) fn of_layer(kind: &LayerKind) -> Option<(ConvShape, usize)> {
        let LayerKind::Conv2d {
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            ..
        } = *kind
        else {
            return None;
        };
        let shape = ConvShape {
            in_channels,
            out_channels,
            kernel: kernel_size,
            stride,
            padding,
            dilation,
        };
        Some((shape, groups))
    }

    /// Output height and width for an input of `h × w`; `None` when the padded input is smaller
    /// than the (dilated) kernel.
    fn output(&self, h: usize, w: usize) -> Option<[usize; 2]> {
        let out = |len: usize, i: usize| {
            let span = self.dilation[i] * (self.kernel[i] - 1) + 1;
            (len + 2 * self.padding[i])
                .checked_sub(span)
                .map(|room| room / self.stride[i] + 1)
        };
        Some([out(h, 0)?, out(w, 1)?])
    }

    /// The convolution's sliding window.
    fn window(&self) -> Window {
        Window {
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
        }
    }

    /// Rows of the im2col matrix: one per input channel and kernel position.
    fn patch_len(&self) -> usize {
        self.in_channels * self.kernel[0] * self.kernel[1]
    }
}

/// Why a kernel refused its operands: their shapes disagree with each other or with the layer,
/// or a matrix view overruns its slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShapeError(pub String);

/// Which kernels a [`Model`](crate::Model) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// The default: batch norms folded into their convolutions and activations fused into
    /// them (see [`Fusion`](crate::Fusion)), and on the flex backend the crate's own kernels
    /// for dense and depthwise convolutions, linear layers and max pooling. Other backends run
    /// the fused groups with Burn's own operations.
    #[default]
    Fast,
    /// Every node by itself, with Burn's own operations: the reference the fast path is tested
    /// against.
    Plain,
}

impl Kernels {
    /// Both choices.
    pub const ALL: [Kernels; 2] = [Kernels::Fast, Kernels::Plain];

    /// The name the CLIs accept.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Fast => "fast",
            Kernels::Plain => "plain",
        }
    }
}

impl fmt::Display for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kernels {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Kernels, ModelError> {
        Kernels::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ModelError::UnknownName {
                what: "kernels",
                name: s.to_string(),
                choices: Kernels::ALL.map(Kernels::name).join(", "),
            })
    }
}

/// How many of `units` (planes, or blocks of planes, of `unit_values` values each) one task
/// takes: enough for `task_values` values, but no more than leaves four tasks a thread on the
/// pool in effect (so that threads even out their ends), and at least one.
fn units_per_task(units: usize, unit_values: usize, task_values: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    task_values
        .div_ceil(unit_values.max(1))
        .min(units.div_ceil(4 * threads))
        .max(1)
}

/// `planes` (runs of `plane` values each: an NCHW output's channels) cut into bands of `band`
/// values: for each band, its run of every plane, in plane order (the last band perhaps
/// shorter). A task that takes a band writes its part of every output channel.
fn bands_of_planes(planes: &mut [f32], plane: usize, band: usize) -> Vec<Vec<&mut [f32]>> {
    let (plane, band) = (plane.max(1), band.max(1));
    let mut bands: Vec<Vec<&mut [f32]>> = (0..plane.div_ceil(band))
        .map(|_| Vec::with_capacity(planes.len() / plane))
        .collect();
    for values in planes.chunks_exact_mut(plane) {
        for (run, runs) in values.chunks_mut(band).zip(&mut bands) {
            runs.push(run);
        }
    }
    bands
}

/// A convolution's weight, one filter of `filter_len` values per output channel as PyTorch
/// stores it (`[out, in, kh, kw]`), as `[⌈out / block⌉, filter_len, block]`: for every value of
/// the filter, `block` output channels side by side (zeros past the last channel), so that a
/// kernel summing `block` channels at once reads their weights together.
fn interleave_channels(weight: &[f32], filter_len: usize, block: usize) -> Vec<f32> {
    let out = weight.len() / filter_len.max(1);
    let mut packed = vec![0.0f32; out.div_ceil(block) * filter_len * block];
    for (o, filter) in weight.chunks_exact(filter_len.max(1)).enumerate() {
        for (i, &value) in filter.iter().enumerate() {
            packed[((o / block) * filter_len + i) * block + o % block] = value;
        }
    }
    packed
}

/// A convolution by its definition, in f64, for the kernels' tests: `[out, ho, wo]` from `x`
/// (`[in, h, w]`), PyTorch's `[out, in, kh, kw]` weight `w_` and the bias `b`, before any
/// activation.
#[cfg(test)]
pub(crate) fn reference_conv(
    s: &ConvShape,
    x: &[f32],
    w_: &[f32],
    b: &[f32],
    [h, w]: [usize; 2],
) -> Vec<f64> {
    let [ho, wo] = s.output(h, w).expect("fits");
    let mut y = vec![0.0f64; s.out_channels * ho * wo];
    for o in 0..s.out_channels {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut acc = b[o] as f64;
                for c in 0..s.in_channels {
                    for ky in 0..s.kernel[0] {
                        for kx in 0..s.kernel[1] {
                            let iy = (oy * s.stride[0] + ky * s.dilation[0]) as isize
                                - s.padding[0] as isize;
                            let ix = (ox * s.stride[1] + kx * s.dilation[1]) as isize
                                - s.padding[1] as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let xi = (c * h + iy as usize) * w + ix as usize;
                            let wi =
                                ((o * s.in_channels + c) * s.kernel[0] + ky) * s.kernel[1] + kx;
                            acc += x[xi] as f64 * w_[wi] as f64;
                        }
                    }
                }
                y[(o * ho + oy) * wo + ox] = acc;
            }
        }
    }
    y
}

#[cfg(test)]
impl ConvShape {
    /// A square `k × k` convolution of `cin` to `cout` channels, the same stride, padding and
    /// dilation on both axes (the kernels' tests).
    pub(crate) fn square(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
    ) -> ConvShape {
        ConvShape {
            in_channels: cin,
            out_channels: cout,
            kernel: [k, k],
            stride: [stride; 2],
            padding: [padding; 2],
            dilation: [dilation; 2],
        }
    }
}

/// A convolution test case: a shape, an `h × w` input and operands of deterministic values.
#[cfg(test)]
pub(crate) struct ConvCase {
    /// The shape.
    pub s: ConvShape,
    /// Input height and width.
    pub hw: [usize; 2],
    /// The input, `[in, h, w]`.
    pub x: Vec<f32>,
    /// PyTorch's `[out, in, kh, kw]` weight.
    pub weight: Vec<f32>,
    /// The bias.
    pub bias: Vec<f32>,
}

#[cfg(test)]
impl ConvCase {
    /// Convolution `s` over an `h × w` input.
    pub(crate) fn new(s: ConvShape, [h, w]: [usize; 2]) -> ConvCase {
        let (cin, cout) = (s.in_channels, s.out_channels);
        ConvCase {
            s,
            hw: [h, w],
            x: (0..cin * h * w)
                .map(|i| ((i * 7) % 19) as f32 - 9.0)
                .collect(),
            weight: (0..cout * s.patch_len())
                .map(|i| ((i * 5) % 11) as f32 / 8.0 - 0.6)
                .collect(),
            bias: (0..cout).map(|o| o as f32 * 0.5 - 1.0).collect(),
        }
    }

    /// Output height and width.
    pub(crate) fn out_hw(&self) -> [usize; 2] {
        self.s.output(self.hw[0], self.hw[1]).expect("fits")
    }

    /// Checks a kernel's output `y` against [`reference_conv`] through `activation`, each
    /// value within 1e-4 of itself (at least of 1); `context` says which run failed.
    pub(crate) fn check(&self, y: &[f32], activation: Activation, context: &str) {
        let (s, hw) = (&self.s, self.hw);
        let want = reference_conv(s, &self.x, &self.weight, &self.bias, hw);
        assert_eq!(y.len(), want.len(), "{s:?} {context}");
        for (i, (&got, &want)) in y.iter().zip(&want).enumerate() {
            let want = match activation {
                Activation::Identity => want,
                Activation::Relu => want.max(0.0),
                Activation::Relu6 => want.clamp(0.0, 6.0),
            };
            assert!(
                (f64::from(got) - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{s:?} on {hw:?}, {context}: output {i} is {got}, not {want}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_of_planes_take_each_planes_run_in_order() {
        // Three planes of 5 values in bands of 2: runs of 2, 2 and 1 of every plane.
        let mut values: Vec<f32> = (0..15).map(|v| v as f32).collect();
        let bands = bands_of_planes(&mut values, 5, 2);
        let got: Vec<Vec<Vec<f32>>> = bands
            .into_iter()
            .map(|band| band.into_iter().map(|run| run.to_vec()).collect())
            .collect();
        let want = vec![
            vec![vec![0.0, 1.0], vec![5.0, 6.0], vec![10.0, 11.0]],
            vec![vec![2.0, 3.0], vec![7.0, 8.0], vec![12.0, 13.0]],
            vec![vec![4.0], vec![9.0], vec![14.0]],
        ];
        assert_eq!(got, want);
        // No planes: bands with no runs.
        let bands = bands_of_planes(&mut [], 4, 2);
        assert_eq!(bands.len(), 2);
        assert!(bands.iter().all(Vec::is_empty));
    }
}
