//! Max pooling, without the index tensor Burn's kernel also builds, as two passes over each
//! plane (the maximum is separable): down the columns, each output row taking the maximum of
//! the input rows its windows cover, and then along the rows. The first pass writes its rows
//! into a scratch buffer padded with negative infinity at both ends ([`PaddedPlane`], columns
//! kept together), where every column tap of the window reads one contiguous run for all of
//! the plane's outputs; the second takes the maxima of those runs, several vectors at a time
//! in registers, and copies the kept outputs out. Reading `kh` rows a vector at a time and
//! then `kw` runs costs `kh + kw` loads an output vector instead of `kh · kw`, and no pass
//! splits columns by stride. NaN wins, as in PyTorch. A task takes several planes; its loops
//! run through `pulp`, compiled for the [`VectorPath`](super::VectorPath) in effect. Common
//! windows skip both passes: 3×3 ones at stride 1 with padding 1 are taken across each row and
//! then down on planes of up to 256 values ([`max3x3`]) and read in place on larger ones
//! ([`in_place`]); with AVX2 or AVX-512, 2×2 ones at stride 2 and 3×3 ones at stride 2 without
//! padding are taken across each input row once and then down (2×2 ones without padding on
//! planes of even sides a pair of rows at a time, in one pass) ([`strided_max`]), and 3×3 ones
//! at stride 2 with padding 1 straight from the rows ([`halving`]).

use rayon::prelude::*;

use super::halving;
use super::in_place;
use super::max3x3;
use super::plane::{PaddedPlane, VectorBlocks, Window, first_lanes, in_blocks, store_block};
use super::recycled;
use super::scratch::Scratch;
use super::strided_max;
use super::vector::{dispatch, load, store};
use super::{Activation, ShapeError};

/// Output values one task writes at least (whole planes): enough to pay for handing it out.
const TASK_OUTPUTS: usize = 8 * 1024;

/// Max-pools `planes` planes of `h × w` (NCHW data, batch and channels flattened) into planes
/// of `ho × wo`, which the caller has worked out (PyTorch's sizes, `ceil_mode` included: the
/// last window may overhang the input).
pub(crate) fn max_pool2d(
    x: &[f32],
    [h, w]: [usize; 2],
    [ho, wo]: [usize; 2],
    window: &Window,
) -> Result<Vec<f32>, ShapeError> {
    let (plane_in, plane_out) = (h * w, ho * wo);
    if plane_in == 0 || x.len() % plane_in != 0 {
        return Err(ShapeError(format!(
            "the input holds {} values, not a multiple of {h}x{w}",
            x.len()
        )));
    }
    // The windows' geometry is checked whole, then split into the two passes.
    PaddedPlane::new(window, [h, w], [ho, wo])?;
    let mut out = recycled::take(x.len() / plane_in * plane_out);
    let per_task = TASK_OUTPUTS.div_ceil(plane_out);
    if max3x3::suits(window, [h, w]) {
        max3x3::run(x, [h, w], &mut out, per_task);
        return Ok(out);
    }
    if in_place::suits(window, [h, w]) {
        in_place::run(x, [h, w], &mut out, per_task, Maxima3x3 { nan: true });
        return Ok(out);
    }
    if strided_max::suits(window) {
        strided_max::run(x, [h, w], [ho, wo], window, &mut out, per_task)?;
        return Ok(out);
    }
    if halving::suits(window) {
        let padding = window.padding[0];
        let maxima = Maxima3x3 { nan: true };
        halving::run(x, [h, w], [ho, wo], padding, &mut out, per_task, maxima)?;
        return Ok(out);
    }
    let down = Down::new(window, h, ho);
    let across = Window {
        kernel: [1, window.kernel[1]],
        stride: [1, window.stride[1]],
        padding: [0, window.padding[1]],
        dilation: [1, window.dilation[1]],
    };
    let padded = PaddedPlane::whole_rows(&across, [ho, w], [ho, wo])?;
    out.par_chunks_mut(per_task * plane_out)
        .zip(x.par_chunks(per_task * plane_in))
        .for_each_init(
            || {
                (
                    Scratch::take(padded.copy_len()),
                    Scratch::take(padded.flat_scratch_len()),
                )
            },
            |(copy, flat), (ys, xs)| {
                dispatch(Planes {
                    down: &down,
                    padded: &padded,
                    ys,
                    xs,
                    copy,
                    flat,
                })
            },
        );
    Ok(out)
}

/// The window's rows: for each output row, the input rows the first pass takes the maximum
/// of (worked out once, not for every plane).
struct Down {
    /// For each output row: its first input row inside the plane and how many there are (the
    /// others follow a dilation apart).
    rows: Vec<(usize, usize)>,
    dilation: usize,
    /// Rows of an input plane.
    plane_rows: usize,
}

impl Down {
    /// The rows of `ho` output rows' windows over a plane of `h` rows.
    fn new(window: &Window, h: usize, ho: usize) -> Down {
        let (kernel, stride, padding) = (window.kernel[0], window.stride[0], window.padding[0]);
        let dilation = window.dilation[0].max(1);
        let rows = (0..ho)
            .map(|r| {
                // Window row k reads input row r · stride + k · dilation − padding.
                let top = r * stride;
                let first = padding.saturating_sub(top).div_ceil(dilation);
                let end = (h + padding)
                    .saturating_sub(top)
                    .div_ceil(dilation)
                    .min(kernel);
                match end.checked_sub(first) {
                    Some(count) if count > 0 => (top + first * dilation - padding, count),
                    _ => (0, 0),
                }
            })
            .collect();
        Down {
            rows,
            dilation,
            plane_rows: h,
        }
    }
}

/// One task's planes: `ys` (`[ho, wo]` each) from `xs` (`[h, w]` each), through the scratch
/// buffers `copy` (the first pass's rows, laid out by `padded`) and `flat`.
struct Planes<'a> {
    down: &'a Down,
    padded: &'a PaddedPlane,
    ys: &'a mut [f32],
    xs: &'a [f32],
    copy: &'a mut [f32],
    flat: &'a mut [f32],
}

impl pulp::WithSimd for Planes<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let padded = self.padded;
        // The padding is the same for every plane: written once, never overwritten.
        self.copy.fill(f32::NEG_INFINITY);
        let [ho, wo] = padded.output();
        let plane_in = self.down.plane_rows * padded.input()[1];
        let planes = self
            .ys
            .chunks_exact_mut(ho * wo)
            .zip(self.xs.chunks_exact(plane_in));
        for (plane, (y, input)) in planes.enumerate() {
            let nan = may_hold_nan(simd, input);
            down_columns(simd, (self.down, padded), (self.xs, plane), self.copy, nan);
            let mut maxima = Maxima {
                copy: self.copy,
                taps: padded.tap_starts(),
                nan,
                flat: self.flat,
            };
            in_blocks(simd, padded.vectors::<S>(), &mut maxima);
            padded.copy_out(simd, self.flat, y);
        }
    }
}

/// The first pass over plane `plane` of `xs` (several planes): each output row's maximum of
/// the input rows its windows cover (`down`), into its row of `copy`, laid out by `padded`
/// (negative infinity where they cover none). A row shorter than a vector goes as one whole
/// vector (read across into the rows after it, where `xs` has them) whose lanes past the row
/// hold negative infinity: they land in the padding, or in the next row, written after it.
#[inline(always)]
fn down_columns<S: pulp::Simd>(
    simd: S,
    (down, padded): (&Down, &PaddedPlane),
    (xs, plane): (&[f32], usize),
    copy: &mut [f32],
    nan: bool,
) {
    let (n, lanes) = (padded.kept_columns(), S::F32_LANES);
    let w = padded.input()[1];
    let base = plane * down.plane_rows * w;
    let keep = first_lanes(simd, n);
    let pads = simd.splat_f32s(f32::NEG_INFINITY);
    for (r, &(first, count)) in down.rows.iter().enumerate() {
        let dst = &mut copy[padded.row_at(r)..];
        if count == 0 {
            dst[..n].fill(f32::NEG_INFINITY);
            continue;
        }
        let rows = (base + first * w, w * down.dilation, count);
        let last = rows.0 + (count - 1) * rows.1;
        if n >= lanes {
            // Whole vectors, the last one ending at the row's end (over the one before it,
            // with the same values).
            for at in (0..n).step_by(lanes) {
                let at = at.min(n - lanes);
                store::<S>(&mut dst[at..], column_max(simd, xs, rows, at, nan));
            }
        } else if last + lanes <= xs.len() && dst.len() >= lanes {
            let m = column_max(simd, xs, rows, 0, nan);
            store::<S>(dst, simd.select_f32s(keep, m, pads));
        } else {
            for (x, d) in dst[..n].iter_mut().enumerate() {
                *d = (0..count)
                    .map(|k| xs[rows.0 + k * rows.1 + x])
                    .fold(f32::NEG_INFINITY, larger_value);
            }
        }
    }
}

/// Whether `values` may hold a NaN: `false` only when every value is finite (an infinity
/// answers `true` too, and costs only the slower, NaN-aware maxima). `x · 0` is zero for a
/// finite `x` and NaN otherwise; the products are summed in four independent sums, a
/// multiply-add each.
#[inline(always)]
fn may_hold_nan<S: pulp::Simd>(simd: S, values: &[f32]) -> bool {
    let (vectors, rest) = S::as_simd_f32s(values);
    let zero = simd.splat_f32s(0.0);
    let mut sums = [zero; 4];
    let mut quads = vectors.chunks_exact(4);
    for quad in &mut quads {
        for (sum, &v) in sums.iter_mut().zip(quad) {
            *sum = simd.mul_add_e_f32s(v, zero, *sum);
        }
    }
    for &v in quads.remainder() {
        sums[0] = simd.mul_add_e_f32s(v, zero, sums[0]);
    }
    let total = simd.add_f32s(
        simd.add_f32s(sums[0], sums[1]),
        simd.add_f32s(sums[2], sums[3]),
    );
    let total = simd.reduce_sum_f32s(total) + rest.iter().map(|v| v * 0.0).sum::<f32>();
    total.is_nan()
}

/// A 3×3, stride-1 max pool's window for [`in_place`]: the maximum of the nine taps, NaN-aware
/// where the plane at hand may hold a NaN.
#[derive(Clone)]
struct Maxima3x3 {
    nan: bool,
}

impl in_place::Window3x3 for Maxima3x3 {
    const OUTSIDE: f32 = f32::NEG_INFINITY;

    #[inline(always)]
    fn plane<S: pulp::Simd>(&mut self, simd: S, _: usize, values: &[f32]) {
        self.nan = may_hold_nan(simd, values);
    }

    #[inline(always)]
    fn row<S: pulp::Simd>(&self, simd: S, _: usize, [l, c, r]: [S::f32s; 3]) -> S::f32s {
        larger(simd, r, larger(simd, l, c, self.nan), self.nan)
    }

    #[inline(always)]
    fn rows<S: pulp::Simd>(&self, simd: S, [above, middle, below]: [S::f32s; 3]) -> S::f32s {
        larger(simd, below, larger(simd, above, middle, self.nan), self.nan)
    }

    fn value(&self, taps: [f32; 9]) -> f32 {
        taps.into_iter().fold(f32::NEG_INFINITY, larger_value)
    }
}

/// The maximum of `count` vectors of `xs`, the first at `first + at`, the others each `step`
/// further.
#[inline(always)]
fn column_max<S: pulp::Simd>(
    simd: S,
    xs: &[f32],
    (first, step, count): (usize, usize, usize),
    at: usize,
    nan: bool,
) -> S::f32s {
    let mut m = load::<S>(&xs[first + at..]);
    for k in 1..count {
        m = larger(simd, load::<S>(&xs[first + k * step + at..]), m, nan);
    }
    m
}

/// `v` where it is larger than `m` or NaN, else `m` (which keeps a NaN it took): one value of
/// [`larger`].
pub(super) fn larger_value(m: f32, v: f32) -> f32 {
    if v > m || v.is_nan() { v } else { m }
}

/// The larger of `a` and `b`; with `NAN`, NaN where either is (for kernels that know per plane
/// whether it may hold one).
#[inline(always)]
pub(super) fn maximum<S: pulp::Simd, const NAN: bool>(simd: S, a: S::f32s, b: S::f32s) -> S::f32s {
    if NAN {
        larger(simd, a, b, true)
    } else {
        simd.max_f32s(a, b)
    }
}

/// `v` where it is larger than `m` or (where the plane holds a NaN, `nan`) NaN, else `m`
/// (which keeps a NaN it took).
#[inline(always)]
fn larger<S: pulp::Simd>(simd: S, v: S::f32s, m: S::f32s, nan: bool) -> S::f32s {
    if nan {
        let take = simd.or_m32s(
            simd.greater_than_f32s(v, m),
            simd.not_m32s(simd.equal_f32s(v, v)),
        );
        simd.select_f32s(take, v, m)
    } else {
        simd.max_f32s(v, m)
    }
}

/// One plane's second pass, vector block by vector block: the maximum of `copy` read at the
/// `taps`' starts, into `flat`. Where the plane holds a NaN (`nan`), each step also checks
/// for it, so that it wins.
struct Maxima<'a> {
    copy: &'a [f32],
    taps: &'a [usize],
    nan: bool,
    flat: &'a mut [f32],
}

impl VectorBlocks for Maxima<'_> {
    #[inline(always)]
    fn block<S: pulp::Simd, const B: usize>(&mut self, simd: S, first: usize) {
        let lanes = S::F32_LANES;
        let at = first * lanes;
        let mut acc = [simd.splat_f32s(f32::NEG_INFINITY); B];
        for &start in self.taps {
            let values = &self.copy[start + at..start + at + B * lanes];
            for (b, m) in acc.iter_mut().enumerate() {
                *m = larger(simd, load::<S>(&values[b * lanes..]), *m, self.nan);
            }
        }
        store_block(
            simd,
            acc,
            Activation::Identity,
            &mut self.flat[at..at + B * lanes],
        );
    }
}

/// Global average pooling (an adaptive average pool to 1×1): the mean of each `plane`-value
/// plane of `x`, one value per plane.
pub(crate) fn plane_means(x: &[f32], plane: usize) -> Result<Vec<f32>, ShapeError> {
    if plane == 0 || x.len() % plane != 0 {
        return Err(ShapeError(format!(
            "the input holds {} values, not a multiple of a {plane}-value plane",
            x.len()
        )));
    }
    let mut out = vec![0.0f32; x.len() / plane];
    out.par_chunks_mut(TASK_OUTPUTS)
        .zip(x.par_chunks(TASK_OUTPUTS * plane))
        .for_each(|(means, xs)| dispatch(Means { means, xs }));
    Ok(out)
}

/// One task's planes for [`plane_means`]: `means` (one per plane) of `xs`.
struct Means<'a> {
    means: &'a mut [f32],
    xs: &'a [f32],
}

impl pulp::WithSimd for Means<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let plane = self.xs.len() / self.means.len().max(1);
        for (mean, values) in self.means.iter_mut().zip(self.xs.chunks_exact(plane)) {
            let (vectors, rest) = S::as_simd_f32s(values);
            let sum = vectors
                .iter()
                .fold(simd.splat_f32s(0.0), |sum, &v| simd.add_f32s(sum, v));
            let total = simd.reduce_sum_f32s(sum) + rest.iter().sum::<f32>();
            *mean = total / plane as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_take_the_maximum_of_their_valid_inputs() {
        // One 4 x 5 plane, 3x3 windows, stride 2, padding 1.
        let x: Vec<f32> = (0..20).map(|i| ((i * 7) % 11) as f32).collect();
        let window = Window {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
            dilation: [1, 1],
        };
        let y = max_pool2d(&x, [4, 5], [2, 3], &window).expect("pools");
        let at = |r: usize, c: usize| x[r * 5 + c];
        let window_max = |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>| {
            rows.flat_map(|r| cols.clone().map(move |c| (r, c)))
                .map(|(r, c)| at(r, c))
                .fold(f32::NEG_INFINITY, f32::max)
        };
        assert_eq!(
            y,
            vec![
                window_max(0..2, 0..2),
                window_max(0..2, 1..4),
                window_max(0..2, 3..5),
                window_max(1..4, 0..2),
                window_max(1..4, 1..4),
                window_max(1..4, 3..5),
            ]
        );
    }

    /// The pool by its definition, windows clipped to the input.
    fn naive(x: &[f32], [h, w]: [usize; 2], [ho, wo]: [usize; 2], p: &Window) -> Vec<f32> {
        let mut y = Vec::new();
        for plane in x.chunks(h * w) {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut m = f32::NEG_INFINITY;
                    for ky in 0..p.kernel[0] {
                        for kx in 0..p.kernel[1] {
                            let iy = (oy * p.stride[0] + ky * p.dilation[0]) as isize
                                - p.padding[0] as isize;
                            let ix = (ox * p.stride[1] + kx * p.dilation[1]) as isize
                                - p.padding[1] as isize;
                            if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                                m = m.max(plane[iy as usize * w + ix as usize]);
                            }
                        }
                    }
                    y.push(m);
                }
            }
        }
        y
    }

    #[test]
    fn strides_ceil_mode_sizes_and_many_planes_match_the_definition() {
        let x: Vec<f32> = (0..3000).map(|i| ((i * 37) % 101) as f32 - 50.0).collect();
        // (kernel, stride, padding, dilation, input, output): GoogLeNet's ceil-mode pools (the
        // last window overhangs the input), a stride-1 padded one, a strided dilated one.
        let cases = [
            (3, 2, 0, 1, [13, 13], [6, 6]),
            (3, 2, 0, 1, [14, 14], [7, 7]),
            (3, 1, 1, 1, [10, 10], [10, 10]),
            (2, 3, 1, 2, [11, 9], [4, 3]),
            (1, 1, 0, 1, [5, 6], [5, 6]),
            // Rows of several vectors: ResNet's padded stride-2 pool, a stride-1 one, and a
            // ceil-mode one on a plane of odd size.
            (3, 2, 1, 1, [20, 37], [10, 19]),
            (3, 1, 1, 1, [9, 33], [9, 33]),
            (3, 2, 0, 1, [35, 35], [17, 17]),
            // A stride-1 one on a plane too large to take flat (read in place, row by row).
            (3, 1, 1, 1, [20, 20], [20, 20]),
        ];
        for (k, s, p, d, [h, w], out) in cases {
            let window = Window {
                kernel: [k, k],
                stride: [s, s],
                padding: [p, p],
                dilation: [d, d],
            };
            let planes = 3000 / (h * w);
            let x = &x[..planes * h * w];
            assert_eq!(
                max_pool2d(x, [h, w], out, &window).expect("pools"),
                naive(x, [h, w], out, &window),
                "{window:?} {h}x{w}"
            );
        }
    }

    #[test]
    fn nan_propagates_and_dilation_skips() {
        let window = Window {
            kernel: [1, 2],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 2],
        };
        let x = vec![1.0, 9.0, 3.0, f32::NAN, 2.0];
        let y = max_pool2d(&x, [1, 5], [1, 3], &window).expect("pools");
        assert_eq!(y[0], 3.0);
        assert!(y[1].is_nan());
        assert_eq!(y[2], 3.0);
        // A NaN in a plane of rows several vectors long, where both passes see it.
        let window = Window {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
            dilation: [1, 1],
        };
        let mut x: Vec<f32> = (0..2 * 8 * 40).map(|i| (i % 17) as f32).collect();
        x[3 * 40 + 20] = f32::NAN;
        let y = max_pool2d(&x, [8, 40], [4, 20], &window).expect("pools");
        for (i, v) in y[..80].iter().enumerate() {
            let (oy, ox) = (i / 20, i % 20);
            let covered = (1..=2).contains(&oy) && (10..=10).contains(&ox);
            assert_eq!(v.is_nan(), covered, "output ({oy}, {ox}) is {v}");
        }
        assert!(y[80..].iter().all(|v| !v.is_nan()));
        // And in a small plane, where a stride-1 window is taken across each row, then down.
        let window = Window {
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
        };
        let mut x: Vec<f32> = (0..3 * 64).map(|i| (i % 13) as f32).collect();
        x[64 + 3 * 8 + 3] = f32::NAN;
        let y = max_pool2d(&x, [8, 8], [8, 8], &window).expect("pools");
        for (i, v) in y.iter().enumerate() {
            let (plane, oy, ox) = (i / 64, i % 64 / 8, i % 8);
            let covered = plane == 1 && (2..=4).contains(&oy) && (2..=4).contains(&ox);
            assert_eq!(v.is_nan(), covered, "output ({plane}, {oy}, {ox}) is {v}");
        }
        // And in a larger plane, row by row, at the last column (a row's last vector).
        let mut x: Vec<f32> = (0..2 * 20 * 24).map(|i| (i % 13) as f32).collect();
        x[20 * 24 + 5 * 24 + 23] = f32::NAN;
        let y = max_pool2d(&x, [20, 24], [20, 24], &window).expect("pools");
        for (i, v) in y.iter().enumerate() {
            let (plane, oy, ox) = (i / 480, i % 480 / 24, i % 24);
            let covered = plane == 1 && (4..=6).contains(&oy) && (22..=23).contains(&ox);
            assert_eq!(v.is_nan(), covered, "output ({plane}, {oy}, {ox}) is {v}");
        }
    }

    #[test]
    fn inputs_and_outputs_that_disagree_are_refused() {
        let window = Window {
            kernel: [2, 2],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
        };
        // A window that would start past the input, and an input that is not whole planes.
        assert!(max_pool2d(&[0.0; 16], [4, 4], [5, 5], &window).is_err());
        assert!(max_pool2d(&[0.0; 15], [4, 4], [3, 3], &window).is_err());
        assert_eq!(
            max_pool2d(&[1.0; 32], [4, 4], [3, 3], &window).expect("pools"),
            vec![1.0; 18]
        );
    }

    #[test]
    fn global_average_pooling_takes_each_planes_mean() {
        // Planes of 49 values (a vector and more, on every path), 3 of them; and planes of 1.
        let x: Vec<f32> = (0..3 * 49).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let means = plane_means(&x, 49).expect("runs");
        for (mean, plane) in means.iter().zip(x.chunks_exact(49)) {
            let want = plane.iter().sum::<f32>() / 49.0;
            assert!((mean - want).abs() < 1e-5, "{mean} against {want}");
        }
        assert_eq!(plane_means(&[2.0, 3.0], 1).expect("runs"), vec![2.0, 3.0]);
        assert!(plane_means(&x, 50).is_err());
        assert!(plane_means(&x, 0).is_err());
    }
}
