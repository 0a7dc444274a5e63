//! Fuzzes the frame decoder: any byte string must decode to a message or a typed error,
//! never panic or hang. A message that decodes must re-encode and decode to the same bytes.
//! Allocation is bounded only by libFuzzer's `-rss_limit_mb`/`-malloc_limit_mb` (2 GB by
//! default) here; `runtime/tests/hostile.rs` measures it for the attacks that matter.

#![no_main]

use libfuzzer_sys::fuzz_target;
use transport::{Limits, frame};

fuzz_target!(|data: &[u8]| {
    // Small limits so that the fuzzer reaches the bounds quickly.
    let limits = Limits {
        max_frame_bytes: 1 << 20,
        max_rank: 4,
        max_elements: 1 << 16,
        max_tensors: 8,
    };
    if let Ok((message, used)) = frame::decode(data, &limits) {
        assert!(used <= data.len());
        let bytes = frame::encode(&message).expect("a decoded message encodes");
        let (again, _) = frame::decode(&bytes, &limits).expect("a re-encoded message decodes");
        let bytes_again = frame::encode(&again).expect("encodes");
        assert_eq!(bytes, bytes_again, "decode/encode is not stable");
    }
});
