//! The channel-blocked layout of MobileNetV2's chains of depthwise and 1×1 convolutions
//! ([`BlockedMaps`]): each sample's channels in blocks of [`BLOCK`], a block's plane stored pixel
//! after pixel with the block's channels side by side (`[N, ⌈C / 16⌉, H · W, 16]`, zeros in the
//! channels past the last). A pixel's block is one 64-byte cache line.
//!
//! Why: on small maps, NCHW planes (196 values on 14², 12.25 cache lines) split between two
//! threads share cache lines at every boundary, and a 1×1 layer split by pixels and a depthwise
//! layer split by channels hand every line from one core to the other; in this layout a thread
//! that takes a run of pixels reads and writes whole lines, the same ones from layer to layer,
//! and the kernels need no edge handling across a plane's rows ([`pointwise`], [`depthwise`]).
//! See `docs/EXPERIMENTS.md`, "Edge speed against ONNX Runtime". The executor converts at the
//! chain's ends (`exec`); a cut's tensors stay NCHW.

use rayon::prelude::*;

use super::aligned::Aligned;
use super::recycled;
use super::transpose::{Planes, channels_last};
use super::{ShapeError, bands_of_planes};

mod depthwise;
mod pointwise;

pub(crate) use depthwise::BlockedDepthwise;
pub(crate) use pointwise::BlockedPointwise;

/// Channels in a block: a cache line of `f32`, an AVX-512 vector, two of AVX2.
pub(crate) const BLOCK: usize = 16;

/// A batch of feature maps in the channel-blocked layout, starting on a cache line.
#[derive(Debug, Clone)]
pub(crate) struct BlockedMaps {
    data: Aligned,
    /// Batch, channels (without the padding), height, width.
    shape: [usize; 4],
}

impl BlockedMaps {
    /// Maps of `shape` (`[batch, channels, h, w]`) in a recycled buffer whose values are
    /// whatever its last user left: the caller writes every one, the padding channels' zeros
    /// included.
    pub(crate) fn uninit(shape: [usize; 4]) -> BlockedMaps {
        let len = blocked_len(shape);
        BlockedMaps {
            data: Aligned::in_buffer(recycled::take(len), len),
            shape,
        }
    }

    /// NCHW maps `x` of `shape` in the blocked layout.
    pub(crate) fn from_nchw(x: &[f32], shape: [usize; 4]) -> Result<BlockedMaps, ShapeError> {
        let [batch, channels, h, w] = shape;
        let plane = h * w;
        if x.len() != batch * channels * plane {
            return Err(ShapeError(format!(
                "{} values are no NCHW maps of shape {shape:?}",
                x.len()
            )));
        }
        let mut maps = BlockedMaps::uninit(shape);
        let blocks = channels.div_ceil(BLOCK);
        maps.data
            .par_chunks_mut(plane * BLOCK)
            .enumerate()
            .for_each(|(at, dst)| {
                let (sample, block) = (at / blocks, at % blocks);
                let first = sample * channels + block * BLOCK;
                let count = BLOCK.min(channels - block * BLOCK);
                let src = &x[first * plane..(first + count) * plane];
                if count == BLOCK {
                    let planes = Planes {
                        src,
                        plane,
                        at: 0,
                        pixels: plane,
                        channels: BLOCK,
                    };
                    channels_last(&planes, dst);
                } else {
                    dst.fill(0.0);
                    for (c, values) in src.chunks_exact(plane).enumerate() {
                        for (p, &v) in values.iter().enumerate() {
                            dst[p * BLOCK + c] = v;
                        }
                    }
                }
            });
        Ok(maps)
    }

    /// The maps in NCHW order, in a recycled buffer.
    pub(crate) fn to_nchw(&self) -> Vec<f32> {
        let [batch, channels, h, w] = self.shape;
        let plane = h * w;
        let mut out = recycled::take(batch * channels * plane);
        // Each block's channels are a run of whole planes of the output.
        let runs: Vec<&mut [f32]> = out
            .chunks_mut(channels * plane)
            .flat_map(|sample| sample.chunks_mut(BLOCK * plane))
            .collect();
        runs.into_par_iter().enumerate().for_each(|(at, dst)| {
            let src = &self.data[at * plane * BLOCK..][..plane * BLOCK];
            for (c, values) in dst.chunks_exact_mut(plane).enumerate() {
                for (p, v) in values.iter_mut().enumerate() {
                    *v = src[p * BLOCK + c];
                }
            }
        });
        out
    }

    /// Every channel's mean over its map (global average pooling), `[batch, channels]` in
    /// order.
    pub(crate) fn plane_means(&self) -> Vec<f32> {
        let [batch, channels, h, w] = self.shape;
        let plane = h * w;
        let blocks = channels.div_ceil(BLOCK);
        let mut means = Vec::with_capacity(batch * channels);
        for (at, values) in self.data.chunks_exact(plane * BLOCK).enumerate() {
            let mut sums = [0.0f32; BLOCK];
            for pixel in values.chunks_exact(BLOCK) {
                sums.iter_mut().zip(pixel).for_each(|(s, v)| *s += v);
            }
            let count = BLOCK.min(channels - at % blocks * BLOCK);
            means.extend(sums[..count].iter().map(|s| s / plane as f32));
        }
        means
    }

    /// Batch, channels, height and width.
    pub(crate) fn shape(&self) -> [usize; 4] {
        self.shape
    }

    /// The values, every sample's blocks in order.
    pub(crate) fn values(&self) -> &[f32] {
        &self.data
    }

    /// Gives the buffer to the kernels' output pool.
    pub(crate) fn recycle(self) {
        recycled::give_back(self.data.into_buffer());
    }
}

/// The output `out` cut into tasks of runs of `band` pixels: for each task, its sample, the
/// run's first pixel, and the run of every block's plane.
fn runs_of(out: &mut BlockedMaps, band: usize) -> Vec<(usize, usize, Vec<&mut [f32]>)> {
    let [_, channels, h, w] = out.shape;
    let plane = h * w;
    let sample = channels.div_ceil(BLOCK) * BLOCK * plane;
    let mut tasks = Vec::new();
    for (n, y) in out.data.chunks_mut(sample.max(1)).enumerate() {
        let bands = bands_of_planes(y, plane * BLOCK, band * BLOCK);
        tasks.extend(
            bands
                .into_iter()
                .enumerate()
                .map(|(b, runs)| (n, b * band, runs)),
        );
    }
    tasks
}

/// Values of maps of `shape` in the blocked layout.
fn blocked_len([batch, channels, h, w]: [usize; 4]) -> usize {
    batch * channels.div_ceil(BLOCK) * BLOCK * h * w
}

/// How many tasks a layer of `work` multiply-adds a sample is cut into: one per thread of the
/// pool in effect, but none under `least` multiply-adds, and no more than `pixels`.
fn tasks_for(work: usize, least: usize, pixels: usize) -> usize {
    rayon::current_num_threads()
        .min(work / least.max(1))
        .min(pixels)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nchw_round_trips_with_zeros_in_the_padding_channels() {
        for (batch, channels, h, w) in [(1, 16, 3, 5), (2, 24, 4, 4), (1, 5, 7, 7), (3, 33, 2, 1)] {
            let shape = [batch, channels, h, w];
            let x: Vec<f32> = (0..batch * channels * h * w)
                .map(|i| i as f32 + 1.0)
                .collect();
            let maps = BlockedMaps::from_nchw(&x, shape).expect("converts");
            let blocks = channels.div_ceil(BLOCK);
            assert_eq!(maps.values().len(), batch * blocks * BLOCK * h * w);
            for n in 0..batch {
                for c in 0..blocks * BLOCK {
                    for p in 0..h * w {
                        let got = maps.values()
                            [((n * blocks + c / BLOCK) * h * w + p) * BLOCK + c % BLOCK];
                        let want = if c < channels {
                            x[(n * channels + c) * h * w + p]
                        } else {
                            0.0
                        };
                        assert_eq!(got, want, "{shape:?} sample {n} channel {c} pixel {p}");
                    }
                }
            }
            assert_eq!(maps.values().as_ptr() as usize % 64, 0);
            assert_eq!(maps.to_nchw(), x, "{shape:?}");
            let means = maps.plane_means();
            for (i, mean) in means.iter().enumerate() {
                let plane = &x[i * h * w..][..h * w];
                let want = plane.iter().sum::<f32>() / (h * w) as f32;
                assert!(
                    (mean - want).abs() <= 1e-5 * want.abs(),
                    "{shape:?} mean {i}"
                );
            }
            assert_eq!(means.len(), batch * channels);
        }
        assert!(BlockedMaps::from_nchw(&[0.0; 5], [1, 2, 2, 2]).is_err());
    }
}
