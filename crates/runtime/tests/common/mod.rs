//! Shared helpers: a real cloud server on loopback QUIC, sessions against it, inputs and
//! reference outputs.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use models::{Backend, HostTensor, Net, zoo};
use partition_core::Graph;
use runtime::{
    CloudConfig, CloudServer, EdgeConfig, EdgeSession, LoadedModel, SplitMode, WeightsSource,
};
use transport::{
    ClientConfig, Fingerprint, MemoryBudget, Server, ServerCloser, ServerConfig, ServerError,
    ServerIdentity, ServerTrust, Token,
};

/// A cloud server running in this process.
pub struct Cloud {
    pub addr: SocketAddr,
    pub fingerprint: Fingerprint,
    pub server: Arc<CloudServer>,
    /// The transport's memory budget: bytes held for frames, requests and replies.
    pub memory: MemoryBudget,
    closer: ServerCloser,
    task: tokio::task::JoinHandle<()>,
}

impl Cloud {
    /// Stops the server and waits until it has wound down.
    pub async fn stop(self) {
        self.closer.close();
        self.task.await.expect("server task ends cleanly");
    }
}

/// LeNet-5: a chain.
pub fn lenet() -> Net {
    zoo::build("lenet").expect("lenet")
}

/// ResNet-18 on 32×32 inputs: a small DAG with residual branches.
pub fn small_resnet() -> Net {
    zoo::build_with_input("resnet18", vec![3, 32, 32]).expect("resnet18")
}

/// Starts a cloud server on `addr` with the identity and token kept in `dir`, serving the zoo
/// plus `nets`. Rebinding a port just released retries until the old socket is gone.
pub async fn start_at(dir: &Path, addr: SocketAddr, config: CloudConfig, nets: &[Net]) -> Cloud {
    start_tuned(dir, addr, config, nets, |_| {}).await
}

/// [`start_at`] with the transport's settings changed by `tune`.
pub async fn start_tuned(
    dir: &Path,
    addr: SocketAddr,
    config: CloudConfig,
    nets: &[Net],
    tune: impl Fn(&mut ServerConfig),
) -> Cloud {
    let identity = ServerIdentity::load_or_create(&dir.join("identity")).expect("identity");
    let token = Token::load_or_create(&dir.join("token")).expect("token");
    let mut cloud = CloudServer::new(config).expect("cloud server");
    for net in nets {
        cloud.register(net.clone());
    }
    let cloud = Arc::new(cloud);
    let mut attempts = 0;
    let server = loop {
        let mut config = ServerConfig::new(addr, identity.clone(), token.clone());
        tune(&mut config);
        match Server::bind(config, cloud.clone()) {
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
    Cloud {
        addr: server.local_addr().expect("bound address"),
        fingerprint: server.fingerprint(),
        server: cloud,
        memory: server.memory(),
        closer: server.closer(),
        task: tokio::spawn(server.run()),
    }
}

/// Starts a cloud server on a free loopback port.
pub async fn start(dir: &Path, config: CloudConfig, nets: &[Net]) -> Cloud {
    start_at(dir, "127.0.0.1:0".parse().expect("address"), config, nets).await
}

/// Client settings that pin `cloud` and use the token in `dir`, with a short connect timeout
/// so that reconnect attempts against a stopped server end quickly.
pub fn client_config(cloud: &Cloud, dir: &Path) -> ClientConfig {
    let token = Token::from_file(&dir.join("token")).expect("token file");
    let mut config = ClientConfig::new(
        cloud.addr.to_string(),
        ServerTrust::Fingerprint(cloud.fingerprint),
        token,
    );
    config.connect_timeout = Duration::from_secs(1);
    config
}

/// Session settings for tests: `split`, quick reconnects, a generous timeout, and the costs
/// of [`graph_of`] kept (not the server's published ones), so that cuts are predictable.
pub fn edge_config(split: SplitMode) -> EdgeConfig {
    EdgeConfig {
        split,
        request_timeout: Duration::from_secs(20),
        reconnect_delay: Duration::from_millis(100),
        max_reconnect_delay: Duration::from_millis(400),
        use_published_costs: false,
        ..EdgeConfig::default()
    }
}

/// Costs that make the cut depend on the link: the edge computes 10 MFLOP/s, the cloud 20×
/// faster. Slow enough that offloading LeNet pays on a fast link even when a loaded machine
/// inflates loopback's measured RTT to several ms.
pub fn graph_of(net: &Net) -> Graph {
    let edge_ms: Vec<f64> = net
        .nodes()
        .iter()
        .map(|n| n.spec().flops as f64 / 1e4)
        .collect();
    let cloud_ms: Vec<f64> = edge_ms.iter().map(|ms| ms / 20.0).collect();
    net.graph(&edge_ms, &cloud_ms).expect("graph")
}

/// `net` with seeded weights on the flex backend.
pub fn load(net: &Net, seed: u64) -> LoadedModel {
    LoadedModel::load(net.clone(), &WeightsSource::Seeded(seed), Backend::Flex).expect("model")
}

/// A session for `net` (seed 0 weights) connected to `cloud`.
pub async fn session(cloud: &Cloud, dir: &Path, net: &Net, config: EdgeConfig) -> EdgeSession {
    let mut session = EdgeSession::new(load(net, 0), graph_of(net), config).expect("session");
    session
        .connect(client_config(cloud, dir))
        .await
        .expect("connects");
    session
}

/// A deterministic input batch for `net`, values in [-1, 1).
pub fn input(net: &Net, batch: usize, seed: u32) -> HostTensor {
    let mut shape = vec![batch];
    shape.extend_from_slice(net.input_shape());
    let n: usize = shape.iter().product();
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    let data = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect();
    HostTensor::new(shape, data).expect("input")
}

/// The whole network run locally: the reference output.
pub fn local_forward(model: &LoadedModel, input: &HostTensor) -> HostTensor {
    let x = model.model.upload(input.clone()).expect("upload");
    model
        .model
        .forward(x)
        .expect("forward")
        .to_host()
        .expect("read back")
}

/// The successor closure of node `v`: the smallest cloud set that holds `v`.
pub fn closure(net: &Net, v: usize) -> Vec<String> {
    let mut set = BTreeSet::from([v]);
    let mut stack = vec![v];
    while let Some(u) = stack.pop() {
        for &w in net.consumers(u) {
            if set.insert(w) {
                stack.push(w);
            }
        }
    }
    set.into_iter()
        .map(|u| net.nodes()[u].id().to_string())
        .collect()
}

/// Waits until `ready` holds, checking every 50 ms; panics after `limit`.
pub async fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
