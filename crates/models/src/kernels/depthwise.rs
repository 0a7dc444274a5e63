//! Depthwise 2-D convolution (`groups = in = out`): each channel convolved with its own
//! filter, with the bias and the activation applied before the output is stored.
//!
//! Planes go to threads in runs of several, so that small planes (7×7 at the end of
//! MobileNetV2) still make tasks worth scheduling. Each plane is first copied, zero-padded, into
//! a scratch buffer, split into phases by row and column modulo the stride (see
//! [`PaddedPlane`]): every kernel tap then reads one contiguous run for the whole plane, with no
//! padding checks at any stride. The outputs are computed [`LANES`] at a time, the taps summed in
//! registers, and stored once. A task's loops run through `pulp`, compiled for the widest vector
//! instructions the CPU has (AVX-512 on the machines this crate is measured on).

use rayon::prelude::*;

use super::scratch::Scratch;
use super::vector::dispatch;
use super::{Activation, ConvShape, ShapeError};

/// Output columns computed together, their sums held in registers across the taps.
const LANES: usize = 16;

/// Output values one task computes at least (where there are enough planes for every thread).
const TASK_OUTPUTS: usize = 16 * 1024;

/// A depthwise convolution ready to run.
#[derive(Debug, Clone)]
pub(crate) struct DepthwiseConv {
    shape: ConvShape,
    /// `[channels, kh, kw]`, PyTorch's `[channels, 1, kh, kw]`.
    weight: Vec<f32>,
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
        Ok(DepthwiseConv {
            shape,
            weight,
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
        let padded = PaddedPlane::new(&self.shape, [h, w], [ho, wo])?;
        let planes = x.len() / (h * w);
        let threads = rayon::current_num_threads().max(1);
        let per_task = TASK_OUTPUTS
            .div_ceil((ho * wo).max(1))
            .min(planes.div_ceil(4 * threads))
            .max(1);
        let mut out = vec![0.0f32; planes * ho * wo];
        out.par_chunks_mut(per_task * ho * wo)
            .zip(x.par_chunks(per_task * h * w))
            .enumerate()
            .for_each_init(
                || {
                    (
                        Scratch::take(padded.len()),
                        Scratch::take(padded.flat_len()),
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

/// One task's run of planes: `ys` (outputs) from `xs` (inputs), the first of them plane
/// `first` of the batch. Run through [`dispatch`], so that its loops, inlined into
/// one function, are compiled for the widest vector instructions the CPU has.
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
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let conv = self.conv;
        let [h, w] = self.padded.input;
        let [ho, wo] = self.padded.output;
        let taps = conv.shape.kernel[0] * conv.shape.kernel[1];
        let planes = self
            .ys
            .chunks_exact_mut(ho * wo)
            .zip(self.xs.chunks_exact(h * w));
        for (i, (y, input)) in planes.enumerate() {
            let c = (self.first + i) % conv.shape.out_channels;
            self.padded.fill(input, self.copy);
            let filter = &conv.weight[c * taps..(c + 1) * taps];
            self.padded.convolve(
                self.copy,
                filter,
                conv.bias[c],
                conv.activation,
                self.flat,
                y,
            );
        }
    }
}

/// `dst[j] = src[j · stride]` for every `j` (`src` holds them all).
#[inline(always)]
fn gather(dst: &mut [f32], src: &[f32], stride: usize) {
    let Some((last, init)) = dst.split_last_mut() else {
        return;
    };
    let src = &src[..init.len() * stride + 1];
    match stride {
        1 => {
            init.copy_from_slice(&src[..init.len()]);
            *last = src[init.len()];
        }
        // A loop of its own for the common stride, so that it vectorises.
        2 => {
            for (d, pair) in init.iter_mut().zip(src.chunks_exact(2)) {
                *d = pair[0];
            }
            *last = src[init.len() * 2];
        }
        _ => {
            for (j, d) in init.iter_mut().enumerate() {
                *d = src[j * stride];
            }
            *last = src[init.len() * stride];
        }
    }
}

/// The layout of one plane's zero-padded copy, split into *phases* by the remainders of the
/// padded row and column modulo the stride: phase `(qy, qx)` holds padded rows `qy, qy + sh, …`
/// and, of each, columns `qx, qx + sw, …`, as `rows × width` values (zeros past the padded
/// plane's edge). A kernel tap then reads, for output `(oy, ox)`, the value at `oy · width + ox`
/// from its own start in its phase: every tap is one run over all the plane's outputs, taken
/// row after row as if they were `width` wide. The `width − wo` extra values per row (garbage:
/// they read across into the next row) are computed and dropped.
#[derive(Debug)]
struct PaddedPlane {
    /// Input rows and columns.
    input: [usize; 2],
    /// Zero rows and columns before the input.
    padding: [usize; 2],
    /// Row and column stride.
    stride: [usize; 2],
    /// Rows and columns of each phase.
    rows: usize,
    width: usize,
    /// Output rows and columns.
    output: [usize; 2],
    /// For each kernel tap `(ky, kx)`: where the read for output `(0, 0)` is.
    tap_starts: Vec<usize>,
}

impl PaddedPlane {
    fn new(s: &ConvShape, [h, w]: [usize; 2], [ho, wo]: [usize; 2]) -> Result<Self, ShapeError> {
        let [kh, kw] = s.kernel;
        let [sh, sw] = s.stride;
        let [dh, dw] = s.dilation;
        let [ph, pw] = s.padding;
        let last = |out: usize, stride: usize, k: usize, d: usize| {
            out.saturating_sub(1) * stride + k.saturating_sub(1) * d
        };
        if ho * wo == 0
            || sh * sw == 0
            || last(ho, sh, kh, dh) >= h + 2 * ph
            || last(wo, sw, kw, dw) >= w + 2 * pw
        {
            return Err(ShapeError(format!(
                "a {kh}x{kw} depthwise convolution at stride {sh}x{sw} cannot make {ho}x{wo} \
                 outputs from {h}x{w} inputs"
            )));
        }
        let rows = (last(ho, sh, kh, dh) + 1).div_ceil(sh);
        let width = (last(wo, sw, kw, dw) + 1).div_ceil(sw);
        let mut tap_starts = Vec::with_capacity(kh * kw);
        for ky in 0..kh {
            for kx in 0..kw {
                let phase = (ky * dh % sh) * sw + kx * dw % sw;
                tap_starts.push(phase * rows * width + ky * dh / sh * width + kx * dw / sw);
            }
        }
        Ok(PaddedPlane {
            input: [h, w],
            padding: [ph, pw],
            stride: [sh, sw],
            rows,
            width,
            output: [ho, wo],
            tap_starts,
        })
    }

    /// Values in the padded copy.
    fn len(&self) -> usize {
        self.stride[0] * self.stride[1] * self.rows * self.width
    }

    /// Outputs computed per plane, the garbage between rows included.
    fn flat_len(&self) -> usize {
        let [ho, wo] = self.output;
        (ho - 1) * self.width + wo
    }

    /// Copies `input`, one `[h, w]` plane, into `copy` in this layout.
    #[inline(always)]
    fn fill(&self, input: &[f32], copy: &mut [f32]) {
        let [h, w] = self.input;
        let [ph, pw] = self.padding;
        let [sh, sw] = self.stride;
        let width = self.width;
        for (phase, values) in copy.chunks_exact_mut(self.rows * width).enumerate() {
            let (qy, qx) = (phase / sw, phase % sw);
            // Columns first..end hold input columns qx + j·sw − pw, the rest zeros.
            let first = pw.saturating_sub(qx).div_ceil(sw).min(width);
            let end = (pw + w).saturating_sub(qx).div_ceil(sw).min(width);
            for (i, dst) in values.chunks_exact_mut(width).enumerate() {
                let iy = (qy + i * sh).wrapping_sub(ph);
                if iy >= h || first >= end {
                    dst.fill(0.0);
                    continue;
                }
                dst[..first].fill(0.0);
                dst[end..].fill(0.0);
                let src = &input[iy * w + qx + first * sw - pw..(iy + 1) * w];
                let dst = &mut dst[first..end];
                gather(dst, src, sw);
            }
        }
    }

    /// One output plane `y` (`[ho, wo]`) from the plane in `copy`, with its channel's
    /// `filter` (`[kh, kw]`), `bias` and `activation`, through `flat` ([`Self::flat_len`]).
    #[inline(always)]
    fn convolve(
        &self,
        copy: &[f32],
        filter: &[f32],
        bias: f32,
        activation: Activation,
        flat: &mut [f32],
        y: &mut [f32],
    ) {
        let mut chunks = flat.chunks_exact_mut(LANES);
        let mut at = 0;
        for out in &mut chunks {
            let mut acc = [bias; LANES];
            self.accumulate(copy, filter, at, &mut acc);
            activation.apply(&mut acc);
            out.copy_from_slice(&acc);
            at += LANES;
        }
        let out = chunks.into_remainder();
        let mut acc = [bias; LANES];
        let acc = &mut acc[..out.len()];
        self.accumulate(copy, filter, at, acc);
        activation.apply(acc);
        out.copy_from_slice(acc);
        let wo = self.output[1];
        for (row, values) in y.chunks_exact_mut(wo).zip(flat.chunks(self.width)) {
            row.copy_from_slice(&values[..wo]);
        }
    }

    /// Adds every tap's contribution to outputs `at..at + acc.len()` (in the flat numbering of
    /// [`Self::convolve`]) to `acc`.
    #[inline(always)]
    fn accumulate(&self, copy: &[f32], filter: &[f32], at: usize, acc: &mut [f32]) {
        let n = acc.len();
        for (&tap, &start) in filter.iter().zip(&self.tap_starts) {
            let from = start + at;
            for (a, &v) in acc.iter_mut().zip(&copy[from..from + n]) {
                *a += tap * v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_is_convolved_with_its_own_filter() {
        // (channels, kernel, stride, padding, dilation, h, w): odd and even sizes, strides 1–3,
        // padding wider than the kernel, dilation, a 5×5 kernel, planes wider than the
        // registers' LANES, and enough planes that a task runs several.
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
            (40, 3, 1, 1, 1, 3, 3),
        ] {
            let batch = 2;
            let shape = ConvShape {
                in_channels: c,
                out_channels: c,
                kernel: [k, k],
                stride: [stride; 2],
                padding: [padding; 2],
                dilation: [dilation; 2],
            };
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
