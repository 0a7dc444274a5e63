//! Max pools at stride 2 with 2×2 windows (padding 0 or 1) or 3×3 windows without padding
//! (AlexNet's and GoogLeNet's 3×3 pools, VGG16's and GoogLeNet's last 2×2 ones), read
//! straight from the NCHW rows and taken apart, as the maximum is separable: first each input
//! row's maxima across its windows' columns, once per row, into a scratch plane of `h × wo`;
//! then each output row the maximum of its windows' rows of that plane, a vector at a time.
//! With `K` the window's side and `P` the padding, output column `ox` reads input columns
//! `2·ox − P` to `2·ox − P + K − 1`: the even and the odd columns of two vectors of a row,
//! which AVX's permutes split apart in registers ([`Halves`]), give a vector's worth of
//! outputs' taps, a 3×3 window's third tap (or, with padding 1, a 2×2 window's first) one
//! lane along.
//!
//! Against windows taken row by row in one pass ([`halving`](super::halving)), an input row
//! shared by two output rows is taken across once, not twice, and the check for NaN rides on
//! the loads of the first pass instead of reading each plane once more before it. NaN wins,
//! as in PyTorch: a plane whose loads met one (or an infinity, which the check cannot tell
//! apart) is taken again with comparisons that keep it. Machine D, one thread, a layer alone
//! (ms, row by row → here): 64 planes of 55² → 27² 0.061 → 0.057 on AVX2 and 0.041 → 0.037 on
//! AVX-512, 192 of 56² → 28² 0.164 → 0.152 and 0.117 → 0.102, 832 of 14² → 7² (2×2, before
//! the general kernel) 0.084 → 0.064 and 0.075 → 0.077. ResNet's 3×3 windows with padding 1
//! stay row by row: on 64 planes of 112² → 56², AVX2, 0.150 there against 0.167 here, whose
//! scratch plane of 25 KB does not stay in the first-level cache beside the input streaming
//! past (three rows of it instead, each output row's right after they are taken across, were
//! slower for every layer); MobileNetV2's strided depthwise layers too, whose three rows
//! weigh their taps differently.
//!
//! 2×2 windows without padding over planes of even sides (VGG16's pools, GoogLeNet's last)
//! skip the scratch plane: a plane's rows pair up, each pair's output row is the maxima of
//! the two rows' vectors, their even and odd columns split apart and their maxima taken, in
//! one pass, the pairs of narrow rows (at most two vectors) one after the other, their output
//! vectors stored whole over the next ones' ([`row_pairs`]). Machine A, one thread, a layer
//! alone (ms, two passes → one): 832 planes of 14² 0.088 → 0.016 on AVX-512 and 0.073 →
//! 0.022 on AVX2, 512 of 28² 0.123 → 0.065 and 0.156 → 0.084, 64 of 224² 0.72 → 0.57 and
//! 0.82 → 0.70.
//!
//! Only where the [`VectorPath`] allows AVX2 or AVX-512; elsewhere the general kernel runs.

use rayon::prelude::*;

use super::ShapeError;
use super::halving::Halves;
use super::plane::{Window, first_lanes};
use super::pool::maximum;
use super::scratch::Scratch;
use super::vector::{VectorPath, load, store};

/// Whether [`run`] takes `window` on the vector path in effect: stride 2, no dilation, a 2×2
/// window with the same padding of 0 or 1 on both axes or a 3×3 one without padding, and AVX2
/// or AVX-512 to run on.
pub(crate) fn suits(window: &Window) -> bool {
    let shape = (window.kernel, window.padding);
    matches!(
        shape,
        ([2, 2], [0, 0]) | ([2, 2], [1, 1]) | ([3, 3], [0, 0])
    ) && window.stride == [2, 2]
        && window.dilation == [1, 1]
        && VectorPath::current() <= VectorPath::Avx2
}

/// Max-pools every `[h, w]` plane of `x` into `out` (as many `[ho, wo]` planes) with `window`
/// (which [`suits`]), `per_task` planes to a task, the tasks in parallel. An error where the
/// vector path allows neither AVX2 nor AVX-512, or where the sizes disagree.
pub(crate) fn run(
    x: &[f32],
    [h, w]: [usize; 2],
    [ho, wo]: [usize; 2],
    window: &Window,
    out: &mut [f32],
    per_task: usize,
) -> Result<(), ShapeError> {
    let (side, padding) = (window.kernel[0], window.padding[0]);
    let planes = x.len() / (h * w).max(1);
    // Every window starts inside the padded plane (the last may overhang it, as in ceil mode).
    if h * w * ho * wo == 0
        || x.len() != planes * h * w
        || out.len() != planes * ho * wo
        || !suits(window)
        || 2 * (ho - 1) >= h + padding
        || 2 * (wo - 1) >= w + padding
    {
        return Err(ShapeError(format!(
            "a {side}x{side} max pool at stride 2, padding {padding}, cannot take {} values of \
             {h}x{w} planes into {} of {ho}x{wo}",
            x.len(),
            out.len()
        )));
    }
    let shape = Shape {
        input: [h, w],
        output: [ho, wo],
    };
    let per_task = per_task.max(1);
    out.par_chunks_mut(per_task * ho * wo)
        .zip(x.par_chunks(per_task * h * w))
        .try_for_each(|(ys, xs)| {
            let task = Task { xs, ys, shape };
            #[cfg(target_arch = "x86_64")]
            {
                let path = VectorPath::current();
                if path == VectorPath::Avx512
                    && let Some(simd) = pulp::x86::V4::try_new()
                {
                    task.run_on(simd, side, padding);
                    return Ok(());
                }
                if path <= VectorPath::Avx2
                    && let Some(simd) = pulp::x86::V3::try_new()
                {
                    task.run_on(simd, side, padding);
                    return Ok(());
                }
            }
            let _ = task;
            Err(ShapeError(
                "the stride-2 max pool needs AVX2 or AVX-512; run the general one".into(),
            ))
        })
}

/// A plane's size before and after.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// Input rows and columns.
    input: [usize; 2],
    /// Output rows and columns.
    output: [usize; 2],
}

/// One task's planes.
struct Task<'a> {
    /// The input planes, `[h, w]` each.
    xs: &'a [f32],
    /// The output planes, `[ho, wo]` each.
    ys: &'a mut [f32],
    shape: Shape,
}

impl Task<'_> {
    /// The task on `simd`'s instruction set, for a `side × side` window with `padding`.
    #[inline(always)]
    fn run_on<S: Halves>(self, simd: S, side: usize, padding: usize) {
        match (side, padding) {
            (2, 0) => simd.vectorize(Planes::<S, 2, 0> { simd, task: self }),
            (2, _) => simd.vectorize(Planes::<S, 2, 1> { simd, task: self }),
            _ => simd.vectorize(Planes::<S, 3, 0> { simd, task: self }),
        }
    }
}

/// A task on one instruction set, for a `K × K` window with padding `P`.
struct Planes<'a, S, const K: usize, const P: usize> {
    simd: S,
    task: Task<'a>,
}

impl<S: Halves, const K: usize, const P: usize> pulp::NullaryFnOnce for Planes<'_, S, K, P> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let Planes { simd, task } = self;
        let ([h, w], [ho, wo]) = (task.shape.input, task.shape.output);
        if K == 2 && P == 0 && 2 * ho == h && 2 * wo == w {
            let lanes = S::F32_LANES;
            if w <= lanes {
                row_pairs::<S, 1>(simd, task.xs, task.ys, w);
            } else if w <= 2 * lanes {
                row_pairs::<S, 2>(simd, task.xs, task.ys, w);
            } else {
                for (x, y) in task
                    .xs
                    .chunks_exact(2 * w)
                    .zip(task.ys.chunks_exact_mut(wo))
                {
                    wide_pair(simd, x, y, w);
                }
            }
            return;
        }
        // The first pass's rows, each rounded up to whole vectors.
        let stride = wo.next_multiple_of(S::F32_LANES);
        let mut across = Scratch::take(h * stride);
        let planes = task
            .ys
            .chunks_exact_mut(ho * wo)
            .zip(task.xs.chunks_exact(h * w));
        for (y, x) in planes {
            if across_plane::<S, K, P, false>(simd, x, w, &mut across, stride) {
                down::<S, K, P, false>(simd, &across, stride, h, y, wo);
            } else {
                across_plane::<S, K, P, true>(simd, x, w, &mut across, stride);
                down::<S, K, P, true>(simd, &across, stride, h, y, wo);
            }
        }
    }
}

/// A 2×2 pool without padding over planes of even sides whose rows of `w` fill at most `V`
/// vectors (wider rows go pair by pair through [`wide_pair`]): the task's `xs` as pairs of
/// rows one after the other (a plane's rows pair up within it), each pair's output row
/// (`w / 2` values) from `V` vectors of each of its rows, a pair's vectors the maxima of its
/// two rows', their even and odd columns split apart and their maxima taken. Each pair's
/// vector of outputs is stored whole, over the next pairs' outputs (written next); the last
/// pairs, whose loads or stores would run past the task's values, go through a copy with
/// room after them. NaN wins.
#[inline(always)]
fn row_pairs<S: Halves, const V: usize>(simd: S, xs: &[f32], ys: &mut [f32], w: usize) {
    let (lanes, wo) = (S::F32_LANES, w / 2);
    let pairs = ys.len() / wo.max(1);
    // Pair q reads xs[2wq .. 2wq + w + V·lanes] and writes ys[wo·q .. wo·q + lanes].
    let reach = w + V * lanes;
    let inside = pairs
        .min((xs.len() + 2 * w).saturating_sub(reach) / (2 * w))
        .min((ys.len() + wo).saturating_sub(lanes) / wo.max(1));
    for q in 0..inside {
        pair::<S, V>(simd, &xs[2 * w * q..], &mut ys[wo * q..], w);
    }
    let rest = pairs - inside;
    if rest > 0 {
        let mut x = Scratch::take(2 * w * rest + reach);
        x[..2 * w * rest].copy_from_slice(&xs[2 * w * inside..2 * w * pairs]);
        let mut y = Scratch::take(wo * rest + lanes);
        for q in 0..rest {
            pair::<S, V>(simd, &x[2 * w * q..], &mut y[wo * q..], w);
        }
        ys[wo * inside..].copy_from_slice(&y[..wo * rest]);
    }
}

/// One pair of rows of `w` (`x`, the second right after the first) into a vector of outputs
/// at the start of `y`, the first `w / 2` lanes of which are the pair's windows' maxima.
#[inline(always)]
fn pair<S: Halves, const V: usize>(simd: S, x: &[f32], y: &mut [f32], w: usize) {
    let first = down_pair(simd, x, w, 0);
    let second = if V == 2 {
        down_pair(simd, x, w, S::F32_LANES)
    } else {
        first
    };
    let [evens, odds] = simd.split(first, second);
    store::<S>(y, maximum::<S, true>(simd, evens, odds));
}

/// One pair of rows of `w` (`x`, the second right after the first), more than two vectors
/// wide, into their output row `y`: two vectors of each row at a time, the last two ending at
/// the row's end (over outputs already written, for a row not a whole number of them).
#[inline(always)]
fn wide_pair<S: Halves>(simd: S, x: &[f32], y: &mut [f32], w: usize) {
    let lanes = S::F32_LANES;
    let last = w - 2 * lanes;
    for at in (0..last).step_by(2 * lanes).chain([last]) {
        let [evens, odds] =
            simd.split(down_pair(simd, x, w, at), down_pair(simd, x, w, at + lanes));
        store::<S>(&mut y[at / 2..], maximum::<S, true>(simd, evens, odds));
    }
}

/// The maxima of a vector of the first row of `x` from column `at` and the one below it, `w`
/// values on. (A function rather than a closure: a closure is not compiled for the
/// instruction set.)
#[inline(always)]
fn down_pair<S: pulp::Simd>(simd: S, x: &[f32], w: usize, at: usize) -> S::f32s {
    maximum::<S, true>(simd, load::<S>(&x[at..]), load::<S>(&x[w + at..]))
}

/// The first pass over one plane `x` (rows of `w`): each row's maxima across its windows'
/// columns, into a row of `across` every `stride` values. Returns whether the plane was free
/// of NaN (and infinities) as far as the loads saw; where it was not, the maxima are worth
/// nothing unless `NAN`, with which NaN wins.
#[inline(always)]
fn across_plane<S: Halves, const K: usize, const P: usize, const NAN: bool>(
    simd: S,
    x: &[f32],
    w: usize,
    across: &mut [f32],
    stride: usize,
) -> bool {
    let zero = simd.splat_f32s(0.0);
    let mut check = zero;
    for (row, dst) in x.chunks_exact(w).zip(across.chunks_exact_mut(stride)) {
        check = row_across::<S, K, P, NAN>(simd, row, dst, check);
    }
    !simd.reduce_sum_f32s(check).is_nan()
}

/// One row's maxima across its windows' columns, a vector of outputs at a time, into `dst`
/// (whole vectors). `check` gathers `0 · v` of every loaded value, NaN once one is NaN or
/// infinite; returned with this row's loads added.
#[inline(always)]
fn row_across<S: Halves, const K: usize, const P: usize, const NAN: bool>(
    simd: S,
    row: &[f32],
    dst: &mut [f32],
    mut check: S::f32s,
) -> S::f32s {
    let lanes = S::F32_LANES;
    // (A function rather than a closure: a closure is not compiled for the instruction set.)
    let read = read_checked::<S>;
    // The vector of outputs from `ox`: columns 2·ox on, split into evens and odds.
    let mut halves = simd.split(
        read(simd, row, 0, &mut check),
        read(simd, row, lanes, &mut check),
    );
    // With padding 1, the odd columns of the vector before (its last lane is the column left
    // of the first output's window): the padding before the row's first.
    let mut before = simd.splat_f32s(f32::NEG_INFINITY);
    for ox in (0..dst.len()).step_by(lanes) {
        let [evens, odds] = halves;
        let at = 2 * (ox + lanes);
        // Read only while a later window may reach them: the next vector's columns.
        let next = if at < row.len() {
            simd.split(
                read(simd, row, at, &mut check),
                read(simd, row, at + lanes, &mut check),
            )
        } else {
            [simd.splat_f32s(f32::NEG_INFINITY); 2]
        };
        let maxima = if P == 1 {
            let left = simd.shifted(before, odds);
            before = odds;
            let m = maximum::<S, NAN>(simd, left, evens);
            if K == 3 {
                maximum::<S, NAN>(simd, m, odds)
            } else {
                m
            }
        } else {
            let m = maximum::<S, NAN>(simd, evens, odds);
            if K == 3 {
                maximum::<S, NAN>(simd, m, simd.following(evens, next[0]))
            } else {
                m
            }
        };
        store::<S>(&mut dst[ox..], maxima);
        halves = next;
    }
    check
}

/// The vector of `row` from column `at`, negative infinity past the row's end; adds `0 · v`
/// of the values read to `check` (zeros past the end, where an infinity would trip it).
#[inline(always)]
fn read_checked<S: pulp::Simd>(simd: S, row: &[f32], at: usize, check: &mut S::f32s) -> S::f32s {
    let lanes = S::F32_LANES;
    let zero = simd.splat_f32s(0.0);
    if at + lanes <= row.len() {
        let v = load::<S>(&row[at..]);
        *check = simd.mul_add_e_f32s(v, zero, *check);
        return v;
    }
    let rest = &row[at.min(row.len())..];
    let raw = simd.partial_load_f32s(rest);
    *check = simd.mul_add_e_f32s(raw, zero, *check);
    simd.select_f32s(
        first_lanes(simd, rest.len()),
        raw,
        simd.splat_f32s(f32::NEG_INFINITY),
    )
}

/// The second pass over one plane: output row `oy` the maximum of rows `2·oy − P` to
/// `2·oy − P + K − 1` of `across` (those inside the plane's `h` rows), into `y` (`[ho, wo]`);
/// with `NAN`, NaN where any of them is.
#[inline(always)]
fn down<S: pulp::Simd, const K: usize, const P: usize, const NAN: bool>(
    simd: S,
    across: &[f32],
    stride: usize,
    h: usize,
    y: &mut [f32],
    wo: usize,
) {
    let lanes = S::F32_LANES;
    for (oy, out) in y.chunks_exact_mut(wo).enumerate() {
        let first = (2 * oy).saturating_sub(P);
        let end = (2 * oy + K - P).min(h);
        for ox in (0..wo).step_by(lanes) {
            let mut m = load::<S>(&across[first * stride + ox..]);
            for iy in first + 1..end {
                m = maximum::<S, NAN>(simd, load::<S>(&across[iy * stride + ox..]), m);
            }
            if ox + lanes <= wo {
                store::<S>(&mut out[ox..], m);
            } else {
                simd.partial_store_f32s(&mut out[ox..], m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch's output size of a stride-2 window of `k` with padding `p` over `n` values.
    fn out_size(n: usize, k: usize, p: usize, ceil: bool) -> usize {
        let span = n + 2 * p - k;
        let mut out = if ceil { span.div_ceil(2) } else { span / 2 } + 1;
        // The last window must start inside the input or its left padding.
        if ceil && 2 * (out - 1) >= n + p {
            out -= 1;
        }
        out
    }

    /// The pool by its definition: windows clipped to the plane, NaN winning.
    fn naive(x: &[f32], [h, w]: [usize; 2], [ho, wo]: [usize; 2], k: usize, p: usize) -> Vec<f32> {
        let mut y = Vec::new();
        for plane in x.chunks(h * w) {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut m = f32::NEG_INFINITY;
                    for iy in (2 * oy).saturating_sub(p)..(2 * oy + k - p).min(h) {
                        for ix in (2 * ox).saturating_sub(p)..(2 * ox + k - p).min(w) {
                            let v = plane[iy * w + ix];
                            if v.is_nan() || v > m {
                                m = v;
                            }
                        }
                    }
                    y.push(m);
                }
            }
        }
        y
    }

    /// Every window side, padding and ceil mode over planes of one to several vectors a row,
    /// on `simd`'s instruction set, with and without NaN and infinities, against the definition.
    fn windows_on<S: Halves>(simd: S) {
        let sizes = [
            [14, 14],
            [8, 8],
            [16, 16],
            [6, 22],
            [28, 28],
            [4, 34],
            [6, 50],
            [13, 13],
            [5, 5],
            [2, 3],
            [7, 40],
            [9, 35],
            [3, 70],
            [56, 56],
        ];
        let shapes = [(2, 0), (2, 1), (3, 0)];
        for (k, p, ceil) in shapes
            .into_iter()
            .flat_map(|(k, p)| [(k, p, false), (k, p, true)])
        {
            for [h, w] in sizes {
                if h + 2 * p < k || w + 2 * p < k {
                    continue;
                }
                let (ho, wo) = (out_size(h, k, p, ceil), out_size(w, k, p, ceil));
                let planes = 3;
                let mut x: Vec<f32> = (0..planes * h * w)
                    .map(|i| ((i * 37) % 101) as f32 - 50.0)
                    .collect();
                let mut specials = vec![None];
                let n = x.len();
                specials.push(Some([(n / 2, f32::NAN), (n - 1, f32::NAN)]));
                specials.push(Some([
                    (h * w + 1, f32::INFINITY),
                    (n / 3, f32::NEG_INFINITY),
                ]));
                for special in specials {
                    for &(at, v) in special.iter().flatten() {
                        x[at] = v;
                    }
                    let want = naive(&x, [h, w], [ho, wo], k, p);
                    let mut y = vec![0.0; planes * ho * wo];
                    let shape = Shape {
                        input: [h, w],
                        output: [ho, wo],
                    };
                    // Two tasks: planes 0 and 1, then 2.
                    let (first, second) = y.split_at_mut(2 * ho * wo);
                    let (xa, xb) = x.split_at(2 * h * w);
                    for (xs, ys) in [(xa, first), (xb, second)] {
                        Task { xs, ys, shape }.run_on(simd, k, p);
                    }
                    let same = y
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a == b || (a.is_nan() && b.is_nan()));
                    assert!(
                        same,
                        "{k}x{k} pad {p} ceil {ceil} {h}x{w}: {y:?} against {want:?}"
                    );
                    for &(at, _) in special.iter().flatten() {
                        x[at] = 0.5;
                    }
                }
            }
        }
    }

    #[test]
    fn windows_match_the_definition_on_avx2_and_avx512() {
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(simd) = pulp::x86::V3::try_new() {
                windows_on(simd);
            }
            if let Some(simd) = pulp::x86::V4::try_new() {
                windows_on(simd);
            }
        }
    }

    #[test]
    fn sizes_that_disagree_are_refused() {
        let window = Window {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [0, 0],
            dilation: [1, 1],
        };
        let x = vec![0.0; 2 * 9 * 9];
        let mut out = vec![0.0; 2 * 4 * 4];
        // Refused too without AVX2, where the general kernel runs.
        assert_eq!(
            run(&x, [9, 9], [4, 4], &window, &mut out, 1).is_ok(),
            suits(&window)
        );
        // A window that would start past the input, and an output of the wrong length.
        let mut more = vec![0.0; 2 * 6 * 6];
        assert!(run(&x, [9, 9], [6, 6], &window, &mut more, 1).is_err());
        assert!(run(&x, [9, 9], [4, 4], &window, &mut out[1..], 1).is_err());
    }
}
