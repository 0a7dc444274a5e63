//! [`EdgeSession`]: plan, run the edge part, ship the boundary, receive the result, and finish
//! locally when the cloud cannot.

mod connection;
mod inputs;
mod outcome;
mod planning;
mod published;
mod split;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use models::{Activations, HostTensor, Model, decode_image, image_dimensions};
use partition_core::{
    DEFAULT_MIN_SAVING, Graph, Hysteresis, Link, Objective, Plan, Scenario, Solver,
};
use predictor::DeviceProfile;
use tracing::{info, warn};
use transport::{
    Client, ClientConfig, ClientError, Codec, DecodingCosts, ErrorCode, FrameError, InferRequest,
    InferResponse, Loss, WireTensor,
};

use crate::codec_costs::{CloudDecoding, CodecCosts};
use crate::energy::{EnergyCounters, EnergySample, EnergyUnavailable};
use crate::error::RuntimeError;
use crate::loaded::LoadedModel;
use crate::wire::from_wire;
use connection::{Backoff, CloudLink};
use inputs::{WaitEstimate, planning_link};
pub use outcome::{Measured, Outcome, Sent};
pub use planning::INPUT_FILE_ID;
use planning::{FileInput, PlanningGraph};
pub use published::CloudCostSource;
use published::CostCache;
pub use split::SplitMode;

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
/// It holds the model (edge side), the cost graph the planner solves over, the connection to
/// the cloud (which may be down), the hysteresis state and the last seen cloud load. Requests
/// run one at a time (`infer` takes `&mut self`); open one session per concurrent stream of
/// requests.
#[derive(Debug)]
pub struct EdgeSession {
    model: Arc<Model>,
    weights_hash: String,
    /// The cost graph the session was made with (edge costs slowed as configured).
    given: Graph,
    /// The cost graph the planner uses: `given`, with the server's published cloud costs once
    /// it has published them.
    graph: Graph,
    /// Where `graph`'s cloud costs come from.
    cloud_source: CloudCostSource,
    /// Published cost tables fetched so far.
    published: CostCache,
    /// The connection generation whose published costs `graph` reflects.
    costs_generation: u64,
    /// The edge's summed layer costs at this machine's speed (before any emulated slowdown).
    edge_total_ms: f64,
    /// The network's index of each graph node (the graph has its own topological order).
    to_net: Vec<usize>,
    /// How many times this machine's time the cloud takes for the same work: the cloud's
    /// summed layer costs over the edge's, before any emulated slowdown.
    cloud_factor: f64,
    /// Codec and image-decoding costs, measured on the first request that needs them.
    codec_costs: Option<CodecCosts>,
    /// The connected server's own decoding costs, when it published them.
    cloud_decoding: Option<DecodingCosts>,
    config: EdgeConfig,
    hysteresis: Hysteresis,
    /// Whether the hysteresis holds a plan for an image-file graph (one node longer).
    hysteresis_for_file: bool,
    last_placement: Option<Vec<bool>>,
    cloud: Option<CloudLink>,
    seen_generation: u64,
    wait: WaitEstimate,
    /// The CPU's energy counters, read around the edge's compute, or why there are none.
    energy: Result<EnergyCounters, EnergyUnavailable>,
}

/// What became of the cloud request.
enum Remote {
    Done(InferResponse),
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
            wait: WaitEstimate::idle(config.load_half_life),
            model: Arc::new(model.model),
            weights_hash: model.weights_hash,
            given: graph.clone(),
            graph,
            cloud_source: if config.use_published_costs {
                CloudCostSource::Assumed(None)
            } else {
                CloudCostSource::Given
            },
            published: CostCache::default(),
            costs_generation: 0,
            edge_total_ms,
            to_net,
            cloud_factor,
            codec_costs: None,
            cloud_decoding: None,
            hysteresis_for_file: false,
            last_placement: None,
            cloud: None,
            seen_generation: 0,
            energy: EnergyCounters::system(),
            config,
        };
        session.check_config()?;
        Ok(session)
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
            Plan::fixed(&self.graph, &Scenario::latency(link), ids)?;
        }
        Ok(())
    }

    /// Connects to the cloud now, replacing any earlier connection.
    ///
    /// On success the welcome is checked: the server must offer this model, and with the same
    /// weights hash when it has loaded it already. When the cloud is unreachable the error is
    /// returned but the session keeps trying in the background, and until it succeeds requests
    /// run locally as fallbacks; a refusal (wrong token, changed certificate, other weights) is
    /// not retried.
    pub async fn connect(&mut self, client: ClientConfig) -> Result<(), RuntimeError> {
        let server = client.server.clone();
        let backoff = Backoff {
            first: self.config.reconnect_delay,
            max: self.config.max_reconnect_delay,
        };
        self.cloud = None;
        // A new link counts its connections from the start: check its welcome and fetch its
        // costs afresh.
        self.seen_generation = 0;
        self.costs_generation = 0;
        let (link, result) = CloudLink::connect(client, backoff).await;
        self.cloud = Some(link);
        result.map_err(|error| RuntimeError::Connect {
            server,
            error: Box::new(error),
        })?;
        if let Some(client) = self.usable_client()? {
            self.update_cloud_costs(&client).await;
        }
        Ok(())
    }

    /// The CPU energy counters the session reads around the edge's compute
    /// ([`Measured::edge_energy_mj`]), or why this machine has none.
    pub fn energy_counters(&self) -> Result<&EnergyCounters, &EnergyUnavailable> {
        self.energy.as_ref()
    }

    /// Where the planner's cloud costs come from now.
    pub fn cloud_cost_source(&self) -> &CloudCostSource {
        &self.cloud_source
    }

    /// Plans with the connected server's published costs, fetching them once per server and
    /// weights (within the request timeout). A server that cannot answer leaves the given
    /// costs in place, and the reason in [`EdgeSession::cloud_cost_source`].
    async fn update_cloud_costs(&mut self, client: &Client) {
        if !self.config.use_published_costs || self.costs_generation == self.seen_generation {
            return;
        }
        self.costs_generation = self.seen_generation;
        let Some(fingerprint) = client.fingerprint() else {
            return self.assume_cloud_costs("the server's certificate is unknown".into());
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
                    Ok(Err(e)) => return self.assume_cloud_costs(e.to_string()),
                    Err(_) => return self.assume_cloud_costs("no answer in time".into()),
                }
            }
        };
        match published::apply(&self.given, &table) {
            Ok(graph) => {
                self.cloud_factor = speed_ratio_of(&graph, self.edge_total_ms);
                self.cloud_decoding = Some(table.decoding.clone());
                self.graph = graph;
                self.cloud_source = CloudCostSource::Published {
                    fingerprint: fingerprint.to_string(),
                    method: table.method.clone(),
                };
            }
            Err(e) => self.assume_cloud_costs(format!("its table does not fit: {e}")),
        }
    }

    /// Falls back to the given cloud costs, saying why.
    fn assume_cloud_costs(&mut self, reason: String) {
        warn!(model = %self.model.net().name(), %reason, "planning with assumed cloud costs");
        self.graph = self.given.clone();
        self.cloud_decoding = None;
        self.cloud_factor = speed_ratio_of(&self.given, self.edge_total_ms);
        self.cloud_source = CloudCostSource::Assumed(Some(reason));
    }

    /// Connects to the cloud now, or runs locally while it cannot be reached.
    ///
    /// A server that cannot be reached now (no answer, a timeout, a connection lost during the
    /// handshake) is not fatal: the session finishes requests locally and keeps trying in the
    /// background, and the reason comes back as a warning to show the user. A refusal (wrong
    /// token, changed certificate, other weights, a model the server lacks) or an address that
    /// does not resolve is an error, since waiting would not fix it.
    pub async fn connect_or_run_locally(
        &mut self,
        client: ClientConfig,
    ) -> Result<Option<String>, RuntimeError> {
        match self.connect(client).await {
            Ok(()) => Ok(None),
            Err(RuntimeError::Connect { server, error })
                if matches!(
                    *error,
                    ClientError::Connect { .. }
                        | ClientError::Timeout(_)
                        | ClientError::ConnectionLost(_)
                ) =>
            {
                Ok(Some(format!(
                    "cannot reach the cloud at {server} ({error}); running locally until it answers"
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// Closes the connection; later requests run locally as fallbacks until the next
    /// [`EdgeSession::connect`].
    pub fn disconnect(&mut self) {
        self.cloud = None;
    }

    /// Whether requests can use the cloud now.
    pub fn is_connected(&self) -> bool {
        self.cloud.as_ref().is_some_and(CloudLink::is_healthy)
    }

    /// Why the cloud cannot be used, when it cannot (`None` when connected or never asked to).
    pub fn cloud_error(&self) -> Option<String> {
        self.cloud
            .as_ref()
            .filter(|link| !link.is_healthy())
            .and_then(CloudLink::last_error)
    }

    /// The transport client of the current or last connection: its welcome, its link estimate,
    /// probes. The session closes it when it is dropped or disconnected.
    pub fn client(&self) -> Option<Arc<Client>> {
        self.cloud.as_ref().and_then(CloudLink::last_client)
    }

    /// The edge's model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The cost graph the planner uses.
    pub fn graph(&self) -> &Graph {
        &self.graph
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
        self.graph = self
            .graph
            .with_edge_scaled(factor)
            .map_err(|e| RuntimeError::Config {
                name: "edge cost scale",
                reason: e.to_string(),
            })?;
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

    /// The client when the cloud is usable, after checking the welcome of a new connection.
    fn usable_client(&mut self) -> Result<Option<Arc<Client>>, RuntimeError> {
        let Some(link) = self.cloud.as_mut() else {
            return Ok(None);
        };
        let Some((client, generation)) = link.usable() else {
            return Ok(None);
        };
        if generation != self.seen_generation {
            let welcome = client.welcome();
            let model = self.model.net().name();
            let offer = welcome.models.iter().find(|m| m.id == model);
            let problem = match offer {
                None => Some(RuntimeError::NotOffered {
                    server: link.server().to_string(),
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
                        server: link.server().to_string(),
                        model: model.to_string(),
                        edge_hash: self.weights_hash.clone(),
                        cloud_hash: offer.weights_hash.clone(),
                    })
                }
                Some(_) => None,
            };
            if let Some(problem) = problem {
                link.down(problem.to_string(), false);
                return Err(problem);
            }
            self.seen_generation = generation;
            self.wait.set(welcome.state.wait_ms, Instant::now());
        }
        Ok(Some(client))
    }

    /// Runs the network on `input` (`[N, ...input shape]`): plans, runs the edge part, ships the
    /// boundary tensors, and returns the output with the plan and both breakdowns.
    ///
    /// When the cloud is unreachable, refuses as busy, fails internally or does not answer
    /// within the timeout, the request finishes locally and [`Outcome::fallback`] says why;
    /// a reconnect starts in the background when the connection is at fault. Refusals that
    /// running locally would hide (unknown model, other weights, a request the server finds
    /// invalid) are errors. Edge-only plans never touch the network.
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
        let mut client = None;
        let mut trouble = None;
        if self.config.split != SplitMode::EdgeOnly {
            client = self.usable_client()?;
            match &client {
                Some(c) => {
                    self.update_cloud_costs(c).await;
                    if let Err(reason) = self.refresh_link(c).await? {
                        trouble = Some(reason);
                        client = None;
                    }
                }
                None => trouble = Some(self.unavailable_reason()),
            }
        }
        self.measure_codecs().await?;
        let estimate = self.client().map(|c| c.link());
        let link = planning_link(
            estimate.as_ref(),
            self.config.uplink_mbps,
            &self.config.assumed_link,
        )?;
        if let Some(client) = self.client() {
            // Any reply since (a result, a probe, a status) is newer than what we saw.
            let (state, age) = client.server_state();
            self.wait.set(state.wait_ms, Instant::now() - age);
        }
        let wait_ms = self.wait.value(Instant::now());
        let scenario = Scenario::new(link, self.config.objective, 1.0)?.with_wait(wait_ms)?;
        let planning = self.planning_graph(match &input {
            Input::File(file) => Some(file),
            Input::Tensor(_) => None,
        })?;
        let plan = self.choose(&planning, &scenario)?;
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
            let remote = match (client, trouble, payload) {
                (_, _, Err(reason)) => Remote::Fallback(reason),
                (Some(client), None, Ok(payload)) => match beyond_limits(&client, batch) {
                    Some(reason) => Remote::Fallback(reason),
                    None => self.remote(&client, &cloud_nodes, payload).await?,
                },
                (_, reason, Ok(_)) => {
                    Remote::Fallback(reason.unwrap_or_else(|| self.unavailable_reason()))
                }
            };
            match remote {
                Remote::Done(response) => {
                    measured.upload_ms = response.upload.span_us as f64 / 1e3;
                    measured.download_ms = response.download.span_us as f64 / 1e3;
                    measured.queue_ms = response.queue_ms;
                    measured.cloud_ms = response.cloud_ms + response.decode_ms;
                    measured.load_ms = response.load_ms;
                    self.wait.set(response.state.wait_ms, Instant::now());
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
        Ok(self.planning_graph(file.as_ref())?.graph)
    }

    /// The codec and image-decoding costs the session plans with, once measured.
    pub fn codec_costs(&self) -> Option<&CodecCosts> {
        self.codec_costs.as_ref()
    }

    /// The session's graph with this request's encoding estimates and, for an image file, the
    /// file's node.
    fn planning_graph(&self, file: Option<&FileInput>) -> Result<PlanningGraph, RuntimeError> {
        let slowdown = self.config.edge_slowdown;
        let cloud = CloudDecoding {
            published: self.cloud_decoding.as_ref(),
            cloud_factor: self.cloud_factor,
        };
        let encodings = (0..self.graph.len())
            .map(|g| match &self.codec_costs {
                Some(costs) if !self.config.raw_wire => costs.encodings(
                    self.to_net[g],
                    self.graph.out_bytes(g),
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
        PlanningGraph::build(&self.graph, &self.to_net, encodings, file)
    }

    /// Decodes and preprocesses an image file on the edge (emulated slowness included), and
    /// learns its cost.
    async fn decode_here(&mut self, file: FileInput) -> Result<(HostTensor, f64), RuntimeError> {
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
        match (&self.cloud, self.cloud_error()) {
            (None, _) => "no cloud is connected".to_string(),
            (Some(_), Some(error)) => format!("the cloud is unavailable: {error}"),
            (Some(_), None) => "the cloud is unavailable".to_string(),
        }
    }

    /// Probes the link when its estimate is stale. `Ok(Err(reason))` when the cloud failed and
    /// the request should run locally.
    async fn refresh_link(&mut self, client: &Client) -> Result<Result<(), String>, RuntimeError> {
        let timeout = self.config.request_timeout;
        let reason = match tokio::time::timeout(timeout, client.refresh_if_stale()).await {
            Ok(Ok(_)) => return Ok(Ok(())),
            Ok(Err(e)) => match self.classify(e)? {
                Remote::Fallback(reason) => format!("probing the link failed: {reason}"),
                Remote::Done(_) => return Ok(Ok(())),
            },
            Err(_) => {
                let reason = format!("the link probe got no answer within {timeout:?}");
                self.mark_down(&reason);
                reason
            }
        };
        Ok(Err(reason))
    }

    fn choose(
        &mut self,
        planning: &PlanningGraph,
        scenario: &Scenario,
    ) -> Result<Plan, RuntimeError> {
        if planning.has_file() != self.hysteresis_for_file {
            // The previous plan was made on a graph of another shape; it cannot be repriced.
            self.hysteresis = Hysteresis::new(self.config.min_saving)?;
            self.hysteresis_for_file = planning.has_file();
        }
        let graph = &planning.graph;
        Ok(match &self.config.split {
            SplitMode::Auto => {
                let candidate = self.config.solver.solve(graph, scenario)?;
                self.hysteresis.choose(graph, scenario, candidate)?.plan
            }
            SplitMode::EdgeOnly => Plan::edge_only(graph, scenario),
            SplitMode::CloudOnly => Plan::cloud_only(graph, scenario),
            SplitMode::Fixed(ids) => Plan::fixed(graph, scenario, ids)?,
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

    /// Sends the boundary tensors or the input file and waits for the reply, within the
    /// timeout.
    async fn remote(
        &mut self,
        client: &Client,
        cloud_nodes: &[String],
        payload: Payload,
    ) -> Result<Remote, RuntimeError> {
        let net = self.model.net();
        let (boundary, input_file) = match payload {
            Payload::Tensors(tensors) => (tensors, None),
            Payload::File(bytes) => (BTreeMap::new(), Some(bytes)),
        };
        let request = InferRequest {
            model_id: net.name().to_string(),
            weights_hash: self.weights_hash.clone(),
            cloud_nodes: cloud_nodes.to_vec(),
            boundary,
            input_file,
        };
        let timeout = self.config.request_timeout;
        match tokio::time::timeout(timeout, client.infer(request)).await {
            Ok(Ok(response)) => Ok(Remote::Done(response)),
            Ok(Err(e)) => self.classify(e),
            Err(_) => {
                let reason = format!("the cloud did not answer within {timeout:?}");
                self.mark_down(&reason);
                Ok(Remote::Fallback(reason))
            }
        }
    }

    /// Sorts a client error into a fallback (with a reconnect when the connection is at fault)
    /// or an error.
    fn classify(&mut self, e: ClientError) -> Result<Remote, RuntimeError> {
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
                self.mark_down(&reason);
                Ok(Remote::Fallback(reason))
            }
            e @ (ClientError::Unauthorized(_)
            | ClientError::VersionMismatch(_)
            | ClientError::FingerprintChanged { .. }
            | ClientError::FingerprintMismatch { .. }
            | ClientError::Identity(_)
            | ClientError::Estimator(_)) => Err(RuntimeError::Connect {
                server: self
                    .cloud
                    .as_ref()
                    .map_or_else(String::new, |l| l.server().to_string()),
                error: Box::new(e),
            }),
            e => Err(RuntimeError::Protocol(Box::new(e))),
        }
    }

    fn mark_down(&mut self, reason: &str) {
        if let Some(link) = self.cloud.as_mut() {
            info!(server = %link.server(), %reason, "cloud connection marked down; reconnecting in the background");
            link.down(reason.to_string(), true);
        }
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
