//! One plane of a sliding-window layer (a depthwise convolution, a max pool), laid out so that
//! every tap of the window reads one contiguous run of values for all of the plane's outputs
//! ([`PaddedPlane`]), at any stride, with no padding checks. A kernel fills a scratch buffer
//! with its padding value (zero, or negative infinity) once, copies each plane's input into it
//! ([`PaddedPlane::fill`]), combines the taps' runs a vector at a time into a flat buffer and
//! copies the rows out ([`PaddedPlane::copy_out`]).

use super::vector::{copy_row, load, store};
use super::{Activation, ShapeError};

/// The widest vector, in values (AVX-512's): also the slack the scratch buffers keep past the
/// plane, so that the last vector of outputs is a whole one.
pub(crate) const MAX_LANES: usize = 16;

/// Inputs at least this wide are split into column phases at column strides above 1; see
/// [`PaddedPlane`].
const SPLIT_MIN_WIDTH: usize = 32;

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

/// What a kernel does to its sums as it stores them: adds the residual the output already
/// holds (where `residual` says so), then applies `activation`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epilogue {
    /// Applied last.
    pub activation: Activation,
    /// Whether the output holds a residual to add first.
    pub residual: bool,
}

impl Epilogue {
    /// Stores `sums`, `B` vectors of outputs, at the start of `out` (adding what `out` holds
    /// first, for a residual).
    #[inline(always)]
    pub(crate) fn store<S: pulp::Simd, const B: usize>(
        self,
        simd: S,
        sums: [S::f32s; B],
        out: &mut [f32],
    ) {
        if !self.residual {
            store_block(simd, sums, self.activation, out);
            return;
        }
        let lanes = S::F32_LANES;
        for (b, sum) in sums.into_iter().enumerate() {
            let at = &mut out[b * lanes..];
            let total = simd.add_f32s(sum, load::<S>(at));
            store::<S>(at, self.activation.apply_vector(simd, total));
        }
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

impl Window {
    /// A 3×3 window at stride 1 with padding 1 and no dilation, whose output is the size of
    /// its input (the stride-1 depthwise layers', GoogLeNet's branch pools').
    pub(crate) const SAME_3X3: Window = Window {
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
    };
}

/// The layout of one plane's padded copy, split into *phases* by the remainders of the padded
/// row modulo the row stride and, on wide inputs, of the padded column modulo the column
/// stride: phase `(qy, qx)` holds padded rows `qy, qy + sh, …` and, of each, columns
/// `qx, qx + sw, …`, as `rows × width` values (the padding value past the input's edges, up to
/// the last value any window reads). A kernel tap then reads, for output `(oy, ox)`, the value
/// at `oy · width + ox` from its own start in its phase: every tap is one run over all the
/// plane's outputs, taken row after row as if they were `width` wide. The `width − wo` extra
/// values per row (garbage: they read across into the next row) are computed and dropped.
///
/// Narrower inputs (below [`SPLIT_MIN_WIDTH`] columns) keep their columns together, each row
/// copied whole: a tap reads output `(oy, ox)` at `oy · width + ox · sw`, and the outputs
/// between those the stride keeps are computed and dropped too. Splitting short rows into
/// column phases, a value at a time, cost more than computing `sw` times the outputs.
#[derive(Debug)]
pub(crate) struct PaddedPlane {
    /// Input rows and columns.
    input: [usize; 2],
    /// Padding rows and columns before the input.
    padding: [usize; 2],
    /// Row and column stride.
    stride: [usize; 2],
    /// Column phases: the column stride where columns are split, else 1.
    column_phases: usize,
    /// How far apart, in a phase row, the outputs of one row are: 1 where columns are split,
    /// else the column stride.
    step: usize,
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
        input: [usize; 2],
        output: [usize; 2],
    ) -> Result<Self, ShapeError> {
        PaddedPlane::laid_out(window, input, output, input[1] >= SPLIT_MIN_WIDTH)
    }

    /// [`PaddedPlane::new`] with the columns of every row kept together whatever the input's
    /// width, for a caller that writes the rows itself ([`PaddedPlane::row_at`]).
    pub(crate) fn whole_rows(
        window: &Window,
        input: [usize; 2],
        output: [usize; 2],
    ) -> Result<Self, ShapeError> {
        PaddedPlane::laid_out(window, input, output, false)
    }

    /// The layout, with the columns split into phases where `split` says so (and the column
    /// stride is above 1).
    fn laid_out(
        window: &Window,
        [h, w]: [usize; 2],
        [ho, wo]: [usize; 2],
        split: bool,
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
        let column_phases = if split { sw } else { 1 };
        let rows = (last(ho, sh, kh, dh) + 1).div_ceil(sh);
        let width = (last(wo, sw, kw, dw) + 1).div_ceil(column_phases);
        let mut tap_starts = Vec::with_capacity(kh * kw);
        for ky in 0..kh {
            for kx in 0..kw {
                let (column, qx) = (kx * dw / column_phases, kx * dw % column_phases);
                let phase = (ky * dh % sh) * column_phases + qx;
                tap_starts.push(phase * rows * width + ky * dh / sh * width + column);
            }
        }
        Ok(PaddedPlane {
            input: [h, w],
            padding: [ph, pw],
            stride: [sh, sw],
            column_phases,
            step: sw / column_phases,
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

    /// In a layout of stride-1 rows whose columns stay together (see
    /// [`PaddedPlane::whole_rows`]): where input row `iy`'s first column goes in the copy.
    #[inline(always)]
    pub(crate) fn row_at(&self, iy: usize) -> usize {
        (iy + self.padding[0]) * self.width + self.padding[1].min(self.width)
    }

    /// In a layout whose columns stay together: how many columns of each input row are kept
    /// (those a window reads, from the first).
    #[inline(always)]
    pub(crate) fn kept_columns(&self) -> usize {
        let [pw, width] = [self.padding[1], self.width];
        (pw + self.input[1]).min(width) - pw.min(width)
    }

    /// Values in the padded copy.
    pub(crate) fn len(&self) -> usize {
        self.stride[0] * self.column_phases * self.rows * self.width
    }

    /// Values a scratch buffer for the padded copy holds: the copy and [`MAX_LANES`] of
    /// slack, so that a whole vector can be read at any of the plane's outputs.
    pub(crate) fn copy_len(&self) -> usize {
        self.len() + MAX_LANES
    }

    /// Outputs computed per plane, the garbage between rows and the dropped ones included.
    fn flat_len(&self) -> usize {
        let [ho, wo] = self.output;
        (ho - 1) * self.width + (wo - 1) * self.step + 1
    }

    /// Values a scratch buffer for a plane's flat outputs holds: whole vectors of every width.
    pub(crate) fn flat_scratch_len(&self) -> usize {
        self.flat_len().next_multiple_of(MAX_LANES)
    }

    /// Vectors of `S` that cover a plane's flat outputs, the last running into the slack.
    pub(crate) fn vectors<S: pulp::Simd>(&self) -> usize {
        self.flat_len().div_ceil(S::F32_LANES)
    }

    /// Output `(oy, ox)`'s number in the flat numbering, and how far apart the outputs of one
    /// row are there (1 where columns are split, else the column stride).
    #[inline(always)]
    pub(crate) fn flat_at(&self, oy: usize, ox: usize) -> (usize, usize) {
        (oy * self.width + ox * self.step, self.step)
    }

    /// For each window tap `(ky, kx)`, row-major: where in the copy the read for output
    /// `(0, 0)` is; output `f` of the flat numbering reads `f` values further.
    pub(crate) fn tap_starts(&self) -> &[usize] {
        &self.tap_starts
    }

    /// Copies the outputs of one plane, computed in the flat numbering into `flat`, to `y`
    /// (`[ho, wo]`), dropping the garbage between rows and the outputs between those kept.
    /// Rows go in order, each (where outputs are next to each other) as whole vectors where `y`
    /// has room: the last vector of a row runs into the next rows, which are written after it.
    #[inline(always)]
    pub(crate) fn copy_out<S: pulp::Simd>(&self, simd: S, flat: &[f32], y: &mut [f32]) {
        let (wo, lanes) = (self.output[1], S::F32_LANES);
        let whole = wo.next_multiple_of(lanes);
        for (r, start) in (0..self.output[0]).map(|r| (r, r * self.width)) {
            let at = r * wo;
            if self.step > 1 {
                gather(&mut y[at..at + wo], &flat[start..], self.step);
            } else if at + whole <= y.len() && start + whole <= flat.len() {
                for v in (0..whole).step_by(lanes) {
                    store::<S>(&mut y[at + v..], load::<S>(&flat[start + v..]));
                }
            } else {
                copy_row(simd, &mut y[at..at + wo], &flat[start..start + wo]);
            }
        }
    }

    /// Copies `input`, one `[h, w]` plane, into `copy` in this layout. Where columns stay
    /// together, only the values that come from the input are written, and past a row shorter
    /// than a vector, `pad`: the caller fills `copy` with the padding value `pad` once, for
    /// every plane of the same layout. Where they are split, every value is written
    /// ([`PaddedPlane::fill_phase_row`]).
    #[inline(always)]
    pub(crate) fn fill<S: pulp::Simd>(&self, simd: S, input: &[f32], copy: &mut [f32], pad: f32) {
        if self.column_phases == 1 {
            self.fill_rows(simd, input, copy, pad);
            return;
        }
        for (qy, phases) in copy[..self.len()]
            .chunks_exact_mut(self.phase_row_len())
            .enumerate()
        {
            self.fill_phase_row(qy, input, phases, pad);
        }
    }

    /// Whether the columns are split into phases: then each phase row's part of the copy
    /// ([`PaddedPlane::phase_row_len`] values) can be written apart from the others.
    pub(crate) fn splits_columns(&self) -> bool {
        self.column_phases > 1
    }

    /// Values of the copy that hold one phase row (padded rows `qy, qy + sh, …`), every column
    /// phase of them.
    pub(crate) fn phase_row_len(&self) -> usize {
        self.column_phases * self.rows * self.width
    }

    /// Where columns are split: [`PaddedPlane::fill`] for phase row `qy` alone, into `phases`
    /// (its [`PaddedPlane::phase_row_len`] values of the copy). Every value is written: the
    /// input's, and `pad` around them, so that the caller need not fill the copy first (a
    /// stem's whole copy, 635 KB for a 224×224 RGB input, written twice).
    #[inline(always)]
    pub(crate) fn fill_phase_row(&self, qy: usize, input: &[f32], phases: &mut [f32], pad: f32) {
        let [h, w] = self.input;
        let [ph, pw] = self.padding;
        let (sh, sw) = (self.stride[0], self.column_phases);
        let width = self.width;
        // Columns first..end of phase column qx hold input columns qx + j·sw − pw, the rest
        // zeros.
        let columns = |qx: usize| {
            let first = pw.saturating_sub(qx).div_ceil(sw).min(width);
            let end = (pw + w).saturating_sub(qx).div_ceil(sw).min(width);
            (first, end)
        };
        let rows = self.rows;
        let input_row = |i: usize| {
            let iy = (qy + i * sh).wrapping_sub(ph);
            (iy < h).then(|| &input[iy * w..(iy + 1) * w])
        };
        if sw == 2 {
            // Both column phases of a row at once: its even and odd columns.
            let (even, odd) = phases.split_at_mut(rows * width);
            let ((first0, end0), (first1, end1)) = (columns(0), columns(1));
            let rows0 = even.chunks_exact_mut(width);
            for (i, (row0, row1)) in rows0.zip(odd.chunks_exact_mut(width)).enumerate() {
                let Some(src) = input_row(i) else {
                    row0.fill(pad);
                    row1.fill(pad);
                    continue;
                };
                let row0 = pad_around(row0, first0, end0, pad);
                let row1 = pad_around(row1, first1, end1, pad);
                // Input columns 2·first0 − pw, … go to phase 0, 2·first1 + 1 − pw, … to
                // phase 1: one of the two starts the pairs.
                let (c0, c1) = (2 * first0 - pw, 2 * first1 + 1 - pw);
                if c0 < c1 {
                    split_pairs(row0, row1, &src[c0..]);
                } else {
                    split_pairs(row1, row0, &src[c1..]);
                }
            }
            return;
        }
        for (qx, values) in phases.chunks_exact_mut(rows * width).enumerate() {
            let (first, end) = columns(qx);
            for (i, dst) in values.chunks_exact_mut(width).enumerate() {
                match input_row(i) {
                    Some(src) if first < end => {
                        let dst = pad_around(dst, first, end, pad);
                        gather(dst, &src[qx + first * sw - pw..], sw);
                    }
                    _ => dst.fill(pad),
                }
            }
        }
    }

    /// [`PaddedPlane::fill`] where columns stay together: each input row copied into its
    /// padded row. A row shorter than a vector goes as one whole vector whose lanes past the
    /// row hold `pad`: they land in the padding, or in rows (of this phase or the next) that
    /// are written after it. (A partial load and store, where the plane ends, costs several
    /// times more.)
    #[inline(always)]
    fn fill_rows<S: pulp::Simd>(&self, simd: S, input: &[f32], copy: &mut [f32], pad: f32) {
        let [h, w] = self.input;
        let [ph, pw] = self.padding;
        let (sh, rows, width, lanes) = (self.stride[0], self.rows, self.width, S::F32_LANES);
        let (first, n) = (pw.min(width), self.kept_columns());
        let keep = first_lanes(simd, n);
        let pads = simd.splat_f32s(pad);
        for qy in 0..sh {
            for i in 0..rows {
                let iy = (qy + i * sh).wrapping_sub(ph);
                if iy >= h || n == 0 {
                    continue;
                }
                let (from, to) = (iy * w, (qy * rows + i) * width + first);
                if n < lanes && from + lanes <= input.len() && to + lanes <= copy.len() {
                    let row = simd.select_f32s(keep, load::<S>(&input[from..]), pads);
                    store::<S>(&mut copy[to..], row);
                } else {
                    copy_row(simd, &mut copy[to..to + n], &input[from..from + n]);
                }
            }
        }
    }
}

/// Each lane's index, to mask the lanes of a vector past a short row.
const LANE_INDEX: [f32; MAX_LANES] = [
    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
];

/// Where each vector of a flat run of `n` values (at least `lanes`) starts: every `lanes`
/// values, the last one ending at the run's end (over the one before it, where `lanes` does
/// not divide `n`), so that every load and store stays inside the run.
pub(crate) fn flat_starts(n: usize, lanes: usize) -> Vec<usize> {
    (0..n.div_ceil(lanes))
        .map(|v| (v * lanes).min(n - lanes))
        .collect()
}

/// A mask of a vector's first `n` lanes: those of a row of `n` values.
#[inline(always)]
pub(crate) fn first_lanes<S: pulp::Simd>(simd: S, n: usize) -> S::m32s {
    simd.less_than_f32s(load::<S>(&LANE_INDEX), simd.splat_f32s(n as f32))
}

/// `dst[j] = src[j · stride]` for every `j` (`src` holds them all).
#[inline(always)]
pub(crate) fn gather(dst: &mut [f32], src: &[f32], stride: usize) {
    let Some(last) = dst.len().checked_sub(1) else {
        return;
    };
    if stride == 2 && src.len() >= 2 * dst.len() {
        // In pairs, which the compiler turns into vector shuffles.
        for (d, pair) in dst.iter_mut().zip(src.chunks_exact(2)) {
            *d = pair[0];
        }
        return;
    }
    let src = &src[..last * stride + 1];
    for (j, d) in dst.iter_mut().enumerate() {
        *d = src[j * stride];
    }
}

/// Fills `row` with `pad` but for `first..end`, which it returns for the caller to write.
#[inline(always)]
fn pad_around(row: &mut [f32], first: usize, end: usize, pad: f32) -> &mut [f32] {
    let (before, rest) = row.split_at_mut(first);
    let (kept, after) = rest.split_at_mut(end - first);
    before.fill(pad);
    after.fill(pad);
    kept
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
