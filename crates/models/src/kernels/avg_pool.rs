//! Average pooling over windows (LeNet's 2×2 at stride 2), PyTorch's `avg_pool2d` without a
//! divisor override: each output the sum of the inputs its window covers, divided by the
//! window's size clipped to the padded input (`count_include_pad`) or to the input itself.
//!
//! Each output row's input rows and each output column's input columns, with their divisors'
//! factors, are worked out once for all planes; then each output row's input rows are added
//! column by column, and each output takes its columns of that sum. Burn's operation, which
//! this replaces, took 35 ns an output on LeNet's small planes (41 µs in-pass for its first
//! pool, 6 planes of 28 × 28, most of LeNet's pass). See `docs/EXPERIMENTS.md`, "Fast
//! kernels".

use std::ops::Range;

use rayon::prelude::*;

use super::ShapeError;
use super::recycled;
use super::scratch::Scratch;

/// Output values one task writes at least (whole planes): enough to pay for handing it out.
const TASK_OUTPUTS: usize = 8 * 1024;

/// An average pool's window: its size, stride and zero padding a side (rows, columns), and
/// whether the padding counts in the divisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AvgWindow {
    /// Rows and columns a window covers.
    pub kernel: [usize; 2],
    /// Rows and columns between two windows.
    pub stride: [usize; 2],
    /// Zeros above and below, left and right.
    pub padding: [usize; 2],
    /// Whether padded positions count in a window's divisor (PyTorch's default).
    pub count_include_pad: bool,
}

/// The input range one output covers along one side, and the side's factor of its divisor.
#[derive(Debug)]
struct Span {
    inputs: Range<usize>,
    divisor: usize,
}

/// Each of `outputs` outputs' span along a side of `size` inputs, for a window of `kernel`
/// at `stride` with `padding` on both ends. Refused where a window starts past the padded
/// input (an output size the window cannot make) or, without `count_include_pad`, covers no
/// input (its mean would divide by zero).
fn spans(
    size: usize,
    outputs: usize,
    [kernel, stride, padding]: [usize; 3],
    count_include_pad: bool,
) -> Result<Vec<Span>, ShapeError> {
    (0..outputs)
        .map(|o| {
            // Positions in the padded input: the input's first value sits at `padding`.
            let start = o * stride;
            let end = (start + kernel).min(size + 2 * padding);
            let inputs = start.max(padding).min(size + padding) - padding
                ..end.clamp(padding, size + padding) - padding;
            let divisor = if count_include_pad {
                end.saturating_sub(start)
            } else {
                inputs.len()
            };
            if start >= size + 2 * padding || divisor == 0 {
                return Err(ShapeError(format!(
                    "an average pool of {kernel} at stride {stride} with padding {padding} \
                     cannot make {outputs} outputs from {size} inputs"
                )));
            }
            Ok(Span { inputs, divisor })
        })
        .collect()
}

/// Average-pools `planes` planes of `h × w` (NCHW data, batch and channels flattened) into
/// planes of `ho × wo`, which the caller has worked out (PyTorch's sizes, `ceil_mode`
/// included: the last window may overhang the input).
pub(crate) fn avg_pool2d(
    x: &[f32],
    [h, w]: [usize; 2],
    [ho, wo]: [usize; 2],
    window: &AvgWindow,
) -> Result<Vec<f32>, ShapeError> {
    let (plane_in, plane_out) = (h * w, ho * wo);
    if plane_in == 0 || x.len() % plane_in != 0 {
        return Err(ShapeError(format!(
            "the input holds {} values, not a multiple of {h}x{w}",
            x.len()
        )));
    }
    if window.kernel.contains(&0) || window.stride.contains(&0) {
        return Err(ShapeError(format!(
            "an average pool needs a window and a stride of at least 1, not {:?} and {:?}",
            window.kernel, window.stride
        )));
    }
    let side = |i: usize| [window.kernel[i], window.stride[i], window.padding[i]];
    let rows = spans(h, ho, side(0), window.count_include_pad)?;
    let columns = spans(w, wo, side(1), window.count_include_pad)?;
    let mut out = recycled::take(x.len() / plane_in * plane_out);
    if plane_out == 0 {
        return Ok(out);
    }
    let per_task = TASK_OUTPUTS.div_ceil(plane_out);
    out.par_chunks_mut(per_task * plane_out)
        .zip(x.par_chunks(per_task * plane_in))
        .for_each(|(outs, ins)| {
            // An output row's input rows added column by column (whole rows at a time, which
            // the compiler vectorises), then each output's columns of that sum.
            let mut sums = Scratch::take(w);
            for (out, plane) in outs
                .chunks_exact_mut(plane_out)
                .zip(ins.chunks_exact(plane_in))
            {
                for (out_row, row) in out.chunks_exact_mut(wo).zip(&rows) {
                    sums.fill(0.0);
                    let inputs = plane.chunks_exact(w).take(row.inputs.end);
                    for input in inputs.skip(row.inputs.start) {
                        for (sum, &v) in sums.iter_mut().zip(input) {
                            *sum += v;
                        }
                    }
                    for (y, column) in out_row.iter_mut().zip(&columns) {
                        let sum: f32 = sums[column.inputs.clone()].iter().sum();
                        *y = sum / (row.divisor * column.divisor) as f32;
                    }
                }
            }
        });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch's definition, output by output.
    fn naive(x: &[f32], [h, w]: [usize; 2], [ho, wo]: [usize; 2], p: &AvgWindow) -> Vec<f32> {
        let mut y = Vec::new();
        for plane in x.chunks(h * w) {
            for oh in 0..ho {
                for ow in 0..wo {
                    let h0 = (oh * p.stride[0]) as i64 - p.padding[0] as i64;
                    let w0 = (ow * p.stride[1]) as i64 - p.padding[1] as i64;
                    let h1 = (h0 + p.kernel[0] as i64).min((h + p.padding[0]) as i64);
                    let w1 = (w0 + p.kernel[1] as i64).min((w + p.padding[1]) as i64);
                    let padded = (h1 - h0) * (w1 - w0);
                    let (h0, w0) = (h0.max(0), w0.max(0));
                    let (h1, w1) = (h1.min(h as i64), w1.min(w as i64));
                    let mut sum = 0.0;
                    for r in h0..h1 {
                        for c in w0..w1 {
                            sum += plane[r as usize * w + c as usize];
                        }
                    }
                    let count = if p.count_include_pad {
                        padded
                    } else {
                        (h1 - h0) * (w1 - w0)
                    };
                    y.push(sum / count as f32);
                }
            }
        }
        y
    }

    /// PyTorch's output size along one side.
    fn out_size(size: usize, kernel: usize, stride: usize, padding: usize, ceil: bool) -> usize {
        let span = size + 2 * padding - kernel;
        let mut n = if ceil {
            span.div_ceil(stride)
        } else {
            span / stride
        } + 1;
        // With ceil_mode the last window must start inside the input or its left padding.
        if ceil && (n - 1) * stride >= size + padding {
            n -= 1;
        }
        n
    }

    #[test]
    fn windows_take_the_mean_of_what_they_cover() {
        // (planes, h, w, kernel, stride, padding, ceil_mode, count_include_pad): LeNet's two
        // pools, padding counted and not, ceil_mode's overhanging last window, rectangular
        // windows, a stride past the window, and enough planes for several tasks.
        for (planes, h, w, k, s, p, ceil, count) in [
            (6, 28, 28, [2, 2], [2, 2], [0, 0], false, true),
            (16, 10, 10, [2, 2], [2, 2], [0, 0], false, true),
            (3, 9, 11, [3, 3], [2, 2], [1, 1], false, true),
            (3, 9, 11, [3, 3], [2, 2], [1, 1], false, false),
            (2, 7, 7, [2, 2], [2, 2], [0, 0], true, true),
            (2, 8, 7, [3, 2], [2, 3], [1, 0], true, false),
            (2, 12, 12, [2, 2], [3, 3], [0, 0], false, true),
            (40, 30, 30, [2, 2], [2, 2], [0, 0], false, true),
        ] {
            let window = AvgWindow {
                kernel: k,
                stride: s,
                padding: p,
                count_include_pad: count,
            };
            let ho = out_size(h, k[0], s[0], p[0], ceil);
            let wo = out_size(w, k[1], s[1], p[1], ceil);
            let x: Vec<f32> = (0..planes * h * w)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
                .collect();
            let y = avg_pool2d(&x, [h, w], [ho, wo], &window).expect("pools");
            let want = naive(&x, [h, w], [ho, wo], &window);
            assert_eq!(y.len(), want.len());
            for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{planes}x{h}x{w} {window:?} output {i}: {a} against {b}"
                );
            }
        }
    }

    #[test]
    fn sizes_the_window_cannot_make_are_refused() {
        let window = AvgWindow {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            count_include_pad: false,
        };
        let x = vec![1.0; 2 * 16];
        assert!(avg_pool2d(&x, [4, 4], [2, 2], &window).is_ok());
        // A third output row would start past the input.
        assert!(avg_pool2d(&x, [4, 4], [3, 2], &window).is_err());
        // Values that are not whole planes.
        assert!(avg_pool2d(&x[..31], [4, 4], [2, 2], &window).is_err());
        let empty = AvgWindow {
            kernel: [0, 2],
            ..window
        };
        assert!(avg_pool2d(&x, [4, 4], [2, 2], &empty).is_err());
        // A window wholly in the padding, where the padding does not count: nothing to divide.
        let padded = AvgWindow {
            kernel: [1, 1],
            stride: [1, 1],
            padding: [1, 1],
            count_include_pad: false,
        };
        assert!(avg_pool2d(&x, [4, 4], [6, 6], &padded).is_err());
    }
}
