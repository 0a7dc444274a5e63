//! `WireTensor`: a tensor as a shape, a [`Codec`] and the codec's payload, with bounds checked
//! before use.
//!
//! The transport encodes f32 values under any [`Codec`] and decodes them back; it guarantees
//! that what arrives is self-consistent before anything is allocated for it: the rank and
//! element count are within the configured [`Limits`], an int8 tensor has one valid [`Affine`]
//! per channel, an uncompressed payload has exactly the length the shape implies, and a
//! compressed one decompresses to exactly that length.

use serde::{Deserialize, Deserializer, Serialize};

use crate::bounded::BoundedSeq;
use crate::codec::{self, Affine, Codec, HARD_MAX_CHANNELS};
use crate::limits::{HARD_MAX_RANK, Limits};

/// Why a [`WireTensor`] could not be encoded or was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    /// The shape has more dimensions than allowed.
    #[error(
        "tensor rank {rank} exceeds the limit of {max}; flatten the tensor or raise the rank limit"
    )]
    RankTooLarge {
        /// Rank found.
        rank: usize,
        /// Configured limit.
        max: usize,
    },
    /// The product of the dimensions overflows or exceeds the element limit.
    #[error(
        "tensor shape {shape:?} holds more than the limit of {max} elements; split it or raise the element limit"
    )]
    TooManyElements {
        /// The offending shape.
        shape: Vec<u64>,
        /// Configured limit.
        max: u64,
    },
    /// The encoder was given a number of values that the shape does not hold.
    #[error("tensor shape {shape:?} holds {expected} values but {actual} were given")]
    ValueCount {
        /// The shape.
        shape: Vec<u64>,
        /// Values the shape holds.
        expected: u64,
        /// Values given.
        actual: u64,
    },
    /// An uncompressed payload's length does not match shape × bytes per element.
    #[error(
        "tensor shape {shape:?} under codec {codec} needs {expected} bytes but {actual} were sent; the sender built an inconsistent tensor"
    )]
    LengthMismatch {
        /// The declared shape.
        shape: Vec<u64>,
        /// The declared codec.
        codec: Codec,
        /// Bytes the shape and codec imply.
        expected: u64,
        /// Bytes actually present.
        actual: u64,
    },
    /// A compressed payload is empty or longer than the compressor's worst case for the size
    /// the shape implies.
    #[error("a {codec} payload for {raw} bytes must hold 1 to {max} bytes, but {actual} were sent")]
    CompressedLength {
        /// The declared codec.
        codec: Codec,
        /// Uncompressed bytes the shape implies.
        raw: u64,
        /// The longest payload accepted.
        max: u64,
        /// Bytes actually present.
        actual: u64,
    },
    /// A compressed payload does not decompress to exactly the bytes the shape implies.
    #[error("corrupt {codec} payload: {reason}")]
    Corrupt {
        /// The declared codec.
        codec: Codec,
        /// What is wrong.
        reason: String,
    },
    /// The number of per-channel int8 parameters is not the tensor's channel count (dimension 1
    /// when the rank is at least 3, else 1; none for codecs other than int8).
    #[error("codec {codec} needs {expected} channel parameters but {actual} were sent")]
    ChannelCount {
        /// The declared codec.
        codec: Codec,
        /// Parameters the shape and codec imply.
        expected: u64,
        /// Parameters present.
        actual: u64,
    },
    /// An int8 channel's parameters do not decode to finite values.
    #[error(
        "int8 channel {channel} has min {min} and scale {scale}; min and scale must be finite, scale not negative and min + 255·scale finite"
    )]
    BadChannel {
        /// The channel's index.
        channel: u64,
        /// Its minimum.
        min: f32,
        /// Its step.
        scale: f32,
    },
    /// The tensor has more int8 channels than [`HARD_MAX_CHANNELS`].
    #[error("tensor has {channels} int8 channels, more than the limit of {max}; use another codec")]
    TooManyChannels {
        /// Channels found.
        channels: u64,
        /// The limit.
        max: usize,
    },
    /// The encoder met a value the codec cannot represent (non-finite, or beyond f16's range).
    #[error("value {value} at index {index} cannot be encoded as {codec}; use another codec")]
    Unrepresentable {
        /// The codec asked for.
        codec: Codec,
        /// The value's flat index.
        index: u64,
        /// The value.
        value: f32,
    },
    /// An int8 channel spans a range too wide for f32 steps (near ±f32::MAX).
    #[error(
        "int8 channel {channel} spans {min} to {max}, too wide for 255 f32 steps; use another codec"
    )]
    Int8Range {
        /// The channel's index.
        channel: u64,
        /// Its smallest value.
        min: f32,
        /// Its largest value.
        max: f32,
    },
    /// The compressor failed (it could not allocate its context).
    #[error("compression failed: {reason}")]
    Compression {
        /// The compressor's message.
        reason: String,
    },
}

/// A tensor on the wire: its shape, the codec its values are encoded with, the int8 channel
/// parameters and the codec's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireTensor {
    /// Dimensions, outermost first. The rank is capped while decoding, before allocation.
    #[serde(deserialize_with = "deserialize_shape")]
    pub shape: Vec<u64>,
    /// How the values are encoded.
    pub codec: Codec,
    /// Int8 codecs: each channel's parameters (dimension 1 when the rank is at least 3, else
    /// one channel). Empty for every other codec. At most [`HARD_MAX_CHANNELS`] while
    /// decoding, checked before allocation.
    #[serde(deserialize_with = "deserialize_channels")]
    pub channels: Vec<Affine>,
    /// The codec's payload (see [`crate::codec`]).
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

impl WireTensor {
    /// Encodes `values` (row-major, `shape`'s element count) under `codec`. Fails when the
    /// shape and values disagree, when the shape is beyond [`Limits::default`], or when the
    /// codec cannot represent a value (f16 beyond ±65504, non-finite values for f16 and int8),
    /// in which case the caller can fall back to another codec.
    pub fn encode(shape: &[usize], values: &[f32], codec: Codec) -> Result<Self, TensorError> {
        let limits = Limits::default();
        let shape_u64: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        check_shape(&shape_u64, &limits)?;
        let expected = shape.iter().product::<usize>();
        if expected != values.len() {
            return Err(TensorError::ValueCount {
                shape: shape_u64,
                expected: expected as u64,
                actual: values.len() as u64,
            });
        }
        let (channels, bytes) = match codec {
            Codec::Raw => (vec![], codec::f32_bytes(values)),
            Codec::Lossless => (vec![], codec::compress(&codec::f32_bytes(values), 4)?),
            Codec::F16 => (vec![], codec::f16_encode(values)?),
            Codec::F16Lossless => (vec![], codec::compress(&codec::f16_encode(values)?, 2)?),
            Codec::Int8 => codec::int8_encode(shape, values)?,
            Codec::Int8Lossless => {
                let (channels, levels) = codec::int8_encode(shape, values)?;
                (channels, codec::compress(&levels, 1)?)
            }
        };
        let tensor = WireTensor {
            shape: shape_u64,
            codec,
            channels,
            bytes,
        };
        tensor.validate(&limits)?;
        Ok(tensor)
    }

    /// Builds a raw f32 tensor (bit-exact): `encode(shape, values, Codec::Raw)`.
    pub fn from_f32(shape: &[usize], values: &[f32]) -> Result<Self, TensorError> {
        Self::encode(shape, values, Codec::Raw)
    }

    /// The codec the values are encoded with.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The bytes the encoded values take: the payload and the int8 channel parameters (two
    /// f32 each), without the shape and framing, which every codec pays alike.
    pub fn encoded_len(&self) -> u64 {
        self.bytes.len() as u64 + 8 * self.channels.len() as u64
    }

    /// The number of elements the shape describes (1 for a scalar), if it does not overflow.
    pub fn element_count(&self) -> Option<u64> {
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }

    /// Checks the header against `limits` without decoding: rank, element count, the int8
    /// channel parameters (one per channel, each finite with a non-negative scale), and the
    /// payload length: exact for `raw`, `f16` and `int8`; for the compressed codecs between 1
    /// byte and the compressor's worst case for the uncompressed size
    /// ([`codec::max_compressed_len`]).
    pub fn validate(&self, limits: &Limits) -> Result<(), TensorError> {
        let count = check_shape(&self.shape, limits)?;
        let expected_channels = if self.codec.has_channels() {
            codec::int8_channels(&self.shape)
        } else {
            0
        };
        if self.channels.len() as u64 != expected_channels {
            return Err(TensorError::ChannelCount {
                codec: self.codec,
                expected: expected_channels,
                actual: self.channels.len() as u64,
            });
        }
        if let Some((c, a)) = self
            .channels
            .iter()
            .enumerate()
            .find(|(_, a)| !a.is_valid())
        {
            return Err(TensorError::BadChannel {
                channel: c as u64,
                min: a.min,
                scale: a.scale,
            });
        }
        let raw = count.saturating_mul(self.codec.element_bytes() as u64);
        let actual = self.bytes.len() as u64;
        if self.codec.is_compressed() {
            let max = codec::max_compressed_len(raw);
            if actual == 0 || actual > max {
                return Err(TensorError::CompressedLength {
                    codec: self.codec,
                    raw,
                    max,
                    actual,
                });
            }
        } else if actual != raw {
            return Err(TensorError::LengthMismatch {
                shape: self.shape.clone(),
                codec: self.codec,
                expected: raw,
                actual,
            });
        }
        Ok(())
    }

    /// The values as f32: bit-exact for `raw` and `lossless`, within the codec's bound
    /// otherwise. Bounded: the header is [validated](Self::validate) against `limits` before
    /// anything is allocated, a compressed payload must decompress to exactly the size the
    /// shape and codec imply, and at most that size plus the f32 output is allocated.
    pub fn decode(&self, limits: &Limits) -> Result<Vec<f32>, TensorError> {
        self.validate(limits)?;
        let shape = self.shape_usize()?;
        let count: usize = shape.iter().product();
        let width = self.codec.element_bytes();
        let raw = count
            .checked_mul(width)
            .ok_or_else(|| TensorError::TooManyElements {
                shape: self.shape.clone(),
                max: limits.max_elements,
            })?;
        let payload = |c: Codec| codec::decompress(c, &self.bytes, width, raw);
        Ok(match self.codec {
            Codec::Raw => codec::f32_values(&self.bytes, false),
            Codec::Lossless => {
                let (bytes, shuffled) = payload(self.codec)?;
                codec::f32_values(&bytes, shuffled)
            }
            Codec::F16 => codec::f16_decode(&self.bytes, false),
            Codec::F16Lossless => {
                let (bytes, shuffled) = payload(self.codec)?;
                codec::f16_decode(&bytes, shuffled)
            }
            Codec::Int8 => codec::int8_decode(&shape, &self.channels, &self.bytes),
            Codec::Int8Lossless => {
                // Levels are never shuffled: `decompress` refuses that layout for width 1.
                let (levels, _) = payload(self.codec)?;
                codec::int8_decode(&shape, &self.channels, &levels)
            }
        })
    }

    /// The shape as `usize` dimensions, for callers that index memory with it.
    pub fn shape_usize(&self) -> Result<Vec<usize>, TensorError> {
        self.shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| TensorError::TooManyElements {
                shape: self.shape.clone(),
                max: usize::MAX as u64,
            })
    }
}

/// Checks rank and element count against `limits`; returns the element count.
fn check_shape(shape: &[u64], limits: &Limits) -> Result<u64, TensorError> {
    let max_rank = limits.max_rank.min(HARD_MAX_RANK);
    if shape.len() > max_rank {
        return Err(TensorError::RankTooLarge {
            rank: shape.len(),
            max: max_rank,
        });
    }
    shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= limits.max_elements && usize::try_from(n).is_ok())
        .ok_or_else(|| TensorError::TooManyElements {
            shape: shape.to_vec(),
            max: limits.max_elements,
        })
}

// The visitors' messages below name these numbers.
const _: () = assert!(HARD_MAX_RANK == 8 && HARD_MAX_CHANNELS == 65536);

/// Deserialises a shape, refusing more than [`HARD_MAX_RANK`] dimensions before allocating.
fn deserialize_shape<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
    deserializer.deserialize_seq(BoundedSeq::<u64>::new(
        HARD_MAX_RANK,
        "a sequence of at most 8 dimensions",
    ))
}

/// Deserialises int8 channel parameters, refusing more than [`HARD_MAX_CHANNELS`] before
/// allocating.
fn deserialize_channels<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Affine>, D::Error> {
    deserializer.deserialize_seq(BoundedSeq::<Affine>::new(
        HARD_MAX_CHANNELS,
        "a sequence of at most 65536 channel parameters",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    /// Deterministic values: a smooth ramp, cut like a ReLU output where it is negative.
    fn relu_like(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32 * 0.37).sin() * 2.0 + (i as f32 * 0.011).cos()).max(0.0))
            .collect()
    }

    /// Values with pseudo-random mantissas, dense.
    fn dense(n: usize) -> Vec<f32> {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn encoded_len_counts_the_payload_and_the_int8_parameters() {
        let values: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32).collect();
        let raw = WireTensor::encode(&[2, 3, 4], &values, Codec::Raw).expect("raw");
        assert_eq!(raw.encoded_len(), 96);
        let int8 = WireTensor::encode(&[2, 3, 4], &values, Codec::Int8).expect("int8");
        assert_eq!(int8.channels.len(), 3);
        assert_eq!(int8.encoded_len(), 24 + 3 * 8);
    }

    #[test]
    fn raw_and_lossless_round_trip_bit_exact() {
        let special = [
            0.0f32,
            -0.0,
            1.5,
            f32::NAN,
            f32::from_bits(0x7fc0_1234),
            f32::from_bits(0xffa0_0001),
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            f32::MAX,
            -f32::MAX,
        ];
        let big_dense = dense(70_000);
        let big_relu = relu_like(70_000);
        let cases: [(&[usize], &[f32]); 4] = [
            (&[3, 4], &special),
            (&[], &[2.5]),
            (&[70, 1000], &big_dense),
            (&[1, 7, 100, 100], &big_relu),
        ];
        for codec in [Codec::Raw, Codec::Lossless] {
            for (shape, values) in cases {
                let t = WireTensor::encode(shape, values, codec).expect("encodes");
                assert_eq!(t.codec(), codec);
                assert!(t.channels.is_empty());
                let back = t.decode(&Limits::default()).expect("decodes");
                assert_eq!(bits(&back), bits(values), "{codec} {shape:?}");
            }
        }
        let t = WireTensor::from_f32(&[2], &[1.0, 2.0]).expect("raw");
        assert_eq!(t.codec, Codec::Raw);
        assert_eq!(t.bytes.len(), 8);
    }

    #[test]
    fn lossless_shuffles_dense_floats_and_compresses_sparse_ones() {
        let dense = WireTensor::encode(&[70_000], &dense(70_000), Codec::Lossless).expect("dense");
        assert_eq!(dense.bytes[0], 1, "dense floats compress better shuffled");
        assert!(dense.bytes.len() < 70_000 * 4);
        let sparse =
            WireTensor::encode(&[70_000], &relu_like(70_000), Codec::Lossless).expect("sparse");
        assert!(
            sparse.bytes.len() * 2 < 70_000 * 4,
            "{}",
            sparse.bytes.len()
        );
        // A repeated pattern of whole floats compresses better in order.
        let pattern: Vec<f32> = (0..70_000).map(|i| [0.1f32, -2.7, 3.3][i % 3]).collect();
        let t = WireTensor::encode(&[70_000], &pattern, Codec::Lossless).expect("pattern");
        assert_eq!(t.bytes[0], 0);
        let zeros = WireTensor::encode(&[64, 55, 55], &[0.0; 64 * 55 * 55], Codec::Lossless)
            .expect("zeros");
        assert!(zeros.bytes.len() < 200, "{}", zeros.bytes.len());
    }

    #[test]
    fn f16_is_within_half_an_ulp() {
        let mut values = vec![
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            0.1,
            3.25,
            65504.0,
            -65504.0,
            6.1035156e-5,
            1e-6,
            -3e-8,
            1e-10,
        ];
        values.extend(dense(5000).iter().map(|v| v * 1000.0));
        for codec in [Codec::F16, Codec::F16Lossless] {
            let t = WireTensor::encode(&[values.len()], &values, codec).expect("encodes");
            let back = t.decode(&Limits::default()).expect("decodes");
            for (v, b) in values.iter().zip(&back) {
                if v.abs() >= 6.1035156e-5 {
                    assert!((v - b).abs() <= v.abs() * 2f32.powi(-11), "{v} vs {b}");
                } else {
                    assert!((v - b).abs() <= 2f32.powi(-25), "{v} vs {b}");
                }
            }
            assert_eq!(back[1].to_bits(), (-0.0f32).to_bits());
        }
        let plain = WireTensor::encode(&[values.len()], &values, Codec::F16).expect("f16");
        assert_eq!(plain.bytes.len(), values.len() * 2);
        let packed = WireTensor::encode(&[values.len()], &values, Codec::F16Lossless).expect("f16");
        let limits = Limits::default();
        assert_eq!(
            bits(&plain.decode(&limits).expect("f16")),
            bits(&packed.decode(&limits).expect("f16+lossless"))
        );
    }

    #[test]
    fn f16_refuses_what_it_cannot_represent() {
        for codec in [Codec::F16, Codec::F16Lossless] {
            for bad in [65505.0f32, -70000.0, f32::INFINITY, f32::NAN, f32::MAX] {
                let mut values = vec![1.0f32; 3000];
                values[2049] = bad;
                let err = WireTensor::encode(&[3000], &values, codec).expect_err("refused");
                match err {
                    TensorError::Unrepresentable { index, .. } => assert_eq!(index, 2049),
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    /// Checks int8 decoding against the bound, channel by channel (dimension 1 for rank ≥ 3).
    fn assert_int8_within_bound(shape: &[usize], values: &[f32], t: &WireTensor, back: &[f32]) {
        let channels = if shape.len() >= 3 { shape[1] } else { 1 };
        let inner: usize = if shape.len() >= 3 {
            shape[2..].iter().product()
        } else {
            values.len()
        };
        assert_eq!(t.channels.len(), channels);
        for (i, (v, b)) in values.iter().zip(back).enumerate() {
            let Affine { min, scale } = t.channels[(i / inner.max(1)) % channels];
            let tol = scale / 2.0 + (min.abs() + 255.0 * scale) * 2f32.powi(-22);
            assert!(
                (v - b).abs() <= tol,
                "{v} vs {b} (min {min}, scale {scale})"
            );
        }
    }

    #[test]
    fn int8_is_within_half_a_step_per_channel() {
        // Channels with very different ranges: per-channel scales keep each one tight.
        let shape = [2, 3, 4, 5];
        let values: Vec<f32> = (0..120)
            .map(|i| {
                let c = (i / 20) % 3;
                [0.001, 1.0, 1000.0][c] * ((i as f32 * 0.7).sin() + 0.2)
            })
            .collect();
        for codec in [Codec::Int8, Codec::Int8Lossless] {
            let t = WireTensor::encode(&shape, &values, codec).expect("encodes");
            let back = t.decode(&Limits::default()).expect("decodes");
            assert_int8_within_bound(&shape, &values, &t, &back);
            assert!(t.channels[0].scale < 1e-4 && t.channels[2].scale > 1.0);
        }
        // Rank 2: one channel.
        let t = WireTensor::encode(&[2, 2], &[-1.0, 0.0, 0.5, 254.0], Codec::Int8).expect("int8");
        assert_eq!(
            t.channels,
            vec![Affine {
                min: -1.0,
                scale: 1.0
            }]
        );
        assert_eq!(t.bytes, vec![0, 1, 2, 255]);
        assert_eq!(
            t.decode(&Limits::default()).expect("decodes"),
            vec![-1.0, 0.0, 1.0, 254.0]
        );
    }

    #[test]
    fn int8_constant_and_empty_channels() {
        let t = WireTensor::encode(&[1, 2, 2], &[3.5, 3.5, -0.25, -0.25], Codec::Int8)
            .expect("constant channels");
        assert_eq!(
            t.channels[0],
            Affine {
                min: 3.5,
                scale: 0.0
            }
        );
        assert_eq!(
            t.decode(&Limits::default()).expect("decodes"),
            vec![3.5, 3.5, -0.25, -0.25]
        );
        let empty = WireTensor::encode(&[0, 4, 3], &[], Codec::Int8Lossless).expect("empty");
        assert_eq!(empty.channels.len(), 4);
        assert!(
            empty
                .decode(&Limits::default())
                .expect("decodes")
                .is_empty()
        );
    }

    #[test]
    fn int8_refuses_non_finite_values_and_absurd_ranges() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let values = [0.0, 1.0, bad, 2.0];
            let err = WireTensor::encode(&[1, 2, 2], &values, Codec::Int8).expect_err("refused");
            assert!(
                matches!(err, TensorError::Unrepresentable { index: 2, .. }),
                "{err:?}"
            );
        }
        let err = WireTensor::encode(&[2], &[-f32::MAX, f32::MAX], Codec::Int8).expect_err("wide");
        assert!(matches!(err, TensorError::Int8Range { .. }), "{err:?}");
        let wide = WireTensor::encode(&[2], &[-1e38, 1e38], Codec::Int8).expect("fits");
        let back = wide.decode(&Limits::default()).expect("decodes");
        assert!(back.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn encoder_checks_the_shape() {
        let err = WireTensor::from_f32(&[2, 2], &[1.0; 3]).expect_err("3 values for 4 slots");
        assert!(matches!(
            err,
            TensorError::ValueCount {
                expected: 4,
                actual: 3,
                ..
            }
        ));
        assert!(matches!(
            WireTensor::encode(&[1; 9], &[1.0], Codec::Lossless),
            Err(TensorError::RankTooLarge { .. })
        ));
        assert!(matches!(
            WireTensor::encode(&[1, 1 << 17, 1], &vec![0.0; 1 << 17], Codec::Int8),
            Err(TensorError::TooManyChannels { .. })
        ));
    }

    fn lossless(shape: &[usize], values: &[f32], codec: Codec) -> WireTensor {
        WireTensor::encode(shape, values, codec).expect("encodes")
    }

    #[test]
    fn malformed_payloads_are_refused() {
        let limits = Limits::default();
        let values = relu_like(100);
        // Uncompressed payloads: one byte short or long.
        for codec in [Codec::Raw, Codec::F16, Codec::Int8] {
            let t = WireTensor::encode(&[100], &values, codec).expect("encodes");
            for delta in [-1i64, 1] {
                let mut bad = t.clone();
                bad.bytes.resize((t.bytes.len() as i64 + delta) as usize, 0);
                assert!(
                    matches!(bad.decode(&limits), Err(TensorError::LengthMismatch { .. })),
                    "{codec} {delta}"
                );
            }
        }
        for codec in [Codec::Lossless, Codec::F16Lossless, Codec::Int8Lossless] {
            let t = lossless(&[100], &values, codec);
            // Truncated stream, extra bytes after it, empty payload, unknown layout byte.
            let mut truncated = t.clone();
            truncated.bytes.pop();
            assert!(matches!(
                truncated.decode(&limits),
                Err(TensorError::Corrupt { .. })
            ));
            let mut extra = t.clone();
            extra.bytes.extend_from_slice(&[1, 2, 3]);
            assert!(extra.decode(&limits).is_err(), "{codec}");
            let mut empty = t.clone();
            empty.bytes.clear();
            assert!(matches!(
                empty.decode(&limits),
                Err(TensorError::CompressedLength { actual: 0, .. })
            ));
            let mut layout = t.clone();
            layout.bytes[0] = 7;
            assert!(matches!(
                layout.decode(&limits),
                Err(TensorError::Corrupt { .. })
            ));
            // The stream holds 100 elements: a shape of 99 or 101 is refused.
            for n in [99u64, 101] {
                let mut wrong = t.clone();
                wrong.shape = vec![n];
                assert!(
                    matches!(wrong.decode(&limits), Err(TensorError::Corrupt { .. })),
                    "{codec} {n}"
                );
            }
            // Longer than the compressor's worst case for the declared size.
            let mut long = t.clone();
            long.shape = vec![1];
            long.bytes = vec![0; 200];
            assert!(matches!(
                long.decode(&limits),
                Err(TensorError::CompressedLength { .. })
            ));
        }
        // Shuffling one-byte levels is not a layout the encoder makes.
        let mut int8 = lossless(&[100], &values, Codec::Int8Lossless);
        int8.bytes[0] = 1;
        assert!(matches!(
            int8.decode(&limits),
            Err(TensorError::Corrupt { .. })
        ));
    }

    #[test]
    fn bad_channel_parameters_are_refused() {
        let limits = Limits::default();
        let t = WireTensor::encode(&[1, 2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], Codec::Int8)
            .expect("int8");
        let mut fewer = t.clone();
        fewer.channels.pop();
        assert!(matches!(
            fewer.decode(&limits),
            Err(TensorError::ChannelCount {
                expected: 2,
                actual: 1,
                ..
            })
        ));
        let mut on_raw = WireTensor::from_f32(&[1], &[1.0]).expect("raw");
        on_raw.channels.push(Affine {
            min: 0.0,
            scale: 1.0,
        });
        assert!(matches!(
            on_raw.decode(&limits),
            Err(TensorError::ChannelCount { expected: 0, .. })
        ));
        for (min, scale) in [
            (0.0, f32::NAN),
            (0.0, f32::INFINITY),
            (0.0, -1.0),
            (f32::NAN, 1.0),
            (f32::NEG_INFINITY, 1.0),
            (f32::MAX, 1e36),
        ] {
            let mut bad = t.clone();
            bad.channels[1] = Affine { min, scale };
            assert!(
                matches!(
                    bad.decode(&limits),
                    Err(TensorError::BadChannel { channel: 1, .. })
                ),
                "{min} {scale}"
            );
        }
    }

    #[test]
    fn huge_shapes_are_refused_before_allocating() {
        for codec in Codec::ALL {
            for shape in [
                vec![u64::MAX, u64::MAX],
                vec![1 << 40],
                vec![1, 1 << 30, 1 << 30],
            ] {
                let t = WireTensor {
                    shape,
                    codec,
                    channels: vec![],
                    bytes: vec![1, 0x28, 0xb5, 0x2f, 0xfd],
                };
                assert!(
                    matches!(
                        t.decode(&Limits::default()),
                        Err(TensorError::TooManyElements { .. })
                    ),
                    "{codec}"
                );
            }
        }
        // No elements, but partial products that overflow: decoded without a panic.
        let empty = WireTensor {
            shape: vec![0, 1, 1 << 40, 1 << 40],
            codec: Codec::Int8,
            channels: vec![Affine {
                min: 0.0,
                scale: 0.0,
            }],
            bytes: vec![],
        };
        assert_eq!(empty.decode(&Limits::default()), Ok(vec![]));
        let t = WireTensor::encode(&[4, 4], &[0.0; 16], Codec::Lossless).expect("lossless");
        let limits = Limits {
            max_elements: 15,
            ..Limits::default()
        };
        assert!(matches!(
            t.decode(&limits),
            Err(TensorError::TooManyElements { .. })
        ));
        let rank = WireTensor {
            shape: vec![1; 9],
            codec: Codec::Raw,
            channels: vec![],
            bytes: vec![0; 4],
        };
        let limits = Limits {
            max_rank: 4,
            ..Limits::default()
        };
        assert!(matches!(
            rank.validate(&limits),
            Err(TensorError::RankTooLarge { rank: 9, max: 4 })
        ));
    }

    #[test]
    fn long_parameter_lists_are_refused_while_deserialising() {
        // shape, codec, channels announced as 70000 entries (none sent), bytes.
        let mut body = vec![0x94, 0x91, 0x01];
        body.extend(rmp_serde::to_vec(&Codec::Int8).expect("codec"));
        body.extend([0xdd, 0x00, 0x01, 0x11, 0x70]);
        let err = rmp_serde::from_slice::<WireTensor>(&body).expect_err("too long");
        assert!(err.to_string().contains("65536"), "{err}");
        // A valid tensor survives MessagePack.
        let t = WireTensor::encode(&[1, 3, 2], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], Codec::Int8)
            .expect("int8");
        let back: WireTensor =
            rmp_serde::from_slice(&rmp_serde::to_vec(&t).expect("encodes")).expect("decodes");
        assert_eq!(back, t);
    }

    #[test]
    fn scalar_has_one_element() {
        let t = WireTensor::from_f32(&[], &[2.5]).expect("scalar");
        assert_eq!(t.element_count(), Some(1));
        for codec in Codec::ALL {
            let t = WireTensor::encode(&[], &[2.5], codec).expect("scalar");
            assert_eq!(t.decode(&Limits::default()).expect("decodes"), vec![2.5]);
        }
    }
}
