//! `cutpoint-edge run`: one inference split between this device and a cloud server, with the
//! measured link, the chosen cut and the predicted against the measured times. Also what `run`
//! and `tasks` share: the planner's cost flags and `--split`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use cli_common::BackendArg;
use models::{Backend, Net};
use runtime::{
    ClassScore, CostChoice, Costs, CostsReport, EdgeConfig, EdgeSession, InputReport, LoadedModel,
    ObjectiveChoice, ObjectiveReport, OutcomeReport, RequestInput, RuntimeError, SplitMode,
    WeightsSource, async_runtime, read_image_file, read_npy_input, render_top5, top5,
};
use serde::Serialize;
use transport::Loss;

use crate::connect_args::ConnectArgs;
use crate::model_args::{ModelArgs, WeightsArgs};
use crate::objective_args::ObjectiveArgs;
use crate::plan::read_graph;

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
    #[command(flatten)]
    weights: WeightsArgs,
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
        self.config_or(ObjectiveChoice::Latency)
    }

    /// As [`SplitArgs::config`], with `objective` when no `--objective` is given.
    pub fn config_or(&self, objective: ObjectiveChoice) -> Result<(EdgeConfig, ObjectiveChoice)> {
        let objective = self.objective.choice_or(objective)?;
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
    /// Reads the cost flags for `nets`, checking that every one has costs
    /// ([`Costs::choose`]); a graph that is missing or given twice names `--graph`.
    pub fn load(&self, nets: &[Net], backend: Backend) -> Result<Costs> {
        let graphs = self
            .graph
            .iter()
            .map(|path| Ok((format!("graph file {path}"), read_graph(path)?)))
            .collect::<Result<_>>()?;
        let choice = CostChoice {
            edge_profile: self.edge_profile.clone(),
            cloud_profile: self.cloud_profile.clone(),
            graphs,
            measure_edge: self.measure_edge,
            ignore_published: self.no_published_costs,
        };
        Costs::choose(choice, nets, backend).map_err(|e| {
            let graphs = matches!(
                e,
                RuntimeError::NoCosts { .. } | RuntimeError::DuplicateCosts { .. }
            );
            let e = anyhow::Error::new(e);
            if graphs { e.context("--graph") } else { e }
        })
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

/// What `run` reports: `--json` prints it, and the text is rendered from it.
#[derive(Serialize)]
struct RunReport {
    model: String,
    backend: &'static str,
    /// The servers given to --connect.
    server: String,
    /// The server that answered (`name (address)` for one given by name); null when the
    /// request ran on this device only.
    answered_by: Option<String>,
    input: InputReport,
    costs: CostsReport,
    split: String,
    max_loss: String,
    objective: ObjectiveReport,
    /// The link, the cut, the predicted and measured breakdowns, the energy, the fallback and
    /// the output's shape.
    #[serde(flatten)]
    outcome: OutcomeReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_warning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    saved_output: Option<String>,
    /// The top-5 classes of each sample, with --weights and a 1000-class output.
    #[serde(skip_serializing_if = "Option::is_none")]
    top5: Option<Vec<Vec<ClassScore>>>,
}

/// Runs the command.
pub fn run(args: &RunArgs) -> Result<()> {
    let client = args.connect.client_config()?;
    // Made first so that the session, which holds the connection, is dropped before it.
    let runtime = async_runtime()?;
    let net = args.model.build()?;
    let (input, input_source) = match (&args.image, &args.input) {
        (None, None) => (
            RequestInput::Tensor(models::seeded_input(&net, 1, args.weights.seed)?),
            format!(
                "seeded random (seed {}); give --input X.npy or --image IMG for real data",
                args.weights.seed
            ),
        ),
        (Some(image), _) => (
            RequestInput::Image(read_image_file(image, &net).context("--image")?),
            image.display().to_string(),
        ),
        (None, Some(input)) => (
            RequestInput::Tensor(read_npy_input(input, &net)?),
            input.display().to_string(),
        ),
    };
    let costs = args
        .costs
        .load(std::slice::from_ref(&net), args.backend.backend)?;
    let model = load(net, &args.weights.source(), args.backend.backend)?;
    let (config, objective) = args.planning.config()?;
    let (mut session, cost_source) = session(&costs, model, config)?;
    let input_report = input.report(input_source);

    let (warning, outcome) = runtime.block_on(async {
        let warning = session.connect_or_run_locally(client).await?;
        if let Some(w) = &warning {
            eprintln!("warning: {w}");
        }
        let outcome = input.infer(&mut session).await?;
        anyhow::Ok((warning, outcome))
    })?;

    let saved_output = match &args.save_output {
        Some(path) => {
            models::save_npy(path, &outcome.output)?;
            Some(path.display().to_string())
        }
        None => None,
    };
    let mut outcome_report = OutcomeReport::new(&session, &outcome);
    outcome_report.predicted_mj = objective.predicted_mj(&outcome.predicted);
    let report = RunReport {
        model: session.model().net().name().to_string(),
        backend: args.backend.backend.name(),
        server: args.connect.server().to_string(),
        answered_by: outcome.server.clone(),
        input: input_report,
        costs: CostsReport::new(cost_source, &session),
        split: args.planning.split_name(),
        max_loss: args.planning.max_loss.to_string(),
        objective: objective.report(),
        outcome: outcome_report,
        connect_warning: warning,
        saved_output,
        top5: args
            .weights
            .weights
            .as_ref()
            .and_then(|_| top5(&outcome.output)),
    };
    crate::emit(args.json, &report, render)
}

/// The report as text.
fn render(report: &RunReport) -> String {
    let mut out = format!(
        "{} on {} with the cloud at {}\n",
        report.model, report.backend, report.server
    );
    out += &format!(
        "answered by: {}\n",
        report
            .answered_by
            .as_deref()
            .unwrap_or("no cloud server (ran on this device)")
    );
    out += &format!("{}\n{}", report.input.line(), report.costs.lines());
    out += &report.outcome.render(&report.objective.line());
    if let Some(path) = &report.saved_output {
        out += &format!("output written to {path}\n");
    }
    if let Some(samples) = &report.top5 {
        out.push('\n');
        out += &render_top5(samples);
    }
    out
}
