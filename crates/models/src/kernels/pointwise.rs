//! 1×1 convolutions without padding (ResNet's bottlenecks, MobileNetV2's expansions and
//! projections, GoogLeNet's reductions): `y[o, p] = bias[o] + Σ_c weight[o, c] · x[c, p]`
//! straight from the NCHW input into the NCHW output, with the bias and the activation applied
//! as the sums leave the registers. A strided layer first gathers every stride-th pixel.
//!
//! The weight is packed once, at load, as [`CHANNELS`] output channels side by side per input
//! channel. A tile of [`CHANNELS`] output channels × [`VECTORS`] vectors of pixels is summed
//! over every input channel in registers (with AVX2's 16 registers, [`CHANNELS_16`] channels ×
//! [`VECTORS_16`] vectors at a time): each input vector loaded feeds every channel of the tile,
//! each weight broadcast feeds every vector. The pixels are cut into chunks whose input columns
//! stay in the core's cache while every block of output channels reads them, packed tile by
//! tile so that a tile's loads run through memory in order; chunks go to threads (for few
//! chunks, a share of the pixels or of the output channels each). Where the layer has one
//! chunk (small maps, where each weight comes once from memory), the tiles of a block ask the
//! CPU for the next block's weights while they multiply ([`Ahead`]).
//!
//! Against the product it replaces (`[out, in] × [in, pixels]` through `gemm`, which packs
//! both operands on every call, and passes over the output for the bias and the activation):
//! see `docs/EXPERIMENTS.md`, "Fast kernels".

use rayon::prelude::*;

use super::plane::{Epilogue, store_block};
use super::prefetch::{Ahead, LINE};
use super::scratch::Scratch;
use super::vector::{copy_row, dispatch, load};
use super::{Activation, ConvShape, Operands, ShapeError, bands_of_planes, interleave_channels};

/// Output channels a tile sums together; the packed weight holds this many side by side.
pub(crate) const CHANNELS: usize = 8;

/// Output channels a tile sums together where the CPU has 16 vector registers (AVX2): with
/// [`VECTORS_16`] vectors, 12 sums, one register for the weight and two for the inputs. A tile
/// starts at channel 0, 2, 4 or 6 of its block and may run on into the next; its weights are
/// broadcast one at a time, so they need not lie side by side. Against two tiles of 4 channels
/// (8 sums, as many as the multiply-adds in flight need), machine D (AVX2, one thread,
/// in-pass): the 1×1 layers of five zoo models summed 61.2 → 59.4 ms, ResNet-50's stem 2.9 →
/// 2.7 ms.
const CHANNELS_16: usize = 6;

/// Pixel vectors a tile sums per output channel where the CPU has 32 vector registers
/// (AVX-512): with [`CHANNELS`] channels, 24 sums in registers.
pub(crate) const VECTORS: usize = 3;

/// Pixel vectors a tile sums per output channel with 16 vector registers (AVX2): with
/// [`CHANNELS_16`] channels, 12 sums, which leave the compiler room for the inputs and a
/// weight (3 vectors of 4 channels spilled one sum to the stack, a store and a load in every
/// step of its sum).
pub(crate) const VECTORS_16: usize = 2;

/// Pixels per chunk are a multiple of this: a whole number of tiles on every vector path
/// (16 lanes × [`VECTORS`], 8 or 1 lanes × [`VECTORS_16`]), unless a map's pixels split
/// between threads ([`SPLIT_STEP`]).
const CHUNK_STEP: usize = 48;

/// Pixels per chunk where a map's pixels split between threads ([`splits_pixels`]): a vector
/// on every path.
const SPLIT_STEP: usize = 16;

/// A chunk's input columns take at most about this many bytes, so that they stay in the
/// core's cache (L2) while every block of output channels reads them.
const CHUNK_BYTES: usize = 192 << 10;

/// [`CHUNK_BYTES`] for a lone thread and a weight larger than [`CHUNK_BYTES`]: each chunk reads
/// the whole weight, so fewer, larger chunks read it fewer times. (On more threads they would
/// leave fewer chunks than tasks, and blocks split into parts that each pack their chunk
/// again; a small weight costs less to read again than the larger chunk's cache misses.)
/// Machine A (2 MiB L2), one thread, in-pass: ResNet-50's 1×1 layers summed 30.5 → 28.7 ms at
/// 512 KiB for every layer (1 MiB: 29.6), two threads 31.9 → 33.8–34.1, and MobileNetV2's
/// projections on large maps, whose weights are a few KB, 10–20 % slower.
const CHUNK_BYTES_ALONE: usize = 512 << 10;

/// Channel blocks a task has at most for its whole tiles to read their columns straight from
/// the input's rows, a row a plane apart, rather than from a packed copy: the copy costs a
/// read and a write of every column, which few blocks do not repay. With 32 vector registers.
/// Machine D (AVX-512), one thread, eight stacked layers: 32 → 16 on 112×112 0.166 → 0.141 ms,
/// 96 → 24 on 56×56 0.159 → 0.138, 256 → 64 on 56×56 1.01 → 0.97, 192 → 64 on 28×28 0.186 →
/// 0.175; at 12 blocks (16 → 96 on 112×112) 0.48 → 0.56. But for rows that alias in the
/// first-level cache ([`rows_alias`]).
const DIRECT_BLOCKS: usize = 8;

/// Tiles of a chunk from which its columns are packed tile by tile with 32 vector registers
/// ([`packs_tile_by_tile`]), each tile's rows written in order; fewer are packed input channel
/// by input channel, each input row read once in order. Machine D (AVX-512), packing alone:
/// 576 channels of 196 pixels (12 tiles) 0.017 → 0.012 ms tile by tile, 192 of 784 0.031 →
/// 0.015; 960 of 49 (3 tiles) 0.0033 → 0.0049.
const TILE_BY_TILE: usize = 4;

/// Whether a chunk of `tiles` packed tiles is packed tile by tile: with 32 vector registers,
/// from [`TILE_BY_TILE`] tiles on. With 16 (AVX2), whose tiles are one cache line of every
/// input row wide, always input channel by input channel: tile by tile, each tile reads a line
/// from every row, a plane apart, and inside a pass (the input coming from memory) the CPU's
/// prefetchers do not follow so many strided runs; input channel by input channel each row's
/// run is read once, in order. Machine A with AVX2 forced, in-pass, medians of 3 alternating
/// processes: one thread, ResNet-50's 256 → 64 layers on 56×56 1.31 → 1.17–1.20 ms, its pass
/// 91.6 → 89.3, GoogLeNet's layers summed 32.7 → 31.4; two threads, ResNet-50's 1×1 layers on
/// 56×56 0.89–0.93× and its layers summed 49.9 → 48.5. On AVX-512 the same change made
/// ResNet-50's 1×1 layers on 28×28 and 14×14 (512 and 1024 input rows) 1.07–1.15× slower on two
/// threads, so its tiles stay tile by tile.
#[inline(always)]
fn packs_tile_by_tile<S: pulp::Simd>(tiles: usize) -> bool {
    S::REGISTER_COUNT >= 32 && tiles >= TILE_BY_TILE
}

/// [`DIRECT_BLOCKS`] with 16 vector registers (AVX2): 32 → 16 on 112×112 0.177 → 0.142 ms,
/// 96 → 24 on 56×56 the same (0.181 → 0.180), 192 → 64 on 28×28 0.207 → 0.228, 256 → 64 on
/// 56×56 1.13 → 1.08. With tiles of [`CHANNELS_16`] channels, MobileNetV2's projections on
/// 56×56 and 28×28 took the same at 1, 2 or 4 blocks (0.17–0.19 and 0.087–0.098 ms).
const DIRECT_BLOCKS_16: usize = 2;

/// Output channels a tile sums together with the vector registers of `S`: a whole block
/// ([`CHANNELS`]) with 32, [`CHANNELS_16`] with 16.
#[inline(always)]
pub(crate) fn tile_channels<S: pulp::Simd>() -> usize {
    if S::REGISTER_COUNT < 32 {
        CHANNELS_16
    } else {
        CHANNELS
    }
}

/// Bytes of weight above which AVX2's tiles ask for the next block's weights ahead of use
/// ([`asks_ahead`]): more than a large core's second-level cache holds, so that the weights
/// come from memory. Machine D (AVX2, one thread, in-pass), ResNet-50's 7×7 layers of 4 MiB
/// 1.48 → 1.25 ms; its 14×14 layers of 1 MiB 1.12 → 1.15 with the requests.
const AHEAD_BYTES_16: usize = 2 << 20;

/// Whether a layer of `weight_len` packed weights on the vector registers of `S` asks for the
/// next block's weights while its tiles multiply (where it has one chunk): always with 32
/// registers, and with 16 for a weight of more than [`AHEAD_BYTES_16`]. (AVX2's tiles of 4
/// channels lost more to the requests than they gained on every layer.)
#[inline(always)]
fn asks_ahead<S: pulp::Simd>(weight_len: usize) -> bool {
    S::REGISTER_COUNT >= 32 || 4 * weight_len > AHEAD_BYTES_16
}

/// Whether a task of `blocks` channel blocks over `cin` input rows of `pixels` values packs
/// its tiles' columns although it has few blocks: where a tile's rows, a plane apart, start on
/// few of the first-level cache's 64 sets (a plane a multiple of 4 cache lines: a 56×56
/// plane is 196 lines, so 256 rows start on 16 sets, 16 rows on each, more than its ways
/// hold) and the task reads them often enough to repay the copy (more than 4 blocks over
/// more than [`ALIASING_ROWS`] input channels). With 32 vector registers. Machine A, one
/// thread, in-pass: ResNet-50's 256 → 64 layers on 56×56 0.977 → 0.849 ms (two threads 0.572 →
/// 0.473); rows of 28×28 and 14×14 planes start on every set, and GoogLeNet's 480 → 64 on
/// 14×14 packed took 0.084 → 0.097.
#[inline(always)]
fn rows_alias<S: pulp::Simd>(cin: usize, pixels: usize, blocks: usize) -> bool {
    S::REGISTER_COUNT >= 32 && blocks > 4 && cin > ALIASING_ROWS && pixels % (4 * LINE) == 0
}

/// Input channels above which a few-block task whose rows alias packs its columns
/// ([`rows_alias`]): a tile's 3 vectors of that many rows fill the 32 KiB the tile reads from
/// in the first-level cache.
const ALIASING_ROWS: usize = 170;

/// [`DIRECT_BLOCKS`] for the vector registers of `S`.
#[inline(always)]
fn direct_blocks<S: pulp::Simd>() -> usize {
    if S::REGISTER_COUNT < 32 {
        DIRECT_BLOCKS_16
    } else {
        DIRECT_BLOCKS
    }
}

/// Whether a layer of `cout` output channels over `pixels` pixels, with too few chunks for
/// `threads` threads, gives each thread its own share of the pixels (each then packs only its
/// own columns and reads the whole weight) rather than a share of the channels (each then
/// reads its share of the weight and packs every column): where the weight is the smaller
/// read (fewer output channels than twice the pixels) and each thread gets a tile's worth of
/// pixels. Machine A, two threads, in-pass: GoogLeNet's layers summed 14.5 → 13.4 ms
/// (inception3a.branch1, 192 → 64 on 28×28, 0.130 → 0.101 ms; inception4b.branch1, 512 → 160
/// on 14×14, 0.199 → 0.153); ResNet-50 and MobileNetV2 within the noise; splitting 7×7 maps
/// too made GoogLeNet's inception5 layers up to 1.8× slower.
fn splits_pixels(cout: usize, pixels: usize, threads: usize) -> bool {
    cout < 2 * pixels && pixels >= threads * CHUNK_STEP
}

/// PyTorch's `[out, in, 1, 1]` weight as `[⌈out / CHANNELS⌉, in, CHANNELS]` (zeros past the
/// last channel).
pub(crate) fn pack(s: &ConvShape, weight: &[f32]) -> Vec<f32> {
    interleave_channels(weight, s.in_channels, CHANNELS)
}

/// Whether [`forward`] computes a convolution of shape `s`: 1×1, no padding, no dilation
/// that matters (a 1×1 kernel has no gaps), any stride.
pub(crate) fn suits(s: &ConvShape) -> bool {
    s.kernel == [1, 1] && s.padding == [0, 0]
}

/// One sample: `y` (`[out, ho, wo]`) from `sample` (`[in, h, w]`), with the weight from
/// [`pack`], the bias and the activation.
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
    let (cin, cout, pixels) = (s.in_channels, s.out_channels, ho * wo);
    let groups = cout.div_ceil(CHANNELS);
    if !suits(s)
        || s.output(h, w) != Some([ho, wo])
        || sample.len() != cin * h * w
        || y.len() != cout * pixels
        || weight.len() != groups * cin * CHANNELS
        || bias.len() != cout
    {
        return Err(ShapeError(format!(
            "a 1x1 convolution of {cin} to {cout} channels cannot take {} inputs of {h}x{w}, {} \
             weights and {} biases into {} outputs of {ho}x{wo}",
            sample.len(),
            weight.len(),
            bias.len(),
            y.len()
        )));
    }
    if pixels == 0 || cout == 0 {
        return Ok(());
    }
    let gathered;
    let x = if s.stride == [1, 1] {
        sample
    } else {
        gathered = gather(sample, cin, [h, w], s.stride, [ho, wo]);
        &gathered[..]
    };
    // As few chunks as the cache budget allows, of equal size rounded up to whole tiles (no
    // sliver of a chunk, which would read the whole weight again for a few pixels).
    let threads = rayon::current_num_threads().max(1);
    let bytes = if threads == 1 && 4 * weight.len() > CHUNK_BYTES {
        CHUNK_BYTES_ALONE
    } else {
        CHUNK_BYTES
    };
    let budget = (bytes / 4 / cin.max(1)).max(CHUNK_STEP);
    let mut chunk = pixels
        .div_ceil((pixels / budget).max(1))
        .div_ceil(CHUNK_STEP)
        * CHUNK_STEP;
    let mut chunks = pixels.div_ceil(chunk);
    // Enough tasks for every thread (twice over, to even out their ends). For fewer chunks,
    // either the pixels split between the threads ([`splits_pixels`]) or each chunk's channel
    // blocks split into parts, each of which packs its chunk's columns again. A lone thread
    // takes whole chunks.
    let wanted = if threads == 1 { 1 } else { 2 * threads };
    let parts = if chunks >= wanted {
        1
    } else if splits_pixels(cout, pixels, threads) {
        chunk = pixels.div_ceil(threads).div_ceil(SPLIT_STEP) * SPLIT_STEP;
        chunks = pixels.div_ceil(chunk);
        1
    } else {
        wanted.div_ceil(chunks).min(groups)
    };
    let groups_per_part = groups.div_ceil(parts);
    let mut tasks: Vec<Task<'_>> = Vec::with_capacity(chunks * parts);
    for (c, mut rows) in bands_of_planes(y, pixels, chunk).into_iter().enumerate() {
        let mut first_group = 0;
        while !rows.is_empty() {
            let rest = rows.split_off((groups_per_part * CHANNELS).min(rows.len()));
            tasks.push(Task {
                first_pixel: c * chunk,
                first_group,
                rows,
            });
            first_group += groups_per_part;
            rows = rest;
        }
    }
    // Part by part, so that the threads splitting the list between them each take whole parts:
    // a part's weights then stay in one core's cache across the chunks.
    tasks.sort_by_key(|task| (task.first_group, task.first_pixel));
    tasks.into_par_iter().for_each(|task| {
        dispatch(Chunk {
            x,
            cin,
            pixels,
            weight,
            bias,
            activation,
            residual,
            ahead: chunks == 1,
            task,
        })
    });
    Ok(())
}

/// Every `stride`-th pixel of every channel of `sample` (`[in, h, w]`), as `[in, ho, wo]`,
/// plane by plane on every thread.
fn gather(
    sample: &[f32],
    cin: usize,
    [h, w]: [usize; 2],
    [sh, sw]: [usize; 2],
    [ho, wo]: [usize; 2],
) -> Scratch {
    let mut out = Scratch::take(cin * ho * wo);
    out.par_chunks_exact_mut(ho * wo)
        .zip(sample.par_chunks_exact(h * w))
        .for_each(|(dst, plane)| {
            for (row, dst) in plane
                .chunks_exact(w)
                .step_by(sh)
                .zip(dst.chunks_exact_mut(wo))
            {
                for (d, &v) in dst.iter_mut().zip(row.iter().step_by(sw)) {
                    *d = v;
                }
            }
        });
    out
}

/// One thread's share: output channel blocks `first_group..` (as many as `rows` holds, the
/// last perhaps partial) over the pixels of one chunk starting at `first_pixel`; `rows` is
/// each of those channels' part of its output plane.
struct Task<'a> {
    first_pixel: usize,
    first_group: usize,
    rows: Vec<&'a mut [f32]>,
}

/// A task with what it reads: the (gathered) input `x`, `[cin, pixels]`, the packed weight,
/// the bias, the activation and whether the rows hold a residual to add before it.
struct Chunk<'a> {
    x: &'a [f32],
    cin: usize,
    pixels: usize,
    weight: &'a [f32],
    bias: &'a [f32],
    activation: Activation,
    residual: bool,
    /// Whether each block's tiles ask for the next block's weights ahead of use: where the
    /// layer has one chunk, every weight comes once from memory.
    ahead: bool,
    task: Task<'a>,
}

impl pulp::WithSimd for Chunk<'_> {
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

impl Chunk<'_> {
    /// The task, in tiles of `V` vectors of pixels.
    #[inline(always)]
    fn run<S: pulp::Simd, const V: usize>(self, simd: S) {
        let Chunk {
            x,
            cin,
            pixels,
            weight,
            bias,
            activation,
            residual,
            ahead,
            mut task,
        } = self;
        let lanes = S::F32_LANES;
        let tile = V * lanes;
        let len = task.rows.first().map_or(0, |r| r.len());
        let whole = len / tile;
        let tail = len - whole * tile;
        // A few last pixels go apart ([`Tiles::lone_pixels`], [`Tiles::lone_across`]) rather
        // than as a tile of whole vectors that would be mostly empty.
        let lone = tail > 0 && 2 * tail <= lanes && lanes >= CHANNELS;
        let tail_vectors = if lone { 0 } else { tail.div_ceil(lanes) };
        // The chunk's input columns, packed tile by tile as `[in, tile]` rows of whole vectors
        // (zeros past the plane's end in the last, partial tile): every load of a tile's sums
        // follows the one before in memory. For a task of few channel blocks, only the last,
        // partial tile: the whole tiles read their columns straight from the input's rows.
        let blocks = task.rows.len().div_ceil(CHANNELS);
        let direct = blocks <= direct_blocks::<S>() && !rows_alias::<S>(cin, pixels, blocks);
        let packed_tiles = if direct { 0 } else { whole };
        let mut packed = Scratch::take(cin * (packed_tiles * tile + tail_vectors * lanes));
        let (full, last) = packed.split_at_mut(cin * packed_tiles * tile);
        let rows = || {
            x.chunks_exact(pixels)
                .map(|row| &row[task.first_pixel..task.first_pixel + len])
        };
        if packs_tile_by_tile::<S>(packed_tiles) {
            for (t, packed_rows) in full.chunks_exact_mut(cin * tile).enumerate() {
                for (dst, row) in packed_rows.chunks_exact_mut(tile).zip(rows()) {
                    copy_row(simd, dst, &row[t * tile..(t + 1) * tile]);
                }
            }
        } else {
            for (c, row) in rows().enumerate() {
                for (t, columns) in row.chunks_exact(tile).take(packed_tiles).enumerate() {
                    let at = (t * cin + c) * tile;
                    copy_row(simd, &mut full[at..at + tile], columns);
                }
            }
        }
        if tail_vectors > 0 {
            for (dst, row) in last.chunks_exact_mut(tail_vectors * lanes).zip(rows()) {
                let (values, zeros) = dst.split_at_mut(tail);
                copy_row(simd, values, &row[whole * tile..]);
                zeros.fill(0.0);
            }
        }
        // The lone pixels' input values. Where a vector holds more than a block's channels, each
        // pixel's values, each repeated for every channel of a block (`[tail, in, CHANNELS]`);
        // where it holds one block, the pixels' columns side by side (`[in, tail]`), to be
        // broadcast.
        let spreads = lone && lanes > CHANNELS;
        let first_lone = task.first_pixel + whole * tile;
        let lone_len = match (lone, spreads) {
            (false, _) => 0,
            (true, true) => tail * cin * CHANNELS,
            (true, false) => tail * cin,
        };
        let mut lone_inputs = Scratch::take(lone_len);
        if spreads {
            for (p, values) in lone_inputs.chunks_exact_mut(cin * CHANNELS).enumerate() {
                for (c, dst) in values.chunks_exact_mut(CHANNELS).enumerate() {
                    dst.fill(x[c * pixels + first_lone + p]);
                }
            }
        } else if lone {
            for (dst, row) in lone_inputs
                .chunks_exact_mut(tail)
                .zip(x.chunks_exact(pixels))
            {
                dst.copy_from_slice(&row[first_lone..first_lone + tail]);
            }
        }
        let per_group = cin * CHANNELS;
        let first_channel = task.first_group * CHANNELS;
        let epilogue = (activation, residual);
        let step = tile_channels::<S>();
        let channels = task.rows.len();
        // Blocks whose lone pixels are summed: each as soon as its last run is done, while its
        // weights are still in the cache.
        let mut lone_blocks = 0;
        for start in (0..channels).step_by(step) {
            let end = (start + step).min(channels);
            let first = first_channel + start;
            // The block after the run's last.
            let next_block = (first_channel + end - 1) / CHANNELS + 1;
            let next = match weight.get(next_block * per_group..(next_block + 1) * per_group) {
                Some(next) if ahead && asks_ahead::<S>(weight.len()) => next,
                _ => &[],
            };
            let rows = &mut task.rows[start..end];
            let mut tiles = Tiles::at(weight, bias, first, cin, epilogue, rows);
            if direct {
                for t in 0..whole {
                    let ahead = Ahead::part(next, t, whole, cin);
                    let at = task.first_pixel + t * tile;
                    let columns = x.chunks_exact(pixels).map(|row| &row[at..at + tile]);
                    tiles.run::<S, V>(simd, Rows(columns), t * tile, tile, ahead);
                }
            } else {
                for (t, columns) in full.chunks_exact(cin * tile).enumerate() {
                    let ahead = Ahead::part(next, t, whole, cin);
                    tiles.run::<S, V>(simd, Packed(columns), t * tile, tile, ahead);
                }
            }
            if tail_vectors > 0 {
                tiles.run_width::<S, V>(simd, last, whole * tile, tail);
            }
            while lone
                && lone_blocks * CHANNELS < channels
                && ((lone_blocks + 1) * CHANNELS <= end || end == channels)
            {
                let block = lone_blocks * CHANNELS..((lone_blocks + 1) * CHANNELS).min(channels);
                let rows = &mut task.rows[block.clone()];
                let tiles = Tiles::at(
                    weight,
                    bias,
                    first_channel + block.start,
                    cin,
                    epilogue,
                    rows,
                );
                if spreads {
                    tiles.lone_pixels(simd, &lone_inputs, whole * tile);
                } else {
                    tiles.lone_across(simd, &lone_inputs, whole * tile);
                }
                lone_blocks += 1;
            }
        }
    }
}

/// One pixel's sums for one block of output channels, from the block's packed `weights`
/// (`[in, CHANNELS]`) and the pixel's input values each repeated `CHANNELS` times (`spread`,
/// `[in, CHANNELS]`): the two multiplied a vector at a time (a vector holds `lanes / CHANNELS`
/// input channels), in four independent sums, whose lanes are then added channel by channel.
/// Per pixel and block, `in · CHANNELS / lanes` multiply-adds, where a tile of one vector of
/// pixels takes `in · CHANNELS` whatever the pixels it holds.
#[inline(always)]
fn lone_pixel<S: pulp::Simd>(simd: S, weights: &[f32], spread: &[f32]) -> [f32; CHANNELS] {
    let lanes = S::F32_LANES;
    let step = 4 * lanes;
    let mut acc = [simd.splat_f32s(0.0); 4];
    let whole = weights.len() / step * step;
    for (w, x) in weights[..whole]
        .chunks_exact(step)
        .zip(spread[..whole].chunks_exact(step))
    {
        for (j, sum) in acc.iter_mut().enumerate() {
            let at = j * lanes;
            *sum = simd.mul_add_e_f32s(load::<S>(&w[at..]), load::<S>(&x[at..]), *sum);
        }
    }
    let mut rest = whole;
    while rest + lanes <= weights.len() {
        let (w, x) = (load::<S>(&weights[rest..]), load::<S>(&spread[rest..]));
        acc[0] = simd.mul_add_e_f32s(w, x, acc[0]);
        rest += lanes;
    }
    let total = simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3]));
    let mut folded = [0.0f32; 16];
    store_block(simd, [total], Activation::Identity, &mut folded[..lanes]);
    let mut sums = [0.0f32; CHANNELS];
    for (i, &v) in folded[..lanes].iter().enumerate() {
        sums[i % CHANNELS] += v;
    }
    for (i, (&w, &x)) in weights[rest..].iter().zip(&spread[rest..]).enumerate() {
        sums[i % CHANNELS] += w * x;
    }
    sums
}

/// Adds one input channel's terms to `P` pixels' `sums`: its block's weights, one vector, times
/// each pixel's input value broadcast (`(weights, values)`).
#[inline(always)]
fn add_across<S: pulp::Simd, const P: usize>(
    simd: S,
    sums: &mut [S::f32s; P],
    (weights, values): (&[f32], &[f32]),
) {
    let weights = load::<S>(weights);
    for (sum, &value) in sums.iter_mut().zip(values) {
        *sum = simd.mul_add_e_f32s(simd.splat_f32s(value), weights, *sum);
    }
}

/// A run of at most [`CHANNELS`] output channels, from lane `lane` of a block of the packed
/// weight on (into the next block, for a tile of [`CHANNELS_16`] from lane 4 or 6): the two
/// blocks' weights (`[in, CHANNELS]` each), the run's biases and activation, and its channels'
/// output rows (holding a residual to add before the activation where `residual` says so).
pub(crate) struct Tiles<'a, 'r> {
    /// The first channel's block, `[in, CHANNELS]`.
    pub weights: &'a [f32],
    /// The next block (the same block where there is none: the channels past the layer's last
    /// are summed and dropped).
    pub next: &'a [f32],
    /// The first channel's lane in its block: 0, 2, 4 or 6.
    pub lane: usize,
    /// The run's biases (zeros past the layer's last channel).
    pub bias: [f32; CHANNELS],
    /// Applied as the sums leave the registers.
    pub activation: Activation,
    /// Whether the rows hold a residual to add before the activation.
    pub residual: bool,
    /// The block's channels' output rows (fewer than [`CHANNELS`] for the last block).
    pub rows: &'r mut [&'a mut [f32]],
}

impl<'a, 'r> Tiles<'a, 'r> {
    /// The layer's channels from `first` (a multiple of 2) on, as many as `rows` holds: a whole
    /// block of [`CHANNELS`] from lane 0, or up to [`CHANNELS_16`] from any even lane (from
    /// lane 4 or 6 running into the next block). Their part of the packed `weight` (`[⌈out /
    /// CHANNELS⌉, k, CHANNELS]`) and of the layer's `bias`, the epilogue's `(activation,
    /// residual)`, and their output `rows`.
    pub(crate) fn at(
        weight: &'a [f32],
        bias: &[f32],
        first: usize,
        k: usize,
        (activation, residual): (Activation, bool),
        rows: &'r mut [&'a mut [f32]],
    ) -> Self {
        let block_len = k * CHANNELS;
        let start = first / CHANNELS * block_len;
        let weights = &weight[start..start + block_len];
        let next = weight
            .get(start + block_len..start + 2 * block_len)
            .unwrap_or(weights);
        let mut run_bias = [0.0; CHANNELS];
        let own = &bias[first.min(bias.len())..(first + CHANNELS).min(bias.len())];
        run_bias[..own.len()].copy_from_slice(own);
        Tiles {
            weights,
            next,
            lane: first % CHANNELS,
            bias: run_bias,
            activation,
            residual,
            rows,
        }
    }

    /// The sums of a whole block's lone pixels, from `at` on: each pixel's input values each
    /// repeated for every channel of a block (`spread`, `[in, CHANNELS]` a pixel), through
    /// [`lone_pixel`], with the bias, any residual and the activation.
    #[inline(always)]
    fn lone_pixels<S: pulp::Simd>(self, simd: S, spread: &[f32], at: usize) {
        for (p, values) in spread.chunks_exact(self.weights.len()).enumerate() {
            let sums = lone_pixel(simd, self.weights, values);
            for ((row, sum), bias) in self.rows.iter_mut().zip(sums).zip(&self.bias) {
                let shortcut = if self.residual { row[at + p] } else { 0.0 };
                row[at + p] = self.activation.of(sum + bias + shortcut);
            }
        }
    }

    /// The sums of a whole block's lone pixels (at most 4), from `at` on, where a vector holds
    /// the block's channels: their input `columns` (`[in, pixels]`). Each input channel's
    /// weights are one vector, which every pixel's input value, broadcast, multiplies. Each
    /// pixel's sums are split between interleaved input channels, so that at least 6 sums are
    /// in flight; then they are added, and stored with the bias, any residual and the
    /// activation. Per pixel and block, `in` multiply-adds with a vector of weights shared by
    /// the pixels, where [`lone_pixel`] loads two vectors for each.
    #[inline(always)]
    fn lone_across<S: pulp::Simd>(self, simd: S, columns: &[f32], at: usize) {
        match columns.len() / (self.weights.len() / CHANNELS).max(1) {
            1 => self.lone_sums::<S, 1, 6>(simd, columns, at),
            2 => self.lone_sums::<S, 2, 4>(simd, columns, at),
            3 => self.lone_sums::<S, 3, 2>(simd, columns, at),
            _ => self.lone_sums::<S, 4, 2>(simd, columns, at),
        }
    }

    /// [`Tiles::lone_across`] for `P` pixels, each pixel's sums split `H` ways.
    #[inline(always)]
    fn lone_sums<S: pulp::Simd, const P: usize, const H: usize>(
        self,
        simd: S,
        columns: &[f32],
        at: usize,
    ) {
        let mut acc = [[simd.splat_f32s(0.0); P]; H];
        // H input channels at a time, each into its own sums; then the last few into the first.
        let weights = self.weights.chunks_exact(H * CHANNELS);
        let rest = weights.remainder().chunks_exact(CHANNELS);
        let values = columns.chunks_exact(H * P);
        let rest_values = values.remainder().chunks_exact(P);
        for (weights, values) in weights.zip(values) {
            let steps = weights.chunks_exact(CHANNELS).zip(values.chunks_exact(P));
            for (sums, step) in acc.iter_mut().zip(steps) {
                add_across(simd, sums, step);
            }
        }
        for step in rest.zip(rest_values) {
            add_across(simd, &mut acc[0], step);
        }
        for p in 0..P {
            let total = acc
                .iter()
                .fold(simd.splat_f32s(0.0), |t, sums| simd.add_f32s(t, sums[p]));
            let mut sums = [0.0f32; 16];
            store_block(
                simd,
                [total],
                Activation::Identity,
                &mut sums[..S::F32_LANES],
            );
            for ((row, sum), bias) in self.rows.iter_mut().zip(sums).zip(&self.bias) {
                let shortcut = if self.residual { row[at + p] } else { 0.0 };
                row[at + p] = self.activation.of(sum + bias + shortcut);
            }
        }
    }

    /// [`Tiles::run`] for `width` outputs in as many vectors as they fill (at most `V`), from
    /// `columns` (`[in, vectors · lanes]`): a row's or a chunk's last, partial tile.
    #[inline(always)]
    pub(crate) fn run_width<S: pulp::Simd, const V: usize>(
        &mut self,
        simd: S,
        columns: &[f32],
        at: usize,
        width: usize,
    ) {
        let (lanes, columns) = (S::F32_LANES, Packed(columns));
        match width.div_ceil(lanes) {
            1 => self.run::<S, 1>(simd, columns, at, width, Ahead::NONE),
            2 => self.run::<S, 2>(simd, columns, at, width, Ahead::NONE),
            _ => self.run::<S, V>(simd, columns, at, width, Ahead::NONE),
        }
    }

    /// Computes `width` outputs (`B` vectors, the last perhaps partial) of every channel of
    /// the block, from `columns`, each input channel's `B` vectors in turn (a packed tile's
    /// rows, `[in, B · lanes]`, or the input's own rows), into the rows from `at` on, asking
    /// for `ahead`'s values on the way.
    #[inline(always)]
    pub(crate) fn run<S: pulp::Simd, const B: usize>(
        &mut self,
        simd: S,
        columns: impl Columns,
        at: usize,
        width: usize,
        ahead: Ahead<'_>,
    ) {
        let span = [at, width];
        if S::REGISTER_COUNT >= 32 {
            return self.channels::<S, 0, CHANNELS, B>(simd, columns, span, ahead);
        }
        // As few channels as hold the run's rows, each count from each lane its own loop.
        match (self.lane, self.rows.len().div_ceil(2)) {
            (0, 1) => self.channels::<S, 0, 2, B>(simd, columns, span, ahead),
            (0, 2) => self.channels::<S, 0, 4, B>(simd, columns, span, ahead),
            (0, _) => self.channels::<S, 0, 6, B>(simd, columns, span, ahead),
            (2, 1) => self.channels::<S, 2, 2, B>(simd, columns, span, ahead),
            (2, 2) => self.channels::<S, 2, 4, B>(simd, columns, span, ahead),
            (2, _) => self.channels::<S, 2, 6, B>(simd, columns, span, ahead),
            (4, 1) => self.channels::<S, 4, 2, B>(simd, columns, span, ahead),
            (4, 2) => self.channels::<S, 4, 4, B>(simd, columns, span, ahead),
            (4, _) => self.channels::<S, 4, 6, B>(simd, columns, span, ahead),
            (_, 1) => self.channels::<S, 6, 2, B>(simd, columns, span, ahead),
            (_, 2) => self.channels::<S, 6, 4, B>(simd, columns, span, ahead),
            (_, _) => self.channels::<S, 6, 6, B>(simd, columns, span, ahead),
        }
    }

    /// [`Tiles::run`] for the run's `C` channels (`[at, width]`), whose weights start at lane
    /// `LANE`: `C × B` sums in registers. Each channel's weight lies in the first block or,
    /// past its last lane, in the next.
    #[inline(always)]
    fn channels<S: pulp::Simd, const LANE: usize, const C: usize, const B: usize>(
        &mut self,
        simd: S,
        columns: impl Columns,
        [at, width]: [usize; 2],
        ahead: Ahead<'_>,
    ) {
        let span = B * S::F32_LANES;
        let mut acc: [[S::f32s; B]; C] =
            std::array::from_fn(|c| [simd.splat_f32s(self.bias[c]); B]);
        let weights = [self.weights, self.next];
        columns.add_into::<S, LANE, C, B>(simd, &mut acc, weights, ahead);
        let epilogue = Epilogue {
            activation: self.activation,
            residual: self.residual,
        };
        for (sums, row) in acc.into_iter().zip(self.rows.iter_mut()) {
            if width == span {
                epilogue.store(simd, sums, &mut row[at..at + span]);
            } else {
                let mut block = [0.0f32; VECTORS * 16];
                if self.residual {
                    block[..width].copy_from_slice(&row[at..at + width]);
                }
                epilogue.store(simd, sums, &mut block[..span]);
                row[at..at + width].copy_from_slice(&block[..width]);
            }
        }
    }
}

/// Where a tile reads its input channels' columns from: each input channel's `B` vectors in
/// turn.
pub(crate) trait Columns {
    /// Adds every input channel's terms to a tile's `C × B` sums (through [`add_row`]), with the
    /// run's two blocks of `weights` (`[in, CHANNELS]` each), asking for `ahead`'s values row
    /// by row.
    fn add_into<S: pulp::Simd, const LANE: usize, const C: usize, const B: usize>(
        self,
        simd: S,
        acc: &mut [[S::f32s; B]; C],
        weights: [&[f32]; 2],
        ahead: Ahead<'_>,
    );
}

/// Columns read from rows wherever they lie (the input's own rows, a plane apart), one row a
/// step.
pub(crate) struct Rows<I>(pub I);

impl<'c, I: Iterator<Item = &'c [f32]>> Columns for Rows<I> {
    #[inline(always)]
    fn add_into<S: pulp::Simd, const LANE: usize, const C: usize, const B: usize>(
        self,
        simd: S,
        acc: &mut [[S::f32s; B]; C],
        [here, next]: [&[f32]; 2],
        ahead: Ahead<'_>,
    ) {
        let blocks = here.chunks_exact(CHANNELS).zip(next.chunks_exact(CHANNELS));
        for (row, (values, (here, next))) in self.0.zip(blocks).enumerate() {
            ahead.row(row);
            add_row::<S, LANE, C, B>(simd, acc, values, [here, next]);
        }
    }
}

/// Columns packed side by side, `[in, B · lanes]`, read two rows a step: the loop's count, its
/// ends and its requests ahead come once for two rows' multiply-adds. Machine A, one thread,
/// in-pass, medians of 4 alternating processes, eight stacked 256 → 64 and 64 → 256 layers on
/// 56×56: AVX-512 4.74 → 4.48 ms, AVX2 8.49 → 8.13; ResNet-50's 1×1 layers summed 26.2 → 25.3
/// (AVX-512), its layers 83.0 → 80.8 (AVX2); two threads within the noise. Four rows a step
/// was slower on both paths (AVX2's 16 registers spill: the stack 8.6 → 10.8 ms), and the
/// input's own rows read two a step ([`Rows`]) gained nothing.
pub(crate) struct Packed<'c>(pub &'c [f32]);

impl Columns for Packed<'_> {
    #[inline(always)]
    fn add_into<S: pulp::Simd, const LANE: usize, const C: usize, const B: usize>(
        self,
        simd: S,
        acc: &mut [[S::f32s; B]; C],
        [here, next]: [&[f32]; 2],
        ahead: Ahead<'_>,
    ) {
        let span = B * S::F32_LANES;
        let rows = self.0.len() / span;
        let blocks = here.chunks_exact(2 * CHANNELS);
        let pairs = self.0.chunks_exact(2 * span);
        let pairs = pairs.zip(blocks.zip(next.chunks_exact(2 * CHANNELS)));
        // Without anything to ask for, the loop keeps no count of its rows.
        if ahead.is_none() {
            for (values, weights) in pairs {
                add_two_rows::<S, LANE, C, B>(simd, acc, values, weights);
            }
        } else {
            for (p, (values, weights)) in pairs.enumerate() {
                ahead.row(2 * p);
                ahead.row(2 * p + 1);
                add_two_rows::<S, LANE, C, B>(simd, acc, values, weights);
            }
        }
        if rows % 2 == 1 {
            let (last, w) = (rows - 1, (rows - 1) * CHANNELS);
            ahead.row(last);
            add_row::<S, LANE, C, B>(simd, acc, &self.0[last * span..], [&here[w..], &next[w..]]);
        }
    }
}

/// [`add_row`] for two input channels: their vectors side by side in `values`, their weights
/// in `here` and `next` (`[2, CHANNELS]` each).
#[inline(always)]
fn add_two_rows<S: pulp::Simd, const LANE: usize, const C: usize, const B: usize>(
    simd: S,
    acc: &mut [[S::f32s; B]; C],
    values: &[f32],
    (here, next): (&[f32], &[f32]),
) {
    let span = B * S::F32_LANES;
    add_row::<S, LANE, C, B>(simd, acc, values, [here, next]);
    let weights = [&here[CHANNELS..], &next[CHANNELS..]];
    add_row::<S, LANE, C, B>(simd, acc, &values[span..], weights);
}

/// Adds one input channel's terms to a tile's `C × B` sums: its `B` vectors of `values`, each
/// times every channel's weight, broadcast; channel `c`'s weight is lane `LANE + c` of `here`
/// or, past its last lane, of `next`.
#[inline(always)]
fn add_row<S: pulp::Simd, const LANE: usize, const C: usize, const B: usize>(
    simd: S,
    acc: &mut [[S::f32s; B]; C],
    values: &[f32],
    [here, next]: [&[f32]; 2],
) {
    let lanes = S::F32_LANES;
    let values: [S::f32s; B] = std::array::from_fn(|b| load::<S>(&values[b * lanes..]));
    for (c, sums) in acc.iter_mut().enumerate() {
        let lane = LANE + c;
        let weight = if lane < CHANNELS {
            here[lane]
        } else {
            next[lane - CHANNELS]
        };
        let weight = simd.splat_f32s(weight);
        for (sum, &value) in sums.iter_mut().zip(&values) {
            *sum = simd.mul_add_e_f32s(weight, value, *sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::ConvCase;
    use crate::kernels::vector::VectorPath;

    fn shape(cin: usize, cout: usize, stride: usize) -> ConvShape {
        ConvShape::square(cin, cout, 1, stride, 0, 1)
    }

    #[test]
    fn every_output_sums_its_pixel_over_every_input_channel() {
        // (in, out, h, w, stride): whole chunks and tiles, a partial tile of 1, 2 and 3
        // vectors, last pixels computed alone (7×7, 14×14, 2×3), a partial channel block, many
        // chunks (a weight of 256 KiB: 3 of 576, 576 and 448 pixels on one thread, 7 on more),
        // strides 2 and 3, few blocks packed where their rows alias (6 blocks over 192 rows
        // of 128 pixels), an odd count of input channels in packed tiles (read two at a time
        // and one over).
        for (cin, cout, h, w, stride) in [
            (27, 80, 14, 14, 1),
            (16, 32, 7, 7, 1),
            (192, 48, 8, 16, 1),
            (24, 13, 14, 14, 1),
            (3, 8, 56, 56, 1),
            (256, 256, 40, 40, 1),
            (64, 20, 9, 5, 2),
            (40, 16, 11, 10, 3),
            (2048, 8, 2, 3, 1),
        ] {
            let case = ConvCase::new(shape(cin, cout, stride), [h, w]);
            let [ho, wo] = case.out_hw();
            let activation = Activation::Relu;
            let packed = pack(&case.s, &case.weight);
            let operands = Operands {
                weight: &packed,
                bias: &case.bias,
                activation,
                residual: false,
            };
            // One thread takes whole chunks; more split a chunk's channels into parts (7×7,
            // 9×5 with stride 2), or its pixels (14×14, 56×56).
            assert!(splits_pixels(13, 196, 3) && !splits_pixels(32, 49, 2));
            for threads in 1..=3 {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("a pool");
                let mut y = vec![f32::NAN; cout * ho * wo];
                pool.install(|| forward(&case.s, operands, &case.x, [h, w], [ho, wo], &mut y))
                    .expect("runs");
                let path = VectorPath::current();
                case.check(&y, activation, &format!("{path:?}, {threads} threads"));
            }
        }
    }

    #[test]
    fn last_pixels_apart_match_on_avx2_and_avx512() {
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(simd) = pulp::x86::V3::try_new() {
                last_pixels_apart_on(simd);
            }
            if let Some(simd) = pulp::x86::V4::try_new() {
                last_pixels_apart_on(simd);
            }
        }
    }

    /// One chunk of every pixel on `simd`, for maps whose last 1 to 4 pixels (past whole tiles
    /// of 16 or 48) are summed apart, with input channels that split unevenly between
    /// interleaved sums, with and without a residual.
    fn last_pixels_apart_on<S: pulp::Simd>(simd: S) {
        let tile = if S::REGISTER_COUNT < 32 { 16 } else { 48 };
        for (cin, cout) in [(13, 13), (24, 8), (7, 30)] {
            for tail in 1..=4 {
                let pixels = tile + tail;
                let case = ConvCase::new(shape(cin, cout, 1), [1, pixels]);
                let packed = pack(&case.s, &case.weight);
                let residual: Vec<f32> = (0..cout * pixels).map(|i| (i % 5) as f32).collect();
                for adds in [false, true] {
                    let mut y = if adds {
                        residual.clone()
                    } else {
                        vec![f32::NAN; cout * pixels]
                    };
                    simd.vectorize(Chunk {
                        x: &case.x,
                        cin,
                        pixels,
                        weight: &packed,
                        bias: &case.bias,
                        activation: Activation::Identity,
                        residual: adds,
                        ahead: false,
                        task: Task {
                            first_pixel: 0,
                            first_group: 0,
                            rows: y.chunks_mut(pixels).collect(),
                        },
                    });
                    if adds {
                        y.iter_mut().zip(&residual).for_each(|(v, r)| *v -= r);
                    }
                    let context = format!("{} lanes, residual {adds}", S::F32_LANES);
                    case.check(&y, Activation::Identity, &context);
                }
            }
        }
    }

    #[test]
    fn mismatched_operands_and_other_shapes_are_refused() {
        let s = shape(16, 8, 1);
        let packed = pack(&s, &[0.0; 8 * 16]);
        let bias = [0.0; 8];
        let mut y = vec![0.0; 8 * 16];
        let run = |s: &ConvShape, x: &[f32], y: &mut [f32]| {
            let operands = Operands {
                weight: &packed,
                bias: &bias,
                activation: Activation::Identity,
                residual: false,
            };
            forward(s, operands, x, [4, 4], [4, 4], y)
        };
        assert!(run(&s, &[0.0; 16 * 16], &mut y).is_ok());
        assert!(run(&s, &[0.0; 15 * 16], &mut y).is_err());
        assert!(run(&s, &[0.0; 16 * 16], &mut y[..100]).is_err());
        let padded = ConvShape {
            padding: [1, 1],
            ..s
        };
        assert!(run(&padded, &[0.0; 16 * 16], &mut y).is_err());
    }
}
