//! Fuzzes the cloud's request checking: any bytes decoded as an inference request (through
//! the same bounded decoder as the server's frames) and checked against LeNet and a small
//! ResNet-18 as the server checks them (cut, boundary tensors, batch cap, input file, payload
//! decoding) must be accepted or refused with a reply, never panic or hang (or allocate past
//! libFuzzer's malloc limit).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use models::{Net, zoo};
use transport::{InferRequest, Limits, Message, frame};

fn nets() -> &'static [Net] {
    static NETS: OnceLock<Vec<Net>> = OnceLock::new();
    NETS.get_or_init(|| {
        vec![
            zoo::build("lenet").expect("lenet"),
            zoo::build_with_input("resnet18", vec![3, 32, 32]).expect("resnet18"),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_frame_bytes: 1 << 20,
        max_rank: 8,
        max_elements: 1 << 16,
        max_tensors: 64,
    };
    // A whole frame, or a bare MessagePack request (so that the fuzzer need not find the
    // envelope first).
    let request = match frame::decode(data, &limits) {
        Ok((Message::InferRequest(request), _)) => request,
        _ => match rmp_serde::from_slice::<InferRequest>(data) {
            Ok(request)
                if Message::InferRequest(request.clone())
                    .validate(&limits)
                    .is_ok() =>
            {
                request
            }
            _ => return,
        },
    };
    for net in nets() {
        if let Err(reply) = runtime::check_request(net, request.clone(), 4) {
            assert!(!reply.message.is_empty(), "a refusal says why");
        }
    }
});
