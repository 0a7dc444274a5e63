//! The demo: collaborative inference on one machine, end to end. A cloud server runs in this
//! process on loopback; the edge is this machine slowed down by emulation, behind an uplink
//! paced by the transport's token-bucket shaper. For each model and uplink it runs the
//! planner's cut beside edge-only and cloud-only and reports predicted against measured time.

use std::path::PathBuf;
use std::sync::Arc;

use models::{Backend, HostTensor, Net, zoo};
use partition_core::{Breakdown, Direction, Plan};
use transport::Shaper;

use crate::cloud::CloudConfig;
use crate::edge::{EdgeConfig, EdgeSession, Measured, Outcome, SplitMode};
use crate::error::RuntimeError;
use crate::loaded::{DEFAULT_SEED, LoadedModel, WeightsSource};
use crate::local_cloud::LocalCloud;
use crate::quick_profile::quick_profile;

/// Burst allowance of the emulated uplink: the shaper's smallest, 16 KiB, so that a small
/// boundary tensor is paced too rather than sent at loopback speed from a full bucket.
pub(crate) const SHAPER_BURST_BYTES: usize = 16 * 1024;

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The networks, each served by the in-process cloud. Default: AlexNet and ResNet-18.
    pub models: Vec<Net>,
    /// The emulated uplinks, Mbit/s. Default: 1.1, 5.85 and 18.88 (Neurosurgeon's 3G, 4G
    /// and Wi-Fi).
    pub uplinks_mbps: Vec<f64>,
    /// How many times slower than this machine the emulated edge is. Default 10.
    pub edge_slowdown: f64,
    /// Measured requests per strategy; the median (by total time) is reported. Default 3.
    pub repeats: usize,
    /// Backend of both sides. Default flex.
    pub backend: Backend,
    /// Where the quick profile is cached (see [`crate::quick_profile()`]).
    pub cache_dir: PathBuf,
    /// Cap on the profile sweep's samples per class (tests use a small one). Default: none.
    pub sweep_samples: Option<usize>,
    /// Progress on stderr while the profile is built.
    pub progress: bool,
}

impl DemoConfig {
    /// The README's demo, caching its profile under `cache_dir`.
    pub fn standard(cache_dir: PathBuf) -> Result<DemoConfig, RuntimeError> {
        Ok(DemoConfig {
            models: vec![zoo::build("alexnet")?, zoo::build("resnet18")?],
            uplinks_mbps: vec![1.1, 5.85, 18.88],
            edge_slowdown: 10.0,
            repeats: 3,
            backend: Backend::Flex,
            cache_dir,
            sweep_samples: None,
            progress: true,
        })
    }
}

/// The three ways a case is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The planner's cut for the measured link.
    Chosen,
    /// Everything on the edge.
    EdgeOnly,
    /// Everything on the cloud.
    CloudOnly,
}

impl Strategy {
    /// All three, in report order.
    pub const ALL: [Strategy; 3] = [Strategy::Chosen, Strategy::EdgeOnly, Strategy::CloudOnly];

    /// `chosen`, `edge-only` or `cloud-only`.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Chosen => "chosen",
            Strategy::EdgeOnly => "edge-only",
            Strategy::CloudOnly => "cloud-only",
        }
    }

    fn split(self) -> SplitMode {
        match self {
            Strategy::Chosen => SplitMode::Auto,
            Strategy::EdgeOnly => SplitMode::EdgeOnly,
            Strategy::CloudOnly => SplitMode::CloudOnly,
        }
    }
}

/// One strategy of one case: what was predicted and what the median request measured.
#[derive(Debug, Clone)]
pub struct DemoRow {
    /// The network.
    pub model: String,
    /// The emulated uplink, Mbit/s.
    pub uplink_mbps: f64,
    /// How the cut was chosen.
    pub strategy: Strategy,
    /// The cut: `edge-only`, `cloud-only`, or `after ID[+ID…]` naming the tensors that cross.
    pub cut: String,
    /// Bytes that cross the uplink per request.
    pub upload_bytes: u64,
    /// The plan's predicted breakdown.
    pub predicted: Breakdown,
    /// The median request's measured breakdown.
    pub measured: Measured,
    /// Why a request ran locally although its plan used the cloud, if one did.
    pub fallback: Option<String>,
}

/// How the cut crosses: a label and the bytes uploaded.
pub(crate) fn describe_cut(plan: &Plan, session: &EdgeSession) -> (String, u64) {
    let graph = session.graph();
    let cloud = plan.cloud_nodes().len();
    let up: Vec<_> = plan
        .transfers()
        .iter()
        .filter(|t| t.direction == Direction::Up)
        .collect();
    let bytes = up.iter().map(|t| t.bytes).sum();
    let label = if cloud == 0 {
        "edge-only".to_string()
    } else if cloud + 1 == graph.len() {
        "cloud-only".to_string()
    } else {
        let ids: Vec<&str> = up.iter().map(|t| graph.id(t.tensor)).collect();
        format!("after {}", ids.join("+"))
    };
    (label, bytes)
}

/// A deterministic input batch of one for `net`, values in [-1, 1).
pub(crate) fn demo_input(net: &Net) -> Result<HostTensor, RuntimeError> {
    let mut shape = vec![1];
    shape.extend_from_slice(net.input_shape());
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| ((i * 7919) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    Ok(HostTensor::new(shape, data)?)
}

/// The request with the median total time.
pub(crate) fn median(mut outcomes: Vec<Outcome>) -> Option<Outcome> {
    outcomes.sort_by(|a, b| a.measured.total_ms.total_cmp(&b.measured.total_ms));
    let middle = outcomes.len() / 2;
    outcomes.into_iter().nth(middle)
}

/// Runs the demo: builds (or loads) the quick profile, starts the in-process cloud, and runs
/// every model under every uplink with each [`Strategy`]. `on_case` receives each case's rows
/// (chosen, edge-only, cloud-only) as soon as they are measured; all rows are returned.
///
/// Must be called inside a multi-threaded Tokio runtime.
pub async fn run_demo(
    config: &DemoConfig,
    mut on_case: impl FnMut(&[DemoRow]),
) -> Result<Vec<DemoRow>, RuntimeError> {
    check(config)?;
    let profiles = {
        let (cache, backend, nets) = (
            config.cache_dir.clone(),
            config.backend,
            config.models.clone(),
        );
        let (samples, progress) = (config.sweep_samples, config.progress);
        tokio::task::spawn_blocking(move || {
            quick_profile(&cache, backend, &nets, samples, progress)
        })
        .await
        .map_err(|e| RuntimeError::Task(e.to_string()))??
    };
    let cloud = LocalCloud::start(
        CloudConfig {
            backend: config.backend,
            ..CloudConfig::default()
        },
        &config.models,
    )?;
    let mut rows = Vec::new();
    let result = run_cases(config, &profiles, &cloud, &mut rows, &mut on_case).await;
    cloud.stop().await;
    result.map(|()| rows)
}

fn check(config: &DemoConfig) -> Result<(), RuntimeError> {
    let invalid = |name, reason: &str| {
        Err(RuntimeError::Config {
            name,
            reason: reason.to_string(),
        })
    };
    if config.models.is_empty() {
        return invalid("models", "the demo needs at least one model");
    }
    if config.repeats == 0 {
        return invalid("repeats", "must be at least 1");
    }
    if config.uplinks_mbps.is_empty() {
        return invalid("uplinks_mbps", "the demo needs at least one uplink");
    }
    Ok(())
}

async fn run_cases(
    config: &DemoConfig,
    profiles: &crate::quick_profile::QuickProfiles,
    cloud: &LocalCloud,
    rows: &mut Vec<DemoRow>,
    on_case: &mut impl FnMut(&[DemoRow]),
) -> Result<(), RuntimeError> {
    for net in &config.models {
        // Load the cloud's copy now, so that no measured request waits for it.
        cloud.server().preload(net.name()).await?;
        let loaded = LoadedModel::load(
            net.clone(),
            &WeightsSource::Seeded(DEFAULT_SEED),
            config.backend,
        )?;
        let edge_config = EdgeConfig {
            edge_slowdown: config.edge_slowdown,
            ..EdgeConfig::default()
        };
        let mut session =
            EdgeSession::with_profiles(loaded, &profiles.edge, &profiles.cloud, edge_config)?;
        let input = demo_input(net)?;
        for &uplink_mbps in &config.uplinks_mbps {
            let shaper =
                Shaper::new(uplink_mbps, SHAPER_BURST_BYTES).map_err(|e| RuntimeError::Config {
                    name: "uplinks_mbps",
                    reason: e.to_string(),
                })?;
            let mut client = cloud.client_config();
            client.uplink_shaper = Some(Arc::new(shaper));
            session.connect(client).await?;
            let mut case = Vec::new();
            for strategy in Strategy::ALL {
                session.set_split(strategy.split())?;
                // One request first, so that the link estimate has seen this uplink.
                session.infer(input.clone()).await?;
                let mut outcomes = Vec::with_capacity(config.repeats);
                for _ in 0..config.repeats {
                    outcomes.push(session.infer(input.clone()).await?);
                }
                let fallback = outcomes.iter().find_map(|o| o.fallback.clone());
                let Some(outcome) = median(outcomes) else {
                    continue;
                };
                let (cut, upload_bytes) = describe_cut(&outcome.plan, &session);
                case.push(DemoRow {
                    model: net.name().to_string(),
                    uplink_mbps,
                    strategy,
                    cut,
                    upload_bytes,
                    predicted: outcome.predicted,
                    measured: outcome.measured,
                    fallback,
                });
            }
            on_case(&case);
            rows.extend(case);
        }
        session.disconnect();
    }
    Ok(())
}

/// The rows as CSV with a header: model, uplink, strategy, cut, bytes, then the predicted and
/// measured parts in ms, and the fallback reason (empty when none).
pub fn demo_csv(rows: &[DemoRow]) -> String {
    let mut out = String::from(
        "model,uplink_mbps,strategy,cut,upload_bytes,\
predicted_edge_ms,predicted_upload_ms,predicted_cloud_ms,predicted_download_ms,predicted_rtt_ms,predicted_total_ms,\
measured_edge_ms,measured_upload_ms,measured_queue_ms,measured_cloud_ms,measured_download_ms,measured_total_ms,fallback\n",
    );
    for r in rows {
        let (p, m) = (&r.predicted, &r.measured);
        let fallback = r.fallback.as_deref().unwrap_or("").replace('"', "'");
        out.push_str(&format!(
            "{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},\"{fallback}\"\n",
            r.model,
            r.uplink_mbps,
            r.strategy.name(),
            r.cut,
            r.upload_bytes,
            p.edge_ms,
            p.upload_ms,
            p.cloud_ms,
            p.download_ms,
            p.rtt_ms,
            p.total_ms,
            m.edge_ms,
            m.upload_ms,
            m.queue_ms,
            m.cloud_ms,
            m.download_ms,
            m.total_ms,
        ));
    }
    out
}
