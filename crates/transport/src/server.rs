//! The cloud side: a QUIC endpoint that authenticates clients and hands each inference request
//! to a [`Handler`] supplied by the caller (the runtime's model executor).
//!
//! Per connection, the first stream must carry a [`Hello`](crate::message::Hello) with the right token and protocol
//! version; nothing else is read before that. Afterwards every bidirectional stream carries one
//! request frame and gets one reply frame. A frame that cannot be decoded or breaks a bound is
//! answered with an [`ErrorCode::BadFrame`] error on its stream; the connection and the server
//! keep serving.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::auth::Token;
use crate::frame::{self, FrameError, FrameStats};
use crate::identity::{Fingerprint, IdentityError, ServerIdentity};
use crate::limits::Limits;
use crate::message::{
    CloudCosts, CostRequest, ErrorCode, ErrorReply, InferRequest, InferResult, Message, ModelOffer,
    ProbeReply, ServerState, Welcome,
};
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
    /// Most connections served at once; later ones are refused. Default 1024.
    pub max_connections: usize,
    /// Most concurrent request streams per connection. Default 128.
    pub max_streams_per_connection: u32,
    /// Time a client has to complete TLS and the hello. Default 10 s.
    pub handshake_timeout: Duration,
    /// A connection with no traffic for this long is closed. Default 30 s.
    pub idle_timeout: Duration,
}

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
            max_streams_per_connection: 128,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
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
    connections: Arc<Semaphore>,
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
        if config.max_connections == 0 {
            return Err(ServerError::Config(
                "max_connections must be at least 1".into(),
            ));
        }
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
                connections: Arc::new(Semaphore::new(config.max_connections)),
            }),
        })
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
            let Ok(permit) = self.shared.connections.clone().try_acquire_owned() else {
                warn!(remote = %incoming.remote_address(), "connection limit reached; refusing");
                incoming.refuse();
                continue;
            };
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                if let Err(reason) = serve_connection(incoming, shared).await {
                    debug!(%remote, %reason, "connection ended");
                }
                drop(permit);
            });
        }
        self.endpoint.wait_idle().await;
    }
}

async fn serve_connection<H: Handler>(
    incoming: quinn::Incoming,
    shared: Arc<Shared<H>>,
) -> Result<(), String> {
    let conn = tokio::time::timeout(shared.handshake_timeout, handshake(incoming, &shared))
        .await
        .map_err(|_| "handshake timed out".to_owned())??;
    loop {
        let (send, recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let shared = shared.clone();
        tokio::spawn(async move { serve_stream(send, recv, shared).await });
    }
}

/// TLS, then the hello on the first stream. Returns the connection once the client is
/// authenticated; refuses it (with a reason the client can read) otherwise.
async fn handshake<H: Handler>(
    incoming: quinn::Incoming,
    shared: &Shared<H>,
) -> Result<quinn::Connection, String> {
    let conn = incoming.await.map_err(|e| format!("TLS: {e}"))?;
    let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
    let limits = Limits {
        max_frame_bytes: MAX_HELLO_BYTES.min(shared.limits.max_frame_bytes),
        ..shared.limits
    };
    let refusal = match frame::read_frame(&mut recv, &limits, None).await {
        Ok((Message::Hello(hello), _)) if shared.token.matches(&hello.token) => {
            let status = shared.handler.status();
            let welcome = Message::Welcome(Welcome {
                server_name: shared.server_name.clone(),
                models: status.models,
                state: status.state,
            });
            send_reply(&mut send, &welcome).await;
            info!(remote = %conn.remote_address(), client = %hello.client_name, "client authenticated");
            return Ok(conn);
        }
        Ok((Message::Hello(_), _)) => ErrorReply {
            code: ErrorCode::Unauthorized,
            message: "the token is wrong: use the token file the server printed at start-up".into(),
        },
        Ok((other, _)) => ErrorReply {
            code: ErrorCode::Unexpected,
            message: format!("the first message must be a hello, not a {}", other.kind()),
        },
        Err(e) => frame_error_reply(&e),
    };
    warn!(remote = %conn.remote_address(), reason = %refusal.message, "refusing client");
    let _ = recv.stop(STOP_REFUSED.into());
    send_reply(&mut send, &Message::Error(refusal.clone())).await;
    // Let the refusal reach the client before closing; give up after a short while.
    let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
    conn.close(CLOSE_REFUSED.into(), refusal.message.as_bytes());
    Err(format!("refused: {}", refusal.message))
}

/// The reply that tells a client what was wrong with its frame.
fn frame_error_reply(err: &FrameError) -> ErrorReply {
    let code = match err {
        FrameError::VersionMismatch { .. } => ErrorCode::VersionMismatch,
        _ => ErrorCode::BadFrame,
    };
    ErrorReply {
        code,
        message: err.to_string(),
    }
}

async fn send_reply(send: &mut quinn::SendStream, message: &Message) {
    let bytes = match frame::encode(message) {
        Ok(bytes) => bytes,
        Err(e) => {
            warn!(error = %e, "cannot encode reply");
            match frame::encode(&Message::Error(ErrorReply {
                code: ErrorCode::Internal,
                message: format!("the server could not encode its reply: {e}"),
            })) {
                Ok(bytes) => bytes,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = frame::write_bytes(send, &bytes, None).await {
        debug!(error = %e, "cannot send reply");
        return;
    }
    let _ = send.finish();
}

async fn serve_stream<H: Handler>(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    shared: Arc<Shared<H>>,
) {
    let reply = match frame::read_frame(&mut recv, &shared.limits, None).await {
        Ok((message, stats)) => dispatch(message, stats, &shared).await,
        Err(FrameError::Closed) => return,
        Err(e) => {
            debug!(error = %e, "bad frame");
            // Whatever else the client sends on this stream is of no use.
            let _ = recv.stop(STOP_REFUSED.into());
            Message::Error(frame_error_reply(&e))
        }
    };
    send_reply(&mut send, &reply).await;
}

async fn dispatch<H: Handler>(message: Message, stats: FrameStats, shared: &Shared<H>) -> Message {
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
            // Leave room for the envelope within the frame limit.
            let max = shared.limits.max_frame_bytes.saturating_sub(1024);
            if probe.reply_bytes > max {
                return Message::Error(ErrorReply {
                    code: ErrorCode::BadRequest,
                    message: format!(
                        "probe asks for {} reply bytes, more than the {max} this server sends",
                        probe.reply_bytes
                    ),
                });
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
