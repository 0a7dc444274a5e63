//! Depthwise 2-D convolution (`groups = in = out`): each channel convolved with its own
//! filter, with the bias and the activation applied before the output is stored.
//!
//! Planes go to threads in runs of several, so that small planes (7×7 at the end of
//! MobileNetV2) still make tasks worth scheduling. Each plane is copied into a zero-padded,
//! phase-split scratch buffer ([`PaddedPlane`]), where every kernel tap reads one contiguous run
//! for all of the plane's outputs; the outputs are computed several vectors at a time, the taps
//! multiply-added into sums held in registers, and stored once. A task's loops run through
//! `pulp`, compiled for the [`VectorPath`](super::VectorPath) in effect. 3×3 layers skip the
//! copies: on small planes on the AVX2 path, at stride 1 or 2 with padding 1, eight channels
//! to a vector (`channel_blocks`); otherwise at stride 1 with padding 1 they read their planes
//! in place ([`in_place`]), at stride 2 with AVX2 or AVX-512 straight from the rows
//! ([`halving`]).

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::channel_blocks;
use super::halving;
use super::in_place;
use super::plane::{PaddedPlane, VectorBlocks, in_blocks, store_block};
use super::recycled;
use super::scratch::Scratch;
use super::vector::{dispatch, load};
use super::{Activation, ConvShape, ShapeError, interleave_channels, units_per_task};

/// Channels side by side in [`DepthwiseConv`]'s blocked weight: a vector of AVX2.
const BLOCKED: usize = 8;

/// Output values one task computes at least (where there are enough planes for every thread).
const TASK_OUTPUTS: usize = 16 * 1024;

/// A depthwise convolution ready to run.
#[derive(Debug, Clone)]
pub(crate) struct DepthwiseConv {
    shape: ConvShape,
    /// `[channels, kh, kw]`, PyTorch's `[channels, 1, kh, kw]`.
    weight: Vec<f32>,
    /// A 3×3 weight as `[channels / 8, 9, 8]`, eight channels side by side per tap, for
    /// `channel_blocks` (empty for other kernels, or channels not in whole blocks of eight).
    blocked: Vec<f32>,
    /// `[channels]`.
    bias: Vec<f32>,
    activation: Activation,
}

impl DepthwiseConv {
    /// Takes PyTorch's `[channels, 1, kh, kw]` weight and `[channels]` bias.
    pub(crate) fn new(
        shape: ConvShape,
        weight: Vec<f32>,
        bias: Vec<f32>,
        activation: Activation,
    ) -> Result<DepthwiseConv, ShapeError> {
        let taps = shape.kernel[0] * shape.kernel[1];
        if shape.in_channels != shape.out_channels
            || weight.len() != shape.out_channels * taps
            || bias.len() != shape.out_channels
        {
            return Err(ShapeError(format!(
                "a depthwise convolution of {} channels needs {} weights and {} biases, not {} and {}",
                shape.out_channels,
                shape.out_channels * taps,
                shape.out_channels,
                weight.len(),
                bias.len()
            )));
        }
        let blocked = if shape.kernel == [3, 3] && shape.out_channels % BLOCKED == 0 {
            interleave_channels(&weight, taps, BLOCKED)
        } else {
            Vec::new()
        };
        Ok(DepthwiseConv {
            shape,
            weight,
            blocked,
            bias,
            activation,
        })
    }

    /// Convolves `x`, `[batch, channels, h, w]`, into `[batch, channels, ho, wo]`.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        [h, w]: [usize; 2],
        [ho, wo]: [usize; 2],
    ) -> Result<Vec<f32>, ShapeError> {
        let channels = self.shape.out_channels;
        if h * w == 0 || x.len() % (channels * h * w) != 0 {
            return Err(ShapeError(format!(
                "the input holds {} values, not a multiple of {channels}x{h}x{w}",
                x.len()
            )));
        }
        if self.shape.output(h, w) != Some([ho, wo]) {
            return Err(ShapeError(format!(
                "a {:?} depthwise convolution makes {:?} outputs from {h}x{w}, not {ho}x{wo}",
                self.shape.kernel,
                self.shape.output(h, w)
            )));
        }
        let padded = PaddedPlane::new(&self.shape.window(), [h, w], [ho, wo])?;
        let planes = x.len() / (h * w);
        let per_task = units_per_task(planes, ho * wo, TASK_OUTPUTS);
        let mut out = recycled::take(planes * ho * wo);
        let filters = Filters {
            conv: self,
            filter: [0.0; 9],
            bias: 0.0,
        };
        let window = self.shape.window();
        #[cfg(target_arch = "x86_64")]
        if !self.blocked.is_empty() && channel_blocks::suits(&window, [h, w], channels) {
            let filters = channel_blocks::Filters {
                taps: &self.blocked,
                bias: &self.bias,
                activation: self.activation,
            };
            channel_blocks::run(x, &window, [h, w], &mut out, &filters);
            return Ok(out);
        }
        if in_place::suits(&window, [h, w]) {
            in_place::run(x, [h, w], &mut out, per_task, filters);
            return Ok(out);
        }
        if halving::suits(&window) {
            let padding = window.padding[0];
            halving::run(x, [h, w], [ho, wo], padding, &mut out, per_task, filters)?;
            return Ok(out);
        }
        out.par_chunks_mut(per_task * ho * wo)
            .zip(x.par_chunks(per_task * h * w))
            .enumerate()
            .for_each_init(
                || {
                    (
                        Scratch::take(padded.copy_len()),
                        Scratch::take(padded.flat_scratch_len()),
                    )
                },
                |(copy, flat), (task, (ys, xs))| {
                    dispatch(Planes {
                        conv: self,
                        padded: &padded,
                        first: task * per_task,
                        ys,
                        xs,
                        copy,
                        flat,
                    })
                },
            );
        Ok(out)
    }
}

/// A 3×3 depthwise layer's window for [`in_place`]: the filter and bias of the channel of the
/// plane at hand, and the activation.
#[derive(Clone)]
struct Filters<'a> {
    conv: &'a DepthwiseConv,
    filter: [f32; 9],
    bias: f32,
}

impl in_place::Window3x3 for Filters<'_> {
    const OUTSIDE: f32 = 0.0;

    /// Machine D, AVX2, one thread, a layer alone against 2 (least of 6 alternating
    /// processes): 96 planes 112² → 56² 0.215 → 0.183 ms, 144 planes 56² → 28² 0.110 → 0.092;
    /// in MobileNetV2's passes 0.219 → 0.197 and 0.111 → 0.098.
    const VECTORS_16: usize = 4;

    #[inline(always)]
    fn plane<S: pulp::Simd>(&mut self, _: S, plane: usize, _: &[f32]) {
        let c = plane % self.conv.shape.out_channels;
        self.filter
            .copy_from_slice(&self.conv.weight[c * 9..(c + 1) * 9]);
        self.bias = self.conv.bias[c];
    }

    #[inline(always)]
    fn row<S: pulp::Simd>(&self, simd: S, row: usize, [l, c, r]: [S::f32s; 3]) -> S::f32s {
        let weights = &self.filter[3 * row..3 * row + 3];
        let sum = simd.mul_f32s(simd.splat_f32s(weights[0]), l);
        let sum = simd.mul_add_e_f32s(simd.splat_f32s(weights[1]), c, sum);
        simd.mul_add_e_f32s(simd.splat_f32s(weights[2]), r, sum)
    }

    #[inline(always)]
    fn rows<S: pulp::Simd>(&self, simd: S, [above, middle, below]: [S::f32s; 3]) -> S::f32s {
        let outer = simd.add_f32s(above, below);
        let sum = simd.add_f32s(simd.add_f32s(simd.splat_f32s(self.bias), middle), outer);
        self.conv.activation.apply_vector(simd, sum)
    }

    fn value(&self, taps: [f32; 9]) -> f32 {
        let sum = self
            .filter
            .iter()
            .zip(taps)
            .map(|(w, x)| w * x)
            .sum::<f32>();
        self.conv.activation.of(self.bias + sum)
    }
}

/// One task's run of planes: `ys` (outputs) from `xs` (inputs), the first of them plane
/// `first` of the batch, through the scratch buffers `copy` and `flat`. Run through
/// [`dispatch`], so that its loops, inlined into one function, are compiled for the vector path
/// in effect.
struct Planes<'a> {
    conv: &'a DepthwiseConv,
    padded: &'a PaddedPlane,
    first: usize,
    ys: &'a mut [f32],
    xs: &'a [f32],
    copy: &'a mut [f32],
    flat: &'a mut [f32],
}

impl pulp::WithSimd for Planes<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let conv = self.conv;
        let padded = self.padded;
        let taps = conv.shape.kernel[0] * conv.shape.kernel[1];
        // The padding is the same for every plane: written once, never overwritten.
        self.copy.fill(0.0);
        let [h, w] = padded.input();
        let [ho, wo] = padded.output();
        let planes = self
            .ys
            .chunks_exact_mut(ho * wo)
            .zip(self.xs.chunks_exact(h * w));
        for (i, (y, input)) in planes.enumerate() {
            let c = (self.first + i) % conv.shape.out_channels;
            padded.fill(simd, input, self.copy, 0.0);
            let mut sums = Sums {
                copy: self.copy,
                taps: padded.tap_starts(),
                filter: &conv.weight[c * taps..(c + 1) * taps],
                bias: conv.bias[c],
                activation: conv.activation,
                flat: self.flat,
            };
            in_blocks(simd, padded.vectors::<S>(), &mut sums);
            padded.copy_out(simd, self.flat, y);
        }
    }
}

/// One plane's convolution, vector block by vector block: a channel's `filter` (`[kh, kw]`)
/// over `copy`, read at the `taps`' starts, plus `bias`, through `activation`, into `flat`.
struct Sums<'a> {
    copy: &'a [f32],
    taps: &'a [usize],
    filter: &'a [f32],
    bias: f32,
    activation: Activation,
    flat: &'a mut [f32],
}

impl VectorBlocks for Sums<'_> {
    #[inline(always)]
    fn block<S: pulp::Simd, const B: usize>(&mut self, simd: S, first: usize) {
        let lanes = S::F32_LANES;
        let at = first * lanes;
        let mut acc = [simd.splat_f32s(self.bias); B];
        for (&tap, &start) in self.filter.iter().zip(self.taps) {
            let tap = simd.splat_f32s(tap);
            let values = &self.copy[start + at..start + at + B * lanes];
            for (b, sum) in acc.iter_mut().enumerate() {
                *sum = simd.mul_add_e_f32s(tap, load::<S>(&values[b * lanes..]), *sum);
            }
        }
        store_block(
            simd,
            acc,
            self.activation,
            &mut self.flat[at..at + B * lanes],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_is_convolved_with_its_own_filter() {
        // (channels, kernel, stride, padding, dilation, h, w): odd and even sizes, strides 1–3,
        // odd and even padding at stride 2 (its rows are split into even and odd columns),
        // padding wider than the kernel, dilation, a 5×5 kernel, planes wider than the
        // 128 outputs of a register block, and enough planes that a task runs several.
        for (c, k, stride, padding, dilation, h, w) in [
            (3, 3, 1, 1, 1, 7, 6),
            (3, 3, 2, 1, 1, 7, 6),
            (3, 3, 1, 2, 2, 7, 6),
            (3, 3, 2, 0, 1, 7, 6),
            (3, 3, 3, 1, 1, 7, 6),
            (3, 3, 2, 3, 1, 7, 6),
            (2, 5, 2, 2, 1, 9, 11),
            (4, 3, 1, 1, 1, 5, 37),
            (4, 3, 2, 1, 1, 6, 40),
            (5, 3, 2, 2, 1, 9, 45),
            // Stride 2 with padding 1 and 0 on planes of several vectors, odd and even sizes.
            (3, 3, 2, 1, 1, 33, 70),
            (2, 3, 2, 0, 1, 15, 50),
            (2, 3, 2, 1, 1, 112, 112),
            // Odd widths, narrower than a vector and not: the padding column past each row's
            // end.
            (3, 3, 2, 1, 1, 9, 7),
            (3, 3, 2, 1, 1, 14, 13),
            (2, 3, 2, 1, 1, 5, 37),
            (2, 5, 2, 2, 1, 20, 70),
            (40, 3, 1, 1, 1, 3, 3),
            // Stride 1, padding 1 on small planes of a vector or more (read in place): 14×14
            // and 7×7 planes in several tasks, a single column and a single row.
            (24, 3, 1, 1, 1, 14, 14),
            (64, 3, 1, 1, 1, 7, 7),
            (3, 3, 1, 1, 1, 20, 1),
            (2, 3, 1, 1, 1, 1, 20),
            // Larger planes, read in place row by row: rows of exactly one AVX-512 vector, rows
            // whose last vector overlaps the one before, and rows with vectors between the
            // first and the last (a block of four and one more at 112 columns).
            (3, 3, 1, 1, 1, 20, 16),
            (3, 3, 1, 1, 1, 20, 20),
            (2, 3, 1, 1, 1, 17, 40),
            (2, 3, 1, 1, 1, 3, 112),
        ] {
            let batch = 2;
            let shape = ConvShape::square(c, c, k, stride, padding, dilation);
            let x: Vec<f32> = (0..batch * c * h * w)
                .map(|i| ((i * 5) % 13) as f32 - 6.0)
                .collect();
            let weight: Vec<f32> = (0..c * k * k)
                .map(|i| ((i * 3) % 7) as f32 / 4.0 - 0.5)
                .collect();
            let bias: Vec<f32> = (0..c).map(|i| (i % 4) as f32 * 0.75 - 1.0).collect();
            let out = |len: usize| (len + 2 * padding - dilation * (k - 1) - 1) / stride + 1;
            let (ho, wo) = (out(h), out(w));
            let conv = DepthwiseConv::new(shape, weight.clone(), bias.clone(), Activation::Relu6)
                .expect("packs");
            let y = conv.forward(&x, [h, w], [ho, wo]).expect("runs");
            assert_eq!(y.len(), batch * c * ho * wo);
            for plane in 0..batch * c {
                let ch = plane % c;
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut want = bias[ch];
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * stride + ky * dilation) as isize - padding as isize;
                                let ix = (ox * stride + kx * dilation) as isize - padding as isize;
                                if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                    want += weight[(ch * k + ky) * k + kx]
                                        * x[plane * h * w + iy as usize * w + ix as usize];
                                }
                            }
                        }
                        let got = y[(plane * ho + oy) * wo + ox];
                        assert!(
                            (got - want.clamp(0.0, 6.0)).abs() < 1e-5,
                            "{c} channels, {k}x{k} at stride {stride}, padding {padding}, \
                             dilation {dilation}: ({plane}, {oy}, {ox}) is {got}, not {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn mismatched_weights_are_refused() {
        let shape = ConvShape {
            in_channels: 2,
            out_channels: 2,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
        };
        assert!(DepthwiseConv::new(shape, vec![0.0; 17], vec![0.0; 2], Activation::Relu).is_err());
        let conv = DepthwiseConv::new(shape, vec![0.0; 18], vec![0.0; 2], Activation::Relu)
            .expect("packs");
        assert!(conv.forward(&[0.0; 7], [2, 2], [2, 2]).is_err());
    }
}
