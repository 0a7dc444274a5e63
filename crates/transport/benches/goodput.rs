//! Goodput over loopback: the same upload through this crate's QUIC protocol and through a
//! plain TCP socket, and the codec's cost per MiB.
//!
//! - `goodput/quic_tensor/SIZE`: an inference request carrying one f32 tensor of SIZE bytes to a
//!   server whose handler answers with a one-element tensor. Encoding, TLS, framing, bounded
//!   decoding and validation are all inside the figure.
//! - `goodput/quic_raw/SIZE`: an active probe of SIZE bytes (no tensor, same framing), to tell
//!   the tensor path's cost apart from the link's.
//! - `goodput/tcp/SIZE`: SIZE raw bytes after a u32 length on one TCP connection, answered
//!   with 4 bytes: no encryption, no encoding. The baseline.
//! - `codec/{encode,decode}_1MiB`: framing one 1 MiB tensor request, and decoding and validating
//!   it; the time per iteration is the cost per MiB.
//!
//! Run with `cargo bench -p transport --bench goodput`. Criterion prints the time per transfer
//! and the throughput (`thrpt`, in bytes/s of tensor payload) for each line.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use transport::{
    Client, ClientConfig, CloudCosts, CostRequest, ErrorCode, ErrorReply, Handler, InferRequest,
    Inference, Limits, Message, Server, ServerConfig, ServerIdentity, ServerState, ServerStatus,
    ServerTrust, Token, WireTensor, frame,
};

const SIZES: [(&str, usize); 3] = [
    ("64KiB", 64 * 1024),
    ("1MiB", 1024 * 1024),
    ("16MiB", 16 * 1024 * 1024),
];

/// Takes the tensor and answers with a single zero, so that the download is negligible.
struct Sink;

impl Handler for Sink {
    fn status(&self) -> ServerStatus {
        ServerStatus {
            models: vec![],
            state: ServerState::default(),
            max_batch: 64,
        }
    }

    fn state(&self) -> ServerState {
        ServerState::default()
    }

    async fn costs(&self, request: CostRequest) -> Result<CloudCosts, ErrorReply> {
        Err(ErrorReply {
            code: ErrorCode::UnknownModel,
            message: format!(
                "the sink publishes no costs (asked for `{}`)",
                request.model_id
            ),
        })
    }

    async fn infer(&self, request: InferRequest) -> Result<Inference, ErrorReply> {
        black_box(&request);
        Ok(Inference {
            output: WireTensor {
                shape: vec![1],
                codec: transport::Codec::Raw,
                channels: vec![],
                bytes: vec![0; 4],
            },
            cloud_ms: 0.0,
            queue_ms: 0.0,
            decode_ms: 0.0,
            load_ms: 0.0,
        })
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn quic_client() -> Client {
    let identity = ServerIdentity::self_signed().expect("identity");
    let token = Token::generate().expect("token");
    let server = Server::bind(
        ServerConfig::new(
            "127.0.0.1:0".parse().expect("address"),
            identity,
            token.clone(),
        ),
        Arc::new(Sink),
    )
    .expect("server binds");
    let addr = server.local_addr().expect("address");
    let fingerprint = server.fingerprint();
    tokio::spawn(server.run());
    Client::connect(ClientConfig::new(
        addr.to_string(),
        ServerTrust::Fingerprint(fingerprint),
        token,
    ))
    .await
    .expect("connects")
}

/// Reads length-prefixed uploads and answers each with its length.
async fn tcp_server(listener: TcpListener) {
    while let Ok((mut socket, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1024 * 1024];
            loop {
                let Ok(len) = socket.read_u32().await else {
                    return;
                };
                let mut left = len as usize;
                while left > 0 {
                    let step = left.min(buf.len());
                    if socket.read_exact(&mut buf[..step]).await.is_err() {
                        return;
                    }
                    left -= step;
                }
                if socket.write_u32(len).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn tcp_client() -> TcpStream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(tcp_server(listener));
    let socket = TcpStream::connect(addr).await.expect("connects");
    socket.set_nodelay(true).expect("nodelay");
    socket
}

fn tensor_request(size_bytes: usize) -> InferRequest {
    let values: Vec<f32> = (0..size_bytes / 4).map(|i| i as f32).collect();
    InferRequest {
        model_id: "bench".into(),
        weights_hash: "0".repeat(64),
        cloud_nodes: vec!["fc".into()],
        boundary: [(
            "conv5".to_owned(),
            WireTensor::from_f32(&[values.len()], &values).expect("tensor"),
        )]
        .into(),
        input_file: None,
    }
}

fn goodput(c: &mut Criterion) {
    let rt = runtime();
    let client = rt.block_on(quic_client());
    let mut tcp = rt.block_on(tcp_client());
    let mut group = c.benchmark_group("goodput");
    group.sample_size(10);
    for (name, size) in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let request = tensor_request(size);
        group.bench_with_input(
            BenchmarkId::new("quic_tensor", name),
            &request,
            |b, request| {
                // The clone is setup, outside the timed part.
                b.iter_batched(
                    || request.clone(),
                    |request| {
                        let response = rt.block_on(client.infer(request)).expect("answer");
                        assert!(response.upload.bytes as usize > size);
                    },
                    BatchSize::PerIteration,
                )
            },
        );
        let size_u32 = u32::try_from(size).expect("fits");
        group.bench_with_input(BenchmarkId::new("quic_raw", name), &size_u32, |b, &size| {
            b.iter(|| rt.block_on(client.probe(size, 0)).expect("probe"));
        });
        let payload = vec![0u8; size];
        group.bench_with_input(BenchmarkId::new("tcp", name), &payload, |b, payload| {
            b.iter(|| {
                rt.block_on(async {
                    tcp.write_u32(size_u32).await.expect("writes");
                    tcp.write_all(payload).await.expect("writes");
                    let echoed = tcp.read_u32().await.expect("answer");
                    assert_eq!(echoed, size_u32);
                })
            });
        });
    }
    group.finish();
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    let message = Message::InferRequest(tensor_request(1024 * 1024));
    let bytes = frame::encode(&message).expect("encodes");
    let limits = Limits::default();
    group.throughput(Throughput::Bytes(1024 * 1024));
    group.bench_function("encode_1MiB", |b| {
        b.iter(|| frame::encode(black_box(&message)).expect("encodes"))
    });
    group.bench_function("decode_1MiB", |b| {
        b.iter(|| frame::decode(black_box(&bytes), &limits).expect("decodes"))
    });
    group.finish();
}

criterion_group!(benches, goodput, codec);
criterion_main!(benches);
