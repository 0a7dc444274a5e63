//! Direct convolution for layers with few input channels (an RGB stem): every input channel is
//! copied once into a padded, phase-split plane ([`PaddedPlane`]), where each kernel tap reads
//! one contiguous run for the outputs of a row. For a tile of outputs along a row (3 vectors
//! on AVX-512, 2 on AVX2; running on into the next row where a row's outputs do not fill whole
//! vectors), each tap's run of every input channel is copied into a panel of
//! `in · kh · kw` rows, which stays in the core's first-level cache, and the 1×1 kernel's
//! register tiles ([`Tiles`]: 8 output channels, 6 on AVX2, × the tile's vectors) sum the
//! panel's rows times the weight, packed as the 1×1 kernel's, into the NCHW output with the
//! bias and the activation. An im2col matrix of the whole layer would be `in · kh · kw` times the input (147
//! times for a 7×7 RGB stem), written and read again from memory by the product; the panel's
//! loads start on a cache line, where the taps of a phase-split plane do not. Each tile asks
//! for every output line of the tile [`AHEAD_TILES`] ahead before it computes.

use rayon::prelude::*;

use super::plane::{PaddedPlane, gather};
use super::pointwise::{CHANNELS, Tiles, VECTORS, VECTORS_16, tile_channels};
use super::prefetch::{LINE, prefetch};
use super::scratch::Scratch;
use super::vector::{copy_row, dispatch};
use super::{Activation, ConvShape, Operands, ShapeError, bands_of_planes, interleave_channels};

/// Output rows a task takes at least, a run of every output channel's rows.
const TASK_ROWS: usize = 4;

/// Tiles ahead whose output lines a tile asks the CPU for (in every output plane) before it
/// computes: a stem's output (1.6–3.2 MB) is written where the pass before left other data,
/// and its tiles otherwise wait on every line they store. Machine D, one thread, inside whole
/// passes, medians of 4–6 alternating processes: on AVX2 MobileNetV2's stem 0.54 → 0.36 ms,
/// ResNet-18's 3.12 → 2.63, GoogLeNet's 2.91 → 2.54, AlexNet's 1.87 → 1.72; on AVX-512
/// MobileNetV2's 0.44 → 0.39, ResNet-18's 2.58 either way. Asking for every line of an
/// AVX-512 tile, not its first and last only: machine A, in-pass, least of 4 alternating
/// processes, one thread, ResNet-18's stem 1.85 → 1.72 ms, GoogLeNet's 1.82 → 1.66; two
/// threads 1.15 → 1.08 and 1.19 → 1.14, MobileNetV2's 0.23 → 0.21; AlexNet's unchanged.
const AHEAD_TILES: usize = 2;

/// PyTorch's `[out, in, kh, kw]` weight as `[⌈out / CHANNELS⌉, in · kh · kw, CHANNELS]`: a
/// block of output channels' weights side by side, row by row of the panel (zeros past the
/// last channel).
pub(crate) fn pack(s: &ConvShape, weight: &[f32]) -> Vec<f32> {
    interleave_channels(weight, s.patch_len(), CHANNELS)
}

/// One sample: `y` (`[out, ho, wo]`) from `sample` (`[in, h, w]`), with the weight from
/// [`pack`], the bias and the activation. Runs of output rows go to threads.
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
    let (cin, cout) = (s.in_channels, s.out_channels);
    let padded = PaddedPlane::new(&s.window(), [h, w], [ho, wo])?;
    let k = s.patch_len();
    if sample.len() != cin * h * w
        || y.len() != cout * ho * wo
        || weight.len() != cout.div_ceil(CHANNELS) * k * CHANNELS
        || bias.len() != cout
    {
        return Err(ShapeError(format!(
            "a direct convolution of {cin} to {cout} channels cannot take {} inputs, {} weights \
             and {} biases into {} outputs",
            sample.len(),
            weight.len(),
            bias.len(),
            y.len()
        )));
    }
    let copy_len = padded.copy_len();
    let mut copies = Scratch::take(cin * copy_len);
    // Where columns are split, each phase row of each plane is a task of its own (a stem's
    // three planes at stride 2 make six, which two threads share evenly); else each plane.
    let part = if padded.splits_columns() {
        padded.phase_row_len()
    } else {
        padded.len()
    };
    let mut parts = Vec::new();
    for (copy, plane) in copies.chunks_mut(copy_len).zip(sample.chunks(h * w)) {
        let (body, slack) = copy.split_at_mut(padded.len());
        slack.fill(0.0);
        parts.extend(body.chunks_mut(part).enumerate().map(|(qy, copy)| Fill {
            padded: &padded,
            plane,
            qy,
            copy,
        }));
    }
    parts.into_par_iter().for_each(dispatch);
    // Each task's run of rows of every output plane.
    let threads = rayon::current_num_threads().max(1);
    let per_task = ho.div_ceil(4 * threads).max(TASK_ROWS).min(ho.max(1));
    bands_of_planes(y, ho * wo, per_task * wo)
        .into_par_iter()
        .enumerate()
        .for_each(|(task, mut planes)| {
            dispatch(Rows {
                padded: &padded,
                copies: &copies,
                copy_len,
                weight,
                bias,
                activation,
                first_row: task * per_task,
                planes: &mut planes,
            })
        });
    Ok(())
}

/// One input plane's padded copy (`copy`, zeroed first), or where columns are split, one
/// phase row `qy` of it (its padding written with its values, no zeroing first), in parallel
/// with the others: a stem's planes are large, and their copy is a sizeable part of the layer.
struct Fill<'a> {
    padded: &'a PaddedPlane,
    plane: &'a [f32],
    qy: usize,
    copy: &'a mut [f32],
}

impl pulp::WithSimd for Fill<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        if self.padded.splits_columns() {
            self.padded
                .fill_phase_row(self.qy, self.plane, self.copy, 0.0);
        } else {
            self.copy.fill(0.0);
            self.padded.fill(simd, self.plane, self.copy, 0.0);
        }
    }
}

/// A task: output rows `first_row..` of every output channel (`planes`, each that run of its
/// plane), from every input channel's padded `copies` (each `copy_len` values).
struct Rows<'a, 'p> {
    padded: &'a PaddedPlane,
    copies: &'a [f32],
    copy_len: usize,
    weight: &'a [f32],
    bias: &'a [f32],
    activation: Activation,
    first_row: usize,
    planes: &'p mut [&'a mut [f32]],
}

impl pulp::WithSimd for Rows<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        if S::REGISTER_COUNT < 32 {
            self.run::<S, VECTORS_16>(simd);
        } else {
            self.run::<S, VECTORS>(simd);
        }
    }
}

impl Rows<'_, '_> {
    /// The task, in tiles of `V` vectors of outputs. Where a row's outputs fill whole vectors,
    /// a row's last tiles may be narrower (its last vectors shared evenly); where they do not (AlexNet's 55), tiles run on into the
    /// next row, each panel row copied from the two rows' runs: AlexNet's stem, machine D, one
    /// thread, in-pass, 1.75–1.82 → 1.70–1.77 ms on AVX2, 1.75–1.77 → 1.61–1.64 on AVX-512.
    /// (On ResNet's 112-wide rows, running on gained nothing on AVX2 and moved AVX-512 by ±5 %.)
    #[inline(always)]
    fn run<S: pulp::Simd, const V: usize>(self, simd: S) {
        let lanes = S::F32_LANES;
        let tile = V * lanes;
        let [_, wo] = self.padded.output();
        let taps = self.padded.tap_starts();
        let k = self.copies.len() / self.copy_len.max(1) * taps.len();
        let outputs = self.planes.first().map_or(0, |p| p.len());
        let run_on = wo % lanes != 0;
        let mut panel = Scratch::take(k * tile);
        let mut at = 0;
        while at < outputs {
            let width = if run_on {
                (outputs - at).min(tile)
            } else {
                // The row's last vectors shared evenly between its last tiles (112 outputs
                // on AVX-512: 3 + 2 + 2 vectors, not 3 + 3 + 1, whose tile of one vector and
                // 8 sums waits on its multiply-adds' latency: under `perf` 15 % of a 7×7
                // stem's time for a seventh of its outputs). Machine A, in-pass, medians of
                // 4–5 alternating processes: the stem alone 1.694 → 1.649 ms on one thread,
                // 1.004 → 0.943 on two; GoogLeNet's 1.637 → 1.614 and 0.946 → 0.917.
                let left = wo - at % wo;
                let vectors = left.div_ceil(lanes);
                let per_tile = vectors.div_ceil(vectors.div_ceil(V));
                left.min(per_tile * lanes)
            };
            let span = width.div_ceil(lanes) * lanes;
            // Every tap's run of every input channel: one row of the panel each, from each
            // output row the tile covers.
            let mut filled = 0;
            while filled < width {
                let (row, x) = ((at + filled) / wo, (at + filled) % wo);
                let count = (wo - x).min(width - filled);
                let (flat, step) = self.padded.flat_at(self.first_row + row, x);
                let mut dst = panel.chunks_exact_mut(span);
                for copy in self.copies.chunks_exact(self.copy_len) {
                    for (&start, dst) in taps.iter().zip(&mut dst) {
                        let src = &copy[start + flat..];
                        let dst = &mut dst[filled..filled + count];
                        if step == 1 {
                            copy_row(simd, dst, src);
                        } else {
                            gather(dst, src, step);
                        }
                    }
                }
                filled += count;
            }
            let panel = &panel[..k * span];
            let ahead = at + AHEAD_TILES * tile;
            for plane in self.planes.iter() {
                for line in (ahead..ahead + tile).step_by(LINE) {
                    prefetch(plane, line);
                }
                prefetch(plane, ahead + tile - 1);
            }
            let epilogue = (self.activation, false);
            let step = tile_channels::<S>();
            for (run, rows) in self.planes.chunks_mut(step).enumerate() {
                let mut tiles = Tiles::at(self.weight, self.bias, run * step, k, epilogue, rows);
                tiles.run_width::<S, V>(simd, panel, at, width);
            }
            at += width;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{ConvCase, scratch};

    #[test]
    fn every_output_channel_sums_every_input_channel_under_the_window() {
        // (in, out, kernel, stride, padding, dilation, h, w): an RGB stem's shape at small
        // size, an output channel count that leaves a partial block, strides 1–4, dilation;
        // inputs wide enough for their columns to split into phases, whose phase rows are
        // copied as tasks of their own, at strides 2 and 4; rows of 112 outputs, whose last
        // vectors share tiles evenly.
        for (cin, cout, k, stride, padding, dilation, h, w) in [
            (3, 8, 7, 2, 3, 1, 9, 224),
            (3, 8, 7, 2, 3, 1, 20, 23),
            (3, 9, 7, 2, 3, 1, 37, 45),
            (3, 5, 11, 4, 2, 1, 35, 67),
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
            // Every padding value must be written: the copies' buffer holds NaN before.
            scratch::poison(1 << 16);
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
