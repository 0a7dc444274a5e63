//! The demo: collaborative inference on one machine, end to end. A cloud server runs in this
//! process on loopback; the edge is this machine slowed down by emulation, behind an uplink
//! paced by the transport's token-bucket shaper. The input is a real photograph as a camera
//! application holds it (a JPEG). For each model and uplink it runs the planner's plan beside
//! three baselines, edge-only, cloud-only sending the JPEG, and cloud-only sending the
//! preprocessed tensor as raw f32 (what Neurosurgeon sent), and reports predicted against
//! measured time.

use std::path::PathBuf;

use models::{Backend, Net, zoo};
use partition_core::{Breakdown, Objective};
use transport::Loss;

use runtime::{LocalCloud, Measured, QuickProfiles, SplitMode, Table};

use crate::error::{LabError, create_dir, write_file};
use crate::rig::{self, LabInput, lab_input};

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
    /// Where the quick profile is cached (see [`runtime::quick_profile()`]).
    pub cache_dir: PathBuf,
    /// Cap on the profile sweep's samples per class (tests use a small one). Default: none.
    pub sweep_samples: Option<usize>,
    /// Progress on stderr while the profile is built.
    pub progress: bool,
    /// The loss the chosen plan may use at the boundary. Default: exact.
    pub max_loss: Loss,
    /// What the chosen plan minimises. Default: latency.
    pub objective: Objective,
}

impl DemoConfig {
    /// What the demo runs on, as its header says it; `objective` is a line stating what the
    /// planner minimises.
    pub fn describe(&self, objective: &str) -> String {
        format!(
            "cutpoint demo: collaborative inference on this machine
  cloud:   a server in this process on loopback (QUIC), {} backend
  edge:    this machine, emulated {}x slower
  uplinks: emulated by the transport's token-bucket shaper; downlink and RTT are loopback's
  input:   a photograph, a {:.1} KB JPEG (scikit-image's CC0 \"chelsea\")
  planner: a quick latency profile of this machine (the cloud assumed as fast as it); loss allowed: {}
  {objective}
",
            self.backend.name(),
            self.edge_slowdown,
            models::SAMPLE_JPEG.len() as f64 / 1e3,
            self.max_loss
        )
    }

    /// Writes `rows` ([`demo_csv`]) to `demo/demo.csv` under the cache directory, creating
    /// it, and returns the file's path.
    pub fn write_csv(&self, rows: &[DemoRow]) -> Result<PathBuf, LabError> {
        let dir = self.cache_dir.join("demo");
        create_dir(&dir)?;
        let path = dir.join("demo.csv");
        write_file(&path, &demo_csv(rows))?;
        Ok(path)
    }

    /// The README's demo, caching its profile under `cache_dir`.
    pub fn standard(cache_dir: PathBuf) -> Result<DemoConfig, LabError> {
        Ok(DemoConfig {
            models: vec![zoo::build("alexnet")?, zoo::build("resnet18")?],
            uplinks_mbps: vec![1.1, 5.85, 18.88],
            edge_slowdown: 10.0,
            repeats: 3,
            backend: Backend::Flex,
            cache_dir,
            sweep_samples: None,
            progress: true,
            max_loss: Loss::Exact,
            objective: Objective::Latency,
        })
    }
}

/// The ways a case is run: the planner's plan and three baselines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// The planner's plan for the measured link: any cut, any codec the loss budget allows,
    /// or the image file itself.
    Chosen,
    /// Everything on the edge.
    EdgeOnly,
    /// Everything on the cloud, sending the image file as the application holds it (only for
    /// a network that takes an image).
    CloudOnlyFile,
    /// Everything on the cloud, sending the input preprocessed on the edge as raw f32: the
    /// baseline of Neurosurgeon's figures, which no real application would deploy.
    CloudOnlyRaw,
}

impl Strategy {
    /// All of them, in report order.
    pub const ALL: [Strategy; 4] = [
        Strategy::Chosen,
        Strategy::EdgeOnly,
        Strategy::CloudOnlyFile,
        Strategy::CloudOnlyRaw,
    ];

    /// The three baselines.
    pub const BASELINES: [Strategy; 3] = [
        Strategy::EdgeOnly,
        Strategy::CloudOnlyFile,
        Strategy::CloudOnlyRaw,
    ];

    /// `chosen`, `edge-only`, `cloud-only (file)` or `cloud-only (raw f32)`.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Chosen => "chosen",
            Strategy::EdgeOnly => "edge-only",
            Strategy::CloudOnlyFile => "cloud-only (file)",
            Strategy::CloudOnlyRaw => "cloud-only (raw f32)",
        }
    }

    fn split(self) -> SplitMode {
        match self {
            Strategy::Chosen => SplitMode::Auto,
            Strategy::EdgeOnly => SplitMode::EdgeOnly,
            Strategy::CloudOnlyFile | Strategy::CloudOnlyRaw => SplitMode::CloudOnly,
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
    /// The plan: `edge-only`, `cloud-only`, or `after ID[+ID…]` naming the tensors that cross,
    /// with how they travel when it is not raw f32 (`cloud-only (file)`, `after ID (int8)`).
    pub cut: String,
    /// Bytes that cross the uplink per request.
    pub upload_bytes: u64,
    /// The plan's predicted breakdown.
    pub predicted: Breakdown,
    /// The plan's predicted edge energy, mJ, when the demo plans for energy.
    pub predicted_mj: Option<f64>,
    /// The median request's measured breakdown.
    pub measured: Measured,
    /// Why a request ran locally although its plan used the cloud, if one did.
    pub fallback: Option<String>,
}

/// Runs the demo: builds (or loads) the quick profile, starts the in-process cloud, and runs
/// every model under every uplink with each [`Strategy`]. `on_case` receives each case's rows
/// (chosen, edge-only, cloud-only) as soon as they are measured; all rows are returned.
///
/// Must be called inside a multi-threaded Tokio runtime.
pub async fn run_demo(
    config: &DemoConfig,
    mut on_case: impl FnMut(&[DemoRow]),
) -> Result<Vec<DemoRow>, LabError> {
    check(config)?;
    let (profiles, cloud) = rig::start(
        &config.models,
        config.backend,
        &config.cache_dir,
        config.sweep_samples,
        config.progress,
    )
    .await?;
    let mut rows = Vec::new();
    let result = run_cases(config, &profiles, &cloud, &mut rows, &mut on_case).await;
    cloud.stop().await;
    result.map(|()| rows)
}

fn check(config: &DemoConfig) -> Result<(), LabError> {
    let invalid = |name, reason: &str| {
        Err(LabError::Config {
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
    profiles: &QuickProfiles,
    cloud: &LocalCloud,
    rows: &mut Vec<DemoRow>,
    on_case: &mut impl FnMut(&[DemoRow]),
) -> Result<(), LabError> {
    for net in &config.models {
        // Load the cloud's copy now, so that no measured request waits for it.
        cloud.server().preload(net.name()).await?;
        let mut session = rig::slow_edge_session(
            net,
            config.backend,
            profiles,
            config.edge_slowdown,
            config.objective,
        )?;
        session.set_max_loss(config.max_loss)?;
        let input = lab_input(net)?;
        for &uplink_mbps in &config.uplinks_mbps {
            let client = rig::shaped_client(cloud, cloud.addr(), uplink_mbps)?;
            session.connect(client).await?;
            let mut case = Vec::new();
            let takes_image = matches!(input, LabInput::Image(_));
            for strategy in Strategy::ALL {
                if strategy == Strategy::CloudOnlyFile && !takes_image {
                    continue;
                }
                session.set_raw_wire(strategy == Strategy::CloudOnlyRaw)?;
                let Some((outcome, fallback)) =
                    rig::median_request(&mut session, strategy.split(), &input, config.repeats)
                        .await?
                else {
                    continue;
                };
                let (cut, upload_bytes) = (outcome.cut_label(), outcome.upload_bytes());
                case.push(DemoRow {
                    model: net.name().to_string(),
                    uplink_mbps,
                    strategy,
                    cut,
                    upload_bytes,
                    predicted: outcome.predicted,
                    predicted_mj: match config.objective {
                        Objective::Latency => None,
                        energy => Some(outcome.predicted.objective_value(&energy)),
                    },
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

/// The rows as CSV with a header: model, uplink, strategy, cut, bytes, then the predicted
/// parts in ms, the predicted edge energy in mJ (empty unless the demo planned for energy), the
/// measured parts in ms, and the fallback reason (empty when none).
pub fn demo_csv(rows: &[DemoRow]) -> String {
    let mut out = String::from(
        "model,uplink_mbps,strategy,cut,upload_bytes,\
predicted_edge_ms,predicted_upload_ms,predicted_cloud_ms,predicted_download_ms,predicted_rtt_ms,predicted_total_ms,predicted_edge_mj,\
measured_edge_ms,measured_upload_ms,measured_queue_ms,measured_cloud_ms,measured_download_ms,measured_total_ms,fallback\n",
    );
    for r in rows {
        let (p, m) = (&r.predicted, &r.measured);
        let fallback = r.fallback.as_deref().unwrap_or("").replace('"', "'");
        let mj = r
            .predicted_mj
            .map_or_else(String::new, |mj| format!("{mj:.3}"));
        out.push_str(&format!(
            "{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{mj},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},\"{fallback}\"\n",
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

/// One case as text, as the demo prints it: the three strategies' rows, what the chosen plan
/// bought against the best baseline, and any request that ran locally.
pub fn render_case(rows: &[DemoRow]) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let mut out = format!(
        "\n{} over a {} Mbit/s uplink (emulated)\n",
        first.model, first.uplink_mbps
    );
    let energy = first.predicted_mj.is_some();
    let mut header = vec![
        "plan",
        "cut",
        "upload KB",
        "predicted ms",
        "measured ms",
        "edge",
        "upload",
        "cloud",
        "download",
    ];
    if energy {
        header.push("predicted mJ");
    }
    let mut table = Table::new(&header);
    for r in rows {
        let mut row = vec![
            r.strategy.name().to_string(),
            r.cut.clone(),
            format!("{:.1}", r.upload_bytes as f64 / 1e3),
            format!("{:.0}", r.predicted.total_ms),
            format!("{:.0}", r.measured.total_ms),
            format!("{:.0}", r.measured.edge_ms),
            format!("{:.0}", r.measured.upload_ms),
            format!("{:.0}", r.measured.cloud_ms + r.measured.queue_ms),
            format!("{:.0}", r.measured.download_ms),
        ];
        if let Some(mj) = r.predicted_mj {
            row.push(format!("{mj:.0}"));
        }
        table.row(row);
    }
    for line in table.render().lines() {
        out += &format!("  {line}\n");
    }
    out += &format!("  {}\n", verdict(rows));
    for r in rows {
        if let Some(reason) = &r.fallback {
            out += &format!(
                "  note: a {} request ran locally: {reason}\n",
                r.strategy.name()
            );
        }
    }
    out
}

/// What the chosen plan bought against the best baseline, measured: a speed-up when it is a
/// plan of its own, or which baseline it is (two noisy runs of one plan make no speed-up).
fn verdict(rows: &[DemoRow]) -> String {
    let Some(chosen) = rows.iter().find(|r| r.strategy == Strategy::Chosen) else {
        return "the chosen plan was not measured".to_string();
    };
    let baselines: Vec<&DemoRow> = rows
        .iter()
        .filter(|r| Strategy::BASELINES.contains(&r.strategy))
        .collect();
    if let Some(same) = baselines.iter().find(|b| b.cut == chosen.cut) {
        return format!(
            "the chosen plan is the same plan as {}",
            same.strategy.name()
        );
    }
    let Some(best) = baselines
        .iter()
        .min_by(|a, b| a.measured.total_ms.total_cmp(&b.measured.total_ms))
    else {
        return "no baseline was measured".to_string();
    };
    let speedup = best.measured.total_ms / chosen.measured.total_ms;
    let over = baselines
        .iter()
        .map(|b| {
            format!(
                "{:.2}x over {}",
                b.measured.total_ms / chosen.measured.total_ms,
                b.strategy.name()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    if speedup >= 1.0 {
        format!("measured speed-up of the chosen plan: {over}")
    } else {
        format!(
            "the chosen plan lost to {} ({:.2}x of its time): {over}",
            best.strategy.name(),
            1.0 / speedup
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(strategy: Strategy, cut: &str, total_ms: f64) -> DemoRow {
        DemoRow {
            model: "lenet".into(),
            uplink_mbps: 5.85,
            strategy,
            cut: cut.into(),
            upload_bytes: 1000,
            predicted: Breakdown::default(),
            predicted_mj: None,
            measured: Measured {
                total_ms,
                ..Measured::default()
            },
            fallback: None,
        }
    }

    #[test]
    fn the_header_and_the_csv_say_what_ran() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = DemoConfig::standard(dir.path().to_path_buf()).expect("config");
        let header = config.describe("objective: latency (ms)");
        assert_eq!(header.lines().count(), 7, "{header}");
        assert!(
            header.contains("  edge:    this machine, emulated 10x slower\n"),
            "{header}"
        );
        assert!(
            header.ends_with("\n  objective: latency (ms)\n"),
            "{header}"
        );
        let rows = [row(Strategy::Chosen, "edge-only", 1.0)];
        let path = config.write_csv(&rows).expect("written");
        assert_eq!(path, dir.path().join("demo").join("demo.csv"));
        let csv = std::fs::read_to_string(&path).expect("read back");
        assert_eq!(csv, demo_csv(&rows));
    }

    #[test]
    fn a_case_says_what_the_chosen_plan_bought() {
        let mut rows: Vec<DemoRow> = Strategy::BASELINES
            .iter()
            .zip(["edge-only", "cloud-only (file)", "cloud-only"])
            .map(|(&s, cut)| row(s, cut, 100.0))
            .collect();
        rows.insert(0, row(Strategy::Chosen, "after conv1", 50.0));
        let text = render_case(&rows);
        assert!(
            text.starts_with("\nlenet over a 5.85 Mbit/s uplink (emulated)\n"),
            "{text}"
        );
        assert!(
            text.contains("measured speed-up of the chosen plan: 2.00x over"),
            "{text}"
        );

        rows[0].cut = "cloud-only".into();
        assert!(render_case(&rows).contains("the chosen plan is the same plan as"));
        rows[0].cut = "after conv1".into();
        rows[0].measured.total_ms = 200.0;
        rows[0].fallback = Some("the cloud was busy".into());
        let text = render_case(&rows);
        assert!(text.contains("the chosen plan lost to"), "{text}");
        assert!(text.contains("ran locally: the cloud was busy"), "{text}");
        assert_eq!(render_case(&[]), "");
    }
}
