//! Max pooling, without the index tensor Burn's kernel also builds: each output row is the
//! element-wise maximum of the input rows under the window, written into a row padded with
//! negative infinity, then the element-wise maximum of that row read at each of the window's
//! column offsets. Both passes are runs over contiguous (or, at stride 2, every other) values,
//! compiled for the [`VectorPath`](super::VectorPath) in effect; a task takes several planes.

use rayon::prelude::*;

use super::scratch::Scratch;
use super::vector::dispatch;

/// Output values one task writes at least (whole planes): enough to pay for handing it out.
const TASK_OUTPUTS: usize = 8 * 1024;

/// A max pool's window, as in [`crate::LayerKind::MaxPool2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolWindow {
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Implicit negative-infinity padding on each side.
    pub padding: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
}

impl PoolWindow {
    /// The input rows under the window of output row `oy`, for an input of `h` rows.
    fn rows(&self, oy: usize, h: usize) -> impl Iterator<Item = usize> + use<> {
        let (start, d, pad) = (oy * self.stride[0], self.dilation[0], self.padding[0]);
        (0..self.kernel[0])
            .map(move |k| (start + k * d).wrapping_sub(pad))
            .filter(move |&y| y < h)
    }

    /// Length of a padded row: the padding on the left, the input, and negative infinity up to
    /// the last column any window of `wo` outputs reads.
    fn padded_len(&self, w: usize, wo: usize) -> usize {
        let reach = wo.saturating_sub(1) * self.stride[1]
            + self.kernel[1].saturating_sub(1) * self.dilation[1]
            + 1;
        reach.max(self.padding[1] + w)
    }
}

/// The larger of two values, NaN winning (as in PyTorch).
#[inline(always)]
fn max_nan(a: f32, b: f32) -> f32 {
    if a > b || a.is_nan() { a } else { b }
}

/// Max-pools `planes` planes of `h × w` (NCHW data, batch and channels flattened) into planes
/// of `ho × wo`, which the caller has worked out (PyTorch's sizes, `ceil_mode` included).
pub(crate) fn max_pool2d(
    x: &[f32],
    [h, w]: [usize; 2],
    [ho, wo]: [usize; 2],
    window: &PoolWindow,
) -> Vec<f32> {
    let (plane_in, plane_out) = (h * w, ho * wo);
    let mut out = vec![0.0f32; x.len() / plane_in.max(1) * plane_out];
    if plane_in == 0 || plane_out == 0 {
        return out;
    }
    let per_task = TASK_OUTPUTS.div_ceil(plane_out);
    let padded_len = window.padded_len(w, wo);
    out.par_chunks_mut(per_task * plane_out)
        .zip(x.par_chunks(per_task * plane_in))
        .for_each_init(
            || Scratch::take(padded_len),
            |row, (ys, xs)| {
                dispatch(Planes {
                    window,
                    input: [h, w],
                    output: [ho, wo],
                    row,
                    ys,
                    xs,
                })
            },
        );
    out
}

/// One task's planes: `ys` (`[ho, wo]` each) from `xs` (`[h, w]` each), through `row`, a padded
/// row ([`PoolWindow::padded_len`]).
struct Planes<'a> {
    window: &'a PoolWindow,
    input: [usize; 2],
    output: [usize; 2],
    row: &'a mut [f32],
    ys: &'a mut [f32],
    xs: &'a [f32],
}

impl pulp::WithSimd for Planes<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let window = self.window;
        let ([h, w], [ho, wo]) = (self.input, self.output);
        let (pad, stride, dilation) = (window.padding[1], window.stride[1], window.dilation[1]);
        let row = self.row;
        row.fill(f32::NEG_INFINITY);
        for (y, plane) in self
            .ys
            .chunks_exact_mut(ho * wo)
            .zip(self.xs.chunks_exact(h * w))
        {
            for (oy, y_row) in y.chunks_exact_mut(wo).enumerate() {
                // Only the input's columns change from one output row to the next; the
                // padding stays negative infinity.
                let inner = &mut row[pad..pad + w];
                inner.fill(f32::NEG_INFINITY);
                for iy in window.rows(oy, h) {
                    for (m, &v) in inner.iter_mut().zip(&plane[iy * w..(iy + 1) * w]) {
                        *m = max_nan(v, *m);
                    }
                }
                y_row.fill(f32::NEG_INFINITY);
                for kx in 0..window.kernel[1] {
                    let from = &row[kx * dilation..];
                    match stride {
                        1 => {
                            for (o, &v) in y_row.iter_mut().zip(from) {
                                *o = max_nan(v, *o);
                            }
                        }
                        2 => {
                            for (o, pair) in y_row.iter_mut().zip(from.chunks(2)) {
                                *o = max_nan(pair[0], *o);
                            }
                        }
                        _ => {
                            for (o, &v) in y_row.iter_mut().zip(from.iter().step_by(stride)) {
                                *o = max_nan(v, *o);
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
    use super::*;

    #[test]
    fn windows_take_the_maximum_of_their_valid_inputs() {
        // One 4 x 5 plane, 3x3 windows, stride 2, padding 1.
        let x: Vec<f32> = (0..20).map(|i| ((i * 7) % 11) as f32).collect();
        let window = PoolWindow {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
            dilation: [1, 1],
        };
        let y = max_pool2d(&x, [4, 5], [2, 3], &window);
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
    fn naive(x: &[f32], [h, w]: [usize; 2], [ho, wo]: [usize; 2], p: &PoolWindow) -> Vec<f32> {
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
            let window = PoolWindow {
                kernel: [k, k],
                stride: [s, s],
                padding: [p, p],
                dilation: [d, d],
            };
            let planes = 3000 / (h * w);
            let x = &x[..planes * h * w];
            assert_eq!(
                max_pool2d(x, [h, w], out, &window),
                naive(x, [h, w], out, &window),
                "{window:?} {h}x{w}"
            );
        }
    }

    #[test]
    fn nan_propagates_and_dilation_skips() {
        let window = PoolWindow {
            kernel: [1, 2],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 2],
        };
        let x = vec![1.0, 9.0, 3.0, f32::NAN, 2.0];
        let y = max_pool2d(&x, [1, 5], [1, 3], &window);
        assert_eq!(y[0], 3.0);
        assert!(y[1].is_nan());
        assert_eq!(y[2], 3.0);
    }
}
