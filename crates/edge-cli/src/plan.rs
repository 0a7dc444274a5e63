//! `cutpoint-edge plan`: solve the cut for a graph JSON file and a link.

use std::io::Read;
use std::path::PathBuf;

use crate::model_args::build_net;
use crate::objective_args::{ObjectiveArgs, flag_error};
use crate::run::parse_loss;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use partition_core::{Graph, Link, Scenario, Solver};
use predictor::DeviceProfile;
use runtime::{PlanComparison, profiled_graph, read_image_file};
use transport::Loss;

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
    let comparison = PlanComparison::new(graph, scenario, plan);
    if args.json {
        let report = comparison.report(objective.powers_w);
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", comparison.render());
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
    let image = match &args.image {
        Some(path) => Some(read_image_file(path, &net).context("--image")?),
        None => None,
    };
    Ok(profiled_graph(
        net,
        &edge,
        &cloud,
        args.max_loss,
        image.as_deref(),
    )?)
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
