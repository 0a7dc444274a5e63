//! Direct convolution for layers with few input channels (an RGB stem): every input channel is
//! copied once into a padded, phase-split plane ([`PaddedPlane`]), where each kernel tap reads
//! one contiguous run for all of the output pixels; [`CHANNELS`] output channels at a time are
//! then multiply-added tap by tap, the input vectors loaded once for all of them, in sums held
//! in registers. An im2col matrix of such a layer would be `in · kh · kw` times the input (147
//! times for a 7×7 RGB stem), written and read again by the product.

use rayon::prelude::*;

use super::plane::{PaddedPlane, VectorBlocks, in_blocks, store_block};
use super::scratch::Scratch;
use super::vector::{dispatch, load};
use super::{Activation, ConvShape, Operands, ShapeError, interleave_channels};

/// Output channels computed together: each input vector loaded feeds this many sums.
const CHANNELS: usize = 4;

/// Output vectors one pass over the taps computes per output channel at most, where the CPU
/// has 32 vector registers (AVX-512): with [`CHANNELS`] channels, 16 sums in registers. With 16
/// registers (AVX2) half as many, so that the sums, the inputs and a weight all fit.
const VECTORS: usize = 4;

/// PyTorch's `[out, in, kh, kw]` weight as `[⌈out / CHANNELS⌉, in, kh · kw, CHANNELS]`: a
/// tap's weights for a block of output channels side by side (zeros past the last channel).
pub(crate) fn pack(s: &ConvShape, weight: &[f32]) -> Vec<f32> {
    interleave_channels(weight, s.patch_len(), CHANNELS)
}

/// One sample: `y` (`[out, ho, wo]`) from `sample` (`[in, h, w]`), with the weight from
/// [`pack`], the bias and the activation. Blocks of output channels go to threads.
pub(crate) fn forward(
    s: &ConvShape,
    Operands {
        weight,
        bias,
        activation,
        residual,
    }: Operands<'_>,
    sample: &[f32],
    [h, w]: [usize; 2],
    [ho, wo]: [usize; 2],
    y: &mut [f32],
) -> Result<(), ShapeError> {
    if residual {
        return Err(ShapeError(
            "the direct kernel adds no residual: add it after the convolution".into(),
        ));
    }
    let (cin, taps) = (s.in_channels, s.kernel[0] * s.kernel[1]);
    let padded = PaddedPlane::new(&s.window(), [h, w], [ho, wo])?;
    let block_weights = cin * taps * CHANNELS;
    if sample.len() != cin * h * w
        || y.len() != s.out_channels * ho * wo
        || weight.len() != s.out_channels.div_ceil(CHANNELS) * block_weights
        || bias.len() != s.out_channels
    {
        return Err(ShapeError(format!(
            "a direct convolution of {cin} to {} channels cannot take {} inputs, {} weights and \
             {} biases into {} outputs",
            s.out_channels,
            sample.len(),
            weight.len(),
            bias.len(),
            y.len()
        )));
    }
    let copy_len = padded.copy_len();
    let mut copies = Scratch::take(cin * copy_len);
    copies
        .par_chunks_mut(copy_len)
        .zip(sample.par_chunks(h * w))
        .for_each(|(copy, plane)| {
            dispatch(Fill {
                padded: &padded,
                plane,
                copy,
            })
        });
    let flat_len = padded.flat_scratch_len();
    y.par_chunks_mut(CHANNELS * ho * wo)
        .zip(weight.par_chunks(block_weights))
        .zip(bias.par_chunks(CHANNELS))
        .for_each_init(
            || Scratch::take(CHANNELS * flat_len),
            |flat, ((ys, weights), bias)| {
                let mut block_bias = [0.0; CHANNELS];
                block_bias[..bias.len()].copy_from_slice(bias);
                dispatch(Block {
                    padded: &padded,
                    sums: Sums {
                        copies: &copies,
                        copy_len,
                        taps: padded.tap_starts(),
                        weights,
                        bias: block_bias,
                        activation,
                        flat,
                        flat_len,
                    },
                    ys,
                })
            },
        );
    Ok(())
}

/// One input plane copied into its padded layout (`copy`, zeroed first), in parallel with the
/// others: a stem's planes are large, and their copy is a sizeable part of the layer.
struct Fill<'a> {
    padded: &'a PaddedPlane,
    plane: &'a [f32],
    copy: &'a mut [f32],
}

impl pulp::WithSimd for Fill<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        self.copy.fill(0.0);
        self.padded.fill(simd, self.plane, self.copy, 0.0);
    }
}

/// One block of up to [`CHANNELS`] output planes, `ys`, computed into the flat buffers of
/// `sums` and copied out.
struct Block<'a> {
    padded: &'a PaddedPlane,
    sums: Sums<'a>,
    ys: &'a mut [f32],
}

impl pulp::WithSimd for Block<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(mut self, simd: S) {
        in_blocks(simd, self.padded.vectors::<S>(), &mut self.sums);
        let [ho, wo] = self.padded.output();
        let flat_len = self.sums.flat_len;
        for (plane, flat) in self
            .ys
            .chunks_exact_mut(ho * wo)
            .zip(self.sums.flat.chunks_exact(flat_len))
        {
            self.padded.copy_out(simd, flat, plane);
        }
    }
}

/// A block of output channels' sums: every input channel's `copies` (each `copy_len` values),
/// read at the `taps`' starts, times the block's `weights` (`[in, taps, CHANNELS]`), plus
/// `bias`, through `activation`, into `flat` (one plane of `flat_len` per channel).
struct Sums<'a> {
    copies: &'a [f32],
    copy_len: usize,
    taps: &'a [usize],
    weights: &'a [f32],
    bias: [f32; CHANNELS],
    activation: Activation,
    flat: &'a mut [f32],
    flat_len: usize,
}

impl VectorBlocks for Sums<'_> {
    #[inline(always)]
    fn block<S: pulp::Simd, const B: usize>(&mut self, simd: S, first: usize) {
        // More sums than registers: the block in parts.
        if S::REGISTER_COUNT < 32 && B > VECTORS / 2 {
            for part in (0..B).step_by(VECTORS / 2) {
                self.block::<S, { VECTORS / 2 }>(simd, first + part);
            }
            return;
        }
        if B > VECTORS {
            for part in (0..B).step_by(VECTORS) {
                self.block::<S, VECTORS>(simd, first + part);
            }
            return;
        }
        let lanes = S::F32_LANES;
        let at = first * lanes;
        let mut acc = self.bias.map(|b| [simd.splat_f32s(b); B]);
        let per_channel = self.taps.len() * CHANNELS;
        let inputs = self.copies.chunks_exact(self.copy_len);
        for (copy, weights) in inputs.zip(self.weights.chunks_exact(per_channel)) {
            for (&start, tap) in self.taps.iter().zip(weights.chunks_exact(CHANNELS)) {
                let values = &copy[start + at..start + at + B * lanes];
                let values: [S::f32s; B] = std::array::from_fn(|b| load::<S>(&values[b * lanes..]));
                for (sums, &weight) in acc.iter_mut().zip(tap) {
                    let weight = simd.splat_f32s(weight);
                    for (sum, &value) in sums.iter_mut().zip(&values) {
                        *sum = simd.mul_add_e_f32s(weight, value, *sum);
                    }
                }
            }
        }
        for (sums, flat) in acc
            .into_iter()
            .zip(self.flat.chunks_exact_mut(self.flat_len))
        {
            store_block(simd, sums, self.activation, &mut flat[at..at + B * lanes]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::ConvCase;

    #[test]
    fn every_output_channel_sums_every_input_channel_under_the_window() {
        // (in, out, kernel, stride, padding, dilation, h, w): an RGB stem's shape at small
        // size, an output channel count that leaves a partial block, strides 1–4, dilation.
        for (cin, cout, k, stride, padding, dilation, h, w) in [
            (3, 8, 7, 2, 3, 1, 20, 23),
            (1, 6, 5, 1, 0, 1, 12, 12),
            (6, 5, 3, 1, 1, 2, 9, 40),
            (3, 4, 11, 4, 2, 1, 31, 31),
        ] {
            let s = ConvShape::square(cin, cout, k, stride, padding, dilation);
            let case = ConvCase::new(s, [h, w]);
            let [ho, wo] = case.out_hw();
            let mut y = vec![0.0; cout * ho * wo];
            let packed = pack(&case.s, &case.weight);
            let activation = Activation::Relu;
            let operands = Operands {
                weight: &packed,
                bias: &case.bias,
                activation,
                residual: false,
            };
            forward(&case.s, operands, &case.x, [h, w], [ho, wo], &mut y).expect("runs");
            case.check(&y, activation, "direct");
        }
    }

    #[test]
    fn mismatched_operands_are_refused() {
        let s = ConvShape {
            in_channels: 3,
            out_channels: 4,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
        };
        let packed = pack(&s, &[0.0; 4 * 3 * 9]);
        let mut y = vec![0.0; 4 * 16];
        let bias = [0.0; 4];
        let run = |x: &[f32], y: &mut [f32]| {
            let operands = Operands {
                weight: &packed,
                bias: &bias,
                activation: Activation::Identity,
                residual: false,
            };
            forward(&s, operands, x, [4, 4], [4, 4], y)
        };
        assert!(run(&[0.0; 3 * 16], &mut y).is_ok());
        assert!(run(&[0.0; 2 * 16], &mut y).is_err());
        assert!(run(&[0.0; 3 * 16], &mut y[..60]).is_err());
    }
}
