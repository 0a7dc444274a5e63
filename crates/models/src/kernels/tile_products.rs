//! Winograd's products ([`winograd`](super::winograd)): for every point of the transformed
//! window, the tiles' transformed inputs (`[tiles, in]`) times the point's transformed weight
//! (`[in, out]`, packed at load in blocks of [`BLOCK`] output channels, `[⌈out / BLOCK⌉, in,
//! BLOCK]`), in register tiles of a few tiles × a few vectors of output channels. Each weight
//! vector loaded feeds every tile of the register tile, and each input value, broadcast straight
//! from its tile's row, feeds every vector: the inputs are not packed. A block's weights (16 KB
//! for 256 input channels) stay in the first-level cache while every group of tiles reads them,
//! and the first group asks for them [`STREAM_AHEAD`] values ahead as it goes, so that a layer
//! whose weight comes from memory reads it as one stream.
//!
//! Against gemm (`[tiles, in] × [in, out]` a point at a time), which packs the tiles' rows on every
//! call (20 % of a layer under `perf`) and runs its register tiles over 16 tiles (two AVX2 vectors
//! of them), so that a 14×14 map's 49 tiles left a register tile of 8 lanes for the 49th (12 %):
//! here the tiles go in groups as even as [`shape`] allows (49 as four groups of 6 and five of 5 on
//! AVX2). Machine A, in-pass, medians of 3 alternating processes: on AVX2, one thread, twelve
//! stacked 256 → 256 layers on 14×14 27.8 → 17.7 ms (ONNX Runtime's such layer 1.91–1.95 ms inside
//! ResNet), ResNet-18's pass 35.6 → 28.7, GoogLeNet's 30.9 → 26.0, ResNet-50's 86.6 → 79.6; on
//! AVX-512 the passes within 1 % on one thread, and on two the layers on 28×28 and 56×56 maps
//! 0.89–0.93×, those on 14×14 1.07–1.13× (ResNet-50's pass 25.96 → 26.15 ms, GoogLeNet's 10.86 →
//! 10.45).

use super::prefetch::{LINE, STREAM_AHEAD, prefetch};
use super::vector::{load, store};

/// Output channels per block of the packed weight: a cache line of `f32`, a whole number of
/// vectors on every path.
pub(crate) const BLOCK: usize = 16;

/// Where the weight of input channel `c` and output channel `o` at `point` lies in a weight of
/// `cin` input and `cout` output channels packed for [`Products`].
pub(crate) fn packed_at(point: usize, c: usize, o: usize, cin: usize, cout: usize) -> usize {
    let block = point * cout.div_ceil(BLOCK) + o / BLOCK;
    (block * cin + c) * BLOCK + o % BLOCK
}

/// The largest register tile on the vector path of `S`: tiles, and vectors of output channels.
/// With 16 vector registers (AVX2), 6 tiles × 2 vectors, 12 sums, leaving the compiler the two
/// weight vectors and a broadcast value; with 32 (AVX-512), 8 × 3, 24 sums.
#[inline(always)]
fn shape<S: pulp::Simd>() -> (usize, usize) {
    if S::REGISTER_COUNT < 32 {
        (6, 2)
    } else {
        (8, 3)
    }
}

/// The products of some tiles, one per point, for output channels `first..first + count`
/// (`first` a multiple of [`BLOCK`]). Run through [`dispatch`](super::vector::dispatch); the
/// caller checks the sizes ([`Products::fits`]).
pub(crate) struct Products<'a> {
    /// The transformed windows, `[tile, point, in]`.
    pub(crate) v: &'a [f32],
    /// The layer's transformed weight, `[point, ⌈out / BLOCK⌉, in, BLOCK]`.
    pub(crate) weight: &'a [f32],
    /// Input channels.
    pub(crate) cin: usize,
    /// Output channels of the layer (the weight's row length).
    pub(crate) cout: usize,
    /// Points of a transformed window.
    pub(crate) points: usize,
    /// Tiles.
    pub(crate) tiles: usize,
    /// The first output channel computed.
    pub(crate) first: usize,
    /// Output channels computed.
    pub(crate) count: usize,
    /// The products, `[tile, point, count]`.
    pub(crate) m: &'a mut [f32],
}

impl Products<'_> {
    /// Whether the operands' sizes agree, and the channels start on a block and lie inside the
    /// layer's.
    pub(crate) fn fits(&self) -> bool {
        let blocks = self.cout.div_ceil(BLOCK);
        self.first % BLOCK == 0
            && self.first + self.count <= self.cout
            && self.v.len() == self.tiles * self.points * self.cin
            && self.weight.len() == self.points * blocks * self.cin * BLOCK
            && self.m.len() == self.tiles * self.points * self.count
    }
}

impl pulp::WithSimd for Products<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(mut self, simd: S) {
        if !self.fits() {
            return;
        }
        let lanes = S::F32_LANES;
        let (most_tiles, most_vectors) = shape::<S>();
        let vectors_in_all = self.count.div_ceil(lanes);
        let groups = self.tiles.div_ceil(most_tiles);
        for point in 0..self.points {
            let mut vector = 0;
            while vector < vectors_in_all {
                let vectors = (vectors_in_all - vector).min(most_vectors);
                let mut tile = 0;
                for group in 0..groups {
                    // Groups as even as they come: the first `tiles % groups` one tile larger.
                    let rows = self.tiles / groups + usize::from(group < self.tiles % groups);
                    let at = At {
                        point,
                        tile,
                        column: vector * lanes,
                    };
                    match (rows, vectors) {
                        (1, 1) => self.alone::<S, 1, 1>(simd, at),
                        (2, 1) => self.alone::<S, 2, 1>(simd, at),
                        (3, 1) => self.alone::<S, 3, 1>(simd, at),
                        (4, 1) => self.alone::<S, 4, 1>(simd, at),
                        (5, 1) => self.alone::<S, 5, 1>(simd, at),
                        (6, 1) => self.alone::<S, 6, 1>(simd, at),
                        (7, 1) => self.alone::<S, 7, 1>(simd, at),
                        (_, 1) => self.alone::<S, 8, 1>(simd, at),
                        (1, 2) => self.alone::<S, 1, 2>(simd, at),
                        (2, 2) => self.alone::<S, 2, 2>(simd, at),
                        (3, 2) => self.alone::<S, 3, 2>(simd, at),
                        (4, 2) => self.alone::<S, 4, 2>(simd, at),
                        (5, 2) => self.alone::<S, 5, 2>(simd, at),
                        (6, 2) => self.alone::<S, 6, 2>(simd, at),
                        (7, 2) => self.alone::<S, 7, 2>(simd, at),
                        (_, 2) => self.alone::<S, 8, 2>(simd, at),
                        (1, _) => self.alone::<S, 1, 3>(simd, at),
                        (2, _) => self.alone::<S, 2, 3>(simd, at),
                        (3, _) => self.alone::<S, 3, 3>(simd, at),
                        (4, _) => self.alone::<S, 4, 3>(simd, at),
                        (5, _) => self.alone::<S, 5, 3>(simd, at),
                        (6, _) => self.alone::<S, 6, 3>(simd, at),
                        (7, _) => self.alone::<S, 7, 3>(simd, at),
                        _ => self.alone::<S, 8, 3>(simd, at),
                    }
                    tile += rows;
                }
                vector += vectors;
            }
        }
    }
}

/// Where a register tile lies: its point, its first tile and its first output channel
/// (counted from [`Products::first`]).
#[derive(Clone, Copy)]
struct At {
    point: usize,
    tile: usize,
    column: usize,
}

impl Products<'_> {
    /// [`Products::sum`] in a function of its own, so that the compiler keeps every sum of the
    /// register tile in registers (as in [`patches`](super::patches)).
    #[inline(never)]
    fn alone<S: pulp::Simd, const R: usize, const V: usize>(&mut self, simd: S, at: At) {
        simd.vectorize(Tile::<R, V> { products: self, at });
    }

    /// `R` tiles × `V` vectors of output channels at `at`, summed over the input channels; the
    /// first group of tiles asks for the weights ahead.
    #[inline(always)]
    fn sum<S: pulp::Simd, const R: usize, const V: usize>(&mut self, simd: S, at: At) {
        let lanes = S::F32_LANES;
        let (cin, points, count) = (self.cin, self.points, self.count);
        let rows: [&[f32]; R] = std::array::from_fn(|r| {
            let start = ((at.tile + r) * points + at.point) * cin;
            &self.v[start..start + cin]
        });
        // Each vector's run of its block, `BLOCK` values a row; the weight from there on.
        let blocks = self.cout.div_ceil(BLOCK);
        let runs: [&[f32]; V] = std::array::from_fn(|v| {
            let column = self.first + at.column + v * lanes;
            let block = at.point * blocks + column / BLOCK;
            &self.weight[block * cin * BLOCK + column % BLOCK..]
        });
        let ahead = at.tile == 0;
        let mut sums = [[simd.splat_f32s(0.0); V]; R];
        for c in 0..cin {
            let at_row = c * BLOCK;
            if ahead {
                for (v, run) in runs.iter().enumerate() {
                    // A line per block: the vectors of one block share it.
                    if (at.column + v * lanes) % LINE == 0 {
                        prefetch(run, at_row + STREAM_AHEAD);
                    }
                }
            }
            let w: [S::f32s; V] = std::array::from_fn(|v| load::<S>(&runs[v][at_row..]));
            for (tile_sums, input) in sums.iter_mut().zip(&rows) {
                let value = simd.splat_f32s(input[c]);
                for (sum, w) in tile_sums.iter_mut().zip(w) {
                    *sum = simd.mul_add_e_f32s(value, w, *sum);
                }
            }
        }
        for (r, tile_sums) in sums.into_iter().enumerate() {
            let start = ((at.tile + r) * points + at.point) * count + at.column;
            for (v, sum) in tile_sums.into_iter().enumerate() {
                let from = start + v * lanes;
                let left = count - (at.column + v * lanes);
                if left >= lanes {
                    store::<S>(&mut self.m[from..], sum);
                } else {
                    simd.partial_store_f32s(&mut self.m[from..from + left], sum);
                }
            }
        }
    }
}

/// One register tile of [`Products`], as an operation for [`Products::alone`].
struct Tile<'t, 'a, const R: usize, const V: usize> {
    products: &'t mut Products<'a>,
    at: At,
}

impl<const R: usize, const V: usize> pulp::WithSimd for Tile<'_, '_, R, V> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        self.products.sum::<S, R, V>(simd, self.at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::vector::dispatch;

    #[test]
    fn products_are_the_tiles_rows_times_each_points_weight() {
        // Tile counts around the groups (one, uneven, 49 = 6·4 + 5·5), channel counts around the
        // blocks and the vectors, and a share of channels that starts past the first block.
        let points = 4;
        for (tiles, cin, cout, first) in [
            (1, 3, 5, 0),
            (7, 16, 16, 0),
            (13, 5, 40, 16),
            (49, 16, 64, 0),
            (49, 9, 64, 32),
            (17, 2, 100, 48),
        ] {
            let count = cout - first;
            let v: Vec<f32> = (0..tiles * points * cin)
                .map(|i| ((i * 7) % 23) as f32 / 11.0 - 1.0)
                .collect();
            let mut weight = vec![0.0f32; points * usize::div_ceil(cout, BLOCK) * cin * BLOCK];
            let value =
                |p: usize, c: usize, o: usize| ((p * 31 + c * 5 + o * 3) % 17) as f32 / 8.0 - 1.0;
            for p in 0..points {
                for c in 0..cin {
                    for o in 0..cout {
                        weight[packed_at(p, c, o, cin, cout)] = value(p, c, o);
                    }
                }
            }
            let mut m = vec![f32::NAN; tiles * points * count];
            let products = Products {
                v: &v,
                weight: &weight,
                cin,
                cout,
                points,
                tiles,
                first,
                count,
                m: &mut m,
            };
            assert!(products.fits());
            dispatch(products);
            for t in 0..tiles {
                for p in 0..points {
                    for o in 0..count {
                        let want: f64 = (0..cin)
                            .map(|c| {
                                f64::from(v[(t * points + p) * cin + c])
                                    * f64::from(value(p, c, first + o))
                            })
                            .sum();
                        let got = f64::from(m[(t * points + p) * count + o]);
                        assert!(
                            (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                            "{tiles} tiles, {cin} -> {cout} from {first}: tile {t}, point {p}, \
                             channel {o}: {got}, not {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_share_off_a_block_or_past_the_layer_does_not_fit() {
        // 1 tile, 2 input channels, 16 output channels, 4 points.
        let (v, weight) = (vec![0.0; 4 * 2], vec![0.0; 4 * 2 * 16]);
        let fits = |first: usize, count: usize| {
            let mut m = vec![0.0; 4 * count];
            Products {
                v: &v,
                weight: &weight,
                cin: 2,
                cout: 16,
                points: 4,
                tiles: 1,
                first,
                count,
                m: &mut m,
            }
            .fits()
        };
        assert!(fits(0, 8));
        assert!(!fits(8, 8));
        assert!(!fits(0, 24));
    }
}
