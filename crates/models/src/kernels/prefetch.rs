//! A hint that asks the CPU to bring a cache line into its second-level cache ahead of use.
//!
//! A kernel whose weight is read once per layer from memory (a 3×3 layer on a 7×7 map reads
//! 9.4 MB for 49 pixels) otherwise waits on every block of it; asking for the next block while
//! the current one is multiplied overlaps the two. The direct kernel asks the same way for the
//! output lines its next tiles will write. Safe Rust has no such hint, so this module,
//! [`gemm`](super::gemm) and [`huge_pages`](super::huge_pages) hold the crate's only `unsafe`
//! code: here one block, behind a function that takes a slice and an index and touches nothing
//! outside the slice.

/// Asks the CPU to bring the cache line holding `data[at]` into its second-level cache. Does
/// nothing when `at` is past the end of `data`, or off x86-64. Never changes memory and never
/// faults: a prefetch is a hint the CPU may drop.
#[inline(always)]
pub(crate) fn prefetch(data: &[f32], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(value) = data.get(at) {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        let address: *const f32 = value;
        // SAFETY: `_mm_prefetch` reads and writes no memory and cannot fault, whatever the
        // address; this one lies inside a live slice all the same. The SSE it needs is part of
        // every x86-64 CPU.
        #[allow(unsafe_code)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T1>(address.cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, at);
}

/// A share of data that a kernel will read next, asked for a little at each step of a loop
/// over `rows` rows: from `start`, `stride` values a row, a cache line at a time.
#[derive(Clone, Copy)]
pub(crate) struct Ahead<'a> {
    data: &'a [f32],
    start: usize,
    stride: usize,
}

impl<'a> Ahead<'a> {
    /// Nothing to ask for.
    pub(crate) const NONE: Ahead<'static> = Ahead {
        data: &[],
        start: 0,
        stride: 0,
    };

    /// Part `part` of `parts` equal parts of `data`, spread over a loop of `rows` rows.
    pub(crate) fn part(data: &'a [f32], part: usize, parts: usize, rows: usize) -> Self {
        if data.is_empty() || rows == 0 || part >= parts {
            return Self::NONE;
        }
        let share = data.len().div_ceil(parts);
        Ahead {
            data,
            start: part * share,
            stride: share.div_ceil(rows),
        }
    }

    /// Whether there is nothing to ask for.
    #[inline(always)]
    pub(crate) fn is_none(&self) -> bool {
        self.stride == 0
    }

    /// Asks for row `row`'s values.
    #[inline(always)]
    pub(crate) fn row(&self, row: usize) {
        let at = self.start + row * self.stride;
        for line in (0..self.stride).step_by(LINE) {
            prefetch(self.data, at + line);
        }
    }
}

/// Values per cache line.
pub(crate) const LINE: usize = 16;

/// How far ahead of its loads a loop that streams a weight from memory asks for it (3 KiB): the
/// hardware prefetchers alone keep too few of the stream's lines in flight to draw the memory's
/// bandwidth on one core. A distance of a whole number of 4 KiB pages (4 or 8 KiB) gains
/// nothing: the line asked for then has the low twelve address bits of the line being loaded.
/// Machine A, AlexNet's linear layers in-pass (`linear.rs`), one thread: 9216 → 4096 10.4 →
/// 8.4 ms, 10.0 at 4 KiB.
pub(crate) const STREAM_AHEAD: usize = 768;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_data_row_by_row() {
        let data = vec![0.0f32; 1000];
        // 3 parts of 334 values over 10 rows: 34 values a row, from 0, 334 and 668.
        for part in 0..3 {
            let ahead = Ahead::part(&data, part, 3, 10);
            assert_eq!((ahead.start, ahead.stride), (part * 334, 34));
            // The rows reach the part's end.
            assert!(ahead.start + 10 * ahead.stride >= (part + 1) * 334);
        }
        // No part past the last, of no data, or over no rows.
        for (data, part, parts, rows) in [
            (&data[..], 3, 3, 10),
            (&[][..], 0, 1, 10),
            (&data[..], 0, 1, 0),
        ] {
            let ahead = Ahead::part(data, part, parts, rows);
            assert_eq!(ahead.stride, 0);
        }
    }

    #[test]
    fn any_index_is_safe_to_ask_for() {
        let data = vec![1.0f32; 100];
        for at in [0, 15, 16, 99, 100, usize::MAX] {
            prefetch(&data, at);
        }
        prefetch(&[], 0);
        assert_eq!(data, vec![1.0f32; 100]);
    }
}
