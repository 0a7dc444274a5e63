//! The cloud side: a QUIC endpoint that authenticates clients and hands each inference request
//! to a [`Handler`] supplied by the caller (the runtime's model executor).
//!
//! Per connection, the first stream must carry a [`Hello`](crate::message::Hello) with the right token and protocol
//! version; nothing else is read before that. Afterwards every bidirectional stream carries one
//! request frame and gets one reply frame. A frame that cannot be decoded or breaks a bound is
//! answered with an [`ErrorCode::BadFrame`] error on its stream; the connection and the server
//! keep serving.
//!
//! # Surviving hostile peers
//!
//! - **Admission before authentication.** A connection that has not yet said a valid hello
//!   holds a slot of a small pool ([`ServerConfig::max_unauthenticated`]), at most
//!   [`ServerConfig::max_unauthenticated_per_address`] per address (per /64 for IPv6), for at
//!   most [`ServerConfig::handshake_timeout`]. While half that pool is taken, a new peer must
//!   first prove its address (a QUIC Retry); when all of it is taken, the oldest stranger is
//!   evicted to make room, so that many hosts holding places cannot keep a prompt client out. Once authenticated it moves to the pool of
//!   [`ServerConfig::max_connections`], so clients with the token get in while that pool has
//!   room, however many strangers knock.
//! - **Memory in bytes.** Every frame being read, every decoded request while it waits or runs
//!   and every reply waiting to be sent is charged to its connection's budget
//!   ([`ServerConfig::connection_budget`]), its host's and the server's
//!   ([`ServerConfig::memory_budget`]) before it is allocated; the frame buffer grows only as
//!   bytes arrive. What does not fit is answered `Busy`.
//! - **Fair shares among hosts.** With n peer hosts (an address, or a /64 for IPv6)
//!   connected, one host's connections together hold at most 1/(n + 1) of the memory budget,
//!   and never more than [`ServerConfig::host_share`] of it, so that no number of greedy hosts
//!   can starve the others: the next host to connect finds its part free and is served at
//!   once.
//! - **Deadlines.** A frame must arrive within [`ServerConfig::frame_timeout`], a request must
//!   finish within [`ServerConfig::request_timeout`] and a reply must be taken by the client
//!   within [`ServerConfig::reply_timeout`]; probe replies are capped at
//!   [`ServerConfig::max_probe_reply_bytes`].
//! - **Cancellation.** When the client stops waiting (it resets or stops the stream, or the
//!   connection goes), the handler's future is dropped: a queued request leaves the queue and
//!   the runtime abandons running compute at the next node.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use crate::auth::Token;
use crate::budget::{HostShares, MemoryBudget, OverBudget, Reservation};
use crate::frame::{self, FrameError, FrameStats};
use crate::identity::{Fingerprint, IdentityError, ServerIdentity};
use crate::limits::Limits;
use crate::message::{
    CloudCosts, CostRequest, ErrorCode, ErrorReply, Hello, InferRequest, InferResult, Message,
    ModelOffer, ProbeReply, ServerLimits, ServerState, Welcome,
};
use crate::strangers::{AddressFull, Place, Strangers};
use crate::tensor::WireTensor;

/// ALPN protocol id of this protocol.
pub const ALPN: &[u8] = b"cutpoint";

/// Application close code: normal close.
pub(crate) const CLOSE_OK: u32 = 0;
/// Application close code: the client was refused during the handshake.
pub(crate) const CLOSE_REFUSED: u32 = 1;
/// Stream stop code: the frame was refused; stop sending it.
pub(crate) const STOP_REFUSED: u32 = 2;

/// Largest hello frame read before the token is checked.
const MAX_HELLO_BYTES: u32 = 64 * 1024;

/// What the server currently offers, sent in every [`Welcome`].
#[derive(Debug, Clone, PartialEq)]
pub struct ServerStatus {
    /// Models on offer.
    pub models: Vec<ModelOffer>,
    /// The server's load now.
    pub state: ServerState,
    /// The largest batch the handler computes (advertised in [`ServerLimits::max_batch`]).
    pub max_batch: u32,
}

/// A successful inference, as the handler reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    /// The output tensor.
    pub output: WireTensor,
    /// Compute time in the cloud, ms.
    pub cloud_ms: f64,
    /// Queueing time before compute, ms.
    pub queue_ms: f64,
    /// Time spent decoding the request's boundary tensors or input file, ms.
    pub decode_ms: f64,
    /// Time spent loading the model because this request was its first, ms (not compute).
    pub load_ms: f64,
}

/// The server's application logic. The transport calls it only for authenticated clients and
/// only with messages that passed every bound.
pub trait Handler: Send + Sync + 'static {
    /// What to tell a client that has just authenticated.
    fn status(&self) -> ServerStatus;

    /// The server's load now, sent with every result, probe reply and status.
    fn state(&self) -> ServerState;

    /// The cloud's own per-node costs of a model (loading and measuring it first if need be).
    /// An `Err` is sent to the client as it is.
    fn costs(
        &self,
        request: CostRequest,
    ) -> impl Future<Output = Result<CloudCosts, ErrorReply>> + Send;

    /// Runs one request. An `Err` is sent to the client as it is.
    fn infer(
        &self,
        request: InferRequest,
    ) -> impl Future<Output = Result<Inference, ErrorReply>> + Send;
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on, e.g. `0.0.0.0:4433`.
    pub listen: SocketAddr,
    /// Certificate and key.
    pub identity: ServerIdentity,
    /// The token clients must present.
    pub token: Token,
    /// Decoding bounds.
    pub limits: Limits,
    /// Name sent in [`Welcome`].
    pub server_name: String,
    /// Most authenticated connections served at once; a client that authenticates beyond it
    /// is told the server is busy. Default 1024.
    pub max_connections: usize,
    /// Most connections that have not yet authenticated (TLS and hello under way); when all
    /// are taken, the one that has waited longest is closed to make room. Default 128.
    pub max_unauthenticated: usize,
    /// Most unauthenticated connections from one address (IPv4) or /64 (IPv6). Default 8.
    pub max_unauthenticated_per_address: usize,
    /// Most concurrent request streams per connection. Default 128.
    pub max_streams_per_connection: u32,
    /// Time a client has to complete TLS and the hello. Default 3 s.
    pub handshake_timeout: Duration,
    /// A connection with no traffic for this long is closed. Default 30 s.
    pub idle_timeout: Duration,
    /// Time a request frame may take to arrive, from its first byte. Default 60 s.
    pub frame_timeout: Duration,
    /// Time a request may take from its arrival to its result (queueing, loading and compute);
    /// past it the work is dropped and the client told the server is busy. Default 120 s.
    pub request_timeout: Duration,
    /// Time the client has to take a reply; past it the reply is dropped. Default 60 s.
    pub reply_timeout: Duration,
    /// Bytes the whole server may hold for frames being read, requests admitted and replies
    /// waiting to be sent. Default 1 GiB.
    pub memory_budget: u64,
    /// Bytes one connection may hold of the above; it must hold a largest frame twice (the
    /// bytes and the decoded request). Default 256 MiB.
    pub connection_budget: u64,
    /// The most of `memory_budget` that one peer host (an IPv4 address, or an IPv6 /64) may
    /// hold over all its connections (never less than one connection's budget). With n hosts
    /// connected a host holds at most 1/(n + 1) of the budget, if that is less, so that a
    /// host that connects next finds its part free; beyond its cap a host is told `Busy`.
    /// In (0, 1]; 1 turns the shares off. Default 0.5.
    pub host_share: f64,
    /// Largest probe reply payload sent, bytes. Default 4 MiB.
    pub max_probe_reply_bytes: u32,
}

/// The default whole-server memory budget: 1 GiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 1 << 30;
/// The default per-connection memory budget: 256 MiB.
pub const DEFAULT_CONNECTION_BUDGET: u64 = 256 << 20;
/// The default share of the memory budget one host may hold while others are connected.
pub const DEFAULT_HOST_SHARE: f64 = 0.5;
/// The default probe reply cap: 4 MiB.
pub const DEFAULT_MAX_PROBE_REPLY_BYTES: u32 = 4 << 20;

impl ServerConfig {
    /// Settings with defaults for everything but the address, identity and token.
    pub fn new(listen: SocketAddr, identity: ServerIdentity, token: Token) -> Self {
        ServerConfig {
            listen,
            identity,
            token,
            limits: Limits::default(),
            server_name: "cutpoint".to_owned(),
            max_connections: 1024,
            max_unauthenticated: 128,
            max_unauthenticated_per_address: 8,
            max_streams_per_connection: 128,
            handshake_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(30),
            frame_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(120),
            reply_timeout: Duration::from_secs(60),
            memory_budget: DEFAULT_MEMORY_BUDGET,
            connection_budget: DEFAULT_CONNECTION_BUDGET,
            host_share: DEFAULT_HOST_SHARE,
            max_probe_reply_bytes: DEFAULT_MAX_PROBE_REPLY_BYTES,
        }
    }

    /// Checks that the settings are usable together.
    fn check(&self) -> Result<(), ServerError> {
        let bad = |m: String| Err(ServerError::Config(m));
        if self.max_connections == 0
            || self.max_unauthenticated == 0
            || self.max_unauthenticated_per_address == 0
        {
            return bad(
                "max_connections, max_unauthenticated and max_unauthenticated_per_address must each be at least 1".into(),
            );
        }
        let frame = u64::from(self.limits.max_frame_bytes);
        let probe = u64::from(self.max_probe_reply_bytes);
        let need = (2 * frame).max(2 * probe + 1024);
        if self.connection_budget < need {
            return bad(format!(
                "the per-connection memory budget of {} bytes cannot hold a largest frame twice ({need} bytes: the bytes and the decoded request, or a probe reply and its encoding); raise the budget or lower the frame limit",
                self.connection_budget
            ));
        }
        if !(self.host_share > 0.0 && self.host_share <= 1.0) {
            return bad(format!(
                "the host share {} is not a share of the memory budget in (0, 1]; 0.5 lets one host hold half while others are connected, 1 turns shares off",
                self.host_share
            ));
        }
        if self.memory_budget < self.connection_budget {
            return bad(format!(
                "the server's memory budget of {} bytes is smaller than one connection's ({}); raise it",
                self.memory_budget, self.connection_budget
            ));
        }
        Ok(())
    }

    /// The most one host may hold: its share of the memory budget, but at least one
    /// connection's budget.
    fn host_share_bytes(&self) -> u64 {
        let share = (self.memory_budget as f64 * self.host_share) as u64;
        share.clamp(self.connection_budget, self.memory_budget)
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// TLS setup failed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}: {source}; pick a free port or address")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The failure.
        source: std::io::Error,
    },
    /// A setting is out of range.
    #[error("invalid server setting: {0}")]
    Config(String),
}

/// Flow-control and idle settings shared by both ends.
pub(crate) fn transport_config(
    idle: Duration,
    keep_alive: Option<Duration>,
    bidi_streams: u32,
) -> Result<quinn::TransportConfig, String> {
    let mut cfg = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(idle).map_err(|e| e.to_string())?;
    cfg.max_idle_timeout(Some(idle))
        .keep_alive_interval(keep_alive)
        .max_concurrent_bidi_streams(bidi_streams.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window((8u32 * 1024 * 1024).into())
        .receive_window((32u32 * 1024 * 1024).into())
        .send_window(32 * 1024 * 1024);
    Ok(cfg)
}

struct Shared<H> {
    handler: Arc<H>,
    token: Token,
    limits: Limits,
    server_name: String,
    handshake_timeout: Duration,
    frame_timeout: Duration,
    request_timeout: Duration,
    reply_timeout: Duration,
    connection_budget: u64,
    max_probe_reply_bytes: u32,
    /// Authenticated connections.
    connections: Arc<Semaphore>,
    /// Connections still in TLS or the hello.
    strangers: Arc<Strangers>,
    memory: MemoryBudget,
    /// Each peer host's share of `memory`.
    hosts: HostShares,
}

/// A bound server. Call [`Server::run`] to serve; [`Server::closer`] stops it.
pub struct Server<H> {
    endpoint: quinn::Endpoint,
    fingerprint: Fingerprint,
    shared: Arc<Shared<H>>,
}

/// Stops a running [`Server`] from another task.
#[derive(Debug, Clone)]
pub struct ServerCloser {
    endpoint: quinn::Endpoint,
}

impl ServerCloser {
    /// Closes every connection and makes [`Server::run`] return. The UDP socket is released
    /// once quinn's endpoint driver has wound down, a moment after `run` returns and every
    /// closer is dropped.
    pub fn close(&self) {
        self.endpoint
            .close(CLOSE_OK.into(), b"server shutting down");
    }
}

impl<H: Handler> Server<H> {
    /// Binds the UDP socket. Must be called inside a Tokio runtime.
    pub fn bind(config: ServerConfig, handler: Arc<H>) -> Result<Self, ServerError> {
        config.check()?;
        let memory = MemoryBudget::new("server", config.memory_budget);
        let hosts = HostShares::new(memory.clone(), config.host_share_bytes());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(IdentityError::from)?
            .with_no_client_auth()
            .with_single_cert(config.identity.chain(), config.identity.key())
            .map_err(IdentityError::from)?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| ServerError::Config(e.to_string()))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(quic));
        server_config.transport_config(Arc::new(
            transport_config(config.idle_timeout, None, config.max_streams_per_connection)
                .map_err(ServerError::Config)?,
        ));
        let endpoint = quinn::Endpoint::server(server_config, config.listen).map_err(|source| {
            ServerError::Bind {
                addr: config.listen,
                source,
            }
        })?;
        Ok(Server {
            endpoint,
            fingerprint: config.identity.fingerprint(),
            shared: Arc::new(Shared {
                handler,
                token: config.token,
                limits: config.limits,
                server_name: config.server_name,
                handshake_timeout: config.handshake_timeout,
                frame_timeout: config.frame_timeout,
                request_timeout: config.request_timeout,
                reply_timeout: config.reply_timeout,
                connection_budget: config.connection_budget,
                max_probe_reply_bytes: config.max_probe_reply_bytes,
                connections: Arc::new(Semaphore::new(config.max_connections)),
                strangers: Strangers::new(
                    config.max_unauthenticated,
                    config.max_unauthenticated_per_address,
                ),
                memory,
                hosts,
            }),
        })
    }

    /// The server's memory budget: [`MemoryBudget::used`] is the bytes held now for frames
    /// being read, requests admitted and replies waiting, [`MemoryBudget::peak`] the most at
    /// once.
    pub fn memory(&self) -> MemoryBudget {
        self.shared.memory.clone()
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The fingerprint clients pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// A handle that stops the server.
    pub fn closer(&self) -> ServerCloser {
        ServerCloser {
            endpoint: self.endpoint.clone(),
        }
    }

    /// Serves until closed, then waits for connections to wind down.
    pub async fn run(self) {
        info!(addr = ?self.endpoint.local_addr().ok(), fingerprint = %self.fingerprint, "serving");
        while let Some(incoming) = self.endpoint.accept().await {
            let remote = incoming.remote_address();
            let shared = &self.shared;
            // Under pressure, strangers first prove that they receive at their address.
            if shared.strangers.held() * 2 >= shared.strangers.max()
                && !incoming.remote_address_validated()
                && incoming.may_retry()
            {
                debug!(%remote, "unauthenticated pool half full; asking for address validation");
                if let Err(e) = incoming.retry() {
                    e.into_incoming().ignore();
                }
                continue;
            }
            let knock = match shared.strangers.admit(remote.ip()) {
                Ok((place, evicted)) => {
                    if evicted {
                        debug!(%remote, "unauthenticated pool full; the oldest stranger made room");
                    }
                    place
                }
                Err(AddressFull) => {
                    warn!(%remote, "too many connections from this address are authenticating; refusing");
                    incoming.refuse();
                    continue;
                }
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Err(reason) = serve_connection(incoming, knock, shared).await {
                    debug!(%remote, %reason, "connection ended");
                }
            });
        }
        self.endpoint.wait_idle().await;
    }
}

async fn serve_connection<H: Handler>(
    incoming: quinn::Incoming,
    mut knock: Place,
    shared: Arc<Shared<H>>,
) -> Result<(), String> {
    let authenticating =
        tokio::time::timeout(shared.handshake_timeout, handshake(incoming, &shared));
    let (conn, permit) = tokio::select! {
        done = authenticating => done.map_err(|_| "handshake timed out".to_owned())??,
        // Dropping the handshake closes the connection.
        _ = &mut knock.evicted => {
            return Err("evicted: the unauthenticated pool was full and a newer connection took this one's place".to_owned());
        }
    };
    // Authenticated: the place among strangers goes to the next one.
    drop(knock);
    let _permit = permit;
    let host = shared.hosts.of(conn.remote_address().ip());
    let budget = host.child("connection", shared.connection_budget);
    loop {
        let (send, recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let shared = shared.clone();
        let budget = budget.clone();
        tokio::spawn(async move { serve_stream(send, recv, shared, budget).await });
    }
}

/// TLS, then the hello on the first stream. Returns the connection and its place among the
/// authenticated once the client is authenticated; refuses it (with a reason the client can
/// read) otherwise.
async fn handshake<H: Handler>(
    incoming: quinn::Incoming,
    shared: &Shared<H>,
) -> Result<(quinn::Connection, OwnedSemaphorePermit), String> {
    let conn = incoming.await.map_err(|e| format!("TLS: {e}"))?;
    let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
    let refusal = match read_hello(&mut recv, &shared.limits, &shared.token).await {
        Ok(hello) => match shared.connections.clone().try_acquire_owned() {
            Ok(permit) => {
                let status = shared.handler.status();
                let welcome = Message::Welcome(Welcome {
                    server_name: shared.server_name.clone(),
                    models: status.models,
                    state: status.state,
                    limits: ServerLimits {
                        max_frame_bytes: shared.limits.max_frame_bytes,
                        max_probe_reply_bytes: shared.max_probe_reply_bytes,
                        max_batch: status.max_batch,
                    },
                });
                let bytes = encode_reply(&welcome);
                write_reply(&mut send, &bytes, shared.reply_timeout).await;
                info!(remote = %conn.remote_address(), client = %hello.client_name, "client authenticated");
                return Ok((conn, permit));
            }
            Err(_) => ErrorReply {
                code: ErrorCode::Busy,
                message: "the server serves as many clients as it may; retry later or run locally"
                    .into(),
            },
        },
        Err(refusal) => refusal,
    };
    warn!(remote = %conn.remote_address(), reason = %refusal.message, "refusing client");
    let _ = recv.stop(STOP_REFUSED.into());
    let bytes = encode_reply(&Message::Error(refusal.clone()));
    write_reply(&mut send, &bytes, shared.reply_timeout).await;
    // Let the refusal reach the client before closing; give up after a short while (the
    // handshake deadline bounds it too).
    let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
    conn.close(CLOSE_REFUSED.into(), refusal.message.as_bytes());
    Err(format!("refused: {}", refusal.message))
}

/// Reads a connection's first message as the server does before anything else: a [`Hello`]
/// frame of at most 64 KiB (and within `limits`) whose token matches `token`. Anything else
/// comes back as the refusal to send: `Unauthorized` for a wrong token, `Unexpected` for
/// another message, and the frame's own error (`VersionMismatch`, `BadFrame`, ...) for bytes
/// that are not a frame. Public so that the fuzzer can drive it with any bytes.
pub async fn read_hello<R: AsyncRead + Unpin>(
    recv: &mut R,
    limits: &Limits,
    token: &Token,
) -> Result<Hello, ErrorReply> {
    let limits = Limits {
        max_frame_bytes: MAX_HELLO_BYTES.min(limits.max_frame_bytes),
        ..*limits
    };
    match frame::read_frame(recv, &limits, None).await {
        Ok((Message::Hello(hello), _)) if token.matches(&hello.token) => Ok(hello),
        Ok((Message::Hello(_), _)) => Err(ErrorReply {
            code: ErrorCode::Unauthorized,
            message: "the token is wrong: use the token file the server printed at start-up".into(),
        }),
        Ok((other, _)) => Err(ErrorReply {
            code: ErrorCode::Unexpected,
            message: format!("the first message must be a hello, not a {}", other.kind()),
        }),
        Err(e) => Err(frame_error_reply(&e)),
    }
}

/// The reply that tells a client what was wrong with its frame.
fn frame_error_reply(err: &FrameError) -> ErrorReply {
    let code = match err {
        FrameError::VersionMismatch { .. } => ErrorCode::VersionMismatch,
        FrameError::OverBudget(_) => ErrorCode::Busy,
        _ => ErrorCode::BadFrame,
    };
    ErrorReply {
        code,
        message: err.to_string(),
    }
}

fn busy(err: &OverBudget) -> Message {
    Message::Error(ErrorReply {
        code: ErrorCode::Busy,
        message: format!("the server is busy: {err}"),
    })
}

/// The frame for `message`, or for an `Internal` error saying why it could not be encoded.
fn encode_reply(message: &Message) -> Vec<u8> {
    let mut bytes = frame::encode(message).unwrap_or_else(|e| {
        warn!(error = %e, "cannot encode reply");
        frame::encode(&Message::Error(ErrorReply {
            code: ErrorCode::Internal,
            message: format!("the server could not encode its reply: {e}"),
        }))
        .unwrap_or_default()
    });
    // The encoder grows its buffer by doubling; hold only what is sent (and charged).
    bytes.shrink_to_fit();
    bytes
}

/// Writes a reply frame, finishes the stream and waits until the client has acknowledged
/// every byte, or resets the stream when that has not happened within `deadline`. Until it
/// returns, quinn may still hold the reply in its send buffer, so the caller keeps the
/// reply's bytes charged to the budget until then.
async fn write_reply(send: &mut quinn::SendStream, bytes: &[u8], deadline: Duration) {
    let delivered = async {
        frame::write_bytes(send, bytes, None).await?;
        let _ = send.finish();
        let _ = send.stopped().await;
        Ok::<(), FrameError>(())
    };
    match tokio::time::timeout(deadline, delivered).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "cannot send reply"),
        Err(_) => {
            debug!(
                ?deadline,
                "the client did not take its reply in time; dropping it"
            );
            let _ = send.reset(STOP_REFUSED.into());
        }
    }
}

/// Holds exactly `bytes` in `charge`, growing or shrinking it.
fn hold(charge: &mut Reservation, bytes: u64) -> Result<(), OverBudget> {
    if charge.bytes() >= bytes {
        charge.shrink_to(bytes);
        Ok(())
    } else {
        charge.grow(bytes - charge.bytes())
    }
}

/// Reads and decodes a request frame within the frame deadline, charging the buffer as it
/// grows and the decoded message (about the frame's size: every list is bounded while
/// decoding) while it is held.
async fn read_request<H: Handler>(
    recv: &mut quinn::RecvStream,
    shared: &Shared<H>,
    charge: &mut Reservation,
) -> Result<(Message, FrameStats), FrameError> {
    let deadline = shared.frame_timeout;
    let (body, stats) = tokio::time::timeout(
        deadline,
        frame::read_body_within(recv, &shared.limits, None, charge),
    )
    .await
    .map_err(|_| FrameError::Deadline {
        ms: deadline.as_millis().try_into().unwrap_or(u64::MAX),
    })??;
    let len = body.len() as u64;
    // The bytes and the decoded copy coexist while decoding.
    hold(charge, 2 * len)?;
    let message = frame::decode_body(&body, &shared.limits)?;
    drop(body);
    hold(charge, len)?;
    Ok((message, stats))
}

async fn serve_stream<H: Handler>(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    shared: Arc<Shared<H>>,
    budget: MemoryBudget,
) {
    let mut charge = budget.reservation();
    let reply = match read_request(&mut recv, &shared, &mut charge).await {
        Ok((message, stats)) => {
            let kind = message.kind();
            let work = tokio::time::timeout(
                shared.request_timeout,
                dispatch(message, stats, &shared, &mut charge),
            );
            tokio::select! {
                reply = work => reply.unwrap_or_else(|_| Message::Error(ErrorReply {
                    code: ErrorCode::Busy,
                    message: format!(
                        "the {kind} did not finish within the server's deadline of {:?}; it was dropped. Retry later or run it locally",
                        shared.request_timeout
                    ),
                })),
                _ = send.stopped() => {
                    // Dropping the handler's future takes the request out of the queue and
                    // stops its compute at the next node.
                    debug!(kind, "the client stopped waiting; the request is dropped");
                    return;
                }
            }
        }
        Err(FrameError::Closed) => return,
        Err(e) => {
            debug!(error = %e, "bad frame");
            // Whatever else the client sends on this stream is of no use.
            let _ = recv.stop(STOP_REFUSED.into());
            Message::Error(frame_error_reply(&e))
        }
    };
    drop(recv);
    let mut bytes = encode_reply(&reply);
    drop(reply);
    if let Err(e) = hold(&mut charge, bytes.len() as u64) {
        charge.shrink_to(0);
        bytes = encode_reply(&busy(&e));
    }
    write_reply(&mut send, &bytes, shared.reply_timeout).await;
}

async fn dispatch<H: Handler>(
    message: Message,
    stats: FrameStats,
    shared: &Shared<H>,
    charge: &mut Reservation,
) -> Message {
    match message {
        Message::InferRequest(request) => match shared.handler.infer(request).await {
            Ok(inference) => Message::InferResult(InferResult {
                output: inference.output,
                cloud_ms: inference.cloud_ms,
                queue_ms: inference.queue_ms,
                decode_ms: inference.decode_ms,
                load_ms: inference.load_ms,
                upload: stats.report(),
                state: shared.handler.state(),
            }),
            Err(reply) => Message::Error(reply),
        },
        Message::Probe(probe) => {
            let max = shared.max_probe_reply_bytes;
            if probe.reply_bytes > max {
                return Message::Error(ErrorReply {
                    code: ErrorCode::BadRequest,
                    message: format!(
                        "probe asks for {} reply bytes, more than the {max} this server sends (its welcome says so)",
                        probe.reply_bytes
                    ),
                });
            }
            drop(probe.payload);
            // The payload and its encoding coexist until the reply is encoded.
            if let Err(e) = hold(charge, 2 * u64::from(probe.reply_bytes) + 1024) {
                return busy(&e);
            }
            Message::ProbeReply(ProbeReply {
                upload: stats.report(),
                payload: vec![0; probe.reply_bytes as usize],
                state: shared.handler.state(),
            })
        }
        Message::CostRequest(request) => match shared.handler.costs(request).await {
            Ok(costs) => Message::CostReply(costs),
            Err(reply) => Message::Error(reply),
        },
        Message::StatusRequest => Message::Status(shared.handler.state()),
        other => Message::Error(ErrorReply {
            code: ErrorCode::Unexpected,
            message: format!(
                "a {} is not a request; send an inference request, a probe, a cost request or a status request",
                other.kind()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Probe;

    /// The verdict on `bytes` as a connection's first stream, against token `secret`.
    async fn verdict(bytes: &[u8], secret: &Token) -> Result<Hello, ErrorReply> {
        let mut stream = bytes;
        read_hello(&mut stream, &Limits::default(), secret).await
    }

    fn hello(token: &str) -> Vec<u8> {
        frame::encode(&Message::Hello(Hello {
            token: token.into(),
            client_name: "test".into(),
        }))
        .expect("a hello encodes")
    }

    #[tokio::test]
    async fn only_a_hello_with_the_token_is_let_in() {
        let secret = Token::generate().expect("token");
        let hello_in = verdict(&hello(secret.expose()), &secret).await;
        assert_eq!(hello_in.expect("let in").client_name, "test");
        let code = |r: Result<Hello, ErrorReply>| r.expect_err("refused").code;
        assert_eq!(
            code(verdict(&hello("wrong"), &secret).await),
            ErrorCode::Unauthorized
        );
        let probe = frame::encode(&Message::Probe(Probe {
            payload: vec![0; 16],
            reply_bytes: 16,
        }))
        .expect("a probe encodes");
        assert_eq!(code(verdict(&probe, &secret).await), ErrorCode::Unexpected);
        assert_eq!(
            code(verdict(b"not a frame", &secret).await),
            ErrorCode::BadFrame
        );
        // A hello cut short, and a frame that announces more than a hello may hold.
        let whole = hello(secret.expose());
        let cut = verdict(&whole[..whole.len() - 1], &secret).await;
        assert_eq!(code(cut), ErrorCode::BadFrame);
        let mut large = (MAX_HELLO_BYTES + 1).to_be_bytes().to_vec();
        large.extend_from_slice(&whole[4..]);
        let refused = verdict(&large, &secret).await.expect_err("too large");
        assert_eq!(refused.code, ErrorCode::BadFrame, "{}", refused.message);
    }

    #[test]
    fn a_host_share_is_a_share_and_never_less_than_a_connection() {
        let mut config = ServerConfig::new(
            "127.0.0.1:0".parse().expect("address"),
            ServerIdentity::self_signed().expect("identity"),
            Token::generate().expect("token"),
        );
        assert_eq!(config.host_share_bytes(), DEFAULT_MEMORY_BUDGET / 2);
        config.host_share = 0.01;
        assert!(config.check().is_ok());
        assert_eq!(config.host_share_bytes(), DEFAULT_CONNECTION_BUDGET);
        for share in [0.0, -0.5, 1.5, f64::NAN] {
            config.host_share = share;
            let err = config.check().expect_err("not a share").to_string();
            assert!(err.contains("(0, 1]"), "{err}");
        }
    }
}
