//! Fuzzes the streaming frame reader the server uses: any bytes, arriving in any chunking,
//! must read to a frame or a typed error, never panic or hang, and the body buffer (charged to
//! a memory budget) must stay within twice the bytes that actually arrived plus one growth
//! step, however large the announced length. A frame that reads must decode as
//! `frame::decode` decodes the same bytes.
//!
//! The first byte sets the chunk size (1 to 256 bytes per read), the second the budget in KiB
//! (1 to 256); the rest is the stream.

#![no_main]

mod chunked;

use chunked::{Chunked, runtime};
use libfuzzer_sys::fuzz_target;
use transport::{FrameError, Limits, MemoryBudget, frame};

fuzz_target!(|data: &[u8]| {
    let [chunk, budget, stream @ ..] = data else {
        return;
    };
    let limits = Limits {
        max_frame_bytes: 1 << 20,
        max_rank: 4,
        max_elements: 1 << 16,
        max_tensors: 8,
    };
    let budget = MemoryBudget::new("fuzz", (u64::from(*budget) + 1) * 1024);
    let mut charge = budget.reservation();
    let mut reader = Chunked {
        data: stream,
        chunk: usize::from(*chunk) + 1,
    };
    let read = runtime().block_on(frame::read_body_within(
        &mut reader,
        &limits,
        None,
        &mut charge,
    ));
    let arrived = (stream.len() - reader.data.len()) as u64;
    assert!(
        charge.bytes() <= 2 * arrived + 64 * 1024,
        "{} bytes held for {arrived} arrived",
        charge.bytes()
    );
    assert!(budget.used() <= budget.cap());
    match read {
        Ok((body, stats)) => {
            assert_eq!(stats.bytes, body.len() as u64 + frame::HEADER_BYTES as u64);
            // Compared as text: a NaN in a message is not equal to itself.
            let whole = frame::decode(&stream[..stats.bytes as usize], &limits).map(|(m, _)| m);
            assert_eq!(
                format!("{:?}", frame::decode_body(&body, &limits)),
                format!("{whole:?}")
            );
        }
        Err(FrameError::OverBudget(e)) => assert!(e.used + e.wanted > e.cap),
        Err(_) => {}
    }
});
