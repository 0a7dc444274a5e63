//! The versioned protocol messages.
//!
//! Every frame body is the MessagePack encoding of `[version, message]`. The version comes first
//! so that a peer speaking another version is recognised as such even when it cannot decode the
//! message. The first message on a connection is a [`Hello`]; the server answers with a
//! [`Welcome`] or an [`ErrorReply`] and, on refusal, closes the connection. The [`ErrorReply`]
//! layout must never change between versions, so that a refusal always reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::codec::Codec;
use crate::limits::Limits;
use crate::tensor::{TensorError, WireTensor};

/// The protocol version this build speaks. Version 5: the [`Welcome`] advertises the server's
/// bounds ([`ServerLimits`]: frame size, probe reply size, batch), and a request's node ids,
/// boundary tensors and ids are bounded while decoding. Version 4: the cloud publishes its
/// per-node costs and its decoding speeds ([`CostRequest`], [`CloudCosts`]), every reply
/// carries the server's load as a
/// [`ServerState`] (with the expected wait for a new request), an idle client can ask for it
/// ([`Message::StatusRequest`]), and a result reports the time spent loading a model apart
/// from compute. Version 3: boundary tensors travel under a
/// [`Codec`](crate::Codec) (raw, lossless, f16, per-channel int8), a request may carry the
/// input as the application's image file ([`InferRequest::input_file`]), and a result reports
/// the cloud's decode time. Since version 2, a boundary tensor at a convolution carries its
/// fused group's output (batch norm and activation applied; see `models::Fusion`).
pub const PROTOCOL_VERSION: u16 = 5;

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Client → server, first on a connection: authenticates the client.
    Hello(Hello),
    /// Server → client: the handshake succeeded.
    Welcome(Welcome),
    /// Client → server: run part of a model.
    InferRequest(InferRequest),
    /// Server → client: the answer to an [`InferRequest`].
    InferResult(InferResult),
    /// Either way: a refusal or failure.
    Error(ErrorReply),
    /// Client → server: an active bandwidth probe.
    Probe(Probe),
    /// Server → client: the answer to a [`Probe`].
    ProbeReply(ProbeReply),
    /// Client → server: the cloud's own per-node costs for a model.
    CostRequest(CostRequest),
    /// Server → client: the answer to a [`CostRequest`].
    CostReply(CloudCosts),
    /// Client → server: the server's load now (an idle client keeps its estimate fresh).
    StatusRequest,
    /// Server → client: the answer to a status request.
    Status(ServerState),
}

impl Message {
    /// A short name for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Welcome(_) => "welcome",
            Message::InferRequest(_) => "inference request",
            Message::InferResult(_) => "inference result",
            Message::Error(_) => "error",
            Message::Probe(_) => "probe",
            Message::ProbeReply(_) => "probe reply",
            Message::CostRequest(_) => "cost request",
            Message::CostReply(_) => "cost reply",
            Message::StatusRequest => "status request",
            Message::Status(_) => "status",
        }
    }

    /// Checks every tensor in the message against `limits`.
    pub fn validate(&self, limits: &Limits) -> Result<(), MessageError> {
        match self {
            Message::InferRequest(req) => {
                if req.boundary.len() > limits.max_tensors {
                    return Err(MessageError::TooManyTensors {
                        count: req.boundary.len(),
                        max: limits.max_tensors,
                    });
                }
                for (node, tensor) in &req.boundary {
                    tensor
                        .validate(limits)
                        .map_err(|source| MessageError::Tensor {
                            node: node.clone(),
                            source,
                        })?;
                }
                Ok(())
            }
            Message::InferResult(res) => {
                res.output
                    .validate(limits)
                    .map_err(|source| MessageError::Tensor {
                        node: "output".to_owned(),
                        source,
                    })?;
                figure("load_ms", res.load_ms)?;
                res.state.validate()
            }
            Message::Welcome(welcome) => welcome.state.validate(),
            Message::ProbeReply(reply) => reply.state.validate(),
            Message::Status(state) => state.validate(),
            Message::CostReply(costs) => costs.validate(),
            _ => Ok(()),
        }
    }
}

/// A message that decoded but breaks a bound.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MessageError {
    /// A tensor is inconsistent or too large.
    #[error("tensor for node `{node}`: {source}")]
    Tensor {
        /// The node id the tensor belongs to.
        node: String,
        /// What is wrong with it.
        source: TensorError,
    },
    /// A figure (a time, a count) is negative, not finite or beyond its bound.
    #[error("{what} is {value}, not a figure in [0, {max}]")]
    BadFigure {
        /// Which figure.
        what: &'static str,
        /// Its value.
        value: f64,
        /// The largest accepted.
        max: f64,
    },
    /// A cost table lists more nodes than any network this protocol carries.
    #[error("cost table has {count} nodes, more than the limit of {max}")]
    TooManyNodes {
        /// Nodes listed.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A decoding table lists one codec twice.
    #[error("the decoding costs list codec {codec} twice")]
    RepeatedCodec {
        /// The codec.
        codec: Codec,
    },
    /// Too many boundary tensors in one request.
    #[error("request carries {count} boundary tensors, more than the limit of {max}")]
    TooManyTensors {
        /// Tensors sent.
        count: usize,
        /// Configured limit.
        max: usize,
    },
}

/// The client's greeting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The pre-shared token.
    pub token: String,
    /// A free-form name for the server's logs.
    pub client_name: String,
}

/// A model the server can run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelOffer {
    /// Model id, as used in [`InferRequest::model_id`].
    pub id: String,
    /// Hash of the weights the server holds; empty when it will load them on first use.
    pub weights_hash: String,
}

/// What the server tells an authenticated client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The server's name, for logs.
    pub server_name: String,
    /// Models on offer (at most 65536, checked while decoding).
    #[serde(deserialize_with = "crate::bounded::offers")]
    pub models: Vec<ModelOffer>,
    /// The server's load now.
    pub state: ServerState,
    /// The bounds the server enforces, so that a client plans within them.
    pub limits: ServerLimits,
}

/// The server's load as it stands when a reply leaves: what a client needs to price the
/// cloud path. Sent with every welcome, result and probe reply, and on request.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ServerState {
    /// Compute workers.
    pub workers: u32,
    /// Requests admitted and not finished (running and queued).
    pub in_system: u32,
    /// Recent service time of a batch of requests run together (a request alone is a batch of
    /// one), ms (an average; 0 before the first).
    pub service_ms: f64,
    /// Expected wait of a request that arrives now before a worker takes it, ms.
    pub wait_ms: f64,
}

/// The bounds a server enforces, advertised in its [`Welcome`] so that a client keeps within
/// them: a request beyond them would only be refused, so the client runs that part itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerLimits {
    /// Largest request frame body the server reads, bytes (header excluded).
    pub max_frame_bytes: u32,
    /// Largest probe reply payload the server sends, bytes.
    pub max_probe_reply_bytes: u32,
    /// Largest batch (the boundary tensors' first dimension) the server computes.
    pub max_batch: u32,
}

/// Largest time a message may carry, ms (about 2.8 hours).
pub const MAX_FIGURE_MS: f64 = 1e7;

/// Largest node count of a cost table.
pub const MAX_COST_NODES: usize = 100_000;

/// Most codec speeds a cost table may list: one per codec.
pub const MAX_CODEC_SPEEDS: usize = Codec::ALL.len();

/// Checks that a time in a message is finite and within `[0, MAX_FIGURE_MS]`.
fn figure(what: &'static str, value: f64) -> Result<(), MessageError> {
    if value.is_finite() && (0.0..=MAX_FIGURE_MS).contains(&value) {
        Ok(())
    } else {
        Err(MessageError::BadFigure {
            what,
            value,
            max: MAX_FIGURE_MS,
        })
    }
}

impl ServerState {
    /// Checks that every figure is finite and in range.
    pub fn validate(&self) -> Result<(), MessageError> {
        figure("service_ms", self.service_ms)?;
        figure("wait_ms", self.wait_ms)
    }
}

/// Ask for the cloud's own per-node costs of a model, for the weights the client holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostRequest {
    /// Which model.
    #[serde(deserialize_with = "crate::bounded::id")]
    pub model_id: String,
    /// Hash of the client's weights; the server refuses when its own differ.
    #[serde(deserialize_with = "crate::bounded::id")]
    pub weights_hash: String,
}

/// The cloud's time for each node of a model at batch 1, as the server measured it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudCosts {
    /// Which model.
    #[serde(deserialize_with = "crate::bounded::id")]
    pub model_id: String,
    /// Hash of the weights the costs were measured with.
    #[serde(deserialize_with = "crate::bounded::id")]
    pub weights_hash: String,
    /// Each node's time, ms, in the model's node order; at most [`MAX_COST_NODES`], refused
    /// while decoding.
    #[serde(deserialize_with = "crate::bounded::cost_nodes")]
    pub nodes: Vec<NodeCost>,
    /// How they were measured, for reports (e.g. "median of 5 passes, batch 1, flex").
    #[serde(deserialize_with = "crate::bounded::id")]
    pub method: String,
    /// What decoding what the edge sends costs on this server.
    pub decoding: DecodingCosts,
}

/// The server's own time to decode what may arrive: an image file, and a boundary tensor under
/// each codec (measured on the model's own activations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecodingCosts {
    /// Decoding and preprocessing an image file, ms per megapixel of the file.
    pub image_ms_per_mpixel: f64,
    /// Decoding a boundary tensor, per codec; a codec not listed was not measured. Each codec
    /// at most once, so no more than [`MAX_CODEC_SPEEDS`], refused while decoding.
    #[serde(deserialize_with = "crate::bounded::codec_speeds")]
    pub codecs: Vec<CodecSpeed>,
}

/// One codec's decoding speed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CodecSpeed {
    /// The codec.
    pub codec: Codec,
    /// Decoding time, ms per megabyte (10^6 bytes) of raw f32 tensor.
    pub decode_ms_per_mb: f64,
}

/// One node's time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeCost {
    /// The node id.
    #[serde(deserialize_with = "crate::bounded::id")]
    pub id: String,
    /// Its time, ms.
    pub ms: f64,
}

impl CloudCosts {
    /// Checks the node count and that every time is finite and in range.
    pub fn validate(&self) -> Result<(), MessageError> {
        if self.nodes.len() > MAX_COST_NODES {
            return Err(MessageError::TooManyNodes {
                count: self.nodes.len(),
                max: MAX_COST_NODES,
            });
        }
        let codecs = &self.decoding.codecs;
        if let Some((_, c)) = codecs
            .iter()
            .enumerate()
            .find(|(i, c)| codecs[..*i].iter().any(|earlier| earlier.codec == c.codec))
        {
            return Err(MessageError::RepeatedCodec { codec: c.codec });
        }
        figure("image_ms_per_mpixel", self.decoding.image_ms_per_mpixel)?;
        self.decoding
            .codecs
            .iter()
            .try_for_each(|c| figure("a codec's decode_ms_per_mb", c.decode_ms_per_mb))?;
        self.nodes
            .iter()
            .try_for_each(|n| figure("a node's ms", n.ms))
    }
}

/// Run `cloud_nodes` of `model_id` from the given boundary tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferRequest {
    /// Which model (at most [`MAX_ID_BYTES`](crate::limits::MAX_ID_BYTES), checked while
    /// decoding).
    #[serde(deserialize_with = "crate::bounded::id")]
    pub model_id: String,
    /// Hash of the edge's weights; the server refuses when its own differ.
    #[serde(deserialize_with = "crate::bounded::id")]
    pub weights_hash: String,
    /// Node ids the cloud must execute: at most
    /// [`MAX_REQUEST_NODES`](crate::limits::MAX_REQUEST_NODES) ids of at most
    /// [`MAX_ID_BYTES`](crate::limits::MAX_ID_BYTES) each, checked while decoding.
    #[serde(deserialize_with = "crate::bounded::node_ids")]
    pub cloud_nodes: Vec<String>,
    /// Tensors produced on the edge and consumed in the cloud, keyed by producing node id: at
    /// most [`HARD_MAX_TENSORS`](crate::limits::HARD_MAX_TENSORS), checked while decoding.
    #[serde(deserialize_with = "crate::bounded::boundary")]
    pub boundary: BTreeMap<String, WireTensor>,
    /// The input as the application holds it: an encoded image file (JPEG or PNG) that the
    /// cloud decodes and preprocesses itself, with the same code the edge would run. When it
    /// is present, `boundary` is empty and `cloud_nodes` holds every node but the input. Its
    /// length is bounded by the frame limit.
    #[serde(with = "serde_bytes")]
    pub input_file: Option<Vec<u8>>,
}

/// How the receiver saw a transfer: bytes and the span from the first to the last byte.
///
/// Measured at the receiver, so the one-way propagation delay is not part of the span: a
/// bandwidth computed from it is not deflated by the RTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TransferReport {
    /// Frame bytes received, length prefix included.
    pub bytes: u64,
    /// Microseconds from the first to the last byte.
    pub span_us: u64,
}

/// The answer to an [`InferRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferResult {
    /// The model's output.
    pub output: WireTensor,
    /// Time the cloud spent computing, in ms.
    pub cloud_ms: f64,
    /// Time the request waited in the server's queue, in ms.
    pub queue_ms: f64,
    /// Time the cloud spent decoding what it was sent (boundary codecs, or the input file's
    /// decoding and preprocessing), in ms; not part of `cloud_ms`.
    pub decode_ms: f64,
    /// Time spent loading the model because this request was its first, ms; not part of
    /// `cloud_ms` (0 when it was loaded already).
    pub load_ms: f64,
    /// How the server received the request, for the client's uplink estimate.
    pub upload: TransferReport,
    /// The server's load as the result left.
    pub state: ServerState,
}

/// Error codes carried by [`ErrorReply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The frame could not be decoded or broke a bound.
    BadFrame,
    /// The peers speak different protocol versions.
    VersionMismatch,
    /// The token was wrong or missing.
    Unauthorized,
    /// The message was valid but not expected here.
    Unexpected,
    /// The model id is unknown.
    UnknownModel,
    /// The weights hash differs from the server's.
    WeightsMismatch,
    /// The request itself is invalid (e.g. an unknown node id).
    BadRequest,
    /// The server is at capacity; retry later or run locally.
    Busy,
    /// The server failed while handling the request.
    Internal,
    /// A code from a newer version.
    #[serde(other)]
    Unknown,
}

/// A refusal or failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation that says what to do.
    pub message: String,
}

/// An active probe: `payload` measures the uplink, `reply_bytes` of payload coming back
/// measure the downlink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Filler bytes sent up.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// Filler bytes asked for in the reply.
    pub reply_bytes: u32,
}

/// The answer to a [`Probe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeReply {
    /// How the server received the probe.
    pub upload: TransferReport,
    /// Filler bytes sent down.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// The server's load as the reply left.
    pub state: ServerState,
}
