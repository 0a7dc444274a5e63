//! A stream of frames from one edge: one at a time against pipelined. A cloud runs in this
//! process on loopback, behind a UDP relay that adds the round trip; the edge is this machine
//! slowed down by emulation, behind an uplink paced by the transport's shaper (one shaper for
//! all of a queue's connections, so pipelined frames share the uplink as they would share a
//! radio). Each model's frames run three ways, in an order that rotates every round:
//! - one by one, planned for latency (what `cutpoint-edge tasks` does);
//! - pipelined, planned for latency (the overlap alone);
//! - pipelined, planned for the stream objective (the overlap and the plan made for it).

use std::path::PathBuf;

use models::{Backend, Net};
use partition_core::Objective;
use transport::ClientConfig;

use runtime::tasks::{QueueConfig, TaskQueue, TaskSummary, random_tasks};
use runtime::{LocalCloud, QuickProfiles};

use crate::error::LabError;
use crate::rig;

/// What a stream comparison runs.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// The networks, each served by the in-process cloud.
    pub models: Vec<Net>,
    /// The emulated uplink, Mbit/s.
    pub uplink_mbps: f64,
    /// Round trip added by the relay, ms (0: none).
    pub rtt_ms: f64,
    /// How many times slower than this machine the emulated edge is.
    pub edge_slowdown: f64,
    /// Frames per run (seeded inputs).
    pub frames: usize,
    /// Frames in flight when pipelined (2 to [`runtime::tasks::MAX_PIPELINE`]).
    pub depth: usize,
    /// Rounds; each runs every mode once, in an order that rotates.
    pub rounds: usize,
    /// Backend of both sides.
    pub backend: Backend,
    /// Where the quick profile is cached (see [`runtime::quick_profile()`]).
    pub cache_dir: PathBuf,
    /// Cap on the profile sweep's samples per class (tests use a small one).
    pub sweep_samples: Option<usize>,
    /// Progress on stderr while the profile is built.
    pub progress: bool,
}

/// How a run's frames go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMode {
    /// One frame at a time, planned for latency.
    OneByOne,
    /// Pipelined, planned for latency.
    PipelinedLatency,
    /// Pipelined, planned for the stream objective.
    PipelinedStream,
}

impl StreamMode {
    /// Every mode, in the first round's order.
    pub const ALL: [StreamMode; 3] = [
        StreamMode::OneByOne,
        StreamMode::PipelinedLatency,
        StreamMode::PipelinedStream,
    ];

    /// `one by one`, `pipelined (latency plan)` or `pipelined (stream plan)`.
    pub fn name(self) -> &'static str {
        match self {
            StreamMode::OneByOne => "one by one",
            StreamMode::PipelinedLatency => "pipelined (latency plan)",
            StreamMode::PipelinedStream => "pipelined (stream plan)",
        }
    }

    fn objective(self) -> Objective {
        match self {
            StreamMode::OneByOne | StreamMode::PipelinedLatency => Objective::Latency,
            StreamMode::PipelinedStream => Objective::Stream,
        }
    }

    fn depth(self, config: &StreamConfig) -> usize {
        match self {
            StreamMode::OneByOne => 1,
            StreamMode::PipelinedLatency | StreamMode::PipelinedStream => config.depth,
        }
    }
}

/// One run: a model's frames in one mode.
#[derive(Debug, Clone)]
pub struct StreamRow {
    /// The network.
    pub model: String,
    /// The round, from 1.
    pub round: usize,
    /// How the frames went.
    pub mode: StreamMode,
    /// The cut most frames ran at, in a few words.
    pub cut: String,
    /// The run's summary: throughput, wall time, latency, fallbacks and failures.
    pub summary: TaskSummary,
    /// The mean predicted time per frame (the plan's slowest stage), ms, for the stream plan.
    pub predicted_frame_ms: Option<f64>,
}

/// Runs the comparison: builds (or loads) the quick profile, starts the in-process cloud and
/// the relay, and runs every model's frames in every mode for every round. `on_row` receives
/// each run as soon as it is measured; all rows are returned.
///
/// Must be called inside a multi-threaded Tokio runtime.
pub async fn run_stream(
    config: &StreamConfig,
    mut on_row: impl FnMut(&StreamRow),
) -> Result<Vec<StreamRow>, LabError> {
    check(config)?;
    let (profiles, cloud) = rig::start(
        &config.models,
        config.backend,
        &config.cache_dir,
        config.sweep_samples,
        config.progress,
    )
    .await?;
    let (relay, server) = rig::behind_relay(&cloud, config.rtt_ms).await?;
    let result = match rig::shaped_client(&cloud, server, config.uplink_mbps) {
        Ok(client) => run_all(config, &profiles, &cloud, &client, &mut on_row).await,
        Err(e) => Err(e),
    };
    drop(relay);
    cloud.stop().await;
    result
}

fn check(config: &StreamConfig) -> Result<(), LabError> {
    let invalid = |name, reason: String| Err(LabError::Config { name, reason });
    if config.models.is_empty() {
        return invalid("models", "give at least one model".into());
    }
    if config.frames == 0 || config.rounds == 0 {
        return invalid("frames", "frames and rounds must be at least 1".into());
    }
    let max = runtime::tasks::MAX_PIPELINE;
    if !(2..=max).contains(&config.depth) {
        return invalid(
            "depth",
            format!("{} frames in flight: give 2 to {max}", config.depth),
        );
    }
    Ok(())
}

async fn run_all(
    config: &StreamConfig,
    profiles: &QuickProfiles,
    cloud: &LocalCloud,
    client: &ClientConfig,
    on_row: &mut impl FnMut(&StreamRow),
) -> Result<Vec<StreamRow>, LabError> {
    let mut rows = Vec::new();
    for net in &config.models {
        cloud.server().preload(net.name()).await?;
        let tasks = random_tasks(config.frames, &[net.name()], 0)?;
        for round in 1..=config.rounds {
            let mut modes = StreamMode::ALL;
            modes.rotate_left((round - 1) % StreamMode::ALL.len());
            for mode in modes {
                let session = rig::slow_edge_session(
                    net,
                    config.backend,
                    profiles,
                    config.edge_slowdown,
                    mode.objective(),
                )?;
                let mut queue = TaskQueue::new(QueueConfig {
                    pipeline: mode.depth(config),
                    ..QueueConfig::default()
                });
                queue.add(session, "the quick profiles")?;
                queue.connect(client.clone()).await?;
                let report = queue.run(&tasks, |_| {}).await?;
                let done: Vec<_> = report.tasks.iter().filter_map(|r| r.done()).collect();
                let frames: Vec<f64> = done.iter().filter_map(|d| d.predicted_frame_ms).collect();
                let predicted_frame_ms =
                    (!frames.is_empty()).then(|| frames.iter().sum::<f64>() / frames.len() as f64);
                let row = StreamRow {
                    model: net.name().to_string(),
                    round,
                    mode,
                    cut: most_common(done.iter().map(|d| d.cut_summary.as_str())),
                    summary: report.summary,
                    predicted_frame_ms,
                };
                on_row(&row);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// The value seen most often (the first of equals); `-` for none.
fn most_common<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for v in values {
        match counts.iter_mut().find(|(seen, _)| *seen == v) {
            Some((_, n)) => *n += 1,
            None => counts.push((v, 1)),
        }
    }
    let mut best: Option<(&str, usize)> = None;
    for &(v, n) in &counts {
        if best.is_none_or(|(_, most)| n > most) {
            best = Some((v, n));
        }
    }
    best.map_or_else(|| "-".to_string(), |(v, _)| v.to_string())
}
