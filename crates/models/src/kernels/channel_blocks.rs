//! 3×3 depthwise windows with one value of padding, at stride 1 or 2, over small planes
//! (MobileNetV2's 28 × 28, 14 × 14 and 7 × 7), eight channels to a vector.
//!
//! On a plane of a few hundred values, the in-place kernel ([`in_place`](super::in_place))
//! walks a plane as one flat run of vectors: each vector's nine taps are nine unaligned loads,
//! with masks for the lanes whose taps fall outside the plane; at stride 2 the halving kernel
//! ([`halving`](super::halving)) splits each row into its even and odd columns. Here eight
//! planes at a time are transposed 8 × 8 in registers into channels-last order, each pixel one
//! vector of eight channels, in a buffer with a zero border a pixel wide, so that every tap of
//! every output is one whole vector, loaded with no mask; each vector of weights holds one tap
//! of the eight channels. The outputs are computed two pixels at a time (their taps overlap:
//! at stride 1 four input vectors a row serve both, at stride 2 five), kept channels-last, and
//! transposed back into the planes. The transposes cost about a third of a stride-1 layer; the
//! taps run without masks or wasted lanes.
//!
//! Layers run here on the AVX2 path only. Machine D, one thread, each layer repeated in one
//! process, this kernel and the other alternately, µs a layer: on the AVX2 path 960 planes of
//! 7 × 7 34 → 25, 576 of 14 × 14 74 → 58, 384 of 14 × 14 48–50 → 38 (MobileNetV2's pass
//! 0.5–1 % faster), 576 of 14 × 14 at stride 2 47 → 27; on the AVX-512 path the layers gained
//! less (32 → 25, 61 → 56, 40 → 37) and MobileNetV2's pass nothing, and planes of 28 × 28 ran
//! slower (77 → 114), so the other kernels' 16-lane vectors stay there. See
//! `docs/EXPERIMENTS.md`, "Fast kernels".

use pulp::Simd;
use rayon::prelude::*;

use super::plane::{MAX_LANES, Window};
use super::scratch::Scratch;
use super::transpose::{BLOCK, transpose_vectors};
use super::vector::{VectorPath, load, store};
use super::{Activation, units_per_task};

/// Channels to a vector, and planes to a block.
const LANES: usize = BLOCK;

/// Input planes of at most this many values run here (a block's buffers then stay within the
/// core's first two levels of cache); larger ones run on the other kernels. Machine D, AVX2,
/// one thread, µs a layer, against the kernels there: 192 planes of 28 × 28 at stride 1 76 →
/// 70, at stride 2 40 → 37; 144 of 56 × 56 at stride 2 103 → 116.
const MAX_PLANE: usize = 28 * 28;

/// Output pixels a task computes at least (where there are enough blocks for every thread).
const TASK_PIXELS: usize = 2 * 1024;

/// What a depthwise layer applies: its filters, `[channels]` biases and the activation.
pub(crate) struct Filters<'a> {
    /// `[channels / 8, 9, 8]`: for each block of eight channels, each tap (row-major) of the
    /// eight, side by side.
    pub taps: &'a [f32],
    /// Each channel's bias.
    pub bias: &'a [f32],
    /// Applied to every output.
    pub activation: Activation,
}

/// Whether a depthwise `window` over `channels` planes of `[h, w]` runs here: a 3×3 window at
/// stride 1, padding 1 and dilation 1, planes of at most [`MAX_PLANE`] values and at least a
/// vector of the widest path (as the in-place kernel needs, so that one of the two always
/// runs), channels in whole blocks, and the AVX2 path in effect.
pub(crate) fn suits(window: &Window, [h, w]: [usize; 2], channels: usize) -> bool {
    stride_of(window).is_some()
        && h * w <= MAX_PLANE
        && h * w >= MAX_LANES
        && channels % LANES == 0
        && channels > 0
        && VectorPath::current() == VectorPath::Avx2
        && simd().is_some()
}

/// The stride of a window that runs here: 1 for [`Window::SAME_3X3`], 2 for a 3×3 window at
/// stride 2 with padding 1.
fn stride_of(window: &Window) -> Option<usize> {
    let halving = Window {
        stride: [2, 2],
        ..Window::SAME_3X3
    };
    if *window == Window::SAME_3X3 {
        Some(1)
    } else if *window == halving {
        Some(2)
    } else {
        None
    }
}

/// AVX2, where the vector path in effect allows it (the AVX2 or the AVX-512 path).
fn simd() -> Option<pulp::x86::V3> {
    if VectorPath::current() <= VectorPath::Avx2 {
        pulp::x86::V3::try_new()
    } else {
        None
    }
}

/// Convolves every `[h, w]` plane of `x` (`[batch, channels, h, w]`, `channels` a multiple of
/// [`LANES`]) into `out` (as many planes), blocks of planes to tasks in parallel. Does nothing
/// where the vector path in effect has no AVX2.
pub(crate) fn run(
    x: &[f32],
    window: &Window,
    [h, w]: [usize; 2],
    out: &mut [f32],
    filters: &Filters<'_>,
) {
    let (Some(simd), Some(stride)) = (simd(), stride_of(window)) else {
        return;
    };
    let plane = h * w;
    let [ho, wo] = [h, w].map(|len| (len - 1) / stride + 1);
    let blocks = x.len() / (LANES * plane);
    let per_task = units_per_task(blocks, LANES * ho * wo, TASK_PIXELS);
    // Where each pixel of a plane lies in a padded block, in pixels.
    let inside: Vec<usize> = (0..plane)
        .map(|p| (p / w + 1) * (w + 2) + p % w + 1)
        .collect();
    out.par_chunks_mut(per_task * LANES * ho * wo)
        .enumerate()
        .for_each(|(task, ys)| {
            simd.vectorize(Task {
                simd,
                x,
                hw: [h, w],
                out_hw: [ho, wo],
                stride,
                inside: &inside,
                first: task * per_task * LANES,
                ys,
                filters,
            })
        });
}

/// One task's blocks: its output planes `ys` from the input planes `first..` of `x`.
struct Task<'a> {
    simd: pulp::x86::V3,
    /// The whole input.
    x: &'a [f32],
    hw: [usize; 2],
    /// The output planes' height and width.
    out_hw: [usize; 2],
    /// 1 or 2.
    stride: usize,
    /// Where each pixel of a plane lies in the padded block, in pixels.
    inside: &'a [usize],
    /// The index of the task's first plane in `x`.
    first: usize,
    /// The task's output planes, whole blocks of them.
    ys: &'a mut [f32],
    filters: &'a Filters<'a>,
}

impl pulp::NullaryFnOnce for Task<'_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let Task {
            simd,
            x,
            hw: [h, w],
            out_hw: [ho, wo],
            stride,
            inside,
            first,
            ys,
            filters,
        } = self;
        let (plane, out_plane) = (h * w, ho * wo);
        let width = w + 2;
        // The padded block: (h + 2) rows of w + 2 pixels, and two pixels more, which the last
        // pair of outputs reads past a row of an odd number of outputs (its second output is
        // not stored).
        let mut padded = Scratch::take(((h + 2) * width + 2) * LANES);
        padded.fill(0.0);
        let mut sums = Scratch::take(out_plane * LANES);
        let channels = filters.bias.len();
        for (b, y) in ys.chunks_exact_mut(LANES * out_plane).enumerate() {
            let at = first + b * LANES;
            fill_padded(
                simd,
                &x[at * plane..(at + LANES) * plane],
                inside,
                &mut padded,
            );
            let c = at % channels;
            let block = &filters.taps[c * 9..(c + LANES) * 9];
            // (Loops, not closures, make the vectors: a closure is compiled without AVX.)
            let mut vectors = [simd.splat_f32s(0.0); 9];
            for (vector, tap) in vectors.iter_mut().zip(block.chunks_exact(LANES)) {
                *vector = load::<pulp::x86::V3>(tap);
            }
            let window = Block {
                taps: vectors,
                bias: load::<pulp::x86::V3>(&filters.bias[c..c + LANES]),
                activation: filters.activation,
            };
            // Every load and store below a whole vector of the buffers, by index.
            let (pixels, _) = pulp::x86::V3::as_simd_f32s(&padded);
            let (outputs, _) = pulp::x86::V3::as_mut_simd_f32s(&mut sums);
            for oy in 0..ho {
                let mut ox = 0;
                while ox < wo {
                    let [top, left] = [oy, ox].map(|at| at * stride);
                    let rows: [&[_]; 3] =
                        std::array::from_fn(|dy| &pixels[(top + dy) * width + left..]);
                    let [first, second] = if stride == 1 {
                        window.pair::<1>(simd, rows)
                    } else {
                        window.pair::<2>(simd, rows)
                    };
                    let out = oy * wo + ox;
                    outputs[out] = first;
                    if ox + 1 < wo {
                        outputs[out + 1] = second;
                    }
                    ox += 2;
                }
            }
            planes_from(simd, &sums, out_plane, y);
        }
    }
}

/// Writes the block's [`LANES`] planes `src` into `padded`, each pixel `p` a vector of the
/// planes' values at `inside[p]`: 8 × 8 at a time, transposed in registers, and the pixels past
/// the last whole block value by value.
#[inline(always)]
fn fill_padded(simd: pulp::x86::V3, src: &[f32], inside: &[usize], padded: &mut [f32]) {
    let plane = inside.len();
    let whole = plane / BLOCK * BLOCK;
    {
        let (pixels, _) = pulp::x86::V3::as_mut_simd_f32s(padded);
        for p0 in (0..whole).step_by(BLOCK) {
            let row = |c: usize| &src[c * plane + p0..];
            let rows = [
                m256(load::<pulp::x86::V3>(row(0))),
                m256(load::<pulp::x86::V3>(row(1))),
                m256(load::<pulp::x86::V3>(row(2))),
                m256(load::<pulp::x86::V3>(row(3))),
                m256(load::<pulp::x86::V3>(row(4))),
                m256(load::<pulp::x86::V3>(row(5))),
                m256(load::<pulp::x86::V3>(row(6))),
                m256(load::<pulp::x86::V3>(row(7))),
            ];
            for (j, pixel) in transpose_vectors(simd, rows).into_iter().enumerate() {
                pixels[inside[p0 + j]] = pulp::cast(pixel);
            }
        }
    }
    for (p, &to) in inside.iter().enumerate().skip(whole) {
        for c in 0..LANES {
            padded[to * LANES + c] = src[c * plane + p];
        }
    }
}

/// A vector as AVX's type.
#[inline(always)]
fn m256(v: <pulp::x86::V3 as pulp::Simd>::f32s) -> std::arch::x86_64::__m256 {
    pulp::cast(v)
}

/// A block's window: one vector of the eight channels' weights per tap, their biases, and the
/// activation.
struct Block {
    taps: [<pulp::x86::V3 as pulp::Simd>::f32s; 9],
    bias: <pulp::x86::V3 as pulp::Simd>::f32s,
    activation: Activation,
}

impl Block {
    /// Two neighbouring outputs at stride `STRIDE` from the `3 + STRIDE` pixels (each a
    /// vector of the block's channels) of each of the three padded rows from the first
    /// window's top-left pixel: the two windows share `3 - STRIDE` of each row's pixels.
    #[inline(always)]
    fn pair<const STRIDE: usize>(
        &self,
        simd: pulp::x86::V3,
        rows: [&[<pulp::x86::V3 as pulp::Simd>::f32s]; 3],
    ) -> [<pulp::x86::V3 as pulp::Simd>::f32s; 2] {
        let mut sums = [self.bias; 2];
        for (dy, row) in rows.iter().enumerate() {
            let row = &row[..3 + STRIDE];
            for dx in 0..3 {
                let tap = self.taps[3 * dy + dx];
                sums[0] = simd.mul_add_e_f32s(tap, row[dx], sums[0]);
                sums[1] = simd.mul_add_e_f32s(tap, row[dx + STRIDE], sums[1]);
            }
        }
        [
            self.activation.apply_vector(simd, sums[0]),
            self.activation.apply_vector(simd, sums[1]),
        ]
    }
}

/// Writes `sums` (`[pixel, channel]`, [`LANES`] channels) into the block's `plane`-long output
/// planes `y`: 8 × 8 at a time, transposed in registers, and the pixels past the last whole
/// block value by value.
#[inline(always)]
fn planes_from(simd: pulp::x86::V3, sums: &[f32], plane: usize, y: &mut [f32]) {
    let whole = plane / BLOCK * BLOCK;
    let (pixels, _) = pulp::x86::V3::as_simd_f32s(sums);
    for p0 in (0..whole).step_by(BLOCK) {
        let p = &pixels[p0..p0 + BLOCK];
        let rows = [
            m256(p[0]),
            m256(p[1]),
            m256(p[2]),
            m256(p[3]),
            m256(p[4]),
            m256(p[5]),
            m256(p[6]),
            m256(p[7]),
        ];
        for (c, values) in transpose_vectors(simd, rows).into_iter().enumerate() {
            store::<pulp::x86::V3>(&mut y[c * plane + p0..], pulp::cast(values));
        }
    }
    for p in whole..plane {
        for c in 0..LANES {
            y[c * plane + p] = sums[p * LANES + c];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::interleave_channels;
    use super::*;

    /// A square window of `k` taps, stride `s` and padding `p`.
    fn square(k: usize, s: usize, p: usize) -> Window {
        Window {
            kernel: [k, k],
            stride: [s, s],
            padding: [p, p],
            dilation: [1, 1],
        }
    }

    /// The layer value by value: zero padding 1, stride `stride`, each channel's taps
    /// row-major in `weight` (`[channels, 9]`).
    fn reference(
        x: &[f32],
        [h, w]: [usize; 2],
        stride: usize,
        weight: &[f32],
        filters: &Filters<'_>,
    ) -> Vec<f32> {
        let (plane, channels) = (h * w, filters.bias.len());
        let [ho, wo] = [h, w].map(|len| (len - 1) / stride + 1);
        let mut y = vec![0.0; x.len() / plane * ho * wo];
        for (p, out) in y.chunks_exact_mut(ho * wo).enumerate() {
            let c = p % channels;
            let input = &x[p * plane..(p + 1) * plane];
            for (at, value) in out.iter_mut().enumerate() {
                let (oy, ox) = (at / wo * stride, at % wo * stride);
                let mut sum = filters.bias[c];
                for t in 0..9 {
                    let (iy, ix) = ((oy + t / 3).wrapping_sub(1), (ox + t % 3).wrapping_sub(1));
                    if iy < h && ix < w {
                        sum += weight[c * 9 + t] * input[iy * w + ix];
                    }
                }
                *value = filters.activation.of(sum);
            }
        }
        y
    }

    #[test]
    fn every_output_matches_the_layer_value_by_value() {
        // Even and odd widths (and, at stride 2, even and odd output widths), the smallest
        // plane that runs here and the largest, a batch of two, one block and several tasks'
        // worth.
        for (batch, channels, [h, w], activation) in [
            (1, 8, [7, 7], Activation::Relu6),
            (2, 16, [14, 14], Activation::Identity),
            (1, 24, [5, 4], Activation::Relu),
            (1, 8, [9, 9], Activation::Identity),
            (3, 40, [16, 16], Activation::Relu6),
            (1, 960, [7, 7], Activation::Relu6),
            (1, 576, [14, 14], Activation::Relu6),
        ] {
            for stride in [1, 2] {
                check_layer(batch, channels, [h, w], stride, activation);
            }
        }
    }

    /// Runs one layer here and checks every output against [`reference`].
    fn check_layer(
        batch: usize,
        channels: usize,
        [h, w]: [usize; 2],
        stride: usize,
        activation: Activation,
    ) {
        // Without AVX2 (an older CPU, or CUTPOINT_VECTOR_PATH=other) nothing runs here: no
        // layer suits, and `run` leaves its output as it was.
        let ran = simd().is_some();
        let n = batch * channels * h * w;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let weight: Vec<f32> = (0..channels * 9)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 10.0)
            .collect();
        let bias: Vec<f32> = (0..channels).map(|c| c as f32 / 100.0 - 0.1).collect();
        let taps = interleave_channels(&weight, 9, LANES);
        let filters = Filters {
            taps: &taps,
            bias: &bias,
            activation,
        };
        let on_avx2 = VectorPath::current() == VectorPath::Avx2 && ran;
        let window = square(3, stride, 1);
        assert_eq!(suits(&window, [h, w], channels), on_avx2);
        let expected = reference(&x, [h, w], stride, &weight, &filters);
        let mut y = vec![f32::NAN; expected.len()];
        run(&x, &window, [h, w], &mut y, &filters);
        if !ran {
            assert!(y.iter().all(|v| v.is_nan()), "nothing written without AVX2");
            return;
        }
        for (i, (got, want)) in y.iter().zip(&expected).enumerate() {
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{batch}x{channels}x{h}x{w} at stride {stride}: output {i} is {got}, not {want}"
            );
        }
    }

    #[test]
    fn other_windows_planes_channel_counts_and_paths_are_left_to_the_other_kernels() {
        let on_avx2 = VectorPath::current() == VectorPath::Avx2 && simd().is_some();
        assert_eq!(
            suits(&square(3, 1, 1), [14, 14], 16),
            on_avx2,
            "the AVX2 path only"
        );
        assert_eq!(suits(&square(3, 2, 1), [14, 14], 16), on_avx2, "stride 2");
        assert!(!suits(&square(3, 2, 0), [14, 14], 16), "stride 2 unpadded");
        assert!(!suits(&square(3, 3, 1), [14, 14], 16), "stride 3");
        assert!(!suits(&square(5, 1, 2), [14, 14], 16), "5x5");
        assert!(!suits(&square(3, 1, 1), [56, 56], 16), "a large plane");
        assert!(
            !suits(&square(3, 2, 1), [56, 56], 16),
            "a large plane at stride 2"
        );
        assert!(!suits(&square(3, 1, 1), [14, 14], 12), "a part block");
        assert!(!suits(&square(3, 1, 1), [3, 3], 16), "under a vector");
    }
}
