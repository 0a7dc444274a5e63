//! Shared helpers for the loopback tests: an echo handler and server start-up.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use transport::{
    CloudCosts, Codec, CodecSpeed, CostRequest, DecodingCosts, ErrorCode, ErrorReply, Fingerprint,
    Handler, InferRequest, Inference, ModelOffer, NodeCost, Server, ServerCloser, ServerConfig,
    ServerError, ServerIdentity, ServerState, ServerStatus, Token, WireTensor,
};

/// The state the echo server reports: one worker, one request in flight, 7 ms of wait.
pub const ECHO_STATE: ServerState = ServerState {
    workers: 1,
    in_system: 1,
    service_ms: 3.5,
    wait_ms: 7.0,
};

/// Returns the first boundary tensor unchanged; model "slow" sleeps first. Publishes costs
/// for model "echo" (weights "none") only.
pub struct Echo;

impl Handler for Echo {
    fn status(&self) -> ServerStatus {
        ServerStatus {
            models: vec![ModelOffer {
                id: "echo".into(),
                weights_hash: "none".into(),
            }],
            state: ECHO_STATE,
            max_batch: 64,
        }
    }

    fn state(&self) -> ServerState {
        ECHO_STATE
    }

    async fn costs(&self, request: CostRequest) -> Result<CloudCosts, ErrorReply> {
        if request.model_id != "echo" {
            return Err(ErrorReply {
                code: ErrorCode::UnknownModel,
                message: format!("no model `{}` here", request.model_id),
            });
        }
        Ok(CloudCosts {
            model_id: request.model_id,
            weights_hash: request.weights_hash,
            nodes: vec![
                NodeCost {
                    id: "input".into(),
                    ms: 0.0,
                },
                NodeCost {
                    id: "echo".into(),
                    ms: 0.5,
                },
            ],
            method: "fixed".into(),
            decoding: DecodingCosts {
                image_ms_per_mpixel: 10.0,
                codecs: vec![CodecSpeed {
                    codec: Codec::Lossless,
                    decode_ms_per_mb: 2.0,
                }],
            },
        })
    }

    async fn infer(&self, request: InferRequest) -> Result<Inference, ErrorReply> {
        if request.model_id == "slow" {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let output = request
            .boundary
            .into_values()
            .next()
            .ok_or_else(|| ErrorReply {
                code: ErrorCode::BadRequest,
                message: "no boundary tensor".into(),
            })?;
        Ok(Inference {
            output,
            cloud_ms: 0.5,
            queue_ms: 0.0,
            decode_ms: 0.0,
            load_ms: 0.0,
        })
    }
}

/// A running test server.
pub struct Running {
    pub addr: SocketAddr,
    pub fingerprint: Fingerprint,
    pub closer: ServerCloser,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the server and waits until its socket is released.
    pub async fn stop(self) {
        self.closer.close();
        self.task.await.expect("server task ends cleanly");
    }
}

/// Starts an echo server on `addr` with the identity and token kept in `dir`.
///
/// A stopped in-process server releases its UDP socket when quinn's endpoint driver winds
/// down, a moment after `run` returns; rebinding the same port retries until then.
pub async fn start_in(dir: &Path, addr: SocketAddr) -> Running {
    let identity = ServerIdentity::load_or_create(&dir.join("identity")).expect("identity");
    let token = Token::load_or_create(&dir.join("token")).expect("token");
    let mut attempts = 0;
    let server = loop {
        let config = ServerConfig::new(addr, identity.clone(), token.clone());
        match Server::bind(config, Arc::new(Echo)) {
            Ok(server) => break server,
            Err(ServerError::Bind { source, .. })
                if source.kind() == std::io::ErrorKind::AddrInUse && attempts < 250 =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("server does not bind: {e}"),
        }
    };
    Running {
        addr: server.local_addr().expect("bound address"),
        fingerprint: server.fingerprint(),
        closer: server.closer(),
        task: tokio::spawn(server.run()),
    }
}

/// Starts an echo server on a free loopback port.
pub async fn start(dir: &Path) -> Running {
    start_in(dir, "127.0.0.1:0".parse().expect("address")).await
}

/// The token the server in `dir` uses.
pub fn token(dir: &Path) -> Token {
    Token::from_file(&dir.join("token")).expect("token file")
}

/// An echo request carrying `tensor`.
pub fn request(tensor: WireTensor) -> InferRequest {
    request_for("echo", tensor)
}

/// A request for `model` carrying `tensor`.
pub fn request_for(model: &str, tensor: WireTensor) -> InferRequest {
    InferRequest {
        model_id: model.into(),
        weights_hash: "none".into(),
        cloud_nodes: vec!["out".into()],
        boundary: [("conv1".to_owned(), tensor)].into(),
        input_file: None,
    }
}

/// `n` f32 values with varied bit patterns (NaN payloads, infinities, subnormals included).
pub fn varied_f32(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            f32::from_bits(x)
        })
        .collect()
}
