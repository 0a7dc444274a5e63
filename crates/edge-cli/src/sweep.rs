//! `cutpoint-edge sweep`: every cut of a model across uplinks and edge CPU shares, measured, with
//! the planner's choice, the measured best, regret and speed-ups.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use cli_common::BackendArg;
use lab::testbed::Testbed;
use lab::{GridConfig, render_cell, run_sweep};
use runtime::default_cache_dir;
use transport::Loss;

use crate::model_args::ModelArgs;
use crate::run::parse_loss;

/// Measure every cut of a model across uplinks and edge CPU shares.
///
/// For each cell (uplink × edge CPU) it measures the end-to-end, local, transfer and cloud time
/// (median of --repeats) of every candidate cut: every split point of a chain; for a DAG, the
/// min-cut plans across the uplinks plus edge-only and cloud-only. Each cut is measured with the
/// encodings --max-loss allows (the planner's pick for that cut) and as raw f32. An ImageNet
/// model's input is a photograph as a JPEG, so cloud-only is measured sending the file, and
/// sending the preprocessed tensor (as raw f32: Neurosurgeon's baseline). It marks the plan the
/// planner chooses and the one that measured best, and reports regret (chosen ÷ best), the
/// speed-up over the best baseline, and how often a split or a compressed boundary beats every
/// baseline. Writes grid.csv, grid.json and a plot, grid.png (a panel per cell: the time
/// components of every plan, the chosen and the best marked), to --out.
///
/// Real shaping (as root): the cloud and the edge run as separate processes in two network
/// namespaces joined by a veth pair; the uplink is a `tc` tbf rate on the edge's end, the edge
/// runs under a cgroup-v1 CPU quota of --edge-cpu CPUs (0.3 = 3 ms of CPU per 10 ms period, as a
/// Kubernetes limit), and a UDP relay in front of the cloud adds --rtt-ms. Before each cell the
/// edge times a local forward pass under its quota and scales its profile's costs to match.
/// (Both modes calibrate so: layers timed one by one run faster than inside a whole pass.)
///
/// Emulated (without root, or --shaping emulated): the cloud runs in this process on loopback,
/// the uplink is paced by the transport's token-bucket shaper, the relay adds the RTT, and an
/// edge CPU share F of this machine is emulated by waiting (1/F − 1) × each edge part's compute
/// time.
#[derive(Args)]
#[command(after_help = "Examples:
  cutpoint-edge sweep --model alexnet
  cutpoint-edge sweep --model resnet18 --uplink-mbps 1.1,5.85 --edge-cpu 0.3,0.6 --repeats 5
  cutpoint-edge sweep --model lenet --out sweep-lenet --json
  sudo cutpoint-edge sweep --model vgg16 --shaping real --uplink-mbps 1.1,5.85 --edge-cpu 0.3,0.6")]
pub struct SweepArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Uplinks, Mbit/s: tc rates with real shaping, the built-in shaper's when emulated.
    #[arg(
        long,
        value_name = "F,F,...",
        value_delimiter = ',',
        default_value = "0.13,1.1,5.85,18.88,100"
    )]
    uplink_mbps: Vec<f64>,
    /// Edge CPU, in (0, 1]: CPUs of quota with real shaping, the share of this machine's speed
    /// when emulated.
    #[arg(
        long,
        value_name = "F,F,...",
        value_delimiter = ',',
        default_value = "0.3,0.6,1.0"
    )]
    edge_cpu: Vec<f64>,
    /// Round-trip time added between edge and cloud by a userspace UDP relay, ms (0: none).
    #[arg(long, value_name = "MS", default_value_t = 20.0)]
    rtt_ms: f64,
    /// The loss allowed on the tensors that cross: exact (raw f32, lossless compression, the
    /// image file), f16, or int8 (see `fidelity`).
    #[arg(long, value_name = "exact|f16|int8", default_value = "exact", value_parser = parse_loss)]
    max_loss: Loss,
    /// Measured requests per cut and cell (the median is kept).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    repeats: u64,
    /// Directory for grid.csv and grid.json [default: sweep-MODEL].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    #[command(flatten)]
    backend: BackendArg,
    /// Cap the samples per layer class when the quick profile is built on first use (a faster,
    /// rougher profile) [default: the full quick sweep].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(8..))]
    profile_samples: Option<u64>,
    /// How the link and the edge CPU are shaped: real (namespaces, tc, CPU quota; needs root),
    /// emulated (in this process), or auto: real when it can be set up here, else emulated.
    #[arg(long, value_enum, default_value_t = Shaping::Auto)]
    shaping: Shaping,
    /// Print the JSON report instead of tables.
    #[arg(long)]
    json: bool,
}

/// How a sweep shapes the link and the edge CPU.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Shaping {
    /// Real when it can be set up here, else emulated.
    Auto,
    /// Namespaces, tc and a CPU quota; an error when they cannot be set up.
    Real,
    /// The built-in shaper, the relay and waiting, in this process.
    Emulated,
}

/// Runs the command.
pub fn run(args: &SweepArgs) -> Result<()> {
    let net = args.model.build()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("sweep-{}", net.name())));
    let config = GridConfig {
        net,
        uplinks_mbps: args.uplink_mbps.clone(),
        edge_cpus: args.edge_cpu.clone(),
        rtt_ms: args.rtt_ms,
        repeats: args.repeats as usize,
        backend: args.backend.backend,
        cache_dir: default_cache_dir()?,
        sweep_samples: args.profile_samples.map(|n| n as usize),
        progress: !args.json,
        max_loss: args.max_loss,
    };
    let testbed = match args.shaping {
        Shaping::Emulated => None,
        Shaping::Real => Some(Testbed::create()?),
        Shaping::Auto => Testbed::create()
            .inspect_err(|e| eprintln!("note: {e}; running emulated"))
            .ok(),
    };
    if !args.json {
        println!(
            "sweep of {}: {} uplinks x {} edge CPUs, RTT {} ms, median of {}; {}",
            config.net.name(),
            config.uplinks_mbps.len(),
            config.edge_cpus.len(),
            config.rtt_ms,
            config.repeats,
            lab::shaping(testbed.as_ref())
        );
    }
    let report = run_sweep(&config, testbed.as_ref(), |rows, cell| {
        if !args.json {
            print!("{}", render_cell(rows, cell));
        }
    })?;
    report.write(&out)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.summary.render());
        println!(
            "Every figure is in {}/grid.csv and grid.json; the plot is grid.png.",
            out.display()
        );
    }
    Ok(())
}
