//! `cutpoint-edge demo`: collaborative inference on this machine, with nothing to set up.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use lab::{DemoConfig, render_case, run_demo};
use runtime::default_cache_dir;
use transport::Loss;

use crate::objective_args::ObjectiveArgs;
use crate::run::parse_loss;

/// Run AlexNet and ResNet-18 split between an emulated edge and a cloud on this machine.
///
/// A cloud server starts in this process on loopback (QUIC, TLS, token). The edge is this
/// machine, emulated ten times slower; its uplink is paced at 1.1, 5.85 and 18.88 Mbit/s by the
/// transport's token-bucket shaper (no root, no tc). The input is a photograph as a camera
/// application holds it, a 27.8 KB JPEG. The planner uses a quick profile of this machine,
/// built on the first run (about a minute) and cached. Per model and uplink it prints the
/// chosen plan (its cut, and how each crossing tensor is encoded) with its predicted and
/// measured time beside three baselines: edge-only, cloud-only sending the JPEG, and cloud-only
/// sending the preprocessed input as raw f32 (Neurosurgeon's baseline). Every figure goes to a
/// CSV.
#[derive(Args)]
#[command(after_help = "Examples:
  cargo run --release -p edge-cli -- demo
  cargo run --release -p edge-cli -- demo --max-loss int8
  cargo run --release -p edge-cli -- demo --objective energy --device-class raspberry-pi

The real thing runs on two machines: `cutpoint-cloud serve` on the server and
`cutpoint-edge run --connect HOST:4433 ...` on the device.")]
pub struct DemoArgs {
    /// The loss the chosen plan may accept on the tensors that cross: exact (raw f32,
    /// lossless compression or the image file), f16, or int8 (see `fidelity`).
    #[arg(long, value_name = "exact|f16|int8", default_value = "exact", value_parser = parse_loss)]
    max_loss: Loss,
    #[command(flatten)]
    objective: ObjectiveArgs,
}

/// Runs the command.
pub fn run(args: &DemoArgs) -> Result<()> {
    let started = Instant::now();
    let objective = args.objective.choice()?;
    let mut config = DemoConfig::standard(default_cache_dir()?)?;
    config.max_loss = args.max_loss;
    config.objective = objective.objective();
    print!("{}", config.describe(&objective.report().line()));
    let runtime = runtime::async_runtime()?;
    let rows = runtime.block_on(run_demo(&config, |rows| print!("{}", render_case(rows))))?;
    let csv_path = config.write_csv(&rows)?;
    println!(
        "\nEvery figure is in {} ({} rows). Done in {:.0} s.",
        csv_path.display(),
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
