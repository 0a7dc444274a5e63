//! Fuzzes the server's handshake: any bytes, arriving in any chunking, as a connection's first
//! stream must end in the server's verdict, never a panic or a hang: let in only for a hello
//! whose token matches, and otherwise a refusal that says why. A frame that carries such a hello
//! must be let in whatever its chunking.
//!
//! The first byte sets the chunk size (1 to 256 bytes per read); the rest is the stream.

#![no_main]

mod chunked;

use std::sync::OnceLock;

use chunked::{Chunked, runtime};
use libfuzzer_sys::fuzz_target;
use transport::{ErrorCode, Limits, Message, Token, frame, read_hello};

/// The token the fuzzer's server expects (the seeds' hello carries it).
const TOKEN: &str = "cutpoint-fuzz-token-0123456789abcdef0123456789abcdef";

fn token() -> &'static Token {
    static TOKEN_VALUE: OnceLock<Token> = OnceLock::new();
    TOKEN_VALUE.get_or_init(|| Token::parse(TOKEN, "the fuzz target").expect("a valid token"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let mut reader = Chunked {
        data: stream,
        chunk: usize::from(chunk) + 1,
    };
    let limits = Limits::default();
    let verdict = runtime().block_on(read_hello(&mut reader, &limits, token()));
    // What the same bytes decode to in one piece, as a hello or not.
    let hello = match frame::decode(stream, &limits) {
        Ok((Message::Hello(hello), _)) if stream.len() <= 64 * 1024 + 4 => Some(hello),
        _ => None,
    };
    match verdict {
        Ok(let_in) => {
            assert!(token().matches(&let_in.token), "let in without the token");
        }
        Err(refusal) => {
            assert!(!refusal.message.is_empty(), "a refusal says why");
            if let Some(hello) = hello.filter(|h| token().matches(&h.token)) {
                panic!("a hello with the token was refused ({:?}: {})", refusal.code, refusal.message);
            }
            if refusal.code == ErrorCode::Unauthorized {
                assert!(matches!(frame::decode(stream, &limits), Ok((Message::Hello(_), _))));
            }
        }
    }
});
