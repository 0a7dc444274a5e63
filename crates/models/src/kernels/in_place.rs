//! 3×3 windows at stride 1 with one value of padding, read in place: no padded copy of the
//! input and no copy of the output. MobileNetV2's stride-1 depthwise layers and GoogLeNet's
//! stride-1 max pools run here.
//!
//! A small plane is taken as one flat run of `h · w` values. An output vector at flat position
//! `f` reads, for tap `(dy, dx)`, the input vector at `f + dy · w + dx`, a run that crosses rows
//! freely; the lanes whose tap falls outside the plane (a row above the first, below the last,
//! left of the first column or right of the last) would read a neighbour's value, so those
//! values are replaced by the padding value with a per-lane mask. The masks depend only on `f`
//! within the plane, so they are worked out once per task. The last vector of a plane ends at
//! the plane's end (over the one before it, with the same values), so every store stays inside
//! the plane; reads run into the neighbouring planes, which the masks drop, except before the
//! first plane and after the last of the whole input, where the few vectors that would read
//! outside it are computed one value at a time.
//!
//! A larger plane, at least a vector wide, goes output row by output row: a row's vectors start
//! every vector's width, the last ending at the row's end. Only the first vector's left taps and
//! the last one's right taps need a mask (the first lane and the last), the rows above the
//! first and below the last are skipped, and the vectors between are plain loads and
//! multiply-adds.
//!
//! Against a padded copy per plane ([`PaddedPlane`](super::plane::PaddedPlane)), this does a
//! few more operations per vector (six selects on small planes) but no row-by-row copies in and
//! out, which cost more than the taps.

use rayon::prelude::*;

use super::plane::{MAX_LANES, Window, first_lanes, flat_starts};
use super::vector::{dispatch, load, store};

/// Output vectors computed together, their results held in registers across the taps.
const BLOCK: usize = 4;

/// Planes of at most this many values run as one flat run; larger ones row by row. Depthwise
/// layers, one thread, AVX-512, six stacked layers, flat against padded copies: 960 planes of
/// 7×7 0.035 against 0.071 ms a layer, 576 of 14×14 0.065 against 0.088; 192 of 28×28 0.093
/// against 0.091, 144 of 56×56 0.42 against 0.25 and 32 of 112×112 0.77 against 0.21 (a task
/// there holds a plane or two, and works out the masks of every vector of it again).
const MAX_FLAT: usize = 256;

/// Whether `window` over `[h, w]` planes runs in place: a 3×3 window at stride 1, padding 1
/// and dilation 1, over planes that hold a whole vector of the widest path (so that a plane's
/// last vector can end at its end) and, past [`MAX_FLAT`] values, whose rows do.
pub(crate) fn suits(window: &Window, [h, w]: [usize; 2]) -> bool {
    *window == Window::SAME_3X3 && h * w >= MAX_LANES && (h * w <= MAX_FLAT || w >= MAX_LANES)
}

/// Runs `window` over every `[h, w]` plane of `x` into `out` (as many planes), `per_task`
/// planes to a task, the tasks in parallel.
#[inline(always)]
pub(crate) fn run<W: Window3x3 + Clone + Sync>(
    x: &[f32],
    hw: [usize; 2],
    out: &mut [f32],
    per_task: usize,
    window: W,
) {
    out.par_chunks_mut(per_task * hw[0] * hw[1])
        .enumerate()
        .for_each(|(task, ys)| {
            dispatch(Planes {
                hw,
                x,
                first: task * per_task,
                ys,
                window: window.clone(),
            })
        });
}

/// What a layer does with the nine values a 3×3 window reads.
pub(crate) trait Window3x3 {
    /// The value a tap outside the plane reads: the padding.
    const OUTSIDE: f32;

    /// Vectors of outputs the stride-2 kernel ([`halving`](super::halving)) computes together
    /// where the CPU has 16 vector registers (AVX2), at most 4: more keep more loads and
    /// multiply-adds in flight, and more sums and taps that may not fit the registers. Machine
    /// D, a layer alone, one thread: a max pool of 64 planes 112² → 56² 0.161 ms at 2, 0.175 at
    /// 4.
    const VECTORS_16: usize = 2;

    /// Makes ready for plane `plane` of the input (its channel, for example), whose values are
    /// `values`.
    fn plane<S: pulp::Simd>(&mut self, simd: S, plane: usize, values: &[f32]);

    /// Row `row` of the window for a vector of outputs, from its left, centre and right input
    /// vectors ([`Window3x3::OUTSIDE`] in the lanes outside the plane).
    fn row<S: pulp::Simd>(&self, simd: S, row: usize, values: [S::f32s; 3]) -> S::f32s;

    /// A vector of outputs from its window's three rows (each [`Window3x3::row`], or
    /// [`Window3x3::OUTSIDE`] in the lanes where the row is outside the plane).
    fn rows<S: pulp::Simd>(&self, simd: S, rows: [S::f32s; 3]) -> S::f32s;

    /// One output from its taps' values, row-major ([`Window3x3::OUTSIDE`] outside the plane).
    fn value(&self, taps: [f32; 9]) -> f32;
}

/// The planes of one task: its output planes `ys` (whole `[h, w]` planes) from input planes
/// `first..` of `x` (the whole input), by `window`.
struct Planes<'a, W> {
    /// Rows and columns of a plane.
    hw: [usize; 2],
    /// The whole input, every plane of every sample.
    x: &'a [f32],
    /// The index in `x` of the task's first plane.
    first: usize,
    /// The task's output planes.
    ys: &'a mut [f32],
    /// What the layer computes.
    window: W,
}

/// The lanes of an output vector whose row above, row below, column to the left and column
/// to the right are inside the plane.
type Masks<S> = [<S as pulp::Simd>::m32s; 4];

impl<W: Window3x3> pulp::WithSimd for Planes<'_, W> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        if self.hw[0] * self.hw[1] > MAX_FLAT {
            let walk = RowVectors::new::<W>(simd, self.hw);
            self.each_plane(simd, &walk);
        } else {
            let walk = FlatVectors::new(simd, self.hw);
            self.each_plane(simd, &walk);
        }
    }
}

impl<W: Window3x3> Planes<'_, W> {
    /// Makes the window ready for each of the task's planes and runs `walk` over it.
    #[inline(always)]
    fn each_plane<S: pulp::Simd, P: Walk<S>>(mut self, simd: S, walk: &P) {
        let n = self.hw[0] * self.hw[1];
        for (i, y) in self.ys.chunks_exact_mut(n).enumerate() {
            let plane = self.first + i;
            let at = plane * n;
            self.window.plane(simd, plane, &self.x[at..at + n]);
            let plane = Plane {
                x: self.x,
                at,
                hw: self.hw,
                window: &self.window,
            };
            walk.run(simd, &plane, y);
        }
    }
}

/// How a task walks each of its planes (see the module's notes), with what it works out once
/// for all of them.
trait Walk<S: pulp::Simd> {
    /// Computes `plane`'s outputs into `y`.
    fn run<W: Window3x3>(&self, simd: S, plane: &Plane<'_, W>, y: &mut [f32]);
}

impl<S: pulp::Simd> Walk<S> for FlatVectors<S> {
    #[inline(always)]
    fn run<W: Window3x3>(&self, simd: S, plane: &Plane<'_, W>, y: &mut [f32]) {
        plane.flat(simd, self, y);
    }
}

impl<S: pulp::Simd> Walk<S> for RowVectors<S> {
    #[inline(always)]
    fn run<W: Window3x3>(&self, simd: S, plane: &Plane<'_, W>, y: &mut [f32]) {
        plane.by_rows(simd, self, y);
    }
}

/// Where each output vector of a flat plane starts, and its masks.
struct FlatVectors<S: pulp::Simd> {
    starts: Vec<usize>,
    masks: Vec<Masks<S>>,
}

impl<S: pulp::Simd> FlatVectors<S> {
    #[inline(always)]
    fn new(simd: S, [h, w]: [usize; 2]) -> Self {
        let starts = flat_starts(h * w, S::F32_LANES);
        let masks = starts
            .iter()
            .map(|&f| masks::<S>(simd, f, [h, w]))
            .collect();
        FlatVectors { starts, masks }
    }
}

/// The masks of a row's first vector (all lanes but the first) and last (all but the last), all
/// lanes, and a row of the padding value with a value of margin either side.
struct RowVectors<S: pulp::Simd> {
    not_first: S::m32s,
    not_last: S::m32s,
    all: S::m32s,
    outside: Vec<f32>,
}

impl<S: pulp::Simd> RowVectors<S> {
    #[inline(always)]
    fn new<W: Window3x3>(simd: S, [_, w]: [usize; 2]) -> Self {
        let lanes = S::F32_LANES;
        RowVectors {
            not_first: simd.not_m32s(first_lanes(simd, 1)),
            not_last: first_lanes(simd, lanes - 1),
            all: first_lanes(simd, lanes),
            outside: vec![W::OUTSIDE; w + 2],
        }
    }
}

impl<W: Window3x3> Plane<'_, W> {
    /// The plane as one flat run of vectors, [`BLOCK`] at a time, into its outputs `y`.
    #[inline(always)]
    fn flat<S: pulp::Simd>(&self, simd: S, vectors: &FlatVectors<S>, y: &mut [f32]) {
        let mut v = 0;
        while v < vectors.starts.len() {
            let b = BLOCK.min(vectors.starts.len() - v);
            let block = (&vectors.starts[v..v + b], &vectors.masks[v..v + b]);
            match b {
                BLOCK => self.block::<S, BLOCK>(simd, block, y),
                3 => self.block::<S, 3>(simd, block, y),
                2 => self.block::<S, 2>(simd, block, y),
                _ => self.block::<S, 1>(simd, block, y),
            }
            v += b;
        }
    }

    /// The plane output row by output row, into its outputs `y`, two rows at a time where
    /// there are two and the CPU has 32 vector registers (their four input rows each read once
    /// for both; with 16, the sums of two rows spill and run slower): each row's first and
    /// last vectors together, with their outer taps masked, then the vectors between,
    /// [`BLOCK`] at a time. A row above the first or below the last reads a row of the padding
    /// value.
    #[inline(always)]
    fn by_rows<S: pulp::Simd>(&self, simd: S, vectors: &RowVectors<S>, y: &mut [f32]) {
        let [h, w] = self.hw;
        let (lanes, last) = (S::F32_LANES, w - S::F32_LANES);
        let (window, all) = (self.window, vectors.all);
        let edges = [
            [vectors.not_first, vectors.all],
            [vectors.all, vectors.not_last],
        ];
        let mut oy = 0;
        while oy < h {
            if S::REGISTER_COUNT >= 32
                && oy + 1 < h
                && let Some(rows) = self.rows_from::<4>(oy, &vectors.outside)
            {
                let (top, bottom) = y[oy * w..(oy + 2) * w].split_at_mut(w);
                let mut ys = [top, bottom];
                if last == 0 {
                    let masks = [[vectors.not_first, vectors.not_last]];
                    row_pair::<S, W, 1, true>(simd, window, rows, [0], masks, &mut ys);
                } else {
                    row_pair::<S, W, 2, true>(simd, window, rows, [0, last], edges, &mut ys);
                }
                let mut x = lanes;
                while x < last {
                    x += match (last - x).div_ceil(lanes) {
                        BLOCK.. => {
                            interior_pair::<S, W, BLOCK>(simd, window, rows, x, all, &mut ys)
                        }
                        3 => interior_pair::<S, W, 3>(simd, window, rows, x, all, &mut ys),
                        2 => interior_pair::<S, W, 2>(simd, window, rows, x, all, &mut ys),
                        _ => interior_pair::<S, W, 1>(simd, window, rows, x, all, &mut ys),
                    };
                }
                oy += 2;
                continue;
            }
            let Some(rows) = self.rows_from::<3>(oy, &vectors.outside) else {
                self.one_by_one(oy * w, w, y);
                oy += 1;
                continue;
            };
            let y = &mut y[oy * w..(oy + 1) * w];
            if last == 0 {
                let masks = [[vectors.not_first, vectors.not_last]];
                row_block::<S, W, 1, true>(simd, window, rows, [0], masks, y);
            } else {
                row_block::<S, W, 2, true>(simd, window, rows, [0, last], edges, y);
            }
            let mut x = lanes;
            while x < last {
                x += match (last - x).div_ceil(lanes) {
                    BLOCK.. => interior::<S, W, BLOCK>(simd, window, rows, x, all, y),
                    3 => interior::<S, W, 3>(simd, window, rows, x, all, y),
                    2 => interior::<S, W, 2>(simd, window, rows, x, all, y),
                    _ => interior::<S, W, 1>(simd, window, rows, x, all, y),
                };
            }
            oy += 1;
        }
    }
}

/// The output vectors of one row that start at columns `starts`, into the row's outputs `y`,
/// from its window's three input `rows` (each with a value of margin on either side); returns
/// how many columns they cover. Where `EDGES`, each vector's left and right taps keep only the
/// lanes of its `masks`.
#[inline(always)]
fn row_block<S: pulp::Simd, W: Window3x3, const B: usize, const EDGES: bool>(
    simd: S,
    window: &W,
    rows: [&[f32]; 3],
    starts: [usize; B],
    masks: [[S::m32s; 2]; B],
    y: &mut [f32],
) -> usize {
    let (lanes, outside) = (S::F32_LANES, simd.splat_f32s(W::OUTSIDE));
    let mut results = [outside; B];
    for (b, result) in results.iter_mut().enumerate() {
        let mut sums = [outside; 3];
        for (r, (sum, row)) in sums.iter_mut().zip(rows).enumerate() {
            let values = taps::<S, W, EDGES>(simd, row, starts[b], masks[b]);
            *sum = window.row(simd, r, values);
        }
        *result = window.rows(simd, sums);
    }
    for (&x, result) in starts.iter().zip(results) {
        store::<S>(&mut y[x..], result);
    }
    B * lanes
}

/// [`row_block`] for `B` vectors between a row's first and last, one after the other from
/// column `x`, with no masks (`all` lanes kept).
#[inline(always)]
fn interior<S: pulp::Simd, W: Window3x3, const B: usize>(
    simd: S,
    window: &W,
    rows: [&[f32]; 3],
    x: usize,
    all: S::m32s,
    y: &mut [f32],
) -> usize {
    let starts = one_after_another(x, S::F32_LANES);
    row_block::<S, W, B, false>(simd, window, rows, starts, [[all; 2]; B], y)
}

/// [`row_block`] for two output rows at once, `ys`, from their four input `rows` (the first
/// three the top row's window, the last three the bottom row's), each input vector loaded once
/// for both.
#[inline(always)]
fn row_pair<S: pulp::Simd, W: Window3x3, const B: usize, const EDGES: bool>(
    simd: S,
    window: &W,
    rows: [&[f32]; 4],
    starts: [usize; B],
    masks: [[S::m32s; 2]; B],
    ys: &mut [&mut [f32]; 2],
) -> usize {
    let outside = simd.splat_f32s(W::OUTSIDE);
    let (mut top, mut bottom) = ([outside; B], [outside; B]);
    for (b, (top, bottom)) in top.iter_mut().zip(&mut bottom).enumerate() {
        let t0 = taps::<S, W, EDGES>(simd, rows[0], starts[b], masks[b]);
        let t1 = taps::<S, W, EDGES>(simd, rows[1], starts[b], masks[b]);
        let t2 = taps::<S, W, EDGES>(simd, rows[2], starts[b], masks[b]);
        let t3 = taps::<S, W, EDGES>(simd, rows[3], starts[b], masks[b]);
        let upper = [
            window.row(simd, 0, t0),
            window.row(simd, 1, t1),
            window.row(simd, 2, t2),
        ];
        let lower = [
            window.row(simd, 0, t1),
            window.row(simd, 1, t2),
            window.row(simd, 2, t3),
        ];
        *top = window.rows(simd, upper);
        *bottom = window.rows(simd, lower);
    }
    for ((&x, top), bottom) in starts.iter().zip(top).zip(bottom) {
        store::<S>(&mut ys[0][x..], top);
        store::<S>(&mut ys[1][x..], bottom);
    }
    B * S::F32_LANES
}

/// [`row_pair`] for `B` vectors between the rows' first and last, one after the other from
/// column `x`, with no masks (`all` lanes kept).
#[inline(always)]
fn interior_pair<S: pulp::Simd, W: Window3x3, const B: usize>(
    simd: S,
    window: &W,
    rows: [&[f32]; 4],
    x: usize,
    all: S::m32s,
    ys: &mut [&mut [f32]; 2],
) -> usize {
    let starts = one_after_another(x, S::F32_LANES);
    row_pair::<S, W, B, false>(simd, window, rows, starts, [[all; 2]; B], ys)
}

/// The left, centre and right tap vectors of `row` (with a value of margin either side) for
/// the output vector at column `start`; where `EDGES`, the left and right keep only the lanes
/// of `masks` (the padding value elsewhere).
#[inline(always)]
fn taps<S: pulp::Simd, W: Window3x3, const EDGES: bool>(
    simd: S,
    row: &[f32],
    start: usize,
    masks: [S::m32s; 2],
) -> [S::f32s; 3] {
    let run = &row[start..start + S::F32_LANES + 2];
    let mut values = [load::<S>(run), load::<S>(&run[1..]), load::<S>(&run[2..])];
    if EDGES {
        let outside = simd.splat_f32s(W::OUTSIDE);
        values[0] = simd.select_f32s(masks[0], values[0], outside);
        values[2] = simd.select_f32s(masks[1], values[2], outside);
    }
    values
}

/// `B` vectors' starts, one after the other from `first`.
#[inline(always)]
fn one_after_another<const B: usize>(first: usize, lanes: usize) -> [usize; B] {
    let mut starts = [first; B];
    for (b, start) in starts.iter_mut().enumerate() {
        *start += b * lanes;
    }
    starts
}

/// The masks of the output vector at flat position `f` of an `[h, w]` plane.
#[inline(always)]
fn masks<S: pulp::Simd>(simd: S, f: usize, [h, w]: [usize; 2]) -> Masks<S> {
    let mut rows = [0.0f32; 16];
    let mut columns = [0.0f32; 16];
    let (mut y, mut x) = (f / w, f % w);
    for (row, column) in rows.iter_mut().zip(&mut columns).take(S::F32_LANES) {
        (*row, *column) = (y as f32, x as f32);
        x += 1;
        if x == w {
            (x, y) = (0, y + 1);
        }
    }
    let (rows, columns) = (load::<S>(&rows), load::<S>(&columns));
    [
        simd.greater_than_f32s(rows, simd.splat_f32s(0.0)),
        simd.less_than_f32s(rows, simd.splat_f32s((h - 1) as f32)),
        simd.greater_than_f32s(columns, simd.splat_f32s(0.0)),
        simd.less_than_f32s(columns, simd.splat_f32s((w - 1) as f32)),
    ]
}

/// One plane: its input at `at` of `x`, and the layer's window made ready for it.
struct Plane<'a, W> {
    x: &'a [f32],
    at: usize,
    hw: [usize; 2],
    window: &'a W,
}

impl<W: Window3x3> Plane<'_, W> {
    /// The output vectors at flat positions `starts` (with their `masks`), into the plane's
    /// outputs `y`.
    #[inline(always)]
    fn block<S: pulp::Simd, const B: usize>(
        &self,
        simd: S,
        (starts, masks): (&[usize], &[Masks<S>]),
        y: &mut [f32],
    ) {
        let (lanes, w) = (S::F32_LANES, self.hw[1]);
        // Every read of the block inside `x`, else one value at a time.
        if self.at + starts[0] < w + 1 || self.at + starts[B - 1] + w + 1 + lanes > self.x.len() {
            for &f in starts {
                self.one_by_one(f, lanes, y);
            }
            return;
        }
        let outside = simd.splat_f32s(W::OUTSIDE);
        let mut results = [outside; B];
        for (b, result) in results.iter_mut().enumerate() {
            let [up, down, left, right] = masks[b];
            let first = self.at + starts[b] - w - 1;
            let mut rows = [outside; 3];
            for (r, row) in rows.iter_mut().enumerate() {
                let at = first + r * w;
                let run = &self.x[at..at + lanes + 2];
                let values = [
                    simd.select_f32s(left, load::<S>(run), outside),
                    load::<S>(&run[1..]),
                    simd.select_f32s(right, load::<S>(&run[2..]), outside),
                ];
                *row = self.window.row(simd, r, values);
            }
            rows[0] = simd.select_f32s(up, rows[0], outside);
            rows[2] = simd.select_f32s(down, rows[2], outside);
            *result = self.window.rows(simd, rows);
        }
        for (&f, result) in starts.iter().zip(results) {
            store::<S>(&mut y[f..], result);
        }
    }

    /// The `N` input rows from the one above output row `oy`, each with a value of margin on
    /// either side (`outside` for a row outside the plane), or `None` where a margin would lie
    /// outside `x` (before the whole input's first row, after its last).
    #[inline(always)]
    fn rows_from<'r, const N: usize>(
        &'r self,
        oy: usize,
        outside: &'r [f32],
    ) -> Option<[&'r [f32]; N]> {
        let [h, w] = self.hw;
        let mut rows = [outside; N];
        for (r, row) in rows.iter_mut().enumerate() {
            let iy = (oy + r).wrapping_sub(1);
            if iy < h {
                let start = (self.at + iy * w).checked_sub(1)?;
                *row = self.x.get(start..start + w + 2)?;
            }
        }
        Some(rows)
    }

    /// The `lanes` outputs from flat position `f`, a value at a time, reading only inside the
    /// plane.
    fn one_by_one(&self, f: usize, lanes: usize, y: &mut [f32]) {
        let [h, w] = self.hw;
        let input = &self.x[self.at..self.at + h * w];
        for (p, out) in y.iter_mut().enumerate().skip(f).take(lanes) {
            let (oy, ox) = (p / w, p % w);
            let taps = std::array::from_fn(|t| {
                let (iy, ix) = ((oy + t / 3).wrapping_sub(1), (ox + t % 3).wrapping_sub(1));
                if iy < h && ix < w {
                    input[iy * w + ix]
                } else {
                    W::OUTSIDE
                }
            });
            *out = self.window.value(taps);
        }
    }
}
