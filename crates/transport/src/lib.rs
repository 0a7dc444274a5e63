//! The wire between edge and cloud.
//!
//! - [`server`]: a QUIC endpoint that authenticates clients (TLS 1.3, pre-shared token) and
//!   hands each request to a caller-supplied [`Handler`].
//! - [`client`]: connects, pins the server ([`ServerTrust`]), sends requests and measures every
//!   transfer for the [`estimator`].
//! - [`frame`]: u32 big-endian length + MessagePack body, bounded decoding, streaming reads.
//! - [`budget`]: memory budgets in bytes, per connection and for the server.
//! - [`message`]: the versioned [`Message`] enum.
//! - [`tensor`]: [`WireTensor`]: a shape, a [`Codec`] and its payload, decoded with bounds.
//! - [`codec`]: the boundary encodings (raw, lossless, f16, per-channel int8, each lossy one
//!   also compressed) and the [`Loss`] budget that selects among them.
//! - [`identity`] and [`auth`]: certificates, fingerprints, known-servers file, tokens.
//! - [`shaper`]: a token bucket that emulates a slow uplink or downlink without root.
//! - [`relay`]: a userspace UDP relay that adds delay, jitter, loss and a rate limit.
//!
//! This crate knows bytes, shapes and dtypes, never Burn.

pub mod auth;
mod bounded;
pub mod budget;
pub mod client;
pub mod codec;
pub mod estimator;
pub mod frame;
pub mod identity;
pub mod limits;
pub mod message;
pub mod relay;
pub mod server;
pub mod shaper;
pub mod share;
mod strangers;
pub mod tensor;

pub use auth::{Token, TokenError};
pub use budget::{MemoryBudget, OverBudget, Reservation};
pub use client::{Client, ClientConfig, ClientError, InferResponse, ProbeOutcome, ServerTrust};
pub use codec::{Affine, Codec, HARD_MAX_CHANNELS, Loss, ParseCodecError, ParseLossError};
pub use estimator::{DirectionEstimate, EstimatorConfig, LinkEstimate, LinkEstimator};
pub use frame::FrameError;
pub use identity::{Fingerprint, IdentityError, KnownServers, ServerIdentity};
pub use limits::Limits;
pub use message::{
    CloudCosts, CodecSpeed, CostRequest, DecodingCosts, ErrorCode, ErrorReply, Hello, InferRequest,
    InferResult, MAX_CODEC_SPEEDS, MAX_COST_NODES, MAX_FIGURE_MS, Message, MessageError,
    ModelOffer, NodeCost, PROTOCOL_VERSION, Probe, ProbeReply, ServerLimits, ServerState,
    TransferReport, Welcome,
};
pub use relay::{Relay, RelayConfig, RelayError, RelayStats};
pub use server::{
    Handler, Inference, Server, ServerCloser, ServerConfig, ServerError, ServerStatus, read_hello,
};
pub use shaper::Shaper;
pub use share::LinkShare;
pub use tensor::{TensorError, WireTensor};
