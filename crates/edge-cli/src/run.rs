//! `cutpoint-edge run`: one inference split between this device and a cloud server, with the
//! measured link, the chosen cut and the predicted against the measured times. Also what `run`
//! and `tasks` share: the planner's cost flags and `--split`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use cli_common::{BackendArg, Table};
use models::{Backend, HostTensor, Net};
use predictor::DeviceProfile;
use runtime::{
    BreakdownMs, Costs, CutReport, DEFAULT_SEED, EdgeConfig, EdgeSession, LoadedModel, Outcome,
    RuntimeError, SplitMode, WeightsSource, async_runtime, human_bytes, read_image_file,
};
use serde::Serialize;
use transport::{LinkEstimate, Loss};

use crate::connect_args::ConnectArgs;
use crate::model_args::ModelArgs;
use crate::objective_args::{ObjectiveArgs, ObjectiveChoice, ObjectiveReport};
use crate::plan::read_graph;
use crate::tensor_io::{ClassScore, read_input, render_top5, top5};

/// Run one inference split between this device and a cloud server.
///
/// It connects (QUIC, TLS, token), plans the cut for the measured link and the cloud's load,
/// runs the edge part here, ships the tensors at the cut, and prints the measured bandwidth and
/// RTT, the cut, the predicted against the measured breakdown (and with --objective energy the
/// plan's predicted edge energy), the edge's energy as the CPU's own counters measured it where
/// the machine has them, and the top-5 classes when --weights is given. When the cloud cannot
/// answer, the request finishes here and the output says why. The planner prices each layer
/// with the --graph file for the model, or the device profiles, or this device's own timing
/// (--measure-edge), or else a quick profile of this machine (built on first use and cached);
/// the cloud's layers as the server publishes them, else as fast as this machine.
#[derive(Args)]
#[command(after_help = "Examples:
  cutpoint-edge run --connect 10.0.0.5:4433 --token-file token --model resnet18 \\
      --weights resnet18.safetensors --image cat.jpg
  cutpoint-edge run --connect cloud.example:4433 --model alexnet --split cloud --json
  cutpoint-edge run --connect 10.0.0.5:4433 --model vgg16 --edge-profile edge.profile \\
      --cloud-profile cloud.profile --uplink-mbps 5.85
  cutpoint-edge run --connect 10.0.0.5:4433 --model resnet18 --objective energy \\
      --device-class raspberry-pi --measure-edge

The token file is the one `cutpoint-cloud serve` printed at start-up (or set
CUTPOINT_TOKEN_FILE). Both sides must load the same weights: the same --weights file, or the
same seed.")]
pub struct RunArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Weights as a torchvision state_dict in safetensors format; the server must serve the
    /// same file [default: seeded weights].
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// Seed for the weights when --weights is not given (the server's --seed must match), and
    /// for the input when neither --input nor --image is given.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Input tensor: a float32 .npy file in C order ([N, ...input shape] or one sample)
    /// [default: a seeded random input].
    #[arg(long, value_name = "FILE", conflicts_with = "image")]
    input: Option<PathBuf>,
    /// Input image (JPEG or PNG), as the application holds it; the model must take 3x224x224.
    /// The planner may send the file itself to the cloud, or decode and preprocess it here.
    #[arg(long, value_name = "FILE")]
    image: Option<PathBuf>,
    #[command(flatten)]
    planning: SplitArgs,
    #[command(flatten)]
    costs: CostArgs,
    #[command(flatten)]
    backend: BackendArg,
    /// Write the output tensor to this .npy file (float32, C order).
    #[arg(long, value_name = "FILE")]
    save_output: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// How the cut is chosen: `--split`, `--uplink-mbps`, `--max-loss` and the objective.
#[derive(Args)]
pub struct SplitArgs {
    /// How to cut: auto (the planner, for the live link and load), edge (everything here),
    /// cloud (everything but the input on the server), or the cloud's node ids, comma-separated
    /// (see `graph`).
    #[arg(long, value_name = "auto|edge|cloud|ID,ID,...", default_value = "auto", value_parser = parse_split)]
    split: SplitMode,
    /// Plan for this uplink (Mbit/s) instead of the measured one. Planning only: the link is
    /// not shaped, and transfers run at its real speed.
    #[arg(long, value_name = "MBPS")]
    uplink_mbps: Option<f64>,
    /// The loss allowed on the tensors that cross: exact (raw f32, lossless compression, or
    /// the image file itself), f16 (adds half precision), or int8 (adds per-channel 8-bit
    /// quantisation). The planner picks the cheapest allowed encoding for each tensor; see
    /// `fidelity` for what each costs in accuracy.
    #[arg(long, value_name = "exact|f16|int8", default_value = "exact", value_parser = parse_loss)]
    pub max_loss: Loss,
    #[command(flatten)]
    objective: ObjectiveArgs,
}

impl SplitArgs {
    /// Session settings with this split, uplink override, loss and objective, defaults
    /// otherwise; and the objective as chosen, for reports.
    pub fn config(&self) -> Result<(EdgeConfig, ObjectiveChoice)> {
        let objective = self.objective.choice()?;
        let config = EdgeConfig {
            split: self.split.clone(),
            uplink_mbps: self.uplink_mbps,
            max_loss: self.max_loss,
            objective: objective.objective(),
            ..EdgeConfig::default()
        };
        Ok((config, objective))
    }

    /// The split mode as given: `auto`, `edge`, `cloud` or the node ids.
    pub fn split_name(&self) -> String {
        self.split.to_string()
    }
}

fn parse_split(text: &str) -> Result<SplitMode, String> {
    text.parse().map_err(|e: RuntimeError| e.to_string())
}

/// Parses `--max-loss`.
pub fn parse_loss(text: &str) -> Result<Loss, String> {
    text.parse()
        .map_err(|e: transport::ParseLossError| e.to_string())
}

/// Where the planner's per-layer costs come from.
#[derive(Args)]
pub struct CostArgs {
    /// Edge device profile (from `train`) that prices each layer on this device. Without
    /// --cloud-profile the cloud's costs are the ones the server publishes.
    #[arg(long, value_name = "FILE")]
    edge_profile: Option<PathBuf>,
    /// Cloud device profile (from `cutpoint-cloud train`) that prices each layer on the
    /// server; with --edge-profile.
    #[arg(long, value_name = "FILE", requires = "edge_profile")]
    cloud_profile: Option<PathBuf>,
    /// Cost graph JSON with edge_ms and cloud_ms filled in (`graph` output), used for the model
    /// its "name" names, instead of the profiles (repeatable, one per model).
    #[arg(long, value_name = "FILE")]
    graph: Vec<String>,
    /// Price this device's layers by timing the model here at start (3 whole passes, each
    /// node timed as the pass runs it, scaled to the mean pass), instead of a profile: the device's speed
    /// as it runs now, under a CPU quota or a power cap too. The cloud's costs are the ones the
    /// server publishes, else assumed as fast as this device.
    #[arg(long, conflicts_with = "edge_profile")]
    measure_edge: bool,
    /// Ignore the per-layer costs the server publishes and plan with the cloud costs given
    /// here (--cloud-profile, a --graph file, or else the cloud assumed as fast as this
    /// device), to see what learning them changes [default: use them].
    #[arg(long)]
    no_published_costs: bool,
}

impl CostArgs {
    /// Reads the cost flags for `nets`, checking that every one has costs. With none given, it
    /// uses the quick profile of this machine on `backend` (swept and trained on first use,
    /// then cached) for edge and cloud.
    pub fn load(&self, nets: &[Net], backend: Backend) -> Result<Costs> {
        let mut costs = match (&self.edge_profile, &self.cloud_profile) {
            (Some(edge), None) => {
                let mut costs = Costs::new();
                costs.set_edge_profile(
                    DeviceProfile::load(edge)?,
                    format!(
                        "device profile {} (edge); the cloud's as the server publishes them",
                        edge.display()
                    ),
                );
                costs
            }
            (Some(edge), Some(cloud)) => {
                let mut costs = Costs::new();
                costs.set_profiles(
                    DeviceProfile::load(edge)?,
                    DeviceProfile::load(cloud)?,
                    format!(
                        "device profiles {} (edge) and {} (cloud)",
                        edge.display(),
                        cloud.display()
                    ),
                );
                costs
            }
            _ if !self.graph.is_empty() || self.measure_edge => Costs::new(),
            _ => Costs::quick(&runtime::default_cache_dir()?, backend, nets, true)?,
        };
        if self.measure_edge {
            costs.measure_here();
        }
        if self.no_published_costs {
            costs.ignore_published();
        }
        for path in &self.graph {
            costs
                .add_graph(format!("graph file {path}"), read_graph(path)?)
                .context("--graph")?;
        }
        costs.check(nets).context("--graph")?;
        Ok(costs)
    }
}

/// A session for `model` that plans with `costs`, and where they came from; a refusal to start
/// names the flag behind it (the graph file, the split or the uplink override).
pub fn session(
    costs: &Costs,
    model: LoadedModel,
    config: EdgeConfig,
) -> Result<(EdgeSession, String)> {
    let origin = costs.origin(model.model.net().name()).map(str::to_string);
    costs.session(model, config).map_err(|e| {
        let flag = match (&e, origin) {
            (RuntimeError::GraphMismatch { .. }, Some(origin)) => origin,
            (RuntimeError::Solve(_), _) => "--split".to_string(),
            (RuntimeError::Scenario(_), _) => "--uplink-mbps".to_string(),
            _ => return e.into(),
        };
        anyhow::Error::new(e).context(flag)
    })
}

/// Loads `net` with weights from `source` on `backend`.
pub fn load(net: Net, source: &WeightsSource, backend: Backend) -> Result<LoadedModel> {
    let name = net.name().to_string();
    LoadedModel::load(net, source, backend).with_context(|| format!("cannot load `{name}`"))
}

/// The input of one `run`: a tensor, or an image file as the application holds it.
enum RunInput {
    Tensor(HostTensor),
    Image(Vec<u8>),
}

/// What `run` reports: `--json` prints it, and the text is rendered from it.
#[derive(Serialize)]
struct RunReport {
    model: String,
    backend: &'static str,
    /// The servers given to --connect.
    connect: String,
    /// The server that answered (`name (address)` for one given by name); null when the
    /// request ran on this device only.
    server: Option<String>,
    input: InputReport,
    costs: CostsReport,
    split: String,
    max_loss: String,
    objective: ObjectiveReport,
    link: LinkReport,
    /// The cloud's expected wait the plan paid, ms.
    wait_ms: f64,
    cut: CutReport,
    predicted_ms: BreakdownMs,
    /// The plan's predicted edge energy, mJ, under the energy objective.
    #[serde(skip_serializing_if = "Option::is_none")]
    predicted_mj: Option<f64>,
    measured_ms: MeasuredMs,
    measured_energy: EnergyReport,
    fallback: Option<String>,
    output_shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_warning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    saved_output: Option<String>,
    /// The top-5 classes of each sample, with --weights and a 1000-class output.
    #[serde(skip_serializing_if = "Option::is_none")]
    top5: Option<Vec<Vec<ClassScore>>>,
}

/// Where each side's costs came from.
#[derive(Serialize)]
struct CostsReport {
    /// The cost source the session was made with (graph file, profiles, quick profile).
    edge: String,
    /// The cloud's: as given, published by the server, or assumed (and why).
    cloud: String,
}

/// The edge's energy as the CPU's own counters measured it.
#[derive(Serialize)]
struct EnergyReport {
    /// The CPU packages' energy over the edge's compute, mJ; `None` without counters.
    edge_mj: Option<f64>,
    /// What the figure covers (package-wide), or why there is none.
    note: String,
}

/// Where the input came from, and its shape.
#[derive(Serialize)]
struct InputReport {
    source: String,
    shape: InputShape,
}

/// A tensor's shape, or the size of an image file.
#[derive(Serialize)]
#[serde(untagged)]
enum InputShape {
    Tensor(Vec<usize>),
    File(String),
}

/// The link as the transport measured it and as the plan assumed it.
#[derive(Serialize)]
struct LinkReport {
    measured: MeasuredLink,
    planned: PlannedLink,
}

/// The transport's estimate; `None` for what is not measured yet.
#[derive(Serialize)]
struct MeasuredLink {
    uplink_mbps: Option<f64>,
    downlink_mbps: Option<f64>,
    rtt_ms: Option<f64>,
}

/// The link the plan was made for.
#[derive(Serialize)]
struct PlannedLink {
    uplink_mbps: f64,
    downlink_mbps: f64,
    rtt_ms: f64,
    /// Whether --uplink-mbps replaced the measured uplink.
    uplink_override: bool,
}

/// The measured breakdown, ms.
#[derive(Serialize)]
struct MeasuredMs {
    edge: f64,
    upload: f64,
    queue: f64,
    cloud: f64,
    /// Loading the model on the cloud (its first request there), apart from compute.
    load: f64,
    download: f64,
    other: f64,
    total: f64,
}

/// Runs the command.
pub fn run(args: &RunArgs) -> Result<()> {
    let client = args.connect.client_config()?;
    // Made first so that the session, which holds the connection, is dropped before it.
    let runtime = async_runtime()?;
    let net = args.model.build()?;
    let (input, input_source) = match (&args.image, &args.input) {
        (None, None) => (
            RunInput::Tensor(models::seeded_input(&net, 1, args.seed)?),
            format!(
                "seeded random (seed {}); give --input X.npy or --image IMG for real data",
                args.seed
            ),
        ),
        (Some(image), _) => (
            RunInput::Image(read_image_file(image, &net).context("--image")?),
            image.display().to_string(),
        ),
        (None, Some(input)) => (
            RunInput::Tensor(read_input(None, Some(input), &net)?),
            input.display().to_string(),
        ),
    };
    let costs = args
        .costs
        .load(std::slice::from_ref(&net), args.backend.backend)?;
    let weights = match &args.weights {
        Some(path) => WeightsSource::File(path.clone()),
        None => WeightsSource::Seeded(args.seed),
    };
    let model = load(net, &weights, args.backend.backend)?;
    let (config, objective) = args.planning.config()?;
    let (mut session, cost_source) = session(&costs, model, config)?;
    let input_shape = match &input {
        RunInput::Tensor(tensor) => InputShape::Tensor(tensor.shape().to_vec()),
        RunInput::Image(file) => {
            InputShape::File(format!("image file, {}", human_bytes(file.len() as u64)))
        }
    };

    let (warning, outcome, estimate) = runtime.block_on(async {
        let warning = session.connect_or_run_locally(client).await?;
        if let Some(w) = &warning {
            eprintln!("warning: {w}");
        }
        let outcome = match input {
            RunInput::Tensor(tensor) => session.infer(tensor).await?,
            RunInput::Image(file) => session.infer_image(file).await?,
        };
        let link = session.client().map(|c| c.link());
        anyhow::Ok((warning, outcome, link))
    })?;

    let saved_output = match &args.save_output {
        Some(path) => {
            models::save_npy(path, &outcome.output)?;
            Some(path.display().to_string())
        }
        None => None,
    };
    let report = RunReport {
        model: session.model().net().name().to_string(),
        backend: args.backend.backend.name(),
        connect: args.connect.server().to_string(),
        server: outcome.server.clone(),
        input: InputReport {
            source: input_source,
            shape: input_shape,
        },
        costs: CostsReport {
            edge: cost_source,
            cloud: session.cloud_cost_source().to_string(),
        },
        split: args.planning.split_name(),
        max_loss: args.planning.max_loss.to_string(),
        objective: objective.report(),
        link: LinkReport {
            measured: measured_link(estimate.as_ref()),
            planned: PlannedLink {
                uplink_mbps: outcome.link.uplink_mbps(),
                downlink_mbps: outcome.link.downlink_mbps(),
                rtt_ms: outcome.link.rtt_ms(),
                uplink_override: args.planning.uplink_mbps.is_some(),
            },
        },
        wait_ms: outcome.wait_ms,
        cut: outcome.cut_report(),
        predicted_ms: BreakdownMs::from(&outcome.predicted),
        predicted_mj: objective.predicted_mj(&outcome.predicted),
        measured_ms: MeasuredMs {
            edge: outcome.measured.edge_ms,
            upload: outcome.measured.upload_ms,
            queue: outcome.measured.queue_ms,
            cloud: outcome.measured.cloud_ms,
            load: outcome.measured.load_ms,
            download: outcome.measured.download_ms,
            other: outcome.measured.other_ms(),
            total: outcome.measured.total_ms,
        },
        measured_energy: EnergyReport {
            edge_mj: outcome.measured.edge_energy_mj,
            note: match session.energy_counters() {
                Ok(counters) => format!("the edge's compute only, {}", counters.describe()),
                Err(reason) => reason.to_string(),
            },
        },
        fallback: outcome.fallback.clone(),
        output_shape: outcome.output.shape().to_vec(),
        connect_warning: warning,
        saved_output,
        top5: args.weights.as_ref().and_then(|_| top5(&outcome.output)),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, &outcome)?);
    }
    Ok(())
}

/// The transport's measured link (`None` for what is not measured yet).
fn measured_link(link: Option<&LinkEstimate>) -> MeasuredLink {
    MeasuredLink {
        uplink_mbps: link.and_then(|l| l.uplink).map(|d| d.mbps),
        downlink_mbps: link.and_then(|l| l.downlink).map(|d| d.mbps),
        rtt_ms: link.and_then(|l| l.rtt_ms),
    }
}

/// A measured figure, or `not measured`.
fn figure(value: Option<f64>, unit: &str) -> String {
    value.map_or_else(|| "not measured".to_string(), |v| format!("{v:.2} {unit}"))
}

/// The report as text; `outcome` gives the plan's transfers.
fn render(report: &RunReport, outcome: &Outcome) -> Result<String> {
    let graph = &outcome.graph;
    let mut out = format!(
        "{} on {} with the cloud at {}\n",
        report.model, report.backend, report.connect
    );
    out += &format!(
        "answered by: {}\n",
        report
            .server
            .as_deref()
            .unwrap_or("no cloud server (ran on this device)")
    );
    out += &format!(
        "input: {} {}\n",
        serde_json::to_string(&report.input.shape)?,
        report.input.source
    );
    out += &format!(
        "costs: {}\ncloud costs: {}\n",
        report.costs.edge, report.costs.cloud
    );
    let measured = &report.link.measured;
    out += &format!(
        "link (measured): up {}, down {}, RTT {}\n",
        figure(measured.uplink_mbps, "Mbit/s"),
        figure(measured.downlink_mbps, "Mbit/s"),
        figure(measured.rtt_ms, "ms"),
    );
    let planned = &report.link.planned;
    let uplink_note = if planned.uplink_override {
        " (--uplink-mbps: planning only, the link is not shaped)"
    } else {
        ""
    };
    out += &format!(
        "planned for: up {}{uplink_note}, down {}, RTT {}; cloud wait {:.2} ms\n",
        figure(Some(planned.uplink_mbps), "Mbit/s"),
        figure(Some(planned.downlink_mbps), "Mbit/s"),
        figure(Some(planned.rtt_ms), "ms"),
        report.wait_ms
    );
    out += &format!("{}\n", report.objective.line());
    let cloud = report.cut.cloud_nodes.len();
    let net_nodes = graph.len() - usize::from(graph.index_of(runtime::INPUT_FILE_ID).is_some());
    out += &match report.cut.kind {
        "edge-only" => format!(
            "cut ({}, {}): everything runs on the edge\n",
            report.split, report.cut.solver
        ),
        kind => format!(
            "cut ({}, {}, max loss {}): {kind}, {} node(s) on the edge, {cloud} on the cloud\n",
            report.split,
            report.cut.solver,
            report.max_loss,
            net_nodes - cloud
        ),
    };
    for t in &report.cut.crossing {
        out += &format!(
            "  sends {}: {} as {} ({}, {} raw)\n",
            t.direction,
            t.tensor,
            t.encoding,
            human_bytes(t.bytes),
            human_bytes(t.raw_bytes)
        );
    }
    if let Some(&n) = report.output_shape.first().filter(|&&n| n > 1) {
        out += &format!("(predictions are for one sample; the input holds {n})\n");
    }
    out.push('\n');
    let mut table = Table::new(&[
        "(ms)",
        "edge",
        "upload",
        "queue",
        "cloud",
        "download",
        "rtt/other",
        "total",
    ]);
    let ms = |x: f64| format!("{x:.2}");
    let p = &report.predicted_ms;
    table.row(vec![
        "predicted".into(),
        ms(p.edge),
        ms(p.upload),
        ms(p.wait),
        ms(p.cloud),
        ms(p.download),
        ms(p.rtt),
        ms(p.total),
    ]);
    let m = &report.measured_ms;
    table.row(vec![
        "measured".into(),
        ms(m.edge),
        ms(m.upload),
        ms(m.queue),
        ms(m.cloud),
        ms(m.download),
        ms(m.other),
        ms(m.total),
    ]);
    out += &table.render();
    if let Some(mj) = report.predicted_mj {
        out += &format!("predicted edge energy: {mj:.1} mJ\n");
    }
    out += &match report.measured_energy.edge_mj {
        Some(mj) => format!(
            "measured edge energy: {mj:.1} mJ ({})\n",
            report.measured_energy.note
        ),
        None => format!("measured edge energy: {}\n", report.measured_energy.note),
    };
    if m.load > 0.0 {
        out += &format!(
            "the cloud loaded the model for this first request in {:.1} ms (apart from compute)\n",
            m.load
        );
    }
    if let Some(reason) = &report.fallback {
        out += &format!("\nfallback: ran locally because {reason}\n");
    }
    if let Some(path) = &report.saved_output {
        out += &format!("output written to {path}\n");
    }
    if let Some(samples) = &report.top5 {
        out.push('\n');
        out += &render_top5(samples);
    }
    Ok(out)
}
