//! The one call into `gemm` (the crate Burn's flex backend multiplies with), behind a safe
//! signature: every matrix is a slice with a row stride, and every index the product can touch
//! is checked against the slices before the call.
//!
//! This module, [`prefetch`](super::prefetch) and [`huge_pages`](super::huge_pages) hold the
//! crate's only `unsafe` code.
//! `gemm::gemm` takes raw pointers and strides; the checks below are exactly its
//! preconditions for row-major operands.

use super::ShapeError;
use super::vector::VectorPath;

/// A row-major matrix view: `rows × cols` elements, row `r` starting at `r * row_stride`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef<'a> {
    /// The elements; the view reads `data[r * row_stride + c]`.
    pub data: &'a [f32],
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Distance between the starts of two rows, in elements (at least `cols`).
    pub row_stride: usize,
}

impl MatRef<'_> {
    /// Whether every element of the view lies inside `data`.
    fn fits(&self) -> bool {
        fits(self.data.len(), self.rows, self.cols, self.row_stride)
    }
}

fn fits(len: usize, rows: usize, cols: usize, row_stride: usize) -> bool {
    if rows == 0 || cols == 0 {
        return true;
    }
    cols <= row_stride
        && (rows - 1)
            .checked_mul(row_stride)
            .and_then(|n| n.checked_add(cols))
            .is_some_and(|n| n <= len)
}

/// `dst = a × b`, or `dst += a × b` when `accumulate`, for `dst` of `a.rows × b.cols` with row
/// stride `dst_stride`. `parallel` lets gemm spread the product over rayon's threads.
pub(crate) fn gemm(
    dst: &mut [f32],
    dst_stride: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    accumulate: bool,
    parallel: bool,
) -> Result<(), ShapeError> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k {
        return Err(ShapeError(format!(
            "a {m}x{k} matrix cannot multiply a {}x{n} one",
            b.rows
        )));
    }
    if !a.fits() || !b.fits() || !fits(dst.len(), m, n, dst_stride) {
        return Err(ShapeError(format!(
            "a {m}x{k} by {k}x{n} product overruns its buffers"
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(dst_stride).take(m) {
                row[..n].fill(0.0);
            }
        }
        return Ok(());
    }
    let isize_of = |v: usize| isize::try_from(v).map_err(|_| ShapeError("stride too large".into()));
    let (dst_rs, a_rs, b_rs) = (
        isize_of(dst_stride)?,
        isize_of(a.row_stride)?,
        isize_of(b.row_stride)?,
    );
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    let path = VectorPath::current();
    // gemm's generic driver over the micro-kernels of `$k` (vectors of `$n` lanes), on `$simd`:
    // what `gemm::gemm` itself calls for f32 once it has chosen the kernels.
    #[cfg(target_arch = "x86_64")]
    macro_rules! generic {
        ($simd:expr, $k:ident, $n:literal) => {
            gemm_common::gemm::gemm_basic_generic::<
                _,
                f32,
                $n,
                { $k::MR_DIV_N * $n },
                { $k::NR },
                { $k::MR_DIV_N },
                { $k::H_M },
                { $k::H_N },
            >(
                $simd,
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                dst_rs,
                accumulate,
                a.data.as_ptr(),
                1,
                a_rs,
                b.data.as_ptr(),
                1,
                b_rs,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                |a, b, c| a * b + c,
                &$k::UKR,
                &$k::H_UKR,
                false,
                parallelism,
            )
        };
    }
    // SAFETY (the whole block): `fits` checked above that every element the product reads
    // (`a`: m rows of k at stride a_rs, `b`: k rows of n at stride b_rs) or writes (`dst`: m rows
    // of n at stride dst_rs) lies inside its slice; `dst` is borrowed mutably, so it overlaps
    // neither operand; column strides are 1 (row-major) and every dimension is non-zero. These
    // are the preconditions of `gemm::gemm` and of the `gemm_basic_generic` it calls.
    #[allow(unsafe_code)]
    unsafe {
        match path {
            // What `gemm::gemm` runs on a CPU without AVX-512, called directly: gemm picks its
            // kernels once per process, by CPU, so a capped path needs its own call. `V3`'s
            // `try_new` checks the CPU for AVX2 and FMA; `VectorPath::current` returned `Avx2`
            // only where it has them, and `other` otherwise.
            #[cfg(target_arch = "x86_64")]
            VectorPath::Avx2 => {
                use gemm_f32::microkernel::fma::f32 as kernels;
                let simd = gemm_common::simd::V3::try_new().ok_or_else(|| {
                    ShapeError("the CPU lacks the AVX2 the vector path asks for".into())
                })?;
                generic!(simd, kernels, 8)
            }
            #[cfg(target_arch = "x86_64")]
            VectorPath::Other => {
                use gemm_f32::microkernel::scalar::f32 as kernels;
                generic!(gemm_common::simd::Scalar, kernels, 1)
            }
            // gemm's own choice: AVX-512 where the CPU has it (the crate enables gemm's x86-v4),
            // and the only path off x86-64.
            _ => gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                dst_rs,
                accumulate,
                a.data.as_ptr(),
                1,
                a_rs,
                b.data.as_ptr(),
                1,
                b_rs,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                parallelism,
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn products_match_the_naive_loop_with_strides_and_accumulation() {
        let (m, k, n) = (7, 13, 9);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.5).collect();
        let want = naive(&a, &b, m, k, n);
        // The product lands in columns 3..12 of a 7 x 16 buffer prefilled with ones.
        let mut dst = vec![1.0; m * 16];
        let view = |data, rows, cols| MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
        };
        gemm(
            &mut dst[3..],
            16,
            view(&a, m, k),
            view(&b, k, n),
            true,
            true,
        )
        .expect("fits");
        for i in 0..m {
            for j in 0..16 {
                let expected = if (3..12).contains(&j) {
                    want[i * n + j - 3] + 1.0
                } else {
                    1.0
                };
                assert_eq!(dst[i * 16 + j], expected, "row {i} column {j}");
            }
        }
    }

    #[test]
    fn overrunning_views_are_refused() {
        let a = vec![0.0; 6];
        let b = vec![0.0; 6];
        let mut dst = vec![0.0; 3];
        let a = MatRef {
            data: &a,
            rows: 2,
            cols: 3,
            row_stride: 3,
        };
        let b = MatRef {
            data: &b,
            rows: 3,
            cols: 2,
            row_stride: 2,
        };
        assert!(gemm(&mut dst, 2, a, b, false, false).is_err());
        let mut dst = vec![0.0; 4];
        assert!(gemm(&mut dst, 2, a, b, false, false).is_ok());
        assert!(gemm(&mut dst, 2, b, b, false, false).is_err());
    }
}
