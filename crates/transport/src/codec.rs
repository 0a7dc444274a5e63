//! Boundary encodings: how the f32 values of a [`WireTensor`](crate::WireTensor) travel.
//!
//! | codec            | payload                                          | error per value `v` |
//! |------------------|--------------------------------------------------|---------------------|
//! | `raw`            | f32 little-endian, 4 bytes per value             | none: bit-exact |
//! | `lossless`       | the `raw` bytes through the compressor           | none: bit-exact (NaN payloads, −0.0) |
//! | `f16`            | IEEE binary16 little-endian, 2 bytes per value   | ≤ 2⁻¹¹·abs(v) for abs(v) ≥ 2⁻¹⁴, ≤ 2⁻²⁵ below |
//! | `f16+lossless`   | the `f16` bytes through the compressor           | as `f16` |
//! | `int8`           | one level `q` in 0..=255 per value, an [`Affine`] per channel | ≤ scale/2, plus f32 rounding |
//! | `int8+lossless`  | the `int8` levels through the compressor         | as `int8` |
//!
//! The encoders refuse what they cannot represent, so that the caller can fall back to another
//! codec: `f16` refuses a non-finite value or one beyond ±65504 (f16's largest finite value;
//! nothing silently becomes infinite), `int8` refuses a non-finite value.
//!
//! **int8.** The channel axis is dimension 1 when the rank is at least 3 (NCHW activations);
//! otherwise the whole tensor is one channel. Each channel stores `min` and
//! `scale = (max − min)/255` as f32; a value is sent as `q = round((v − min)/scale)` and comes
//! back as `v' = min + scale·q` (computed in f32). A constant channel has `scale = 0` and every
//! value comes back as `min`. The decoder checks that `min` is finite, that `scale` is finite
//! and not negative, and that `min + 255·scale` is finite, so a decoded value is always finite
//! (the encoder refuses a channel whose range is too wide for that, near ±f32::MAX). Beyond
//! `scale/2`, the bound allows the rounding of `scale` to f32 (at most `2⁻¹⁶·scale`) and the f32
//! rounding of `min + scale·q`; the tests check `scale/2 + 2⁻²²·(abs(min) + 255·scale)`.
//!
//! **Measured** by `benches/codecs.rs` (criterion, `--quick`, on this project's 2-core machine
//! shared with other builds), on tensors made by seeded He-initialised convolutions of a smooth
//! 224×224 picture normalised as torchvision does (the bench's doc says how): compression
//! ratio against raw f32, then MB/s of raw f32 to encode / to decode.
//!
//! | tensor                            | lossless | f16  | f16+lossless | int8 | int8+lossless |
//! |-----------------------------------|----------|------|--------------|------|---------------|
//! | AlexNet conv1+ReLU, 64×55×55, 50% zeros | 2.26 | 2.00 | 4.80       | 4.00 | 7.57 |
//! | ResNet-18 conv1+ReLU+pool, 64×56×56, 50% zeros | 2.41 | 2.00 | 4.93 | 4.00 | 7.67 |
//! | ResNet-18 3×3 conv+BN+ReLU, 64×56×56, 72% zeros | 3.93 | 2.00 | 7.83 | 4.00 | 13.3 |
//! | the same before the ReLU, dense   | 1.25     | 2.00 | 2.56         | 4.00 | 4.18 |
//! | the normalised picture, 3×224×224 | 4.35     | 2.00 | 3.97         | 4.00 | 4.49 |
//! | encode / decode, MB/s             | 280–650 / 780–3800 | 11000–12800 / 14700–15700 | 380–760 / 1900–4100 | 2400–2600 / 21700–22200 | 1100–1600 / 3900–6300 |
//!
//! `raw` encodes at 28–31 GB/s and decodes at 9–11 GB/s. The largest errors seen there: `f16`
//! 2.0·10⁻³ (values up to about 8), `int8` 1.3·10⁻² (the dense tensor, the widest channels).
//!
//! **The compressor: zstd, level 1, with a byte shuffle when it pays.** Chosen by measurement
//! (release build, a throwaway harness on the same kind of tensors, plus a ReLU at 92% zeros
//! and i.i.d. values with 60% zeros, which have no spatial structure). Compression ratio, then
//! MB/s of raw f32 to encode / to decode, each with the shuffle decided per tensor as below:
//!
//! | data                        | lz4_flex 0.14          | zstd 0.14, level 1     | snap 1.1               |
//! |-----------------------------|------------------------|------------------------|------------------------|
//! | AlexNet ReLU, 50% zeros     | 2.02, 620 / 2000       | 2.27, 470 / 2900       | 2.05, 880 / 1500       |
//! | ResNet pool, 51% zeros      | 2.15, 760 / 1900       | 2.50, 490 / 2000       | 2.18, 830 / 1800       |
//! | ReLU, 72% zeros             | 3.45, 550 / 1100       | 4.10, 500 / 2500       | 3.38, 940 / 1700       |
//! | ReLU, 92% zeros             | 10.5, 2100 / 1500      | 12.8, 1400 / 7700      | 7.90, 1700 / 1600      |
//! | i.i.d., 60% zeros           | 1.76, 290 / 2100       | 2.13, 290 / 1000       | 1.77, 390 / 1200       |
//! | dense pre-activation        | 1.21, 1500 / 4900      | 1.26, 620 / 3200       | 1.21, 1400 / 3000      |
//! | normalised picture          | 2.75, 450 / 2700       | 4.44, 230 / 840        | 2.29, 540 / 1100       |
//!
//! zstd's ratio is 12–21% better on activations and 61% better on a picture, and it is fast
//! enough by two orders of magnitude for the links this project splits for (1–20 Mbit/s, that
//! is 0.1–2.5 MB/s), where fewer bytes is what counts: on the 774 KB AlexNet ReLU output at
//! 18.88 Mbit/s it sends 42 KB less than lz4_flex, 18 ms, for 0.4 ms more encoding (and less
//! decoding). lz4_flex would win only on links faster than about 800 Mbit/s (80 Mbit/s from an
//! edge ten times slower than this machine). Levels 2–3 cost up to twice the time for under 1%
//! more; level −1 comes out up to 7% larger. The price is a C build: `zstd-sys` compiles zstd's sources in
//! 32 s cold on 2 cores (29 s of CPU; lz4_flex and snap build in about 1 s), without zstd's
//! legacy formats and dictionary builder.
//!
//! The byte shuffle (bytes 0 of all elements, then bytes 1, …) pays on dense floats
//! (1.08 → 1.26 with zstd: the sign and exponent bytes repeat) but costs on the picture
//! (4.44 → 1.51: a normalised u8 image holds 256 distinct floats per channel, so whole 4-byte
//! patterns repeat) and on unstructured sparsity (2.13 → 2.03). So the encoder decides per
//! tensor: it compresses a sample of 16 windows of 4 KiB both ways and keeps the layout that
//! came out smaller (a tensor of up to 128 KiB is compressed whole both ways); on every tensor
//! above this picked the better of the two. A compressed payload is one layout byte
//! (0: elements in order, 1: shuffled; int8 levels are never shuffled) and one zstd frame.
//!
//! **Decoding is bounded.** Rank and element count are checked against the
//! [`Limits`](crate::Limits) first, and the int8 parameters and the payload's length against the
//! shape; a compressed payload longer than zstd's worst case for the declared size is refused
//! before decompression; the decompressed size must be exactly what the shape and codec imply
//! (a stream that would produce more fails, one that produces less is refused). A decode
//! allocates at most the decompressed bytes plus the f32 output.

use std::fmt;
use std::str::FromStr;

use half::f16;
use half::slice::HalfFloatSliceExt;
use serde::{Deserialize, Serialize};

use crate::tensor::TensorError;

/// How a tensor's f32 values are encoded on the wire. See the [module](self) documentation for
/// each codec's payload and error bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Codec {
    /// f32 little-endian, bit-exact.
    #[serde(rename = "raw")]
    Raw,
    /// f32 through the lossless compressor (zstd, byte-shuffled when it pays), bit-exact.
    #[serde(rename = "lossless")]
    Lossless,
    /// IEEE half precision.
    #[serde(rename = "f16")]
    F16,
    /// IEEE half precision through the lossless compressor.
    #[serde(rename = "f16+lossless")]
    F16Lossless,
    /// Per-channel affine 8-bit levels.
    #[serde(rename = "int8")]
    Int8,
    /// Per-channel affine 8-bit levels through the lossless compressor.
    #[serde(rename = "int8+lossless")]
    Int8Lossless,
}

impl Codec {
    /// Every codec, `raw` first, then by increasing loss.
    pub const ALL: [Codec; 6] = [
        Codec::Raw,
        Codec::Lossless,
        Codec::F16,
        Codec::F16Lossless,
        Codec::Int8,
        Codec::Int8Lossless,
    ];

    /// The codec's name: `raw`, `lossless`, `f16`, `f16+lossless`, `int8` or `int8+lossless`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Raw => "raw",
            Codec::Lossless => "lossless",
            Codec::F16 => "f16",
            Codec::F16Lossless => "f16+lossless",
            Codec::Int8 => "int8",
            Codec::Int8Lossless => "int8+lossless",
        }
    }

    /// The loss the codec introduces: the smallest [`Loss`] budget that allows it.
    pub fn loss(self) -> Loss {
        match self {
            Codec::Raw | Codec::Lossless => Loss::Exact,
            Codec::F16 | Codec::F16Lossless => Loss::F16,
            Codec::Int8 | Codec::Int8Lossless => Loss::Int8,
        }
    }

    /// Whether the payload goes through the lossless compressor.
    pub fn is_compressed(self) -> bool {
        matches!(
            self,
            Codec::Lossless | Codec::F16Lossless | Codec::Int8Lossless
        )
    }

    /// Bytes per element before compression: 4 (f32), 2 (f16) or 1 (int8).
    pub fn element_bytes(self) -> usize {
        match self.loss() {
            Loss::Exact => 4,
            Loss::F16 => 2,
            Loss::Int8 => 1,
        }
    }

    /// Whether the tensor carries per-channel [`Affine`] parameters (the int8 codecs).
    pub fn has_channels(self) -> bool {
        self.loss() == Loss::Int8
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A codec name that [`Codec::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown codec `{given}`; the codecs are raw, lossless, f16, f16+lossless, int8 and int8+lossless"
)]
pub struct ParseCodecError {
    /// The name given.
    pub given: String,
}

impl FromStr for Codec {
    type Err = ParseCodecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Codec::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| ParseCodecError {
                given: s.to_string(),
            })
    }
}

/// The loss a user accepts at the boundary: a budget. `Exact < F16 < Int8`; a budget allows
/// every codec whose own loss is no greater.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
pub enum Loss {
    /// Bit-exact values only: `raw` and `lossless`.
    #[default]
    #[serde(rename = "exact")]
    Exact,
    /// Also half precision: `f16` and `f16+lossless`.
    #[serde(rename = "f16")]
    F16,
    /// Also per-channel 8-bit levels: `int8` and `int8+lossless`.
    #[serde(rename = "int8")]
    Int8,
}

impl Loss {
    /// Every budget, from the strictest.
    pub const ALL: [Loss; 3] = [Loss::Exact, Loss::F16, Loss::Int8];

    /// The budget's name: `exact`, `f16` or `int8`.
    pub fn name(self) -> &'static str {
        match self {
            Loss::Exact => "exact",
            Loss::F16 => "f16",
            Loss::Int8 => "int8",
        }
    }

    /// Whether this budget accepts `codec`'s loss.
    pub fn allows(self, codec: Codec) -> bool {
        codec.loss() <= self
    }

    /// The codecs this budget allows, `raw` first, in [`Codec::ALL`]'s order.
    pub fn codecs(self) -> Vec<Codec> {
        Codec::ALL.into_iter().filter(|&c| self.allows(c)).collect()
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A loss budget name that [`Loss::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown loss budget `{given}`; the budgets are exact, f16 and int8")]
pub struct ParseLossError {
    /// The name given.
    pub given: String,
}

impl FromStr for Loss {
    type Err = ParseLossError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Loss::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| ParseLossError {
                given: s.to_string(),
            })
    }
}

/// One int8 channel's parameters: level `q` stands for `min + scale·q`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Affine {
    /// The channel's smallest value, level 0. Finite.
    pub min: f32,
    /// The step between levels, `(max − min)/255`; finite and not negative, 0 for a constant
    /// channel. `min + 255·scale` must be finite too.
    pub scale: f32,
}

impl Affine {
    /// Whether the parameters are usable: every level decodes to a finite value.
    pub fn is_valid(self) -> bool {
        self.min.is_finite()
            && self.scale.is_finite()
            && self.scale >= 0.0
            && (self.min + self.scale * 255.0).is_finite()
    }
}

/// The most int8 channels a tensor may have. Deserialising refuses a longer parameter list
/// before allocating it, and the encoder refuses a tensor with more channels.
pub const HARD_MAX_CHANNELS: usize = 1 << 16;

/// The largest finite f16 value.
const F16_MAX: f32 = 65504.0;

/// The zstd level: the measurements above found levels 2–3 slower for under 1% more.
const ZSTD_LEVEL: i32 = 1;

/// The shuffle is decided on `SAMPLE_WINDOWS` windows of `SAMPLE_WINDOW` bytes.
const SAMPLE_WINDOWS: usize = 16;
const SAMPLE_WINDOW: usize = 4096;

/// Layout byte of a compressed payload: element bytes in order.
const LAYOUT_PLAIN: u8 = 0;
/// Layout byte of a compressed payload: byte-shuffled (all bytes 0, then all bytes 1, …).
const LAYOUT_SHUFFLED: u8 = 1;

/// The int8 channel count of a tensor of this shape: dimension 1 when the rank is at least 3,
/// else 1.
pub fn int8_channels(shape: &[u64]) -> u64 {
    if shape.len() >= 3 { shape[1] } else { 1 }
}

/// `(outer, channels, inner)` for a shape whose element count fits in memory: values of
/// channel `c` are the blocks `[(o·channels + c)·inner, +inner)` for every `o < outer`. The
/// products saturate: with a zero dimension, a partial product may overflow (`[0, 1, 2⁴⁰,
/// 2⁴⁰]`), and then either `outer` or `channels` is 0 and `inner` is never used.
fn layout(shape: &[usize]) -> (usize, usize, usize) {
    let product = |dims: &[usize]| dims.iter().fold(1usize, |a, &d| a.saturating_mul(d));
    if shape.len() >= 3 {
        (shape[0], shape[1], product(&shape[2..]))
    } else {
        (1, 1, product(shape))
    }
}

/// The longest compressed payload accepted for `raw_len` uncompressed bytes: the layout byte
/// and zstd's worst case (`ZSTD_COMPRESSBOUND`).
pub fn max_compressed_len(raw_len: u64) -> u64 {
    const SMALL: u64 = 128 << 10;
    let margin = if raw_len < SMALL {
        (SMALL - raw_len) >> 11
    } else {
        0
    };
    1 + raw_len.saturating_add(raw_len >> 8).saturating_add(margin)
}

/// f32 values as little-endian bytes.
pub(crate) fn f32_bytes(values: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; values.len() * 4];
    for (dst, v) in out.chunks_exact_mut(4).zip(values) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
    out
}

/// Little-endian f32 bytes as values, in order or byte-shuffled; `bytes.len()` is a multiple
/// of 4.
pub(crate) fn f32_values(bytes: &[u8], shuffled: bool) -> Vec<f32> {
    if !shuffled {
        return bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
    }
    let n = bytes.len() / 4;
    let (p0, rest) = bytes.split_at(n);
    let (p1, rest) = rest.split_at(n);
    let (p2, p3) = rest.split_at(n);
    p0.iter()
        .zip(p1)
        .zip(p2)
        .zip(&p3[..n])
        .map(|(((&a, &b), &c), &d)| f32::from_le_bytes([a, b, c, d]))
        .collect()
}

/// Values as IEEE half precision, little-endian; refuses a value beyond f16's finite range.
pub(crate) fn f16_encode(values: &[f32]) -> Result<Vec<u8>, TensorError> {
    const CHUNK: usize = 1024;
    let mut out = vec![0u8; values.len() * 2];
    let mut halves = [f16::ZERO; CHUNK];
    for (k, (src, dst)) in values
        .chunks(CHUNK)
        .zip(out.chunks_mut(CHUNK * 2))
        .enumerate()
    {
        if !src.iter().fold(true, |ok, &v| ok & fits_f16(v)) {
            let i = src.iter().position(|&v| !fits_f16(v)).unwrap_or(0);
            return Err(TensorError::Unrepresentable {
                codec: Codec::F16,
                index: (k * CHUNK + i) as u64,
                value: src[i],
            });
        }
        let halves = &mut halves[..src.len()];
        halves.convert_from_f32_slice(src);
        for (d, h) in dst.chunks_exact_mut(2).zip(halves.iter()) {
            d.copy_from_slice(&h.to_le_bytes());
        }
    }
    Ok(out)
}

/// Whether `v` is finite and within f16's finite range (NaN fails the comparison).
fn fits_f16(v: f32) -> bool {
    v.abs() <= F16_MAX
}

/// Little-endian IEEE half-precision bytes, in order or byte-shuffled, as f32 values;
/// `bytes.len()` is even.
pub(crate) fn f16_decode(bytes: &[u8], shuffled: bool) -> Vec<f32> {
    const CHUNK: usize = 1024;
    let n = bytes.len() / 2;
    let mut out = vec![0f32; n];
    let mut halves = [f16::ZERO; CHUNK];
    let (lo, hi) = bytes.split_at(n);
    for (k, dst) in out.chunks_mut(CHUNK).enumerate() {
        let halves = &mut halves[..dst.len()];
        let start = k * CHUNK;
        if shuffled {
            let pairs = lo[start..].iter().zip(&hi[start..]);
            for (h, (&a, &b)) in halves.iter_mut().zip(pairs) {
                *h = f16::from_le_bytes([a, b]);
            }
        } else {
            for (h, b) in halves.iter_mut().zip(bytes[2 * start..].chunks_exact(2)) {
                *h = f16::from_le_bytes([b[0], b[1]]);
            }
        }
        halves.convert_to_f32_slice(dst);
    }
    out
}

/// Per-channel int8: each channel's [`Affine`] and one level per value.
pub(crate) fn int8_encode(
    shape: &[usize],
    values: &[f32],
) -> Result<(Vec<Affine>, Vec<u8>), TensorError> {
    let (outer, channels, inner) = layout(shape);
    if channels > HARD_MAX_CHANNELS {
        return Err(TensorError::TooManyChannels {
            channels: channels as u64,
            max: HARD_MAX_CHANNELS,
        });
    }
    // Without values every block is empty: walking a huge outer dimension over them would
    // take seconds for nothing (a shape such as [3·10⁹, 2, 0, 87]).
    let outer = if inner == 0 { 0 } else { outer };
    let block = |o: usize, c: usize| &values[(o * channels + c) * inner..][..inner];
    let mut affines = Vec::with_capacity(channels);
    let mut ranges = Vec::with_capacity(channels);
    for c in 0..channels {
        let (mut lo, mut hi, mut bad) = (f32::INFINITY, f32::NEG_INFINITY, 0.0f32);
        for o in 0..outer {
            for &v in block(o, c) {
                lo = if v < lo { v } else { lo };
                hi = if v > hi { v } else { hi };
                // Stays 0 while every value is finite; NaN once one is not (∞·0 is NaN).
                bad += v * 0.0;
            }
        }
        if bad != 0.0 {
            let index = (0..outer)
                .flat_map(|o| (0..inner).map(move |i| (o * channels + c) * inner + i))
                .find(|&i| !values[i].is_finite())
                .unwrap_or(0);
            return Err(TensorError::Unrepresentable {
                codec: Codec::Int8,
                index: index as u64,
                value: values[index],
            });
        }
        let affine = if lo > hi {
            // An empty channel.
            Affine {
                min: 0.0,
                scale: 0.0,
            }
        } else {
            Affine {
                min: lo,
                scale: ((f64::from(hi) - f64::from(lo)) / 255.0) as f32,
            }
        };
        if !affine.is_valid() {
            return Err(TensorError::Int8Range {
                channel: c as u64,
                min: lo,
                max: hi,
            });
        }
        affines.push(affine);
        ranges.push(f64::from(hi) - f64::from(lo));
    }
    let mut levels = vec![0u8; values.len()];
    for o in 0..outer {
        for (c, (affine, &range)) in affines.iter().zip(&ranges).enumerate() {
            let start = (o * channels + c) * inner;
            let min = f64::from(affine.min);
            // The exact step's inverse, so that the rounding of `scale` to f32 is not amplified.
            let inv = if range > 0.0 { 255.0 / range } else { 0.0 };
            for (q, &v) in levels[start..start + inner].iter_mut().zip(block(o, c)) {
                // v ≥ min, so adding 0.5 and truncating rounds to nearest; `as` saturates.
                *q = ((f64::from(v) - min) * inv + 0.5) as u8;
            }
        }
    }
    Ok((affines, levels))
}

/// Int8 levels back to values, given a shape that agrees with `levels.len()` and one valid
/// [`Affine`] per channel (checked by [`WireTensor::validate`](crate::WireTensor::validate)).
pub(crate) fn int8_decode(shape: &[usize], affines: &[Affine], levels: &[u8]) -> Vec<f32> {
    let (_, channels, inner) = layout(shape);
    let mut out = vec![0f32; levels.len()];
    if inner == 0 || channels == 0 {
        return out;
    }
    for (k, (dst, src)) in out
        .chunks_exact_mut(inner)
        .zip(levels.chunks_exact(inner))
        .enumerate()
    {
        let Some(&Affine { min, scale }) = affines.get(k % channels) else {
            break;
        };
        for (d, &q) in dst.iter_mut().zip(src) {
            *d = min + scale * f32::from(q);
        }
    }
    out
}

fn compression_error(e: std::io::Error) -> TensorError {
    TensorError::Compression {
        reason: e.to_string(),
    }
}

/// Bytes 0 of every `width`-byte element, then bytes 1, …
fn shuffle(bytes: &[u8], width: usize) -> Vec<u8> {
    let n = bytes.len() / width;
    let mut out = vec![0u8; bytes.len()];
    match width {
        2 => {
            let (p0, p1) = out.split_at_mut(n);
            for ((c, a), b) in bytes.chunks_exact(2).zip(p0).zip(p1) {
                (*a, *b) = (c[0], c[1]);
            }
        }
        4 => {
            let (p0, rest) = out.split_at_mut(n);
            let (p1, rest) = rest.split_at_mut(n);
            let (p2, p3) = rest.split_at_mut(n);
            for ((((c, a), b), d), e) in bytes.chunks_exact(4).zip(p0).zip(p1).zip(p2).zip(p3) {
                let w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                (*a, *b, *d, *e) = (w as u8, (w >> 8) as u8, (w >> 16) as u8, (w >> 24) as u8);
            }
        }
        _ => {
            for (i, c) in bytes.chunks_exact(width).enumerate() {
                for (b, &byte) in c.iter().enumerate() {
                    out[b * n + i] = byte;
                }
            }
        }
    }
    out
}

/// The inverse of [`shuffle`].
#[cfg(test)]
fn unshuffle(planes: &[u8], width: usize) -> Vec<u8> {
    let n = planes.len() / width;
    let mut out = vec![0u8; planes.len()];
    match width {
        2 => {
            let (p0, p1) = planes.split_at(n);
            for ((c, a), b) in out.chunks_exact_mut(2).zip(p0).zip(p1) {
                c.copy_from_slice(&[*a, *b]);
            }
        }
        4 => {
            let (p0, rest) = planes.split_at(n);
            let (p1, rest) = rest.split_at(n);
            let (p2, p3) = rest.split_at(n);
            for ((((c, a), b), d), e) in out.chunks_exact_mut(4).zip(p0).zip(p1).zip(p2).zip(p3) {
                c.copy_from_slice(&[*a, *b, *d, *e]);
            }
        }
        _ => {
            for (i, c) in out.chunks_exact_mut(width).enumerate() {
                for (b, byte) in c.iter_mut().enumerate() {
                    *byte = planes[b * n + i];
                }
            }
        }
    }
    out
}

/// One compressed payload: the layout byte, then a zstd frame of `src`.
fn frame(
    zstd: &mut zstd::bulk::Compressor<'_>,
    layout: u8,
    src: &[u8],
) -> Result<Vec<u8>, TensorError> {
    let mut out = vec![0u8; 1 + zstd::zstd_safe::compress_bound(src.len())];
    out[0] = layout;
    let n = zstd
        .compress_to_buffer(src, &mut out[1..])
        .map_err(compression_error)?;
    out.truncate(1 + n);
    Ok(out)
}

/// Compresses `elements` (little-endian elements of `width` bytes), byte-shuffled first when
/// that comes out smaller on a sample.
pub(crate) fn compress(elements: &[u8], width: usize) -> Result<Vec<u8>, TensorError> {
    let mut zstd = zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(compression_error)?;
    if width < 2 {
        return frame(&mut zstd, LAYOUT_PLAIN, elements);
    }
    if elements.len() <= 2 * SAMPLE_WINDOWS * SAMPLE_WINDOW {
        let plain = frame(&mut zstd, LAYOUT_PLAIN, elements)?;
        let shuffled = frame(&mut zstd, LAYOUT_SHUFFLED, &shuffle(elements, width))?;
        return Ok(if shuffled.len() < plain.len() {
            shuffled
        } else {
            plain
        });
    }
    let window = SAMPLE_WINDOW / width * width;
    let stride = elements.len() / SAMPLE_WINDOWS / width * width;
    let sample: Vec<u8> = (0..SAMPLE_WINDOWS)
        .flat_map(|i| &elements[i * stride..i * stride + window])
        .copied()
        .collect();
    let plain = frame(&mut zstd, LAYOUT_PLAIN, &sample)?.len();
    let shuffled = frame(&mut zstd, LAYOUT_SHUFFLED, &shuffle(&sample, width))?.len();
    if shuffled < plain {
        frame(&mut zstd, LAYOUT_SHUFFLED, &shuffle(elements, width))
    } else {
        frame(&mut zstd, LAYOUT_PLAIN, elements)
    }
}

/// Decompresses a payload made by [`compress`] that must hold exactly `expected` bytes of
/// `width`-byte elements; allocates those `expected` bytes, never more. Returns them as they
/// were compressed, and whether they are byte-shuffled.
pub(crate) fn decompress(
    codec: Codec,
    payload: &[u8],
    width: usize,
    expected: usize,
) -> Result<(Vec<u8>, bool), TensorError> {
    let corrupt = |reason: String| TensorError::Corrupt { codec, reason };
    let (&layout, zstd_frame) = payload
        .split_first()
        .ok_or_else(|| corrupt("the payload is empty".into()))?;
    let shuffled = match layout {
        LAYOUT_PLAIN => false,
        LAYOUT_SHUFFLED if width > 1 => true,
        other => return Err(corrupt(format!("unknown layout byte {other}"))),
    };
    let mut out = Vec::new();
    out.try_reserve_exact(expected)
        .map_err(|e| corrupt(format!("cannot allocate {expected} bytes: {e}")))?;
    let n = zstd::bulk::Decompressor::new()
        .map_err(|e| corrupt(e.to_string()))?
        .decompress_to_buffer(zstd_frame, &mut out)
        .map_err(|e| {
            corrupt(format!(
                "the stream does not decompress to at most {expected} bytes: {e}"
            ))
        })?;
    if n != expected || out.len() != expected {
        return Err(corrupt(format!(
            "the stream decompresses to {n} bytes, but the shape implies {expected}"
        )));
    }
    Ok((out, shuffled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_unknown_names_list_the_valid_ones() {
        for c in Codec::ALL {
            assert_eq!(c.name().parse::<Codec>(), Ok(c));
            assert_eq!(c.to_string(), c.name());
        }
        let err = "zip".parse::<Codec>().expect_err("unknown").to_string();
        for c in Codec::ALL {
            assert!(err.contains(c.name()), "{err}");
        }
        for l in Loss::ALL {
            assert_eq!(l.name().parse::<Loss>(), Ok(l));
        }
        assert!("lossy".parse::<Loss>().is_err());
        assert_eq!(Loss::default(), Loss::Exact);
    }

    #[test]
    fn budgets_allow_codecs_up_to_their_loss() {
        assert_eq!(Loss::Exact.codecs(), vec![Codec::Raw, Codec::Lossless]);
        assert_eq!(
            Loss::F16.codecs(),
            vec![Codec::Raw, Codec::Lossless, Codec::F16, Codec::F16Lossless]
        );
        assert_eq!(Loss::Int8.codecs(), Codec::ALL.to_vec());
        assert!(Loss::Exact < Loss::F16 && Loss::F16 < Loss::Int8);
        assert!(!Loss::F16.allows(Codec::Int8Lossless));
        assert!(Loss::Int8.allows(Codec::Raw));
    }

    #[test]
    fn serde_names_are_the_codec_names() {
        let bytes = rmp_serde::to_vec(&Codec::F16Lossless).expect("encodes");
        let name: String = rmp_serde::from_slice(&bytes).expect("a string");
        assert_eq!(name, "f16+lossless");
        let back: Codec = rmp_serde::from_slice(&bytes).expect("decodes");
        assert_eq!(back, Codec::F16Lossless);
    }

    #[test]
    fn shuffle_round_trips_for_every_width() {
        let bytes: Vec<u8> = (0..24u8).collect();
        for width in [1, 2, 3, 4, 8] {
            assert_eq!(unshuffle(&shuffle(&bytes, width), width), bytes);
        }
        let values = [1.5f32, -0.0, f32::from_bits(0x7fc0_1234)];
        let le = f32_bytes(&values);
        for (bytes, shuffled) in [(le.clone(), false), (shuffle(&le, 4), true)] {
            let back = f32_values(&bytes, shuffled);
            assert!(
                back.iter()
                    .zip(&values)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            );
        }
        let halves = f16_encode(&values[..2]).expect("f16");
        assert_eq!(
            f16_decode(&shuffle(&halves, 2), true),
            f16_decode(&halves, false)
        );
        assert_eq!(
            shuffle(&[1, 2, 3, 4, 5, 6, 7, 8], 4),
            [1, 5, 2, 6, 3, 7, 4, 8]
        );
    }

    #[test]
    fn compressed_size_bound_covers_zstd() {
        for n in [0usize, 1, 100, 4096, 200_000, 1 << 20] {
            assert_eq!(
                max_compressed_len(n as u64),
                1 + zstd::zstd_safe::compress_bound(n) as u64
            );
        }
    }

    #[test]
    fn zero_sized_shapes_with_huge_dimensions_do_not_overflow() {
        let huge = 1usize << 40;
        assert_eq!(layout(&[0, 1, huge, huge]), (0, 1, usize::MAX));
        assert_eq!(layout(&[1, 1, huge, huge, 0]), (1, 1, 0));
        let (affines, levels) = int8_encode(&[0, 1, huge, huge], &[]).expect("empty");
        assert_eq!(affines.len(), 1);
        assert!(levels.is_empty());
        assert!(int8_decode(&[0, 1, huge, huge], &affines, &[]).is_empty());
        // A huge outer dimension over empty blocks (found by the tensor_decode fuzz target,
        // which spent 370 s encoding it before the blocks were skipped).
        let (affines, levels) = int8_encode(&[huge, 2, 0, 87], &[]).expect("empty");
        assert_eq!(affines.len(), 2);
        assert!(affines.iter().all(|a| a.scale == 0.0));
        assert!(levels.is_empty());
    }

    #[test]
    fn int8_channels_follow_dimension_one() {
        assert_eq!(int8_channels(&[]), 1);
        assert_eq!(int8_channels(&[7, 9]), 1);
        assert_eq!(int8_channels(&[2, 64, 3, 3]), 64);
    }
}
