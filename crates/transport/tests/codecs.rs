//! Property tests of the boundary codecs: random shapes and values round-trip within each
//! codec's bound, and random or mutated payloads decode to a typed error or to exactly the
//! declared number of values, never a panic. (Allocation bounds: `codec_alloc.rs`.)

use proptest::prelude::*;
use transport::{Affine, Codec, Limits, TensorError, WireTensor};

/// Shapes of rank 0 to 4 with small dimensions, sometimes 0.
fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..7, 0..5)
}

/// Float values of every kind the activations hold: zeros, small, large, negative.
fn finite(max: f32) -> impl Strategy<Value = f32> {
    prop_oneof![
        3 => Just(0.0f32),
        1 => Just(-0.0f32),
        3 => -1.0f32..1.0,
        2 => -max..max,
        1 => -1e-6f32..1e-6,
    ]
}

fn values(shape: &[usize], value: BoxedStrategy<f32>) -> impl Strategy<Value = Vec<f32>> + use<> {
    prop::collection::vec(value, shape.iter().product::<usize>())
}

/// The channel of flat index `i` for int8: dimension 1 when the rank is at least 3.
fn channel(shape: &[usize], i: usize) -> usize {
    if shape.len() >= 3 {
        let inner: usize = shape[2..].iter().product();
        (i / inner.max(1)) % shape[1].max(1)
    } else {
        0
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn raw_and_lossless_are_bit_exact(
        (shape, bits) in shape().prop_flat_map(|s| {
            let n = s.iter().product::<usize>();
            (Just(s), prop::collection::vec(any::<u32>(), n))
        }),
    ) {
        let values: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
        for codec in [Codec::Raw, Codec::Lossless] {
            let t = WireTensor::encode(&shape, &values, codec).expect("any f32 encodes");
            let back = t.decode(&Limits::default()).expect("decodes");
            let back_bits: Vec<u32> = back.iter().map(|v| v.to_bits()).collect();
            prop_assert_eq!(&back_bits, &bits);
        }
    }

    #[test]
    fn f16_is_within_its_bound(
        (shape, values) in shape().prop_flat_map(|s| {
            let v = values(&s, finite(65504.0).boxed());
            (Just(s), v)
        }),
    ) {
        for codec in [Codec::F16, Codec::F16Lossless] {
            let t = WireTensor::encode(&shape, &values, codec).expect("in range");
            let back = t.decode(&Limits::default()).expect("decodes");
            prop_assert_eq!(back.len(), values.len());
            for (v, b) in values.iter().zip(&back) {
                let bound = if v.abs() >= 6.103_515_6e-5 {
                    v.abs() * 2f32.powi(-11)
                } else {
                    2f32.powi(-25)
                };
                prop_assert!((v - b).abs() <= bound, "{} vs {}", v, b);
                prop_assert_eq!(v.is_sign_negative(), b.is_sign_negative());
            }
        }
    }

    #[test]
    fn int8_is_within_half_a_step_per_channel(
        (shape, values) in shape().prop_flat_map(|s| {
            let v = values(&s, finite(1e30).boxed());
            (Just(s), v)
        }),
    ) {
        for codec in [Codec::Int8, Codec::Int8Lossless] {
            let t = WireTensor::encode(&shape, &values, codec).expect("finite");
            let back = t.decode(&Limits::default()).expect("decodes");
            prop_assert_eq!(back.len(), values.len());
            for (i, (v, b)) in values.iter().zip(&back).enumerate() {
                let Affine { min, scale } = t.channels[channel(&shape, i)];
                let tol = scale / 2.0 + (min.abs() + 255.0 * scale) * 2f32.powi(-22);
                prop_assert!(b.is_finite());
                prop_assert!((v - b).abs() <= tol, "{} vs {} (min {}, scale {})", v, b, min, scale);
            }
        }
    }

    #[test]
    fn f16_and_int8_refuse_what_they_cannot_hold(
        n in 1usize..50,
        at in any::<prop::sample::Index>(),
        bad in prop_oneof![
            Just(f32::NAN),
            Just(f32::INFINITY),
            Just(f32::NEG_INFINITY),
            65505.0f32..f32::MAX,
        ],
    ) {
        let mut values = vec![0.5f32; n];
        let i = at.index(n);
        values[i] = bad;
        for codec in [Codec::F16, Codec::F16Lossless] {
            let err = WireTensor::encode(&[n], &values, codec).expect_err("refused");
            let refused_at_i =
                matches!(err, TensorError::Unrepresentable { index, .. } if index == i as u64);
            prop_assert!(refused_at_i, "{:?}", err);
        }
        if !bad.is_finite() {
            for codec in [Codec::Int8, Codec::Int8Lossless] {
                prop_assert!(WireTensor::encode(&[n], &values, codec).is_err());
            }
        }
    }

    #[test]
    fn mutated_payloads_never_panic(
        shape in shape(),
        codec in prop::sample::select(Codec::ALL.to_vec()),
        seed in any::<u64>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        tail in prop::collection::vec(any::<u8>(), 0..8),
        new_shape in prop::option::of(shape()),
    ) {
        let n: usize = shape.iter().product();
        let mut x = seed | 1;
        let values: Vec<f32> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x % 3 == 0 { 0.0 } else { (x >> 40) as f32 / 1e6 }
            })
            .collect();
        let mut t = WireTensor::encode(&shape, &values, codec).expect("encodes");
        for (at, value) in flips {
            if !t.bytes.is_empty() {
                let i = at.index(t.bytes.len());
                t.bytes[i] = value;
            }
        }
        if !t.bytes.is_empty() {
            let keep = cut.index(t.bytes.len() + 1);
            t.bytes.truncate(keep.max(t.bytes.len() / 2));
        }
        t.bytes.extend(tail);
        if let Some(s) = new_shape {
            t.shape = s.iter().map(|&d| d as u64).collect();
        }
        check_decode(&t);
    }

    #[test]
    fn random_tensors_never_panic(
        shape in prop::collection::vec(prop_oneof![0u64..9, any::<u64>()], 0..6),
        codec in prop::sample::select(Codec::ALL.to_vec()),
        channels in prop::collection::vec((any::<u32>(), any::<u32>()), 0..4),
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        zstd_magic in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if zstd_magic && !bytes.is_empty() {
            // A layout byte and zstd's magic number, so that the decompressor parses further.
            bytes.splice(0..0, [bytes[0] & 1, 0x28, 0xb5, 0x2f, 0xfd]);
        }
        let t = WireTensor {
            shape,
            codec,
            channels: channels
                .into_iter()
                .map(|(m, s)| Affine { min: f32::from_bits(m), scale: f32::from_bits(s) })
                .collect(),
            bytes,
        };
        check_decode(&t);
    }

    #[test]
    fn random_messagepack_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(t) = rmp_serde::from_slice::<WireTensor>(&bytes) {
            check_decode(&t);
        }
    }
}

/// Decodes under small limits: an error, or exactly as many values as the shape declares
/// (finite ones for the lossy codecs).
fn check_decode(t: &WireTensor) {
    let limits = Limits {
        max_elements: 1 << 12,
        max_rank: 5,
        ..Limits::default()
    };
    if let Ok(values) = t.decode(&limits) {
        assert_eq!(Some(values.len() as u64), t.element_count());
        if t.codec.has_channels() {
            assert!(values.iter().all(|v| v.is_finite()));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// Tensors past the 128 KiB at which the encoder decides the shuffle on a sample.
    #[test]
    fn large_sparse_tensors_round_trip(
        channels in 1usize..24,
        side in 20usize..64,
        zeros in 0.3f64..0.95,
        seed in any::<u64>(),
    ) {
        let n = channels * side * side;
        let mut x = seed | 1;
        let values: Vec<f32> = (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                if u < zeros { 0.0 } else { (i % 97) as f32 * 0.01 + u as f32 }
            })
            .collect();
        let shape = [1, channels, side, side];
        for codec in Codec::ALL {
            let t = WireTensor::encode(&shape, &values, codec).expect("encodes");
            let back = t.decode(&Limits::default()).expect("decodes");
            prop_assert_eq!(back.len(), n);
            if codec.loss() == transport::Loss::Exact {
                prop_assert!(back.iter().zip(&values).all(|(a, b)| a.to_bits() == b.to_bits()));
            }
            if codec.is_compressed() {
                prop_assert!(t.bytes.len() < n * codec.element_bytes());
            }
        }
    }
}
