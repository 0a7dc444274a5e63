//! Dense convolutions on small feature maps (7×7, and 13×13 or 14×14 on AVX2): the input's
//! patches (im2col, `in · kh · kw` values per output pixel) gathered once, a tile's pixels at a
//! time ([`PIXELS`] or [`PIXELS_16`], by the packing), and multiplied by the weight, packed at
//! load in blocks of output channels ([`block_for`] the vector path), in register tiles whose
//! vectors run over output channels: each weight vector loaded feeds every pixel of the tile,
//! each patch value broadcast feeds every vector. Each shape of tile runs in a function of its
//! own ([`Block::alone`]), so that the compiler keeps all its sums in registers. The sums leave
//! the registers through the bias and the activation straight into the NCHW output.
//!
//! A deep layer's weight is read from memory once per pass, and its patches (nine times the
//! input) with one block's weight outgrow the core's cache: each thread sums every block over
//! a part of the rows ([`chunk_rows`]) before the next part, the sums waiting in memory in
//! between, and each tile after a block's first asks the CPU for a share of the weights the
//! thread reads next ([`Ahead`]), so that they arrive while this block is multiplied.
//!
//! Vectors over output channels waste nothing on a map whose pixel count is not a multiple of
//! the vector width (49 pixels of a 7×7 map fill 4 vectors of 16 to 77 %), where a kernel with
//! vectors over pixels, or gemm's `[out, K] × [K, pixels]`, would; and a 3×3 layer on such a map
//! has too few tiles for Winograd's transforms to pay.

use rayon::prelude::*;

use super::plane::{Epilogue, MAX_LANES};
use super::prefetch::Ahead;
use super::scratch::Scratch;
use super::vector::{VectorPath, dispatch, load, store};
use super::{ConvShape, Operands, ShapeError, interleave_channels};

/// Output channels per packed block of the weight at most: a tile's channels on AVX-512
/// ([`VECTORS`] vectors of 16).
const BLOCK: usize = 48;

/// Output channels per packed block with 16 vector registers (AVX2): a tile's channels there
/// ([`VECTORS_16`] vectors of 8), so that every weight loaded is used (a tile reading 16 of a
/// 48-channel block's weights streamed three times the bytes).
const BLOCK_16: usize = 16;

/// Rows a tile's loop takes per step (and asks for the next weights once per step).
const UNROLL: usize = 4;

/// Output pixels per tile where the weight is packed in blocks of [`BLOCK`] (AVX-512); the
/// gathered patches are then laid out in groups of this many.
const PIXELS: usize = 8;

/// What the rows a thread's blocks all take before the next rows ([`chunk_rows`]) read at
/// most: those rows of every tile's patches, one block's weights and the next one's. Within a
/// core's second-level cache (1 MiB on the smallest measured, 2 MiB on the largest), whatever
/// the layer's depth. Machine A, 3×3 layers on a 7×7 map, the whole depth at once: 256 → 512
/// channels at 120 GFLOP/s, 512 → 512 at 87; in parts of this size, 512 → 512 at 112.
const CHUNK_BYTES: usize = 768 << 10;

/// Channel vectors per tile where the CPU has 32 vector registers (AVX-512): with [`PIXELS`]
/// pixels, 24 sums in registers.
const VECTORS: usize = 3;

/// Output pixels per tile where the weight is packed in blocks of [`BLOCK_16`] (AVX2), and the
/// groups the patches are then laid out in: with [`VECTORS_16`] vectors, 12 sums, which with
/// the two weight vectors and a broadcast value fill 15 of the 16 vector registers, and load 8
/// values for every 12 products. (Tiles of 4 pixels, 8 sums, left the core's two
/// multiply-adders waiting on each other's results; 3 vectors of 4 pixels spilled a sum.)
const PIXELS_16: usize = 6;

/// Channel vectors per tile with 16 vector registers.
const VECTORS_16: usize = 2;

/// The output channels per packed block for the weight of a layer run on `path`.
pub(crate) fn block_for(path: VectorPath) -> usize {
    if path == VectorPath::Avx512 {
        BLOCK
    } else {
        BLOCK_16
    }
}

/// The output pixels per tile, and per group of the gathered patches, for a weight packed in
/// blocks of `block`.
fn pixels_for(block: usize) -> usize {
    if block == BLOCK_16 { PIXELS_16 } else { PIXELS }
}

/// PyTorch's `[out, in, kh, kw]` weight as `[⌈out / block⌉, in · kh · kw, block]` (zeros past
/// the last channel), `block` from [`block_for`].
pub(crate) fn pack(s: &ConvShape, weight: &[f32], block: usize) -> Vec<f32> {
    interleave_channels(weight, s.patch_len(), block.clamp(1, BLOCK))
}

/// One sample: `y` (`[out, ho, wo]`) from `sample` (`[in, h, w]`), with the weight from
/// [`pack`] for `block`, the bias and the activation. Each thread takes as many output channels
/// ([`shares`]).
pub(crate) fn forward(
    s: &ConvShape,
    block: usize,
    operands: Operands<'_>,
    sample: &[f32],
    hw: [usize; 2],
    out_hw: [usize; 2],
    y: &mut [f32],
) -> Result<(), ShapeError> {
    forward_on(
        s,
        block,
        operands,
        sample,
        hw,
        out_hw,
        y,
        chunk_rows,
        |run| dispatch(run),
    )
}

/// [`forward`], each block of output channels computed by `run` (at the vector path's level,
/// or, in tests, at a chosen one), over parts of the rows of `part_rows(k, tiles, block)`
/// ([`chunk_rows`], or, in tests, others).
#[allow(clippy::too_many_arguments)]
fn forward_on(
    s: &ConvShape,
    block: usize,
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
    part_rows: fn(usize, usize, usize) -> usize,
    run: impl Fn(Block<'_>) + Sync,
) -> Result<(), ShapeError> {
    let (k, pixels, cout) = (s.patch_len(), ho * wo, s.out_channels);
    if !(1..=BLOCK).contains(&block)
        || s.output(h, w) != Some([ho, wo])
        || sample.len() != s.in_channels * h * w
        || y.len() != cout * pixels
        || weight.len() != cout.div_ceil(block) * k * block
        || bias.len() != cout
    {
        return Err(ShapeError(format!(
            "a {}x{} convolution of {} to {cout} channels in blocks of {block} cannot take {} \
             inputs of {h}x{w}, {} weights and {} biases into {} outputs of {ho}x{wo}",
            s.kernel[0],
            s.kernel[1],
            s.in_channels,
            sample.len(),
            weight.len(),
            bias.len(),
            y.len()
        )));
    }
    if pixels == 0 || cout == 0 {
        return Ok(());
    }
    let tile_pixels = pixels_for(block);
    let tiles = pixels.div_ceil(tile_pixels);
    let mut patches = Scratch::take(tiles * k * tile_pixels);
    gather(s, sample, [h, w], [ho, wo], tile_pixels, &mut patches);
    let rows = part_rows(k, tiles, block).max(1);
    // Each thread's shares, with their output planes, in order.
    let mut groups = Vec::new();
    let mut rest = y;
    for group in shares(cout, block, rayon::current_num_threads()) {
        let mut planes = Vec::with_capacity(group.len());
        for share in group {
            let (ys, after) = rest.split_at_mut(share.channels * pixels);
            rest = after;
            planes.push((share, ys));
        }
        groups.push(planes);
    }
    groups.into_par_iter().for_each(|mut group| {
        let mut partial = Scratch::take(group.len() * tiles * tile_pixels * BLOCK);
        let weights = |share: &Share, [start, end]: [usize; 2]| {
            let at = share.block * k * block;
            &weight[at + start * block..at + end * block]
        };
        let list: Vec<Share> = group.iter().map(|(share, _)| *share).collect();
        for start in (0..k).step_by(rows) {
            let chunk = [start, (start + rows).min(k)];
            let after = [chunk[1], (chunk[1] + rows).min(k)];
            for (i, ((share, ys), partial)) in group
                .iter_mut()
                .zip(partial.chunks_exact_mut(tiles * tile_pixels * BLOCK))
                .enumerate()
            {
                // What the thread reads next: the next share's part of this chunk, or the
                // first share's part of the next chunk.
                let next = match list.get(i + 1) {
                    Some(next) => weights(next, chunk),
                    None if after[0] < after[1] => weights(&list[0], after),
                    None => &[][..],
                };
                let channels = share.block * block;
                let mut block_bias = [0.0; BLOCK];
                let bias = &bias[channels..(channels + block).min(cout)];
                block_bias[..bias.len()].copy_from_slice(bias);
                run(Block {
                    patches: &patches,
                    k,
                    rows: chunk,
                    pixels,
                    tile_pixels,
                    weights: weights(share, chunk),
                    next,
                    block,
                    bias: block_bias,
                    first: share.first,
                    channels: share.channels,
                    epilogue: Epilogue {
                        activation,
                        residual,
                    },
                    partial,
                    ys,
                });
            }
        }
    });
    Ok(())
}

/// Rows of the patches (and of the packed weight) that a thread's blocks all take before the
/// next rows, for `tiles` tiles and blocks of `block` channels: as many as keep that part of
/// every tile's patches, one block's weights and the next block's (asked for ahead) within
/// [`CHUNK_BYTES`]. Each block's sums wait in memory between two parts.
fn chunk_rows(k: usize, tiles: usize, block: usize) -> usize {
    let per_row = 4 * (tiles * pixels_for(block) + 2 * block);
    if block != BLOCK {
        return k.max(1);
    }
    let most = (CHUNK_BYTES / per_row.max(1)).max(1);
    k.div_ceil(k.div_ceil(most).max(1)).max(1)
}

/// A task's output channels: `channels` of them from channel `first` of packed block `block`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Share {
    block: usize,
    first: usize,
    channels: usize,
}

/// The tasks of a layer of `cout` output channels packed in blocks of `block`, for `threads`
/// threads, one list for each thread: as many channels for each thread, in vectors of 16,
/// each thread's run cut where a block ends. Blocks of [`BLOCK`] channels are cut inside (a task then reads part of its
/// block's weights); smaller ones, many enough to share out, stay whole. With 2 threads, 512
/// channels in blocks of 48 gave one thread 6 blocks and the other 5.
fn shares(cout: usize, block: usize, threads: usize) -> Vec<Vec<Share>> {
    let unit = if block == BLOCK {
        MAX_LANES
    } else {
        block.max(1)
    };
    let per_thread = cout.div_ceil(unit).div_ceil(threads.max(1)) * unit;
    let mut groups = Vec::new();
    let mut start = 0;
    while start < cout {
        let end = (start + per_thread).min(cout);
        let mut group = Vec::new();
        let mut at = start;
        while at < end {
            let (b, first) = (at / block, at % block);
            let channels = (block - first).min(end - at);
            group.push(Share {
                block: b,
                first,
                channels,
            });
            at += channels;
        }
        groups.push(group);
        start = end;
    }
    groups
}

/// Gathers `sample`'s patches into `patches`, `[tiles, k, tile_pixels]`: for each tile of
/// `tile_pixels` output pixels ([`pixels_for`] the packing), row `(c, ky, kx)` holds the input value each pixel's window reads
/// there (zero in the padding and past the last pixel). Every plane is first copied with its
/// padding around it, so that a window's values are read without a check of the plane's
/// bounds. Planes and tiles go to threads: on one thread the gather is a tenth of a 7×7 layer,
/// which would otherwise wait for it on every other.
fn gather(
    s: &ConvShape,
    sample: &[f32],
    [h, w]: [usize; 2],
    [ho, wo]: [usize; 2],
    tile_pixels: usize,
    patches: &mut [f32],
) {
    let [ph, pw] = s.padding;
    let plane = Padded {
        h: h + 2 * ph,
        w: w + 2 * pw,
    };
    let mut padded = Scratch::take(s.in_channels * plane.h * plane.w);
    padded
        .par_chunks_exact_mut(plane.h * plane.w)
        .zip(sample.par_chunks_exact(h * w))
        .for_each(|(dst, src)| {
            let (top, rest) = dst.split_at_mut(ph * plane.w);
            top.fill(0.0);
            let (middle, bottom) = rest.split_at_mut(h * plane.w);
            bottom.fill(0.0);
            for (row, values) in middle.chunks_exact_mut(plane.w).zip(src.chunks_exact(w)) {
                row[..pw].fill(0.0);
                row[pw..pw + w].copy_from_slice(values);
                row[pw + w..].fill(0.0);
            }
        });
    let k = s.patch_len();
    patches
        .par_chunks_exact_mut(k * tile_pixels)
        .enumerate()
        .for_each(|(tile, panel)| {
            if tile_pixels == PIXELS_16 {
                gather_tile::<PIXELS_16>(s, &padded, plane, [ho, wo], tile, panel);
            } else {
                gather_tile::<PIXELS>(s, &padded, plane, [ho, wo], tile, panel);
            }
        });
}

/// The size of an input plane with its padding around it.
#[derive(Debug, Clone, Copy)]
struct Padded {
    h: usize,
    w: usize,
}

/// [`gather`]'s tile `tile` of `P` pixels, into its `panel` (`[k, P]`), from the `padded`
/// planes.
fn gather_tile<const P: usize>(
    s: &ConvShape,
    padded: &[f32],
    plane: Padded,
    [ho, wo]: [usize; 2],
    tile: usize,
    panel: &mut [f32],
) {
    let [kh, kw] = s.kernel;
    let [dh, dw] = s.dilation;
    // Each pixel's window's top-left corner in the padded plane (past the last pixel, the last
    // one's, whose values are then overwritten with zeros).
    let count = (ho * wo).saturating_sub(tile * P).min(P);
    let corners: [usize; P] = std::array::from_fn(|r| {
        let p = (tile * P + r).min(tile * P + count.max(1) - 1);
        (p / wo) * s.stride[0] * plane.w + (p % wo) * s.stride[1]
    });
    let mut rows = panel.chunks_exact_mut(P);
    for values in padded.chunks_exact(plane.h * plane.w) {
        for ky in 0..kh {
            for kx in 0..kw {
                let Some(row) = rows.next() else { return };
                let tap = &values[ky * dh * plane.w + kx * dw..];
                for (value, &corner) in row.iter_mut().zip(&corners) {
                    *value = tap[corner];
                }
                row[count..].fill(0.0);
            }
        }
    }
}

/// Channels `first..first + channels` of one block of `block` output channels, over every tile
/// of the gathered `patches`, into `ys` (those channels' output planes, `pixels` each, holding a
/// residual to add where the epilogue says so).
struct Block<'a> {
    patches: &'a [f32],
    k: usize,
    /// The rows of the patches this call sums, `[start, end]`: the sums start from the bias
    /// at row 0, from `partial` after it, and leave through the epilogue at row `k`, into
    /// `partial` before it.
    rows: [usize; 2],
    pixels: usize,
    /// The pixels of a tile, and of a group of the patches ([`pixels_for`] the block).
    tile_pixels: usize,
    /// The block's packed weights, `[k, block]`, those rows only.
    weights: &'a [f32],
    /// The packed weights of the block the thread computes next (empty for none), which the
    /// tiles after the first ask the CPU to fetch a part each: a layer on a small map reads its
    /// weight once from memory, and the next block's reads then overlap this block's products.
    next: &'a [f32],
    block: usize,
    /// The block's biases (zeros past the layer's last channel).
    bias: [f32; BLOCK],
    first: usize,
    channels: usize,
    epilogue: Epilogue,
    /// The block's sums between two calls, `[tiles, tile_pixels, BLOCK]`.
    partial: &'a mut [f32],
    ys: &'a mut [f32],
}

impl pulp::WithSimd for Block<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(mut self, simd: S) {
        let lanes = S::F32_LANES;
        let tile_pixels = self.tile_pixels;
        let panels = self.patches.chunks_exact(self.k * tile_pixels);
        let tiles = panels.len();
        // The tile loop's steps of [`UNROLL`] rows, each of which asks for a share.
        let steps = ((self.rows[1] - self.rows[0]) / UNROLL).max(1);
        for (tile, panel) in panels.enumerate() {
            // The tiles after the first share out the next weights (the first waits on its
            // own block's, which memory is still sending), or the only tile takes them all.
            let ahead = match (tiles, tile) {
                (0 | 1, _) => Ahead::part(self.next, 0, 1, steps),
                (_, 0) => Ahead::NONE,
                _ => Ahead::part(self.next, tile - 1, tiles - 1, steps),
            };
            let pixel = tile * tile_pixels;
            if S::REGISTER_COUNT < 32 && VECTORS_16 * lanes == self.block {
                // AVX2: the block's 16 channels over the tile's 6 pixels.
                let at = [pixel, self.first];
                self.alone::<S, PIXELS_16, PIXELS_16, VECTORS_16>(simd, panel, at, ahead);
            } else if S::REGISTER_COUNT < 32 || VECTORS * lanes != self.block {
                // Any other width (a weight packed for another path): a vector at a time.
                for first in (self.first..self.first + self.channels).step_by(lanes) {
                    let at = [pixel, first];
                    let none = Ahead::NONE;
                    if tile_pixels == PIXELS_16 {
                        self.alone::<S, PIXELS_16, PIXELS_16, 1>(simd, panel, at, none);
                    } else {
                        self.alone::<S, PIXELS, PIXELS, 1>(simd, panel, at, none);
                    }
                }
            } else {
                // 16, 32 or 48 channels (a share of a block, or the last block, may be
                // partial) of 16 lanes, over as many of the tile's pixels as there are (1, 2
                // or 4 for the last tile when fewer: a 7×7 map's 49th pixel alone).
                let at = [pixel, self.first];
                match (self.pixels - pixel, self.channels.div_ceil(lanes)) {
                    (1, 1) => self.alone::<S, PIXELS, 1, 1>(simd, panel, at, ahead),
                    (1, 2) => self.alone::<S, PIXELS, 1, 2>(simd, panel, at, ahead),
                    (1, _) => self.alone::<S, PIXELS, 1, VECTORS>(simd, panel, at, ahead),
                    (2, 1) => self.alone::<S, PIXELS, 2, 1>(simd, panel, at, ahead),
                    (2, 2) => self.alone::<S, PIXELS, 2, 2>(simd, panel, at, ahead),
                    (2, _) => self.alone::<S, PIXELS, 2, VECTORS>(simd, panel, at, ahead),
                    (3 | 4, 1) => self.alone::<S, PIXELS, 4, 1>(simd, panel, at, ahead),
                    (3 | 4, 2) => self.alone::<S, PIXELS, 4, 2>(simd, panel, at, ahead),
                    (3 | 4, _) => self.alone::<S, PIXELS, 4, VECTORS>(simd, panel, at, ahead),
                    (_, 1) => self.alone::<S, PIXELS, PIXELS, 1>(simd, panel, at, ahead),
                    (_, 2) => self.alone::<S, PIXELS, PIXELS, 2>(simd, panel, at, ahead),
                    _ => self.alone::<S, PIXELS, PIXELS, VECTORS>(simd, panel, at, ahead),
                }
            }
        }
    }
}

impl<'a> Block<'a> {
    /// [`Block::tile`] in a function of its own, at `simd`'s level: inside the function that
    /// holds every tile's shape the compiler kept some of a tile's sums in memory, loading and
    /// storing them at every row.
    #[inline(never)]
    fn alone<S: pulp::Simd, const P: usize, const R: usize, const V: usize>(
        &mut self,
        simd: S,
        panel: &[f32],
        at: [usize; 2],
        ahead: Ahead<'_>,
    ) {
        simd.vectorize(Tile::<P, R, V> {
            block: self,
            panel,
            at,
            ahead,
        });
    }
}

/// One tile of a [`Block`], as an operation for [`Block::alone`].
struct Tile<'t, 'a, const P: usize, const R: usize, const V: usize> {
    block: &'t mut Block<'a>,
    panel: &'t [f32],
    at: [usize; 2],
    ahead: Ahead<'t>,
}

impl<const P: usize, const R: usize, const V: usize> pulp::WithSimd for Tile<'_, '_, P, R, V> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        self.block
            .tile::<S, P, R, V>(simd, self.panel, self.at, self.ahead);
    }
}

impl Block<'_> {
    /// Output pixels `pixel..pixel + R` (the tile's first `R`, the panel's first columns) of
    /// channels `first..first + V · lanes`, `[pixel, first]`: `R × V` sums in registers over the
    /// panel's `k` rows, asking for `ahead`'s weights on the way.
    #[inline(always)]
    fn tile<S: pulp::Simd, const P: usize, const R: usize, const V: usize>(
        &mut self,
        simd: S,
        panel: &[f32],
        [pixel, first]: [usize; 2],
        ahead: Ahead<'_>,
    ) {
        let lanes = S::F32_LANES;
        let [start, end] = self.rows;
        // The tile's sums so far, pixel by pixel, `[P, BLOCK]`.
        let partial = pixel * BLOCK;
        let mut acc: [[S::f32s; V]; R] = if start == 0 {
            let bias: [S::f32s; V] =
                std::array::from_fn(|v| load::<S>(&self.bias[first + v * lanes..]));
            [bias; R]
        } else {
            std::array::from_fn(|r| {
                let sums = &self.partial[partial + r * BLOCK + first..];
                std::array::from_fn(|v| load::<S>(&sums[v * lanes..]))
            })
        };
        // The weights as vectors, `per_row` a row (the block's width is a whole number of
        // vectors on every path), of which the tile takes `V` from vector `offset`; a tile of
        // the block's whole width is summed with both known when compiled.
        let (weights, _) = S::as_simd_f32s(self.weights);
        let per_row = self.block / lanes;
        let offset = first / lanes;
        let panel = panel.get(start * P..end * P).unwrap_or(&[]);
        if offset == 0 && per_row == V {
            sum_rows::<S, P, R, V>(simd, &mut acc, panel, weights, [V, 0], ahead);
        } else {
            sum_rows::<S, P, R, V>(simd, &mut acc, panel, weights, [per_row, offset], ahead);
        }
        if end < self.k {
            for (r, sums) in acc.into_iter().enumerate() {
                let to = &mut self.partial[partial + r * BLOCK + first..];
                for (v, sum) in sums.into_iter().enumerate() {
                    store::<S>(&mut to[v * lanes..], sum);
                }
            }
            return;
        }
        // The tile's sums are pixel-major; the output is channel-major: each vector goes out a
        // lane at a time, through the activation there. (The activation's vector constants,
        // kept in registers across the loop above, pushed one of its 24 sums to the stack: a
        // store and a load in every step, 5–6 % of a 3×3 layer on a 7×7 map.)
        let mut lanes_out = [0.0f32; 16];
        for (r, sums) in acc.into_iter().enumerate() {
            let p = pixel + r;
            if p >= self.pixels {
                break;
            }
            let Epilogue {
                activation,
                residual,
            } = self.epilogue;
            for (v, sum) in sums.into_iter().enumerate() {
                // The vector's channels, counted from the share's first.
                let channel = first + v * lanes - self.first;
                let count = lanes.min(self.channels.saturating_sub(channel));
                if residual {
                    store::<S>(&mut lanes_out, sum);
                    for (j, &value) in lanes_out[..count].iter().enumerate() {
                        let y = &mut self.ys[(channel + j) * self.pixels + p];
                        *y = activation.of(*y + value);
                    }
                } else {
                    store::<S>(&mut lanes_out, sum);
                    for (j, &value) in lanes_out[..count].iter().enumerate() {
                        self.ys[(channel + j) * self.pixels + p] = activation.of(value);
                    }
                }
            }
        }
    }
}

/// Adds to `acc` the products of each row of the `panel` (`P` values a row, of which the tile's
/// `R` pixels take the first) with the same row of the `weights` (`per_row` vectors a row, of
/// which the tile's `V` start at vector `offset`), asking for a part of `ahead`'s weights every
/// [`UNROLL`] rows.
#[inline(always)]
fn sum_rows<S: pulp::Simd, const P: usize, const R: usize, const V: usize>(
    simd: S,
    acc: &mut [[S::f32s; V]; R],
    panel: &[f32],
    weights: &[S::f32s],
    [per_row, offset]: [usize; 2],
    ahead: Ahead<'_>,
) {
    if R > P || offset + V > per_row {
        return;
    }
    let groups = panel
        .chunks_exact(UNROLL * P)
        .zip(weights.chunks_exact(UNROLL * per_row));
    let whole = groups.len();
    for (group, (values, weights)) in groups.enumerate() {
        ahead.row(group);
        for u in 0..UNROLL {
            let values = &values[u * P..u * P + R];
            row_step::<S, R, V>(simd, acc, values, &weights[u * per_row + offset..][..V]);
        }
    }
    let values = panel.get(whole * UNROLL * P..).unwrap_or(&[]);
    let weights = weights.get(whole * UNROLL * per_row..).unwrap_or(&[]);
    for (values, weights) in values.chunks_exact(P).zip(weights.chunks_exact(per_row)) {
        row_step::<S, R, V>(simd, acc, &values[..R], &weights[offset..offset + V]);
    }
}

/// One row of a tile's sums: `acc[r][v] += values[r] · weights[v]` for its `R` pixels' values
/// and `V` weight vectors (slices of those lengths).
#[inline(always)]
fn row_step<S: pulp::Simd, const R: usize, const V: usize>(
    simd: S,
    acc: &mut [[S::f32s; V]; R],
    values: &[f32],
    weights: &[S::f32s],
) {
    let (Ok(values), Ok(weights)) = (
        <&[f32; R]>::try_from(values),
        <&[S::f32s; V]>::try_from(weights),
    ) else {
        return;
    };
    for (sums, &value) in acc.iter_mut().zip(values) {
        let value = simd.splat_f32s(value);
        for (sum, &weight) in sums.iter_mut().zip(weights) {
            *sum = simd.mul_add_e_f32s(value, weight, *sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{Activation, ConvCase};

    #[test]
    fn every_output_sums_its_window_over_every_input_channel() {
        // (in, out, kernel, stride, padding, dilation, h, w): 7x7 and 14x14 maps, a partial
        // last tile and channel block, 16 and 32 channels, strides 2 and 3, dilation, 5x5, and
        // rows enough (1440) for two parts of the AVX-512 packing.
        for (cin, cout, k, stride, padding, dilation, h, w) in [
            (16, 48, 3, 1, 1, 1, 7, 7),
            (160, 100, 3, 1, 1, 1, 7, 7),
            (24, 130, 3, 1, 1, 1, 14, 14),
            (16, 16, 3, 2, 1, 1, 15, 15),
            (20, 32, 5, 1, 2, 1, 9, 11),
            (17, 40, 3, 3, 0, 2, 13, 10),
        ] {
            let s = ConvShape::square(cin, cout, k, stride, padding, dilation);
            let case = ConvCase::new(s, [h, w]);
            let [ho, wo] = case.out_hw();
            let activation = Activation::Relu6;
            // Each packing (AVX-512's blocks, AVX2's) on each vector path.
            let levels = ["dispatched", "avx2", "scalar"];
            for (block, level) in [BLOCK, BLOCK_16]
                .into_iter()
                .flat_map(|b| levels.map(|l| (b, l)))
            {
                let packed = pack(&case.s, &case.weight, block);
                let operands = Operands {
                    weight: &packed,
                    bias: &case.bias,
                    activation,
                    residual: false,
                };
                let mut y = vec![f32::NAN; cout * ho * wo];
                let run = |block: Block<'_>| match level {
                    #[cfg(target_arch = "x86_64")]
                    "avx2" => match pulp::x86::V3::try_new() {
                        Some(simd) => pulp::Simd::vectorize(simd, block),
                        None => pulp::Simd::vectorize(pulp::Scalar::new(), block),
                    },
                    "scalar" => pulp::Simd::vectorize(pulp::Scalar::new(), block),
                    _ => dispatch(block),
                };
                // One to three threads: with more than one, blocks of 48 are shared out cut;
                // the rows in the parts the layer's size gives, and in parts of 7.
                let parts: [fn(usize, usize, usize) -> usize; 2] = [chunk_rows, |_, _, _| 7];
                for (threads, part_rows) in (1..=3).flat_map(|t| parts.map(|p| (t, p))) {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .expect("a pool");
                    y.fill(f32::NAN);
                    pool.install(|| {
                        forward_on(
                            &case.s,
                            block,
                            operands,
                            &case.x,
                            [h, w],
                            [ho, wo],
                            &mut y,
                            part_rows,
                            run,
                        )
                    })
                    .expect("runs");
                    let rows = part_rows(case.s.patch_len(), 1, block);
                    let what =
                        format!("blocks of {block}, {level}, {threads} threads, parts of {rows}");
                    case.check(&y, activation, &what);
                }
            }
        }
    }

    #[test]
    fn threads_get_as_many_channels_each_cut_where_blocks_end() {
        let share = |block, first, channels| Share {
            block,
            first,
            channels,
        };
        // 512 channels in blocks of 48 on two threads: 256 each, block 5 cut after 16.
        let two = shares(512, BLOCK, 2);
        assert_eq!(two.len(), 2);
        assert!(
            two.iter()
                .all(|group| { group.iter().map(|s| s.channels).sum::<usize>() == 256 })
        );
        assert_eq!(two[0][5], share(5, 0, 16));
        assert_eq!(two[1][0], share(5, 16, 32));
        assert_eq!(two[1].last(), Some(&share(10, 0, 32)));
        // One thread: whole blocks; blocks of 16 are never cut.
        assert_eq!(
            shares(130, BLOCK, 1),
            vec![vec![share(0, 0, 48), share(1, 0, 48), share(2, 0, 34)]]
        );
        assert!(
            shares(96, BLOCK_16, 4)
                .iter()
                .flatten()
                .all(|s| s.first == 0 && s.channels == 16)
        );
        // Every channel once, in order, for any count of threads.
        for threads in 1..=5 {
            let mut next = 0;
            for s in shares(130, BLOCK, threads).into_iter().flatten() {
                assert_eq!(s.block * BLOCK + s.first, next);
                assert!(s.first + s.channels <= BLOCK);
                next += s.channels;
            }
            assert_eq!(next, 130);
        }
    }

    #[test]
    fn mismatched_operands_are_refused() {
        let s = ConvShape {
            in_channels: 16,
            out_channels: 8,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
        };
        let packed = pack(&s, &[0.0; 8 * 16 * 9], BLOCK);
        let bias = [0.0; 8];
        let mut y = vec![0.0; 8 * 16];
        let run = |x: &[f32], y: &mut [f32], out: [usize; 2]| {
            let operands = Operands {
                weight: &packed,
                bias: &bias,
                activation: Activation::Identity,
                residual: false,
            };
            forward(&s, BLOCK, operands, x, [4, 4], out, y)
        };
        assert!(run(&[0.0; 16 * 16], &mut y, [4, 4]).is_ok());
        assert!(run(&[0.0; 15 * 16], &mut y, [4, 4]).is_err());
        assert!(run(&[0.0; 16 * 16], &mut y[..100], [4, 4]).is_err());
        assert!(run(&[0.0; 16 * 16], &mut y, [2, 8]).is_err());
        // The weight was packed in blocks of 48, not 16.
        let operands = Operands {
            weight: &packed,
            bias: &bias,
            activation: Activation::Identity,
            residual: false,
        };
        let x = [0.0; 16 * 16];
        assert!(forward(&s, BLOCK_16, operands, &x, [4, 4], [4, 4], &mut y).is_err());
    }
}
