//! [`EdgeSession`]: plan, run the edge part, ship the boundary, receive the result, and finish
//! locally when the cloud cannot.

mod connection;
mod inputs;
mod lookup;
mod outcome;
mod planning;
mod pool;
mod published;
mod split;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use models::{Activations, HostTensor, Model, decode_image, image_dimensions};
use partition_core::{
    DEFAULT_MIN_SAVING, Graph, Hysteresis, Link, Objective, Plan, Scenario, Solver,
};
use predictor::DeviceProfile;
use tracing::{info, warn};
use transport::{
    Client, ClientConfig, ClientError, Codec, ErrorCode, FrameError, InferRequest, InferResponse,
    LinkEstimate, LinkShare, Loss, WireTensor,
};

use crate::codec_costs::{CloudDecoding, CodecCosts};
use crate::energy::{EnergyCounters, EnergySample, EnergyUnavailable};
use crate::error::RuntimeError;
use crate::loaded::LoadedModel;
use crate::wire::from_wire;
use connection::{Backoff, CloudLink};
use inputs::{WaitEstimate, planning_link};
use lookup::Lookups;
pub use outcome::{Measured, Outcome, Sent};
pub use planning::INPUT_FILE_ID;
use planning::{FileInput, PlanningGraph};
use pool::{InFlight, Member, Resolved};
pub use pool::{Lookup, Resolve, Servers, SystemResolver};
pub use published::CloudCostSource;
use published::{CostCache, ServerCosts};
pub use split::SplitMode;

/// Hands each new session its first turn among servers that plan equally well, so that
/// sessions started together begin at different servers.
static FIRST_TURN: AtomicUsize = AtomicUsize::new(0);

/// Settings of an [`EdgeSession`].
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// How the cut is chosen. Default: [`SplitMode::Auto`].
    pub split: SplitMode,
    /// What the plan minimises. Default: latency.
    pub objective: Objective,
    /// The solver for [`SplitMode::Auto`]; solvers that let tensors return to the edge are
    /// refused. Default: [`Solver::Auto`].
    pub solver: Solver,
    /// Share of the current plan's cost a new cut must save to replace it (hysteresis).
    /// Default [`DEFAULT_MIN_SAVING`].
    pub min_saving: f64,
    /// Plan for this uplink (Mbit/s) instead of the measured one. It changes planning only; the
    /// link itself is not shaped. Default: none.
    pub uplink_mbps: Option<f64>,
    /// The link assumed for anything not measured yet (before the first connection).
    /// Default: 10 Mbit/s both ways, 20 ms RTT.
    pub assumed_link: Link,
    /// Longest wait for a bandwidth probe or a reply before the request is finished locally.
    /// Default 30 s.
    pub request_timeout: Duration,
    /// First delay before reconnecting after a fault; it doubles up to
    /// `max_reconnect_delay`. Default 500 ms.
    pub reconnect_delay: Duration,
    /// Longest delay between reconnect attempts. Default 10 s.
    pub max_reconnect_delay: Duration,
    /// How often the servers' names are looked up again, so that servers added behind a name
    /// are used and servers gone from it (and not connected) are dropped. A name whose every
    /// server is down is looked up again sooner, after `reconnect_delay`. Checked at each
    /// request; the lookups run in the background. Zero looks up at every request. Default
    /// 30 s.
    pub resolve_interval: Duration,
    /// Half-life over which the cloud's last reported expected wait fades back to 0. Default
    /// 10 s.
    pub load_half_life: Duration,
    /// The extension point for emulating a slower edge device: the session behaves as if the
    /// edge were this many times slower than the machine it runs on. After each part computed
    /// on the edge (and each encoding) it waits `edge_slowdown − 1` times the compute time, and
    /// the planner's edge costs are scaled to match. Experiments that put the edge and the
    /// cloud on one machine use it (the `lab` crate); a real edge leaves it at 1. Default 1
    /// (off); at least 1.
    pub edge_slowdown: f64,
    /// The loss the user accepts at the boundary: [`Loss::Exact`] allows raw f32, the lossless
    /// codec and the image file itself; [`Loss::F16`] adds half precision; [`Loss::Int8`] adds
    /// per-channel 8-bit quantisation. The planner picks the cheapest allowed codec for each
    /// crossing tensor. Default: exact.
    pub max_loss: Loss,
    /// Send every crossing tensor as raw f32 and an image input as its preprocessed tensor:
    /// the wire Neurosurgeon assumed, kept as a baseline. Default false.
    pub raw_wire: bool,
    /// Plan with the cloud's own per-node costs, which the server measures on itself and
    /// publishes, in place of the cloud costs the session was made with. Turn it off when
    /// those are authoritative (a cloud profile or a cost graph the user gave). Default true.
    pub use_published_costs: bool,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            split: SplitMode::Auto,
            objective: Objective::Latency,
            solver: Solver::Auto,
            min_saving: DEFAULT_MIN_SAVING,
            uplink_mbps: None,
            assumed_link: Link::new(10.0, 10.0, 20.0).expect("a constant link within range"),
            request_timeout: Duration::from_secs(30),
            reconnect_delay: Duration::from_millis(500),
            max_reconnect_delay: Duration::from_secs(10),
            resolve_interval: Duration::from_secs(30),
            load_half_life: Duration::from_secs(10),
            edge_slowdown: 1.0,
            max_loss: Loss::Exact,
            raw_wire: false,
            use_published_costs: true,
        }
    }
}

/// The edge side of collaborative inference for one network.
///
/// It holds the model (edge side), the cost graph the planner solves over, the connections to
/// the cloud servers (any of which may be down), the hysteresis state and each server's last
/// seen load. Each request is planned for every usable server, with that server's link
/// estimate, published costs and expected wait, and goes to the cheapest (equal ones take
/// turns); when that server fails or refuses, the next one is tried, and then the request
/// finishes locally. Requests run one at a time (`infer` takes `&mut self`); open one session
/// per concurrent stream of requests.
#[derive(Debug)]
pub struct EdgeSession {
    model: Arc<Model>,
    weights_hash: String,
    /// The cost graph the session was made with (edge costs slowed as configured).
    given: Graph,
    /// The planner's costs for a server that has not published its own: `given`'s.
    assumed: ServerCosts,
    /// Published cost tables fetched so far.
    published: CostCache,
    /// The edge's summed layer costs at this machine's speed (before any emulated slowdown).
    edge_total_ms: f64,
    /// The network's index of each graph node (the graph has its own topological order).
    to_net: Vec<usize>,
    /// Codec and image-decoding costs, measured on the first request that needs them.
    codec_costs: Option<CodecCosts>,
    config: EdgeConfig,
    hysteresis: Hysteresis,
    /// Whether the hysteresis holds a plan for an image-file graph (one node longer).
    hysteresis_for_file: bool,
    last_placement: Option<Vec<bool>>,
    /// The CPU's energy counters, read around the edge's compute, or why there are none.
    energy: Result<EnergyCounters, EnergyUnavailable>,
    /// The cloud servers, in the order given (names expanded to their addresses; servers
    /// found behind a name later come last).
    servers: Vec<Member>,
    /// The servers as the application gave them, to look their names up again.
    pool: Servers,
    /// When the names are looked up again.
    lookups: Lookups,
    /// Whose turn it is among servers that plan equally well.
    turn: usize,
    /// Held while the session computes on the edge (decoding, layers, encoding). Sessions that
    /// share it ([`EdgeSession::lane`], [`EdgeSession::share_edge_with`]) are one edge device:
    /// one frame computes at a time while others upload or wait for the cloud.
    edge_turn: Arc<tokio::sync::Mutex<()>>,
    /// The uploads in flight over this edge's uplink, shared like `edge_turn`: lanes whose
    /// uploads overlap each measure the link, not their share of it.
    link_share: Arc<LinkShare>,
}

/// A server requests may use now: its index in the session and its client.
type Usable = (usize, Arc<Client>);

/// A request planned for one server, or for none when no server is usable.
struct Planned {
    /// The server's index and client.
    server: Option<Usable>,
    planning: PlanningGraph,
    scenario: Scenario,
    /// The solver's plan (before the hysteresis).
    plan: Plan,
    link: Link,
    estimate: Option<LinkEstimate>,
    wait_ms: f64,
}

/// What became of the cloud request.
enum Remote {
    /// Server `.0` answered.
    Done(usize, InferResponse),
    /// Finish locally, for this reason.
    Fallback(String),
}

impl EdgeSession {
    /// A session for `model` whose planner uses `graph`'s costs. It starts disconnected: until
    /// [`EdgeSession::connect`] succeeds, plans that use the cloud run locally as fallbacks.
    ///
    /// `graph` must be the model's network with costs (`Net::graph`, or
    /// [`EdgeSession::with_profiles`]).
    pub fn new(
        model: LoadedModel,
        graph: Graph,
        config: EdgeConfig,
    ) -> Result<EdgeSession, RuntimeError> {
        let cloud_factor = speed_ratio(&graph);
        let edge_total_ms = (0..graph.len()).map(|v| graph.edge_ms(v)).sum();
        let graph = slowed(graph, config.edge_slowdown)?;
        let net = model.model.net();
        let mismatch = |reason: String| RuntimeError::GraphMismatch {
            net: net.name().to_string(),
            reason,
        };
        if graph.len() != net.len() {
            return Err(mismatch(format!(
                "it has {} nodes, the network {}",
                graph.len(),
                net.len()
            )));
        }
        // The graph keeps its own topological order; map its indices to the network's by id,
        // and check that every node reads the same inputs in both.
        let mut to_net = Vec::with_capacity(graph.len());
        for g in 0..graph.len() {
            let id = graph.id(g);
            let v = net
                .index_of(id)
                .map_err(|_| mismatch(format!("the graph has a node `{id}` the network lacks")))?;
            let mut graph_inputs: Vec<&str> =
                graph.inputs(g).iter().map(|&u| graph.id(u)).collect();
            let mut net_inputs: Vec<&str> = net.nodes()[v]
                .inputs()
                .iter()
                .map(|&u| net.nodes()[u].id())
                .collect();
            graph_inputs.sort_unstable();
            net_inputs.sort_unstable();
            if graph_inputs != net_inputs {
                return Err(mismatch(format!(
                    "node `{id}` reads {graph_inputs:?} in the graph but {net_inputs:?} in the network"
                )));
            }
            to_net.push(v);
        }
        let session = EdgeSession {
            hysteresis: Hysteresis::new(config.min_saving)?,
            model: Arc::new(model.model),
            weights_hash: model.weights_hash,
            assumed: ServerCosts {
                graph: graph.clone(),
                decoding: None,
                cloud_factor,
                source: if config.use_published_costs {
                    CloudCostSource::Assumed(None)
                } else {
                    CloudCostSource::Given
                },
            },
            given: graph,
            published: CostCache::default(),
            edge_total_ms,
            to_net,
            codec_costs: None,
            hysteresis_for_file: false,
            last_placement: None,
            energy: EnergyCounters::system(),
            servers: Vec::new(),
            pool: Servers::default(),
            lookups: Lookups::default(),
            turn: FIRST_TURN.fetch_add(1, Ordering::Relaxed),
            edge_turn: Arc::default(),
            link_share: LinkShare::new(),
            config,
        };
        session.check_config()?;
        Ok(session)
    }

    /// Another session for the same model, costs and settings, to keep one more frame of a
    /// pipelined stream in flight: it shares this session's edge (one frame computes at a
    /// time), starts with the codec costs and published cost tables measured so far, and is
    /// disconnected until connected (each lane has its own connection).
    pub fn lane(&self) -> EdgeSession {
        EdgeSession {
            model: self.model.clone(),
            weights_hash: self.weights_hash.clone(),
            given: self.given.clone(),
            assumed: self.assumed.clone(),
            published: self.published.clone(),
            edge_total_ms: self.edge_total_ms,
            to_net: self.to_net.clone(),
            codec_costs: self.codec_costs.clone(),
            config: self.config.clone(),
            hysteresis: self.hysteresis.clone(),
            hysteresis_for_file: self.hysteresis_for_file,
            last_placement: self.last_placement.clone(),
            energy: EnergyCounters::system(),
            servers: Vec::new(),
            pool: Servers::default(),
            lookups: Lookups::default(),
            turn: FIRST_TURN.fetch_add(1, Ordering::Relaxed),
            edge_turn: self.edge_turn.clone(),
            link_share: self.link_share.clone(),
        }
    }

    /// Makes this session compute on the same edge as `other`, and send over the same
    /// uplink: from now on the two never compute at the same time (as [`EdgeSession::lane`]s
    /// do), and uploads that overlap count each other in their link estimates. Connections
    /// made before this call keep the link to themselves.
    pub fn share_edge_with(&mut self, other: &EdgeSession) {
        self.edge_turn = other.edge_turn.clone();
        self.link_share = other.link_share.clone();
    }

    /// Does now what the first request would otherwise pay for: measures the codecs' costs and
    /// fetches each connected server's published costs.
    pub async fn prepare(&mut self) -> Result<(), RuntimeError> {
        if self.config.split != SplitMode::EdgeOnly {
            self.usable_servers().await?;
        }
        self.measure_codecs().await
    }

    /// A session whose planner predicts every layer's cost with device profiles: `edge` for
    /// this device, `cloud` for the server.
    pub fn with_profiles(
        model: LoadedModel,
        edge: &DeviceProfile,
        cloud: &DeviceProfile,
        config: EdgeConfig,
    ) -> Result<EdgeSession, RuntimeError> {
        let graph = DeviceProfile::predict_graph(model.model.net(), edge, cloud)?;
        EdgeSession::new(model, graph, config)
    }

    fn check_config(&self) -> Result<(), RuntimeError> {
        let config = &self.config;
        if matches!(
            config.solver,
            Solver::Dp { allow_return: true } | Solver::Exhaustive { allow_return: true }
        ) {
            return Err(RuntimeError::Config {
                name: "solver",
                reason: "plans that send tensors back to the edge cannot run here; use a solver without allow_return".into(),
            });
        }
        if config.objective == Objective::Stream
            && matches!(config.solver, Solver::Prefix | Solver::Dp { .. })
        {
            return Err(RuntimeError::Config {
                name: "solver",
                reason: "the stream objective is not a sum of per-layer costs; use the auto, chain, mincut or exhaustive solver".into(),
            });
        }
        if config.request_timeout.is_zero() {
            return Err(RuntimeError::Config {
                name: "request_timeout",
                reason: "must be longer than zero".into(),
            });
        }
        if config.reconnect_delay.is_zero() || config.max_reconnect_delay < config.reconnect_delay {
            return Err(RuntimeError::Config {
                name: "reconnect_delay",
                reason: "must be longer than zero and no longer than max_reconnect_delay".into(),
            });
        }
        // An out-of-range override or a fixed cut that cannot run is reported now, not on the
        // first request.
        let link = planning_link(None, config.uplink_mbps, &config.assumed_link)?;
        if let SplitMode::Fixed(ids) = &config.split {
            Plan::fixed(&self.given, &Scenario::latency(link), ids)?;
        }
        Ok(())
    }

    /// Connects to the cloud now, replacing any earlier connections: one server (a
    /// [`transport::ClientConfig`]) or several ([`Servers`]; a name stands for every address
    /// it resolves to).
    ///
    /// Each server's welcome is checked: it must offer this model, and with the same weights
    /// hash when it has loaded it already. It succeeds when at least one server can be used;
    /// [`EdgeSession::server_errors`] says why any other cannot. Otherwise the first server's
    /// error is returned. A server that cannot be reached is tried again in the background,
    /// and until one answers requests run locally as fallbacks; a refusal (wrong token,
    /// changed certificate, other weights) is not retried.
    pub async fn connect(&mut self, servers: impl Into<Servers>) -> Result<(), RuntimeError> {
        let results = self.connect_all(servers.into()).await?;
        if results.iter().any(Result::is_ok) {
            return Ok(());
        }
        results
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), Err)
    }

    /// Connects to every server, concurrently, and checks each welcome and fetches each
    /// server's published costs. One result per server, in order.
    async fn connect_all(
        &mut self,
        servers: Servers,
    ) -> Result<Vec<Result<(), RuntimeError>>, RuntimeError> {
        if servers.configs().is_empty() {
            return Err(RuntimeError::Config {
                name: "servers",
                reason: "no cloud server given; give at least one".into(),
            });
        }
        let backoff = self.backoff();
        self.servers.clear();
        let mut results = Vec::new();
        let mut connecting = Vec::new();
        for resolved in servers.resolve().await {
            match resolved {
                Ok(server) => {
                    let config = self.client_config(&server);
                    let task = tokio::spawn(CloudLink::connect(config, backoff));
                    connecting.push((server, task));
                }
                Err((server, error)) => results.push(Err(RuntimeError::Connect {
                    server,
                    error: Box::new(error),
                })),
            }
        }
        self.lookups = Lookups::new(&servers, Instant::now());
        self.pool = servers;
        for (server, task) in connecting {
            let (link, result) = task.await.map_err(|e| RuntimeError::Task(e.to_string()))?;
            let label = server.label.clone();
            let i = self.join(server, link);
            results.push(match result {
                Err(error) => Err(RuntimeError::Connect {
                    server: label,
                    error: Box::new(error),
                }),
                Ok(()) => match self.usable_client(i) {
                    Ok(Some(client)) => {
                        self.update_cloud_costs(i, &client).await;
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(problem) => Err(problem),
                },
            });
        }
        Ok(results)
    }

    /// Adds `server`, connected (or connecting) by `link`, to the session's servers; returns
    /// its index.
    fn join(&mut self, server: Resolved, link: CloudLink) -> usize {
        self.servers.push(Member {
            link,
            origin: server.origin,
            address: server.address,
            label: server.label,
            seen_generation: 0,
            costs_generation: 0,
            costs: self.assumed.clone(),
            wait: WaitEstimate::idle(self.config.load_half_life),
            in_flight: server.in_flight,
        });
        self.servers.len() - 1
    }

    /// Applies the name lookups that finished since the last request, and starts those due
    /// (see [`EdgeConfig::resolve_interval`]).
    async fn follow_names(&mut self) {
        if let Some(found) = self.lookups.finished().await {
            for (origin, addresses) in found {
                match addresses {
                    Ok(addresses) => self.follow_name(origin, &addresses),
                    Err(error) => {
                        warn!(%error, "looking a cloud server's name up again failed; keeping its servers");
                    }
                }
            }
        }
        let servers = &self.servers;
        let down = |origin| {
            !servers
                .iter()
                .any(|m| m.origin == origin && m.link.is_healthy())
        };
        self.lookups.start_due(
            &self.pool,
            Instant::now(),
            self.config.resolve_interval,
            self.config.reconnect_delay,
            down,
        );
    }

    /// Follows the name at `origin` to the `addresses` it stands for now: a new address joins
    /// as a server of its own (connecting in the background, pinned under the name), and a
    /// server whose address is gone leaves unless it is connected (it leaves once its
    /// connection fails, at a later lookup).
    fn follow_name(&mut self, origin: usize, addresses: &[SocketAddr]) {
        self.servers.retain(|m| {
            let keep = m.origin != origin || addresses.contains(&m.address) || m.link.is_healthy();
            if !keep {
                info!(server = %m.label, "the name no longer gives this address; dropping the server");
            }
            keep
        });
        let backoff = self.backoff();
        for &address in addresses {
            if self.servers.iter().any(|m| m.address == address) {
                continue;
            }
            let server = self.pool.member(origin, address);
            info!(server = %server.label, "the name gives a new address; connecting to it");
            let link = CloudLink::connect_later(self.client_config(&server), backoff);
            self.join(server, link);
        }
    }

    /// A server's client settings, its uploads marked on this edge's uplink (unless the
    /// application gave a [`LinkShare`] of its own).
    fn client_config(&self, server: &Resolved) -> ClientConfig {
        let mut config = server.config.clone();
        config
            .link_share
            .get_or_insert_with(|| self.link_share.clone());
        config
    }

    /// The reconnect delays of the session's connections.
    fn backoff(&self) -> Backoff {
        Backoff {
            first: self.config.reconnect_delay,
            max: self.config.max_reconnect_delay,
        }
    }

    /// The CPU energy counters the session reads around the edge's compute
    /// ([`Measured::edge_energy_mj`]), or why this machine has none.
    pub fn energy_counters(&self) -> Result<&EnergyCounters, &EnergyUnavailable> {
        self.energy.as_ref()
    }

    /// Where the planner's cloud costs come from now (for the first usable server).
    pub fn cloud_cost_source(&self) -> &CloudCostSource {
        &self.current_costs().source
    }

    /// The costs of the first usable server (or of the first server, or the given ones).
    fn current_costs(&self) -> &ServerCosts {
        self.servers
            .iter()
            .find(|m| m.link.is_healthy())
            .or(self.servers.first())
            .map_or(&self.assumed, |m| &m.costs)
    }

    /// Plans with server `i`'s published costs, fetching them once per server and weights
    /// (within the request timeout). A server that cannot answer leaves the given costs in
    /// place for it, and the reason in its [`CloudCostSource`].
    async fn update_cloud_costs(&mut self, i: usize, client: &Client) {
        let member = &mut self.servers[i];
        if !self.config.use_published_costs || member.costs_generation == member.seen_generation {
            return;
        }
        member.costs_generation = member.seen_generation;
        let Some(fingerprint) = client.fingerprint() else {
            return self.assume_cloud_costs(i, "the server's certificate is unknown".into());
        };
        let table = match self.published.get(fingerprint, &self.weights_hash) {
            Some(table) => table,
            None => {
                let ask = client.costs(self.model.net().name(), &self.weights_hash);
                match tokio::time::timeout(self.config.request_timeout, ask).await {
                    Ok(Ok(table)) => {
                        let table = Arc::new(table);
                        self.published.insert(fingerprint, table.clone());
                        table
                    }
                    Ok(Err(e)) => return self.assume_cloud_costs(i, e.to_string()),
                    Err(_) => return self.assume_cloud_costs(i, "no answer in time".into()),
                }
            }
        };
        match published::apply(&self.given, &table) {
            Ok(graph) => {
                self.servers[i].costs = ServerCosts {
                    cloud_factor: speed_ratio_of(&graph, self.edge_total_ms),
                    decoding: Some(table.decoding.clone()),
                    graph,
                    source: CloudCostSource::Published {
                        fingerprint: fingerprint.to_string(),
                        method: table.method.clone(),
                    },
                };
            }
            Err(e) => self.assume_cloud_costs(i, format!("its table does not fit: {e}")),
        }
    }

    /// Plans with the given cloud costs for server `i`, saying why.
    fn assume_cloud_costs(&mut self, i: usize, reason: String) {
        let member = &mut self.servers[i];
        warn!(model = %self.model.net().name(), server = %member.label, %reason, "planning with assumed cloud costs");
        member.costs = ServerCosts {
            source: CloudCostSource::Assumed(Some(reason)),
            ..self.assumed.clone()
        };
    }

    /// Connects to the cloud now, or runs locally while it cannot be reached.
    ///
    /// A server that cannot be reached now (no answer, a timeout, a connection lost during the
    /// handshake) is not fatal: the session uses the other servers, or finishes requests
    /// locally, and keeps trying it in the background; the reason comes back as a warning to
    /// show the user. A refusal (wrong token, changed certificate, other weights, a model the
    /// server lacks) stops that server's use for good, and a name that does not resolve is
    /// only looked up again while the session runs ([`EdgeConfig::resolve_interval`]): a
    /// warning while another server is usable or may come up, else an error, since waiting
    /// would not fix it. Several warnings come back joined by `; `.
    pub async fn connect_or_run_locally(
        &mut self,
        servers: impl Into<Servers>,
    ) -> Result<Option<String>, RuntimeError> {
        let results = self.connect_all(servers.into()).await?;
        let connected = results.iter().any(Result::is_ok);
        let passing =
            |e: &RuntimeError| matches!(e, RuntimeError::Connect { error, .. } if may_pass(error));
        let alive = connected || results.iter().any(|r| r.as_ref().is_err_and(passing));
        let mut warnings = Vec::new();
        for result in results {
            match result {
                Ok(()) => {}
                Err(RuntimeError::Connect { server, error }) if may_pass(&error) => {
                    let meanwhile = if connected {
                        "using the other servers"
                    } else {
                        "running locally"
                    };
                    warnings.push(format!(
                        "cannot reach the cloud at {server} ({error}); {meanwhile} until it answers"
                    ));
                }
                Err(e) if alive => {
                    warnings.push(format!("{e}; this server is not used"));
                }
                Err(e) => return Err(e),
            }
        }
        Ok((!warnings.is_empty()).then(|| warnings.join("; ")))
    }

    /// Closes the connections; later requests run locally as fallbacks until the next
    /// [`EdgeSession::connect`].
    pub fn disconnect(&mut self) {
        self.servers.clear();
        self.pool = Servers::default();
        self.lookups = Lookups::default();
    }

    /// Whether requests can use the cloud now (at least one server).
    pub fn is_connected(&self) -> bool {
        self.servers.iter().any(|m| m.link.is_healthy())
    }

    /// Why the cloud cannot be used, when no server can (`None` when one is usable or none
    /// was asked for). With several servers, each one's reason after its name.
    pub fn cloud_error(&self) -> Option<String> {
        if self.is_connected() {
            return None;
        }
        let errors = self.server_errors();
        match errors.as_slice() {
            [] => None,
            [(_, error)] if self.servers.len() == 1 => Some(error.clone()),
            _ => Some(
                errors
                    .iter()
                    .map(|(server, error)| format!("{server}: {error}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }

    /// Every server that cannot be used now, named, with why: down and being retried, or
    /// refused for good (a changed certificate, a wrong token, other weights).
    pub fn server_errors(&self) -> Vec<(String, String)> {
        self.servers
            .iter()
            .filter(|m| !m.link.is_healthy())
            .map(|m| {
                let error = m.link.last_error();
                let error = error.unwrap_or_else(|| "the connection was closed".into());
                (m.label.clone(), error)
            })
            .collect()
    }

    /// The servers connected to, named as messages name them (`name (address)` for a server
    /// given by a name).
    pub fn servers(&self) -> Vec<String> {
        self.servers.iter().map(|m| m.label.clone()).collect()
    }

    /// The transport client of the first usable server's connection (or the first server's
    /// last one): its welcome, its link estimate, probes. The session closes it when it is
    /// dropped or disconnected.
    pub fn client(&self) -> Option<Arc<Client>> {
        self.servers
            .iter()
            .find(|m| m.link.is_healthy())
            .or(self.servers.first())
            .and_then(|m| m.link.last_client())
    }

    /// The transport clients of every server connected at least once, in order.
    pub fn clients(&self) -> Vec<Arc<Client>> {
        self.servers
            .iter()
            .filter_map(|m| m.link.last_client())
            .collect()
    }

    /// The edge's model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The cost graph the planner uses (for the first usable server).
    pub fn graph(&self) -> &Graph {
        &self.current_costs().graph
    }

    /// The hash of the edge's weights, sent with every request.
    pub fn weights_hash(&self) -> &str {
        &self.weights_hash
    }

    /// The settings.
    pub fn config(&self) -> &EdgeConfig {
        &self.config
    }

    /// Changes the split mode; a fixed cut is checked first. The hysteresis starts afresh.
    pub fn set_split(&mut self, split: SplitMode) -> Result<(), RuntimeError> {
        let previous = std::mem::replace(&mut self.config.split, split);
        if let Err(e) = self.check_config() {
            self.config.split = previous;
            return Err(e);
        }
        self.hysteresis = Hysteresis::new(self.config.min_saving)?;
        Ok(())
    }

    /// Multiplies the planner's edge costs by `factor`: this device turned out `factor` times
    /// slower (below 1, faster) than the profile it was planned with, for example under a CPU
    /// quota measured after the profile was made. The hysteresis starts afresh.
    pub fn scale_edge_costs(&mut self, factor: f64) -> Result<(), RuntimeError> {
        let scale = |graph: &mut Graph| -> Result<(), RuntimeError> {
            *graph = graph
                .with_edge_scaled(factor)
                .map_err(|e| RuntimeError::Config {
                    name: "edge cost scale",
                    reason: e.to_string(),
                })?;
            Ok(())
        };
        scale(&mut self.given)?;
        scale(&mut self.assumed.graph)?;
        for member in &mut self.servers {
            scale(&mut member.costs.graph)?;
        }
        self.last_placement = None;
        self.hysteresis = Hysteresis::new(self.config.min_saving)?;
        Ok(())
    }

    /// Changes the loss the planner may use at the boundary. Codecs newly allowed are measured
    /// on the next request. The hysteresis starts afresh.
    pub fn set_max_loss(&mut self, max_loss: Loss) -> Result<(), RuntimeError> {
        if max_loss > self.config.max_loss {
            self.codec_costs = None;
        }
        self.config.max_loss = max_loss;
        self.hysteresis = Hysteresis::new(self.config.min_saving)?;
        Ok(())
    }

    /// Sends everything as raw f32 (true) or lets the planner pick codecs and send image
    /// files (false); see [`EdgeConfig::raw_wire`]. The hysteresis starts afresh.
    pub fn set_raw_wire(&mut self, raw_wire: bool) -> Result<(), RuntimeError> {
        if raw_wire != self.config.raw_wire {
            self.config.raw_wire = raw_wire;
            self.hysteresis = Hysteresis::new(self.config.min_saving)?;
        }
        Ok(())
    }

    /// Changes the planning uplink override (Mbit/s; `None` to use the measurement).
    pub fn set_uplink_override(&mut self, uplink_mbps: Option<f64>) -> Result<(), RuntimeError> {
        planning_link(None, uplink_mbps, &self.config.assumed_link)?;
        self.config.uplink_mbps = uplink_mbps;
        Ok(())
    }

    /// Server `i`'s client when it is usable, after checking the welcome of a new connection.
    /// A welcome that does not fit (the model is not offered, other weights) stops the
    /// server's use and is the error.
    fn usable_client(&mut self, i: usize) -> Result<Option<Arc<Client>>, RuntimeError> {
        let member = &mut self.servers[i];
        let Some((client, generation)) = member.link.usable() else {
            return Ok(None);
        };
        if generation != member.seen_generation {
            let welcome = client.welcome();
            let model = self.model.net().name();
            let offer = welcome.models.iter().find(|m| m.id == model);
            let problem = match offer {
                None => Some(RuntimeError::NotOffered {
                    server: member.label.clone(),
                    model: model.to_string(),
                    offered: welcome
                        .models
                        .iter()
                        .map(|m| m.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                }),
                Some(offer)
                    if !offer.weights_hash.is_empty()
                        && offer.weights_hash != self.weights_hash =>
                {
                    Some(RuntimeError::WeightsMismatch {
                        server: member.label.clone(),
                        model: model.to_string(),
                        edge_hash: self.weights_hash.clone(),
                        cloud_hash: offer.weights_hash.clone(),
                    })
                }
                Some(_) => None,
            };
            if let Some(problem) = problem {
                member.link.down(problem.to_string(), false);
                return Err(problem);
            }
            member.seen_generation = generation;
            member.wait.set(welcome.state.wait_ms, Instant::now());
        }
        Ok(Some(client))
    }

    /// The servers requests may use now, each checked (a new connection's welcome), with its
    /// published costs fetched and its link estimate fresh; and why one could not be used.
    /// A welcome that does not fit is an error when no server is left.
    async fn usable_servers(&mut self) -> Result<(Vec<Usable>, Option<String>), RuntimeError> {
        let mut usable = Vec::new();
        let mut trouble = None;
        let mut problem = None;
        for i in 0..self.servers.len() {
            let client = match self.usable_client(i) {
                Ok(Some(client)) => client,
                Ok(None) => continue,
                Err(e) => {
                    warn!(server = %self.servers[i].label, error = %e, "not using this cloud server");
                    problem.get_or_insert(e);
                    continue;
                }
            };
            self.update_cloud_costs(i, &client).await;
            match self.refresh_link(i, &client).await? {
                Ok(()) => usable.push((i, client)),
                Err(reason) => {
                    trouble.get_or_insert(reason);
                }
            }
        }
        match problem {
            Some(e) if usable.is_empty() => Err(e),
            _ => Ok((usable, trouble)),
        }
    }

    /// Runs the network on `input` (`[N, ...input shape]`): plans, runs the edge part, ships the
    /// boundary tensors, and returns the output with the plan and both breakdowns.
    ///
    /// With several servers, the request goes to the one whose plan is cheapest ([`Outcome::server`]
    /// names the one that answered). When a server is unreachable, refuses as busy, fails
    /// internally or does not answer within the timeout, the request goes to the next usable
    /// server, and when none is left it finishes locally and [`Outcome::fallback`] says why; a
    /// reconnect starts in the background when a connection is at fault. Refusals that running
    /// locally would hide (unknown model, other weights, a request the server finds invalid)
    /// are errors. Edge-only plans never touch the network.
    pub async fn infer(&mut self, input: HostTensor) -> Result<Outcome, RuntimeError> {
        self.check_input(&input)?;
        self.infer_input(Input::Tensor(input)).await
    }

    /// Runs the network on an encoded image file (JPEG or PNG), as the application holds it.
    ///
    /// The planner may send the file itself (cloud-only: the cloud decodes and preprocesses it
    /// with the same code, so the output is bit-for-bit a local run's), or decode it here and
    /// split as [`EdgeSession::infer`] does; the decoding is priced on the side that does it.
    /// The network must take ImageNet's `3x224x224` input.
    pub async fn infer_image(&mut self, file: Vec<u8>) -> Result<Outcome, RuntimeError> {
        let net = self.model.net();
        if net.input_shape() != [3, 224, 224] {
            return Err(RuntimeError::Input {
                net: net.name().to_string(),
                expected: shape_text(net.input_shape()),
                got: vec![1, 3, 224, 224],
            });
        }
        let (w, h) = image_dimensions(&file)?;
        let pixels = u64::from(w) * u64::from(h);
        self.infer_input(Input::File(FileInput {
            bytes: file,
            pixels,
        }))
        .await
    }

    async fn infer_input(&mut self, input: Input) -> Result<Outcome, RuntimeError> {
        let (usable, trouble) = if self.config.split == SplitMode::EdgeOnly {
            (Vec::new(), None)
        } else {
            self.follow_names().await;
            self.usable_servers().await?
        };
        self.measure_codecs().await?;
        let file = match &input {
            Input::File(file) => Some(file),
            Input::Tensor(_) => None,
        };
        let (chosen, standby) = self.choose_server(usable, file)?;
        let Planned {
            server,
            planning,
            scenario,
            plan: candidate,
            link,
            estimate,
            wait_ms,
        } = chosen;
        let plan = self.choose(&planning, &scenario, candidate)?;
        let switched = self.last_placement.as_deref() != Some(plan.placement());
        self.last_placement = Some(plan.placement().to_vec());
        let net = self.model.net();
        let sends_file = planning.sends_file(&plan);
        let mut cloud_mask = planning.net_mask(&plan, net.len());
        // Sending the file puts `input` (decoding) on the cloud; the request names the nodes
        // the cloud runs after it.
        if sends_file {
            cloud_mask[0] = false;
        }
        let cloud_nodes: Vec<String> = (0..net.len())
            .filter(|&v| cloud_mask[v])
            .map(|v| net.nodes()[v].id().to_string())
            .collect();
        let codecs = planning.codecs(&plan)?;

        let started = Instant::now();
        let mut measured = Measured::default();
        let mut fallback = None;
        let mut served_by = None;
        let mut sent = Vec::new();
        // The input as a tensor, decoding the file here unless the plan sends it.
        let (tensor, file) = match input {
            Input::File(file) if sends_file => (None, Some(file)),
            Input::File(file) => {
                let (tensor, ms) = self.decode_here(file).await?;
                measured.edge_ms += ms;
                (Some(tensor), None)
            }
            Input::Tensor(tensor) => (Some(tensor), None),
        };
        let output = if cloud_nodes.is_empty() {
            let all = vec![true; cloud_mask.len()];
            let (output, edge_ms, mj) = self.run_local(Activations::new(), all, tensor).await?;
            measured.edge_ms += edge_ms;
            measured.add_edge_energy(mj);
            output
        } else {
            let batch = tensor.as_ref().map_or(1, |t| t.shape()[0]);
            // A sent file is kept for a local fallback; a tensor run keeps its boundary.
            let (payload, boundary, kept_file) = match (tensor, file) {
                (_, Some(file)) => {
                    sent.push(Sent {
                        node: planning::INPUT_FILE_ID.to_string(),
                        codec: None,
                        raw_bytes: file.bytes.len() as u64,
                        wire_bytes: file.bytes.len() as u64,
                    });
                    (
                        Ok(Payload::File(file.bytes.clone())),
                        Activations::new(),
                        Some(file),
                    )
                }
                (tensor, None) => {
                    let edge_mask: Vec<bool> = cloud_mask.iter().map(|&c| !c).collect();
                    let (boundary, edge_ms, mj) =
                        self.run_part(edge_mask, Activations::new(), tensor).await?;
                    measured.edge_ms += edge_ms;
                    measured.add_edge_energy(mj);
                    // A boundary that no wire tensor can carry is finished here.
                    let payload = match self.encode_boundary(&boundary, &codecs, &mut sent).await {
                        Ok((tensors, encode_ms)) => {
                            measured.edge_ms += encode_ms;
                            Ok(Payload::Tensors(tensors))
                        }
                        Err(RuntimeError::Tensor { what, reason }) => {
                            Err(format!("the boundary cannot be sent ({what}: {reason})"))
                        }
                        Err(e) => return Err(e),
                    };
                    (payload, boundary, None)
                }
            };
            let remote = match payload {
                Err(reason) => Remote::Fallback(reason),
                Ok(payload) => {
                    let request = self.request(&cloud_nodes, payload);
                    let servers = server.into_iter().chain(standby).collect();
                    self.send(servers, request, batch, trouble).await?
                }
            };
            match remote {
                Remote::Done(i, response) => {
                    served_by = Some(self.servers[i].label.clone());
                    measured.upload_ms = response.upload.span_us as f64 / 1e3;
                    measured.download_ms = response.download.span_us as f64 / 1e3;
                    measured.queue_ms = response.queue_ms;
                    measured.cloud_ms = response.cloud_ms + response.decode_ms;
                    measured.load_ms = response.load_ms;
                    self.servers[i]
                        .wait
                        .set(response.state.wait_ms, Instant::now());
                    let predicted_decode_ms = planning.predicted_decode_ms(&plan);
                    if let Some(costs) = self.codec_costs.as_mut() {
                        costs.record_cloud_decode(predicted_decode_ms, response.decode_ms);
                    }
                    self.remote_output(&response, batch)?
                }
                Remote::Fallback(reason) => {
                    warn!(model = %self.model.net().name(), %reason, "finishing the request locally");
                    sent.clear();
                    let (boundary, part, tensor) = match kept_file {
                        Some(file) => {
                            let (tensor, ms) = self.decode_here(file).await?;
                            measured.edge_ms += ms;
                            (
                                Activations::new(),
                                vec![true; cloud_mask.len()],
                                Some(tensor),
                            )
                        }
                        None => (boundary, cloud_mask, None),
                    };
                    let (output, local_ms, mj) = self.run_local(boundary, part, tensor).await?;
                    measured.edge_ms += local_ms;
                    measured.add_edge_energy(mj);
                    fallback = Some(reason);
                    output
                }
            }
        };
        measured.total_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(Outcome {
            output,
            predicted: *plan.breakdown(),
            plan,
            graph: planning.graph,
            cloud_nodes,
            sent,
            switched,
            measured,
            link,
            estimate,
            wait_ms,
            fallback,
            server: served_by,
        })
    }

    /// Plans the request for every usable server and picks the server and the cut together:
    /// the cheapest plan, equal ones in turn. Returns it with the other usable servers, best
    /// first, to fail over to. Without a usable server, the plan is for the first server's
    /// costs and last link estimate (or the given costs and the assumed link).
    fn choose_server(
        &mut self,
        usable: Vec<Usable>,
        file: Option<&FileInput>,
    ) -> Result<(Planned, Vec<Usable>), RuntimeError> {
        let now = Instant::now();
        let mut options = Vec::with_capacity(usable.len().max(1));
        for (i, client) in usable {
            // Any reply since (a result, a probe, a status) is newer than what we saw.
            let (state, age) = client.server_state();
            let member = &mut self.servers[i];
            member
                .wait
                .set(state.wait_ms, now.checked_sub(age).unwrap_or(now));
            let wait_ms = member.expected_wait_ms(now);
            let estimate = Some(client.link());
            options.push(self.plan_for(
                &self.servers[i].costs,
                estimate,
                wait_ms,
                file,
                Some((i, client)),
            )?);
        }
        if options.is_empty() {
            let estimate = self.client().map(|c| c.link());
            let wait_ms = self
                .servers
                .first()
                .map_or(0.0, |m| m.expected_wait_ms(now));
            options.push(self.plan_for(self.current_costs(), estimate, wait_ms, file, None)?);
        }
        let values: Vec<f64> = options.iter().map(|o| o.plan.value()).collect();
        let first = pool::pick(&values, self.config.min_saving, self.turn).unwrap_or(0);
        self.turn = self.turn.wrapping_add(1);
        let chosen = options.swap_remove(first);
        options.sort_by(|a, b| a.plan.value().total_cmp(&b.plan.value()));
        let standby = options.into_iter().filter_map(|o| o.server).collect();
        Ok((chosen, standby))
    }

    /// The solver's plan for one server: its costs, link estimate and expected wait.
    fn plan_for(
        &self,
        costs: &ServerCosts,
        estimate: Option<LinkEstimate>,
        wait_ms: f64,
        file: Option<&FileInput>,
        server: Option<Usable>,
    ) -> Result<Planned, RuntimeError> {
        let link = planning_link(
            estimate.as_ref(),
            self.config.uplink_mbps,
            &self.config.assumed_link,
        )?;
        let scenario = Scenario::new(link, self.config.objective, 1.0)?.with_wait(wait_ms)?;
        let planning = self.planning_graph(file, costs)?;
        let graph = &planning.graph;
        let plan = match &self.config.split {
            SplitMode::Auto => self.config.solver.solve(graph, &scenario)?,
            SplitMode::EdgeOnly => Plan::edge_only(graph, &scenario),
            SplitMode::CloudOnly => Plan::cloud_only(graph, &scenario),
            SplitMode::Fixed(ids) => Plan::fixed(graph, &scenario, ids)?,
        };
        Ok(Planned {
            server,
            planning,
            scenario,
            plan,
            link,
            estimate,
            wait_ms,
        })
    }

    /// Measures the codecs' costs on the first request that can use them.
    async fn measure_codecs(&mut self) -> Result<(), RuntimeError> {
        if self.codec_costs.is_some() {
            return Ok(());
        }
        let model = self.model.clone();
        let loss = self.config.max_loss;
        let costs = blocking(move || {
            let sample = sample_input(&model)?;
            CodecCosts::measure(&model, sample, loss)
        })
        .await?;
        self.codec_costs = Some(costs);
        Ok(())
    }

    /// The graph a request would be planned on now: the session's graph with the encodings
    /// its loss budget allows and their current estimates (measuring the codecs first if no
    /// request has), and for an image file an `input_file` node in front of `input` (see
    /// [`Outcome::graph`]). For planning without running, as `plan` and the benches do.
    pub async fn request_graph(&mut self, image: Option<&[u8]>) -> Result<Graph, RuntimeError> {
        self.measure_codecs().await?;
        let file = match image {
            Some(bytes) => {
                let (w, h) = image_dimensions(bytes)?;
                Some(FileInput {
                    bytes: bytes.to_vec(),
                    pixels: u64::from(w) * u64::from(h),
                })
            }
            None => None,
        };
        Ok(self
            .planning_graph(file.as_ref(), self.current_costs())?
            .graph)
    }

    /// The codec and image-decoding costs the session plans with, once measured.
    pub fn codec_costs(&self) -> Option<&CodecCosts> {
        self.codec_costs.as_ref()
    }

    /// A server's cost graph with this request's encoding estimates and, for an image file,
    /// the file's node.
    fn planning_graph(
        &self,
        file: Option<&FileInput>,
        costs: &ServerCosts,
    ) -> Result<PlanningGraph, RuntimeError> {
        let slowdown = self.config.edge_slowdown;
        let cloud = CloudDecoding {
            published: costs.decoding.as_ref(),
            cloud_factor: costs.cloud_factor,
        };
        let graph = &costs.graph;
        let encodings = (0..graph.len())
            .map(|g| match &self.codec_costs {
                Some(costs) if !self.config.raw_wire => costs.encodings(
                    self.to_net[g],
                    graph.out_bytes(g),
                    self.config.max_loss,
                    slowdown,
                    cloud,
                ),
                _ => Vec::new(),
            })
            .collect();
        let file = match (file, &self.codec_costs) {
            (Some(file), Some(costs)) => Some(planning::FileCosts {
                bytes: file.bytes.len() as u64,
                edge_ms: costs.image_ms(file.pixels) * slowdown,
                cloud_ms: costs.cloud_image_ms(file.pixels, cloud),
                may_send: !self.config.raw_wire,
            }),
            _ => None,
        };
        PlanningGraph::build(graph, &self.to_net, encodings, file)
    }

    /// Decodes and preprocesses an image file on the edge (emulated slowness included), and
    /// learns its cost.
    async fn decode_here(&mut self, file: FileInput) -> Result<(HostTensor, f64), RuntimeError> {
        let turn = self.edge_turn.clone();
        let _computing = turn.lock().await;
        let pixels = file.pixels;
        let (tensor, ms) = blocking(move || {
            let started = Instant::now();
            let tensor = decode_image(&file.bytes)?;
            Ok((tensor, started.elapsed().as_secs_f64() * 1e3))
        })
        .await?;
        if let Some(costs) = self.codec_costs.as_mut() {
            costs.record_image(pixels, ms);
        }
        Ok((tensor, self.emulate_slow_edge(ms).await))
    }

    /// Encodes the boundary tensors with the plan's codecs on a blocking thread, learns their
    /// sizes and times, and returns them with the edge's time (emulated slowness included).
    async fn encode_boundary(
        &mut self,
        boundary: &Activations,
        codecs: &BTreeMap<usize, Codec>,
        sent: &mut Vec<Sent>,
    ) -> Result<(BTreeMap<String, WireTensor>, f64), RuntimeError> {
        let turn = self.edge_turn.clone();
        let _computing = turn.lock().await;
        let net = self.model.net();
        let mut hosts = Vec::with_capacity(boundary.len());
        for (&v, value) in boundary {
            let codec = codecs.get(&v).copied().unwrap_or(Codec::Raw);
            hosts.push((v, codec, value.clone().to_host()?));
        }
        let ids: Vec<String> = hosts
            .iter()
            .map(|(v, _, _)| net.nodes()[*v].id().to_string())
            .collect();
        let encoded = blocking(move || {
            hosts
                .into_iter()
                .map(|(v, codec, host)| {
                    let started = Instant::now();
                    let wire = encode(&host, codec)?;
                    let raw_bytes = std::mem::size_of_val(host.data()) as u64;
                    Ok((
                        v,
                        codec,
                        wire,
                        raw_bytes,
                        started.elapsed().as_secs_f64() * 1e3,
                    ))
                })
                .collect::<Result<Vec<_>, RuntimeError>>()
        })
        .await?;
        let mut tensors = BTreeMap::new();
        let mut encode_ms = 0.0;
        for ((v, codec, wire, raw_bytes, ms), id) in encoded.into_iter().zip(ids) {
            encode_ms += ms;
            let wire_bytes = wire.encoded_len();
            if let Some(costs) = self.codec_costs.as_mut() {
                costs.record_sent(v, codec, raw_bytes, wire_bytes, ms);
            }
            sent.push(Sent {
                node: id.clone(),
                codec: Some(codec),
                raw_bytes,
                wire_bytes,
            });
            tensors.insert(id, wire);
        }
        Ok((tensors, self.emulate_slow_edge(encode_ms).await))
    }

    fn check_input(&self, input: &HostTensor) -> Result<(), RuntimeError> {
        let net = self.model.net();
        let shape = input.shape();
        if shape.first().is_some_and(|&n| n > 0) && shape[1..] == *net.input_shape() {
            return Ok(());
        }
        Err(RuntimeError::Input {
            net: net.name().to_string(),
            expected: shape_text(net.input_shape()),
            got: shape.to_vec(),
        })
    }

    fn unavailable_reason(&self) -> String {
        match self.cloud_error() {
            _ if self.servers.is_empty() => "no cloud is connected".to_string(),
            Some(error) => format!("the cloud is unavailable: {error}"),
            None => "the cloud is unavailable".to_string(),
        }
    }

    /// Probes server `i`'s link when its estimate is stale. `Ok(Err(reason))` when the server
    /// failed and requests should not use it now.
    async fn refresh_link(
        &mut self,
        i: usize,
        client: &Client,
    ) -> Result<Result<(), String>, RuntimeError> {
        let timeout = self.config.request_timeout;
        let reason = match tokio::time::timeout(timeout, client.refresh_if_stale()).await {
            Ok(Ok(_)) => return Ok(Ok(())),
            Ok(Err(e)) => match self.classify(i, e)? {
                Remote::Fallback(reason) => format!("probing the link failed: {reason}"),
                Remote::Done(..) => return Ok(Ok(())),
            },
            Err(_) => {
                let reason = format!("the link probe got no answer within {timeout:?}");
                self.mark_down(i, &reason);
                reason
            }
        };
        Ok(Err(self.about(i, reason)))
    }

    /// The plan to run: in auto mode the hysteresis decides between the plan in force and
    /// the solver's `candidate`; a fixed mode's plan is the candidate.
    fn choose(
        &mut self,
        planning: &PlanningGraph,
        scenario: &Scenario,
        candidate: Plan,
    ) -> Result<Plan, RuntimeError> {
        if planning.has_file() != self.hysteresis_for_file {
            // The previous plan was made on a graph of another shape; it cannot be repriced.
            self.hysteresis = Hysteresis::new(self.config.min_saving)?;
            self.hysteresis_for_file = planning.has_file();
        }
        Ok(match &self.config.split {
            SplitMode::Auto => {
                self.hysteresis
                    .choose(&planning.graph, scenario, candidate)?
                    .plan
            }
            _ => candidate,
        })
    }

    /// Waits out the emulated slowness of the edge for a part that computed for `compute_ms`,
    /// and returns the part's time as the emulated edge would have taken it.
    async fn emulate_slow_edge(&self, compute_ms: f64) -> f64 {
        let extra_ms = compute_ms * (self.config.edge_slowdown - 1.0);
        if extra_ms > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(extra_ms / 1e3)).await;
        }
        compute_ms + extra_ms
    }

    /// The request that asks the cloud to run `cloud_nodes` from `payload`.
    fn request(&self, cloud_nodes: &[String], payload: Payload) -> InferRequest {
        let (boundary, input_file) = match payload {
            Payload::Tensors(tensors) => (tensors, None),
            Payload::File(bytes) => (BTreeMap::new(), Some(bytes)),
        };
        InferRequest {
            model_id: self.model.net().name().to_string(),
            weights_hash: self.weights_hash.clone(),
            cloud_nodes: cloud_nodes.to_vec(),
            boundary,
            input_file,
        }
    }

    /// Sends `request` to each of `servers` in turn until one answers; when none does (or
    /// none is given), the fallback says why (`trouble` or the session's reason when no
    /// server was tried).
    async fn send(
        &mut self,
        servers: Vec<Usable>,
        request: InferRequest,
        batch: usize,
        trouble: Option<String>,
    ) -> Result<Remote, RuntimeError> {
        let mut reasons = Vec::new();
        for (i, client) in servers {
            let reason = match beyond_limits(&client, batch) {
                Some(reason) => reason,
                None => {
                    let _counted = InFlight::start(&self.servers[i].in_flight);
                    match self.remote(i, &client, request.clone()).await? {
                        Remote::Done(i, response) => return Ok(Remote::Done(i, response)),
                        Remote::Fallback(reason) => reason,
                    }
                }
            };
            let reason = self.about(i, reason);
            if self.servers.len() > 1 {
                info!(%reason, "trying the next cloud server");
            }
            reasons.push(reason);
        }
        Ok(Remote::Fallback(if reasons.is_empty() {
            trouble.unwrap_or_else(|| self.unavailable_reason())
        } else {
            reasons.join("; ")
        }))
    }

    /// `reason` about server `i`, after the server's name when the session has several.
    fn about(&self, i: usize, reason: String) -> String {
        if self.servers.len() > 1 {
            format!("{}: {reason}", self.servers[i].label)
        } else {
            reason
        }
    }

    /// Sends `request` to server `i` and waits for the reply, within the timeout.
    async fn remote(
        &mut self,
        i: usize,
        client: &Client,
        request: InferRequest,
    ) -> Result<Remote, RuntimeError> {
        let timeout = self.config.request_timeout;
        match tokio::time::timeout(timeout, client.infer(request)).await {
            Ok(Ok(response)) => Ok(Remote::Done(i, response)),
            Ok(Err(e)) => self.classify(i, e),
            Err(_) => {
                let reason = format!("the cloud did not answer within {timeout:?}");
                self.mark_down(i, &reason);
                Ok(Remote::Fallback(reason))
            }
        }
    }

    /// Sorts a client error from server `i` into a fallback (with a reconnect when the
    /// connection is at fault) or an error. With several servers, a server that refuses the
    /// session (a wrong token, a changed certificate) is not used again, and the request
    /// falls back to the others instead of failing.
    fn classify(&mut self, i: usize, e: ClientError) -> Result<Remote, RuntimeError> {
        match e {
            ClientError::Remote {
                code: code @ (ErrorCode::Busy | ErrorCode::Internal | ErrorCode::Unknown),
                message,
            } => Ok(Remote::Fallback(match code {
                ErrorCode::Busy => format!("the cloud is busy: {message}"),
                _ => format!("the cloud failed: {message}"),
            })),
            ClientError::Remote { code, message } => Err(RuntimeError::Refused { code, message }),
            // Too large for this server, not a fault of the link: finish it here.
            ClientError::Frame(e @ FrameError::TooLarge { .. }) => Ok(Remote::Fallback(format!(
                "the request is larger than the cloud reads: {e}"
            ))),
            e @ (ClientError::ConnectionLost(_)
            | ClientError::Connect { .. }
            | ClientError::Timeout(_)
            | ClientError::Resolve { .. }
            | ClientError::Frame(_)) => {
                let reason = format!("the cloud is unreachable: {e}");
                self.mark_down(i, &reason);
                Ok(Remote::Fallback(reason))
            }
            e @ (ClientError::Unauthorized(_)
            | ClientError::VersionMismatch(_)
            | ClientError::FingerprintChanged { .. }
            | ClientError::FingerprintMismatch { .. }
            | ClientError::Identity(_)
            | ClientError::Estimator(_)) => {
                let refusal = RuntimeError::Connect {
                    server: self.servers[i].label.clone(),
                    error: Box::new(e),
                };
                if self.servers.len() == 1 {
                    return Err(refusal);
                }
                let reason = format!("{refusal}; this server is not used again");
                warn!(%reason, "a cloud server refused the session");
                self.servers[i].link.down(reason.clone(), false);
                Ok(Remote::Fallback(reason))
            }
            e => Err(RuntimeError::Protocol(Box::new(e))),
        }
    }

    fn mark_down(&mut self, i: usize, reason: &str) {
        let member = &mut self.servers[i];
        info!(server = %member.label, %reason, "cloud connection marked down; reconnecting in the background");
        member.link.down(reason.to_string(), true);
    }

    /// The reply's output as a host tensor, checked against the network's output shape.
    fn remote_output(
        &self,
        response: &InferResponse,
        batch: usize,
    ) -> Result<HostTensor, RuntimeError> {
        let output = from_wire(&response.output, "returned by the cloud")?;
        let net = self.model.net();
        let shape = output.shape();
        let fits = shape.first() == Some(&batch) && shape[1..] == *net.output_shape();
        if !fits {
            return Err(RuntimeError::Tensor {
                what: "returned by the cloud".into(),
                reason: format!(
                    "shape {shape:?}, but `{}` outputs [{batch}, {:?}]; the cloud runs another network",
                    net.name(),
                    net.output_shape()
                ),
            });
        }
        Ok(output)
    }

    /// Runs `part` (one flag per node) on a blocking thread from `boundary` and the raw
    /// `input`, and returns the tensors it exports with the compute time in ms and the
    /// package energy it spanned in mJ (see [`Measured::edge_energy_mj`]).
    async fn run_part(
        &self,
        part: Vec<bool>,
        boundary: Activations,
        input: Option<HostTensor>,
    ) -> Result<(Activations, f64, Option<f64>), RuntimeError> {
        let _computing = self.edge_turn.lock().await;
        let model = self.model.clone();
        let before = self.energy_sample();
        let (out, compute_ms) = blocking(move || {
            let started = Instant::now();
            let out = run(&model, &part, boundary, input)?;
            Ok((out, started.elapsed().as_secs_f64() * 1e3))
        })
        .await?;
        let mj = self.energy_since(before);
        Ok((out, self.emulate_slow_edge(compute_ms).await, mj))
    }

    /// The energy counters now, when this machine has readable ones.
    fn energy_sample(&self) -> Option<EnergySample> {
        self.energy.as_ref().ok()?.sample().ok()
    }

    /// The package energy since `before`, mJ (`None` without counters, or when one failed).
    fn energy_since(&self, before: Option<EnergySample>) -> Option<f64> {
        let counters = self.energy.as_ref().ok()?;
        Some(counters.energy_mj(&before?, &counters.sample().ok()?))
    }

    /// Runs `part` locally to the network's output: the whole network from `input`, or the
    /// cloud's share from the edge part's `boundary`. Returns the output, the compute ms and
    /// the package energy it spanned in mJ.
    async fn run_local(
        &self,
        boundary: Activations,
        part: Vec<bool>,
        input: Option<HostTensor>,
    ) -> Result<(HostTensor, f64, Option<f64>), RuntimeError> {
        let _computing = self.edge_turn.lock().await;
        let model = self.model.clone();
        let sink = self.model.net().sink();
        let before = self.energy_sample();
        let (output, compute_ms) = blocking(move || {
            let started = Instant::now();
            let mut out = run(&model, &part, boundary, input)?;
            let output = out
                .remove(&sink)
                .ok_or_else(|| RuntimeError::Task("the local run produced no output".into()))?
                .to_host()?;
            Ok((output, started.elapsed().as_secs_f64() * 1e3))
        })
        .await?;
        let mj = self.energy_since(before);
        Ok((output, self.emulate_slow_edge(compute_ms).await, mj))
    }
}

/// A request's input as the application handed it in.
enum Input {
    /// A preprocessed tensor, batch first.
    Tensor(HostTensor),
    /// An encoded image file.
    File(FileInput),
}

/// What a request carries to the cloud.
enum Payload {
    /// Encoded boundary tensors by node id.
    Tensors(BTreeMap<String, WireTensor>),
    /// The input file's bytes.
    File(Vec<u8>),
}

/// Whether a failed connection may succeed later (the server is down or slow), rather than
/// being refused.
fn may_pass(error: &ClientError) -> bool {
    matches!(
        error,
        ClientError::Connect { .. } | ClientError::Timeout(_) | ClientError::ConnectionLost(_)
    )
}

/// `host` on the wire under `codec`.
fn encode(host: &HostTensor, codec: Codec) -> Result<WireTensor, RuntimeError> {
    WireTensor::encode(host.shape(), host.data(), codec).map_err(|e| RuntimeError::Tensor {
        what: format!("encoded as {}", codec.name()),
        reason: e.to_string(),
    })
}

/// The sample the codecs are measured on: the embedded photograph for ImageNet-sized inputs,
/// else [`pattern_input`].
fn sample_input(model: &Model) -> Result<HostTensor, RuntimeError> {
    let net = model.net();
    if net.input_shape() == [3, 224, 224] {
        return Ok(decode_image(models::SAMPLE_JPEG)?);
    }
    pattern_input(net)
}

/// A deterministic input batch of one for `net`, values in [-1, 1): the sample the codecs are
/// measured on when the network takes no image, and the lab's input for such networks.
pub fn pattern_input(net: &models::Net) -> Result<HostTensor, RuntimeError> {
    let mut shape = vec![1];
    shape.extend_from_slice(net.input_shape());
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| ((i * 7919) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    Ok(HostTensor::new(shape, data)?)
}

/// A per-sample shape written out: `3, 224, 224`.
fn shape_text(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How many times this machine's time the cloud takes for the same work, from a cost graph:
/// the cloud's summed layer costs over the edge's (1 when the edge costs nothing).
fn speed_ratio(graph: &Graph) -> f64 {
    let edge: f64 = (0..graph.len()).map(|v| graph.edge_ms(v)).sum();
    speed_ratio_of(graph, edge)
}

/// [`speed_ratio`] against an edge total given apart (this machine's, before any slowdown).
fn speed_ratio_of(graph: &Graph, edge_total_ms: f64) -> f64 {
    let cloud: f64 = (0..graph.len()).map(|v| graph.cloud_ms(v)).sum();
    if edge_total_ms > 0.0 && cloud > 0.0 {
        cloud / edge_total_ms
    } else {
        1.0
    }
}

/// `graph` with its edge costs multiplied by `edge_slowdown` (at least 1).
fn slowed(graph: Graph, edge_slowdown: f64) -> Result<Graph, RuntimeError> {
    let invalid = |reason: String| RuntimeError::Config {
        name: "edge_slowdown",
        reason,
    };
    if !(edge_slowdown.is_finite() && edge_slowdown >= 1.0) {
        return Err(invalid(format!(
            "{edge_slowdown} is not a factor of at least 1 (1 runs the edge at this machine's speed)"
        )));
    }
    if edge_slowdown == 1.0 {
        return Ok(graph);
    }
    graph
        .with_edge_scaled(edge_slowdown)
        .map_err(|e| invalid(format!("the scaled costs are invalid: {e}")))
}

/// Runs `part` of `model` from `boundary` plus the raw `input` (as node 0).
fn run(
    model: &Model,
    part: &[bool],
    mut boundary: Activations,
    input: Option<HostTensor>,
) -> Result<Activations, RuntimeError> {
    if let Some(input) = input {
        boundary.insert(0, model.upload(input)?);
    }
    Ok(model.run_part(part, boundary)?)
}

/// Runs `f` on a blocking thread, so that compute never stalls the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RuntimeError::Task(e.to_string()))?
}

/// Why a request of `batch` would break the limits `client`'s server advertised, if it would.
fn beyond_limits(client: &Client, batch: usize) -> Option<String> {
    let max = client.limits().max_batch;
    (batch as u64 > u64::from(max))
        .then(|| format!("a batch of {batch} is more than the {max} the cloud computes at once"))
}
