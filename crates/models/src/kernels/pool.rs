//! Max pooling, without the index tensor Burn's kernel also builds: each output row is the
//! element-wise maximum of the input rows under the window (a vectorisable pass), then the
//! maximum of each window along that row.

use rayon::prelude::*;

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
    /// The input indices under the window of output position `o` along axis `i`, for an input
    /// of length `len`.
    fn taps(&self, i: usize, o: usize, len: usize) -> impl Iterator<Item = usize> + use<> {
        let (start, d, pad) = (o * self.stride[i], self.dilation[i], self.padding[i]);
        (0..self.kernel[i])
            .map(move |k| (start + k * d).wrapping_sub(pad))
            .filter(move |&x| x < len)
    }
}

/// The larger of two values, NaN winning (as in PyTorch).
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
    let planes = x.len() / (h * w).max(1);
    let mut out = vec![f32::NEG_INFINITY; planes * ho * wo];
    out.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(h * w))
        .for_each(|(y, plane)| {
            let mut rows = vec![f32::NEG_INFINITY; w];
            for (oy, y_row) in y.chunks_mut(wo).enumerate() {
                rows.fill(f32::NEG_INFINITY);
                for iy in window.taps(0, oy, h) {
                    for (m, &v) in rows.iter_mut().zip(&plane[iy * w..(iy + 1) * w]) {
                        *m = max_nan(v, *m);
                    }
                }
                for (ox, out) in y_row.iter_mut().enumerate() {
                    *out = window
                        .taps(1, ox, w)
                        .fold(f32::NEG_INFINITY, |m, ix| max_nan(rows[ix], m));
                }
            }
        });
    out
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
