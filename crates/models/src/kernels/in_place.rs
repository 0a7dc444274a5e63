//! Depthwise 3×3 convolution at stride 1 with one value of zero padding on small planes
//! (MobileNetV2's stride-1 layers on 14×14 and 7×7 maps), read in place: no padded copy of the
//! input and no copy of the output.
//!
//! A plane is taken as one flat run of `h · w` values. An output vector at flat position `f`
//! reads, for tap `(dy, dx)`, the input vector at `f + dy · w + dx`, a run that crosses rows
//! freely; the lanes whose tap falls outside the plane (a row above the first, below the last,
//! left of the first column or right of the last) would read a neighbour's value, so those
//! values are replaced by zero with a per-lane mask. The masks depend only on `f` within the
//! plane, so they are worked out once per task. The last vector of a plane ends at the plane's
//! end (over the one before it, with the same values), so every store stays inside the plane;
//! reads run into the neighbouring planes, which the masks drop, except before the first plane
//! and after the last of the whole input, where the few vectors that would read outside it are
//! computed one value at a time.
//!
//! Against a padded copy per plane ([`PaddedPlane`](super::plane::PaddedPlane)), this does a
//! few more operations per vector (six selects and two adds) but no row-by-row copies in and
//! out, which cost more than the taps on small planes.

use super::Activation;
use super::plane::store_block;
use super::vector::load;

/// Output vectors computed together, their sums held in registers across the taps.
const BLOCK: usize = 4;

/// Planes of at most this many values run in place. One thread, AVX-512, six stacked layers,
/// against the padded copies: 960 planes of 7×7 0.035 against 0.071 ms a layer, 576 of 14×14
/// 0.065 against 0.088; 192 of 28×28 0.093 against 0.091, 144 of 56×56 0.42 against 0.25 and
/// 32 of 112×112 0.77 against 0.21 (a task there holds a plane or two, and works out the masks
/// of every vector of it again).
const MAX_VALUES: usize = 256;

/// Whether `[h, w]` planes under a 3×3 window at stride 1, padding 1 and dilation 1 run in
/// place: small planes (see [`MAX_VALUES`]) that still hold a whole vector of the widest path,
/// so that a plane's last vector can end at its end.
pub(crate) fn suits([h, w]: [usize; 2]) -> bool {
    (16..=MAX_VALUES).contains(&(h * w))
}

/// The planes of one task: its output planes `ys` (whole `[h, w]` planes) from input planes
/// `first..` of `x` (the whole input), each convolved with its channel's filter of `weight`
/// plus its `bias`, through `activation`.
pub(crate) struct Planes<'a> {
    /// Rows and columns of a plane.
    pub hw: [usize; 2],
    /// The whole input, every plane of every sample.
    pub x: &'a [f32],
    /// The index in `x` of the task's first plane.
    pub first: usize,
    /// The task's output planes.
    pub ys: &'a mut [f32],
    /// `[channels, 3, 3]`.
    pub weight: &'a [f32],
    /// `[channels]`.
    pub bias: &'a [f32],
    /// Applied to every output.
    pub activation: Activation,
}

/// Which lanes of an output vector may read the row above, the row below, the column to the
/// left and the column to the right.
type Masks<S> = [<S as pulp::Simd>::m32s; 4];

impl pulp::WithSimd for Planes<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let [h, w] = self.hw;
        let (n, lanes) = (h * w, S::F32_LANES);
        let starts: Vec<usize> = (0..n.div_ceil(lanes))
            .map(|v| (v * lanes).min(n - lanes))
            .collect();
        let masks: Vec<Masks<S>> = starts
            .iter()
            .map(|&f| masks::<S>(simd, f, [h, w]))
            .collect();
        let channels = self.bias.len();
        for (i, y) in self.ys.chunks_exact_mut(n).enumerate() {
            let plane = self.first + i;
            let c = plane % channels;
            let mut filter = [0.0f32; 9];
            filter.copy_from_slice(&self.weight[c * 9..(c + 1) * 9]);
            let plane = Plane {
                x: self.x,
                at: plane * n,
                hw: self.hw,
                filter,
                bias: self.bias[c],
                activation: self.activation,
            };
            let mut v = 0;
            while v < starts.len() {
                let b = BLOCK.min(starts.len() - v);
                let block = (&starts[v..v + b], &masks[v..v + b]);
                match b {
                    BLOCK => plane.block::<S, BLOCK>(simd, block, y),
                    3 => plane.block::<S, 3>(simd, block, y),
                    2 => plane.block::<S, 2>(simd, block, y),
                    _ => plane.block::<S, 1>(simd, block, y),
                }
                v += b;
            }
        }
    }
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

/// One plane: its input at `at` of `x`, its channel's filter (`[3, 3]`) and bias.
struct Plane<'a> {
    x: &'a [f32],
    at: usize,
    hw: [usize; 2],
    filter: [f32; 9],
    bias: f32,
    activation: Activation,
}

impl Plane<'_> {
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
        let zero = simd.splat_f32s(0.0);
        let taps: [S::f32s; 9] = std::array::from_fn(|t| simd.splat_f32s(self.filter[t]));
        let mut sums = [simd.splat_f32s(self.bias); B];
        for (b, sum) in sums.iter_mut().enumerate() {
            let [up, down, left, right] = masks[b];
            let centre = self.at + starts[b];
            let sides = [left, right];
            let above = row_taps(simd, &self.x[centre - w - 1..], &taps[..3], sides);
            let middle = row_taps(simd, &self.x[centre - 1..], &taps[3..6], sides);
            let below = row_taps(simd, &self.x[centre + w - 1..], &taps[6..], sides);
            let outer = simd.add_f32s(
                simd.select_f32s(up, above, zero),
                simd.select_f32s(down, below, zero),
            );
            *sum = simd.add_f32s(*sum, simd.add_f32s(middle, outer));
        }
        for (&f, sum) in starts.iter().zip(sums) {
            store_block(simd, [sum], self.activation, &mut y[f..f + lanes]);
        }
    }

    /// The `lanes` outputs from flat position `f`, a value at a time, reading only inside the
    /// plane.
    fn one_by_one(&self, f: usize, lanes: usize, y: &mut [f32]) {
        let [h, w] = self.hw;
        let input = &self.x[self.at..self.at + h * w];
        for (p, out) in y.iter_mut().enumerate().skip(f).take(lanes) {
            let (oy, ox) = (p / w, p % w);
            let mut sum = self.bias;
            for (t, &tap) in self.filter.iter().enumerate() {
                let (iy, ix) = ((oy + t / 3).wrapping_sub(1), (ox + t % 3).wrapping_sub(1));
                if iy < h && ix < w {
                    sum += tap * input[iy * w + ix];
                }
            }
            *out = self.activation.of(sum);
        }
    }
}

/// One row of the window for a vector of outputs: `taps[0..3]` times the vectors at
/// `row[0..]`, `row[1..]` and `row[2..]` (left, centre, right), the left and right ones zero in
/// the lanes their masks leave out.
#[inline(always)]
fn row_taps<S: pulp::Simd>(
    simd: S,
    row: &[f32],
    taps: &[S::f32s],
    [left, right]: [S::m32s; 2],
) -> S::f32s {
    let zero = simd.splat_f32s(0.0);
    let l = simd.select_f32s(left, load::<S>(row), zero);
    let r = simd.select_f32s(right, load::<S>(&row[2..]), zero);
    let sum = simd.mul_f32s(taps[0], l);
    let sum = simd.mul_add_e_f32s(taps[1], load::<S>(&row[1..]), sum);
    simd.mul_add_e_f32s(taps[2], r, sum)
}
