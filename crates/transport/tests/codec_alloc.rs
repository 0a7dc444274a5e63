//! Decoding never allocates beyond what the limits allow: a counting global allocator ([`cap`])
//! refuses, during each decode, any allocation past the element limit's worth of decompressed
//! bytes plus the f32 output. An over-allocation aborts the test (or, where the decoder asks
//! with `try_reserve`, shows as a "cannot allocate" error, which fails it too).
//!
//! One test in this binary, so that no other test allocates while a limit is set.

use std::alloc::System;

use cap::Cap;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use transport::{Affine, Codec, Limits, TensorError, WireTensor};

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

const LIMITS: Limits = Limits {
    max_frame_bytes: 1 << 20,
    max_rank: 8,
    max_elements: 1 << 14,
    max_tensors: 8,
};

/// At most the decompressed bytes (4 per element at most) and the f32 output, plus room for
/// an error message.
const BUDGET: usize = 8 * (1 << 14) + (16 << 10);

fn decode_within_budget(t: &WireTensor, budget: usize) -> Result<Vec<f32>, TensorError> {
    let before = ALLOC.allocated();
    ALLOC
        .set_limit(before + budget)
        .expect("limit above the allocated bytes");
    let out = t.decode(&LIMITS);
    ALLOC.set_limit(usize::MAX).expect("no limit");
    if let Err(TensorError::Corrupt { reason, .. }) = &out {
        assert!(!reason.contains("cannot allocate"), "{reason}");
    }
    out
}

/// A lossless payload of `n` zero bytes: a few bytes that expand a lot.
fn zeros_frame(n: usize) -> Vec<u8> {
    let t = WireTensor::encode(&[n / 4], &vec![0.0; n / 4], Codec::Lossless).expect("encodes");
    t.bytes
}

#[test]
fn decoding_never_allocates_beyond_the_limits() {
    // Huge declared shapes under every codec, with a payload that would expand: refused with
    // almost nothing allocated.
    let bomb = zeros_frame(1 << 20);
    for codec in Codec::ALL {
        for shape in [
            vec![1u64 << 40],
            vec![1, 1 << 20, 1 << 20],
            vec![u64::MAX, 2],
        ] {
            let t = WireTensor {
                shape,
                codec,
                channels: vec![],
                bytes: bomb.clone(),
            };
            let err = decode_within_budget(&t, 4096).expect_err("refused");
            assert!(
                matches!(err, TensorError::TooManyElements { .. }),
                "{err:?}"
            );
        }
        // Within the element limit, but the stream holds far more than the shape declares.
        let t = WireTensor {
            shape: vec![1 << 14],
            codec,
            channels: if codec.has_channels() {
                vec![Affine {
                    min: 0.0,
                    scale: 1.0,
                }]
            } else {
                vec![]
            },
            bytes: bomb.clone(),
        };
        assert!(decode_within_budget(&t, BUDGET).is_err(), "{codec}");
    }
    // The largest tensor the limits allow decodes within the budget under every codec.
    let values: Vec<f32> = (0..1 << 14)
        .map(|i| ((i % 251) as f32 * 0.37).sin())
        .collect();
    for codec in Codec::ALL {
        let t = WireTensor::encode(&[1, 16, 32, 32], &values, codec).expect("encodes");
        let back = decode_within_budget(&t, BUDGET).expect("decodes");
        assert_eq!(back.len(), values.len());
    }

    // Random headers and payloads, and mutated valid ones.
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        prop::collection::vec(prop_oneof![0u64..40, any::<u64>()], 0..5),
        prop::sample::select(Codec::ALL.to_vec()),
        prop::collection::vec((-10f32..10.0, 0f32..1.0), 0..40),
        prop::collection::vec(any::<u8>(), 0..512),
        0usize..3,
    );
    runner
        .run(&strategy, |(shape, codec, channels, noise, kind)| {
            let bytes = match kind {
                // Random bytes.
                0 => noise,
                // A zero bomb with its tail replaced by noise.
                1 => {
                    let mut b = zeros_frame(1 << 20);
                    b.truncate(b.len().saturating_sub(noise.len().min(8)));
                    b.extend(&noise);
                    b
                }
                // A real compressed payload of random levels.
                _ => {
                    let n = noise.len();
                    let v: Vec<f32> = noise.iter().map(|&b| f32::from(b)).collect();
                    let mut t = WireTensor::encode(&[n], &v, codec).expect("encodes");
                    if let Some(first) = t.bytes.get_mut(n / 3) {
                        *first ^= 0x5a;
                    }
                    t.bytes
                }
            };
            let t = WireTensor {
                shape,
                codec,
                channels: channels
                    .into_iter()
                    .map(|(min, scale)| Affine { min, scale })
                    .collect(),
                bytes,
            };
            if let Ok(values) = decode_within_budget(&t, BUDGET) {
                prop_assert_eq!(Some(values.len() as u64), t.element_count());
            }
            Ok(())
        })
        .expect("no decode allocates beyond the budget");
}
