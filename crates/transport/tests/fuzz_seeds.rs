//! The fuzz targets' seed frames are frames of this protocol version, so that the fuzzer starts
//! from messages the decoder accepts (a seed left at an old version reaches only error paths).

use std::path::Path;

use transport::{ErrorCode, FrameError, Limits, Message, Token, frame, read_hello};

/// Every seed of fuzz target `target`, by file name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    std::fs::read_dir(&dir)
        .expect("the seed directory")
        .map(|entry| {
            let path = entry.expect("an entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            (name, std::fs::read(&path).expect("a seed"))
        })
        .collect()
}

#[test]
fn every_frame_seed_decodes_as_the_message_its_name_says() {
    let mut seen = Vec::new();
    for (name, bytes) in seeds("frame_decoder") {
        let decoded = frame::decode(&bytes, &Limits::default());
        match (name.as_str(), decoded) {
            // One seed keeps an older version, for the mismatch path.
            ("v2", Err(FrameError::VersionMismatch { theirs: 2, .. })) => {}
            ("hello", Ok((Message::Hello(_), _)))
            | ("welcome", Ok((Message::Welcome(_), _)))
            | ("infer", Ok((Message::InferRequest(_), _)))
            | ("result", Ok((Message::InferResult(_), _)))
            | ("error", Ok((Message::Error(_), _)))
            | ("probe", Ok((Message::Probe(_), _)))
            | ("probereply", Ok((Message::ProbeReply(_), _)))
            | ("costrequest", Ok((Message::CostRequest(_), _)))
            | ("costreply", Ok((Message::CostReply(_), _)))
            | ("statusrequest", Ok((Message::StatusRequest, _)))
            | ("status", Ok((Message::Status(_), _))) => {}
            ("infer_file", Ok((Message::InferRequest(r), _))) => assert!(r.input_file.is_some()),
            (name, other) => panic!("seed `{name}` decodes to {other:?}"),
        }
        seen.push(name);
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "costreply",
            "costrequest",
            "error",
            "hello",
            "infer",
            "infer_file",
            "probe",
            "probereply",
            "result",
            "status",
            "statusrequest",
            "v2",
            "welcome"
        ]
    );
}

/// The handshake target's token (`fuzz/fuzz_targets/handshake.rs`).
const HANDSHAKE_TOKEN: &str = "cutpoint-fuzz-token-0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn every_handshake_seed_gets_the_verdict_its_name_says() {
    let token = Token::parse(HANDSHAKE_TOKEN, "the test").expect("a valid token");
    let mut seen = Vec::new();
    for (name, bytes) in seeds("handshake") {
        // The first byte is the target's chunk size; the rest is the stream.
        let mut stream = &bytes[1..];
        let verdict = read_hello(&mut stream, &Limits::default(), &token).await;
        match (name.as_str(), verdict) {
            ("hello", Ok(_)) => {}
            ("wrong_token", Err(r)) if r.code == ErrorCode::Unauthorized => {}
            ("probe", Err(r)) if r.code == ErrorCode::Unexpected => {}
            (name, other) => panic!("seed `{name}` gets {other:?}"),
        }
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen, ["hello", "probe", "wrong_token"]);
}
