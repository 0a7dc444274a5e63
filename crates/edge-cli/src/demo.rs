//! `cutpoint-edge demo`: collaborative inference on this machine, with nothing to set up.

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use runtime::cli::Table;
use runtime::{DemoConfig, DemoRow, Strategy, default_cache_dir, demo_csv, run_demo};

/// Run AlexNet and ResNet-18 split between an emulated edge and a cloud on this machine.
///
/// A cloud server starts in this process on loopback (QUIC, TLS, token). The edge is this
/// machine, emulated ten times slower; its uplink is paced at 1.1, 5.85 and 18.88 Mbit/s by the
/// transport's token-bucket shaper (no root, no tc). The planner uses a quick profile of this
/// machine, built on the first run (about a minute) and cached. Per model and uplink it prints
/// the chosen cut with its predicted and measured time beside edge-only and cloud-only, and
/// writes every figure to a CSV.
#[derive(Args)]
#[command(after_help = "Example:
  cargo run --release -p edge-cli -- demo

The real thing runs on two machines: `cutpoint-cloud serve` on the server and
`cutpoint-edge run --connect HOST:4433 ...` on the device.")]
pub struct DemoArgs {}

/// Runs the command.
pub fn run(_args: &DemoArgs) -> Result<()> {
    let started = Instant::now();
    let cache_dir = default_cache_dir()?;
    let config = DemoConfig::standard(cache_dir.clone())?;
    println!("cutpoint demo: collaborative inference on this machine");
    println!(
        "  cloud:   a server in this process on loopback (QUIC), {} backend",
        config.backend.name()
    );
    println!(
        "  edge:    this machine, emulated {}x slower",
        config.edge_slowdown
    );
    println!(
        "  uplinks: emulated by the transport's token-bucket shaper; downlink and RTT are loopback's"
    );
    println!(
        "  planner: a quick latency profile of this machine (the cloud assumed as fast as it)"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let rows = runtime.block_on(run_demo(&config, print_case))?;
    let csv_path = cache_dir.join("demo").join("demo.csv");
    if let Some(dir) = csv_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&csv_path, demo_csv(&rows))
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    println!(
        "\nEvery figure is in {} ({} rows). Done in {:.0} s.",
        csv_path.display(),
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Prints one case: the three strategies' rows and the chosen cut's speed-ups.
fn print_case(rows: &[DemoRow]) {
    let Some(first) = rows.first() else {
        return;
    };
    println!(
        "\n{} over a {} Mbit/s uplink (emulated)",
        first.model, first.uplink_mbps
    );
    let mut table = Table::new(&[
        "plan",
        "cut",
        "upload KB",
        "predicted ms",
        "measured ms",
        "edge",
        "upload",
        "cloud",
        "download",
    ]);
    for r in rows {
        table.row(vec![
            r.strategy.name().to_string(),
            r.cut.clone(),
            format!("{:.1}", r.upload_bytes as f64 / 1e3),
            format!("{:.0}", r.predicted.total_ms),
            format!("{:.0}", r.measured.total_ms),
            format!("{:.0}", r.measured.edge_ms),
            format!("{:.0}", r.measured.upload_ms),
            format!("{:.0}", r.measured.cloud_ms + r.measured.queue_ms),
            format!("{:.0}", r.measured.download_ms),
        ]);
    }
    for line in table.render().lines() {
        println!("  {line}");
    }
    let total = |s: Strategy| {
        rows.iter()
            .find(|r| r.strategy == s)
            .map(|r| r.measured.total_ms)
    };
    if let (Some(chosen), Some(edge), Some(cloud)) = (
        total(Strategy::Chosen),
        total(Strategy::EdgeOnly),
        total(Strategy::CloudOnly),
    ) {
        println!(
            "  measured speed-up of the chosen cut: {:.2}x over edge-only, {:.2}x over cloud-only",
            edge / chosen,
            cloud / chosen
        );
    }
    for r in rows {
        if let Some(reason) = &r.fallback {
            println!(
                "  note: a {} request ran locally: {reason}",
                r.strategy.name()
            );
        }
    }
}
