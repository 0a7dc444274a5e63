//! The wire between edge and cloud.
//!
//! - [`frame`]: u32 big-endian length + MessagePack body, bounded decoding.
//! - [`message`]: the versioned [`Message`] enum.
//! - [`tensor`]: [`WireTensor`] (f32, int8 with scale and zero point).
//! - [`shaper`]: a token bucket that emulates a slow uplink or downlink without root.
//!
//! This crate knows bytes, shapes and dtypes, never Burn.

pub mod auth;
pub mod frame;
pub mod identity;
pub mod limits;
pub mod message;
pub mod shaper;
pub mod tensor;

pub use frame::FrameError;
pub use limits::Limits;
pub use message::{
    ErrorCode, ErrorReply, Hello, InferRequest, InferResult, Message, ModelOffer, PROTOCOL_VERSION,
    Probe, ProbeReply, TransferReport, Welcome,
};
pub use shaper::Shaper;
pub use tensor::{DType, TensorError, WireTensor};
