//! 3×3 and 5×5, stride-1 convolutions by Winograd's minimal filtering: F(4×4, 3×3) or F(2×2,
//! 3×3) for 3×3 kernels, F(2×2, 5×5) for 5×5 ones ([`Tiling`]).
//!
//! Each `m × m` block of output pixels (a *tile*: 4×4 or 2×2) comes from an `(m + r − 1) × (m +
//! r − 1)` window of input, for an `r × r` kernel. With the weight transformed once, at load
//! (`U = G g Gᵀ`, one `[in, out]` matrix per point of a transformed window: 36 or 16), and each
//! window transformed as it is needed (`V = Bᵀ d B`), a tile costs one product over the channels
//! per point: F(4×4, 3×3) multiplies four times less than the 3×3 convolution, F(2×2, 3×3) 2.25
//! times less, F(2×2, 5×5) 2.8 times less than the 5×5 one. The
//! products of one block of tiles are one `[tiles, in] × [in, out]` product per point
//! ([`tile_products`](super::tile_products)), and
//! `Aᵀ M A` turns them back into output pixels, with the bias and the activation. F(4×4, 3×3)'s
//! transforms are Lavin and Gray's (interpolation points 0, ±1, ±2 and infinity); F(2×2, 5×5)
//! interpolates at the same six points, so its windows take the same `Bᵀ`, and its `G` and `Aᵀ`
//! are those points' powers up to the fourth and the first. In f32 their error stays within
//! 1e-4 of the output's scale on every zoo model (the crate's tests check it layer by layer and
//! whole). Small maps, whose few 4×4 tiles make products too thin, keep F(2×2, 3×3).
//!
//! Work is split into bands of whole rows of tiles, as many for each thread, and a band's tiles
//! into blocks small enough that the block's transformed input and products stay in the core's
//! cache between the three steps; each block's pixels go straight into the band's own rows of
//! every output plane, on the thread that computed them (a separate pass over the whole result
//! after the blocks ran at the same speed on two threads as on one). A small map (fewer tiles
//! than a block per thread, and on several threads fewer than [`BANDS_MIN_TILES`]) is split by
//! output channels instead: every window is
//! transformed first, and each thread runs the products over all the tiles for its share of the
//! channels. The input is read channels-last and zero-padded once, so that every window lies
//! inside it.

use rayon::prelude::*;

use super::plane::Epilogue;
use super::scratch::Scratch;
use super::tile_products::{BLOCK, Products, packed_at};
#[cfg(target_arch = "x86_64")]
use super::transpose::transpose;
use super::transpose::{Planes, channels_last};
use super::vector::{VectorPath, dispatch};
use super::{Activation, ConvShape, Operands, ShapeError, bands_of_planes};

/// The size of Winograd's tiles a layer runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tiling {
    /// F(2×2, 3×3): 2×2 tiles from 4×4 windows.
    F2,
    /// F(4×4, 3×3): 4×4 tiles from 6×6 windows.
    F4,
    /// F(2×2, 5×5): 2×2 tiles from 6×6 windows, for 5×5 kernels.
    F2Of5,
}

/// Layers with at least this many 4×4 tiles (a 21×21 output) run F(4×4, 3×3); smaller maps
/// run F(2×2, 3×3). F(4×4)'s transformed weight is 36 values per input × output channel against
/// F(2×2)'s 16, and read once per layer: on few tiles the layer waits on that read more than it
/// saves in products. Machine A, in-pass, medians of 3 alternating processes, with the products
/// of [`tile_products`](super::tile_products): on AVX-512 F(4×4) on 28×28 maps (49 tiles)
/// against F(2×2), ResNet-50's layer2 3×3 layers 0.87–0.95× on one thread and on two,
/// GoogLeNet's inception3 ones 0.85–0.89×; on AVX2 on 14×14 maps (16 tiles) within the noise
/// (measured with gemm's products, machine D: ResNet-50's 256→256 layers on 14×14 1.24–1.41 ms
/// against F(4×4)'s 1.82–1.94 on AVX-512, 2.32–2.44 against 2.43–2.68 on AVX2).
const F4_MIN_TILES: usize = 32;

impl Tiling {
    /// The tiling that suits a convolution of shape `s` (which [`suits`]) with an output of
    /// `ho × wo`: F(2×2, 5×5) for a 5×5 kernel; for a 3×3 one,
    /// F(4×4, 3×3) on maps with enough 4×4 tiles, F(2×2, 3×3) on smaller ones.
    pub(crate) fn for_layer(s: &ConvShape, [ho, wo]: [usize; 2]) -> Tiling {
        if s.kernel == [5, 5] {
            return Tiling::F2Of5;
        }
        if ho.div_ceil(4) * wo.div_ceil(4) >= F4_MIN_TILES {
            Tiling::F4
        } else {
            Tiling::F2
        }
    }

    /// Output pixels along a tile's side.
    fn tile(self) -> usize {
        match self {
            Tiling::F2 | Tiling::F2Of5 => 2,
            Tiling::F4 => 4,
        }
    }

    /// The kernel's side.
    fn taps(self) -> usize {
        match self {
            Tiling::F2 | Tiling::F4 => 3,
            Tiling::F2Of5 => 5,
        }
    }

    /// Input pixels along a window's side: the tile and the kernel's extra.
    fn window(self) -> usize {
        self.tile() + self.taps() - 1
    }

    /// Points of a transformed window.
    fn points(self) -> usize {
        self.window() * self.window()
    }

    /// Output pixels of a tile.
    fn pixels(self) -> usize {
        self.tile() * self.tile()
    }

    /// Tiles per block at most. Each block reads every transformed weight matrix, so a block
    /// must be large enough to reuse them: with 512 channels in and out, F(2×2, 3×3) blocks of
    /// 64 tiles ran twice as fast as blocks of 16 (measured on a 2-core Xeon); F(4×4, 3×3) ran
    /// ResNet-18 as fast with 16 tiles as with 32 or 64, as many output pixels or more.
    fn block_tiles(self) -> usize {
        match self {
            Tiling::F2 => 64,
            Tiling::F4 | Tiling::F2Of5 => 16,
        }
    }

    /// `G`, the kernel's taps combined into a transformed window's `window()` points.
    fn g(self) -> &'static [&'static [f64]] {
        const SIXTH: f64 = 1.0 / 6.0;
        const TWENTY_FOURTH: f64 = 1.0 / 24.0;
        match self {
            Tiling::F2 => &[
                &[1.0, 0.0, 0.0],
                &[0.5, 0.5, 0.5],
                &[0.5, -0.5, 0.5],
                &[0.0, 0.0, 1.0],
            ],
            Tiling::F4 => &[
                &[1.0 / 4.0, 0.0, 0.0],
                &[-SIXTH, -SIXTH, -SIXTH],
                &[-SIXTH, SIXTH, -SIXTH],
                &[TWENTY_FOURTH, 2.0 * TWENTY_FOURTH, 4.0 * TWENTY_FOURTH],
                &[TWENTY_FOURTH, -2.0 * TWENTY_FOURTH, 4.0 * TWENTY_FOURTH],
                &[0.0, 0.0, 1.0],
            ],
            // Row by row the powers of the points 0, 1, −1, 2, −2 (and infinity), scaled as
            // F(4×4, 3×3)'s.
            Tiling::F2Of5 => &[
                &[1.0 / 4.0, 0.0, 0.0, 0.0, 0.0],
                &[-SIXTH, -SIXTH, -SIXTH, -SIXTH, -SIXTH],
                &[-SIXTH, SIXTH, -SIXTH, SIXTH, -SIXTH],
                &[
                    TWENTY_FOURTH,
                    2.0 * TWENTY_FOURTH,
                    4.0 * TWENTY_FOURTH,
                    8.0 * TWENTY_FOURTH,
                    16.0 * TWENTY_FOURTH,
                ],
                &[
                    TWENTY_FOURTH,
                    -2.0 * TWENTY_FOURTH,
                    4.0 * TWENTY_FOURTH,
                    -8.0 * TWENTY_FOURTH,
                    16.0 * TWENTY_FOURTH,
                ],
                &[0.0, 0.0, 0.0, 0.0, 1.0],
            ],
        }
    }
}

/// Output channels [`scatter`] writes together: a cache line of the result's values. Machine
/// A, six 64 → 64 layers on 56×56 maps, in-pass, two threads: 4.30 → 3.97 ms against a
/// separate pass over the result (one thread 6.85 → 6.93); every channel of a pixel together
/// 7.16 ms on one thread, a channel at a time 7.72, a tile row's pixels at a time 7.61.
const SCATTER_CHANNELS: usize = 16;

/// The largest window's side.
const MAX_WINDOW: usize = 6;

/// The largest kernel's side.
const MAX_TAPS: usize = 5;

/// Up to [`MAX_WINDOW`] disjoint vectors a transform writes (empty past those it uses).
type Vectors<'a> = [&'a mut [f32]; MAX_WINDOW];

/// Layers with at least this many output pixels run Winograd whatever their channels; below it,
/// the im2col product still wins where the channels are few (14×14 maps, layer alone: 16 → 48
/// channels 0.037 ms against Winograd's 0.051, 64 → 64 0.091 against 0.108; 128 → 128 0.32
/// against 0.20, 512 → 512 3.1 against 1.7).
const MIN_PIXELS: usize = 512;

/// Below [`MIN_PIXELS`], a layer of at least this many input × output channels runs Winograd.
const MIN_SMALL_MAP_WEIGHTS: usize = 128 * 128;

/// Layers with fewer input channels than this never run Winograd: an RGB stem's three channels
/// make products too thin to pay for the transforms.
const MIN_CHANNELS: usize = 16;

/// 5×5 layers with fewer input channels than this never run Winograd. Machine D, one thread,
/// three layers side by side on a 28×28 map, against the im2col product: 16 → 32 channels
/// 0.85 ms against 0.37 on AVX2 (0.43 against 0.25 on AVX-512), 32 → 96 1.30 against 1.57
/// (0.96 against 1.20); 128 → 128 on 56×56 15.5 against 35.8 (11.3 against 26.1).
const MIN_CHANNELS_5: usize = 32;

/// Whether one of the tilings computes a convolution of this shape: a 3×3 or 5×5 kernel,
/// stride 1, no dilation (any padding).
pub(crate) fn suits(s: &ConvShape) -> bool {
    (s.kernel == [3, 3] || s.kernel == [5, 5]) && s.stride == [1, 1] && s.dilation == [1, 1]
}

/// Whether `tiling` computes a convolution of this shape: one that [`suits`], with the
/// tiling's kernel size.
pub(crate) fn suits_tiling(s: &ConvShape, tiling: Tiling) -> bool {
    suits(s) && s.kernel == [tiling.taps(); 2]
}

/// Whether Winograd is the faster way to run a layer of this shape with `pixels` output
/// pixels, given whether im2col would run it `pixel_major` (else channel-major, which Winograd
/// beat on every 7×7 layer measured: 32 → 128 channels 0.057 ms against 0.082, 256 → 256 0.23
/// against 0.52).
pub(crate) fn pays(s: &ConvShape, pixels: usize, pixel_major: bool) -> bool {
    let min_channels = if s.kernel == [5, 5] {
        MIN_CHANNELS_5
    } else {
        MIN_CHANNELS
    };
    suits(s)
        && s.in_channels >= min_channels
        && (pixels >= MIN_PIXELS
            || !pixel_major
            || s.in_channels * s.out_channels >= MIN_SMALL_MAP_WEIGHTS)
}

/// PyTorch's `[out, in, r, r]` weight (`r` the tiling's [`Tiling::taps`]) transformed as
/// `G g Gᵀ` (in f64), stored as one `[in, out]` matrix per point of the transformed window, in
/// blocks of output channels (`[point, ⌈out / BLOCK⌉, in, BLOCK]`, zeros past the last
/// channel) for [`Products`].
pub(crate) fn pack(s: &ConvShape, tiling: Tiling, weight: &[f32]) -> Vec<f32> {
    let (cin, cout) = (s.in_channels, s.out_channels);
    let (g_rows, window, r) = (tiling.g(), tiling.window(), tiling.taps());
    let blocks = cout.div_ceil(BLOCK);
    let mut packed = vec![0.0f32; tiling.points() * blocks * cin * BLOCK];
    for (oc, g) in weight.chunks_exact(r * r).enumerate() {
        let (o, c) = (oc / cin, oc % cin);
        for (i, gi) in g_rows.iter().enumerate() {
            // Row i of G g (its first `r` values).
            let gg: [f64; MAX_TAPS] = std::array::from_fn(|x| {
                if x < r {
                    (0..r).map(|k| gi[k] * f64::from(g[r * k + x])).sum()
                } else {
                    0.0
                }
            });
            for (j, gj) in g_rows.iter().enumerate() {
                let u: f64 = (0..r).map(|k| gg[k] * gj[k]).sum();
                packed[packed_at(i * window + j, c, o, cin, cout)] = u as f32;
            }
        }
    }
    packed
}

/// One sample: `y` (`[out, ho · wo]`, NCHW) from `sample` (`[in, h, w]`), with the weight
/// from [`pack`] for `tiling`, the bias and the activation.
pub(crate) fn forward(
    s: &ConvShape,
    tiling: Tiling,
    Operands {
        weight: packed,
        bias,
        activation,
        residual,
    }: Operands<'_>,
    sample: &[f32],
    [h, w]: [usize; 2],
    [ho, wo]: [usize; 2],
    y: &mut [f32],
) -> Result<(), ShapeError> {
    let (cin, cout) = (s.in_channels, s.out_channels);
    let (side, points, pixels) = (tiling.tile(), tiling.points(), tiling.pixels());
    let [th, tw] = [ho.div_ceil(side), wo.div_ceil(side)];
    let tiles = th * tw;
    let extra = tiling.taps() - 1;
    let padded_w = side * tw + extra;
    let mut padded = Scratch::take((side * th + extra) * padded_w * cin);
    pad_channels_last(sample, cin, [h, w], s.padding, padded_w, &mut padded);
    let threads = rayon::current_num_threads().max(1);
    let layer = Layer {
        tiling,
        packed,
        bias,
        epilogue: Epilogue {
            activation,
            residual,
        },
        cin,
        padded: &padded,
        padded_w,
    };
    let block_tiles = tiling.block_tiles();
    if tiles < block_tiles * threads && (threads == 1 || tiles < BANDS_MIN_TILES) {
        return by_channels(&layer, [th, tw], [ho, wo], y);
    }
    // One band of whole rows of tiles per thread ([`band_rows_for`]), each writing its own rows
    // of every output plane; a band's tiles are computed in as equal blocks of at most
    // `block_tiles` as they make.
    let band_tiles = band_rows_for(th, threads);
    let band_rows = band_tiles * side;
    let residual = layer.residual();
    bands_of_planes(y, ho * wo, band_rows * wo)
        .into_par_iter()
        .enumerate()
        .try_for_each(|(b, mut rows)| {
            let band = b * band_tiles * tw..((b + 1) * band_tiles).min(th) * tw;
            let block = band.len().div_ceil(band.len().div_ceil(block_tiles).max(1));
            // Taken at a whole block's lengths, so that the pool hands out buffers that
            // already hold them.
            let mut v = Scratch::take(block * points * cin);
            let mut m = Scratch::take(block * points * cout);
            let mut result = Scratch::take(block * pixels * cout);
            let mut scratch = Scratch::take(points * cin.max(cout));
            for first in band.clone().step_by(block.max(1)) {
                let n = block.min(band.end - first);
                // Both [tile, point, channel]: point ξ of every tile is a matrix with a row
                // stride of `points` points; then [tile, pixel, channel].
                v.set_len(n * points * cin);
                m.set_len(n * points * cout);
                result.set_len(n * pixels * cout);
                dispatch(Windows {
                    layer: &layer,
                    first,
                    tw,
                    scratch: &mut scratch[..points * cin],
                    v: &mut v,
                });
                products(&layer, &v, [n, cout], [0, cout], &mut m)?;
                dispatch(Tiles {
                    layer: &layer,
                    bias,
                    m: &m,
                    scratch: &mut scratch,
                    y: &mut result,
                });
                let at = [first, b * band_rows];
                scatter(tiling, &result, at, [tw, ho, wo], &mut rows, residual);
            }
            Ok(())
        })
}

/// Rows of tiles in a band, out of `th`, for `threads` threads: a thread's share, so that
/// each thread takes one band of adjacent rows and the busiest thread has as few rows as any
/// split allows (14 rows in bands of 4 would leave it 8 against the other's 6). Against bands
/// of one row that the threads took as they came (machine A, two threads, in-pass, medians of
/// 3–5 alternating processes): ResNet-18's 64 → 64 layers on 56×56 0.69–0.77 → 0.60–0.67 ms,
/// ResNet-50's 0.78–0.85 → 0.68–0.71.
fn band_rows_for(th: usize, threads: usize) -> usize {
    th.div_ceil(threads.max(1)).max(1)
}

/// A layer as the schedules read it: its tiling, weight from [`pack`], bias, epilogue, and
/// its input, channels-last and padded.
struct Layer<'a> {
    tiling: Tiling,
    packed: &'a [f32],
    /// `[out]`.
    bias: &'a [f32],
    epilogue: Epilogue,
    /// Input channels.
    cin: usize,
    /// `[rows, padded_w, in]`.
    padded: &'a [f32],
    padded_w: usize,
}

impl Layer<'_> {
    /// The activation the scatter into NCHW applies after adding the residual the output
    /// holds, or `None` when the output is overwritten (the products already went through the
    /// activation).
    fn residual(&self) -> Option<Activation> {
        self.epilogue.residual.then_some(self.epilogue.activation)
    }

    /// Tile `t`'s window (of a row of `tw` tiles) transformed as `Bᵀ d B` into `v`
    /// (`[point, in]`, point `window · i + j`), through `scratch` (`points` vectors of `in`).
    #[inline(always)]
    fn transform_input(&self, t: usize, tw: usize, scratch: &mut [f32], v: &mut [f32]) {
        match self.tiling {
            Tiling::F2 => self.transform_window::<4>(t, tw, scratch, v),
            Tiling::F4 | Tiling::F2Of5 => self.transform_window::<6>(t, tw, scratch, v),
        }
    }

    /// [`Self::transform_input`] for windows `W` wide, compiled for each.
    #[inline(always)]
    fn transform_window<const W: usize>(
        &self,
        t: usize,
        tw: usize,
        scratch: &mut [f32],
        v: &mut [f32],
    ) {
        let cin = self.cin;
        let (side, window) = (self.tiling.tile(), W);
        let (ty, tx) = (t / tw, t % tw);
        let at = |i: usize, j: usize| {
            let at = ((side * ty + i) * self.padded_w + side * tx + j) * cin;
            &self.padded[at..at + cin]
        };
        let empty: &[f32] = &[];
        // Bᵀ d, column by column: scratch holds [row i, column j] at point window · i + j.
        for j in 0..window {
            let out = split(scratch, cin, window, |i| (window * i + j) * cin);
            combine_b::<W>(
                out,
                std::array::from_fn(|i| if i < window { at(i, j) } else { empty }),
            );
        }
        // (Bᵀ d) B, row by row.
        for i in 0..window {
            let (rows, out) = (&*scratch, split(v, cin, window, |j| (window * i + j) * cin));
            let row = |j: usize| {
                if j < window {
                    &rows[(window * i + j) * cin..(window * i + j + 1) * cin]
                } else {
                    empty
                }
            };
            combine_b::<W>(out, std::array::from_fn(row));
        }
    }
}

/// The windows of tiles `first..` (as many as `v`, `[tile, point, in]`, holds; of a row of `tw`
/// tiles) transformed through `scratch`, run through [`dispatch`] so that the transforms use the
/// widest vectors of the [`VectorPath`](super::VectorPath) in effect.
struct Windows<'a> {
    layer: &'a Layer<'a>,
    first: usize,
    tw: usize,
    scratch: &'a mut [f32],
    v: &'a mut [f32],
}

impl pulp::WithSimd for Windows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let layer = self.layer;
        let points = layer.tiling.points();
        for (t, vt) in self.v.chunks_exact_mut(points * layer.cin).enumerate() {
            layer.transform_input(self.first + t, self.tw, self.scratch, vt);
        }
    }
}

/// Some tiles' products `m` (`[tile, point, count]`) turned back into pixels in `y` (`[tile,
/// pixel, count]`) with `bias` (`[count]`) and the layer's activation, through `scratch`; run
/// through [`dispatch`] as [`Windows`] is.
struct Tiles<'a> {
    layer: &'a Layer<'a>,
    bias: &'a [f32],
    m: &'a [f32],
    scratch: &'a mut [f32],
    y: &'a mut [f32],
}

impl pulp::WithSimd for Tiles<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let (tiling, count) = (self.layer.tiling, self.bias.len());
        let tiles = self
            .m
            .chunks_exact(tiling.points() * count)
            .zip(self.y.chunks_exact_mut(tiling.pixels() * count));
        for (mt, yt) in tiles {
            transform_output(tiling, mt, self.scratch, yt, self.bias);
            if !self.layer.epilogue.residual {
                self.layer.epilogue.activation.apply(yt);
            }
        }
    }
}

/// Maps of at least this many tiles go to several threads by bands of rows of tiles even where
/// they have fewer than a block per thread; smaller ones by output channels ([`by_channels`]),
/// which halves each thread's share of the weight but gives every thread every tile. Machine A,
/// two threads, in-pass, medians of 3 alternating processes: ResNet-50's 256 → 256 layers on
/// 14×14 (49 tiles) 0.85–0.93× by bands on AVX-512 and 0.87–0.95× on AVX2, GoogLeNet's
/// inception4 3×3 layers 0.95–0.97× on AVX-512; the 512 → 512 layers on 7×7 (16 tiles, a
/// 16.8 MB weight) 1.15–1.19× by bands on AVX2.
const BANDS_MIN_TILES: usize = 32;

/// A layer with too few tiles to give every thread a block of its own (on several threads,
/// fewer than [`BANDS_MIN_TILES`]): every window is
/// transformed first, and then each thread takes a share of the output channels, with its own
/// products over all the tiles, `Aᵀ M A` and its own NCHW planes of `y`.
fn by_channels(
    layer: &Layer<'_>,
    [th, tw]: [usize; 2],
    [ho, wo]: [usize; 2],
    y: &mut [f32],
) -> Result<(), ShapeError> {
    let (cin, cout, tiling) = (layer.cin, layer.bias.len(), layer.tiling);
    let (points, pixels) = (tiling.points(), tiling.pixels());
    let tiles = th * tw;
    // [tile, point, in].
    let mut v = Scratch::take(tiles * points * cin);
    v.par_chunks_mut(points * cin).enumerate().for_each_init(
        || Scratch::take(points * cin),
        |scratch, (t, v)| {
            dispatch(Windows {
                layer,
                first: t,
                tw,
                scratch,
                v,
            })
        },
    );
    let threads = rayon::current_num_threads().max(1);
    let share = cout
        .div_ceil(threads)
        // Whole blocks of the packed weight, as the products take them.
        .next_multiple_of(BLOCK)
        .min(cout);
    y.par_chunks_mut(share * ho * wo)
        .enumerate()
        .try_for_each_init(
            || (Scratch::take(0), Scratch::take(0), Scratch::take(0)),
            |(m, result, scratch), (task, planes)| {
                let (first, count) = (task * share, planes.len() / (ho * wo));
                // [tile, point, count] and [tile, pixel, count].
                m.set_len(tiles * points * count);
                result.set_len(tiles * pixels * count);
                scratch.set_len(tiling.tile() * tiling.window() * count);
                products(layer, &v, [tiles, cout], [first, count], m)?;
                dispatch(Tiles {
                    layer,
                    bias: &layer.bias[first..first + count],
                    m,
                    scratch,
                    y: result,
                });
                let mut rows: Vec<&mut [f32]> = planes.chunks_exact_mut(ho * wo).collect();
                scatter(
                    tiling,
                    result,
                    [0, 0],
                    [tw, ho, wo],
                    &mut rows,
                    layer.residual(),
                );
                Ok(())
            },
        )
}

/// The products of some tiles' transformed windows `v` (`[tile, point, in]`), one per point,
/// with output channels `first..first + count` of the layer's packed weight, into `m`
/// (`[tile, point, count]`), each on the calling thread.
fn products(
    layer: &Layer<'_>,
    v: &[f32],
    [tiles, cout]: [usize; 2],
    [first, count]: [usize; 2],
    m: &mut [f32],
) -> Result<(), ShapeError> {
    let products = Products {
        v,
        weight: layer.packed,
        cin: layer.cin,
        cout,
        points: layer.tiling.points(),
        tiles,
        first,
        count,
        m,
    };
    if !products.fits() {
        return Err(ShapeError(format!(
            "Winograd's products of {tiles} tiles cannot take {} transformed inputs and {} \
             weights into {} products",
            products.v.len(),
            products.weight.len(),
            products.m.len()
        )));
    }
    dispatch(products);
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
            let planes = Planes {
                src: sample,
                plane: h * w,
                at: iy * w,
                pixels: width,
                channels: cin,
            };
            channels_last(&planes, &mut row[pad_x * cin..]);
        });
}

/// `Bᵀ` of the tiling whose windows are `W` wide, applied to a window's column (or row) `d`,
/// into `out` (`W` vectors of each; the rest empty).
#[inline(always)]
fn combine_b<const W: usize>(out: Vectors<'_>, d: [&[f32]; MAX_WINDOW]) {
    let mut out = out;
    if W == 6 {
        combine_b4(&mut out, d);
    } else {
        combine_b2(&mut out, d);
    }
}

/// `Aᵀ` of the tiling whose windows are `W` wide and tiles `SIDE` wide, applied to `W` vectors
/// `m`, into `out` (`SIDE` vectors), each plus `base` where there is one.
#[inline(always)]
fn combine_a<const W: usize, const SIDE: usize>(
    out: Vectors<'_>,
    m: [&[f32]; MAX_WINDOW],
    base: Option<&[f32]>,
) {
    let mut out = out;
    match (W, SIDE) {
        (6, 4) => combine_a4(&mut out, m),
        (6, _) => combine_a2_of_5(&mut out, m),
        _ => combine_a2(&mut out, m),
    }
    if let Some(base) = base {
        for o in &mut out[..SIDE] {
            for (v, &b) in o.iter_mut().zip(base) {
                *v += b;
            }
        }
    }
}

/// `used` disjoint `len`-long vectors of `buf`, vector `k` at `start(k)` (a multiple of `len`,
/// increasing with `k`); empty past `used`.
fn split(buf: &mut [f32], len: usize, used: usize, start: impl Fn(usize) -> usize) -> Vectors<'_> {
    let mut rest = buf;
    let mut taken = 0;
    std::array::from_fn(|k| {
        if k >= used {
            return <&mut [f32]>::default();
        }
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(start(k) - taken);
        let (vector, tail) = tail.split_at_mut(len);
        rest = tail;
        taken = start(k) + len;
        vector
    })
}

/// F(2×2, 3×3)'s `Bᵀ`: `d0 − d2, d1 + d2, d2 − d1, d1 − d3`.
#[inline(always)]
fn combine_b2(out: &mut Vectors<'_>, d: [&[f32]; MAX_WINDOW]) {
    let n = out[0].len();
    let [o0, o1, o2, o3, ..] = out;
    let (o0, o1, o2, o3) = (&mut o0[..n], &mut o1[..n], &mut o2[..n], &mut o3[..n]);
    let [d0, d1, d2, d3] = [d[0], d[1], d[2], d[3]].map(|d| &d[..n]);
    for k in 0..n {
        o0[k] = d0[k] - d2[k];
        o1[k] = d1[k] + d2[k];
        o2[k] = d2[k] - d1[k];
        o3[k] = d1[k] - d3[k];
    }
}

/// F(4×4, 3×3)'s `Bᵀ`.
#[inline(always)]
fn combine_b4(out: &mut Vectors<'_>, d: [&[f32]; MAX_WINDOW]) {
    let n = out[0].len();
    let [o0, o1, o2, o3, o4, o5] = out;
    let (o0, o1, o2) = (&mut o0[..n], &mut o1[..n], &mut o2[..n]);
    let (o3, o4, o5) = (&mut o3[..n], &mut o4[..n], &mut o5[..n]);
    let d = d.map(|d| &d[..n]);
    for k in 0..n {
        let [d0, d1, d2, d3, d4, d5] = d.map(|d| d[k]);
        o0[k] = 4.0 * d0 - 5.0 * d2 + d4;
        o1[k] = d3 + d4 - 4.0 * (d1 + d2);
        o2[k] = d4 - d3 + 4.0 * (d1 - d2);
        o3[k] = d4 - d2 + 2.0 * (d3 - d1);
        o4[k] = d4 - d2 + 2.0 * (d1 - d3);
        o5[k] = 4.0 * d1 - 5.0 * d3 + d5;
    }
}

/// F(2×2, 3×3)'s `Aᵀ`: `m0 + m1 + m2, m1 − m2 − m3`.
#[inline(always)]
fn combine_a2(out: &mut Vectors<'_>, m: [&[f32]; MAX_WINDOW]) {
    let n = out[0].len();
    let [o0, o1, ..] = out;
    let (o0, o1) = (&mut o0[..n], &mut o1[..n]);
    let [m0, m1, m2, m3] = [m[0], m[1], m[2], m[3]].map(|m| &m[..n]);
    for k in 0..n {
        o0[k] = m0[k] + m1[k] + m2[k];
        o1[k] = m1[k] - m2[k] - m3[k];
    }
}

/// F(2×2, 5×5)'s `Aᵀ`: `m0 + m1 + m2 + m3 + m4, m1 − m2 + 2 (m3 − m4) + m5`.
#[inline(always)]
fn combine_a2_of_5(out: &mut Vectors<'_>, m: [&[f32]; MAX_WINDOW]) {
    let n = out[0].len();
    let [o0, o1, ..] = out;
    let (o0, o1) = (&mut o0[..n], &mut o1[..n]);
    let m = m.map(|m| &m[..n]);
    for k in 0..n {
        let [m0, m1, m2, m3, m4, m5] = m.map(|m| m[k]);
        o0[k] = m0 + (m1 + m2) + (m3 + m4);
        o1[k] = (m1 - m2) + 2.0 * (m3 - m4) + m5;
    }
}

/// F(4×4, 3×3)'s `Aᵀ`.
#[inline(always)]
fn combine_a4(out: &mut Vectors<'_>, m: [&[f32]; MAX_WINDOW]) {
    let n = out[0].len();
    let [o0, o1, o2, o3, ..] = out;
    let (o0, o1, o2, o3) = (&mut o0[..n], &mut o1[..n], &mut o2[..n], &mut o3[..n]);
    let m = m.map(|m| &m[..n]);
    for k in 0..n {
        let [m0, m1, m2, m3, m4, m5] = m.map(|m| m[k]);
        let (sum12, diff12, sum34, diff34) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
        o0[k] = m0 + sum12 + sum34;
        o1[k] = diff12 + 2.0 * diff34;
        o2[k] = sum12 + 4.0 * sum34;
        o3[k] = diff12 + 8.0 * diff34 + m5;
    }
}

/// One tile's products `m` (`[point, out]`) turned back into its pixels as `Aᵀ m A + bias`
/// into `y` (`[pixel, out]`, pixel `tile · a + b`), through `scratch` (at least
/// `tile · window` vectors of `out`).
#[inline(always)]
fn transform_output(tiling: Tiling, m: &[f32], scratch: &mut [f32], y: &mut [f32], bias: &[f32]) {
    match tiling {
        Tiling::F2 => transform_tile::<4, 2>(m, scratch, y, bias),
        Tiling::F4 => transform_tile::<6, 4>(m, scratch, y, bias),
        Tiling::F2Of5 => transform_tile::<6, 2>(m, scratch, y, bias),
    }
}

/// [`transform_output`] for windows `W` wide and tiles `SIDE` wide, compiled for each.
#[inline(always)]
fn transform_tile<const W: usize, const SIDE: usize>(
    m: &[f32],
    scratch: &mut [f32],
    y: &mut [f32],
    bias: &[f32],
) {
    let cout = bias.len();
    let (side, window) = (SIDE, W);
    let empty: &[f32] = &[];
    let point = |p: usize| &m[p * cout..(p + 1) * cout];
    // Aᵀ m, column by column: scratch holds [row a, column j] at window · a + j.
    for j in 0..window {
        let out = split(scratch, cout, side, |a| (window * a + j) * cout);
        let column = |i: usize| {
            if i < window {
                point(window * i + j)
            } else {
                empty
            }
        };
        combine_a::<W, SIDE>(out, std::array::from_fn(column), None);
    }
    // (Aᵀ m) A + bias, row by row.
    for a in 0..side {
        let rows = &*scratch;
        let row = |j: usize| {
            if j < window {
                &rows[(window * a + j) * cout..(window * a + j + 1) * cout]
            } else {
                empty
            }
        };
        let out = split(y, cout, side, |b| (side * a + b) * cout);
        combine_a::<W, SIDE>(out, std::array::from_fn(row), Some(bias));
    }
}

/// Tiles `first_tile..` of a `[tile, pixel, channel]` result (tiles of rows of `tw`) into
/// `rows`, each channel's output rows from `first_row` on (`[first_tile, first_row]`), leaving
/// out the pixels of tiles that overhang an odd-sized `ho × wo` output; where `residual` is
/// `Some`, added to the residual the rows hold and then through that activation. Where the
/// vector path allows AVX2, the runs of [`RUN`] pixels ([`Runs`]) go [`RUN`] channels at a time,
/// transposed in registers ([`transpose`](super::transpose)); everything else value by value.
fn scatter(
    tiling: Tiling,
    result: &[f32],
    [first_tile, first_row]: [usize; 2],
    [tw, ho, wo]: [usize; 3],
    rows: &mut [&mut [f32]],
    residual: Option<Activation>,
) {
    let count = rows.len();
    #[cfg(target_arch = "x86_64")]
    let simd = pulp::x86::V3::try_new().filter(|_| VectorPath::current() <= VectorPath::Avx2);
    #[cfg(not(target_arch = "x86_64"))]
    let simd: Option<()> = None;
    let runs = Runs {
        tiling,
        first_tile,
        tiles: result.len() / (tiling.pixels() * count).max(1),
        first_row,
        shape: [tw.max(1), ho, wo],
        channels: if simd.is_some() { count / RUN * RUN } else { 0 },
    };
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = simd {
        simd.vectorize(ScatterRuns {
            simd,
            runs: &runs,
            result,
            rows: &mut *rows,
            residual,
        });
    }
    let side = tiling.tile();
    // A cache line of channels at a time: every pixel's values for them, one line of the
    // result, go to as many rows (all channels at once wrote to as many places in memory as
    // channels, one channel at a time read the result as many times).
    for (group, channels) in rows.chunks_mut(SCATTER_CHANNELS).enumerate() {
        let first = group * SCATTER_CHANNELS;
        let tiles = result.chunks_exact(tiling.pixels() * count);
        for (tile, values) in (first_tile..).zip(tiles) {
            // The channels the registers did not write.
            let skip = if runs.holds(tile) { runs.channels } else { 0 };
            let skip = skip.saturating_sub(first);
            if skip >= channels.len() {
                continue;
            }
            let (ty, tx) = (tile / runs.shape[0], tile % runs.shape[0]);
            for (p, pixel) in values.chunks_exact(count).enumerate() {
                let (oy, ox) = (side * ty + p / side, side * tx + p % side);
                let Some(row) = oy.checked_sub(first_row).filter(|_| oy < ho && ox < wo) else {
                    continue;
                };
                let at = row * wo + ox;
                let values = channels.iter_mut().zip(&pixel[first..]).skip(skip);
                match residual {
                    None => values.for_each(|(rows, &value)| rows[at] = value),
                    Some(activation) => values.for_each(|(rows, &value)| {
                        rows[at] = activation.of(rows[at] + value);
                    }),
                }
            }
        }
    }
}

/// Pixels (and channels) per run of [`Runs`]: a transposed block's side.
const RUN: usize = super::transpose::BLOCK;

/// Which of a block's tiles [`scatter`] writes in runs of [`RUN`] pixels: the `RUN / side`
/// tiles of an aligned group in one row of tiles, all in the block, whole inside the output and
/// the band's rows; and how many of their channels (whole blocks of [`RUN`]) go that way.
struct Runs {
    tiling: Tiling,
    first_tile: usize,
    /// Tiles in the block.
    tiles: usize,
    first_row: usize,
    /// `[tw, ho, wo]`.
    shape: [usize; 3],
    /// Channels written in runs: 0 where none are.
    channels: usize,
}

impl Runs {
    /// The first tile of `tile`'s group, if the group is a run.
    fn start(&self, tile: usize) -> Option<usize> {
        let [tw, ho, wo] = self.shape;
        let side = self.tiling.tile();
        let per_run = RUN / side;
        let start = tile - tile % tw % per_run;
        let (ty, tx) = (start / tw, start % tw);
        let whole = start >= self.first_tile
            && start + per_run <= self.first_tile + self.tiles
            && tx + per_run <= tw
            && side * tx + RUN <= wo
            && side * (ty + 1) <= ho
            && side * ty >= self.first_row;
        whole.then_some(start)
    }

    /// Whether `tile`'s first [`Runs::channels`] channels were written in runs.
    fn holds(&self, tile: usize) -> bool {
        self.channels > 0 && self.start(tile).is_some()
    }
}

/// [`scatter`]'s runs, their channels in blocks of [`RUN`], each block transposed in registers.
#[cfg(target_arch = "x86_64")]
struct ScatterRuns<'a, 'r> {
    simd: pulp::x86::V3,
    runs: &'a Runs,
    result: &'a [f32],
    rows: &'a mut [&'r mut [f32]],
    residual: Option<Activation>,
}

#[cfg(target_arch = "x86_64")]
impl pulp::NullaryFnOnce for ScatterRuns<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let ScatterRuns {
            simd,
            runs,
            result,
            rows,
            residual,
        } = self;
        let [tw, _, wo] = runs.shape;
        let (side, count, pixels) = (runs.tiling.tile(), rows.len(), runs.tiling.pixels());
        let first = runs.first_tile;
        for start in first..first + runs.tiles {
            if runs.start(start) != Some(start) {
                continue;
            }
            let (i, top, left) = (start - first, side * (start / tw), side * (start % tw));
            for py in 0..side {
                let at = (top + py - runs.first_row) * wo + left;
                for c0 in (0..runs.channels).step_by(RUN) {
                    let block: [[f32; RUN]; RUN] = std::array::from_fn(|j| {
                        let pixel = (i + j / side) * pixels + py * side + j % side;
                        let from = pixel * count + c0;
                        let mut values = [0.0; RUN];
                        values.copy_from_slice(&result[from..from + RUN]);
                        values
                    });
                    for (c, values) in transpose(simd, block).iter().enumerate() {
                        let row = &mut rows[c0 + c][at..at + RUN];
                        match residual {
                            None => row.copy_from_slice(values),
                            Some(activation) => {
                                for (out, &value) in row.iter_mut().zip(values) {
                                    *out = activation.of(*out + value);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::band_rows_for;

    #[test]
    fn bands_give_every_thread_one_run_of_rows_as_long_as_any_other() {
        // 14 rows: two bands of 7, not 4 + 4 + 4 + 2 nor 14 of one row.
        assert_eq!(band_rows_for(14, 2), 7);
        assert_eq!(band_rows_for(56, 2), 28);
        assert_eq!(band_rows_for(14, 1), 14);
        // Rows that cannot split evenly: the busiest thread gets the fewest possible.
        assert_eq!(band_rows_for(7, 2), 4);
        assert_eq!(band_rows_for(14, 4), 4);
        // Fewer rows than threads: a row a band, some threads idle.
        assert_eq!(band_rows_for(1, 2), 1);
        assert_eq!(band_rows_for(3, 0), 3);
    }
}
