//! 3×3 depthwise convolutions (any stride and padding, no dilation) from blocked maps into
//! blocked maps, with the bias and the activation applied before each output is stored.
//!
//! A block's 16 channels lie side by side in every pixel, so each output vector is nine
//! multiply-adds of the nine taps' input vectors by the nine weight vectors, held in registers
//! while the task walks its run of output pixels; only the taps of pixels on the map's border
//! are checked against its edges. Tasks take runs of output pixels of every block, as the 1×1
//! layers around them do ([`pointwise`](super::pointwise)).

use rayon::prelude::*;

use super::super::aligned::Aligned;
use super::super::vector::{dispatch, load, store};
use super::super::{Activation, ConvShape, ShapeError, interleave_channels};
use super::{BLOCK, BlockedMaps, runs_of, tasks_for};

/// Taps of a 3×3 filter.
const TAPS: usize = 9;

/// Multiply-adds a sample's layer needs per task before it is split between threads.
const TASK_WORK: usize = 1 << 16;

/// A 3×3 depthwise convolution ready to run on blocked maps.
#[derive(Debug, Clone)]
pub(crate) struct BlockedDepthwise {
    channels: usize,
    stride: [usize; 2],
    padding: [usize; 2],
    /// `[⌈channels / 16⌉, 9, 16]`: per tap, a block's 16 filters side by side.
    weight: Aligned,
    /// `[⌈channels / 16⌉ · 16]`, zeros past the last channel.
    bias: Vec<f32>,
    activation: Activation,
}

impl BlockedDepthwise {
    /// Whether a depthwise convolution of `shape` runs on blocked maps: a 3×3 filter without
    /// dilation.
    pub(crate) fn suits(shape: &ConvShape) -> bool {
        shape.kernel == [3, 3]
            && shape.dilation == [1, 1]
            && shape.in_channels == shape.out_channels
    }

    /// Takes PyTorch's `[channels, 1, 3, 3]` weight and the `[channels]` bias.
    pub(crate) fn new(
        shape: ConvShape,
        weight: &[f32],
        bias: &[f32],
        activation: Activation,
    ) -> Result<BlockedDepthwise, ShapeError> {
        let channels = shape.out_channels;
        if !BlockedDepthwise::suits(&shape)
            || weight.len() != channels * TAPS
            || bias.len() != channels
        {
            return Err(ShapeError(format!(
                "a blocked depthwise convolution takes a 3x3 filter per channel and a bias, not {shape:?} with {} weights and {} biases",
                weight.len(),
                bias.len()
            )));
        }
        let mut padded_bias = bias.to_vec();
        padded_bias.resize(channels.div_ceil(BLOCK) * BLOCK, 0.0);
        Ok(BlockedDepthwise {
            channels,
            stride: shape.stride,
            padding: shape.padding,
            weight: Aligned::copy_of(&interleave_channels(weight, TAPS, BLOCK)),
            bias: padded_bias,
            activation,
        })
    }

    /// Convolves `x` into maps of `[ho, wo]`.
    pub(crate) fn forward(
        &self,
        x: &BlockedMaps,
        [ho, wo]: [usize; 2],
    ) -> Result<BlockedMaps, ShapeError> {
        let [batch, channels, h, w] = x.shape();
        let fits = |len: usize, i: usize| {
            (len + 2 * self.padding[i])
                .checked_sub(3)
                .map(|room| room / self.stride[i] + 1)
        };
        if channels != self.channels || fits(h, 0) != Some(ho) || fits(w, 1) != Some(wo) {
            return Err(ShapeError(format!(
                "a 3x3 depthwise convolution of {} channels, stride {:?} and padding {:?} makes no {ho}x{wo} maps from {channels} channels of {h}x{w}",
                self.channels, self.stride, self.padding
            )));
        }
        let mut out = BlockedMaps::uninit([batch, channels, ho, wo]);
        let (plane, out_plane) = (h * w, ho * wo);
        let blocks = channels.div_ceil(BLOCK);
        let tasks = tasks_for(out_plane * blocks * BLOCK * TAPS, TASK_WORK, out_plane);
        let band = out_plane.div_ceil(tasks);
        let sample_in = blocks * BLOCK * plane;
        let jobs: Vec<Band<'_>> = runs_of(&mut out, band)
            .into_iter()
            .map(|(n, first, runs)| Band {
                conv: self,
                x: &x.values()[n * sample_in..][..sample_in],
                hw: [h, w],
                wo,
                first,
                runs,
            })
            .collect();
        jobs.into_par_iter().for_each(dispatch);
        Ok(out)
    }
}

/// One task: a run of output pixels of one sample, every block.
struct Band<'a> {
    conv: &'a BlockedDepthwise,
    /// The sample's input maps.
    x: &'a [f32],
    /// Input height and width.
    hw: [usize; 2],
    /// Output width.
    wo: usize,
    /// The run's first output pixel.
    first: usize,
    /// The run of every block's output plane.
    runs: Vec<&'a mut [f32]>,
}

/// Output pixels of one row computed together where all their taps lie inside the input: four
/// independent sums, so that the nine multiply-adds of one do not wait on each other.
const GROUP: usize = 4;

impl pulp::WithSimd for Band<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let lanes = S::F32_LANES;
        let conv = self.conv;
        let [h, w] = self.hw;
        let [sy, sx] = conv.stride;
        let [py, px] = conv.padding;
        let wo = self.wo;
        // A tap's offset from the window's top-left input value.
        let offsets: [usize; TAPS] = std::array::from_fn(|t| ((t / 3) * w + t % 3) * BLOCK);
        // The output columns whose three taps lie inside the input's columns: [left, right).
        let left = px.div_ceil(sx);
        let right = (w + px)
            .checked_sub(3)
            .map_or(0, |room| room / sx + 1)
            .min(wo);
        let pixels = self.runs.first().map_or(0, |run| run.len() / BLOCK);
        for (block, run) in self.runs.into_iter().enumerate() {
            let x = &self.x[block * h * w * BLOCK..][..h * w * BLOCK];
            for lane in (0..BLOCK).step_by(lanes) {
                let at = block * BLOCK + lane;
                let weights: [S::f32s; TAPS] = std::array::from_fn(|t| {
                    load::<S>(&conv.weight[(block * TAPS + t) * BLOCK + lane..])
                });
                let bias = load::<S>(&conv.bias[at..]);
                let finish = |sum| conv.activation.apply_vector(simd, sum);
                // One output on the map's border: only the taps inside the input, their rows
                // and columns found once rather than checked tap by tap.
                let edge = |oy: usize, ox: usize| {
                    let (top, left) = (oy * sy, ox * sx);
                    let taps = |start: usize, pad: usize, len: usize| {
                        pad.saturating_sub(start)..(len + pad).saturating_sub(start).min(3)
                    };
                    let mut sum = bias;
                    for ty in taps(top, py, h) {
                        let row = (top + ty - py) * w;
                        for tx in taps(left, px, w) {
                            let v = load::<S>(&x[(row + left + tx - px) * BLOCK + lane..]);
                            sum = simd.mul_add_f32s(v, weights[ty * 3 + tx], sum);
                        }
                    }
                    finish(sum)
                };
                // The run, a row of output pixels at a time.
                let mut q = 0;
                while q < pixels {
                    let pixel = self.first + q;
                    let (oy, first) = (pixel / wo, pixel % wo);
                    let end = wo.min(first + pixels - q);
                    let out = &mut run[q * BLOCK..(q + end - first) * BLOCK];
                    let top = oy * sy;
                    let rows_inside = top >= py && top + 3 <= h + py;
                    let (lo, hi) = if rows_inside {
                        let lo = left.clamp(first, end);
                        (lo, right.clamp(lo, end))
                    } else {
                        (end, end)
                    };
                    for ox in (first..lo).chain(hi..end) {
                        store::<S>(&mut out[(ox - first) * BLOCK + lane..], edge(oy, ox));
                    }
                    let row = if rows_inside { (top - py) * w } else { 0 };
                    let mut ox = lo;
                    while ox < hi {
                        let count = GROUP.min(hi - ox);
                        let bases: [usize; GROUP] = std::array::from_fn(|k| {
                            (row + (ox + k.min(count - 1)) * sx - px) * BLOCK + lane
                        });
                        let mut sums = [bias; GROUP];
                        for (&offset, &weight) in offsets.iter().zip(&weights) {
                            for (sum, &base) in sums.iter_mut().zip(&bases) {
                                let v = load::<S>(&x[base + offset..]);
                                *sum = simd.mul_add_f32s(v, weight, *sum);
                            }
                        }
                        for (k, &sum) in sums.iter().enumerate().take(count) {
                            store::<S>(&mut out[(ox + k - first) * BLOCK + lane..], finish(sum));
                        }
                        ox += count;
                    }
                    q += end - first;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::{ConvCase, VectorPath};
    use super::*;

    #[test]
    fn matches_the_reference_at_both_strides() {
        // Three threads: the larger layers are split into runs that start part-way along a row.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("pool");
        pool.install(check_against_the_reference);
    }

    fn check_against_the_reference() {
        let shapes = [
            (192, 13, 11, 1, 1),
            (320, 13, 13, 2, 1),
            (16, 14, 14, 1, 1),
            (24, 7, 5, 1, 1),
            (40, 9, 9, 2, 1),
            (32, 8, 8, 2, 1),
            (5, 3, 3, 1, 0),
            (17, 1, 1, 1, 1),
            (20, 6, 11, 2, 0),
        ];
        for (channels, h, w, stride, padding) in shapes {
            let mut s = ConvShape::square(1, channels, 3, stride, padding, 1);
            let case = ConvCase::new(s, [h, w]);
            s.in_channels = channels;
            // One filter per channel: the case's single input channel seen once per channel.
            let x_all: Vec<f32> = (0..channels)
                .flat_map(|c| case.x.iter().map(move |v| v + c as f32))
                .collect();
            let x = BlockedMaps::from_nchw(&x_all, [1, channels, h, w]).expect("input");
            let [ho, wo] = case.out_hw();
            {
                let path = VectorPath::current();
                let conv = BlockedDepthwise::new(s, &case.weight, &case.bias, Activation::Relu6)
                    .expect("packs");
                let y = conv.forward(&x, [ho, wo]).expect("runs").to_nchw();
                for c in 0..channels {
                    let one = ConvCase {
                        s: ConvShape::square(1, 1, 3, stride, padding, 1),
                        hw: [h, w],
                        x: x_all[c * h * w..][..h * w].to_vec(),
                        weight: case.weight[c * TAPS..][..TAPS].to_vec(),
                        bias: vec![case.bias[c]],
                    };
                    one.check(
                        &y[c * ho * wo..][..ho * wo],
                        Activation::Relu6,
                        &format!("{path}, channel {c} of {channels}"),
                    );
                }
            }
        }
    }

    #[test]
    fn other_filters_and_wrong_maps_are_refused() {
        let dilated = ConvShape::square(8, 8, 3, 1, 2, 2);
        assert!(!BlockedDepthwise::suits(&dilated));
        assert!(
            BlockedDepthwise::new(dilated, &[0.0; 72], &[0.0; 8], Activation::Identity).is_err()
        );
        let five = ConvShape::square(8, 8, 5, 1, 2, 1);
        assert!(!BlockedDepthwise::suits(&five));
        let s = ConvShape::square(8, 8, 3, 1, 1, 1);
        let conv =
            BlockedDepthwise::new(s, &[0.5; 72], &[0.0; 8], Activation::Identity).expect("packs");
        let x = BlockedMaps::from_nchw(&[1.0; 8 * 16], [1, 8, 4, 4]).expect("x");
        assert!(conv.forward(&x, [3, 3]).is_err());
        assert!(conv.forward(&x, [4, 4]).is_ok());
        let nine = BlockedMaps::from_nchw(&[1.0; 9 * 16], [1, 9, 4, 4]).expect("x");
        assert!(conv.forward(&nine, [4, 4]).is_err());
    }
}
