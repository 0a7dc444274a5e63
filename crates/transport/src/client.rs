//! The edge side: connects, pins or verifies the server, authenticates, sends requests and
//! keeps the link estimate up to date from every transfer.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tracing::info;

use crate::auth::Token;
use crate::estimator::{EstimatorConfig, EstimatorError, LinkEstimate, LinkEstimator};
use crate::frame::{self, FrameError};
use crate::identity::{
    Fingerprint, IdentityError, KnownServers, PinVerifier, first_use_turn, load_ca_file,
};
use crate::limits::Limits;
use crate::message::{
    CloudCosts, CostRequest, ErrorCode, ErrorReply, Hello, InferRequest, InferResult, Message,
    PROTOCOL_VERSION, Probe, ServerLimits, ServerState, TransferReport, Welcome,
};
use crate::server::{ALPN, CLOSE_OK, transport_config};
use crate::shaper::Shaper;
use crate::share::{LinkShare, Upload};
use crate::tensor::WireTensor;

/// Most connection attempts while a busy server refuses new connections.
const MAX_CONNECT_TRIES: u32 = 32;

/// How the client decides to trust the server's certificate.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// Trust on first use: pin the fingerprint in this known-servers file the first time, and
    /// refuse a different one afterwards.
    KnownServers(PathBuf),
    /// Accept exactly this fingerprint (e.g. printed by the server, or an in-process server).
    Fingerprint(Fingerprint),
    /// Verify the chain against the CA certificates in this PEM file, and the server name.
    CaFile(PathBuf),
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of the server. Known-servers mode pins the certificate under this name.
    pub server: String,
    /// Connect to this address instead of resolving `server` (which then only names the
    /// server: for pinning, the certificate check and messages). Set it to reach one member
    /// of a pool whose name resolves to several addresses. Default: none (resolve `server`
    /// and take its first address).
    pub address: Option<SocketAddr>,
    /// The local address to send from, on a machine with several. Default: none (any address
    /// of the server's family).
    pub local_address: Option<IpAddr>,
    /// Name checked against the certificate in [`ServerTrust::CaFile`] mode; defaults to the
    /// host part of `server`. Ignored when pinning.
    pub server_name: Option<String>,
    /// How to trust the server.
    pub trust: ServerTrust,
    /// The pre-shared token.
    pub token: Token,
    /// A name for the server's logs.
    pub client_name: String,
    /// Decoding bounds for replies.
    pub limits: Limits,
    /// Link estimator tuning.
    pub estimator: EstimatorConfig,
    /// Emulated uplink: paces every request write (see [`Shaper`]).
    pub uplink_shaper: Option<Arc<Shaper>>,
    /// Emulated downlink: paces every reply read (see [`Shaper`]).
    pub downlink_shaper: Option<Arc<Shaper>>,
    /// The uploads of other clients that share this client's uplink (the lanes of one
    /// device): each upload's bandwidth sample counts the link, not this client's share of it
    /// (see [`LinkShare`]). Default: none (the client has the link to itself).
    pub link_share: Option<Arc<LinkShare>>,
    /// Time allowed for TLS and the hello. Default 10 s.
    pub connect_timeout: Duration,
    /// Idle time after which the connection is considered dead. Default 30 s (keep-alives
    /// every 5 s keep a healthy idle connection open).
    pub idle_timeout: Duration,
    /// Protocol version announced; leave at [`PROTOCOL_VERSION`] except to test interop.
    pub protocol_version: u16,
}

impl ClientConfig {
    /// Settings with defaults for everything but the server, trust and token.
    pub fn new(server: impl Into<String>, trust: ServerTrust, token: Token) -> Self {
        ClientConfig {
            server: server.into(),
            address: None,
            local_address: None,
            server_name: None,
            trust,
            token,
            client_name: "cutpoint-edge".to_owned(),
            limits: Limits::default(),
            estimator: EstimatorConfig::default(),
            uplink_shaper: None,
            downlink_shaper: None,
            link_share: None,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            protocol_version: PROTOCOL_VERSION,
        }
    }
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server address did not resolve.
    #[error("cannot resolve server address `{server}`: {reason}; give HOST:PORT")]
    Resolve {
        /// The address given.
        server: String,
        /// Why.
        reason: String,
    },
    /// The known-servers file, CA file or TLS setup failed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The estimator configuration is invalid.
    #[error(transparent)]
    Estimator(#[from] EstimatorError),
    /// The server's fingerprint differs from the one pinned in the known-servers file.
    #[error(
        "the server at {server} presented certificate {found}, but {known_servers} pins {expected}. \
         If the server's key was changed on purpose, confirm the new fingerprint with its operator \
         (the server prints it at start-up), delete the line for {server} from {known_servers} and \
         connect again to pin the new key (every server behind one name must present the same key). \
         Otherwise someone may be intercepting the connection."
    )]
    FingerprintChanged {
        /// `host:port`.
        server: String,
        /// The pinned fingerprint.
        expected: Fingerprint,
        /// The fingerprint presented.
        found: Fingerprint,
        /// The known-servers file.
        known_servers: PathBuf,
    },
    /// The server's fingerprint differs from the one given in the configuration.
    #[error(
        "the server at {server} presented certificate {found}, not the expected {expected}; check the fingerprint the server printed"
    )]
    FingerprintMismatch {
        /// `host:port`.
        server: String,
        /// The expected fingerprint.
        expected: Fingerprint,
        /// The fingerprint presented.
        found: Fingerprint,
    },
    /// The QUIC/TLS connection could not be established.
    #[error("cannot connect to {server}: {reason}")]
    Connect {
        /// `host:port`.
        server: String,
        /// Why.
        reason: String,
    },
    /// The server refused the token.
    #[error("the server refused the token: {0}")]
    Unauthorized(String),
    /// Edge and cloud speak different protocol versions.
    #[error("protocol version mismatch: {0}")]
    VersionMismatch(String),
    /// The server answered with an error.
    #[error("the server answered {code:?}: {message}")]
    Remote {
        /// The error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// A frame could not be sent or decoded.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The connection is gone (server stopped, network down, idle timeout).
    #[error("connection to the server lost: {0}; call reconnect() or run locally")]
    ConnectionLost(String),
    /// The server answered with the wrong kind of message.
    #[error("the server answered a {sent} with a {got}")]
    UnexpectedReply {
        /// What was sent.
        sent: &'static str,
        /// What came back.
        got: &'static str,
    },
    /// The operation took longer than allowed.
    #[error("{0} timed out")]
    Timeout(&'static str),
}

/// The outcome of an inference request, with the measured transfers.
#[derive(Debug, Clone, PartialEq)]
pub struct InferResponse {
    /// The output tensor.
    pub output: WireTensor,
    /// Cloud compute time the server reported, ms.
    pub cloud_ms: f64,
    /// Queue time the server reported, ms.
    pub queue_ms: f64,
    /// Decode time the server reported (boundary codecs or the input file), ms.
    pub decode_ms: f64,
    /// Time the server spent loading the model for this request, ms (0 when loaded already).
    pub load_ms: f64,
    /// The server's load as the result left.
    pub state: ServerState,
    /// The request as the server received it.
    pub upload: TransferReport,
    /// The reply as this client received it.
    pub download: TransferReport,
    /// Wall time from the first byte sent to the last byte received, ms.
    pub total_ms: f64,
}

/// What an active probe measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeOutcome {
    /// Bytes sent up and how the server saw them.
    pub upload: TransferReport,
    /// Bytes received down.
    pub download: TransferReport,
    /// The server's load as the reply left.
    pub state: ServerState,
}

/// A connected, authenticated client. Cheap to share behind an `Arc`; requests may run
/// concurrently.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    addr: SocketAddr,
    endpoint: quinn::Endpoint,
    connection: RwLock<quinn::Connection>,
    welcome: RwLock<Welcome>,
    estimator: Mutex<LinkEstimator>,
    /// The server's load as last reported, and when it arrived.
    state: Mutex<(ServerState, Instant)>,
}

impl Client {
    /// Connects, verifies the server, and authenticates.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        let estimator = LinkEstimator::new(config.estimator)?;
        let addr = match config.address {
            Some(addr) => addr,
            None => resolve(&config.server).await?,
        };
        let any = if addr.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        };
        let bind = SocketAddr::new(config.local_address.unwrap_or(any), 0);
        let endpoint = quinn::Endpoint::client(bind).map_err(|e| ClientError::Connect {
            server: config.server.clone(),
            reason: format!("cannot open a UDP socket: {e}"),
        })?;
        let (connection, welcome) = establish(&config, &endpoint, addr).await?;
        let state = Mutex::new((welcome.state, Instant::now()));
        Ok(Client {
            config,
            addr,
            endpoint,
            connection: RwLock::new(connection),
            welcome: RwLock::new(welcome),
            estimator: Mutex::new(estimator),
            state,
        })
    }

    /// What the server said when this client authenticated (last connection).
    pub fn welcome(&self) -> Welcome {
        match self.welcome.read() {
            Ok(w) => w.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The server's address.
    pub fn server_addr(&self) -> SocketAddr {
        self.addr
    }

    fn connection(&self) -> quinn::Connection {
        match self.connection.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether the current connection has been closed or lost.
    pub fn is_closed(&self) -> bool {
        self.connection().close_reason().is_some()
    }

    /// Opens a fresh connection (same settings, same pin), e.g. after the server restarted.
    /// Requests in flight on the old connection fail.
    pub async fn reconnect(&self) -> Result<(), ClientError> {
        let (connection, welcome) = establish(&self.config, &self.endpoint, self.addr).await?;
        let old = match self.connection.write() {
            Ok(mut c) => std::mem::replace(&mut *c, connection),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), connection),
        };
        old.close(CLOSE_OK.into(), b"reconnected");
        self.record_state(welcome.state);
        match self.welcome.write() {
            Ok(mut w) => *w = welcome,
            Err(poisoned) => *poisoned.into_inner() = welcome,
        }
        Ok(())
    }

    /// The fingerprint of the certificate the server presented on the current connection.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        let identity = self.connection().peer_identity()?;
        let certs = identity
            .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
            .ok()?;
        certs.first().map(|cert| Fingerprint::of_der(cert.as_ref()))
    }

    /// The current link estimate (Mbit/s per direction with sample age, RTT in ms).
    pub fn link(&self) -> LinkEstimate {
        self.with_estimator(|e| e.snapshot(Instant::now()))
    }

    /// Whether the link estimate is missing or stale in either direction.
    pub fn link_is_stale(&self) -> bool {
        self.with_estimator(|e| e.is_stale(Instant::now()))
    }

    fn with_estimator<T>(&self, f: impl FnOnce(&mut LinkEstimator) -> T) -> T {
        match self.estimator.lock() {
            Ok(mut e) => f(&mut e),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Runs part of a model in the cloud. A request whose frame exceeds the server's
    /// advertised frame limit is refused here with [`FrameError::TooLarge`], without sending.
    pub async fn infer(&self, request: InferRequest) -> Result<InferResponse, ClientError> {
        let bytes = frame::encode(&Message::InferRequest(request))?;
        let max = self.limits().max_frame_bytes;
        let body = (bytes.len() - frame::HEADER_BYTES) as u64;
        if body > u64::from(max) {
            return Err(ClientError::Frame(FrameError::TooLarge { len: body, max }));
        }
        let exchange = self.exchange(&bytes).await?;
        match exchange.reply {
            Message::InferResult(InferResult {
                output,
                cloud_ms,
                queue_ms,
                decode_ms,
                load_ms,
                upload,
                state,
            }) => {
                self.with_estimator(|e| {
                    e.record_upload(upload, exchange.sharers, exchange.done);
                    e.record_download(exchange.download, exchange.done);
                });
                self.record_state(state);
                Ok(InferResponse {
                    output,
                    cloud_ms,
                    queue_ms,
                    decode_ms,
                    load_ms,
                    state,
                    upload,
                    download: exchange.download,
                    total_ms: exchange.total.as_secs_f64() * 1e3,
                })
            }
            other => Err(unexpected("inference request", other)),
        }
    }

    /// Sends an active probe of `up_bytes` and asks for `down_bytes` back, and feeds both
    /// transfers to the estimator.
    pub async fn probe(&self, up_bytes: u32, down_bytes: u32) -> Result<ProbeOutcome, ClientError> {
        let bytes = frame::encode(&Message::Probe(Probe {
            payload: vec![0; up_bytes as usize],
            reply_bytes: down_bytes,
        }))?;
        let exchange = self.exchange(&bytes).await?;
        match exchange.reply {
            Message::ProbeReply(reply) => {
                self.with_estimator(|e| {
                    e.record_upload(reply.upload, exchange.sharers, exchange.done);
                    e.record_download(exchange.download, exchange.done);
                });
                self.record_state(reply.state);
                Ok(ProbeOutcome {
                    upload: reply.upload,
                    download: exchange.download,
                    state: reply.state,
                })
            }
            other => Err(unexpected("probe", other)),
        }
    }

    /// Asks for the cloud's own per-node costs of `model_id`, for the weights hashed as
    /// `weights_hash`. The reply is checked to be for that model and those weights.
    pub async fn costs(
        &self,
        model_id: &str,
        weights_hash: &str,
    ) -> Result<CloudCosts, ClientError> {
        let bytes = frame::encode(&Message::CostRequest(CostRequest {
            model_id: model_id.to_string(),
            weights_hash: weights_hash.to_string(),
        }))?;
        match self.exchange(&bytes).await?.reply {
            Message::CostReply(costs)
                if costs.model_id == model_id && costs.weights_hash == weights_hash =>
            {
                Ok(costs)
            }
            other => Err(unexpected("cost request", other)),
        }
    }

    /// Asks for the server's load now, and records it.
    pub async fn status(&self) -> Result<ServerState, ClientError> {
        let bytes = frame::encode(&Message::StatusRequest)?;
        match self.exchange(&bytes).await?.reply {
            Message::Status(state) => {
                self.record_state(state);
                Ok(state)
            }
            other => Err(unexpected("status request", other)),
        }
    }

    /// The bounds the server advertised in its welcome.
    pub fn limits(&self) -> ServerLimits {
        match self.welcome.read() {
            Ok(w) => w.limits,
            Err(poisoned) => poisoned.into_inner().limits,
        }
    }

    /// The server's load as last reported (by the welcome or any reply since), and how long
    /// ago it arrived.
    pub fn server_state(&self) -> (ServerState, Duration) {
        let (state, at) = match self.state.lock() {
            Ok(s) => *s,
            Err(poisoned) => *poisoned.into_inner(),
        };
        (state, at.elapsed())
    }

    fn record_state(&self, state: ServerState) {
        let now = (state, Instant::now());
        match self.state.lock() {
            Ok(mut s) => *s = now,
            Err(poisoned) => *poisoned.into_inner() = now,
        }
    }

    /// Probes only when the estimate is stale, with a probe sized to last about
    /// [`EstimatorConfig::probe_duration`] (and no shorter than
    /// [`EstimatorConfig::min_probe_bytes`], so a shaper's burst does not dominate).
    /// Returns whether a probe ran.
    pub async fn refresh_if_stale(&self) -> Result<bool, ClientError> {
        if !self.link_is_stale() {
            return Ok(false);
        }
        let (up, down) = self.with_estimator(|e| e.probe_bytes());
        let limits = self.limits();
        // Within what the server reads and sends (the envelope needs a little room).
        let up_max = u64::from(limits.max_frame_bytes.saturating_sub(1024));
        let clamp = |b: u64, max: u64| u32::try_from(b.min(max)).unwrap_or(u32::MAX);
        self.probe(
            clamp(up, up_max),
            clamp(down, u64::from(limits.max_probe_reply_bytes)),
        )
        .await?;
        Ok(true)
    }

    /// Sends raw bytes as one request stream and returns the decoded reply. For diagnostics and
    /// protocol tests: the bytes need not be a valid frame.
    pub async fn send_raw(&self, bytes: &[u8]) -> Result<Message, ClientError> {
        Ok(self.exchange(bytes).await?.reply)
    }

    /// Opens a bare request stream on the authenticated connection. For diagnostics and
    /// protocol tests (a peer that sends part of a frame, or never reads its reply); requests
    /// go through [`Client::infer`] and the other methods.
    pub async fn open_stream(&self) -> Result<(quinn::SendStream, quinn::RecvStream), ClientError> {
        self.connection().open_bi().await.map_err(lost)
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.connection().close(CLOSE_OK.into(), b"client closing");
    }

    async fn exchange(&self, bytes: &[u8]) -> Result<Exchange, ClientError> {
        let conn = self.connection();
        self.with_estimator(|e| e.record_rtt(conn.rtt(), Instant::now()));
        let (mut send, mut recv) = conn.open_bi().await.map_err(lost)?;
        let start = Instant::now();
        let mut upload = self.config.link_share.as_ref().map(LinkShare::begin);
        let written =
            frame::write_bytes(&mut send, bytes, self.config.uplink_shaper.as_deref()).await;
        let _ = send.finish();
        // The upload ends when the server has acknowledged every byte (or the reply comes).
        let acked = send.stopped();
        tokio::pin!(acked);
        // Read the reply even when the write failed: a server that refuses a frame stops the
        // stream and says why.
        let reading = frame::read_frame(
            &mut recv,
            &self.config.limits,
            self.config.downlink_shaper.as_deref(),
        );
        tokio::pin!(reading);
        let mut sharers = None;
        let reply = loop {
            tokio::select! {
                reply = &mut reading => break reply,
                _ = &mut acked, if upload.is_some() => sharers = upload.take().map(Upload::finish),
            }
        };
        let sharers = sharers
            .or_else(|| upload.map(Upload::finish))
            .unwrap_or(1.0);
        let (reply, stats) = match (reply, written) {
            (Ok(ok), _) => ok,
            (Err(e), Err(_)) | (Err(e), Ok(())) => {
                return Err(match conn.close_reason() {
                    Some(reason) => ClientError::ConnectionLost(reason.to_string()),
                    None => ClientError::Frame(e),
                });
            }
        };
        let done = Instant::now();
        if let Message::Error(ErrorReply { code, message }) = reply {
            return Err(match code {
                ErrorCode::VersionMismatch => ClientError::VersionMismatch(message),
                ErrorCode::Unauthorized => ClientError::Unauthorized(message),
                code => ClientError::Remote { code, message },
            });
        }
        Ok(Exchange {
            reply,
            sharers,
            download: stats.report(),
            total: done.duration_since(start),
            done,
        })
    }
}

struct Exchange {
    reply: Message,
    /// Uploads in flight over the link, on average, while this one was sent (1 alone).
    sharers: f64,
    download: TransferReport,
    total: Duration,
    done: Instant,
}

fn lost(e: quinn::ConnectionError) -> ClientError {
    ClientError::ConnectionLost(e.to_string())
}

fn unexpected(sent: &'static str, got: Message) -> ClientError {
    ClientError::UnexpectedReply {
        sent,
        got: got.kind(),
    }
}

async fn resolve(server: &str) -> Result<SocketAddr, ClientError> {
    let resolve_err = |reason: String| ClientError::Resolve {
        server: server.to_owned(),
        reason,
    };
    tokio::net::lookup_host(server)
        .await
        .map_err(|e| resolve_err(e.to_string()))?
        .next()
        .ok_or_else(|| resolve_err("no address found".into()))
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
fn host_part(server: &str) -> &str {
    let host = server.rsplit_once(':').map_or(server, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// TLS + hello. Pins the server on first use in known-servers mode.
async fn establish(
    config: &ClientConfig,
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
) -> Result<(quinn::Connection, Welcome), ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(IdentityError::from)?;
    let mut known = None;
    let mut pin = None;
    // This connection's turn to pin the name on first use, held until it has pinned.
    let mut first_use = None;
    let (tls, server_name) = match &config.trust {
        ServerTrust::CaFile(path) => {
            let roots = load_ca_file(path)?;
            let name = config
                .server_name
                .clone()
                .unwrap_or_else(|| host_part(&config.server).to_owned());
            (
                builder.with_root_certificates(roots).with_no_client_auth(),
                name,
            )
        }
        ServerTrust::KnownServers(path) => {
            let mut list = KnownServers::load(path)?;
            if list.get(&config.server).is_none() {
                let turn = tokio::time::timeout(
                    config.connect_timeout,
                    first_use_turn(path, &config.server),
                )
                .await
                .map_err(|_| ClientError::Timeout("waiting for the first pin of the name"))?;
                // Another connection to the name may have pinned it while this one waited.
                list = KnownServers::load(path)?;
                if list.get(&config.server).is_none() {
                    first_use = Some(turn);
                }
            }
            let verifier = Arc::new(PinVerifier::new(list.get(&config.server), provider));
            known = Some(list);
            pin = Some(verifier.clone());
            let tls = builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            (tls, "cutpoint".to_owned())
        }
        ServerTrust::Fingerprint(fp) => {
            let verifier = Arc::new(PinVerifier::new(Some(*fp), provider));
            pin = Some(verifier.clone());
            let tls = builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            (tls, "cutpoint".to_owned())
        }
    };
    let mut tls = tls;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| {
        ClientError::Connect {
            server: config.server.clone(),
            reason: e.to_string(),
        }
    })?;
    let mut client_config = quinn::ClientConfig::new(Arc::new(quic));
    client_config.transport_config(Arc::new(
        transport_config(config.idle_timeout, Some(Duration::from_secs(5)), 0).map_err(
            |reason| ClientError::Connect {
                server: config.server.clone(),
                reason,
            },
        )?,
    ));
    let connect_err = |reason: String| ClientError::Connect {
        server: config.server.clone(),
        reason,
    };
    // A server whose pool of unauthenticated connections (or its share for this address) is
    // full refuses new ones until some finish: try again with a growing pause, within the
    // connect timeout.
    let deadline = tokio::time::Instant::now() + config.connect_timeout;
    let mut pause = Duration::from_millis(20);
    let mut tries = 0;
    let connected = loop {
        let connecting = endpoint
            .connect_with(client_config.clone(), addr, &server_name)
            .map_err(|e| connect_err(e.to_string()))?;
        let connected = tokio::time::timeout_at(deadline, connecting)
            .await
            .map_err(|_| ClientError::Timeout("TLS handshake"))?;
        tries += 1;
        match connected {
            Err(quinn::ConnectionError::ConnectionClosed(close))
                if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED
                    && tries < MAX_CONNECT_TRIES
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            other => break other,
        }
    };
    let conn = match connected {
        Ok(conn) => conn,
        Err(e) => {
            // Explain a pin mismatch rather than the bare TLS alert.
            if let Some(found) = pin.as_ref().and_then(|p| p.seen()) {
                match (&config.trust, known.as_ref()) {
                    (ServerTrust::KnownServers(path), Some(list)) => {
                        if let Some(expected) = list.get(&config.server).filter(|&x| x != found) {
                            return Err(ClientError::FingerprintChanged {
                                server: config.server.clone(),
                                expected,
                                found,
                                known_servers: path.clone(),
                            });
                        }
                    }
                    (ServerTrust::Fingerprint(expected), _) if *expected != found => {
                        return Err(ClientError::FingerprintMismatch {
                            server: config.server.clone(),
                            expected: *expected,
                            found,
                        });
                    }
                    _ => {}
                }
            }
            return Err(connect_err(e.to_string()));
        }
    };
    if let (Some(list), Some(found)) = (known.as_mut(), pin.as_ref().and_then(|p| p.seen()))
        && list.get(&config.server).is_none()
    {
        list.add(&config.server, found)?;
        info!(server = %config.server, fingerprint = %found, file = %list.path().display(),
              "pinned new server on first use");
    }
    drop(first_use);
    let welcome = tokio::time::timeout(config.connect_timeout, hello(config, &conn))
        .await
        .map_err(|_| ClientError::Timeout("hello"))??;
    Ok((conn, welcome))
}

async fn hello(config: &ClientConfig, conn: &quinn::Connection) -> Result<Welcome, ClientError> {
    let message = Message::Hello(Hello {
        token: config.token.expose().to_owned(),
        client_name: config.client_name.clone(),
    });
    let bytes = frame::encode_with_version(config.protocol_version, &message)?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(lost)?;
    frame::write_bytes(&mut send, &bytes, None).await?;
    let _ = send.finish();
    let reply = frame::read_frame(&mut recv, &config.limits, None).await;
    let refused = |e: ClientError| {
        conn.close(CLOSE_OK.into(), b"refused");
        Err(e)
    };
    match reply {
        Ok((Message::Welcome(welcome), _)) => Ok(welcome),
        Ok((Message::Error(ErrorReply { code, message }), _)) => refused(match code {
            ErrorCode::Unauthorized => ClientError::Unauthorized(message),
            ErrorCode::VersionMismatch => ClientError::VersionMismatch(message),
            code => ClientError::Remote { code, message },
        }),
        Ok((other, _)) => refused(unexpected("hello", other)),
        Err(e @ FrameError::VersionMismatch { .. }) => {
            refused(ClientError::VersionMismatch(e.to_string()))
        }
        Err(e) => refused(match conn.close_reason() {
            Some(reason) => ClientError::ConnectionLost(reason.to_string()),
            None => ClientError::Frame(e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_part_strips_port_and_brackets() {
        assert_eq!(host_part("example.org:4433"), "example.org");
        assert_eq!(host_part("[::1]:4433"), "::1");
        assert_eq!(host_part("nohost"), "nohost");
    }
}
