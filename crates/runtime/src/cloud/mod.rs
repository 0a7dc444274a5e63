//! [`CloudServer`]: runs the cloud part of split inference for edge devices.
//!
//! It implements [`transport::Handler`]: hand it to a [`transport::Server`], which authenticates
//! clients and calls it for every request. Each request is checked against the network before it
//! is queued (unknown model, invalid cut, wrong or missing boundary tensors are refused with the
//! node named), then admitted to a bounded queue (or refused as busy), batched with other
//! clients' requests for the same model and cut (`batch.rs`), run on a blocking thread once a
//! worker is free, and answered with its own output, the compute time and the queueing time.

mod batch;
mod catalog;
mod metrics;
mod queue;
mod request;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use models::{Backend, Net, zoo};
use tokio::sync::oneshot;
use tracing::debug;
use transport::{
    CloudCosts, CostRequest, ErrorCode, ErrorReply, Handler, InferRequest, Inference, ModelOffer,
    ServerState, ServerStatus,
};

use crate::error::RuntimeError;
use crate::loaded::{DEFAULT_SEED, LoadedModel, WeightsSource};
use batch::{Answer, BatchKey, Lobby, Member};
use catalog::{Catalog, WeightsDefaults};
use metrics::Metrics;
pub use metrics::serve_metrics;
pub use queue::QueueStats;
use queue::{QueueShape, Running, WorkQueue};

/// Settings of a [`CloudServer`].
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// Where models run. Default: flex.
    pub backend: Backend,
    /// Seed for the weights of models without a weights file. Default [`DEFAULT_SEED`], the
    /// edge's default too.
    pub seed: u64,
    /// A directory of `<model id>.safetensors` files; a model with a file there uses it,
    /// others use seeded weights. Default: none.
    pub weights_dir: Option<PathBuf>,
    /// Requests that run at once. Default 1: each Burn kernel already uses every core.
    pub workers: usize,
    /// Requests that may wait for a worker; more are answered `Busy`. Default 16.
    pub queue_capacity: usize,
    /// Largest batch computed (the boundary tensors' first dimension); larger requests are
    /// refused, so that one request cannot ask for activations of many GB. Default 32.
    pub max_batch: usize,
    /// Most samples in one batch formed across requests; 1 runs every request alone. The
    /// smaller of this and `max_batch` counts. Default [`DEFAULT_BATCH_MAX`].
    pub batch_max: usize,
    /// How long a request that finds a worker free waits, from its arrival, for requests to
    /// share its batch (the batching window), while the last batch served more than one
    /// request; after a batch of one, a request takes only the companions already waiting, so
    /// that a lone edge never waits. Default [`DEFAULT_BATCH_WAIT`].
    pub batch_wait: Duration,
}

/// The default batch cap of a [`CloudServer`].
pub const DEFAULT_MAX_BATCH: usize = 32;
/// The default cap on the samples of a batch formed across requests.
pub const DEFAULT_BATCH_MAX: usize = 16;
/// The default batching window.
pub const DEFAULT_BATCH_WAIT: Duration = Duration::from_millis(2);

impl Default for CloudConfig {
    fn default() -> Self {
        CloudConfig {
            backend: Backend::default(),
            seed: DEFAULT_SEED,
            weights_dir: None,
            workers: 1,
            queue_capacity: 16,
            max_batch: DEFAULT_MAX_BATCH,
            batch_max: DEFAULT_BATCH_MAX,
            batch_wait: DEFAULT_BATCH_WAIT,
        }
    }
}

/// A model loaded at start ([`CloudServer::preload_all`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Preloaded {
    /// The model's id.
    pub id: String,
    /// Hash of its weights, as the welcome announces it.
    pub weights_hash: String,
    /// Its published per-node costs added up: one pass at batch 1 on this server, ms.
    pub pass_ms: f64,
}

/// The cloud side of cutpoint: serves the zoo models and any network registered with
/// [`CloudServer::register`], each loaded on first use.
///
/// # Costs and load
///
/// When a model loads (at start with [`CloudServer::preload`], or on its first request) the
/// server times each of its nodes inside whole passes and publishes those costs to any client
/// that asks ([`transport::CostRequest`]), so that edges plan with this machine's speed rather
/// than a guess. Every welcome, result, probe reply and status carries the server's state:
/// workers, requests in the system, the mean service time s̄ of a batch (EWMA; loading is not
/// service) and the expected wait W of a new request: while a worker is free, the batching
/// window that applies (d after a batch with companions, else 0), else max(0, s̄ − e) + ⌊q/B⌋/w · s̄, with `w` workers, `q`
/// requests waiting, `B` the batch cap and `e` how long the oldest running batch has run (the
/// remainder is 0 between batches; with
/// `B = 1`, the unbatched (n − w)/w · s̄). [`CloudServer::stats`] shows it with the queue's
/// counts, batches included.
///
/// # Batching
///
/// Requests from any clients for the same model, weights and cloud node set run as one batch:
/// the request that gets a free worker waits at most [`CloudConfig::batch_wait`] from its
/// arrival for companions (only while the last batch had some), takes the oldest waiting ones while the samples fit
/// [`CloudConfig::batch_max`], runs them as one forward pass (concatenated along the batch
/// dimension) and answers each with its own rows. Admission, the queue's bound, deadlines and
/// cancellation hold per request; a batch stops at the next node once nobody waits for any of
/// its members.
#[derive(Debug)]
pub struct CloudServer {
    backend: Backend,
    defaults: WeightsDefaults,
    catalog: Catalog,
    queue: WorkQueue,
    lobby: Lobby,
    max_batch: usize,
    batch_max: usize,
    /// Requests abandoned since start because nobody waited for them any more.
    abandoned: Arc<AtomicU64>,
    /// Cost tables sent to clients since start.
    costs_published: AtomicU64,
    /// Counts and times for Prometheus.
    metrics: Metrics,
}

impl CloudServer {
    /// A server offering every zoo model at its default input size.
    ///
    /// Fails when a setting is out of range or the backend is not compiled in.
    pub fn new(config: CloudConfig) -> Result<CloudServer, RuntimeError> {
        if config.max_batch == 0 {
            return Err(RuntimeError::Config {
                name: "max_batch",
                reason: "must be at least 1".into(),
            });
        }
        if config.batch_max == 0 {
            return Err(RuntimeError::Config {
                name: "batch_max",
                reason: "must be at least 1 (1 runs every request alone)".into(),
            });
        }
        // A batch of requests is bounded like one request.
        let batch_max = config.batch_max.min(config.max_batch);
        if config.workers == 0 {
            return Err(RuntimeError::Config {
                name: "workers",
                reason: "must be at least 1".into(),
            });
        }
        if let Some(dir) = &config.weights_dir
            && !dir.is_dir()
        {
            return Err(RuntimeError::Config {
                name: "weights_dir",
                reason: format!(
                    "{} is not a directory; give a directory of <model>.safetensors files",
                    dir.display()
                ),
            });
        }
        config.backend.device()?;
        let batch_wait_ms = config.batch_wait.as_secs_f64() * 1e3;
        let mut catalog = Catalog::default();
        for name in zoo::MODELS {
            catalog.insert(zoo::build(name)?, None);
        }
        Ok(CloudServer {
            backend: config.backend,
            defaults: WeightsDefaults {
                dir: config.weights_dir,
                seed: config.seed,
            },
            catalog,
            queue: WorkQueue::new(QueueShape {
                workers: config.workers,
                capacity: config.queue_capacity,
                batch_max,
                batch_wait_ms,
            }),
            lobby: Lobby::default(),
            max_batch: config.max_batch,
            batch_max,
            abandoned: Arc::new(AtomicU64::new(0)),
            costs_published: AtomicU64::new(0),
            metrics: Metrics::new(),
        })
    }

    /// Offers `net` under its name (a spec model, or a zoo model at another input size),
    /// replacing any model of that name. Its weights come from the weights directory or the seed.
    pub fn register(&mut self, net: Net) {
        self.catalog.insert(net, None);
    }

    /// Offers `net` under its name with these weights, replacing any model of that name.
    pub fn register_with_weights(&mut self, net: Net, source: WeightsSource) {
        self.catalog.insert(net, Some(source));
    }

    /// The ids of the models on offer, in order.
    pub fn model_ids(&self) -> Vec<String> {
        self.catalog.iter().map(|(id, _)| id.to_string()).collect()
    }

    /// Loads a model now rather than on its first request, so that the welcome carries its
    /// weights hash and a bad weights file is reported at start-up. Returns the hash.
    pub async fn preload(&self, id: &str) -> Result<String, RuntimeError> {
        let mut loaded = self.preload_all(&[id]).await?;
        loaded
            .pop()
            .map(|model| model.weights_hash)
            .ok_or_else(|| RuntimeError::Task(format!("model `{id}` was not loaded")))
    }

    /// [`CloudServer::preload`] for several models at once: all of them are loaded, and then
    /// their costs are measured together, one pass of each model a round, so that a slow
    /// moment of a shared machine does not fall on every pass of one model. Returns what was
    /// loaded, in order.
    pub async fn preload_all(&self, ids: &[&str]) -> Result<Vec<Preloaded>, RuntimeError> {
        let entries = ids
            .iter()
            .map(|id| {
                self.catalog.get(id).ok_or_else(|| RuntimeError::Config {
                    name: "model",
                    reason: format!(
                        "no model `{id}`; this server offers: {}",
                        self.catalog.ids()
                    ),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let loaded = catalog::load_all(&entries, &self.defaults, self.backend).await?;
        Ok(ids
            .iter()
            .zip(loaded)
            .map(|(id, l)| Preloaded {
                id: id.to_string(),
                weights_hash: l.model.weights_hash.clone(),
                pass_ms: l.costs.nodes.iter().map(|n| n.ms).sum(),
            })
            .collect())
    }

    /// The queue's current state.
    pub fn stats(&self) -> QueueStats {
        self.queue.stats()
    }

    /// How many requests were abandoned (out of the queue, or their compute stopped at the
    /// next node) because their client stopped waiting or their deadline passed.
    pub fn abandoned(&self) -> u64 {
        self.abandoned.load(Ordering::Relaxed)
    }

    /// The server's metrics in the OpenMetrics text encoding, as [`serve_metrics`] serves
    /// them.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode(&self.queue.stats())
    }

    /// How many cost tables this server has sent to clients since it started.
    pub fn costs_published(&self) -> u64 {
        self.costs_published.load(Ordering::Relaxed)
    }

    async fn run(&self, request: InferRequest) -> Result<Inference, ErrorReply> {
        let arrived = Instant::now();
        let entry = self.catalog.get(&request.model_id).ok_or_else(|| ErrorReply {
            code: ErrorCode::UnknownModel,
            message: format!(
                "this server does not serve model `{}`; it serves: {}. Start it with --model-spec for this network",
                request.model_id,
                self.catalog.ids()
            ),
        })?;
        let model_id = request.model_id.clone();
        let weights_hash = request.weights_hash.clone();
        if let Some(model) = entry.get() {
            check_hash(&model_id, &weights_hash, model)?;
        }
        let part = request::check(entry.net(), request, self.max_batch)?;
        let key = Arc::new(BatchKey {
            model_id,
            weights_hash,
        });
        // Whoever drops this future (the client went, or the deadline passed) sets the flag:
        // a waiting request leaves the lobby and the queue with the future, a running one is
        // no longer waited for, and its batch stops at the next node once no member is.
        let abandon = Abandon::new(self.abandoned.clone());
        let admission = self.queue.admit().ok_or_else(|| {
            let stats = self.queue.stats();
            ErrorReply {
                code: ErrorCode::Busy,
                message: format!(
                    "the server is busy: {} request(s) running and {} waiting fill its queue; retry later or run this request locally",
                    stats.running, stats.waiting
                ),
            }
        })?;
        let (reply, mut answer) = oneshot::channel();
        let member = Member {
            part,
            arrived,
            stop: abandon.flag.clone(),
            answer: Answer::new(admission, reply),
        };
        let ticket = self.lobby.join(key, member);
        // Either another request's batch takes this one, or this one gets a worker first and
        // leads a batch of its own.
        let turn = tokio::select! {
            answer = &mut answer => Turn::Answered(answer),
            running = self.queue.worker() => Turn::Worker(running),
        };
        let answer = match turn {
            Turn::Answered(answer) => answer,
            Turn::Worker(running) => {
                let running = running.ok_or_else(|| {
                    internal("the work queue has shut down; the server is stopping".into())
                })?;
                match ticket.take() {
                    Some((key, leader)) => self.lead(entry, &key, leader, running).await,
                    // A batch took this request in the meantime: the worker goes back now.
                    None => drop(running),
                }
                answer.await
            }
        };
        abandon.disarm();
        let inference = answer.map_err(|_| {
            internal("the batch this request ran in ended without an answer".into())
        })??;
        debug!(
            model = %entry.net().name(),
            cloud_ms = inference.cloud_ms,
            decode_ms = inference.decode_ms,
            queue_ms = inference.queue_ms,
            "served"
        );
        Ok(inference)
    }

    /// Leads a batch on the worker `running` holds: loads the model if need be, waits at most
    /// the batching window (from the leader's arrival) for companions under `key`, takes them
    /// and runs the batch on a blocking thread, which answers every member. A failure before
    /// the batch runs answers the leader alone; its companions stay in the lobby.
    async fn lead(
        &self,
        entry: &catalog::Entry,
        key: &BatchKey,
        leader: Member,
        mut running: Running,
    ) {
        // A first request also loads the model; that one-off time is neither queueing nor
        // compute, and stays out of the service-time mean.
        let (loaded, fresh) = match catalog::load(entry, &self.defaults, self.backend).await {
            Ok(loaded) => loaded,
            Err(e) => {
                let error = internal(format!("cannot load model `{}`: {e}", key.model_id));
                leader.answer.send(Err(error));
                return;
            }
        };
        if let Err(e) = check_hash(&key.model_id, &key.weights_hash, &loaded.model) {
            leader.answer.send(Err(e));
            return;
        }
        let load_ms = if fresh { loaded.load_ms } else { 0.0 };
        let room = self.batch_max.saturating_sub(leader.part.samples());
        let companions = if room == 0 {
            Vec::new()
        } else {
            let window = batch::window_end(leader.arrived, self.queue.window_ms());
            self.lobby.gather(key, room, room, window).await
        };
        let mut members = Vec::with_capacity(1 + companions.len());
        members.push(leader);
        members.extend(companions);
        running.set_requests(members.len());
        running.restart_clock();
        let samples: usize = members.iter().map(|m| m.part.samples()).sum();
        self.metrics.observe_batch(samples as u64);
        let model = loaded.model;
        // Detached: the batch runs to its end (or to a stop) even if the leader's own client
        // goes, since its companions still wait.
        drop(tokio::task::spawn_blocking(move || {
            batch::run(&model, members, running, load_ms);
        }));
    }

    /// The cloud's costs for the model a client asks about, loading and measuring it first if
    /// need be (outside the work queue: it runs once per model).
    async fn costs(&self, request: CostRequest) -> Result<CloudCosts, ErrorReply> {
        let entry = self
            .catalog
            .get(&request.model_id)
            .ok_or_else(|| ErrorReply {
                code: ErrorCode::UnknownModel,
                message: format!(
                    "this server does not serve model `{}`; it serves: {}",
                    request.model_id,
                    self.catalog.ids()
                ),
            })?;
        let (loaded, _) = catalog::load(entry, &self.defaults, self.backend)
            .await
            .map_err(|e| internal(format!("cannot load model `{}`: {e}", request.model_id)))?;
        check_hash(&request.model_id, &request.weights_hash, &loaded.model)?;
        self.costs_published.fetch_add(1, Ordering::Relaxed);
        Ok(CloudCosts::clone(&loaded.costs))
    }

    /// The server's load now.
    fn server_state(&self) -> ServerState {
        let stats = self.queue.stats();
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        ServerState {
            workers: count(stats.workers),
            in_system: count(stats.running + stats.waiting),
            service_ms: stats.mean_service_ms.unwrap_or(0.0),
            wait_ms: stats.wait_ms,
        }
    }
}

/// Checks `request` against `net` exactly as a [`CloudServer`] does before it queues one (a
/// valid cut, exactly the boundary tensors that cut needs with one batch of at most
/// `max_batch`, or an image file for a cloud-only run) and decodes its payloads, without
/// running anything. The `Err` is the reply the server would send.
pub fn check_request(net: &Net, request: InferRequest, max_batch: usize) -> Result<(), ErrorReply> {
    request::check(net, request, max_batch)?
        .decode(net)
        .map(|_| ())
}

/// Sets its flag, and counts an abandoned request, when dropped before [`Abandon::disarm`].
struct Abandon {
    flag: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    armed: bool,
}

impl Abandon {
    fn new(count: Arc<AtomicU64>) -> Self {
        Abandon {
            flag: Arc::new(AtomicBool::new(false)),
            count,
            armed: true,
        }
    }

    /// The request finished: dropping this no longer counts it as abandoned.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if self.armed {
            self.flag.store(true, Ordering::Release);
            self.count.fetch_add(1, Ordering::Relaxed);
            debug!("request abandoned: nobody waits for it any more");
        }
    }
}

fn internal(message: String) -> ErrorReply {
    ErrorReply {
        code: ErrorCode::Internal,
        message,
    }
}

fn check_hash(model_id: &str, weights_hash: &str, model: &LoadedModel) -> Result<(), ErrorReply> {
    if weights_hash == model.weights_hash {
        return Ok(());
    }
    Err(ErrorReply {
        code: ErrorCode::WeightsMismatch,
        message: format!(
            "the edge's weights for `{}` (hash {}) differ from this server's (hash {}); load the same weights on both sides (the same safetensors file, or the same seed)",
            model_id,
            if weights_hash.is_empty() {
                "none given"
            } else {
                weights_hash
            },
            model.weights_hash
        ),
    })
}

/// What a request waiting for a worker got first.
enum Turn {
    /// Another request's batch answered it.
    Answered(Result<batch::Reply, oneshot::error::RecvError>),
    /// A worker, to lead a batch.
    Worker(Option<Running>),
}

impl Handler for CloudServer {
    fn status(&self) -> ServerStatus {
        ServerStatus {
            models: self
                .catalog
                .iter()
                .map(|(id, entry)| ModelOffer {
                    id: id.to_string(),
                    weights_hash: entry
                        .get()
                        .map(|m| m.weights_hash.clone())
                        .unwrap_or_default(),
                })
                .collect(),
            state: self.server_state(),
            max_batch: u32::try_from(self.max_batch).unwrap_or(u32::MAX),
        }
    }

    fn state(&self) -> ServerState {
        self.server_state()
    }

    async fn infer(&self, request: InferRequest) -> Result<Inference, ErrorReply> {
        let received = metrics::payload_bytes(&request);
        let result = self.run(request).await;
        self.metrics.record(received, &result);
        result
    }

    async fn costs(&self, request: CostRequest) -> Result<CloudCosts, ErrorReply> {
        CloudServer::costs(self, request).await
    }
}
