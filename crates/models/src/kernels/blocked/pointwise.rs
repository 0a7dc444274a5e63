//! 1×1 convolutions (stride 1, no padding) from blocked maps into blocked maps:
//! `y[o, p] = bias[o] + Σ_c weight[o, c] · x[c, p]`, with a residual added and the activation
//! applied as the sums leave the registers.
//!
//! A tile sums a few pixels × a few vectors of output channels over every input channel: each
//! input value is broadcast once to every vector of the tile, each weight vector feeds every
//! pixel. With AVX-512's 32 registers a tile is 7 pixels × 4 blocks (28 sums); with AVX2's 16,
//! 6 pixels × one block (two vectors, 12 sums). A task takes a run of each plane's pixels for
//! every output block, so that it reads and writes whole cache lines, the same run in every
//! layer of a chain; it walks its run in chunks whose input stays in the core's cache while
//! every group of output blocks reads it.

use rayon::prelude::*;

use super::super::aligned::Aligned;
use super::super::vector::{dispatch, load, store};
use super::super::{Activation, ShapeError, interleave_channels};
use super::{BLOCK, BlockedMaps, runs_of, tasks_for};

/// Multiply-adds a sample's layer needs per task before it is split between threads.
const TASK_WORK: usize = 1 << 18;

/// Output blocks whose weights lie side by side in the packed weight: an AVX-512 tile's.
const GROUP: usize = 4;

/// Bytes of input a chunk of pixels reads at most (every input block of its pixels).
const CHUNK_BYTES: usize = 128 << 10;

/// A 1×1 convolution ready to run on blocked maps.
#[derive(Debug, Clone)]
pub(crate) struct BlockedPointwise {
    inputs: usize,
    outputs: usize,
    /// `[⌈outputs / 64⌉, inputs, 64]`: for every input channel, a group of [`GROUP`] blocks'
    /// 64 output channels side by side (zeros past the last), so that a tile's weights for one
    /// input channel are one run.
    weight: Aligned,
    /// `[⌈outputs / 16⌉ · 16]`, zeros past the last channel.
    bias: Vec<f32>,
    activation: Activation,
}

impl BlockedPointwise {
    /// Takes PyTorch's `[outputs, inputs, 1, 1]` weight and the `[outputs]` bias.
    pub(crate) fn new(
        [inputs, outputs]: [usize; 2],
        weight: &[f32],
        bias: &[f32],
        activation: Activation,
    ) -> Result<BlockedPointwise, ShapeError> {
        if inputs == 0 || weight.len() != inputs * outputs || bias.len() != outputs {
            return Err(ShapeError(format!(
                "a 1x1 convolution of {inputs} to {outputs} channels needs {} weights and {outputs} biases, not {} and {}",
                inputs * outputs,
                weight.len(),
                bias.len()
            )));
        }
        let mut padded_bias = bias.to_vec();
        padded_bias.resize(outputs.div_ceil(BLOCK) * BLOCK, 0.0);
        Ok(BlockedPointwise {
            inputs,
            outputs,
            weight: Aligned::copy_of(&interleave_channels(weight, inputs, GROUP * BLOCK)),
            bias: padded_bias,
            activation,
        })
    }

    /// The layer on `x`; with `residual` (maps of the output's shape), the residual is added
    /// to every sum before the activation, and the output is written over it.
    pub(crate) fn forward(
        &self,
        x: &BlockedMaps,
        residual: Option<BlockedMaps>,
    ) -> Result<BlockedMaps, ShapeError> {
        let [batch, channels, h, w] = x.shape();
        let shape = [batch, self.outputs, h, w];
        if channels != self.inputs {
            return Err(ShapeError(format!(
                "a 1x1 convolution of {} channels was handed {channels}",
                self.inputs
            )));
        }
        if let Some(r) = residual.as_ref().filter(|r| r.shape() != shape) {
            return Err(ShapeError(format!(
                "the residual of shape {:?} is not the output's {shape:?}",
                r.shape()
            )));
        }
        let adds = residual.is_some();
        let mut out = residual.unwrap_or_else(|| BlockedMaps::uninit(shape));
        let plane = h * w;
        let tasks = tasks_for(plane * self.inputs * self.outputs, TASK_WORK, plane);
        let band = plane.div_ceil(tasks);
        let sample_in = self.inputs.div_ceil(BLOCK) * BLOCK * plane;
        let jobs: Vec<Band<'_>> = runs_of(&mut out, band)
            .into_iter()
            .map(|(n, first, runs)| Band {
                conv: self,
                x: &x.values()[n * sample_in..][..sample_in],
                plane,
                first,
                runs,
                adds,
            })
            .collect();
        jobs.into_par_iter().for_each(dispatch);
        Ok(out)
    }
}

/// One task: a run of pixels of one sample, every output block.
struct Band<'a> {
    conv: &'a BlockedPointwise,
    /// The sample's input maps.
    x: &'a [f32],
    /// Pixels in a plane.
    plane: usize,
    /// The run's first pixel.
    first: usize,
    /// The run of every output block's plane (its pixels' 16 channels each).
    runs: Vec<&'a mut [f32]>,
    /// Whether the runs hold a residual to add.
    adds: bool,
}

impl pulp::WithSimd for Band<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(mut self, simd: S) {
        let pixels = self.runs.first().map_or(0, |r| r.len() / BLOCK);
        let chunk = (CHUNK_BYTES / (4 * BLOCK * self.conv.inputs.div_ceil(BLOCK))).max(8);
        for start in (0..pixels).step_by(chunk) {
            let end = (start + chunk).min(pixels);
            match S::F32_LANES {
                16 => self.groups::<S, 6, 4>(simd, start, end),
                8 => self.groups::<S, 6, 2>(simd, start, end),
                4 => self.groups::<S, 4, 4>(simd, start, end),
                _ => {
                    let scalar = pulp::Scalar::new();
                    self.groups::<pulp::Scalar, 1, 16>(scalar, start, end)
                }
            }
        }
    }
}

impl Band<'_> {
    /// The run's pixels from `start` to `end` for every output block, `NV` vectors of output
    /// channels (whole blocks) at a time, the blocks left over in a narrower tile.
    #[inline(always)]
    fn groups<S: pulp::Simd, const PX: usize, const NV: usize>(
        &mut self,
        simd: S,
        start: usize,
        end: usize,
    ) {
        let per_group = (NV * S::F32_LANES / BLOCK).max(1);
        let blocks = self.runs.len();
        let mut block = 0;
        while block + per_group <= blocks {
            self.pixels::<S, PX, NV>(simd, block, start, end);
            block += per_group;
        }
        // Only 16-lane groups (four blocks) leave blocks over, one vector each.
        match blocks - block {
            0 => {}
            1 => self.pixels::<S, PX, 1>(simd, block, start, end),
            2 => self.pixels::<S, PX, 2>(simd, block, start, end),
            _ => self.pixels::<S, PX, 3>(simd, block, start, end),
        }
    }

    /// The run's pixels from `start` to `end`, tile by tile, for the output vectors of the
    /// blocks from `block`. A last, partial tile reads the `PX` pixels that end with the run's
    /// last (within the plane), and stores only those not stored yet; one or two pixels left
    /// over go a pixel at a time.
    #[inline(always)]
    fn pixels<S: pulp::Simd, const PX: usize, const NV: usize>(
        &mut self,
        simd: S,
        block: usize,
        start: usize,
        end: usize,
    ) {
        let (first, plane) = (self.first, self.plane);
        let mut p = start;
        while p + PX <= end {
            self.tile::<S, PX, NV>(simd, block, first + p, [0, PX]);
            p += PX;
        }
        if p == end {
            return;
        }
        // One or two pixels left: tiles of one pixel, rather than a whole tile for them.
        if plane >= PX && end - p > 2 {
            let read = (first + end).saturating_sub(PX).min(plane - PX);
            let from = first + p - read;
            self.tile::<S, PX, NV>(simd, block, read, [from, from + end - p]);
        } else {
            for q in p..end {
                self.tile::<S, 1, NV>(simd, block, first + q, [0, 1]);
            }
        }
    }

    /// Sums pixels `read..read + PX` of the plane for `NV` vectors of output channels from
    /// `block`'s first, and stores the tile's pixels `stored[0]..stored[1]`.
    #[inline(always)]
    fn tile<S: pulp::Simd, const PX: usize, const NV: usize>(
        &mut self,
        simd: S,
        block: usize,
        read: usize,
        stored: [usize; 2],
    ) {
        let lanes = S::F32_LANES;
        let conv = self.conv;
        let inputs = conv.inputs;
        let mut sums: [[S::f32s; NV]; PX] = std::array::from_fn(|_| {
            std::array::from_fn(|k| load::<S>(&conv.bias[block * BLOCK + k * lanes..]))
        });
        // The tile's blocks lie in one group of the packed weight, its vectors side by side.
        let row = GROUP * BLOCK;
        let weights = &conv.weight[block / GROUP * inputs * row + block % GROUP * BLOCK..];
        for c in 0..inputs {
            let first = ((c / BLOCK) * self.plane + read) * BLOCK + c % BLOCK;
            let xs = &self.x[first..first + (PX - 1) * BLOCK + 1];
            let ws = &weights[c * row..][..NV * lanes];
            let ws: [S::f32s; NV] = std::array::from_fn(|k| load::<S>(&ws[k * lanes..]));
            for (pixel, sums) in sums.iter_mut().enumerate() {
                let value = simd.splat_f32s(xs[pixel * BLOCK]);
                for (sum, &weight) in sums.iter_mut().zip(&ws) {
                    *sum = simd.mul_add_e_f32s(value, weight, *sum);
                }
            }
        }
        // Every pixel of the tile is looked at (a skipped one rather than a shorter loop), so
        // that the compiler keeps the sums in registers.
        for (pixel, sums) in sums.into_iter().enumerate() {
            if pixel < stored[0] || pixel >= stored[1] {
                continue;
            }
            let at = (read + pixel - self.first) * BLOCK;
            for (k, v) in sums.into_iter().enumerate() {
                let lane = k * lanes;
                let run = &mut self.runs[block + lane / BLOCK][at + lane % BLOCK..];
                let v = if self.adds {
                    simd.add_f32s(v, load::<S>(run))
                } else {
                    v
                };
                store::<S>(run, conv.activation.apply_vector(simd, v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::{ConvCase, ConvShape, VectorPath};
    use super::*;

    #[test]
    fn matches_the_reference_with_padding_channels_residuals_and_odd_maps() {
        for (cin, cout, h, w) in [
            (16, 64, 14, 14),
            (24, 144, 5, 7),
            (96, 24, 3, 3),
            (5, 70, 2, 3),
            (64, 16, 1, 1),
            (32, 96, 9, 9),
        ] {
            let case = ConvCase::new(ConvShape::square(cin, cout, 1, 1, 0, 1), [h, w]);
            let shape = [1, cin, h, w];
            let x = BlockedMaps::from_nchw(&case.x, shape).expect("input");
            {
                let path = VectorPath::current();
                for activation in [Activation::Identity, Activation::Relu6] {
                    let conv =
                        BlockedPointwise::new([cin, cout], &case.weight, &case.bias, activation)
                            .expect("packs");
                    let y = conv.forward(&x, None).expect("runs").to_nchw();
                    case.check(&y, activation, &format!("{path}"));
                }
                // A residual of ones, added before the activation: the bias one higher.
                let ones = vec![1.0; cout * h * w];
                let residual = BlockedMaps::from_nchw(&ones, [1, cout, h, w]).expect("residual");
                let conv =
                    BlockedPointwise::new([cin, cout], &case.weight, &case.bias, Activation::Relu)
                        .expect("packs");
                let y = conv.forward(&x, Some(residual)).expect("runs");
                let raised: Vec<f32> = case.bias.iter().map(|b| b + 1.0).collect();
                let want = ConvCase {
                    bias: raised,
                    ..ConvCase::new(case.s, [h, w])
                };
                want.check(
                    &y.to_nchw(),
                    Activation::Relu,
                    &format!("{path} with a residual"),
                );
                // Padding channels stay zero, so the next layer may read whole blocks.
                let blocks = cout.div_ceil(BLOCK);
                for (i, &v) in y.values().iter().enumerate() {
                    if (i / (h * w * BLOCK) % blocks) * BLOCK + i % BLOCK >= cout {
                        assert_eq!(v, 0.0, "{path}: padding value {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_batch_runs_sample_by_sample_and_bad_shapes_are_refused() {
        let case = ConvCase::new(ConvShape::square(8, 20, 1, 1, 0, 1), [4, 4]);
        let conv = BlockedPointwise::new([8, 20], &case.weight, &case.bias, Activation::Identity)
            .expect("packs");
        let two: Vec<f32> = case.x.iter().chain(&case.x).copied().collect();
        let y = conv
            .forward(
                &BlockedMaps::from_nchw(&two, [2, 8, 4, 4]).expect("x"),
                None,
            )
            .expect("runs");
        let y = y.to_nchw();
        case.check(&y[..20 * 16], Activation::Identity, "sample 0");
        case.check(&y[20 * 16..], Activation::Identity, "sample 1");
        let wrong = BlockedMaps::from_nchw(&[0.0; 9 * 16], [1, 9, 4, 4]).expect("x");
        assert!(conv.forward(&wrong, None).is_err());
        let x = BlockedMaps::from_nchw(&case.x, [1, 8, 4, 4]).expect("x");
        let residual = BlockedMaps::from_nchw(&[0.0; 20 * 9], [1, 20, 3, 3]).expect("r");
        assert!(conv.forward(&x, Some(residual)).is_err());
        assert!(
            BlockedPointwise::new([8, 20], &case.weight[1..], &case.bias, Activation::Identity)
                .is_err()
        );
    }
}
