//! Which vector instructions the crate's own kernels run ([`VectorPath`]): the widest the CPU
//! has, unless capped, by the `CUTPOINT_VECTOR_PATH` environment variable (`avx512`, `avx2` or
//! `other`, read once, at the first kernel) or by [`VectorPath::cap`]. Capping lets a machine
//! with AVX-512 run, test and time the AVX2 path that most edge CPUs have.
//!
//! [`dispatch`] runs a `pulp` loop at the path's level; `gemm` runs its products there too.
//! Burn's own operations (the plain kernels, and the few layers the fast kernels leave to Burn)
//! pick their own level.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::ModelError;

/// The environment variable that caps the vector path.
pub const VECTOR_PATH_VAR: &str = "CUTPOINT_VECTOR_PATH";

/// The widest vector instructions the crate's own kernels use, widest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum VectorPath {
    /// AVX-512 (x86-64-v4): 16 floats a vector.
    Avx512,
    /// AVX2 with FMA (x86-64-v3): 8 floats a vector.
    Avx2,
    /// Anything else: SSE on an older x86-64 (scalar products), NEON or scalar elsewhere.
    Other,
}

/// The path in effect, as 1 + its index in [`VectorPath::ALL`]; 0 before the first look.
static CURRENT: AtomicU8 = AtomicU8::new(0);

impl VectorPath {
    /// Every path, widest first.
    pub const ALL: [VectorPath; 3] = [VectorPath::Avx512, VectorPath::Avx2, VectorPath::Other];

    /// The name `CUTPOINT_VECTOR_PATH` and the CLIs accept.
    pub fn name(self) -> &'static str {
        match self {
            VectorPath::Avx512 => "avx512",
            VectorPath::Avx2 => "avx2",
            VectorPath::Other => "other",
        }
    }

    /// The widest path this CPU runs.
    pub fn detected() -> VectorPath {
        #[cfg(target_arch = "x86_64")]
        {
            if pulp::x86::V4::try_new().is_some() {
                return VectorPath::Avx512;
            }
            if pulp::x86::V3::try_new().is_some() {
                return VectorPath::Avx2;
            }
        }
        VectorPath::Other
    }

    /// The path the kernels run now: [`VectorPath::detected`], capped by `CUTPOINT_VECTOR_PATH`
    /// (an unknown value there is ignored) or by the last [`VectorPath::cap`].
    pub fn current() -> VectorPath {
        match CURRENT.load(Ordering::Relaxed) {
            0 => {
                let from_env = std::env::var(VECTOR_PATH_VAR)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(VectorPath::Avx512);
                VectorPath::cap(from_env)
            }
            n => VectorPath::ALL[usize::from(n - 1)],
        }
    }

    /// Makes the kernels run no wider than `to` from now on, for every thread, and returns the
    /// path now in effect (narrower than `to` where the CPU lacks it).
    pub fn cap(to: VectorPath) -> VectorPath {
        let path = VectorPath::detected().max(to);
        let index = VectorPath::ALL
            .iter()
            .position(|&p| p == path)
            .unwrap_or(VectorPath::ALL.len() - 1);
        CURRENT.store(index as u8 + 1, Ordering::Relaxed);
        path
    }
}

impl fmt::Display for VectorPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for VectorPath {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<VectorPath, ModelError> {
        VectorPath::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ModelError::UnknownName {
                what: "vector path",
                name: s.to_string(),
                choices: VectorPath::ALL.map(VectorPath::name).join(", "),
            })
    }
}

/// Runs `op` compiled for the [`VectorPath::current`] level: its loops, inlined into one
/// function, use that level's vectors.
#[inline]
pub(crate) fn dispatch<Op: pulp::WithSimd>(op: Op) -> Op::Output {
    #[cfg(target_arch = "x86_64")]
    {
        use pulp::Simd;
        let path = VectorPath::current();
        if path == VectorPath::Avx512 {
            if let Some(v4) = pulp::x86::V4::try_new() {
                return Simd::vectorize(v4, op);
            }
        }
        if path <= VectorPath::Avx2 {
            if let Some(v3) = pulp::x86::V3::try_new() {
                return Simd::vectorize(v3, op);
            }
        }
        Simd::vectorize(pulp::Scalar::new(), op)
    }
    #[cfg(not(target_arch = "x86_64"))]
    pulp::Arch::new().dispatch(op)
}

/// The vector of `S`'s width at the start of `values` (which must hold that many), loaded
/// unaligned.
#[inline(always)]
pub(crate) fn load<S: pulp::Simd>(values: &[f32]) -> S::f32s {
    S::as_simd_f32s(&values[..S::F32_LANES]).0[0]
}

/// Stores `v` at the start of `to` (which must hold a vector of `S`'s width), unaligned.
#[inline(always)]
pub(crate) fn store<S: pulp::Simd>(to: &mut [f32], v: S::f32s) {
    S::as_mut_simd_f32s(&mut to[..S::F32_LANES]).0[0] = v;
}

/// Copies `src` into `dst`, of the same length. A row of a few vectors is copied a vector at a
/// time, the last one overlapping the one before (or partial, for a row shorter than a
/// vector), in a few instructions instead of a call to `memcpy`, which costs more than the
/// copy itself for the short rows of small feature maps.
#[inline(always)]
pub(crate) fn copy_row<S: pulp::Simd>(simd: S, dst: &mut [f32], src: &[f32]) {
    let (n, lanes) = (dst.len(), S::F32_LANES);
    let src = &src[..n];
    if n > 4 * lanes {
        dst.copy_from_slice(src);
        return;
    }
    if n < lanes {
        simd.partial_store_f32s(dst, simd.partial_load_f32s(src));
        return;
    }
    let mut at = 0;
    while at + lanes < n {
        store::<S>(&mut dst[at..], load::<S>(&src[at..]));
        at += lanes;
    }
    store::<S>(&mut dst[n - lanes..], load::<S>(&src[n - lanes..]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_paths_order_widest_first() {
        for path in VectorPath::ALL {
            assert_eq!(path.name().parse::<VectorPath>().expect("parses"), path);
        }
        assert!("sse".parse::<VectorPath>().is_err());
        assert!(VectorPath::Avx512 < VectorPath::Avx2 && VectorPath::Avx2 < VectorPath::Other);
    }
}
