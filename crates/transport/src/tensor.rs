//! `WireTensor`: a tensor as bytes, a shape and a dtype, with bounds checked before use.
//!
//! The transport never interprets tensor values beyond the conversions offered here; it only
//! guarantees that what arrives is self-consistent: the rank and element count are within the
//! configured limits and the byte length equals the element count times the dtype's size.

use serde::{Deserialize, Deserializer, Serialize};

use crate::limits::{HARD_MAX_RANK, Limits};

/// The element type of a [`WireTensor`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum DType {
    /// IEEE-754 single precision, little-endian, 4 bytes per element.
    F32,
    /// Affine-quantised signed 8-bit integers: `value = scale * (q - zero_point)`.
    Int8 {
        /// Step between two adjacent quantised levels. Must be finite and positive.
        scale: f32,
        /// The quantised level that represents 0.0.
        zero_point: i8,
    },
}

impl DType {
    /// Bytes per element.
    pub fn size_bytes(&self) -> usize {
        match self {
            DType::F32 => 4,
            DType::Int8 { .. } => 1,
        }
    }
}

/// Why a [`WireTensor`] was rejected.
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
    /// The byte length does not match shape × dtype size.
    #[error(
        "tensor shape {shape:?} with dtype {dtype:?} needs {expected} bytes but {actual} were sent; the sender built an inconsistent tensor"
    )]
    LengthMismatch {
        /// The declared shape.
        shape: Vec<u64>,
        /// The declared dtype.
        dtype: DType,
        /// Bytes the shape and dtype imply.
        expected: u64,
        /// Bytes actually present.
        actual: u64,
    },
    /// An int8 tensor has a scale that is not finite and positive.
    #[error(
        "int8 tensor scale {scale} is not a finite positive number; quantise with a valid scale"
    )]
    BadScale {
        /// The offending scale.
        scale: f32,
    },
    /// The tensor's dtype is not the one a conversion expects.
    #[error("tensor has dtype {found:?}, but {wanted} was expected")]
    WrongDType {
        /// The dtype found.
        found: DType,
        /// A description of the dtype wanted.
        wanted: &'static str,
    },
}

/// A tensor on the wire: shape, dtype and raw little-endian element bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireTensor {
    /// Dimensions, outermost first. The rank is capped while decoding, before allocation.
    #[serde(deserialize_with = "deserialize_shape")]
    pub shape: Vec<u64>,
    /// Element type.
    pub dtype: DType,
    /// Element bytes, little-endian, row-major.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

impl WireTensor {
    /// Builds an f32 tensor from a shape and values, checking that they agree.
    pub fn from_f32(shape: &[usize], values: &[f32]) -> Result<Self, TensorError> {
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let tensor = WireTensor {
            shape: shape.iter().map(|&d| d as u64).collect(),
            dtype: DType::F32,
            bytes,
        };
        tensor.validate(&Limits::default())?;
        Ok(tensor)
    }

    /// Quantises f32 values to int8 with the given scale and zero point (round to nearest,
    /// saturating at the int8 range).
    pub fn quantize_int8(
        shape: &[usize],
        values: &[f32],
        scale: f32,
        zero_point: i8,
    ) -> Result<Self, TensorError> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(TensorError::BadScale { scale });
        }
        let bytes = values
            .iter()
            .map(|&v| {
                let q = (v / scale).round() + f32::from(zero_point);
                // `as` saturates for floats, and NaN becomes 0: no panic on any input.
                (q.clamp(-128.0, 127.0) as i8) as u8
            })
            .collect();
        let tensor = WireTensor {
            shape: shape.iter().map(|&d| d as u64).collect(),
            dtype: DType::Int8 { scale, zero_point },
            bytes,
        };
        tensor.validate(&Limits::default())?;
        Ok(tensor)
    }

    /// The number of elements the shape describes (1 for a scalar), if it does not overflow.
    pub fn element_count(&self) -> Option<u64> {
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }

    /// Checks rank, element count, scale and byte length against `limits`.
    pub fn validate(&self, limits: &Limits) -> Result<(), TensorError> {
        let max_rank = limits.max_rank.min(HARD_MAX_RANK);
        if self.shape.len() > max_rank {
            return Err(TensorError::RankTooLarge {
                rank: self.shape.len(),
                max: max_rank,
            });
        }
        let count = self
            .element_count()
            .filter(|&n| n <= limits.max_elements)
            .ok_or_else(|| TensorError::TooManyElements {
                shape: self.shape.clone(),
                max: limits.max_elements,
            })?;
        if let DType::Int8 { scale, .. } = self.dtype
            && !(scale.is_finite() && scale > 0.0)
        {
            return Err(TensorError::BadScale { scale });
        }
        let expected = count.checked_mul(self.dtype.size_bytes() as u64);
        let actual = self.bytes.len() as u64;
        if expected != Some(actual) {
            return Err(TensorError::LengthMismatch {
                shape: self.shape.clone(),
                dtype: self.dtype,
                expected: expected.unwrap_or(u64::MAX),
                actual,
            });
        }
        Ok(())
    }

    /// The values of an f32 tensor, bit-exact.
    pub fn to_f32(&self) -> Result<Vec<f32>, TensorError> {
        if self.dtype != DType::F32 {
            return Err(TensorError::WrongDType {
                found: self.dtype,
                wanted: "f32",
            });
        }
        self.check_len()?;
        Ok(self
            .bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// The values of the tensor as f32: f32 tensors bit-exact, int8 tensors dequantised.
    pub fn dequantize(&self) -> Result<Vec<f32>, TensorError> {
        match self.dtype {
            DType::F32 => self.to_f32(),
            DType::Int8 { scale, zero_point } => {
                self.check_len()?;
                Ok(self
                    .bytes
                    .iter()
                    .map(|&b| scale * (f32::from(b as i8) - f32::from(zero_point)))
                    .collect())
            }
        }
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

    fn check_len(&self) -> Result<(), TensorError> {
        let limits = Limits {
            max_elements: u64::MAX,
            ..Limits::default()
        };
        self.validate(&limits)
    }
}

/// Deserialises a shape, refusing more than [`HARD_MAX_RANK`] dimensions before allocating.
fn deserialize_shape<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
    struct ShapeVisitor;
    impl<'de> serde::de::Visitor<'de> for ShapeVisitor {
        type Value = Vec<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a sequence of at most {HARD_MAX_RANK} dimensions")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u64>, A::Error> {
            if seq.size_hint().is_some_and(|n| n > HARD_MAX_RANK) {
                return Err(serde::de::Error::invalid_length(
                    seq.size_hint().unwrap_or(0),
                    &self,
                ));
            }
            let mut shape = Vec::with_capacity(HARD_MAX_RANK);
            while let Some(d) = seq.next_element::<u64>()? {
                if shape.len() == HARD_MAX_RANK {
                    return Err(serde::de::Error::invalid_length(shape.len() + 1, &self));
                }
                shape.push(d);
            }
            Ok(shape)
        }
    }
    deserializer.deserialize_seq(ShapeVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_round_trip_is_bit_exact() {
        let values = [
            0.0f32,
            -0.0,
            1.5,
            f32::NAN,
            f32::INFINITY,
            f32::MIN_POSITIVE,
        ];
        let t = WireTensor::from_f32(&[2, 3], &values).expect("consistent tensor");
        let back = t.to_f32().expect("f32 tensor");
        let a: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        let b: Vec<u32> = back.iter().map(|v| v.to_bits()).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn shape_and_values_must_agree() {
        let err = WireTensor::from_f32(&[2, 2], &[1.0; 3]).expect_err("3 values for 4 slots");
        assert!(matches!(
            err,
            TensorError::LengthMismatch {
                expected: 16,
                actual: 12,
                ..
            }
        ));
    }

    #[test]
    fn int8_quantisation_is_within_half_a_step() {
        let values = [-1.0f32, -0.5, 0.0, 0.26, 1.0];
        let t = WireTensor::quantize_int8(&[5], &values, 1.0 / 127.0, 0).expect("valid");
        let back = t.dequantize().expect("int8 tensor");
        for (v, b) in values.iter().zip(&back) {
            assert!((v - b).abs() <= 0.5 / 127.0 + 1e-6, "{v} vs {b}");
        }
        assert!(t.to_f32().is_err(), "int8 is not f32");
    }

    #[test]
    fn int8_saturates_and_rejects_bad_scale() {
        let t = WireTensor::quantize_int8(&[2], &[1e9, -1e9], 0.1, 3).expect("valid");
        assert_eq!(t.bytes, vec![127u8, 128u8]);
        for scale in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            assert!(matches!(
                WireTensor::quantize_int8(&[1], &[1.0], scale, 0),
                Err(TensorError::BadScale { .. })
            ));
        }
    }

    #[test]
    fn overflowing_shape_is_rejected_not_panicked() {
        let t = WireTensor {
            shape: vec![u64::MAX, u64::MAX],
            dtype: DType::F32,
            bytes: vec![],
        };
        assert!(matches!(
            t.validate(&Limits::default()),
            Err(TensorError::TooManyElements { .. })
        ));
    }

    #[test]
    fn rank_limit_is_enforced() {
        let t = WireTensor {
            shape: vec![1; 9],
            dtype: DType::F32,
            bytes: vec![0; 4],
        };
        let limits = Limits {
            max_rank: 4,
            ..Limits::default()
        };
        assert!(matches!(
            t.validate(&limits),
            Err(TensorError::RankTooLarge { rank: 9, max: 4 })
        ));
    }

    #[test]
    fn scalar_has_one_element() {
        let t = WireTensor::from_f32(&[], &[2.5]).expect("scalar");
        assert_eq!(t.element_count(), Some(1));
    }
}
