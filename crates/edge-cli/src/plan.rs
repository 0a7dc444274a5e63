//! `cutpoint-edge plan`: solve the cut for a graph JSON file and a link.

use std::io::Read;
use std::path::PathBuf;

use crate::model_args::build_net;
use crate::objective_args::{ObjectiveArgs, PowersReport, flag_error};
use crate::run::parse_loss;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use models::Backend;
use partition_core::{Direction, Graph, Link, Objective, Plan, Scenario, Solver};
use predictor::DeviceProfile;
use runtime::{
    BreakdownMs, DEFAULT_SEED, EdgeConfig, EdgeSession, LoadedModel, WeightsSource, async_runtime,
    human_bytes, read_image_file,
};
use serde::Serialize;
use transport::Loss;

use cli_common::Table;

/// Choose where to cut a model between edge and cloud for a given link.
///
/// The costs come either from a graph in docs/DESIGN.md's graph JSON format (per-node edge_ms,
/// cloud_ms, out_bytes, and optional encodings of the output), or from a model (zoo name or spec
/// file) priced by an edge and a cloud device profile (see `profile` and `train`). It solves for
/// the cut that minimises the objective and prints the cut, with the encoding each crossing
/// tensor goes in, and its predicted breakdown beside edge-only and cloud-only.
#[derive(Args)]
#[command(
    allow_negative_numbers = true,
    after_help = "Examples:
  cutpoint-edge plan --graph examples/graphs/alexnet.json --uplink-mbps 5.85 --rtt-ms 20
  cutpoint-edge plan --graph examples/graphs/resnet18.json --uplink-mbps 18.88 --json
  cutpoint-edge plan --model alexnet --edge-profile edge.profile --cloud-profile cloud.profile \\
      --uplink-mbps 1.1
  cutpoint-edge plan --graph - --uplink-mbps 1.1 --objective energy \\
      --device-class raspberry-pi < graph.json
  cutpoint-edge plan --graph - --uplink-mbps 1.1 --objective energy \\
      --compute-w 2.5 --transmit-w 1.2 --idle-w 0.3 < graph.json

Mbit/s means 10^6 bit/s."
)]
pub struct PlanArgs {
    /// Graph JSON file, or `-` for standard input.
    #[arg(long, value_name = "FILE", required_unless_present_any = ["model", "model_spec"], conflicts_with_all = ["model", "model_spec"])]
    graph: Option<String>,
    /// Zoo model to plan, priced by --edge-profile and --cloud-profile (instead of --graph).
    #[arg(long, value_name = "NAME", conflicts_with = "model_spec")]
    model: Option<String>,
    /// Model spec JSON file to plan, priced by the two profiles (instead of --graph).
    #[arg(long, value_name = "FILE")]
    model_spec: Option<PathBuf>,
    /// Edge device profile (from `train`) that prices the model's layers on the edge.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "graph",
        conflicts_with = "graph"
    )]
    edge_profile: Option<PathBuf>,
    /// Cloud device profile (from `cutpoint-cloud train`) that prices them in the cloud.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "graph",
        conflicts_with = "graph"
    )]
    cloud_profile: Option<PathBuf>,
    /// Edge → cloud rate in Mbit/s.
    #[arg(long, value_name = "MBPS")]
    uplink_mbps: f64,
    /// Cloud → edge rate in Mbit/s [default: the uplink rate].
    #[arg(long, value_name = "MBPS")]
    downlink_mbps: Option<f64>,
    /// Round-trip time in ms.
    #[arg(long, value_name = "MS", default_value_t = 0.0)]
    rtt_ms: f64,
    #[command(flatten)]
    objective: ObjectiveArgs,
    /// Cloud load factor (≥ 1); multiplies every cloud time (the older load model; a server
    /// reports --wait-ms).
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    load_factor: f64,
    /// The cloud's expected wait for a new request, ms: paid once by any plan that uses the
    /// cloud (what `cutpoint-cloud serve` reports and `run` plans with).
    #[arg(long, value_name = "MS", default_value_t = 0.0)]
    wait_ms: f64,
    /// Solver: chain (Neurosurgeon, chains only), mincut (DADS, any DAG), prefix (Neurosurgeon
    /// on a DAG: one cut of the topological order where at most one tensor crosses; a
    /// baseline), dp, exhaustive (small graphs), or auto (chain on chains, mincut otherwise).
    #[arg(long, value_enum, default_value_t = SolverArg::Auto)]
    solver: SolverArg,
    /// Let work come back to the edge mid-graph, paying the downlink and a round trip per
    /// returning tensor (dp or exhaustive; with auto, uses dp).
    #[arg(long)]
    allow_return: bool,
    /// With --model: the loss allowed on the tensors that cross (exact: raw f32, lossless
    /// compression or the image file; f16; int8). Encoded sizes and codec times are measured by
    /// running the model (seeded weights) on the demo's photograph, or a seeded input. Without
    /// it every tensor is priced as raw f32, as in the graph `graph` prints. A graph file's own
    /// `encodings` are all candidates.
    #[arg(long, value_name = "exact|f16|int8", value_parser = parse_loss, conflicts_with = "graph")]
    max_loss: Option<Loss>,
    /// With --model: plan for this JPEG or PNG file as the input, so that cloud-only may send
    /// the file itself (the model must take 3x224x224).
    #[arg(long, value_name = "FILE", conflicts_with = "graph")]
    image: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum SolverArg {
    Auto,
    Chain,
    Mincut,
    Prefix,
    Dp,
    Exhaustive,
}

/// Runs the command.
pub fn run(args: &PlanArgs) -> Result<()> {
    let graph = match &args.graph {
        Some(path) => read_graph(path)?,
        None => predicted_graph(args)?,
    };
    let objective = args.objective.choice()?.report();
    let scenario = scenario(args)?;
    let solver = solver(args)?;
    let plan = solver.solve(&graph, &scenario)?;
    let edge_only = Plan::edge_only(&graph, &scenario);
    let cloud_only = Plan::cloud_only(&graph, &scenario);
    if args.json {
        let mut report = PlanReport::new(&graph, &scenario, &plan, &edge_only, &cloud_only);
        report.powers_w = objective.powers_w;
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!(
            "{}",
            text_report(&graph, &scenario, &plan, &edge_only, &cloud_only)
        );
        if objective.powers_w.is_some() {
            println!("{}", objective.line());
        }
    }
    Ok(())
}

/// Reads a graph JSON file, or standard input for `-`.
pub(crate) fn read_graph(path: &str) -> Result<Graph> {
    let text = if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the graph from standard input")?;
        text
    } else {
        let path = PathBuf::from(path);
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read graph file `{}`", path.display()))?
    };
    let source = if path == "-" { "standard input" } else { path };
    Graph::from_json(&text).with_context(|| format!("graph from {source}"))
}

/// The model the flags name, priced by the two profiles.
fn predicted_graph(args: &PlanArgs) -> Result<Graph> {
    let net = build_net(args.model.as_deref(), args.model_spec.as_deref())?;
    let load = |path: &Option<PathBuf>, flag: &str| -> Result<DeviceProfile> {
        let path = path
            .as_ref()
            .ok_or_else(|| anyhow!("{flag} is needed to price the model's layers"))?;
        Ok(DeviceProfile::load(path)?)
    };
    let edge = load(&args.edge_profile, "--edge-profile")?;
    let cloud = load(&args.cloud_profile, "--cloud-profile")?;
    if args.max_loss.is_none() && args.image.is_none() {
        return Ok(DeviceProfile::predict_graph(&net, &edge, &cloud)?);
    }
    let image = match &args.image {
        Some(path) => Some(read_image_file(path, &net).context("--image")?),
        None => None,
    };
    let model = LoadedModel::load(net, &WeightsSource::Seeded(DEFAULT_SEED), Backend::Flex)?;
    let config = EdgeConfig {
        max_loss: args.max_loss.unwrap_or_default(),
        ..EdgeConfig::default()
    };
    let mut session = EdgeSession::with_profiles(model, &edge, &cloud, config)?;
    let graph = async_runtime()?.block_on(session.request_graph(image.as_deref()))?;
    Ok(graph)
}

fn scenario(args: &PlanArgs) -> Result<Scenario> {
    let objective = args.objective.choice()?.objective();
    let downlink = args.downlink_mbps.unwrap_or(args.uplink_mbps);
    let link = Link::new(args.uplink_mbps, downlink, args.rtt_ms).map_err(flag_error)?;
    Scenario::new(link, objective, args.load_factor)
        .and_then(|s| s.with_wait(args.wait_ms))
        .map_err(flag_error)
}

fn solver(args: &PlanArgs) -> Result<Solver> {
    let allow_return = args.allow_return;
    Ok(match args.solver {
        SolverArg::Auto if allow_return => Solver::Dp { allow_return },
        SolverArg::Auto => Solver::Auto,
        SolverArg::Chain | SolverArg::Mincut | SolverArg::Prefix if allow_return => bail!(
            "--allow-return needs --solver dp or exhaustive: chain, mincut and prefix keep every tensor from returning to the edge"
        ),
        SolverArg::Chain => Solver::Chain,
        SolverArg::Mincut => Solver::MinCut,
        SolverArg::Prefix => Solver::Prefix,
        SolverArg::Dp => Solver::Dp { allow_return },
        SolverArg::Exhaustive => Solver::Exhaustive { allow_return },
    })
}

fn ids(graph: &Graph, nodes: &[usize]) -> Vec<String> {
    nodes.iter().map(|&v| graph.id(v).to_string()).collect()
}

/// `plan --json`: the plan, its predicted breakdown, the baselines and the scenario.
#[derive(Serialize)]
struct PlanReport {
    graph: String,
    solver: String,
    objective: &'static str,
    objective_value: f64,
    objective_unit: &'static str,
    /// The energy objective's powers and where they come from; absent for latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    powers_w: Option<PowersReport>,
    cloud_nodes: Vec<String>,
    edge_nodes: Vec<String>,
    transfers: Vec<TransferReport>,
    predicted_ms: BreakdownMs,
    baselines: Baselines,
    link: LinkReport,
    load_factor: f64,
    wait_ms: f64,
}

/// A tensor that crosses, as the plan sends it.
#[derive(Serialize)]
struct TransferReport {
    tensor: String,
    bytes: u64,
    direction: String,
    encoding: String,
    raw_bytes: u64,
}

/// Edge-only and cloud-only for the same scenario; energies with the energy objective.
#[derive(Serialize)]
struct Baselines {
    edge_only_ms: f64,
    cloud_only_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    edge_only_mj: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud_only_mj: Option<f64>,
}

/// The link planned for.
#[derive(Serialize)]
struct LinkReport {
    uplink_mbps: f64,
    downlink_mbps: f64,
    rtt_ms: f64,
}

impl PlanReport {
    fn new(
        graph: &Graph,
        s: &Scenario,
        plan: &Plan,
        edge_only: &Plan,
        cloud_only: &Plan,
    ) -> PlanReport {
        let b = plan.breakdown();
        let energy = matches!(s.objective(), Objective::Energy { .. });
        PlanReport {
            graph: graph.name().to_string(),
            solver: plan.method().to_string(),
            objective: s.objective().name(),
            objective_value: plan.value(),
            objective_unit: s.objective().unit(),
            powers_w: None,
            cloud_nodes: ids(graph, &plan.cloud_nodes()),
            edge_nodes: ids(graph, &plan.edge_nodes()),
            transfers: plan
                .transfers()
                .iter()
                .map(|t| TransferReport {
                    tensor: graph.id(t.tensor).to_string(),
                    bytes: t.bytes,
                    direction: t.direction.to_string(),
                    encoding: graph.encoding_name(t.tensor, t.encoding).to_string(),
                    raw_bytes: t.raw_bytes,
                })
                .collect(),
            predicted_ms: BreakdownMs::from(b),
            baselines: Baselines {
                edge_only_ms: edge_only.breakdown().total_ms,
                cloud_only_ms: cloud_only.breakdown().total_ms,
                edge_only_mj: energy.then(|| edge_only.value()),
                cloud_only_mj: energy.then(|| cloud_only.value()),
            },
            link: LinkReport {
                uplink_mbps: s.link().uplink_mbps(),
                downlink_mbps: s.link().downlink_mbps(),
                rtt_ms: s.link().rtt_ms(),
            },
            load_factor: s.load_factor(),
            wait_ms: s.wait_ms(),
        }
    }
}

/// Up to `max` ids, then how many more there are.
fn short_list(graph: &Graph, nodes: &[usize], max: usize) -> String {
    let mut shown = ids(graph, &nodes[..nodes.len().min(max)]).join(", ");
    if nodes.len() > max {
        shown.push_str(&format!(", … (+{} more)", nodes.len() - max));
    }
    shown
}

fn nodes(n: usize) -> String {
    if n == 1 {
        "1 node".into()
    } else {
        format!("{n} nodes")
    }
}

fn text_report(
    graph: &Graph,
    s: &Scenario,
    plan: &Plan,
    edge_only: &Plan,
    cloud_only: &Plan,
) -> String {
    let link = s.link();
    let shape = if graph.is_chain() { "a chain" } else { "a DAG" };
    let name = if graph.name().is_empty() {
        "graph"
    } else {
        graph.name()
    };
    let mut out = format!("{name}: {}, {shape}\n", nodes(graph.len()));
    out.push_str(&format!(
        "link: up {} Mbit/s, down {} Mbit/s, RTT {} ms; cloud load ×{}, wait {} ms; minimise {}\n\n",
        link.uplink_mbps(),
        link.downlink_mbps(),
        link.rtt_ms(),
        s.load_factor(),
        s.wait_ms(),
        s.objective().name()
    ));
    let cloud = plan.cloud_nodes();
    if cloud.is_empty() {
        out.push_str("cut: everything runs on the edge\n");
    } else {
        out.push_str(&format!(
            "cut: {} on the edge, {} on the cloud ({})\n",
            nodes(graph.len() - cloud.len()),
            nodes(cloud.len()),
            short_list(graph, &cloud, 6)
        ));
        for t in plan.transfers() {
            let arrow = if t.direction == Direction::Up {
                "up"
            } else {
                "down"
            };
            // As `run` prints it, with the raw size too when the tensor goes encoded.
            let mut size = human_bytes(t.bytes);
            if t.encoding.is_some() {
                size.push_str(&format!(", {} raw", human_bytes(t.raw_bytes)));
            }
            out.push_str(&format!(
                "  sends {arrow}: {} as {} ({size})\n",
                graph.id(t.tensor),
                graph.encoding_name(t.tensor, t.encoding)
            ));
        }
    }
    out.push('\n');
    // The objective's own column, when it is not the total.
    let value_column = match s.objective() {
        Objective::Energy { .. } => Some("energy mJ"),
        Objective::Stream => Some("ms/frame"),
        Objective::Latency => None,
    };
    let mut header = vec![
        "plan (ms)",
        "edge",
        "upload",
        "cloud",
        "download",
        "rtt",
        "total",
    ];
    header.extend(value_column);
    let mut table = Table::new(&header);
    for (label, p) in [
        (format!("chosen ({})", plan.method()), plan),
        ("edge-only".to_string(), edge_only),
        ("cloud-only".to_string(), cloud_only),
    ] {
        let b = p.breakdown();
        let mut row = vec![label];
        row.extend(
            [
                b.edge_ms,
                b.upload_ms,
                b.cloud_ms,
                b.download_ms,
                b.rtt_ms,
                b.total_ms,
            ]
            .iter()
            .map(|x| format!("{x:.2}")),
        );
        if value_column.is_some() {
            row.push(format!("{:.2}", p.value()));
        }
        table.row(row);
    }
    out.push_str(&table.render());
    let best_baseline = edge_only.value().min(cloud_only.value());
    if plan.value() > 0.0 {
        out.push_str(&format!(
            "\n{:.2}× better than the better of edge-only and cloud-only\n",
            best_baseline / plan.value()
        ));
    }
    out
}
