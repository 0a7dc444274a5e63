//! One plane of a sliding-window layer (a depthwise convolution, a max pool), laid out so that
//! every tap of the window reads one contiguous run of values for all of the plane's outputs
//! ([`PaddedPlane`]), at any stride, with no padding checks. A kernel fills a scratch buffer
//! with its padding value (zero, or negative infinity) once, copies each plane's input into it
//! ([`PaddedPlane::fill`]), combines the taps' runs a vector at a time into a flat buffer and
//! copies the rows out ([`PaddedPlane::copy_out`]).

use super::vector::{copy_row, load, store};
use super::{Activation, ShapeError};

/// The widest vector, in values: the slack the scratch buffers keep past the plane, so that
/// the last vector of outputs is a whole one.
const MAX_LANES: usize = 16;

/// Output vectors a kernel computes together, holding their values in registers across the
/// taps: independent results, so that one tap's operations need not wait for each other's.
const BLOCK: usize = 8;

/// A sliding-window kernel's work on one plane, `B` vectors of flat outputs at a time.
pub(crate) trait VectorBlocks {
    /// Computes output vectors `first..first + B` of the flat numbering (see [`PaddedPlane`]),
    /// `B` values of `S`'s width each.
    fn block<S: pulp::Simd, const B: usize>(&mut self, simd: S, first: usize);
}

/// Runs `kernel` over a plane's `vectors` output vectors: [`BLOCK`] at a time, then 4, 2 and 1
/// as they remain.
#[inline(always)]
pub(crate) fn in_blocks<S: pulp::Simd, K: VectorBlocks>(simd: S, vectors: usize, kernel: &mut K) {
    let mut v = 0;
    while v + BLOCK <= vectors {
        kernel.block::<S, BLOCK>(simd, v);
        v += BLOCK;
    }
    if v + 4 <= vectors {
        kernel.block::<S, 4>(simd, v);
        v += 4;
    }
    if v + 2 <= vectors {
        kernel.block::<S, 2>(simd, v);
        v += 2;
    }
    if v < vectors {
        kernel.block::<S, 1>(simd, v);
    }
}

/// Stores `sums`, `B` vectors of outputs, at the start of `out`, each through `activation`.
#[inline(always)]
pub(crate) fn store_block<S: pulp::Simd, const B: usize>(
    simd: S,
    sums: [S::f32s; B],
    activation: Activation,
    out: &mut [f32],
) {
    let lanes = S::F32_LANES;
    for (b, sum) in sums.into_iter().enumerate() {
        store::<S>(&mut out[b * lanes..], activation.apply_vector(simd, sum));
    }
}

/// A sliding window's geometry, rows then columns, as PyTorch gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Padding on each side.
    pub padding: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
}

/// The layout of one plane's padded copy, split into *phases* by the remainders of the padded
/// row and column modulo the stride: phase `(qy, qx)` holds padded rows `qy, qy + sh, …` and,
/// of each, columns `qx, qx + sw, …`, as `rows × width` values (the padding value past the
/// input's edges, up to the last value any window reads). A kernel tap then reads, for output `(oy, ox)`, the value at `oy · width + ox`
/// from its own start in its phase: every tap is one run over all the plane's outputs, taken
/// row after row as if they were `width` wide. The `width − wo` extra values per row (garbage:
/// they read across into the next row) are computed and dropped.
#[derive(Debug)]
pub(crate) struct PaddedPlane {
    /// Input rows and columns.
    input: [usize; 2],
    /// Padding rows and columns before the input.
    padding: [usize; 2],
    /// Row and column stride.
    stride: [usize; 2],
    /// Rows and columns of each phase.
    rows: usize,
    width: usize,
    /// Output rows and columns.
    output: [usize; 2],
    /// For each kernel tap `(ky, kx)`: where the read for output `(0, 0)` is.
    tap_starts: Vec<usize>,
}

impl PaddedPlane {
    /// The layout for `window` over `[h, w]` inputs and `[ho, wo]` outputs. A window may
    /// overhang the padded input at the end (as in ceil-mode pooling: the overhang reads the
    /// padding value), but every window must start inside it.
    pub(crate) fn new(
        window: &Window,
        [h, w]: [usize; 2],
        [ho, wo]: [usize; 2],
    ) -> Result<Self, ShapeError> {
        let [kh, kw] = window.kernel;
        let [sh, sw] = window.stride;
        let [dh, dw] = window.dilation;
        let [ph, pw] = window.padding;
        let last = |out: usize, stride: usize, k: usize, d: usize| {
            out.saturating_sub(1) * stride + k.saturating_sub(1) * d
        };
        if ho * wo * kh * kw == 0
            || sh * sw == 0
            || (ho - 1) * sh >= h + 2 * ph
            || (wo - 1) * sw >= w + 2 * pw
        {
            return Err(ShapeError(format!(
                "a {kh}x{kw} window at stride {sh}x{sw} cannot make {ho}x{wo} outputs from \
                 {h}x{w} inputs padded by {ph}x{pw}"
            )));
        }
        let rows = (last(ho, sh, kh, dh) + 1).div_ceil(sh);
        let width = (last(wo, sw, kw, dw) + 1).div_ceil(sw);
        let mut tap_starts = Vec::with_capacity(kh * kw);
        for ky in 0..kh {
            for kx in 0..kw {
                let phase = (ky * dh % sh) * sw + kx * dw % sw;
                tap_starts.push(phase * rows * width + ky * dh / sh * width + kx * dw / sw);
            }
        }
        Ok(PaddedPlane {
            input: [h, w],
            padding: [ph, pw],
            stride: [sh, sw],
            rows,
            width,
            output: [ho, wo],
            tap_starts,
        })
    }

    /// Input rows and columns.
    pub(crate) fn input(&self) -> [usize; 2] {
        self.input
    }

    /// Output rows and columns.
    pub(crate) fn output(&self) -> [usize; 2] {
        self.output
    }

    /// Values in the padded copy.
    fn len(&self) -> usize {
        self.stride[0] * self.stride[1] * self.rows * self.width
    }

    /// Values a scratch buffer for the padded copy holds: the copy and [`MAX_LANES`] of
    /// slack, so that a whole vector can be read at any of the plane's outputs.
    pub(crate) fn copy_len(&self) -> usize {
        self.len() + MAX_LANES
    }

    /// Outputs computed per plane, the garbage between rows included.
    fn flat_len(&self) -> usize {
        let [ho, wo] = self.output;
        (ho - 1) * self.width + wo
    }

    /// Values a scratch buffer for a plane's flat outputs holds: whole vectors of every width.
    pub(crate) fn flat_scratch_len(&self) -> usize {
        self.flat_len().next_multiple_of(MAX_LANES)
    }

    /// Vectors of `S` that cover a plane's flat outputs, the last running into the slack.
    pub(crate) fn vectors<S: pulp::Simd>(&self) -> usize {
        self.flat_len().div_ceil(S::F32_LANES)
    }

    /// For each window tap `(ky, kx)`, row-major: where in the copy the read for output
    /// `(0, 0)` is; output `f` of the flat numbering reads `f` values further.
    pub(crate) fn tap_starts(&self) -> &[usize] {
        &self.tap_starts
    }

    /// Copies the outputs of one plane, computed in the flat numbering into `flat`, to `y`
    /// (`[ho, wo]`), dropping the garbage between rows. Rows go in order, each as whole vectors
    /// where `y` has room: the last vector of a row runs into the next rows, which are written
    /// after it.
    #[inline(always)]
    pub(crate) fn copy_out<S: pulp::Simd>(&self, simd: S, flat: &[f32], y: &mut [f32]) {
        let (wo, lanes) = (self.output[1], S::F32_LANES);
        let whole = wo.next_multiple_of(lanes);
        for (r, start) in (0..self.output[0]).map(|r| (r, r * self.width)) {
            let at = r * wo;
            if at + whole <= y.len() && start + whole <= flat.len() {
                for v in (0..whole).step_by(lanes) {
                    store::<S>(&mut y[at + v..], load::<S>(&flat[start + v..]));
                }
            } else {
                copy_row(simd, &mut y[at..at + wo], &flat[start..start + wo]);
            }
        }
    }

    /// Copies `input`, one `[h, w]` plane, into `copy` in this layout. Only the values that
    /// come from the input are written: the caller fills `copy` with the padding value once,
    /// for every plane of the same layout.
    #[inline(always)]
    pub(crate) fn fill<S: pulp::Simd>(&self, simd: S, input: &[f32], copy: &mut [f32]) {
        let [h, w] = self.input;
        let [ph, pw] = self.padding;
        let [sh, sw] = self.stride;
        let width = self.width;
        // Columns first..end of phase column qx hold input columns qx + j·sw − pw, the rest
        // zeros.
        let columns = |qx: usize| {
            let first = pw.saturating_sub(qx).div_ceil(sw).min(width);
            let end = (pw + w).saturating_sub(qx).div_ceil(sw).min(width);
            (first, end)
        };
        let rows = self.rows;
        // The phases of one phase row qy: rows qy, qy + sh, … of the padded plane.
        for (qy, phases) in copy[..self.len()]
            .chunks_exact_mut(sw * rows * width)
            .enumerate()
        {
            let input_row = |i: usize| {
                let iy = (qy + i * sh).wrapping_sub(ph);
                (iy < h).then(|| &input[iy * w..(iy + 1) * w])
            };
            if sw == 2 {
                // Both column phases of a row at once: its even and odd columns.
                let (even, odd) = phases.split_at_mut(rows * width);
                let ((first0, end0), (first1, end1)) = (columns(0), columns(1));
                for i in 0..rows {
                    let Some(src) = input_row(i) else { continue };
                    let row0 = &mut even[i * width..][first0..end0];
                    let row1 = &mut odd[i * width..][first1..end1];
                    // Input columns 2·first0 − pw, … go to phase 0, 2·first1 + 1 − pw, … to
                    // phase 1: one of the two starts the pairs.
                    let (c0, c1) = (2 * first0 - pw, 2 * first1 + 1 - pw);
                    if c0 < c1 {
                        split_pairs(row0, row1, &src[c0..]);
                    } else {
                        split_pairs(row1, row0, &src[c1..]);
                    }
                }
                continue;
            }
            for (qx, values) in phases.chunks_exact_mut(rows * width).enumerate() {
                let (first, end) = columns(qx);
                if first >= end {
                    continue;
                }
                for (i, dst) in values.chunks_exact_mut(width).enumerate() {
                    let Some(src) = input_row(i) else { continue };
                    gather(simd, &mut dst[first..end], &src[qx + first * sw - pw..], sw);
                }
            }
        }
    }
}

/// `dst[j] = src[j · stride]` for every `j` (`src` holds them all).
#[inline(always)]
fn gather<S: pulp::Simd>(simd: S, dst: &mut [f32], src: &[f32], stride: usize) {
    let Some((last, init)) = dst.split_last_mut() else {
        return;
    };
    let src = &src[..init.len() * stride + 1];
    if stride == 1 {
        copy_row(simd, init, &src[..init.len()]);
        *last = src[init.len()];
        return;
    }
    for (j, d) in init.iter_mut().enumerate() {
        *d = src[j * stride];
    }
    *last = src[init.len() * stride];
}

/// `evens[j] = src[2j]` and `odds[j] = src[2j + 1]` for every `j` of each (`src` holds them
/// all), in one pass over `src`.
#[inline(always)]
fn split_pairs(evens: &mut [f32], odds: &mut [f32], src: &[f32]) {
    let both = evens.len().min(odds.len());
    for ((e, o), pair) in evens[..both]
        .iter_mut()
        .zip(&mut odds[..both])
        .zip(src.chunks_exact(2))
    {
        *e = pair[0];
        *o = pair[1];
    }
    for (k, e) in evens.iter_mut().enumerate().skip(both) {
        *e = src[2 * k];
    }
    for (k, o) in odds.iter_mut().enumerate().skip(both) {
        *o = src[2 * k + 1];
    }
}
