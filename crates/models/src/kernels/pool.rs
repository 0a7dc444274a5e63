//! Max pooling, without the index tensor Burn's kernel also builds. Each plane is copied into
//! a phase-split scratch buffer padded with negative infinity ([`PaddedPlane`]), where every
//! tap of the window reads one contiguous run for all of the plane's outputs; the outputs are
//! the maxima of those runs, computed several vectors at a time in registers and stored once.
//! NaN wins, as in PyTorch. A task takes several planes; its loops run through `pulp`, compiled
//! for the [`VectorPath`](super::VectorPath) in effect.

use rayon::prelude::*;

use super::plane::{PaddedPlane, VectorBlocks, Window, in_blocks, store_block};
use super::recycled;
use super::scratch::Scratch;
use super::vector::{dispatch, load};
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
    let padded = PaddedPlane::new(window, [h, w], [ho, wo])?;
    let mut out = recycled::take(x.len() / plane_in * plane_out);
    let per_task = TASK_OUTPUTS.div_ceil(plane_out);
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

/// One task's planes: `ys` (`[ho, wo]` each) from `xs` (`[h, w]` each), through the scratch
/// buffers `copy` and `flat`.
struct Planes<'a> {
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
        let ([h, w], [ho, wo]) = (padded.input(), padded.output());
        let planes = self
            .ys
            .chunks_exact_mut(ho * wo)
            .zip(self.xs.chunks_exact(h * w));
        for (y, input) in planes {
            padded.fill(simd, input, self.copy, f32::NEG_INFINITY);
            let mut maxima = Maxima {
                copy: self.copy,
                taps: padded.tap_starts(),
                nan: input.iter().fold(false, |nan, v| nan | v.is_nan()),
                flat: self.flat,
            };
            in_blocks(simd, padded.vectors::<S>(), &mut maxima);
            padded.copy_out(simd, self.flat, y);
        }
    }
}

/// One plane's pooling, vector block by vector block: the maximum of `copy` read at the
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
                let v = load::<S>(&values[b * lanes..]);
                *m = if self.nan {
                    // v where it is larger or NaN, else m (which keeps a NaN it took).
                    let take = simd.or_m32s(
                        simd.greater_than_f32s(v, *m),
                        simd.not_m32s(simd.equal_f32s(v, v)),
                    );
                    simd.select_f32s(take, v, *m)
                } else {
                    simd.max_f32s(v, *m)
                };
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
