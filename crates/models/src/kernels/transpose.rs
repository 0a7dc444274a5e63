//! Copies of NCHW planes into channels-last rows (`[pixel, channel]`), eight channels by eight
//! pixels at a time: each block's eight row segments are read whole and written back as eight
//! runs of channels. Where the [`VectorPath`](super::VectorPath) allows AVX2, a block is
//! transposed in registers by AVX's shuffles (`pulp`'s safe wrappers); elsewhere, and for the
//! channels and pixels left over, value by value.

use super::vector::VectorPath;

/// Channels and pixels per block.
pub(crate) const BLOCK: usize = 8;

/// Where [`channels_last`] reads and writes.
pub(crate) struct Planes<'a> {
    /// The planes, `[channels, plane]` (each channel's plane `plane` values long).
    pub src: &'a [f32],
    /// Values in one channel's plane.
    pub plane: usize,
    /// Where in each plane the run of pixels starts.
    pub at: usize,
    /// Pixels in the run.
    pub pixels: usize,
    /// Channels, in `src` and in every pixel of `dst`.
    pub channels: usize,
}

/// Writes the run of `planes.pixels` pixels starting at `planes.at` of every channel's plane
/// into `dst`, pixel after pixel, each pixel's channels together (`dst[p · channels + c]`).
pub(crate) fn channels_last(planes: &Planes<'_>, dst: &mut [f32]) {
    let dst = &mut dst[..planes.pixels * planes.channels];
    #[cfg(target_arch = "x86_64")]
    if VectorPath::current() <= VectorPath::Avx2
        && let Some(simd) = pulp::x86::V3::try_new()
    {
        simd.vectorize(InRegisters { simd, planes, dst });
        return;
    }
    by_value(planes, dst, [0, 0]);
}

/// The values of `planes` from channel `c0` and pixel `p0` on that the blocks left out, one
/// at a time: every channel for pixels from `p0`, and channels from `c0` for the pixels
/// before it.
fn by_value(planes: &Planes<'_>, dst: &mut [f32], [c0, p0]: [usize; 2]) {
    let ch = planes.channels;
    for c in 0..ch {
        let src = &planes.src[c * planes.plane + planes.at..][..planes.pixels];
        let first = if c >= c0 { 0 } else { p0 };
        for (p, &value) in src.iter().enumerate().skip(first) {
            dst[p * ch + c] = value;
        }
    }
}

/// [`channels_last`] with every whole block transposed in AVX registers.
#[cfg(target_arch = "x86_64")]
struct InRegisters<'a, 'b> {
    simd: pulp::x86::V3,
    planes: &'a Planes<'b>,
    dst: &'a mut [f32],
}

#[cfg(target_arch = "x86_64")]
impl pulp::NullaryFnOnce for InRegisters<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        let InRegisters { simd, planes, dst } = self;
        let ch = planes.channels;
        let (whole_c, whole_p) = (ch / BLOCK * BLOCK, planes.pixels / BLOCK * BLOCK);
        for c0 in (0..whole_c).step_by(BLOCK) {
            for p0 in (0..whole_p).step_by(BLOCK) {
                let rows: [[f32; BLOCK]; BLOCK] = std::array::from_fn(|i| {
                    let at = (c0 + i) * planes.plane + planes.at + p0;
                    let mut row = [0.0; BLOCK];
                    row.copy_from_slice(&planes.src[at..at + BLOCK]);
                    row
                });
                for (j, column) in transpose(simd, rows).iter().enumerate() {
                    let at = (p0 + j) * ch + c0;
                    dst[at..at + BLOCK].copy_from_slice(column);
                }
            }
        }
        // The channels past the last whole block, for every pixel, and the pixels past the
        // last whole block of the others.
        by_value(planes, dst, [whole_c, whole_p]);
    }
}

/// The transpose of an 8×8 block: row `j` of the result is column `j` of `rows`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn transpose(simd: pulp::x86::V3, rows: [[f32; BLOCK]; BLOCK]) -> [[f32; BLOCK]; BLOCK] {
    transpose_vectors(simd, rows.map(pulp::cast)).map(pulp::cast)
}

/// [`transpose`] of eight vectors: vector `j` of the result holds lane `j` of every vector of
/// `r`, in order.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn transpose_vectors(
    simd: pulp::x86::V3,
    r: [std::arch::x86_64::__m256; BLOCK],
) -> [std::arch::x86_64::__m256; BLOCK] {
    let avx = simd.avx;
    // Pairs of rows interleaved, then pairs of pairs, then the 128-bit halves swapped.
    let t0 = avx._mm256_unpacklo_ps(r[0], r[1]);
    let t1 = avx._mm256_unpackhi_ps(r[0], r[1]);
    let t2 = avx._mm256_unpacklo_ps(r[2], r[3]);
    let t3 = avx._mm256_unpackhi_ps(r[2], r[3]);
    let t4 = avx._mm256_unpacklo_ps(r[4], r[5]);
    let t5 = avx._mm256_unpackhi_ps(r[4], r[5]);
    let t6 = avx._mm256_unpacklo_ps(r[6], r[7]);
    let t7 = avx._mm256_unpackhi_ps(r[6], r[7]);
    let s0 = avx._mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = avx._mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = avx._mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = avx._mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = avx._mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = avx._mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = avx._mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = avx._mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        avx._mm256_permute2f128_ps::<0x20>(s0, s4),
        avx._mm256_permute2f128_ps::<0x20>(s1, s5),
        avx._mm256_permute2f128_ps::<0x20>(s2, s6),
        avx._mm256_permute2f128_ps::<0x20>(s3, s7),
        avx._mm256_permute2f128_ps::<0x31>(s0, s4),
        avx._mm256_permute2f128_ps::<0x31>(s1, s5),
        avx._mm256_permute2f128_ps::<0x31>(s2, s6),
        avx._mm256_permute2f128_ps::<0x31>(s3, s7),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `channels` planes of `plane` distinct values each.
    fn planes(channels: usize, plane: usize) -> Vec<f32> {
        (0..channels * plane).map(|i| i as f32).collect()
    }

    #[test]
    fn every_value_lands_at_its_pixel_and_channel_in_registers_and_value_by_value() {
        // Whole blocks, a channel and pixel remainder, fewer than a block of either.
        for (channels, plane, at, pixels) in [(16, 40, 3, 24), (13, 30, 1, 21), (5, 9, 2, 6)] {
            let src = planes(channels, plane);
            let expected: Vec<f32> = (0..pixels)
                .flat_map(|p| (0..channels).map(move |c| (c * plane + at + p) as f32))
                .collect();
            let planes = Planes {
                src: &src,
                plane,
                at,
                pixels,
                channels,
            };
            let mut dst = vec![f32::NAN; pixels * channels];
            by_value(&planes, &mut dst, [0, 0]);
            assert_eq!(dst, expected, "{channels}x{pixels} value by value");
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = pulp::x86::V3::try_new() {
                let mut dst = vec![f32::NAN; pixels * channels];
                simd.vectorize(InRegisters {
                    simd,
                    planes: &planes,
                    dst: &mut dst,
                });
                assert_eq!(dst, expected, "{channels}x{pixels} in registers");
            }
            let mut dst = vec![f32::NAN; pixels * channels];
            channels_last(&planes, &mut dst);
            assert_eq!(dst, expected, "{channels}x{pixels} on the current path");
        }
    }
}
