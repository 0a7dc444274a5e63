//! `cutpoint-cloud serve`: flags, state directory and start-up report around
//! [`runtime::CloudServer`] on a [`transport::Server`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use cli_common::BackendArg;
use models::Net;
use runtime::{CloudConfig, CloudServer, DEFAULT_SEED, StateDir};
use transport::{Server, ServerConfig, ServerIdentity, Token};

/// Serve the cloud part of split inference to edge devices until Ctrl-C.
///
/// With no flags it keeps a self-signed certificate and a token under the state directory
/// (created on first start), prints the token file, the certificate fingerprint and how an edge
/// connects, and serves every zoo model on UDP port 4433.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address and UDP port to listen on (port 0 picks a free one).
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:4433")]
    listen: SocketAddr,
    #[command(flatten)]
    backend: BackendArg,
    /// File holding the token edges must present; created with a random token if missing
    /// [default: <state-dir>/token].
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// TLS certificate chain (PEM), with --key [default: a self-signed certificate kept in
    /// <state-dir>/identity].
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// TLS private key (PEM), with --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// A model spec JSON file to serve besides the zoo, under its `name` (repeatable). Spec
    /// models are loaded at start, so their weights hash is in every welcome.
    #[arg(long, value_name = "FILE")]
    model_spec: Vec<PathBuf>,
    /// Directory of `<model>.safetensors` weights files; models without a file there use
    /// seeded weights.
    #[arg(long, value_name = "DIR")]
    weights: Option<PathBuf>,
    /// Seed for the weights of models without a weights file (edges use 0 by default too).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Requests that may wait for a worker; more are answered "busy" and run on the edge.
    #[arg(long, value_name = "N", default_value_t = 16)]
    queue: usize,
    /// Requests that run at once.
    #[arg(long, value_name = "N", default_value_t = 1)]
    workers: usize,
    /// Largest batch computed in one request; a larger one is answered "busy" and the edge
    /// runs it itself. Protects against one request asking for activations of many GB.
    #[arg(long, value_name = "N", default_value_t = runtime::DEFAULT_MAX_BATCH)]
    max_batch: usize,
    /// Most samples in one batch formed from different edges' requests for the same model and
    /// cut, run as one forward pass (1: every request runs alone; at most --max-batch).
    #[arg(long, value_name = "N", default_value_t = runtime::DEFAULT_BATCH_MAX)]
    batch_max: usize,
    /// Milliseconds a request that finds a worker free waits, from its arrival, for other
    /// edges' requests to share its batch, while the last batch had more than one request (a
    /// lone edge never waits); 0 takes only those already waiting.
    #[arg(long, value_name = "MS", default_value_t = runtime::DEFAULT_BATCH_WAIT.as_millis() as u64)]
    batch_wait_ms: u64,
    #[command(flatten)]
    limits: LimitArgs,
    /// Where the certificate and token are kept [default: $XDG_DATA_HOME/cutpoint, or
    /// ~/.local/share/cutpoint].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Models to load at start (`all`, or ids comma-separated), so that no edge's first request
    /// waits for a load and their costs are measured before anyone asks (together, one pass of
    /// each model a round, which makes them steadier than one model's passes back to back).
    /// Others load on first use; their load time is reported apart from compute. Spec models
    /// always load at start.
    #[arg(long, value_name = "all|ID,ID,...", value_delimiter = ',')]
    preload: Vec<String>,
    /// Serve Prometheus metrics (requests, busy answers, queue depth, batch sizes, queue and
    /// compute latency, bytes in and out) over HTTP at http://ADDR/metrics [default: off].
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<SocketAddr>,
}

/// The bounds that keep a hostile or broken peer from exhausting the server. Every default is
/// safe for a public address; the welcome tells edges the frame, probe and batch limits so
/// that they plan within them.
#[derive(Args, Debug)]
pub struct LimitArgs {
    /// Largest request frame read, MiB. Protects memory and bandwidth against huge requests;
    /// edges run a boundary that would not fit themselves.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    max_frame_mib: u32,
    /// Memory the whole server may hold for frames being read, requests admitted and replies
    /// waiting to be sent, MiB; past it requests are answered "busy". Protects against being
    /// killed for memory by many connections at once.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    memory_mib: u64,
    /// The same, for one connection, MiB (at least twice the frame limit). Protects other
    /// clients from one that opens many streams or leaves its replies unread.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    connection_memory_mib: u64,
    /// The most of --memory-mib one host (an address; IPv6: one /64) may hold over all its
    /// connections, in (0, 1]; past it that host is answered "busy". With n hosts connected
    /// each may hold at most 1/(n+1) of it, so the next host to connect is served at once.
    /// Protects other hosts from greedy hosts, however many. 1 turns the shares off.
    #[arg(long, value_name = "SHARE", default_value_t = 0.5)]
    host_share: f64,
    /// Authenticated clients served at once; more are told the server is busy. Protects
    /// threads and memory from more clients than the machine can serve.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_clients: usize,
    /// Connections still in TLS or the hello at once; while half are taken, new peers must
    /// prove their address (QUIC Retry), and when all are taken the one that has waited
    /// longest is closed to make room. Protects the client slots from peers without the token.
    #[arg(long, value_name = "N", default_value_t = 128)]
    max_authenticating: usize,
    /// Connections still in TLS or the hello from one address (IPv6: one /64). Protects
    /// against one host taking the whole authenticating pool.
    #[arg(long, value_name = "N", default_value_t = 8)]
    max_authenticating_per_address: usize,
    /// Seconds a peer has to finish TLS and say a valid hello. Protects slots from silent
    /// peers.
    #[arg(long, value_name = "SECS", default_value_t = 3)]
    hello_timeout: u64,
    /// Seconds a request frame may take to arrive. Protects against peers that announce a
    /// frame and drip it, or send nothing.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    frame_timeout: u64,
    /// Seconds a request may take from arrival to result (queue, load, compute); past it the
    /// work is dropped. Protects workers from requests nobody can use any more.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    request_timeout: u64,
    /// Seconds a client has to take a reply. Protects memory from replies left unread.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    reply_timeout: u64,
    /// Largest probe reply sent, KiB. Protects memory and bandwidth from probe floods.
    #[arg(long, value_name = "KIB", default_value_t = 4096)]
    max_probe_reply_kib: u32,
}

impl LimitArgs {
    /// These limits on `config`.
    fn apply(&self, config: &mut ServerConfig) -> Result<()> {
        let secs = |name: &str, s: u64| {
            if s == 0 {
                anyhow::bail!("--{name} must be at least 1 second");
            }
            Ok(Duration::from_secs(s))
        };
        config.limits.max_frame_bytes = self
            .max_frame_mib
            .checked_mul(1 << 20)
            .filter(|&b| b > 0)
            .context("--max-frame-mib must be between 1 and 4095")?;
        config.memory_budget = self.memory_mib.saturating_mul(1 << 20);
        config.connection_budget = self.connection_memory_mib.saturating_mul(1 << 20);
        config.host_share = self.host_share;
        config.max_connections = self.max_clients;
        config.max_unauthenticated = self.max_authenticating;
        config.max_unauthenticated_per_address = self.max_authenticating_per_address;
        config.handshake_timeout = secs("hello-timeout", self.hello_timeout)?;
        config.frame_timeout = secs("frame-timeout", self.frame_timeout)?;
        config.request_timeout = secs("request-timeout", self.request_timeout)?;
        config.reply_timeout = secs("reply-timeout", self.reply_timeout)?;
        config.max_probe_reply_bytes = self
            .max_probe_reply_kib
            .checked_mul(1024)
            .context("--max-probe-reply-kib must be at most 4194303")?;
        Ok(())
    }
}

/// Runs the server until Ctrl-C; returns the closing line.
pub fn serve(args: &ServeArgs) -> Result<String> {
    // Logs (connections, refusals, model loads) go to stderr; stdout is the start-up report.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .try_init();
    let runtime = runtime::async_runtime()?;
    runtime.block_on(run(args))
}

async fn run(args: &ServeArgs) -> Result<String> {
    let state_dir = StateDir::new(args.state_dir.clone()).context("give --state-dir DIR")?;
    let identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => ServerIdentity::from_pem_files(cert, key)?,
        _ => ServerIdentity::load_or_create(&state_dir.identity())?,
    };
    let token_file = args
        .token_file
        .clone()
        .unwrap_or_else(|| state_dir.token_file());
    let token = Token::load_or_create(&token_file)?;

    let mut cloud = CloudServer::new(CloudConfig {
        backend: args.backend.backend,
        seed: args.seed,
        weights_dir: args.weights.clone(),
        workers: args.workers,
        queue_capacity: args.queue,
        max_batch: args.max_batch,
        batch_max: args.batch_max,
        batch_wait: Duration::from_millis(args.batch_wait_ms),
    })?;
    let mut specs = Vec::new();
    for path in &args.model_spec {
        let net = Net::from_spec_file(path)?;
        specs.push(net.name().to_string());
        cloud.register(net);
    }
    let preload: Vec<String> = if args.preload.iter().any(|id| id == "all") {
        cloud.model_ids()
    } else {
        args.preload.clone()
    };
    let mut ids: Vec<&str> = Vec::new();
    for id in specs.iter().chain(&preload) {
        if !ids.contains(&id.as_str()) {
            ids.push(id);
        }
    }
    if !ids.is_empty() {
        let started = std::time::Instant::now();
        let loaded = cloud
            .preload_all(&ids)
            .await
            .with_context(|| format!("cannot preload {}", ids.join(", ")))?;
        println!(
            "loaded {} model{} and measured {} costs in {:.0} ms:",
            loaded.len(),
            if loaded.len() == 1 { "" } else { "s" },
            if loaded.len() == 1 { "its" } else { "their" },
            started.elapsed().as_secs_f64() * 1e3
        );
        for model in &loaded {
            println!(
                "  {:<14} a pass costs {:>8.2} ms here (weights {})",
                model.id, model.pass_ms, model.weights_hash
            );
        }
    }
    let cloud = Arc::new(cloud);
    let mut config = ServerConfig::new(args.listen, identity, token);
    args.limits.apply(&mut config)?;
    let server = Server::bind(config, cloud.clone())?;
    let addr = server
        .local_addr()
        .context("cannot read the bound address")?;
    let metrics = match args.metrics {
        Some(metrics) => Some(
            tokio::net::TcpListener::bind(metrics)
                .await
                .with_context(|| format!("cannot listen for metrics on {metrics}"))?,
        ),
        None => None,
    };

    println!("listening: {addr} (UDP, QUIC)");
    println!("fingerprint: {}", server.fingerprint());
    println!("token file: {}", token_file.display());
    println!(
        "backend: {}, workers: {}, queue: {}, batches of up to {} sample(s) within {} ms",
        args.backend.backend, args.workers, args.queue, args.batch_max, args.batch_wait_ms
    );
    println!(
        "limits: frames {} MiB, batch {}, memory {} MiB ({} MiB per connection, {} per host while others are connected), {} clients, {} authenticating ({} per address, {} s)",
        args.limits.max_frame_mib,
        args.max_batch,
        args.limits.memory_mib,
        args.limits.connection_memory_mib,
        args.limits.host_share,
        args.limits.max_clients,
        args.limits.max_authenticating,
        args.limits.max_authenticating_per_address,
        args.limits.hello_timeout
    );
    println!("models: {}", cloud.model_ids().join(", "));
    if let Some(listener) = metrics {
        let bound = listener
            .local_addr()
            .context("cannot read the metrics address")?;
        println!("metrics: http://{bound}/metrics");
        tokio::spawn(runtime::serve_metrics(listener, cloud.clone()));
    }
    println!(
        "connect an edge with a copy of the token file, e.g.:\n  cutpoint-edge run --connect HOST:{} --token-file TOKEN_FILE --model lenet",
        addr.port()
    );
    println!(
        "the edge pins the fingerprint above on first use; check that it shows the same one. Ctrl-C stops the server."
    );

    let closer = server.closer();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            closer.close();
        }
    });
    server.run().await;
    let stats = cloud.stats();
    Ok(format!(
        "stopped after serving {} request(s) in {} batch(es) (largest {}; {} refused as busy)\n",
        stats.served, stats.batches, stats.largest_batch, stats.refused
    ))
}
