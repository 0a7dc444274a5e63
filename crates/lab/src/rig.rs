//! What the demo and the grid share: an in-process cloud with this machine's quick profile, an
//! edge session slowed by emulation, an uplink paced by the transport's shaper, and the median
//! of repeated requests at one split.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use models::{Backend, HostTensor, Net, SAMPLE_JPEG};
use partition_core::Objective;
use transport::{ClientConfig, Relay, RelayConfig, Shaper};

use runtime::{
    CloudConfig, DEFAULT_SEED, EdgeConfig, EdgeSession, LoadedModel, LocalCloud, Outcome,
    QuickProfiles, SplitMode, WeightsSource, pattern_input, quick_profile,
};

use crate::error::LabError;

/// Burst allowance of the emulated uplink: one millisecond of traffic, and at least one
/// 1500-byte packet, as the real-shaping testbed's `tc tbf` bucket (1 ms, at least 4 KiB). A
/// larger bucket lets a small payload (a JPEG, a late layer's output) through at loopback speed
/// after every idle second: 16 KiB is a whole second of a 0.13 Mbit/s link.
fn shaper_burst_bytes(uplink_mbps: f64) -> usize {
    ((uplink_mbps * 1e6 / 8.0 * 1e-3) as usize).max(1500)
}

/// Builds (or loads) the quick profile covering `nets` on a blocking thread, then starts an
/// in-process cloud on `backend` serving them.
pub(crate) async fn start(
    nets: &[Net],
    backend: Backend,
    cache_dir: &Path,
    sweep_samples: Option<usize>,
    progress: bool,
) -> Result<(QuickProfiles, LocalCloud), LabError> {
    let (cache, owned) = (cache_dir.to_path_buf(), nets.to_vec());
    let profiles = tokio::task::spawn_blocking(move || {
        quick_profile(&cache, backend, &owned, sweep_samples, progress)
    })
    .await
    .map_err(|e| LabError::Task(e.to_string()))??;
    Ok((profiles, start_cloud(nets, backend)?))
}

/// An in-process cloud on `backend` serving `nets`.
pub(crate) fn start_cloud(nets: &[Net], backend: Backend) -> Result<LocalCloud, LabError> {
    let config = CloudConfig {
        backend,
        ..CloudConfig::default()
    };
    Ok(LocalCloud::start(config, nets)?)
}

/// A UDP relay listening on `listen` in front of `upstream` that adds `rtt_ms` of round trip
/// (half each way).
pub(crate) async fn rtt_relay(
    listen: SocketAddr,
    upstream: SocketAddr,
    rtt_ms: f64,
) -> Result<Relay, LabError> {
    let config = RelayConfig {
        delay: Duration::from_secs_f64(rtt_ms / 2e3),
        ..RelayConfig::default()
    };
    Relay::start(listen, upstream, config)
        .await
        .map_err(|e| LabError::Relay(e.to_string()))
}

/// A relay in front of `cloud` that adds `rtt_ms` of round trip (none for 0), and the address
/// clients reach the cloud at through it. Keep the relay for as long as the clients use it.
pub(crate) async fn behind_relay(
    cloud: &LocalCloud,
    rtt_ms: f64,
) -> Result<(Option<Relay>, SocketAddr), LabError> {
    let relay = if rtt_ms > 0.0 {
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        Some(rtt_relay(listen, cloud.addr(), rtt_ms).await?)
    } else {
        None
    };
    let server = relay.as_ref().map_or(cloud.addr(), Relay::local_addr);
    Ok((relay, server))
}

/// How long a lab request may take: a grid measures every cut, and at 1 Mbit/s the early cuts of
/// VGG16 upload 12.8 MB, which takes minutes.
const LAB_REQUEST_TIMEOUT: Duration = Duration::from_secs(900);

/// A session for `net` (seeded weights) planned with the quick profiles, its edge emulated
/// `edge_slowdown` times slower than this machine, minimising `objective`, and requests allowed
/// [`LAB_REQUEST_TIMEOUT`].
pub(crate) fn slow_edge_session(
    net: &Net,
    backend: Backend,
    profiles: &QuickProfiles,
    edge_slowdown: f64,
    objective: Objective,
) -> Result<EdgeSession, LabError> {
    let loaded = LoadedModel::load(net.clone(), &WeightsSource::Seeded(DEFAULT_SEED), backend)?;
    let config = EdgeConfig {
        edge_slowdown,
        objective,
        request_timeout: LAB_REQUEST_TIMEOUT,
        ..EdgeConfig::default()
    };
    Ok(EdgeSession::with_profiles(
        loaded,
        &profiles.edge,
        &profiles.cloud,
        config,
    )?)
}

/// Client settings for `cloud`, reached at `server` (the cloud itself or a relay in front of
/// it), with the uplink paced at `uplink_mbps`.
pub(crate) fn shaped_client(
    cloud: &LocalCloud,
    server: SocketAddr,
    uplink_mbps: f64,
) -> Result<ClientConfig, LabError> {
    let shaper = Shaper::new(uplink_mbps, shaper_burst_bytes(uplink_mbps)).map_err(|e| {
        LabError::Config {
            name: "uplinks_mbps",
            reason: e.to_string(),
        }
    })?;
    let mut client = cloud.client_config();
    client.server = server.to_string();
    client.uplink_shaper = Some(Arc::new(shaper));
    Ok(client)
}

/// What a lab request sends: a tensor, or an image file as an application holds it.
#[derive(Debug, Clone)]
pub(crate) enum LabInput {
    /// A preprocessed input batch.
    Tensor(HostTensor),
    /// An encoded image file.
    Image(&'static [u8]),
}

impl LabInput {
    /// Runs one request with it.
    pub async fn infer(&self, session: &mut EdgeSession) -> Result<Outcome, LabError> {
        match self {
            LabInput::Tensor(tensor) => Ok(session.infer(tensor.clone()).await?),
            LabInput::Image(file) => Ok(session.infer_image(file.to_vec()).await?),
        }
    }
}

/// Runs `split` once unmeasured (so that the link estimate has seen the uplink), then `repeats`
/// times, and returns the request with the median total time with the first fallback reason
/// any of them gave.
pub(crate) async fn median_request(
    session: &mut EdgeSession,
    split: SplitMode,
    input: &LabInput,
    repeats: usize,
) -> Result<Option<(Outcome, Option<String>)>, LabError> {
    session.set_split(split)?;
    input.infer(session).await?;
    let mut outcomes = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        outcomes.push(input.infer(session).await?);
    }
    let fallback = outcomes.iter().find_map(|o| o.fallback.clone());
    Ok(median(outcomes).map(|o| (o, fallback)))
}

/// Times whole forward passes on the edge (the median of `repeats`) and scales the session's
/// edge costs so that its profile predicts them, returning the factor. Profiles time layers one
/// by one, and a layer alone runs faster than inside a pass (its weights stay in cache), so an
/// uncalibrated profile prices the edge low; a CPU quota changes the speed again. Call once per
/// session: a second call would scale the scaled costs.
pub(crate) async fn calibrate_edge(
    session: &mut EdgeSession,
    input: &LabInput,
    repeats: usize,
) -> Result<f64, LabError> {
    let Some((local, _)) = median_request(session, SplitMode::EdgeOnly, input, repeats).await?
    else {
        return Err(LabError::Task(
            "calibration measured no edge-only request".into(),
        ));
    };
    let factor = local.measured.edge_ms / local.predicted.edge_ms.max(1e-3);
    session.scale_edge_costs(factor)?;
    Ok(factor)
}

/// What the lab sends for `net`: the embedded photograph as a JPEG file when `net` takes
/// ImageNet's `3x224x224`, else a deterministic input batch of one, values in [-1, 1).
pub(crate) fn lab_input(net: &Net) -> Result<LabInput, LabError> {
    if net.input_shape() == [3, 224, 224] {
        return Ok(LabInput::Image(SAMPLE_JPEG));
    }
    Ok(LabInput::Tensor(pattern_input(net)?))
}

/// The request with the median total time.
fn median(mut outcomes: Vec<Outcome>) -> Option<Outcome> {
    outcomes.sort_by(|a, b| a.measured.total_ms.total_cmp(&b.measured.total_ms));
    let middle = outcomes.len() / 2;
    outcomes.into_iter().nth(middle)
}
