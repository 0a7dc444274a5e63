//! The four resource attacks of issue 18, reproduced on loopback against a real
//! [`CloudServer`](runtime::CloudServer) behind the real transport server, with the real
//! protocol:
//!
//! 1. slot exhaustion before authentication (connections that finish TLS and never say hello);
//! 2. header-only drip (streams that announce ~64 MiB frames and send little or nothing);
//! 3. probe flood (probes asking for the largest reply, replies never read);
//! 4. decode amplification (a frame of millions of empty node ids, or of empty tensors);
//!
//! and one host with the token that opens many connections to take the whole memory budget,
//! against another host's share.
//!
//! Each test bounds the whole process's memory with a counting global allocator ([`cap`]): an
//! allocation past the stated bound fails, which aborts the test binary (the server "killed
//! for memory", as in the issue). Each also asserts the server's own byte count
//! ([`transport::MemoryBudget`]) and that a legitimate client is served during and after the
//! attack. Attacks are bounded in count; every wait has a limit that only guards against a
//! hang and is never asserted as a time. Only loopback addresses are used.
//!
//! One attack at a time ([`SERIAL`]): the allocator's bound is process-wide.

mod common;

use std::alloc::System;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use cap::Cap;
use common::{Cloud, client_config, lenet, start_tuned, wait_for};
use runtime::CloudConfig;
use transport::{
    Client, ClientError, ErrorCode, InferRequest, Message, Probe, ServerConfig, WireTensor, frame,
};

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

/// One attack at a time: each bounds the process's memory.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MIB: usize = 1 << 20;

/// Bounds the process's allocations to what is allocated now plus `headroom` while alive, and
/// samples the peak growth.
struct MemoryBound {
    base: usize,
    peak: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

impl MemoryBound {
    fn new(headroom: usize) -> Self {
        let base = ALLOC.allocated();
        ALLOC
            .set_limit(base + headroom)
            .expect("the bound is above what is allocated");
        let peak = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(ALLOC.allocated().saturating_sub(base), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        MemoryBound {
            base,
            peak,
            stop,
            sampler: Some(sampler),
        }
    }

    /// The most the process had allocated above the start, as sampled.
    fn peak_growth(&self) -> usize {
        self.peak
            .load(Ordering::Relaxed)
            .max(ALLOC.allocated().saturating_sub(self.base))
    }
}

impl Drop for MemoryBound {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
        let _ = ALLOC.set_limit(usize::MAX);
    }
}

/// Short deadlines so that the attacks' effects pass within the test.
fn short_deadlines(config: &mut ServerConfig) {
    config.handshake_timeout = Duration::from_secs(2);
    config.frame_timeout = Duration::from_secs(2);
    config.reply_timeout = Duration::from_secs(2);
}

async fn cloud_with(dir: &std::path::Path, tune: impl Fn(&mut ServerConfig)) -> (Cloud, String) {
    let cloud = start_tuned(
        dir,
        "127.0.0.1:0".parse().expect("address"),
        CloudConfig::default(),
        &[],
        tune,
    )
    .await;
    let hash = cloud.server.preload("lenet").await.expect("lenet loads");
    (cloud, hash)
}

/// A legitimate edge: connects (from 127.0.0.1) and runs LeNet's every node but the input in
/// the cloud; panics unless it is served.
async fn served(cloud: &Cloud, dir: &std::path::Path, hash: &str, what: &str) {
    let mut config = client_config(cloud, dir);
    config.connect_timeout = Duration::from_secs(10);
    let client = Client::connect(config)
        .await
        .unwrap_or_else(|e| panic!("{what}: the legitimate client cannot connect: {e}"));
    let net = lenet();
    let mut shape = vec![1];
    shape.extend_from_slice(net.input_shape());
    let n = shape.iter().product();
    let request = InferRequest {
        model_id: "lenet".into(),
        weights_hash: hash.into(),
        cloud_nodes: net.nodes()[1..]
            .iter()
            .map(|n| n.id().to_string())
            .collect(),
        boundary: [(
            models::INPUT_ID.to_string(),
            WireTensor::from_f32(&shape, &vec![0.25; n]).expect("tensor"),
        )]
        .into(),
        input_file: None,
    };
    let response = client
        .infer(request)
        .await
        .unwrap_or_else(|e| panic!("{what}: the legitimate client is not served: {e}"));
    assert_eq!(response.output.shape, [1, 10], "{what}");
    client.close();
}

/// An authenticated connection for the attacker (it has the token, as in the issue).
async fn attacker(cloud: &Cloud, dir: &std::path::Path) -> Client {
    let mut config = client_config(cloud, dir);
    config.connect_timeout = Duration::from_secs(10);
    Client::connect(config)
        .await
        .expect("the attacker connects")
}

/// Reads one reply frame from an attack stream, within a hang guard.
async fn reply_on(recv: &mut quinn::RecvStream) -> Option<Message> {
    let limits = transport::Limits::default();
    tokio::time::timeout(
        Duration::from_secs(30),
        frame::read_frame(recv, &limits, None),
    )
    .await
    .expect("the server answers or ends the stream")
    .ok()
    .map(|(m, _)| m)
}

fn code_of(message: &Option<Message>) -> Option<ErrorCode> {
    match message {
        Some(Message::Error(e)) => Some(e.code),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Attack 1: slot exhaustion before authentication.

/// Accepts any certificate: the attacker does not care whom it talks to.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A QUIC endpoint on loopback address `ip` that completes TLS with anyone, and says nothing.
fn stranger(ip: &str) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"cutpoint".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS");
    let addr: SocketAddr = format!("{ip}:0").parse().expect("address");
    let mut endpoint = quinn::Endpoint::client(addr).expect("a loopback socket");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    endpoint
}

/// What the strangers saw.
#[derive(Default)]
struct Knocks {
    /// Connections that finished TLS and are open now.
    open: AtomicUsize,
    /// The most open at once.
    peak: AtomicUsize,
    /// Connections that finished TLS.
    established: AtomicUsize,
    /// Connections the server closed (at its hello deadline).
    closed_by_server: AtomicUsize,
    /// Connection attempts refused or that failed.
    refused: AtomicUsize,
}

/// One silent connection: TLS, then nothing until the server closes it.
async fn knock(endpoint: quinn::Endpoint, server: SocketAddr, knocks: Arc<Knocks>) {
    let connecting = match endpoint.connect(server, "cutpoint") {
        Ok(c) => c,
        Err(_) => {
            knocks.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), connecting).await {
        Ok(Ok(conn)) => {
            knocks.established.fetch_add(1, Ordering::Relaxed);
            let now = knocks.open.fetch_add(1, Ordering::Relaxed) + 1;
            knocks.peak.fetch_max(now, Ordering::Relaxed);
            // Never a hello; the server must end it.
            if tokio::time::timeout(Duration::from_secs(20), conn.closed())
                .await
                .is_ok()
            {
                knocks.closed_by_server.fetch_add(1, Ordering::Relaxed);
            }
            knocks.open.fetch_sub(1, Ordering::Relaxed);
        }
        _ => {
            knocks.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_strangers_cannot_take_the_slots_of_clients_with_the_token() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (cloud, hash) = cloud_with(dir.path(), |c| {
        short_deadlines(c);
        c.max_unauthenticated = 16;
        c.max_unauthenticated_per_address = 4;
    })
    .await;
    let bound = MemoryBound::new(256 * MIB);
    // Three hosts (127.0.0.2-4), three waves of 32 connections each: 288 knocks.
    let knocks = Arc::new(Knocks::default());
    let endpoints: Vec<quinn::Endpoint> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|ip| stranger(ip))
        .collect();
    let waves = {
        let (knocks, endpoints, addr) = (knocks.clone(), endpoints.clone(), cloud.addr);
        tokio::spawn(async move {
            for _ in 0..3 {
                let mut wave = Vec::new();
                for endpoint in &endpoints {
                    for _ in 0..32 {
                        wave.push(tokio::spawn(knock(endpoint.clone(), addr, knocks.clone())));
                    }
                }
                for task in wave {
                    task.await.expect("a knock ends");
                }
            }
        })
    };
    wait_for(
        "the strangers hold connections",
        Duration::from_secs(20),
        || knocks.open.load(Ordering::Relaxed) >= 8,
    )
    .await;
    served(&cloud, dir.path(), &hash, "during the knocking").await;
    waves.await.expect("the waves end");
    served(&cloud, dir.path(), &hash, "after the knocking").await;

    let established = knocks.established.load(Ordering::Relaxed);
    let peak = knocks.peak.load(Ordering::Relaxed);
    let closed = knocks.closed_by_server.load(Ordering::Relaxed);
    let refused = knocks.refused.load(Ordering::Relaxed);
    eprintln!(
        "attack 1: {established} silent connections established, at most {peak} at once, {closed} closed by the server, {refused} refused; process allocation grew by at most {} MiB; server buffered at most {} bytes",
        bound.peak_growth() / MIB,
        cloud.memory.peak()
    );
    // Three addresses of four places each: never more than twelve strangers at once.
    assert!(peak <= 12, "{peak} silent connections at once");
    assert!(refused > 0, "the per-address cap refused some");
    assert_eq!(closed, established, "the hello deadline ends every one");
    assert!(cloud.memory.peak() < MIB as u64);
    drop(bound);
    for endpoint in endpoints {
        endpoint.close(0u32.into(), b"done");
    }
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_from_many_hosts_make_room_for_a_client_with_the_token() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // A hello deadline far longer than the client's patience: only eviction can let it in.
    let (cloud, hash) = cloud_with(dir.path(), |c| {
        c.max_unauthenticated = 16;
        c.max_unauthenticated_per_address = 2;
        c.handshake_timeout = Duration::from_secs(30);
    })
    .await;
    // Eight hosts (127.0.0.10-17) of two silent connections each fill the whole pool.
    let knocks = Arc::new(Knocks::default());
    let endpoints: Vec<quinn::Endpoint> = (10..18)
        .map(|host| stranger(&format!("127.0.0.{host}")))
        .collect();
    let mut held = Vec::new();
    for endpoint in &endpoints {
        for _ in 0..2 {
            held.push(tokio::spawn(knock(
                endpoint.clone(),
                cloud.addr,
                knocks.clone(),
            )));
        }
    }
    wait_for(
        "the strangers fill the pool",
        Duration::from_secs(20),
        || knocks.open.load(Ordering::Relaxed) >= 16,
    )
    .await;
    assert_eq!(knocks.refused.load(Ordering::Relaxed), 0);

    served(
        &cloud,
        dir.path(),
        &hash,
        "while strangers hold every place",
    )
    .await;
    // Its place was the oldest stranger's.
    wait_for(
        "the oldest stranger is closed",
        Duration::from_secs(10),
        || knocks.closed_by_server.load(Ordering::Relaxed) >= 1,
    )
    .await;
    assert!(knocks.open.load(Ordering::Relaxed) < 16);
    for endpoint in endpoints {
        endpoint.close(0u32.into(), b"done");
    }
    for task in held {
        task.await.expect("a knock ends");
    }
    cloud.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Attack 2: header-only drip.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_frames_cost_only_the_bytes_that_arrive() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (cloud, hash) = cloud_with(dir.path(), short_deadlines).await;
    let bound = MemoryBound::new(256 * MIB);
    // Four connections × 120 streams, each announcing a frame just under 64 MiB and sending
    // 16 bytes of it: 30 GB announced.
    let announced = (64u32 << 20) - 1;
    let mut attackers = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..4 {
        let client = attacker(&cloud, dir.path()).await;
        for _ in 0..120 {
            let (mut send, recv) = client.open_stream().await.expect("a stream");
            send.write_all(&announced.to_be_bytes())
                .await
                .expect("the header goes");
            send.write_all(&[0x92; 16]).await.expect("a drip goes");
            streams.push((send, recv));
        }
        attackers.push(client);
    }
    // The server has read every header (each stream holds its first small buffer).
    wait_for(
        "the server reads the headers",
        Duration::from_secs(20),
        || cloud.memory.used() >= 480 * 4096,
    )
    .await;
    let held = cloud.memory.used();
    served(&cloud, dir.path(), &hash, "during the drip").await;
    // Each stream is answered at the frame deadline, and everything is given back.
    let (_, recv) = streams.first_mut().expect("a stream");
    let answer = reply_on(recv).await;
    assert!(
        matches!(&answer, Some(Message::Error(e)) if e.message.contains("did not arrive")),
        "{answer:?}"
    );
    wait_for(
        "the drip's buffers are freed",
        Duration::from_secs(20),
        || cloud.memory.used() == 0,
    )
    .await;
    served(&cloud, dir.path(), &hash, "after the drip").await;
    eprintln!(
        "attack 2: 480 streams announcing {} MiB each held {held} bytes (server peak {} bytes); process allocation grew by at most {} MiB",
        announced >> 20,
        cloud.memory.peak(),
        bound.peak_growth() / MIB
    );
    // 4 KiB per stream at most before its bytes arrive: 1.9 MiB for 30 GB announced.
    assert!(held <= 480 * 4096 + 64 * 1024, "{held} bytes held");
    drop(streams);
    drop(bound);
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_more_than_its_budget_is_told_busy() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (cloud, hash) = cloud_with(dir.path(), |c| {
        short_deadlines(c);
        c.limits.max_frame_bytes = 8 << 20;
        c.connection_budget = 16 << 20;
        c.memory_budget = 64 << 20;
    })
    .await;
    let bound = MemoryBound::new(256 * MIB);
    // 32 streams, each announcing 8 MiB and sending 1 MiB of it: 32 MiB for a 16 MiB budget.
    let client = attacker(&cloud, dir.path()).await;
    let mut streams = Vec::new();
    let chunk = vec![0u8; MIB];
    for _ in 0..32 {
        let (mut send, recv) = client.open_stream().await.expect("a stream");
        send.write_all(&(8u32 << 20).to_be_bytes())
            .await
            .expect("header");
        // The server may stop the stream once the budget refuses it.
        let _ = send.write_all(&chunk).await;
        streams.push((send, recv));
    }
    let mut busy = 0;
    for (_, recv) in streams.iter_mut() {
        if code_of(&reply_on(recv).await) == Some(ErrorCode::Busy) {
            busy += 1;
        }
    }
    served(&cloud, dir.path(), &hash, "after the over-budget streams").await;
    let peak = cloud.memory.peak();
    eprintln!(
        "budget: {busy} of 32 streams told busy; server peak {peak} bytes for a 16 MiB connection budget; process allocation grew by at most {} MiB",
        bound.peak_growth() / MIB
    );
    assert!(busy > 0, "the budget refused some streams");
    assert!(peak <= 16 << 20, "{peak} bytes");
    drop(streams);
    drop(bound);
    cloud.stop().await;
}

/// A connection from `host` (a greedy host).
async fn greedy_connection(cloud: &Cloud, dir: &std::path::Path, host: &str) -> Client {
    let mut config = client_config(cloud, dir);
    config.connect_timeout = Duration::from_secs(10);
    config.local_address = Some(host.parse().expect("address"));
    Client::connect(config)
        .await
        .expect("the greedy host connects")
}

/// `streams` streams on `client`, each announcing an 8 MiB frame and sending 1 MiB of it,
/// never the rest.
async fn greedy_streams(
    client: &Client,
    streams: usize,
) -> Vec<(quinn::SendStream, quinn::RecvStream)> {
    let chunk = vec![0u8; MIB];
    let mut opened = Vec::new();
    for _ in 0..streams {
        let (mut send, recv) = client.open_stream().await.expect("a stream");
        send.write_all(&(8u32 << 20).to_be_bytes())
            .await
            .expect("header");
        // The server may stop the stream once a budget refuses it.
        let _ = send.write_all(&chunk).await;
        opened.push((send, recv));
    }
    opened
}

/// How many of `streams` were answered `Busy` within `within`. A refused stream is answered as
/// soon as the server refuses it; a held one only at the frame deadline, long after, so it
/// counts as not refused.
async fn busy_answers(
    streams: &mut [(quinn::SendStream, quinn::RecvStream)],
    within: Duration,
) -> usize {
    let limits = transport::Limits::default();
    let deadline = tokio::time::Instant::now() + within;
    let mut busy = 0;
    for (_, recv) in streams.iter_mut() {
        // A reply already received is read even once the deadline has passed.
        let reply = tokio::time::timeout_at(deadline, frame::read_frame(recv, &limits, None)).await;
        if let Ok(Ok((Message::Error(e), _))) = reply
            && e.code == ErrorCode::Busy
        {
            busy += 1;
        }
    }
    busy
}

/// How long a refused stream's `Busy` answer may take to arrive, on a busy machine too.
const REFUSAL_WITHIN: Duration = Duration::from_secs(10);

/// A cloud with a 64 MiB memory budget, 16 MiB per connection and 8 MiB frames, whose frame
/// deadline (120 s) keeps greedy frames held while other hosts are served, on a busy machine
/// too.
async fn cloud_for_greedy_hosts(dir: &std::path::Path) -> (Cloud, String) {
    cloud_with(dir, |c| {
        short_deadlines(c);
        c.frame_timeout = Duration::from_secs(120);
        c.limits.max_frame_bytes = 8 << 20;
        c.connection_budget = 16 << 20;
        c.memory_budget = 64 << 20;
    })
    .await
}

/// A greedy host (127.0.0.10) opens six connections, each filling its 16 MiB budget with
/// frames that never finish: 96 MiB against a 64 MiB server budget. Alone, it holds at most
/// half (32 MiB), so another host (127.0.0.1) that connects then is served at once; while both
/// are connected, the greedy host is refused everything new (it is over its cap, a third).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_greedy_host_leaves_room_for_another_host_and_is_held_to_its_share() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (cloud, hash) = cloud_for_greedy_hosts(dir.path()).await;
    let alone = 32u64 << 20;
    let bound = MemoryBound::new(256 * MIB);
    let mut greedy = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..6 {
        let client = greedy_connection(&cloud, dir.path(), "127.0.0.10").await;
        streams.extend(greedy_streams(&client, 16).await);
        greedy.push(client);
    }
    wait_for(
        "the greedy host fills its room",
        Duration::from_secs(20),
        || cloud.memory.used() >= alone - (2 << 20),
    )
    .await;
    let held = cloud.memory.used();
    // Another host connects and is served at once; it stays connected.
    let other = attacker(&cloud, dir.path()).await;
    served(
        &cloud,
        dir.path(),
        &hash,
        "while the greedy host holds its room",
    )
    .await;
    // The greedy host, over its cap, is refused every new frame.
    let client = greedy_connection(&cloud, dir.path(), "127.0.0.10").await;
    let mut refused = greedy_streams(&client, 4).await;
    greedy.push(client);
    let busy_over_share = busy_answers(&mut refused, REFUSAL_WITHIN).await;
    let busy = busy_answers(&mut streams, REFUSAL_WITHIN).await;
    let peak = cloud.memory.peak();
    eprintln!(
        "host shares: the greedy host held {held} bytes alone (room {alone}), was told busy on {busy} of 96 streams and on {busy_over_share} of 4 opened over its cap; server peak {peak} bytes for a 64 MiB budget; process allocation grew by at most {} MiB",
        bound.peak_growth() / MIB
    );
    assert!(busy > 0, "the host's room refused some of its streams");
    assert_eq!(
        busy_over_share, 4,
        "over its cap, the greedy host gets nothing new"
    );
    // The greedy host's room, plus the other host's one small request.
    assert!(peak <= alone + MIB as u64, "{peak} bytes");
    drop((streams, refused, greedy, other, bound));
    cloud.stop().await;
}

/// Two greedy hosts (127.0.0.10 and 127.0.0.11), connected together, each open three
/// connections filling their 16 MiB budgets with frames that never finish: 96 MiB against a
/// 64 MiB budget. With two hosts connected each holds at most a third, so a third host
/// (127.0.0.1) finds its part free and is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_hosts_together_leave_room_for_another_host() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (cloud, hash) = cloud_for_greedy_hosts(dir.path()).await;
    let third = (64u64 << 20) / 3;
    let bound = MemoryBound::new(256 * MIB);
    let mut greedy = Vec::new();
    for host in ["127.0.0.10", "127.0.0.11"] {
        for _ in 0..3 {
            greedy.push(greedy_connection(&cloud, dir.path(), host).await);
        }
    }
    let mut streams = Vec::new();
    for client in &greedy {
        streams.extend(greedy_streams(client, 16).await);
    }
    wait_for(
        "the greedy hosts fill their rooms",
        Duration::from_secs(20),
        || cloud.memory.used() >= 2 * (third - (2 << 20)),
    )
    .await;
    let held = cloud.memory.used();
    served(
        &cloud,
        dir.path(),
        &hash,
        "while two greedy hosts hold theirs",
    )
    .await;
    let busy = busy_answers(&mut streams, REFUSAL_WITHIN).await;
    let peak = cloud.memory.peak();
    eprintln!(
        "host shares: two greedy hosts held {held} bytes together (a third each: {third}), were told busy on {busy} of 96 streams; server peak {peak} bytes for a 64 MiB budget; process allocation grew by at most {} MiB",
        bound.peak_growth() / MIB
    );
    assert!(busy > 0, "the hosts' rooms refused some of their streams");
    assert!(peak <= 2 * third + MIB as u64, "{peak} bytes");
    drop((streams, greedy, bound));
    cloud.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Attack 3: probe flood with unread replies.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_whose_replies_are_never_read_hold_a_bounded_amount() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (cloud, hash) = cloud_with(dir.path(), short_deadlines).await;
    let bound = MemoryBound::new(512 * MIB);
    let client = attacker(&cloud, dir.path()).await;
    let largest = client.limits().max_probe_reply_bytes;
    assert_eq!(largest, 4 << 20, "the welcome advertises the cap");
    // Asking for more than the cap is refused outright.
    let err = client.probe(0, u32::MAX).await.expect_err("over the cap");
    assert!(matches!(
        err,
        ClientError::Remote {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
    // 120 probes of 21 bytes, each asking for the largest reply; nobody reads.
    let probe = frame::encode(&Message::Probe(Probe {
        payload: vec![],
        reply_bytes: largest,
    }))
    .expect("encodes");
    let mut streams = Vec::new();
    for _ in 0..120 {
        let (mut send, recv) = client.open_stream().await.expect("a stream");
        send.write_all(&probe).await.expect("the probe goes");
        let _ = send.finish();
        streams.push((send, recv));
    }
    wait_for(
        "the server takes the probes",
        Duration::from_secs(20),
        || cloud.memory.used() > 0,
    )
    .await;
    served(&cloud, dir.path(), &hash, "during the flood").await;
    wait_for(
        "the unread replies are dropped at the reply deadline",
        Duration::from_secs(30),
        || cloud.memory.used() == 0,
    )
    .await;
    served(&cloud, dir.path(), &hash, "after the flood").await;
    let peak = cloud.memory.peak();
    eprintln!(
        "attack 3: 120 probes for {} MiB each, never read: server peak {peak} bytes; process allocation grew by at most {} MiB",
        largest >> 20,
        bound.peak_growth() / MIB
    );
    // The connection's budget (256 MiB by default) bounds what its replies hold.
    assert!(peak <= transport::server::DEFAULT_CONNECTION_BUDGET + MIB as u64);
    drop(streams);
    drop(bound);
    cloud.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Attack 4: decode amplification.

/// A request frame whose list at `marker` (a one-element MessagePack array or map, as the
/// encoder wrote it) is repeated `count` times: the bytes the attacker sends.
fn amplified(request: InferRequest, marker: &[u8], count: u32) -> Vec<u8> {
    let frame = frame::encode(&Message::InferRequest(request)).expect("encodes");
    let body = &frame[frame::HEADER_BYTES..];
    let at = body
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the marker is in the frame");
    // One element: from after the one-element header to the end of the element.
    let element_len = match marker[0] {
        0x91 => 1,                    // an empty string
        _ => body.len() - 1 - at - 1, // an empty key and tensor, up to the input file (nil)
    };
    let element = &body[at + 1..at + 1 + element_len];
    let mut out = Vec::with_capacity(body.len() + element.len() * count as usize);
    out.extend_from_slice(&body[..at]);
    out.push(if marker[0] == 0x91 { 0xdd } else { 0xdf });
    out.extend_from_slice(&count.to_be_bytes());
    for _ in 0..count {
        out.extend_from_slice(element);
    }
    out.extend_from_slice(&body[at + 1 + element_len..]);
    let mut framed = (out.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&out);
    framed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn millions_of_empty_ids_or_tensors_are_refused_while_decoding() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (cloud, hash) = cloud_with(dir.path(), short_deadlines).await;
    let empty = WireTensor::from_f32(&[0], &[]).expect("an empty tensor");
    let nodes = amplified(
        InferRequest {
            model_id: "lenet".into(),
            weights_hash: hash.clone(),
            cloud_nodes: vec![String::new()],
            boundary: Default::default(),
            input_file: None,
        },
        &[0x91, 0xa0],
        60_000_000,
    );
    let tensors = amplified(
        InferRequest {
            model_id: "lenet".into(),
            weights_hash: hash.clone(),
            cloud_nodes: vec!["x".into()],
            boundary: [(String::new(), empty)].into(),
            input_file: None,
        },
        &[0x81, 0xa0],
        4_800_000,
    );
    assert!(nodes.len() < 64 * MIB && tensors.len() < 64 * MIB);
    let bound = MemoryBound::new(640 * MIB);
    let sizes = (nodes.len(), tensors.len());
    let a = attacker(&cloud, dir.path()).await;
    let b = attacker(&cloud, dir.path()).await;
    // Both at once, as in the issue, with a legitimate client alongside.
    let (ra, rb, ()) = tokio::join!(
        a.send_raw(&nodes),
        b.send_raw(&tensors),
        served(&cloud, dir.path(), &hash, "during the amplification")
    );
    for (what, reply) in [("node ids", ra), ("tensors", rb)] {
        match reply {
            Err(ClientError::Remote { code, message }) => {
                assert_eq!(code, ErrorCode::BadFrame, "{what}: {message}");
                assert!(message.contains("at most"), "{what}: {message}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    served(&cloud, dir.path(), &hash, "after the amplification").await;
    eprintln!(
        "attack 4: frames of {} MiB (60 M empty node ids) and {} MiB (4.8 M empty tensors) in parallel: server peak {} bytes; process allocation (what the attackers had in flight included) grew by at most {} MiB",
        sizes.0 / MIB,
        sizes.1 / MIB,
        cloud.memory.peak(),
        bound.peak_growth() / MIB
    );
    drop((nodes, tensors));
    wait_for("everything is given back", Duration::from_secs(20), || {
        cloud.memory.used() == 0
    })
    .await;
    drop(bound);
    cloud.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The edge finishes what the server's limits refuse.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_finishes_locally_what_the_servers_limits_refuse() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let net = lenet();
    // A batch cap of 2 and frames of at most 6 KiB: LeNet's input at batch 3 breaks the
    // first, at batch 2 (8 KiB of f32, about 7.4 KB compressed) the second.
    let config = CloudConfig {
        max_batch: 2,
        ..CloudConfig::default()
    };
    let cloud = start_tuned(
        dir.path(),
        "127.0.0.1:0".parse().expect("address"),
        config,
        &[],
        |c| c.limits.max_frame_bytes = 6 << 10,
    )
    .await;
    cloud.server.preload("lenet").await.expect("lenet loads");
    let model = common::load(&net, 0);
    let mut session = common::session(
        &cloud,
        dir.path(),
        &net,
        common::edge_config(runtime::SplitMode::CloudOnly),
    )
    .await;
    let small = session
        .infer(common::input(&net, 1, 3))
        .await
        .expect("batch 1 runs");
    assert_eq!(small.fallback, None, "batch 1 is served by the cloud");
    for (batch, needle) in [(3, "batch of 3"), (2, "larger than the cloud reads")] {
        let x = common::input(&net, batch, 3);
        let expected = common::local_forward(&model, &x);
        let outcome = session.infer(x).await.expect("finished, not failed");
        let reason = outcome
            .fallback
            .unwrap_or_else(|| panic!("batch {batch} finished locally; sent {:?}", outcome.sent));
        assert!(reason.contains(needle), "{reason}");
        assert!(models::relative_difference(&outcome.output, &expected) <= 1e-5);
    }
    // The session still uses the cloud for what fits.
    let again = session
        .infer(common::input(&net, 1, 4))
        .await
        .expect("batch 1 runs");
    assert_eq!(again.fallback, None, "{:?}", again.fallback);
    cloud.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Work nobody waits for is dropped.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_whose_client_goes_leave_the_queue_and_stop_computing() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = CloudConfig {
        workers: 1,
        queue_capacity: 4,
        ..CloudConfig::default()
    };
    let cloud = start_tuned(
        dir.path(),
        "127.0.0.1:0".parse().expect("address"),
        config,
        &[],
        |_| {},
    )
    .await;
    let lenet_hash = cloud.server.preload("lenet").await.expect("lenet loads");
    let hash = cloud
        .server
        .preload("resnet18")
        .await
        .expect("resnet18 loads");
    let net = models::zoo::build("resnet18").expect("resnet18");
    // ResNet-18 at 224 × 224, batch 16: seconds of compute per request.
    let mut shape = vec![16];
    shape.extend_from_slice(net.input_shape());
    let n: usize = shape.iter().product();
    let heavy = InferRequest {
        model_id: "resnet18".into(),
        weights_hash: hash,
        cloud_nodes: net.nodes()[1..]
            .iter()
            .map(|n| n.id().to_string())
            .collect(),
        boundary: [(
            models::INPUT_ID.to_string(),
            WireTensor::from_f32(&shape, &vec![0.5; n]).expect("tensor"),
        )]
        .into(),
        input_file: None,
    };
    let served_before = cloud.server.stats().served;
    let running = {
        let client = attacker(&cloud, dir.path()).await;
        let request = heavy.clone();
        tokio::spawn(async move { client.infer(request).await })
    };
    wait_for("the first request runs", Duration::from_secs(60), || {
        cloud.server.stats().running == 1
    })
    .await;
    let queued = {
        let client = attacker(&cloud, dir.path()).await;
        tokio::spawn(async move { client.infer(heavy).await })
    };
    wait_for("the second request waits", Duration::from_secs(60), || {
        cloud.server.stats().waiting == 1
    })
    .await;
    // Both clients give up: their streams and connections go.
    queued.abort();
    wait_for("the queued request leaves", Duration::from_secs(60), || {
        cloud.server.stats().waiting == 0 && cloud.server.abandoned() >= 1
    })
    .await;
    running.abort();
    wait_for(
        "the running request stops",
        Duration::from_secs(120),
        || {
            let stats = cloud.server.stats();
            stats.running == 0 && stats.waiting == 0 && cloud.server.abandoned() == 2
        },
    )
    .await;
    let stats = cloud.server.stats();
    assert_eq!(stats.served, served_before, "neither ran to its end");
    served(
        &cloud,
        dir.path(),
        &lenet_hash,
        "after the abandoned requests",
    )
    .await;
    cloud.stop().await;
}
