//! `cutpoint-edge run`: one inference split between this device and a cloud server, with the
//! measured link, the chosen cut and the predicted against the measured times. Also what `run`
//! and `tasks` share: the planner's cost flags, `--split`, and how a cut is shown.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use cli_common::{Table, parse_backend};
use models::{Backend, Net};
use partition_core::Graph;
use predictor::DeviceProfile;
use runtime::{
    DEFAULT_SEED, EdgeConfig, EdgeSession, LoadedModel, Outcome, RuntimeError, SplitMode,
    WeightsSource,
};
use serde_json::{Value, json};
use transport::{LinkEstimate, Loss};

use crate::connect_args::{ConnectArgs, connect};
use crate::model_args::{ModelArgs, check_backend};
use crate::plan::{bytes, read_graph};
use crate::tensor_io::{read_input, render_top5, seeded_input, top5};

/// Run one inference split between this device and a cloud server.
///
/// It connects (QUIC, TLS, token), plans the cut for the measured link and the cloud's load,
/// runs the edge part here, ships the tensors at the cut, and prints the measured bandwidth and
/// RTT, the cut, the predicted against the measured breakdown, and the top-5 classes when
/// --weights is given. When the cloud cannot answer, the request finishes here and the output
/// says why. The planner prices each layer with the --graph file for the model, or the two
/// device profiles, or else a quick profile of this machine (built on first use and cached)
/// that assumes the cloud is as fast as this machine.
#[derive(Args)]
#[command(after_help = "Examples:
  cutpoint-edge run --connect 10.0.0.5:4433 --token-file token --model resnet18 \\
      --weights resnet18.safetensors --image cat.jpg
  cutpoint-edge run --connect cloud.example:4433 --model alexnet --split cloud --json
  cutpoint-edge run --connect 10.0.0.5:4433 --model vgg16 --edge-profile edge.profile \\
      --cloud-profile cloud.profile --uplink-mbps 5.85

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
    /// Backend: flex (default, fastest on CPU), ndarray, or wgpu (each needs its cargo feature).
    #[arg(long, value_name = "NAME", default_value = "flex", value_parser = parse_backend)]
    backend: Backend,
    /// Write the output tensor to this .npy file (float32, C order).
    #[arg(long, value_name = "FILE")]
    save_output: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// How the cut is chosen: `--split` and `--uplink-mbps`.
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
}

impl SplitArgs {
    /// Session settings with this split and uplink override, defaults otherwise.
    pub fn config(&self) -> EdgeConfig {
        EdgeConfig {
            split: self.split.clone(),
            uplink_mbps: self.uplink_mbps,
            max_loss: self.max_loss,
            ..EdgeConfig::default()
        }
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
    /// Edge device profile (from `train`) that prices each layer on this device; with
    /// --cloud-profile.
    #[arg(long, value_name = "FILE", requires = "cloud_profile")]
    edge_profile: Option<PathBuf>,
    /// Cloud device profile (from `cutpoint-cloud train`) that prices each layer on the
    /// server; with --edge-profile.
    #[arg(long, value_name = "FILE", requires = "edge_profile")]
    cloud_profile: Option<PathBuf>,
    /// Cost graph JSON with edge_ms and cloud_ms filled in (`graph` output), used for the model
    /// its "name" names, instead of the profiles (repeatable, one per model).
    #[arg(long, value_name = "FILE")]
    graph: Vec<String>,
}

/// Two device profiles, and where they came from.
struct Profiles {
    edge: DeviceProfile,
    cloud: DeviceProfile,
    source: String,
}

/// The planner's costs for a set of networks: cost graphs by model name, and device profiles
/// for the rest.
pub struct Costs {
    /// (file, graph) for each --graph.
    graphs: Vec<(String, Graph)>,
    profiles: Option<Profiles>,
}

impl CostArgs {
    /// Reads the cost flags for `nets`. With none given, it uses the quick profile of this
    /// machine on `backend` (swept and trained on first use, then cached) for edge and cloud.
    pub fn load(&self, nets: &[Net], backend: Backend) -> Result<Costs> {
        let mut graphs: Vec<(String, Graph)> = Vec::new();
        for path in &self.graph {
            let graph = read_graph(path)?;
            if let Some((other, _)) = graphs.iter().find(|(_, g)| g.name() == graph.name()) {
                bail!(
                    "--graph {other} and --graph {path} are both for model `{}`; give one graph per model",
                    graph.name()
                );
            }
            graphs.push((path.clone(), graph));
        }
        let profiles = match (&self.edge_profile, &self.cloud_profile) {
            (Some(edge), Some(cloud)) => Some(Profiles {
                edge: DeviceProfile::load(edge)?,
                cloud: DeviceProfile::load(cloud)?,
                source: format!(
                    "device profiles {} (edge) and {} (cloud)",
                    edge.display(),
                    cloud.display()
                ),
            }),
            _ if !graphs.is_empty() => None,
            _ => {
                let quick = runtime::quick_profile(
                    &runtime::default_cache_dir()?,
                    backend,
                    nets,
                    None,
                    true,
                )?;
                Some(Profiles {
                    source: format!(
                        "this machine's quick profile {} ({}); the cloud is assumed as fast as this machine",
                        quick.path.display(),
                        if quick.built { "built now" } else { "cached" }
                    ),
                    edge: quick.edge,
                    cloud: quick.cloud,
                })
            }
        };
        let costs = Costs { graphs, profiles };
        if costs.profiles.is_none() {
            if let Some(net) = nets.iter().find(|n| costs.graph_for(n.name()).is_none()) {
                let named: Vec<String> = costs
                    .graphs
                    .iter()
                    .map(|(path, g)| format!("{path} is for `{}`", g.name()))
                    .collect();
                bail!(
                    "no --graph is for model `{0}` ({1}); give a graph whose \"name\" is `{0}` (`cutpoint-edge graph` output with costs), or --edge-profile and --cloud-profile",
                    net.name(),
                    named.join(", ")
                );
            }
        }
        Ok(costs)
    }
}

impl Costs {
    fn graph_for(&self, model: &str) -> Option<&(String, Graph)> {
        self.graphs.iter().find(|(_, g)| g.name() == model)
    }

    /// A session for `model` that plans with its costs, and where those costs came from.
    pub fn session(&self, model: LoadedModel, config: EdgeConfig) -> Result<(EdgeSession, String)> {
        let name = model.model.net().name().to_string();
        if let Some((path, graph)) = self.graph_for(&name) {
            let session = EdgeSession::new(model, graph.clone(), config)
                .map_err(|e| with_flag(e, Some(path)))?;
            return Ok((session, format!("graph file {path}")));
        }
        match &self.profiles {
            Some(p) => Ok((
                EdgeSession::with_profiles(model, &p.edge, &p.cloud, config)
                    .map_err(|e| with_flag(e, None))?,
                p.source.clone(),
            )),
            None => bail!("no costs for model `{name}`; give its --graph or the two profiles"),
        }
    }
}

/// Names the flag behind a session's refusal to start: the graph file, the split or the
/// uplink override.
fn with_flag(e: RuntimeError, graph: Option<&str>) -> anyhow::Error {
    let flag = match (&e, graph) {
        (RuntimeError::GraphMismatch { .. }, Some(path)) => format!("--graph {path}"),
        (RuntimeError::Solve(_), _) => "--split".to_string(),
        (RuntimeError::Scenario(_), _) => "--uplink-mbps".to_string(),
        _ => return e.into(),
    };
    anyhow::Error::new(e).context(flag)
}

/// Loads `net` with weights from `source` on `backend`, checking the backend is built in.
pub fn load(net: Net, source: &WeightsSource, backend: Backend) -> Result<LoadedModel> {
    check_backend(backend)?;
    let name = net.name().to_string();
    LoadedModel::load(net, source, backend).with_context(|| format!("cannot load `{name}`"))
}

/// The cut in a few words: `edge-only`, `cloud-only (27.8 KB file up)`, or the tensors sent
/// up with their encodings.
pub fn cut_summary(outcome: &Outcome) -> String {
    let kind = outcome.cut_kind();
    if kind == "edge-only" {
        return kind.to_string();
    }
    let up = bytes(outcome.upload_bytes());
    if outcome.sends_file() {
        return format!("cloud-only ({up} image file up)");
    }
    let codecs = outcome.upload_codecs();
    let ids: Vec<String> = outcome
        .uploads()
        .zip(&codecs)
        .map(|(t, codec)| match *codec {
            "raw" => outcome.graph.id(t.tensor).to_string(),
            codec => format!("{} as {codec}", outcome.graph.id(t.tensor)),
        })
        .collect();
    if kind == "cloud-only" {
        return format!("cloud-only ({} up: {})", up, ids.join(""));
    }
    let shown = if ids.len() > 3 {
        format!("{}+{} more", ids[..3].join("+"), ids.len() - 3)
    } else {
        ids.join("+")
    };
    format!("after {shown} ({up} up)")
}

/// The cut as JSON: its kind, the cloud nodes, every tensor that crosses with its encoding,
/// predicted bytes and raw bytes, and what was actually sent.
pub fn cut_json(outcome: &Outcome) -> Value {
    let graph = &outcome.graph;
    let crossing: Vec<Value> = outcome
        .plan
        .transfers()
        .iter()
        .map(|t| {
            json!({
                "tensor": graph.id(t.tensor),
                "encoding": graph.encoding_name(t.tensor, t.encoding),
                "bytes": t.bytes,
                "raw_bytes": t.raw_bytes,
                "direction": t.direction.to_string(),
            })
        })
        .collect();
    let sent: Vec<Value> = outcome
        .sent
        .iter()
        .map(|s| {
            json!({
                "tensor": s.node,
                "encoding": s.codec_name(),
                "bytes": s.wire_bytes,
                "raw_bytes": s.raw_bytes,
            })
        })
        .collect();
    json!({
        "kind": outcome.cut_kind(),
        "sends_file": outcome.sends_file(),
        "solver": outcome.plan.method().to_string(),
        "cloud_nodes": outcome.cloud_nodes,
        "crossing": crossing,
        "crossing_bytes": outcome.upload_bytes(),
        "sent": sent,
    })
}

/// Starts a multi-threaded async runtime for the sessions.
pub fn async_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The input of one `run`: a tensor, or an image file as the application holds it.
enum RunInput {
    Tensor(models::HostTensor),
    Image(Vec<u8>),
}

/// Reads an image file for a network that must take ImageNet's 3x224x224 input.
pub fn read_image_file(path: &std::path::Path, net: &Net) -> Result<Vec<u8>> {
    if net.input_shape() != [3, 224, 224] {
        bail!(
            "--image gives a 3x224x224 input but `{}` takes {:?}; give a .npy tensor with --input instead",
            net.name(),
            net.input_shape()
        );
    }
    let file =
        std::fs::read(path).with_context(|| format!("cannot read --image {}", path.display()))?;
    models::image_dimensions(&file).with_context(|| format!("--image {}", path.display()))?;
    Ok(file)
}

/// Runs the command.
pub fn run(args: &RunArgs) -> Result<()> {
    let client = args.connect.client_config()?;
    // Made first so that the session, which holds the connection, is dropped before it.
    let runtime = async_runtime()?;
    let net = args.model.build()?;
    let (input, input_source) = match (&args.image, &args.input) {
        (None, None) => (
            RunInput::Tensor(seeded_input(&net, args.seed)?),
            format!(
                "seeded random (seed {}); give --input X.npy or --image IMG for real data",
                args.seed
            ),
        ),
        (Some(image), _) => (
            RunInput::Image(read_image_file(image, &net)?),
            image.display().to_string(),
        ),
        (None, Some(input)) => (
            RunInput::Tensor(read_input(None, Some(input), &net)?),
            input.display().to_string(),
        ),
    };
    let costs = args.costs.load(std::slice::from_ref(&net), args.backend)?;
    let weights = match &args.weights {
        Some(path) => WeightsSource::File(path.clone()),
        None => WeightsSource::Seeded(args.seed),
    };
    let model = load(net, &weights, args.backend)?;
    let (mut session, cost_source) = costs.session(model, args.planning.config())?;
    let input_shape = match &input {
        RunInput::Tensor(tensor) => json!(tensor.shape()),
        RunInput::Image(file) => json!(format!("image file, {}", bytes(file.len() as u64))),
    };

    let (warning, outcome, measured_link) = runtime.block_on(async {
        let warning = connect(&mut session, client).await?;
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

    let net = session.model().net();
    let mut report = json!({
        "model": net.name(),
        "backend": args.backend.name(),
        "server": args.connect.server(),
        "input": {"source": input_source, "shape": input_shape},
        "costs": cost_source,
        "split": args.planning.split_name(),
        "max_loss": args.planning.max_loss.to_string(),
        "link": {
            "measured": measured_json(measured_link.as_ref()),
            "planned": {
                "uplink_mbps": outcome.link.uplink_mbps(),
                "downlink_mbps": outcome.link.downlink_mbps(),
                "rtt_ms": outcome.link.rtt_ms(),
                "uplink_override": args.planning.uplink_mbps.is_some(),
            },
        },
        "load_factor": outcome.load_factor,
        "cut": cut_json(&outcome),
        "predicted_ms": {
            "edge": outcome.predicted.edge_ms,
            "upload": outcome.predicted.upload_ms,
            "cloud": outcome.predicted.cloud_ms,
            "download": outcome.predicted.download_ms,
            "rtt": outcome.predicted.rtt_ms,
            "total": outcome.predicted.total_ms,
        },
        "measured_ms": {
            "edge": outcome.measured.edge_ms,
            "upload": outcome.measured.upload_ms,
            "queue": outcome.measured.queue_ms,
            "cloud": outcome.measured.cloud_ms,
            "download": outcome.measured.download_ms,
            "other": outcome.measured.other_ms(),
            "total": outcome.measured.total_ms,
        },
        "fallback": outcome.fallback,
        "output_shape": outcome.output.shape(),
    });
    if let Some(w) = warning {
        report["connect_warning"] = json!(w);
    }
    if let Some(path) = &args.save_output {
        models::save_npy(path, &outcome.output)?;
        report["saved_output"] = json!(path.display().to_string());
    }
    if args.weights.is_some() {
        if let Some(classes) = top5(&outcome.output) {
            report["top5"] = classes;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report, &outcome));
    }
    Ok(())
}

/// The transport's measured link as JSON (`null` for what is not measured yet).
fn measured_json(link: Option<&LinkEstimate>) -> Value {
    json!({
        "uplink_mbps": link.and_then(|l| l.uplink).map(|d| d.mbps),
        "downlink_mbps": link.and_then(|l| l.downlink).map(|d| d.mbps),
        "rtt_ms": link.and_then(|l| l.rtt_ms),
    })
}

/// A measured figure, or `not measured`.
fn figure(value: &Value, unit: &str) -> String {
    value
        .as_f64()
        .map_or_else(|| "not measured".to_string(), |v| format!("{v:.2} {unit}"))
}

/// The report as text.
fn render(report: &Value, outcome: &Outcome) -> String {
    let graph = &outcome.graph;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut out = format!(
        "{} on {} with the cloud at {}\n",
        text(&report["model"]),
        text(&report["backend"]),
        text(&report["server"])
    );
    out += &format!(
        "input: {} {}\n",
        report["input"]["shape"],
        text(&report["input"]["source"])
    );
    out += &format!("costs: {}\n", text(&report["costs"]));
    let measured = &report["link"]["measured"];
    out += &format!(
        "link (measured): up {}, down {}, RTT {}\n",
        figure(&measured["uplink_mbps"], "Mbit/s"),
        figure(&measured["downlink_mbps"], "Mbit/s"),
        figure(&measured["rtt_ms"], "ms"),
    );
    let planned = &report["link"]["planned"];
    let uplink_note = if planned["uplink_override"].as_bool() == Some(true) {
        " (--uplink-mbps: planning only, the link is not shaped)"
    } else {
        ""
    };
    out += &format!(
        "planned for: up {}{uplink_note}, down {}, RTT {}; cloud load ×{:.2}\n",
        figure(&planned["uplink_mbps"], "Mbit/s"),
        figure(&planned["downlink_mbps"], "Mbit/s"),
        figure(&planned["rtt_ms"], "ms"),
        outcome.load_factor
    );
    let cloud = outcome.cloud_nodes.len();
    let net_nodes =
        graph.len() - usize::from(outcome.graph.index_of(runtime::INPUT_FILE_ID).is_some());
    out += &match outcome.cut_kind() {
        "edge-only" => format!(
            "cut ({}, {}): everything runs on the edge\n",
            text(&report["split"]),
            outcome.plan.method()
        ),
        kind => format!(
            "cut ({}, {}, max loss {}): {kind}, {} node(s) on the edge, {cloud} on the cloud\n",
            text(&report["split"]),
            outcome.plan.method(),
            text(&report["max_loss"]),
            net_nodes - cloud
        ),
    };
    for t in outcome.plan.transfers() {
        out += &format!(
            "  sends {}: {} as {} ({}, {} raw)\n",
            t.direction,
            graph.id(t.tensor),
            graph.encoding_name(t.tensor, t.encoding),
            bytes(t.bytes),
            bytes(t.raw_bytes)
        );
    }
    if let Some(&n) = outcome.output.shape().first().filter(|&&n| n > 1) {
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
    let p = &outcome.predicted;
    table.row(vec![
        "predicted".into(),
        ms(p.edge_ms),
        ms(p.upload_ms),
        "-".into(),
        ms(p.cloud_ms),
        ms(p.download_ms),
        ms(p.rtt_ms),
        ms(p.total_ms),
    ]);
    let m = &outcome.measured;
    table.row(vec![
        "measured".into(),
        ms(m.edge_ms),
        ms(m.upload_ms),
        ms(m.queue_ms),
        ms(m.cloud_ms),
        ms(m.download_ms),
        ms(m.other_ms()),
        ms(m.total_ms),
    ]);
    out += &table.render();
    if let Some(reason) = &outcome.fallback {
        out += &format!("\nfallback: ran locally because {reason}\n");
    }
    if let Some(path) = report.get("saved_output").and_then(Value::as_str) {
        out += &format!("output written to {path}\n");
    }
    if let Some(samples) = report.get("top5") {
        out.push('\n');
        out += &render_top5(samples);
    }
    out
}
