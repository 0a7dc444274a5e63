//! Fuzzes the boundary-tensor decoders: any header and payload under any codec must decode to
//! exactly the declared number of values or to a typed error, never panic or hang (allocation
//! is bounded here by libFuzzer's malloc limit only; `transport/tests/codec_alloc.rs` measures
//! it against the limits). A raw or lossless tensor that decodes must re-encode to the same bits.
//!
//! The first byte picks how the rest is read:
//! - even: a compact header that reaches the codecs directly: codec (byte % 6), rank
//!   (byte % 5), one byte per dimension, a channel-parameter count (byte % 8) and 8 bytes
//!   (min, scale: f32 little-endian) per parameter; the remaining bytes are the payload;
//! - odd: a MessagePack `WireTensor`, through serde's bounded deserialisers.

#![no_main]

use libfuzzer_sys::fuzz_target;
use transport::{Affine, Codec, Limits, WireTensor};

fuzz_target!(|data: &[u8]| {
    // Small limits so that the fuzzer reaches the bounds quickly.
    let limits = Limits {
        max_frame_bytes: 1 << 20,
        max_rank: 4,
        max_elements: 1 << 16,
        max_tensors: 8,
    };
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let tensor = if mode % 2 == 0 {
        compact(rest)
    } else {
        rmp_serde::from_slice::<WireTensor>(rest).ok()
    };
    let Some(tensor) = tensor else {
        return;
    };
    let Ok(values) = tensor.decode(&limits) else {
        return;
    };
    assert_eq!(Some(values.len() as u64), tensor.element_count());
    if tensor.codec.has_channels() {
        assert!(
            values.iter().all(|v| v.is_finite()),
            "int8 decodes to finite values"
        );
    }
    let shape = tensor
        .shape_usize()
        .expect("a decoded shape fits in memory");
    let again = WireTensor::encode(&shape, &values, tensor.codec);
    if matches!(tensor.codec, Codec::Raw | Codec::Lossless) {
        let again = again.expect("any f32 encodes as raw and lossless");
        let back = again.decode(&limits).expect("a re-encoded tensor decodes");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&back),
            bits(&values),
            "lossless round trip is not bit-exact"
        );
    }
});

/// Reads the compact header described above; `None` when the input is too short for it.
fn compact(data: &[u8]) -> Option<WireTensor> {
    let (&codec, data) = data.split_first()?;
    let (&rank, data) = data.split_first()?;
    let rank = usize::from(rank % 5);
    let (dims, data) = data.split_at_checked(rank)?;
    let (&count, data) = data.split_first()?;
    let (params, bytes) = data.split_at_checked(usize::from(count % 8) * 8)?;
    let f32_at = |b: &[u8]| f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    Some(WireTensor {
        shape: dims.iter().map(|&d| u64::from(d)).collect(),
        codec: Codec::ALL[usize::from(codec) % Codec::ALL.len()],
        channels: params
            .chunks_exact(8)
            .map(|p| Affine {
                min: f32_at(&p[..4]),
                scale: f32_at(&p[4..]),
            })
            .collect(),
        bytes: bytes.to_vec(),
    })
}
