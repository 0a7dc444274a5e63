//! Buffers for layers' outputs, recycled from the inputs the executor is done with.
//!
//! A kernel's output is a fresh `Vec` that becomes the next layer's input tensor. Allocated
//! with `vec![0.0; n]`, every one is written twice: zeroed (by the allocator, or page by page
//! by the kernel on fresh memory), then computed. On MobileNetV2 that zeroing took 8 % of a
//! forward pass. Once a kernel has read an input that nobody else holds, the executor gives
//! its buffer back ([`give_back`]), and the next output of a similar size is taken from here
//! ([`take`]) as it is: the kernel overwrites every value.
//!
//! The pool is shared by every thread (a pass may move between rayon's workers) and bounded:
//! at most [`KEPT`] buffers and [`KEPT_BYTES`] in all, the largest kept.

use std::sync::{Mutex, MutexGuard};

use rayon::iter::ParallelExtend;

/// Buffers the pool keeps.
const KEPT: usize = 8;

/// Bytes the pool keeps in all; a larger buffer is freed. Every activation of the zoo's models
/// at batch 1 but VGG16's first ones fits several times; a server keeps no more than this
/// between requests.
const KEPT_BYTES: usize = 64 << 20;

/// How many times larger than the output a recycled buffer may be: a larger one is left for a
/// larger output (an output holds its buffer for as long as the tensor lives).
const MAX_SLACK: usize = 4;

/// Values past a recycled buffer's length from which every thread lengthens it with zeros,
/// rather than the calling one alone while the others wait. Machine A, two threads, in-pass:
/// MobileNetV2's 32 → 16 on 112×112 0.176 → 0.128 ms (its output 0.8 MB), GoogLeNet's stem
/// 1.15 → 1.03 and ResNet-50's 1.27 → 1.13 (3.2 MB).
const PARALLEL_ZEROS: usize = 64 << 10;

static POOL: Mutex<Pool> = Mutex::new(Pool(Vec::new()));

/// The pool, also after a thread panicked while holding it (its buffers are still buffers).
fn pool() -> MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A buffer of `len` values for a layer's output: the smallest recycled one that holds them
/// (and is at most [`MAX_SLACK`] times larger), else a new one. Its values are whatever its
/// last user left (zeros past that user's length, or in a new one): the kernel must write
/// every value. In debug builds they are all NaN, so that a kernel that leaves one unwritten
/// fails its tests.
pub(crate) fn take(len: usize) -> Vec<f32> {
    let recycled = pool().take(len);
    let Some(mut buf) = recycled else {
        let fill = if cfg!(debug_assertions) {
            f32::NAN
        } else {
            0.0
        };
        return vec![fill; len];
    };
    if buf.len() >= len {
        buf.truncate(len);
    } else if len - buf.len() >= PARALLEL_ZEROS && rayon::current_num_threads() > 1 {
        let zeros = len - buf.len();
        buf.par_extend(rayon::iter::repeat_n(0.0, zeros));
    } else {
        buf.resize(len, 0.0);
    }
    if cfg!(debug_assertions) {
        buf.fill(f32::NAN);
    }
    buf
}

/// Keeps `buf` for a later [`take`], unless the pool is full of larger ones.
pub(crate) fn give_back(buf: Vec<f32>) {
    pool().keep(buf);
}

/// Recycled buffers.
struct Pool(Vec<Vec<f32>>);

impl Pool {
    /// Takes a buffer of a capacity from `len` to [`MAX_SLACK`] times `len`: of those, the one
    /// that needs the fewest values added to hold `len` (a shorter one is lengthened with
    /// zeros, a write the kernel then repeats), then the smallest.
    fn take(&mut self, len: usize) -> Option<Vec<f32>> {
        let fits = len..=len.saturating_mul(MAX_SLACK);
        let buffers = &mut self.0;
        (0..buffers.len())
            .filter(|&i| fits.contains(&buffers[i].capacity()))
            .min_by_key(|&i| (len.saturating_sub(buffers[i].len()), buffers[i].capacity()))
            .map(|i| buffers.swap_remove(i))
    }

    /// Keeps `buf`, then frees the smallest buffers while more than [`KEPT`] or
    /// [`KEPT_BYTES`] are kept.
    fn keep(&mut self, buf: Vec<f32>) {
        let bytes = |b: &Vec<f32>| b.capacity() * size_of::<f32>();
        if buf.capacity() == 0 || bytes(&buf) > KEPT_BYTES {
            return;
        }
        let buffers = &mut self.0;
        buffers.push(buf);
        while buffers.len() > KEPT || buffers.iter().map(bytes).sum::<usize>() > KEPT_BYTES {
            let Some(smallest) = (0..buffers.len()).min_by_key(|&i| buffers[i].capacity()) else {
                break;
            };
            buffers.swap_remove(smallest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_buffer_serves_an_output_of_a_similar_size_only() {
        let mut pool = Pool(Vec::new());
        let buf = vec![1.0f32; 1000];
        let address = buf.as_ptr();
        pool.keep(buf);
        // Far smaller or larger: none fits.
        assert!(pool.take(10).is_none());
        assert!(pool.take(1001).is_none());
        // Smaller by less than the slack: the kept one.
        let again = pool.take(400).expect("fits");
        assert_eq!(again.as_ptr(), address);
        assert!(pool.take(400).is_none(), "taken once");
    }

    #[test]
    fn the_smallest_of_those_that_fit_is_taken() {
        let mut pool = Pool(Vec::new());
        for len in [4000, 1000, 2000] {
            pool.keep(Vec::with_capacity(len));
        }
        assert_eq!(pool.take(900).map(|b| b.capacity()), Some(1000));
        assert_eq!(pool.take(900).map(|b| b.capacity()), Some(2000));
    }

    #[test]
    fn a_buffer_that_needs_no_lengthening_comes_first() {
        let mut pool = Pool(Vec::new());
        let mut short = Vec::with_capacity(1000);
        short.resize(100, 0.0);
        pool.keep(short);
        pool.keep(vec![0.0; 1500]);
        // The 1500-value one holds 900 already; the smaller one would be zeroed up to 900.
        assert_eq!(pool.take(900).map(|b| b.len()), Some(1500));
        assert_eq!(pool.take(900).map(|b| b.capacity()), Some(1000));
        // Of two that must grow, the one that grows least.
        for held in [100, 600] {
            let mut buf = Vec::with_capacity(2000 - held);
            buf.resize(held, 0.0);
            pool.keep(buf);
        }
        assert_eq!(pool.take(900).map(|b| b.capacity()), Some(1400));
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_the_largest_buffers() {
        let mut pool = Pool(Vec::new());
        for len in 1..=3 * KEPT {
            pool.keep(Vec::with_capacity(len * 1000));
        }
        pool.keep(Vec::with_capacity(KEPT_BYTES / 4 + 1));
        let mut kept: Vec<usize> = pool.0.iter().map(Vec::capacity).collect();
        kept.sort();
        let largest: Vec<usize> = (2 * KEPT + 1..=3 * KEPT).map(|l| l * 1000).collect();
        assert_eq!(kept, largest);
    }

    #[test]
    fn a_taken_buffer_has_the_asked_length() {
        let len = 70_001;
        give_back(vec![0.0; len]);
        let buf = take(len / 2);
        assert_eq!(buf.len(), len / 2);
        assert!(cfg!(not(debug_assertions)) || buf.iter().all(|v| v.is_nan()));
        give_back(buf);
        assert_eq!(take(len).len(), len);
    }
}
