//! 3×3, stride-1 convolutions by Winograd's minimal filtering F(2×2, 3×3).
//!
//! Each 2×2 block of output pixels (a *tile*) comes from a 4×4 window of input. With the
//! weight transformed once, at load (`U = G g Gᵀ`, sixteen `[in, out]` matrices), and each
//! window transformed as it is needed (`V = Bᵀ d B`), a tile costs sixteen products over the
//! channels instead of thirty-six: the 3×3 convolution's multiplications fall 2.25 times. The
//! products of one block of tiles are sixteen `[tiles, in] × [in, out]` gemms, and `Aᵀ M A`
//! turns them back into output pixels, with the bias and the activation.
//!
//! Work is split into blocks of tiles, one block per task, small enough that the block's
//! transformed input and products stay in the core's cache between the three steps. A small map
//! (fewer tiles than a block of [`BLOCK_TILES`] per thread) is split by output channels instead:
//! every window is transformed first, and each thread runs the sixteen gemms over all the tiles
//! for its share of the channels. The input is read channels-last and zero-padded once, so that
//! every window lies inside it.

use rayon::prelude::*;

use super::gemm::{MatRef, gemm};
use super::scratch::Scratch;
use super::{Activation, ConvShape, ShapeError};

/// Points of a transformed window: a 4×4 window for a 2×2 tile.
const POINTS: usize = 16;

/// Tiles per block at most. Each block reads all sixteen transformed weight matrices, so a
/// block must be large enough to reuse them: with 512 channels in and out, blocks of 64 tiles
/// ran twice as fast as blocks of 16 (measured on a 2-core Xeon).
const BLOCK_TILES: usize = 64;

/// Output planes one task of the final NCHW scatter writes.
const SCATTER_PLANES: usize = 16;

/// Layers with at least this many output pixels run Winograd whatever their channels; below it,
/// the im2col product still wins where the channels are few (14×14 maps, layer alone: 16 → 48
/// channels 0.037 ms against Winograd's 0.051, 64 → 64 0.091 against 0.108; 128 → 128 0.32
/// against 0.20, 512 → 512 3.1 against 1.7).
const MIN_PIXELS: usize = 512;

/// Below [`MIN_PIXELS`], a layer of at least this many input × output channels runs Winograd.
const MIN_SMALL_MAP_WEIGHTS: usize = 128 * 128;

/// Layers with fewer input channels than this never run Winograd: an RGB stem's three channels
/// make gemms too thin to pay for the transforms.
const MIN_CHANNELS: usize = 16;

/// Whether F(2×2, 3×3) computes a convolution of this shape: a 3×3 kernel, stride 1, no
/// dilation (any padding).
pub(crate) fn suits(s: &ConvShape) -> bool {
    s.kernel == [3, 3] && s.stride == [1, 1] && s.dilation == [1, 1]
}

/// Whether F(2×2, 3×3) is the faster way to run a layer of this shape with `pixels` output
/// pixels, given whether im2col would run it `pixel_major` (else channel-major, which Winograd
/// beat on every 7×7 layer measured: 32 → 128 channels 0.057 ms against 0.082, 256 → 256 0.23
/// against 0.52).
pub(crate) fn pays(s: &ConvShape, pixels: usize, pixel_major: bool) -> bool {
    suits(s)
        && s.in_channels >= MIN_CHANNELS
        && (pixels >= MIN_PIXELS
            || !pixel_major
            || s.in_channels * s.out_channels >= MIN_SMALL_MAP_WEIGHTS)
}

/// PyTorch's `[out, in, 3, 3]` weight transformed as `G g Gᵀ`, stored as sixteen `[in, out]`
/// matrices, one per point of the transformed window.
pub(crate) fn pack(s: &ConvShape, weight: &[f32]) -> Vec<f32> {
    let (cin, cout) = (s.in_channels, s.out_channels);
    let mut packed = vec![0.0f32; POINTS * cin * cout];
    for (oc, g) in weight.chunks_exact(9).enumerate() {
        let (o, c) = (oc / cin, oc % cin);
        // G g: the kernel's three rows combined into four.
        let col = |kx: usize| {
            let (a, b, d) = (g[kx], g[3 + kx], g[6 + kx]);
            [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d]
        };
        let gg = [col(0), col(1), col(2)];
        for i in 0..4 {
            // (G g) Gᵀ: row i's three columns combined into four.
            let (a, b, d) = (gg[0][i], gg[1][i], gg[2][i]);
            let u = [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d];
            for (j, &v) in u.iter().enumerate() {
                packed[((i * 4 + j) * cin + c) * cout + o] = v;
            }
        }
    }
    packed
}

/// One sample: `y` (`[out, ho · wo]`, NCHW) from `sample` (`[in, h, w]`), with the weight
/// from [`pack`], the bias and the activation.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    s: &ConvShape,
    packed: &[f32],
    bias: &[f32],
    activation: Activation,
    sample: &[f32],
    [h, w]: [usize; 2],
    [ho, wo]: [usize; 2],
    y: &mut [f32],
) -> Result<(), ShapeError> {
    let (cin, cout) = (s.in_channels, s.out_channels);
    let [th, tw] = [ho.div_ceil(2), wo.div_ceil(2)];
    let tiles = th * tw;
    let padded_w = 2 * tw + 2;
    let mut padded = Scratch::take((2 * th + 2) * padded_w * cin);
    pad_channels_last(sample, cin, [h, w], s.padding, padded_w, &mut padded);
    let threads = rayon::current_num_threads().max(1);
    if tiles < BLOCK_TILES * threads {
        let layer = Layer {
            packed,
            bias,
            activation,
            cin,
        };
        return by_channels(&layer, &padded, [th, tw], [ho, wo], y);
    }
    // Blocks of at most BLOCK_TILES tiles, as many per thread.
    let blocks = tiles.div_ceil(BLOCK_TILES).div_ceil(threads) * threads;
    let block = tiles.div_ceil(blocks).max(1);
    // [tile, 2×2 pixels, out]: each block of tiles is one contiguous chunk.
    let mut result = Scratch::take(tiles * 4 * cout);
    result
        .par_chunks_mut(block * 4 * cout)
        .enumerate()
        .try_for_each_init(
            || (Scratch::take(0), Scratch::take(0), Scratch::take(0)),
            |(v, m, scratch), (b, dst)| {
                let (first, n) = (b * block, dst.len() / (4 * cout));
                // Both [tile, point, channel]: point ξ of every tile is a matrix with a row
                // stride of 16 points.
                v.set_len(n * POINTS * cin);
                m.set_len(n * POINTS * cout);
                scratch.set_len(POINTS * cin.max(cout));
                for (t, vt) in v.chunks_exact_mut(POINTS * cin).enumerate() {
                    let (ty, tx) = ((first + t) / tw, (first + t) % tw);
                    let window = |i: usize, j: usize| {
                        let at = ((2 * ty + i) * padded_w + 2 * tx + j) * cin;
                        &padded[at..at + cin]
                    };
                    transform_input(window, &mut scratch[..POINTS * cin], vt, cin);
                }
                products(packed, v, [n, cin, cout], [0, cout], m)?;
                for (mt, yt) in m
                    .chunks_exact(POINTS * cout)
                    .zip(dst.chunks_exact_mut(4 * cout))
                {
                    transform_output(mt, &mut scratch[..8 * cout], yt, bias);
                    activation.apply(yt);
                }
                Ok(())
            },
        )?;
    scatter_nchw(&result, cout, [tw, ho, wo], y);
    Ok(())
}

/// What [`by_channels`] needs of a layer besides its input.
struct Layer<'a> {
    /// The weight from [`pack`].
    packed: &'a [f32],
    /// `[out]`.
    bias: &'a [f32],
    activation: Activation,
    /// Input channels.
    cin: usize,
}

/// Output channels per task of [`by_channels`] are a multiple of this (gemm's register tile).
const CHANNEL_STEP: usize = 16;

/// A layer with too few tiles to give every thread a block of its own: every window is
/// transformed first, and then each thread takes a share of the output channels, with its own
/// sixteen gemms over all the tiles, `Aᵀ M A` and its own NCHW planes of `y`.
fn by_channels(
    layer: &Layer<'_>,
    padded: &[f32],
    [th, tw]: [usize; 2],
    [ho, wo]: [usize; 2],
    y: &mut [f32],
) -> Result<(), ShapeError> {
    let (cin, cout) = (layer.cin, layer.bias.len());
    let tiles = th * tw;
    let padded_w = 2 * tw + 2;
    // [tile, point, in].
    let mut v = Scratch::take(tiles * POINTS * cin);
    v.par_chunks_mut(POINTS * cin).enumerate().for_each_init(
        || Scratch::take(POINTS * cin),
        |scratch, (t, vt)| {
            let (ty, tx) = (t / tw, t % tw);
            let window = |i: usize, j: usize| {
                let at = ((2 * ty + i) * padded_w + 2 * tx + j) * cin;
                &padded[at..at + cin]
            };
            transform_input(window, scratch, vt, cin);
        },
    );
    let threads = rayon::current_num_threads().max(1);
    let share = cout
        .div_ceil(threads)
        .next_multiple_of(CHANNEL_STEP)
        .min(cout);
    y.par_chunks_mut(share * ho * wo)
        .enumerate()
        .try_for_each_init(
            || (Scratch::take(0), Scratch::take(0), Scratch::take(0)),
            |(m, result, scratch), (task, planes)| {
                let (first, count) = (task * share, planes.len() / (ho * wo));
                // [tile, point, count] and [tile, pixel, count].
                m.set_len(tiles * POINTS * count);
                result.set_len(tiles * 4 * count);
                scratch.set_len(8 * count);
                products(layer.packed, &v, [tiles, cin, cout], [first, count], m)?;
                let bias = &layer.bias[first..first + count];
                for (mt, yt) in m
                    .chunks_exact(POINTS * count)
                    .zip(result.chunks_exact_mut(4 * count))
                {
                    transform_output(mt, scratch, yt, bias);
                    layer.activation.apply(yt);
                }
                scatter_planes(result, count, 0, [tw, ho, wo], planes);
                Ok(())
            },
        )
}

/// The sixteen products of some tiles' transformed windows `v` (`[tile, point, in]`) with output
/// channels `first..first + count` of the weight from [`pack`], into `m` (`[tile, point,
/// count]`), each on the calling thread.
fn products(
    packed: &[f32],
    v: &[f32],
    [tiles, cin, cout]: [usize; 3],
    [first, count]: [usize; 2],
    m: &mut [f32],
) -> Result<(), ShapeError> {
    for point in 0..POINTS {
        let input = MatRef {
            data: &v[point * cin..],
            rows: tiles,
            cols: cin,
            row_stride: POINTS * cin,
        };
        let weight = MatRef {
            data: &packed[point * cin * cout + first..],
            rows: cin,
            cols: count,
            row_stride: cout,
        };
        gemm(
            &mut m[point * count..],
            POINTS * count,
            input,
            weight,
            false,
            false,
        )?;
    }
    Ok(())
}

/// `[in, h, w]` into `padded`, `[rows, cols, in]`, with the input at `padding` from the top left
/// and zeros everywhere else.
fn pad_channels_last(
    sample: &[f32],
    cin: usize,
    [h, w]: [usize; 2],
    [pad_y, pad_x]: [usize; 2],
    cols: usize,
    padded: &mut [f32],
) {
    let width = w.min(cols.saturating_sub(pad_x));
    padded
        .par_chunks_mut(cols * cin)
        .enumerate()
        .for_each(|(r, row)| {
            let iy = r.wrapping_sub(pad_y);
            if iy >= h {
                row.fill(0.0);
                return;
            }
            row[..pad_x * cin].fill(0.0);
            row[(pad_x + width) * cin..].fill(0.0);
            for c in 0..cin {
                let src = &sample[(c * h + iy) * w..(c * h + iy) * w + width];
                for (ix, &value) in src.iter().enumerate() {
                    row[(ix + pad_x) * cin + c] = value;
                }
            }
        });
}

/// `out = a − b`, element by element.
fn sub(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a - b;
    }
}

/// `out = a + b`, element by element.
fn add(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a + b;
    }
}

/// The four combinations `Bᵀ` makes of four vectors: `d0 − d2, d1 + d2, d2 − d1, d1 − d3`.
fn combine_b(out: [&mut [f32]; 4], d: [&[f32]; 4]) {
    let [o0, o1, o2, o3] = out;
    sub(o0, d[0], d[2]);
    add(o1, d[1], d[2]);
    sub(o2, d[2], d[1]);
    sub(o3, d[1], d[3]);
}

/// Four disjoint `len`-long vectors of `buf` at `starts` (each a multiple of `len`, in
/// increasing order).
fn four_mut(buf: &mut [f32], len: usize, starts: [usize; 4]) -> [&mut [f32]; 4] {
    let mut rest = buf;
    let mut taken = 0;
    starts.map(|start| {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(start - taken);
        let (vector, tail) = tail.split_at_mut(len);
        rest = tail;
        taken = start + len;
        vector
    })
}

/// One window, `window(i, j)` the `cin` channels of its row i, column j, transformed as
/// `Bᵀ d B` into `v` (`[point, in]`, point `4i + j`), through `scratch` (16 vectors of `cin`).
fn transform_input<'a>(
    window: impl Fn(usize, usize) -> &'a [f32],
    scratch: &mut [f32],
    v: &mut [f32],
    cin: usize,
) {
    // Bᵀ d, column by column: scratch holds [row i, column j] at point 4i + j.
    for j in 0..4 {
        let out = four_mut(scratch, cin, [j, 4 + j, 8 + j, 12 + j].map(|p| p * cin));
        combine_b(
            out,
            [window(0, j), window(1, j), window(2, j), window(3, j)],
        );
    }
    // (Bᵀ d) B, row by row.
    for i in 0..4 {
        let row = |j: usize| &scratch[(4 * i + j) * cin..(4 * i + j + 1) * cin];
        let out = four_mut(v, cin, [0, 1, 2, 3].map(|j| (4 * i + j) * cin));
        combine_b(out, [row(0), row(1), row(2), row(3)]);
    }
}

/// The two combinations `Aᵀ` makes of four vectors, `m0 + m1 + m2` and `m1 − m2 − m3`, each
/// plus `base` where there is one.
fn combine_a(out: [&mut [f32]; 2], m: [&[f32]; 4], base: Option<&[f32]>) {
    let [o0, o1] = out;
    for (k, (a, b)) in o0.iter_mut().zip(o1.iter_mut()).enumerate() {
        *a = m[0][k] + m[1][k] + m[2][k];
        *b = m[1][k] - m[2][k] - m[3][k];
    }
    if let Some(base) = base {
        for ((a, b), &v) in o0.iter_mut().zip(o1.iter_mut()).zip(base) {
            *a += v;
            *b += v;
        }
    }
}

/// One tile's products `m` (`[point, out]`) turned back into its 2×2 pixels as `Aᵀ m A + bias`
/// into `y` (`[pixel, out]`, pixel `2a + b`), through `scratch` (8 vectors of `out`).
fn transform_output(m: &[f32], scratch: &mut [f32], y: &mut [f32], bias: &[f32]) {
    let cout = bias.len();
    let point = |p: usize| &m[p * cout..(p + 1) * cout];
    // Aᵀ m, column by column: scratch holds [row a, column j] at 4a + j.
    let (row0, row1) = scratch.split_at_mut(4 * cout);
    for j in 0..4 {
        let out = [
            &mut row0[j * cout..(j + 1) * cout],
            &mut row1[j * cout..(j + 1) * cout],
        ];
        combine_a(
            out,
            [point(j), point(4 + j), point(8 + j), point(12 + j)],
            None,
        );
    }
    // (Aᵀ m) A + bias, row by row.
    for a in 0..2 {
        let row = |j: usize| &scratch[(4 * a + j) * cout..(4 * a + j + 1) * cout];
        let (left, right) = y[2 * a * cout..(2 * a + 2) * cout].split_at_mut(cout);
        combine_a([left, right], [row(0), row(1), row(2), row(3)], Some(bias));
    }
}

/// The `[tile, pixel, out]` result into the NCHW output `y` (`[out, ho, wo]`), leaving out the
/// pixels of tiles that overhang an odd-sized output.
fn scatter_nchw(result: &[f32], cout: usize, [tw, ho, wo]: [usize; 3], y: &mut [f32]) {
    y.par_chunks_mut(SCATTER_PLANES * ho * wo)
        .enumerate()
        .for_each(|(chunk, planes)| {
            scatter_planes(result, cout, chunk * SCATTER_PLANES, [tw, ho, wo], planes)
        });
}

/// Output channels `first..` of the `[tile, pixel, cout]` result into `planes` (as many
/// `[ho, wo]` planes as it holds).
fn scatter_planes(
    result: &[f32],
    cout: usize,
    first: usize,
    [tw, ho, wo]: [usize; 3],
    planes: &mut [f32],
) {
    let pixels = ho * wo;
    let count = planes.len() / pixels;
    for (tile, values) in result.chunks_exact(4 * cout).enumerate() {
        let (ty, tx) = (tile / tw, tile % tw);
        for (p, pixel) in values.chunks_exact(cout).enumerate() {
            let (oy, ox) = (2 * ty + p / 2, 2 * tx + p % 2);
            if oy < ho && ox < wo {
                let at = oy * wo + ox;
                for (k, &value) in pixel[first..first + count].iter().enumerate() {
                    planes[k * pixels + at] = value;
                }
            }
        }
    }
}
