//! Frames: a u32 big-endian body length, then a MessagePack body `[version, message]`.
//!
//! Decoding checks the length against [`Limits::max_frame_bytes`] before reading the body,
//! grows the body buffer only as bytes arrive (optionally charged to a memory budget), decodes the version before the message, and
//! validates every tensor before the message is handed out.

use std::time::Instant;

use serde::de::IgnoredAny;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::budget::{OverBudget, Reservation};
use crate::limits::Limits;
use crate::message::{Message, MessageError, PROTOCOL_VERSION, TransferReport};
use crate::shaper::{SHAPER_CHUNK_BYTES, Shaper};

/// Bytes in the length prefix.
pub const HEADER_BYTES: usize = 4;

/// Smallest step by which the body buffer grows while bytes arrive (it doubles with what has
/// arrived, so a large frame is copied a few times at most).
const READ_STEP_BYTES: usize = 64 * 1024;

/// The body buffer before any body byte has arrived: a peer that announces frames and sends
/// nothing makes each cost this much at most.
const FIRST_STEP_BYTES: usize = 4 * 1024;

/// Why a frame could not be read, decoded or written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameError {
    /// The stream ended before any byte of a frame.
    #[error("the peer closed the stream before sending a frame")]
    Closed,
    /// The length prefix exceeds the frame limit.
    #[error(
        "frame of {len} bytes exceeds the limit of {max} bytes; send smaller tensors (e.g. int8) or raise the frame limit on both sides"
    )]
    TooLarge {
        /// Declared body length.
        len: u64,
        /// Configured limit.
        max: u32,
    },
    /// The stream ended inside a frame.
    #[error("truncated frame: {expected} bytes announced, the stream ended after {got}")]
    Truncated {
        /// Bytes announced (header included).
        expected: u64,
        /// Bytes received (header included).
        got: u64,
    },
    /// The body is not a valid MessagePack message.
    #[error("malformed frame body: {0}")]
    Malformed(String),
    /// The body is from another protocol version.
    #[error(
        "protocol version mismatch: this side speaks v{ours}, the peer v{theirs}; upgrade the older of edge and cloud so both match"
    )]
    VersionMismatch {
        /// Our version.
        ours: u16,
        /// The peer's version.
        theirs: u16,
    },
    /// The message decoded but breaks a bound.
    #[error("invalid message: {0}")]
    Invalid(#[from] MessageError),
    /// The message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// The stream failed.
    #[error("stream I/O failed: {0}")]
    Io(String),
    /// Holding the frame would exceed a memory budget.
    #[error("the frame cannot be held: {0}")]
    OverBudget(#[from] OverBudget),
    /// The frame did not arrive within the reader's deadline.
    #[error(
        "the frame did not arrive within {ms} ms; the link is too slow for a frame this large or the peer stopped sending"
    )]
    Deadline {
        /// The deadline, ms.
        ms: u64,
    },
}

/// Timing of one frame as the reader saw it.
#[derive(Debug, Clone, Copy)]
pub struct FrameStats {
    /// Frame bytes, header included.
    pub bytes: u64,
    /// When the header had arrived.
    pub first_byte_at: Instant,
    /// When the last body byte had arrived.
    pub complete_at: Instant,
}

impl FrameStats {
    /// The frame as a [`TransferReport`].
    pub fn report(&self) -> TransferReport {
        TransferReport {
            bytes: self.bytes,
            span_us: self
                .complete_at
                .duration_since(self.first_byte_at)
                .as_micros()
                .try_into()
                .unwrap_or(u64::MAX),
        }
    }
}

/// Encodes `message` as a complete frame (header and body) for this protocol version.
pub fn encode(message: &Message) -> Result<Vec<u8>, FrameError> {
    encode_with_version(PROTOCOL_VERSION, message)
}

/// Encodes `message` as a frame that claims protocol `version`.
pub fn encode_with_version(version: u16, message: &Message) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; HEADER_BYTES];
    rmp_serde::encode::write(&mut out, &(version, message))
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    let body_len = u32::try_from(out.len() - HEADER_BYTES).map_err(|_| FrameError::TooLarge {
        len: (out.len() - HEADER_BYTES) as u64,
        max: u32::MAX,
    })?;
    out[..HEADER_BYTES].copy_from_slice(&body_len.to_be_bytes());
    Ok(out)
}

/// Checks a body length announced by a header.
pub fn check_len(len: u32, limits: &Limits) -> Result<(), FrameError> {
    if len > limits.max_frame_bytes {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max: limits.max_frame_bytes,
        });
    }
    Ok(())
}

/// Decodes and validates a frame body (without its header).
pub fn decode_body(body: &[u8], limits: &Limits) -> Result<Message, FrameError> {
    match rmp_serde::from_slice::<(u16, Message)>(body) {
        Ok((version, message)) => {
            if version != PROTOCOL_VERSION {
                return Err(FrameError::VersionMismatch {
                    ours: PROTOCOL_VERSION,
                    theirs: version,
                });
            }
            message.validate(limits)?;
            Ok(message)
        }
        Err(err) => {
            // A peer of another version may send a message we cannot parse; say so if its
            // version number is readable.
            if let Ok((version, IgnoredAny)) = rmp_serde::from_slice::<(u16, IgnoredAny)>(body)
                && version != PROTOCOL_VERSION
            {
                return Err(FrameError::VersionMismatch {
                    ours: PROTOCOL_VERSION,
                    theirs: version,
                });
            }
            Err(FrameError::Malformed(err.to_string()))
        }
    }
}

/// Decodes one frame from the start of `buf`, returning the message and the bytes consumed.
pub fn decode(buf: &[u8], limits: &Limits) -> Result<(Message, usize), FrameError> {
    let Some(header) = buf.first_chunk::<HEADER_BYTES>() else {
        return Err(if buf.is_empty() {
            FrameError::Closed
        } else {
            FrameError::Truncated {
                expected: HEADER_BYTES as u64,
                got: buf.len() as u64,
            }
        });
    };
    let len = u32::from_be_bytes(*header);
    check_len(len, limits)?;
    let total = HEADER_BYTES + len as usize;
    let body = buf.get(HEADER_BYTES..total).ok_or(FrameError::Truncated {
        expected: total as u64,
        got: buf.len() as u64,
    })?;
    Ok((decode_body(body, limits)?, total))
}

/// Reads one frame body from `reader`, bounded by `limits`, optionally paced by `shaper`.
///
/// The body buffer grows only as bytes arrive (geometrically, never past the announced length
/// and never zero-filled ahead), so a peer that announces a large frame and sends little makes
/// the reader hold little.
pub async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: &Limits,
    shaper: Option<&Shaper>,
) -> Result<(Vec<u8>, FrameStats), FrameError> {
    read_body_charged(reader, limits, shaper, None).await
}

/// [`read_body`] that charges every growth of the body buffer to `charge` before allocating
/// it, and stops with [`FrameError::OverBudget`] when the budget refuses. The reservation keeps
/// the buffer's size when the frame is complete; the caller gives it back.
pub async fn read_body_within<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: &Limits,
    shaper: Option<&Shaper>,
    charge: &mut Reservation,
) -> Result<(Vec<u8>, FrameStats), FrameError> {
    read_body_charged(reader, limits, shaper, Some(charge)).await
}

async fn read_body_charged<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: &Limits,
    shaper: Option<&Shaper>,
    mut charge: Option<&mut Reservation>,
) -> Result<(Vec<u8>, FrameStats), FrameError> {
    let io = |e: std::io::Error| FrameError::Io(e.to_string());
    let mut header = [0u8; HEADER_BYTES];
    let mut got = 0;
    while got < HEADER_BYTES {
        let n = reader.read(&mut header[got..]).await.map_err(io)?;
        if n == 0 {
            return Err(if got == 0 {
                FrameError::Closed
            } else {
                FrameError::Truncated {
                    expected: HEADER_BYTES as u64,
                    got: got as u64,
                }
            });
        }
        got += n;
    }
    let first_byte_at = Instant::now();
    let len = u32::from_be_bytes(header);
    check_len(len, limits)?;
    let len = len as usize;
    let mut body: Vec<u8> = Vec::new();
    while body.len() < len {
        let remaining = len - body.len();
        if body.capacity() == body.len() {
            // A first small step before anything has arrived, then double what has arrived
            // (at least one step), never past the announced length.
            let extra = if body.is_empty() {
                FIRST_STEP_BYTES
            } else {
                body.len().max(READ_STEP_BYTES)
            }
            .min(remaining);
            if let Some(charge) = charge.as_deref_mut() {
                charge.grow(extra as u64)?;
            }
            body.reserve_exact(extra);
        }
        let room = (body.capacity() - body.len()).min(remaining);
        let step = match shaper {
            Some(shaper) => {
                let step = room.min(SHAPER_CHUNK_BYTES);
                shaper.acquire(step).await;
                step
            }
            None => room,
        };
        let target = body.len() + step;
        while body.len() < target {
            let want = (target - body.len()) as u64;
            // Reads into the spare capacity: nothing is zero-filled ahead of the bytes.
            let n = (&mut *reader)
                .take(want)
                .read_buf(&mut body)
                .await
                .map_err(io)?;
            if n == 0 {
                return Err(FrameError::Truncated {
                    expected: (HEADER_BYTES + len) as u64,
                    got: (HEADER_BYTES + body.len()) as u64,
                });
            }
        }
    }
    let stats = FrameStats {
        bytes: (HEADER_BYTES + len) as u64,
        first_byte_at,
        complete_at: Instant::now(),
    };
    Ok((body, stats))
}

/// Reads and decodes one frame.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: &Limits,
    shaper: Option<&Shaper>,
) -> Result<(Message, FrameStats), FrameError> {
    let (body, stats) = read_body(reader, limits, shaper).await?;
    Ok((decode_body(&body, limits)?, stats))
}

/// Writes already encoded frame bytes, optionally paced by `shaper`.
pub async fn write_bytes<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    shaper: Option<&Shaper>,
) -> Result<(), FrameError> {
    let io = |e: std::io::Error| FrameError::Io(e.to_string());
    match shaper {
        None => writer.write_all(bytes).await.map_err(io)?,
        Some(shaper) => {
            for chunk in bytes.chunks(SHAPER_CHUNK_BYTES) {
                shaper.acquire(chunk.len()).await;
                writer.write_all(chunk).await.map_err(io)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::codec::{Affine, Codec};
    use crate::limits::{HARD_MAX_TENSORS, MAX_ID_BYTES, MAX_REQUEST_NODES};
    use crate::message::*;
    use crate::tensor::{TensorError, WireTensor};

    fn request(tensor: WireTensor) -> Message {
        Message::InferRequest(InferRequest {
            model_id: "alexnet".into(),
            weights_hash: "abc".into(),
            cloud_nodes: vec!["fc".into()],
            boundary: BTreeMap::from([("conv1".to_owned(), tensor)]),
            input_file: None,
        })
    }

    fn frame_with_body(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn round_trip_through_buffer() {
        let msg = request(WireTensor::from_f32(&[1, 2], &[1.0, 2.0]).expect("valid"));
        let bytes = encode(&msg).expect("encodes");
        let (back, used) = decode(&bytes, &Limits::default()).expect("decodes");
        assert_eq!(back, msg);
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn oversized_length_is_refused_before_reading_the_body() {
        let limits = Limits {
            max_frame_bytes: 1024,
            ..Limits::default()
        };
        let bytes = 1025u32.to_be_bytes();
        assert_eq!(
            decode(&bytes, &limits),
            Err(FrameError::TooLarge {
                len: 1025,
                max: 1024
            })
        );
    }

    #[test]
    fn truncated_frames_are_reported() {
        let bytes = encode(&Message::Error(ErrorReply {
            code: ErrorCode::Busy,
            message: "x".into(),
        }))
        .expect("encodes");
        let cut = &bytes[..bytes.len() - 1];
        assert!(matches!(
            decode(cut, &Limits::default()),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&bytes[..2], &Limits::default()),
            Err(FrameError::Truncated {
                expected: 4,
                got: 2
            })
        ));
        assert_eq!(decode(&[], &Limits::default()), Err(FrameError::Closed));
    }

    #[test]
    fn malformed_body_is_reported() {
        let bytes = frame_with_body(&[0xc1, 0xff, 0x00]);
        assert!(matches!(
            decode(&bytes, &Limits::default()),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn other_version_is_recognised_even_when_unparseable() {
        // [next, "SomethingNew"]: a message of the next version that this build does not know.
        let next = PROTOCOL_VERSION + 1;
        let body = rmp_serde::to_vec(&(next, "SomethingNew")).expect("encodes");
        assert_eq!(
            decode(&frame_with_body(&body), &Limits::default()),
            Err(FrameError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: next
            })
        );
        let msg = Message::Error(ErrorReply {
            code: ErrorCode::Busy,
            message: String::new(),
        });
        let bytes = encode_with_version(7, &msg).expect("encodes");
        assert_eq!(
            decode(&bytes, &Limits::default()),
            Err(FrameError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: 7
            })
        );
    }

    #[test]
    fn shape_bytes_mismatch_is_reported() {
        let bad = WireTensor {
            shape: vec![2, 2],
            codec: Codec::Raw,
            channels: vec![],
            bytes: vec![0; 15],
        };
        let bytes = encode(&request(bad)).expect("encodes");
        assert!(matches!(
            decode(&bytes, &Limits::default()),
            Err(FrameError::Invalid(MessageError::Tensor {
                source: TensorError::LengthMismatch { .. },
                ..
            }))
        ));
    }

    #[test]
    fn huge_rank_is_refused_while_decoding() {
        #[derive(serde::Serialize)]
        struct Raw {
            shape: Vec<u64>,
            codec: Codec,
            channels: Vec<Affine>,
            #[serde(with = "serde_bytes")]
            bytes: Vec<u8>,
        }
        #[derive(serde::Serialize)]
        enum RawMessage {
            InferResult {
                output: Raw,
                cloud_ms: f64,
                queue_ms: f64,
                decode_ms: f64,
                upload: TransferReport,
            },
        }
        let raw = RawMessage::InferResult {
            output: Raw {
                shape: vec![1; 1000],
                codec: Codec::Raw,
                channels: vec![],
                bytes: vec![0; 4],
            },
            cloud_ms: 0.0,
            queue_ms: 0.0,
            decode_ms: 0.0,
            upload: TransferReport::default(),
        };
        let body = rmp_serde::to_vec(&(PROTOCOL_VERSION, raw)).expect("encodes");
        assert!(matches!(
            decode(&frame_with_body(&body), &Limits::default()),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn element_limit_is_enforced() {
        let t = WireTensor::from_f32(&[4, 4], &[0.0; 16]).expect("valid");
        let limits = Limits {
            max_elements: 15,
            ..Limits::default()
        };
        let bytes = encode(&request(t)).expect("encodes");
        assert!(matches!(
            decode(&bytes, &limits),
            Err(FrameError::Invalid(MessageError::Tensor {
                source: TensorError::TooManyElements { .. },
                ..
            }))
        ));
    }

    #[test]
    fn unknown_error_code_decodes_as_unknown() {
        #[derive(serde::Serialize)]
        enum FutureCode {
            RateLimited,
        }
        #[derive(serde::Serialize)]
        struct FutureReply {
            code: FutureCode,
            message: String,
        }
        #[derive(serde::Serialize)]
        enum FutureMessage {
            Error(FutureReply),
        }
        let body = rmp_serde::to_vec(&(
            PROTOCOL_VERSION,
            FutureMessage::Error(FutureReply {
                code: FutureCode::RateLimited,
                message: "slow down".into(),
            }),
        ))
        .expect("encodes");
        let (msg, _) = decode(&frame_with_body(&body), &Limits::default()).expect("decodes");
        assert!(matches!(
            msg,
            Message::Error(ErrorReply {
                code: ErrorCode::Unknown,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn stream_reader_refuses_announced_but_unsent_bytes_without_allocating_them() {
        // Announce 60 MiB, send 10 bytes, close: the reader reports truncation.
        let mut data = (60u32 * 1024 * 1024).to_be_bytes().to_vec();
        data.extend_from_slice(&[0; 10]);
        let mut reader = &data[..];
        let err = read_frame(&mut reader, &Limits::default(), None)
            .await
            .expect_err("truncated");
        assert_eq!(
            err,
            FrameError::Truncated {
                expected: 60 * 1024 * 1024 + 4,
                got: 14
            }
        );
    }

    #[test]
    fn lists_and_ids_are_bounded_while_decoding() {
        let t = || WireTensor::from_f32(&[1], &[1.0]).expect("valid");
        let limits = Limits::default();
        let with = |f: &dyn Fn(&mut InferRequest)| {
            let Message::InferRequest(mut req) = request(t()) else {
                unreachable!("a request")
            };
            f(&mut req);
            decode(
                &encode(&Message::InferRequest(req)).expect("encodes"),
                &limits,
            )
        };
        let refused = |r: Result<(Message, usize), FrameError>, needle: &str| match r {
            Err(FrameError::Malformed(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("{other:?}"),
        };
        refused(
            with(&|r| r.cloud_nodes = vec![String::new(); MAX_REQUEST_NODES + 1]),
            "at most 65536 node ids",
        );
        refused(
            with(&|r| {
                r.boundary = (0..=HARD_MAX_TENSORS)
                    .map(|i| (i.to_string(), t()))
                    .collect()
            }),
            "at most 4096 boundary tensors",
        );
        refused(
            with(&|r| r.model_id = "m".repeat(MAX_ID_BYTES + 1)),
            "at most 1024 bytes",
        );
        refused(
            with(&|r| r.cloud_nodes = vec!["n".repeat(MAX_ID_BYTES + 1)]),
            "at most 1024 bytes",
        );
        // At the bounds, they decode.
        assert!(with(&|r| r.cloud_nodes = vec![String::new(); MAX_REQUEST_NODES]).is_ok());
        assert!(with(&|r| r.model_id = "m".repeat(MAX_ID_BYTES)).is_ok());
    }

    #[test]
    fn cost_tables_are_bounded_while_decoding() {
        use crate::message::{
            CloudCosts, CodecSpeed, DecodingCosts, MAX_CODEC_SPEEDS, MAX_COST_NODES, NodeCost,
        };
        let node = || NodeCost {
            id: String::new(),
            ms: 1.0,
        };
        let speed = CodecSpeed {
            codec: crate::codec::Codec::Raw,
            decode_ms_per_mb: 1.0,
        };
        let limits = Limits::default();
        let with = |f: &dyn Fn(&mut CloudCosts)| {
            let mut costs = CloudCosts {
                model_id: "lenet".into(),
                weights_hash: "h".into(),
                nodes: vec![node()],
                method: "median of 5 passes".into(),
                decoding: DecodingCosts {
                    image_ms_per_mpixel: 1.0,
                    codecs: vec![speed],
                },
            };
            f(&mut costs);
            decode(
                &encode(&Message::CostReply(costs)).expect("encodes"),
                &limits,
            )
        };
        let refused = |r: Result<(Message, usize), FrameError>, needle: &str| match r {
            Err(FrameError::Malformed(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("{other:?}"),
        };
        refused(
            with(&|c| c.nodes = vec![node(); MAX_COST_NODES + 1]),
            "at most 100000 node costs",
        );
        refused(
            with(&|c| c.decoding.codecs = vec![speed; MAX_CODEC_SPEEDS + 1]),
            "at most 6 codec speeds",
        );
        refused(
            with(&|c| c.nodes[0].id = "n".repeat(MAX_ID_BYTES + 1)),
            "at most 1024 bytes",
        );
        refused(
            with(&|c| c.method = "m".repeat(MAX_ID_BYTES + 1)),
            "at most 1024 bytes",
        );
        // At the bound, a table decodes.
        assert!(with(&|c| c.nodes = vec![node(); MAX_COST_NODES]).is_ok());
    }

    #[tokio::test]
    async fn the_buffer_is_charged_as_bytes_arrive_and_stops_at_the_budget() {
        // Announce 60 MiB, send 100 KiB: the charge follows the bytes, not the announcement.
        let mut data = (60u32 * 1024 * 1024).to_be_bytes().to_vec();
        data.extend_from_slice(&[7; 100 * 1024]);
        let budget = crate::budget::MemoryBudget::new("test", 1 << 30);
        let mut charge = budget.reservation();
        let mut reader = &data[..];
        let err = read_body_within(&mut reader, &Limits::default(), None, &mut charge)
            .await
            .expect_err("truncated");
        assert!(matches!(err, FrameError::Truncated { .. }), "{err}");
        assert!(
            charge.bytes() <= 2 * 100 * 1024 + 64 * 1024,
            "{} bytes charged",
            charge.bytes()
        );
        // A budget smaller than the body stops the read with OverBudget.
        let small = crate::budget::MemoryBudget::new("test", 32 * 1024);
        let mut charge = small.reservation();
        let mut reader = &data[..];
        let err = read_body_within(&mut reader, &Limits::default(), None, &mut charge)
            .await
            .expect_err("over budget");
        assert!(matches!(err, FrameError::OverBudget(_)), "{err}");
        assert!(small.used() <= 32 * 1024);
        // A whole frame reads, charged about its size.
        let msg = request(WireTensor::from_f32(&[3000], &[0.5; 3000]).expect("valid"));
        let bytes = encode(&msg).expect("encodes");
        let mut charge = budget.reservation();
        let mut reader = &bytes[..];
        let (body, _) = read_body_within(&mut reader, &Limits::default(), None, &mut charge)
            .await
            .expect("reads");
        assert_eq!(
            decode_body(&body, &Limits::default()).expect("decodes"),
            msg
        );
        assert!(charge.bytes() >= body.len() as u64);
    }

    #[tokio::test]
    async fn stream_round_trip_with_stats() {
        let msg = request(WireTensor::from_f32(&[3], &[1.0, 2.0, 3.0]).expect("valid"));
        let bytes = encode(&msg).expect("encodes");
        let mut out = Vec::new();
        write_bytes(&mut out, &bytes, None).await.expect("writes");
        let mut reader = &out[..];
        let (back, stats) = read_frame(&mut reader, &Limits::default(), None)
            .await
            .expect("reads");
        assert_eq!(back, msg);
        assert_eq!(stats.bytes, bytes.len() as u64);
    }

    fn arb_tensor() -> impl Strategy<Value = WireTensor> {
        let raw = prop::collection::vec(0usize..5, 0..4).prop_flat_map(|shape| {
            let n: usize = shape.iter().product();
            prop::collection::vec(any::<u32>(), n).prop_map(move |bits| WireTensor {
                shape: shape.iter().map(|&d| d as u64).collect(),
                codec: Codec::Raw,
                channels: vec![],
                bytes: bits.iter().flat_map(|b| b.to_le_bytes()).collect(),
            })
        });
        let encoded = (
            prop::collection::vec(0usize..5, 0..4),
            prop::sample::select(Codec::ALL.to_vec()),
        )
            .prop_flat_map(|(shape, codec)| {
                let n: usize = shape.iter().product();
                prop::collection::vec(-1e4f32..1e4, n).prop_map(move |values| {
                    WireTensor::encode(&shape, &values, codec).expect("finite values in range")
                })
            });
        prop_oneof![raw, encoded]
    }

    fn arb_code() -> impl Strategy<Value = ErrorCode> {
        prop_oneof![
            Just(ErrorCode::BadFrame),
            Just(ErrorCode::VersionMismatch),
            Just(ErrorCode::Unauthorized),
            Just(ErrorCode::Unexpected),
            Just(ErrorCode::UnknownModel),
            Just(ErrorCode::WeightsMismatch),
            Just(ErrorCode::BadRequest),
            Just(ErrorCode::Busy),
            Just(ErrorCode::Internal),
        ]
    }

    fn arb_report() -> impl Strategy<Value = TransferReport> {
        (any::<u64>(), any::<u64>()).prop_map(|(bytes, span_us)| TransferReport { bytes, span_us })
    }

    /// A server state with figures in range (out-of-range ones are refused on decode).
    fn arb_state() -> impl Strategy<Value = ServerState> {
        (any::<u32>(), any::<u32>(), 0.0f64..1e7, 0.0f64..1e7).prop_map(
            |(workers, in_system, service_ms, wait_ms)| ServerState {
                workers,
                in_system,
                service_ms,
                wait_ms,
            },
        )
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (".*", ".*")
                .prop_map(|(token, client_name)| Message::Hello(Hello { token, client_name })),
            (
                ".*",
                prop::collection::vec((".*", "[0-9a-f]{0,64}"), 0..4),
                arb_state(),
                (any::<u32>(), any::<u32>(), any::<u32>())
            )
                .prop_map(|(server_name, models, state, (frame, probe, batch))| {
                    Message::Welcome(Welcome {
                        server_name,
                        models: models
                            .into_iter()
                            .map(|(id, weights_hash)| ModelOffer { id, weights_hash })
                            .collect(),
                        state,
                        limits: ServerLimits {
                            max_frame_bytes: frame,
                            max_probe_reply_bytes: probe,
                            max_batch: batch,
                        },
                    })
                }),
            (
                ".*",
                ".*",
                prop::collection::vec(".*", 0..5),
                prop::collection::btree_map(".*", arb_tensor(), 0..4),
                prop::option::of(prop::collection::vec(any::<u8>(), 0..64))
            )
                .prop_map(
                    |(model_id, weights_hash, cloud_nodes, boundary, input_file)| {
                        Message::InferRequest(InferRequest {
                            model_id,
                            weights_hash,
                            cloud_nodes,
                            boundary,
                            input_file,
                        })
                    }
                ),
            (
                arb_tensor(),
                (any::<f64>(), any::<f64>(), any::<f64>()),
                0.0f64..1e7,
                arb_report(),
                arb_state()
            )
                .prop_map(
                    |(output, (cloud_ms, queue_ms, decode_ms), load_ms, upload, state)| {
                        Message::InferResult(InferResult {
                            output,
                            cloud_ms,
                            queue_ms,
                            decode_ms,
                            load_ms,
                            upload,
                            state,
                        })
                    }
                ),
            (arb_code(), ".*")
                .prop_map(|(code, message)| Message::Error(ErrorReply { code, message })),
            (prop::collection::vec(any::<u8>(), 0..256), any::<u32>()).prop_map(
                |(payload, reply_bytes)| Message::Probe(Probe {
                    payload,
                    reply_bytes
                })
            ),
            (
                arb_report(),
                prop::collection::vec(any::<u8>(), 0..256),
                arb_state()
            )
                .prop_map(|(upload, payload, state)| Message::ProbeReply(ProbeReply {
                    upload,
                    payload,
                    state
                })),
            (".*", ".*").prop_map(
                |(model_id, weights_hash)| Message::CostRequest(CostRequest {
                    model_id,
                    weights_hash
                })
            ),
            (
                ".*",
                ".*",
                prop::collection::vec((".*", 0.0f64..1e7), 0..8),
                ".*",
                0.0f64..1e7,
                prop::sample::subsequence(Codec::ALL.to_vec(), 0..=Codec::ALL.len()),
                0.0f64..1e7,
            )
                .prop_map(
                    |(model_id, weights_hash, nodes, method, image, codecs, per_mb)| {
                        Message::CostReply(CloudCosts {
                            model_id,
                            weights_hash,
                            nodes: nodes
                                .into_iter()
                                .map(|(id, ms)| NodeCost { id, ms })
                                .collect(),
                            method,
                            decoding: DecodingCosts {
                                image_ms_per_mpixel: image,
                                codecs: codecs
                                    .into_iter()
                                    .map(|codec| CodecSpeed {
                                        codec,
                                        decode_ms_per_mb: per_mb,
                                    })
                                    .collect(),
                            },
                        })
                    }
                ),
            Just(Message::StatusRequest),
            arb_state().prop_map(Message::Status),
        ]
    }

    /// Compares two messages bit for bit (NaN-safe, unlike `PartialEq` on floats).
    fn same_bits(a: &Message, b: &Message) -> bool {
        let ea = rmp_serde::to_vec(&(PROTOCOL_VERSION, a)).ok();
        let eb = rmp_serde::to_vec(&(PROTOCOL_VERSION, b)).ok();
        ea.is_some() && ea == eb
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(msg in arb_message()) {
            let bytes = encode(&msg).expect("encodes");
            let (back, used) = decode(&bytes, &Limits::default()).expect("decodes");
            prop_assert_eq!(used, bytes.len());
            prop_assert!(same_bits(&back, &msg), "{:?} != {:?}", back, msg);
        }

        #[test]
        fn decoder_never_panics_on_mutated_frames(
            msg in arb_message(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = encode(&msg).expect("encodes");
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            let _ = decode(&bytes, &Limits::default());
        }
    }
}
