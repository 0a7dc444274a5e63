//! Depthwise 2-D convolution (`groups = in = out`): each channel convolved with its own
//! filter, with the bias and the activation applied before the output is stored.
//!
//! Planes go to threads in runs of several, so that small planes (7×7 at the end of
//! MobileNetV2) still make tasks worth scheduling. Each plane is first copied into a scratch
//! buffer, split into phases by row and column modulo the stride (see [`PaddedPlane`]): every
//! kernel tap then reads one contiguous run for the whole plane, with no padding checks at any
//! stride. The padding is zeroed once per task, as it is the same for every plane; at stride 2
//! one pass over an input row splits it into its even and odd columns. The outputs are computed
//! [`BLOCK`] vectors at a time, the taps multiply-added into sums held in registers, and stored
//! once; short rows are copied a vector at a time rather than by `memcpy`. A task's loops run
//! through `pulp`, compiled for the [`VectorPath`](super::VectorPath) in effect.

use rayon::prelude::*;

use super::scratch::Scratch;
use super::vector::{copy_row, dispatch, load, store};
use super::{Activation, ConvShape, ShapeError};

/// Vectors of outputs summed together, in registers across the taps: independent sums, so that
/// one tap's multiply-adds need not wait for each other's results.
const BLOCK: usize = 8;

/// The widest vector, in values: the slack the scratch buffers keep past the plane, so that
/// the last vector of outputs is a whole one.
const MAX_LANES: usize = 16;

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
                        Scratch::take(padded.len() + MAX_LANES),
                        Scratch::take(padded.flat_len().next_multiple_of(MAX_LANES)),
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
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let conv = self.conv;
        let [h, w] = self.padded.input;
        let [ho, wo] = self.padded.output;
        let taps = conv.shape.kernel[0] * conv.shape.kernel[1];
        let planes = self
            .ys
            .chunks_exact_mut(ho * wo)
            .zip(self.xs.chunks_exact(h * w));
        // The padding is the same for every plane: written once, never overwritten.
        self.copy.fill(0.0);
        for (i, (y, input)) in planes.enumerate() {
            let c = (self.first + i) % conv.shape.out_channels;
            self.padded.fill(simd, input, self.copy);
            let filter = &conv.weight[c * taps..(c + 1) * taps];
            self.padded.convolve(
                simd,
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
fn gather<S: pulp::Simd>(simd: S, dst: &mut [f32], src: &[f32], stride: usize) {
    let Some((last, init)) = dst.split_last_mut() else {
        return;
    };
    let src = &src[..init.len() * stride + 1];
    if stride == 1 {
        copy_row(simd, init, &src[..init.len()]);
        *last = src[init.len()];
        return;
    }
    for (j, d) in init.iter_mut().enumerate() {
        *d = src[j * stride];
    }
    *last = src[init.len() * stride];
}

/// `evens[j] = src[2j]` and `odds[j] = src[2j + 1]` for every `j` of each (`src` holds them
/// all), in one pass over `src`.
#[inline(always)]
fn split_pairs(evens: &mut [f32], odds: &mut [f32], src: &[f32]) {
    let both = evens.len().min(odds.len());
    for ((e, o), pair) in evens[..both]
        .iter_mut()
        .zip(&mut odds[..both])
        .zip(src.chunks_exact(2))
    {
        *e = pair[0];
        *o = pair[1];
    }
    for (k, e) in evens.iter_mut().enumerate().skip(both) {
        *e = src[2 * k];
    }
    for (k, o) in odds.iter_mut().enumerate().skip(both) {
        *o = src[2 * k + 1];
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

    /// Copies `input`, one `[h, w]` plane, into `copy` in this layout, over the zeros of an
    /// earlier fill: only the values that come from the input are written.
    #[inline(always)]
    fn fill<S: pulp::Simd>(&self, simd: S, input: &[f32], copy: &mut [f32]) {
        let [h, w] = self.input;
        let [ph, pw] = self.padding;
        let [sh, sw] = self.stride;
        let width = self.width;
        // Columns first..end of phase column qx hold input columns qx + j·sw − pw, the rest
        // zeros.
        let columns = |qx: usize| {
            let first = pw.saturating_sub(qx).div_ceil(sw).min(width);
            let end = (pw + w).saturating_sub(qx).div_ceil(sw).min(width);
            (first, end)
        };
        let rows = self.rows;
        // The phases of one phase row qy: rows qy, qy + sh, … of the padded plane.
        for (qy, phases) in copy[..self.len()]
            .chunks_exact_mut(sw * rows * width)
            .enumerate()
        {
            let input_row = |i: usize| {
                let iy = (qy + i * sh).wrapping_sub(ph);
                (iy < h).then(|| &input[iy * w..(iy + 1) * w])
            };
            if sw == 2 {
                // Both column phases of a row at once: its even and odd columns.
                let (even, odd) = phases.split_at_mut(rows * width);
                let ((first0, end0), (first1, end1)) = (columns(0), columns(1));
                for i in 0..rows {
                    let Some(src) = input_row(i) else { continue };
                    let row0 = &mut even[i * width..][first0..end0];
                    let row1 = &mut odd[i * width..][first1..end1];
                    // Input columns 2·first0 − pw, … go to phase 0, 2·first1 + 1 − pw, … to
                    // phase 1: one of the two starts the pairs.
                    let (c0, c1) = (2 * first0 - pw, 2 * first1 + 1 - pw);
                    if c0 < c1 {
                        split_pairs(row0, row1, &src[c0..]);
                    } else {
                        split_pairs(row1, row0, &src[c1..]);
                    }
                }
                continue;
            }
            for (qx, values) in phases.chunks_exact_mut(rows * width).enumerate() {
                let (first, end) = columns(qx);
                if first >= end {
                    continue;
                }
                for (i, dst) in values.chunks_exact_mut(width).enumerate() {
                    let Some(src) = input_row(i) else { continue };
                    gather(simd, &mut dst[first..end], &src[qx + first * sw - pw..], sw);
                }
            }
        }
    }

    /// One output plane `y` (`[ho, wo]`) from the plane in `copy`, with its channel's
    /// `filter` (`[kh, kw]`), `bias` and `activation`, through `flat` ([`Self::flat_len`]).
    /// The outputs are summed [`BLOCK`] vectors at a time, then 4, 2 and 1 as they remain; the
    /// last vector may run past them, into `flat`'s slack, reading `copy`'s (zero) slack.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn convolve<S: pulp::Simd>(
        &self,
        simd: S,
        copy: &[f32],
        filter: &[f32],
        bias: f32,
        activation: Activation,
        flat: &mut [f32],
        y: &mut [f32],
    ) {
        // Whole vectors, the last running past the plane's outputs into the buffers' slack.
        let vectors = self.flat_len().div_ceil(S::F32_LANES);
        let mut v = 0;
        while v + BLOCK <= vectors {
            self.sum_vectors::<S, BLOCK>(simd, copy, filter, bias, activation, v, flat);
            v += BLOCK;
        }
        if v + 4 <= vectors {
            self.sum_vectors::<S, 4>(simd, copy, filter, bias, activation, v, flat);
            v += 4;
        }
        if v + 2 <= vectors {
            self.sum_vectors::<S, 2>(simd, copy, filter, bias, activation, v, flat);
            v += 2;
        }
        if v < vectors {
            self.sum_vectors::<S, 1>(simd, copy, filter, bias, activation, v, flat);
        }
        let wo = self.output[1];
        for (row, values) in y.chunks_exact_mut(wo).zip(flat.chunks(self.width)) {
            copy_row(simd, row, &values[..wo]);
        }
    }

    /// Output vectors `first..first + B` (in the flat numbering of [`Self::convolve`]): every
    /// tap added to `B` sums held in registers, independent of each other, then the
    /// activation, then one store each.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn sum_vectors<S: pulp::Simd, const B: usize>(
        &self,
        simd: S,
        copy: &[f32],
        filter: &[f32],
        bias: f32,
        activation: Activation,
        first: usize,
        flat: &mut [f32],
    ) {
        let lanes = S::F32_LANES;
        let at = first * lanes;
        let mut acc = [simd.splat_f32s(bias); B];
        for (&tap, &start) in filter.iter().zip(&self.tap_starts) {
            let tap = simd.splat_f32s(tap);
            let values = &copy[start + at..start + at + B * lanes];
            for (b, sum) in acc.iter_mut().enumerate() {
                *sum = simd.mul_add_e_f32s(tap, load::<S>(&values[b * lanes..]), *sum);
            }
        }
        let out = &mut flat[at..at + B * lanes];
        for (b, sum) in acc.into_iter().enumerate() {
            store::<S>(&mut out[b * lanes..], activation.apply_vector(simd, sum));
        }
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
            (2, 5, 2, 2, 1, 20, 70),
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
