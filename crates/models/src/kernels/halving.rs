//! 3×3 windows at stride 2 (MobileNetV2's downsampling depthwise layers, ResNet's max pool),
//! read straight from the NCHW input rows. With padding 1, output column `ox` reads input
//! columns `2·ox − 1`, `2·ox` and `2·ox + 1`; with padding 0, `2·ox`, `2·ox + 1` and
//! `2·ox + 2`. Two vectors of a row hold a vector's worth of outputs'
//! even columns and odd columns, which AVX's permutes split apart in registers; the odd
//! columns one place to the left take the last odd column of the vector before, the even
//! columns one place to the right the next even column. Each input row's three taps are combined apart
//! ([`Window3x3::row`]), several output vectors at a time, and the three rows once
//! ([`Window3x3::rows`]) as the output row is stored.
//!
//! The general kernels first copy each plane into a padded, phase-split buffer and copy their
//! outputs out again; for these layers the two copies took about twice the time of the taps
//! themselves. Only where the [`VectorPath`](super::VectorPath) allows AVX2 (8 lanes) or
//! AVX-512 (16); elsewhere the general kernels run.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::{__m256, __m256i, __m512, __m512i};

use rayon::prelude::*;

use super::ShapeError;
use super::in_place::Window3x3;
use super::plane::{Window, first_lanes};
use super::vector::{VectorPath, load, store};

/// Whether [`run`] takes `window` on the vector path in effect: 3×3, stride 2, padding 0 or 1
/// (the same on both axes), no dilation, and AVX2 or AVX-512 to run on.
pub(crate) fn suits(window: &Window) -> bool {
    window.kernel == [3, 3]
        && window.stride == [2, 2]
        && window.padding[0] == window.padding[1]
        && window.padding[0] <= 1
        && window.dilation == [1, 1]
        && VectorPath::current() <= VectorPath::Avx2
}

/// Runs `window` (padding `padding`, which [`suits`]) over every `[h, w]` plane of `x` into
/// `out`, `[ho, wo]` planes, `per_task` planes to a task, the tasks in parallel. An error where
/// the vector path allows neither AVX2 nor AVX-512, or the sizes disagree.
pub(crate) fn run<W: Window3x3 + Clone + Sync>(
    x: &[f32],
    [h, w]: [usize; 2],
    [ho, wo]: [usize; 2],
    padding: usize,
    out: &mut [f32],
    per_task: usize,
    window: W,
) -> Result<(), ShapeError> {
    let planes = x.len() / (h * w).max(1);
    // Every window starts inside the padded plane (the last may overhang it, as in ceil mode).
    if h * w * ho * wo == 0
        || x.len() != planes * h * w
        || out.len() != planes * ho * wo
        || padding > 1
        || 2 * (ho - 1) >= h + 2 * padding
        || 2 * (wo - 1) >= w + 2 * padding
    {
        return Err(ShapeError(format!(
            "a 3x3 window at stride 2, padding {padding}, cannot take {} values of {h}x{w} \
             planes into {} of {ho}x{wo}",
            x.len(),
            out.len()
        )));
    }
    let per_task = per_task.max(1);
    out.par_chunks_mut(per_task * ho * wo)
        .zip(x.par_chunks(per_task * h * w))
        .enumerate()
        .try_for_each(|(task, (ys, xs))| {
            let planes = Planes {
                xs,
                input: [h, w],
                ys,
                output: [ho, wo],
                padding,
                first: task * per_task,
                window: window.clone(),
            };
            #[cfg(target_arch = "x86_64")]
            {
                let path = VectorPath::current();
                if path == VectorPath::Avx512
                    && let Some(simd) = pulp::x86::V4::try_new()
                {
                    simd.vectorize(Run { simd, planes });
                    return Ok(());
                }
                if path <= VectorPath::Avx2
                    && let Some(simd) = pulp::x86::V3::try_new()
                {
                    simd.vectorize(Run { simd, planes });
                    return Ok(());
                }
            }
            let _ = planes;
            Err(ShapeError(
                "the stride-2 window kernel needs AVX2 or AVX-512; run the general one".into(),
            ))
        })
}

/// One task's planes.
struct Planes<'a, W> {
    /// The input planes, `[h, w]` each.
    xs: &'a [f32],
    /// Input rows and columns.
    input: [usize; 2],
    /// The output planes, `[ho, wo]` each.
    ys: &'a mut [f32],
    /// Output rows and columns.
    output: [usize; 2],
    /// Padding on each side, 0 or 1.
    padding: usize,
    /// The number of the first plane in the whole input.
    first: usize,
    /// What the layer computes.
    window: W,
}

/// What the kernel needs of a vector instruction set beyond [`pulp::Simd`]: splitting the
/// columns of two vectors into evens and odds, and shifting a vector's lanes one place either
/// way, a lane of another vector shifted in.
pub(super) trait Halves: pulp::Simd {
    /// The even and the odd values of `a` followed by `b`, each in order.
    fn split(self, a: Self::f32s, b: Self::f32s) -> [Self::f32s; 2];

    /// `before`'s last lane followed by all but the last lane of `v`.
    fn shifted(self, before: Self::f32s, v: Self::f32s) -> Self::f32s;

    /// All but the first lane of `v` followed by `after`'s first lane.
    fn following(self, v: Self::f32s, after: Self::f32s) -> Self::f32s;
}

#[cfg(target_arch = "x86_64")]
impl Halves for pulp::x86::V4 {
    #[inline(always)]
    fn split(self, a: Self::f32s, b: Self::f32s) -> [Self::f32s; 2] {
        const EVENS: [i32; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
        const ODDS: [i32; 16] = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31];
        let (a, b): (__m512, __m512) = (pulp::cast(a), pulp::cast(b));
        let [evens, odds]: [__m512i; 2] = [pulp::cast(EVENS), pulp::cast(ODDS)];
        let avx = self.avx512f;
        [
            pulp::cast(avx._mm512_permutex2var_ps(a, evens, b)),
            pulp::cast(avx._mm512_permutex2var_ps(a, odds, b)),
        ]
    }

    #[inline(always)]
    fn shifted(self, before: Self::f32s, v: Self::f32s) -> Self::f32s {
        let (before, v): (__m512i, __m512i) = (pulp::cast(before), pulp::cast(v));
        pulp::cast(self.avx512f._mm512_alignr_epi32::<15>(v, before))
    }

    #[inline(always)]
    fn following(self, v: Self::f32s, after: Self::f32s) -> Self::f32s {
        let (v, after): (__m512i, __m512i) = (pulp::cast(v), pulp::cast(after));
        pulp::cast(self.avx512f._mm512_alignr_epi32::<1>(after, v))
    }
}

#[cfg(target_arch = "x86_64")]
impl Halves for pulp::x86::V3 {
    #[inline(always)]
    fn split(self, a: Self::f32s, b: Self::f32s) -> [Self::f32s; 2] {
        let (a, b): (__m256, __m256) = (pulp::cast(a), pulp::cast(b));
        // Within each 128-bit half: a's evens (odds), then b's; then the halves' middle
        // 64-bit quarters swapped.
        let evens = self.avx._mm256_shuffle_ps::<0x88>(a, b);
        let odds = self.avx._mm256_shuffle_ps::<0xDD>(a, b);
        let order = |v: __m256| {
            let v = self.avx._mm256_castps_pd(v);
            self.avx
                ._mm256_castpd_ps(self.avx2._mm256_permute4x64_pd::<0xD8>(v))
        };
        [pulp::cast(order(evens)), pulp::cast(order(odds))]
    }

    #[inline(always)]
    fn shifted(self, before: Self::f32s, v: Self::f32s) -> Self::f32s {
        const UP: [i32; 8] = [7, 0, 1, 2, 3, 4, 5, 6];
        let up: __m256i = pulp::cast(UP);
        let v = self.avx2._mm256_permutevar8x32_ps(pulp::cast(v), up);
        let before = self.avx2._mm256_permutevar8x32_ps(pulp::cast(before), up);
        pulp::cast(self.avx._mm256_blend_ps::<1>(v, before))
    }

    #[inline(always)]
    fn following(self, v: Self::f32s, after: Self::f32s) -> Self::f32s {
        const DOWN: [i32; 8] = [1, 2, 3, 4, 5, 6, 7, 0];
        let down: __m256i = pulp::cast(DOWN);
        let v = self.avx2._mm256_permutevar8x32_ps(pulp::cast(v), down);
        let after = self.avx2._mm256_permutevar8x32_ps(pulp::cast(after), down);
        pulp::cast(self.avx._mm256_blend_ps::<0x80>(v, after))
    }
}

/// [`run`]'s task on one instruction set.
struct Run<'a, S, W> {
    simd: S,
    planes: Planes<'a, W>,
}

impl<S: Halves, W: Window3x3> pulp::NullaryFnOnce for Run<'_, S, W> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let Run { simd, planes: p } = self;
        let ([h, w], [ho, wo]) = (p.input, p.output);
        let mut window = p.window;
        let ys = p.ys.chunks_exact_mut(ho * wo);
        for (i, (y, x)) in ys.zip(p.xs.chunks_exact(h * w)).enumerate() {
            window.plane(simd, p.first + i, x);
            for (oy, y) in y.chunks_exact_mut(wo).enumerate() {
                // Input rows 2·oy − padding and the two after it, where inside the plane.
                let rows: [Option<&[f32]>; 3] = std::array::from_fn(|ky| {
                    let iy = (2 * oy + ky).checked_sub(p.padding).filter(|&iy| iy < h)?;
                    Some(&x[iy * w..(iy + 1) * w])
                });
                let row = Row {
                    rows,
                    window: &window,
                };
                if p.padding == 1 {
                    row.run::<S, 1>(simd, y);
                } else {
                    row.run::<S, 0>(simd, y);
                }
            }
        }
    }
}

/// An output row's three input rows.
struct Row<'a, W> {
    /// The three input rows (`None` outside the plane).
    rows: [Option<&'a [f32]>; 3],
    window: &'a W,
}

impl<W: Window3x3> Row<'_, W> {
    /// The output row `y` with padding `P` (0 or 1), a few vectors at a time: four where the
    /// CPU has 32 vector registers, the window's [`Window3x3::VECTORS_16`] with 16.
    #[inline(always)]
    fn run<S: Halves, const P: usize>(&self, simd: S, y: &mut [f32]) {
        let lanes = S::F32_LANES;
        let wide = if S::REGISTER_COUNT < 32 {
            W::VECTORS_16.clamp(1, 4)
        } else {
            4
        };
        let mut ox = 0;
        while ox < y.len() {
            let vectors = (y.len() - ox).div_ceil(lanes).min(wide);
            match vectors {
                4 => self.vectors::<S, 4, P>(simd, ox, y),
                3 => self.vectors::<S, 3, P>(simd, ox, y),
                2 => self.vectors::<S, 2, P>(simd, ox, y),
                _ => self.vectors::<S, 1, P>(simd, ox, y),
            }
            ox += vectors * lanes;
        }
    }

    /// Outputs `ox..` of the row, `V` vectors of them (the last may run past the row's end:
    /// only the outputs inside are stored). Each input row's taps are combined apart, so that
    /// no step waits long for the one before, and the rows once.
    #[inline(always)]
    fn vectors<S: Halves, const V: usize, const P: usize>(
        &self,
        simd: S,
        ox: usize,
        y: &mut [f32],
    ) {
        let lanes = S::F32_LANES;
        let top = self.row::<S, V, P>(simd, 0, ox);
        let middle = self.row::<S, V, P>(simd, 1, ox);
        let bottom = self.row::<S, V, P>(simd, 2, ox);
        let columns = top.into_iter().zip(middle).zip(bottom);
        for (v, ((top, middle), bottom)) in columns.enumerate() {
            let outputs = self.window.rows(simd, [top, middle, bottom]);
            let at = (ox + v * lanes).min(y.len());
            let out = &mut y[at..];
            if out.len() >= lanes {
                store::<S>(out, outputs);
            } else {
                simd.partial_store_f32s(out, outputs);
            }
        }
    }

    /// Input row `ky`'s part of the `V` vectors of outputs from `ox` ([`Window3x3::OUTSIDE`]
    /// for a row outside the plane).
    #[inline(always)]
    fn row<S: Halves, const V: usize, const P: usize>(
        &self,
        simd: S,
        ky: usize,
        ox: usize,
    ) -> [S::f32s; V] {
        let lanes = S::F32_LANES;
        let mut parts = [simd.splat_f32s(W::OUTSIDE); V];
        let Some(row) = self.rows[ky] else {
            return parts;
        };
        // With padding 1, the odd columns of the vector before (only its last lane is read):
        // the column left of the first output's, or the padding.
        let left_of_first = match (2 * ox).checked_sub(1) {
            Some(column) if P == 1 => row.get(column).copied().unwrap_or(W::OUTSIDE),
            _ => W::OUTSIDE,
        };
        let mut before = simd.splat_f32s(left_of_first);
        for (v, part) in parts.iter_mut().enumerate() {
            let at = 2 * (ox + v * lanes);
            let [evens, odds] = split_at::<S, W>(simd, row, at);
            let taps = if P == 1 {
                let left = simd.shifted(before, odds);
                before = odds;
                [left, evens, odds]
            } else {
                // The even column right of the last output's, or the padding.
                let next = row.get(at + 2 * lanes).copied().unwrap_or(W::OUTSIDE);
                [evens, odds, simd.following(evens, simd.splat_f32s(next))]
            };
            *part = self.window.row(simd, ky, taps);
        }
        parts
    }
}

/// The even and the odd columns of the two vectors of `row` from column `at`.
#[inline(always)]
fn split_at<S: Halves, W: Window3x3>(simd: S, row: &[f32], at: usize) -> [S::f32s; 2] {
    let lanes = S::F32_LANES;
    simd.split(
        read::<S, W>(simd, row, at),
        read::<S, W>(simd, row, at + lanes),
    )
}

/// The vector of `row` from column `at`, [`Window3x3::OUTSIDE`] past the row's end.
#[inline(always)]
fn read<S: pulp::Simd, W: Window3x3>(simd: S, row: &[f32], at: usize) -> S::f32s {
    let lanes = S::F32_LANES;
    if at + lanes <= row.len() {
        return load::<S>(&row[at..]);
    }
    let rest = &row[at.min(row.len())..];
    let values = simd.partial_load_f32s(rest);
    if W::OUTSIDE == 0.0 {
        values
    } else {
        simd.select_f32s(
            first_lanes(simd, rest.len()),
            values,
            simd.splat_f32s(W::OUTSIDE),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `split` and `shifted` on one instruction set, against their definitions.
    fn halves_on<S: Halves>(simd: S) {
        let lanes = S::F32_LANES;
        let values: Vec<f32> = (0..3 * lanes).map(|i| i as f32).collect();
        let vector = |at: usize| load::<S>(&values[at..]);
        let [evens, odds] = simd.split(vector(lanes), vector(2 * lanes));
        let lanes_of = |v: S::f32s| {
            let mut out = vec![0.0; lanes];
            store::<S>(&mut out, v);
            out
        };
        let want = |first: usize| -> Vec<f32> {
            (0..lanes).map(|j| (lanes + first + 2 * j) as f32).collect()
        };
        assert_eq!(lanes_of(evens), want(0));
        assert_eq!(lanes_of(odds), want(1));
        let shifted: Vec<f32> = (lanes - 1..2 * lanes - 1).map(|i| i as f32).collect();
        assert_eq!(lanes_of(simd.shifted(vector(0), vector(lanes))), shifted);
        let following: Vec<f32> = (1..lanes + 1).map(|i| i as f32).collect();
        assert_eq!(
            lanes_of(simd.following(vector(0), vector(lanes))),
            following
        );
    }

    #[test]
    fn evens_odds_and_the_lane_before_on_avx2_and_avx512() {
        #[cfg(target_arch = "x86_64")]
        {
            struct On<S>(S);
            impl<S: Halves> pulp::NullaryFnOnce for On<S> {
                type Output = ();
                #[inline(always)]
                fn call(self) {
                    halves_on(self.0)
                }
            }
            if let Some(simd) = pulp::x86::V3::try_new() {
                simd.vectorize(On(simd));
            }
            if let Some(simd) = pulp::x86::V4::try_new() {
                simd.vectorize(On(simd));
            }
        }
    }
}
