//! [`CloudServer`]: runs the cloud part of split inference for edge devices.
//!
//! It implements [`transport::Handler`]: hand it to a [`transport::Server`], which authenticates
//! clients and calls it for every request. Each request is checked against the network before it
//! is queued (unknown model, invalid cut, wrong or missing boundary tensors are refused with the
//! node named), then admitted to a bounded queue (or refused as busy), run on a blocking thread
//! once a worker is free, and answered with the output, the compute time and the queueing time.

mod catalog;
mod metrics;
mod queue;
mod request;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use models::{Activations, Backend, Net, zoo};
use tracing::{debug, warn};
use transport::{
    CloudCosts, CostRequest, ErrorCode, ErrorReply, Handler, InferRequest, Inference, ModelOffer,
    ServerState, ServerStatus,
};

use crate::error::RuntimeError;
use crate::loaded::{DEFAULT_SEED, LoadedModel, WeightsSource};
use crate::wire::to_wire;
use catalog::{Catalog, WeightsDefaults};
use metrics::Metrics;
pub use metrics::serve_metrics;
pub use queue::QueueStats;
use queue::WorkQueue;
use request::CloudPart;

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
}

/// The default batch cap of a [`CloudServer`].
pub const DEFAULT_MAX_BATCH: usize = 32;

impl Default for CloudConfig {
    fn default() -> Self {
        CloudConfig {
            backend: Backend::default(),
            seed: DEFAULT_SEED,
            weights_dir: None,
            workers: 1,
            queue_capacity: 16,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }
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
/// workers, requests in the system, the mean service time s̄ (EWMA; loading is not service)
/// and the expected wait W of a new request: 0 while a worker is free, else
/// max(0, s̄ − e) + (n − w)/w · s̄, with `w` workers, `n` requests in the system and `e` how long
/// the oldest running request has run. [`CloudServer::stats`] shows it with the queue's counts.
#[derive(Debug)]
pub struct CloudServer {
    backend: Backend,
    defaults: WeightsDefaults,
    catalog: Catalog,
    queue: WorkQueue,
    max_batch: usize,
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
            queue: WorkQueue::new(config.workers, config.queue_capacity),
            max_batch: config.max_batch,
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
        let entry = self.catalog.get(id).ok_or_else(|| RuntimeError::Config {
            name: "model",
            reason: format!(
                "no model `{id}`; this server offers: {}",
                self.catalog.ids()
            ),
        })?;
        let (loaded, _) = catalog::load(entry, &self.defaults, self.backend).await?;
        Ok(loaded.model.weights_hash.clone())
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
        // Whoever drops this future (the client went, or the deadline passed) sets the flag:
        // a queued request leaves the queue with the future, a running one stops at the next
        // node.
        let abandon = Abandon::new(self.abandoned.clone());
        let stop = abandon.flag.clone();
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
        let mut running = admission.start().await.ok_or_else(|| {
            internal("the work queue has shut down; the server is stopping".into())
        })?;
        let queue_ms = arrived.elapsed().as_secs_f64() * 1e3;
        // A first request also loads the model; that one-off time is neither queueing nor
        // compute, and stays out of the service-time mean.
        let (loaded, fresh) = catalog::load(entry, &self.defaults, self.backend)
            .await
            .map_err(|e| internal(format!("cannot load model `{model_id}`: {e}")))?;
        let load_ms = if fresh { loaded.load_ms } else { 0.0 };
        running.restart_clock();
        let model = loaded.model;
        check_hash(&model_id, &weights_hash, &model)?;
        let (output, cloud_ms) = tokio::task::spawn_blocking(move || {
            let output = compute(&model, part, &stop);
            // A stopped run is no service: it stays out of the mean and the served count.
            let cloud_ms = if stop.load(Ordering::Acquire) {
                drop(running);
                0.0
            } else {
                running.finish()
            };
            (output, cloud_ms)
        })
        .await
        .map_err(|e| internal(format!("the compute task failed: {e}")))?;
        abandon.disarm();
        let (output, decode_ms) = output.inspect_err(|e| {
            warn!(model = %model_id, error = %e.message, "cloud part failed");
        })?;
        // The worker's time covers decoding too; report the two apart.
        let cloud_ms = (cloud_ms - decode_ms).max(0.0);
        debug!(model = %model_id, cloud_ms, decode_ms, queue_ms, "served");
        Ok(Inference {
            output,
            cloud_ms,
            queue_ms,
            decode_ms,
            load_ms,
        })
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

/// Decodes the request's payloads, runs the cloud part, and returns the output as a wire
/// tensor with the decode time in ms. A payload that does not decode is the client's fault
/// (`BadRequest`); a failure after that is the server's (`Internal`).
fn compute(
    model: &LoadedModel,
    part: CloudPart,
    stop: &AtomicBool,
) -> Result<(transport::WireTensor, f64), ErrorReply> {
    let decoded = part.decode(model.model.net())?;
    let run = || -> Result<transport::WireTensor, RuntimeError> {
        let model = &model.model;
        let mut boundary = Activations::new();
        for (v, host) in decoded.boundary {
            boundary.insert(v, model.upload(host)?);
        }
        let stopped = || stop.load(Ordering::Acquire);
        let output = model
            .run_cloud_until(&decoded.cut, boundary, &stopped)?
            .to_host()?;
        to_wire(&output, "output")
    };
    let output = run().map_err(|e| internal(format!("running the cloud part failed: {e}")))?;
    Ok((output, decoded.decode_ms))
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
