//! 3×3 max pools at stride 1 with padding 1 on planes of at most [`MAX_VALUES`] values
//! (GoogLeNet's branch pools on 14×14 and 7×7 maps), taken apart, as the maximum is
//! separable, each plane as one flat run of vectors. First each value's maximum with its left
//! and right neighbours in its row, into a scratch run with a row of negative infinity before
//! and after it; then each output the maximum of that run at its own place and a row before
//! and after. A vector at flat position `f` reads the values at `f − 1` and `f + 1` across the
//! rows' ends; the lanes at a row's first or last column take their own value there instead
//! (the maximum of a value with itself is the value), through masks worked out once per task.
//! Per vector of outputs: six loads, two selects, four maxima and two stores, against nine
//! loads, six selects and eight maxima taking the whole window in place
//! ([`in_place`](super::in_place)).
//!
//! NaN wins, as in PyTorch: the check for it rides on the first pass's loads (`0 · v` summed,
//! which an infinity trips too), and a plane where it trips is pooled again with comparisons
//! that keep it. The last vector of a plane ends at the plane's end (over the one before it);
//! the two vectors of the whole input whose neighbours would lie outside it are taken across one
//! value at a time.

use rayon::prelude::*;

use super::plane::{MAX_LANES, Window, flat_starts};
use super::pool::{larger_value, maximum};
use super::scratch::Scratch;
use super::vector::{dispatch, load, store};

/// Planes of at most this many values run here; larger ones row by row in place, which masks
/// only a row's first and last vectors. Machine D, one thread, a layer alone, in place → here,
/// AVX2 (AVX-512): 832 planes of 7×7 0.034 → 0.025 ms (0.034 → 0.023), 528 of 14×14 0.077 →
/// 0.054 (0.067 → 0.044); but 256 of 28×28 0.094 → 0.125 (0.073 → 0.101).
const MAX_VALUES: usize = 256;

/// Whether [`run`] takes `window` over `[h, w]` planes: a 3×3 window at stride 1 with padding 1
/// and no dilation, over planes of a whole vector of the widest path to [`MAX_VALUES`] values.
pub(crate) fn suits(window: &Window, [h, w]: [usize; 2]) -> bool {
    *window == Window::SAME_3X3 && (MAX_LANES..=MAX_VALUES).contains(&(h * w))
}

/// Max-pools every `[h, w]` plane of `x` into `out` (as many planes), `per_task` planes to a
/// task, the tasks in parallel. The sizes must suit ([`suits`]).
pub(crate) fn run(x: &[f32], hw: [usize; 2], out: &mut [f32], per_task: usize) {
    let n = hw[0] * hw[1];
    out.par_chunks_mut(per_task.max(1) * n)
        .enumerate()
        .for_each(|(task, ys)| {
            dispatch(Planes {
                x,
                hw,
                first: task * per_task.max(1),
                ys,
            })
        });
}

/// One task's planes: its output planes `ys` from input planes `first..` of `x` (the whole
/// input), each `[h, w]`.
struct Planes<'a> {
    x: &'a [f32],
    hw: [usize; 2],
    first: usize,
    ys: &'a mut [f32],
}

/// Where each vector of a plane starts, and which of its lanes have a left and a right
/// neighbour in their row.
struct Vectors<S: pulp::Simd> {
    starts: Vec<usize>,
    has_left: Vec<S::m32s>,
    has_right: Vec<S::m32s>,
}

impl<S: pulp::Simd> Vectors<S> {
    #[inline(always)]
    fn new(simd: S, [h, w]: [usize; 2]) -> Self {
        let starts = flat_starts(h * w, S::F32_LANES);
        let mut has_left = Vec::with_capacity(starts.len());
        let mut has_right = Vec::with_capacity(starts.len());
        for &f in &starts {
            has_left.push(lanes_where(simd, f, w, |column| column > 0));
            has_right.push(lanes_where(simd, f, w, |column| column + 1 < w));
        }
        Vectors {
            starts,
            has_left,
            has_right,
        }
    }
}

/// The lanes of the vector at flat position `f`, in rows of `w`, whose column `keep`s.
#[inline(always)]
fn lanes_where<S: pulp::Simd>(
    simd: S,
    f: usize,
    w: usize,
    keep: impl Fn(usize) -> bool,
) -> S::m32s {
    let mut flags = [0.0f32; MAX_LANES];
    for (j, flag) in flags[..S::F32_LANES].iter_mut().enumerate() {
        *flag = if keep((f + j) % w) { 1.0 } else { 0.0 };
    }
    simd.greater_than_f32s(load::<S>(&flags), simd.splat_f32s(0.5))
}

impl pulp::WithSimd for Planes<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let [_, w] = self.hw;
        let n = self.hw[0] * w;
        let vectors = Vectors::new(simd, self.hw);
        // The first pass's run, with a row of negative infinity before and after it.
        let mut across = Scratch::take(n + 2 * w);
        across[..w].fill(f32::NEG_INFINITY);
        across[w + n..].fill(f32::NEG_INFINITY);
        for (i, y) in self.ys.chunks_exact_mut(n).enumerate() {
            let at = (self.first + i) * n;
            let plane = Plane {
                x: self.x,
                at,
                hw: self.hw,
            };
            if plane.across::<S, false>(simd, &vectors, &mut across) {
                down::<S, false>(simd, &vectors, &across, w, y);
            } else {
                plane.across::<S, true>(simd, &vectors, &mut across);
                down::<S, true>(simd, &vectors, &across, w, y);
            }
        }
    }
}

/// One input plane: `x` (the whole input) from `at`, `[h, w]`.
struct Plane<'a> {
    x: &'a [f32],
    at: usize,
    hw: [usize; 2],
}

impl Plane<'_> {
    /// Each value's maximum with its row neighbours, into `across` after its first row (of
    /// negative infinity). Returns whether the plane was free of NaN (and infinities); where it
    /// was not, the maxima are worth nothing unless `NAN`, with which NaN wins.
    #[inline(always)]
    fn across<S: pulp::Simd, const NAN: bool>(
        &self,
        simd: S,
        vectors: &Vectors<S>,
        across: &mut [f32],
    ) -> bool {
        let (x, at, lanes, w) = (self.x, self.at, S::F32_LANES, self.hw[1]);
        let zero = simd.splat_f32s(0.0);
        let mut check = zero;
        let masks = vectors.has_left.iter().zip(&vectors.has_right);
        for (&f, (&has_left, &has_right)) in vectors.starts.iter().zip(masks) {
            let from = at + f;
            let centre = load::<S>(&x[from..]);
            check = simd.mul_add_e_f32s(centre, zero, check);
            let dst = &mut across[w + f..];
            if from == 0 || from + lanes + 1 > x.len() {
                // The whole input's first or last vector: a neighbour would lie outside it.
                self.one_by_one(f, &mut dst[..lanes]);
                continue;
            }
            let left = simd.select_f32s(has_left, load::<S>(&x[from - 1..]), centre);
            let right = simd.select_f32s(has_right, load::<S>(&x[from + 1..]), centre);
            let m = maximum::<S, NAN>(simd, maximum::<S, NAN>(simd, left, centre), right);
            store::<S>(dst, m);
        }
        !simd.reduce_sum_f32s(check).is_nan()
    }

    /// [`Plane::across`] for the values from `f`, one at a time, into `dst`, NaN winning.
    fn one_by_one(&self, f: usize, dst: &mut [f32]) {
        let [h, w] = self.hw;
        let plane = &self.x[self.at..self.at + h * w];
        for (j, d) in dst.iter_mut().enumerate() {
            let i = f + j;
            let mut m = plane[i];
            if i % w > 0 {
                m = larger_value(m, plane[i - 1]);
            }
            if i % w + 1 < w {
                m = larger_value(m, plane[i + 1]);
            }
            *d = m;
        }
    }
}

/// The second pass: each output the maximum of `across` (the first pass's run after a row of
/// negative infinity, and one after it) at its own place and a row of `w` before and after,
/// into `y`; with `NAN`, NaN where any of them is.
#[inline(always)]
fn down<S: pulp::Simd, const NAN: bool>(
    simd: S,
    vectors: &Vectors<S>,
    across: &[f32],
    w: usize,
    y: &mut [f32],
) {
    for &f in &vectors.starts {
        let above = load::<S>(&across[f..]);
        let middle = load::<S>(&across[w + f..]);
        let below = load::<S>(&across[2 * w + f..]);
        let m = maximum::<S, NAN>(simd, maximum::<S, NAN>(simd, above, middle), below);
        store::<S>(&mut y[f..], m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool by its definition: each value's 3×3 neighbourhood within the plane, NaN winning.
    fn naive(x: &[f32], [h, w]: [usize; 2]) -> Vec<f32> {
        let mut y = Vec::with_capacity(x.len());
        for plane in x.chunks(h * w) {
            for r in 0..h {
                for c in 0..w {
                    let mut m = f32::NEG_INFINITY;
                    for iy in r.saturating_sub(1)..(r + 2).min(h) {
                        for ix in c.saturating_sub(1)..(c + 2).min(w) {
                            m = larger_value(m, plane[iy * w + ix]);
                        }
                    }
                    y.push(m);
                }
            }
        }
        y
    }

    /// Planes of one row to many, narrower and wider than a vector, in tasks of one and two
    /// planes, with and without NaN and infinities (at the whole input's first and last values
    /// too), on `simd`'s instruction set, against the definition.
    fn planes_on<S: pulp::Simd>(simd: S) {
        for [h, w] in [
            [7, 7],
            [14, 14],
            [28, 28],
            [4, 5],
            [1, 16],
            [16, 1],
            [3, 40],
            [32, 32],
        ] {
            let (n, planes) = (h * w, 5);
            let mut x: Vec<f32> = (0..planes * n)
                .map(|i| ((i * 37) % 101) as f32 - 50.0)
                .collect();
            let len = x.len();
            let specials = [
                vec![],
                vec![(0, f32::NAN), (len / 2, f32::NAN)],
                vec![(len - 1, f32::INFINITY), (n + w, f32::NEG_INFINITY)],
            ];
            for special in specials {
                for &(at, v) in &special {
                    x[at] = v;
                }
                let want = naive(&x, [h, w]);
                for per_task in [1, 2] {
                    let mut y = vec![0.0; len];
                    for (task, ys) in y.chunks_mut(per_task * n).enumerate() {
                        let first = task * per_task;
                        let planes = Planes {
                            x: &x,
                            hw: [h, w],
                            first,
                            ys,
                        };
                        pulp::Simd::vectorize(simd, planes);
                    }
                    let same = y
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a == b || (a.is_nan() && b.is_nan()));
                    assert!(same, "{h}x{w}, {per_task} a task: {y:?} against {want:?}");
                }
                for &(at, _) in &special {
                    x[at] = 0.5;
                }
            }
        }
    }

    #[test]
    fn planes_match_the_definition_on_every_instruction_set() {
        planes_on(pulp::Scalar::new());
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(simd) = pulp::x86::V3::try_new() {
                planes_on(simd);
            }
            if let Some(simd) = pulp::x86::V4::try_new() {
                planes_on(simd);
            }
        }
    }
}
