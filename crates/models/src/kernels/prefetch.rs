//! A hint that asks the CPU to bring a cache line into its second-level cache ahead of use.
//!
//! A kernel whose weight is read once per layer from memory (a 3×3 layer on a 7×7 map reads
//! 9.4 MB for 49 pixels) otherwise waits on every block of it; asking for the next block while
//! the current one is multiplied overlaps the two. Safe Rust has no such hint, so this module
//! and [`gemm`](super::gemm) hold the crate's only `unsafe` code: one block, behind a function
//! that takes a slice and an index and touches nothing outside the slice.

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

#[cfg(test)]
mod tests {
    use super::*;

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
