//! `cutpoint-edge sweep`: every cut of a model across uplinks and edge CPU shares, measured, with
//! the planner's choice, the measured best, regret and speed-ups.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use models::Backend;
use runtime::cli::{Table, parse_backend};
use runtime::{GridCell, GridConfig, GridRow, default_cache_dir, grid_csv, run_grid};
use serde_json::{Value, json};

use crate::model_args::{ModelArgs, check_backend};
use crate::tasks::percentile;

/// Measure every cut of a model across uplinks and edge CPU shares.
///
/// For each cell (uplink × edge CPU) it measures the end-to-end, local, transfer and cloud time
/// (median of --repeats) of every candidate cut: every split point of a chain; for a DAG, the
/// min-cut plans across the uplinks plus edge-only and cloud-only. It marks the cut the planner
/// chooses and the cut that measured best, and reports regret (chosen ÷ best) and speed-ups over
/// edge-only and cloud-only. The cloud runs in this process on loopback. Emulation: the uplink
/// is paced by the transport's token-bucket shaper, round-trip time is added by a UDP relay, and
/// an edge CPU share F is emulated by waiting (1/F − 1) × each edge part's compute time. Real
/// shaping (network namespaces, tc, a cgroup CPU quota) is not built yet. Writes grid.csv and
/// grid.json to --out.
#[derive(Args)]
#[command(after_help = "Examples:
  cutpoint-edge sweep --model alexnet
  cutpoint-edge sweep --model resnet18 --uplink-mbps 1.1,5.85 --edge-cpu 0.3,0.6 --repeats 5
  cutpoint-edge sweep --model lenet --out sweep-lenet --json")]
pub struct SweepArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Uplinks to emulate, Mbit/s.
    #[arg(
        long,
        value_name = "F,F,...",
        value_delimiter = ',',
        default_value = "0.13,1.1,5.85,18.88,100"
    )]
    uplink_mbps: Vec<f64>,
    /// Edge CPU shares relative to this machine, in (0, 1].
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
    /// Measured requests per cut and cell (the median is kept).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    repeats: u64,
    /// Directory for grid.csv and grid.json [default: sweep-MODEL].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Backend of both sides: flex (default), ndarray, or wgpu (each needs its cargo feature).
    #[arg(long, value_name = "NAME", default_value = "flex", value_parser = parse_backend)]
    backend: Backend,
    /// Cap the samples per layer class when the quick profile is built on first use (a faster,
    /// rougher profile) [default: the full quick sweep].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(8..))]
    profile_samples: Option<u64>,
    /// Print the JSON report instead of tables.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub fn run(args: &SweepArgs) -> Result<()> {
    check_backend(args.backend)?;
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
        backend: args.backend,
        cache_dir: default_cache_dir()?,
        sweep_samples: args.profile_samples.map(|n| n as usize),
        progress: !args.json,
    };
    if !args.json {
        println!(
            "sweep of {}: {} uplinks x {} edge CPU shares, RTT {} ms, median of {}; emulated (built-in shaper, RTT relay, edge slowed by waiting)",
            config.net.name(),
            config.uplinks_mbps.len(),
            config.edge_cpus.len(),
            config.rtt_ms,
            config.repeats
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let quiet = args.json;
    let (rows, cells) = runtime.block_on(run_grid(&config, |rows, cell| {
        if !quiet {
            print_cell(rows, cell);
        }
    }))?;
    let report = json_report(&config, &rows, &cells);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let write = |name: &str, text: String| {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("grid.csv", grid_csv(&rows))?;
    write("grid.json", format!("{report:#}\n"))?;
    if args.json {
        println!("{report:#}");
    } else {
        print_summary(&report);
        println!(
            "Every figure is in {}/grid.csv and grid.json.",
            out.display()
        );
    }
    Ok(())
}

/// One cell in the seeds' lab layout, with the chosen (`<`) and best (`*`) cuts marked.
fn print_cell(rows: &[GridRow], cell: &GridCell) {
    println!(
        "\ncpu {} x uplink {} Mbit/s: chosen {}, best {}, regret {:.3}",
        cell.edge_cpu, cell.uplink_mbps, cell.chosen, cell.best, cell.regret
    );
    let mut table = Table::new(&[
        "split",
        "e2e ms",
        "local",
        "transfer",
        "cloud",
        "predicted",
        "mark",
    ]);
    for r in rows {
        let mark = match (r.chosen, r.best) {
            (true, true) => "chosen, best",
            (true, false) => "chosen",
            (false, true) => "best",
            (false, false) => "",
        };
        table.row(vec![
            r.cut.clone(),
            format!("{:.1}", r.e2e_ms),
            format!("{:.1}", r.local_ms),
            format!("{:.1}", r.transfer_ms),
            format!("{:.1}", r.cloud_ms),
            format!("{:.1}", r.predicted_ms),
            mark.to_string(),
        ]);
    }
    for line in table.render().lines() {
        println!("  {line}");
    }
}

/// `values` without NaNs, sorted.
fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.filter(|v| !v.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Every row and cell, and the summary: median and p95 regret, and speed-ups.
fn json_report(config: &GridConfig, rows: &[GridRow], cells: &[GridCell]) -> Value {
    let regrets = sorted(cells.iter().map(|c| c.regret));
    let better_baseline = sorted(
        cells
            .iter()
            .map(|c| c.speedup_over_edge.min(c.speedup_over_cloud)),
    );
    json!({
        "model": config.net.name(),
        "rtt_ms": config.rtt_ms,
        "repeats": config.repeats,
        "emulation": "built-in shaper for the uplink, UDP relay for the RTT, edge CPU share emulated by waiting",
        "summary": {
            "cells": cells.len(),
            "regret_median": percentile(&regrets, 50.0),
            "regret_p95": percentile(&regrets, 95.0),
            "speedup_over_better_baseline_median": percentile(&better_baseline, 50.0),
        },
        "cells": cells.iter().map(|c| json!({
            "edge_cpu": c.edge_cpu,
            "uplink_mbps": c.uplink_mbps,
            "chosen": c.chosen,
            "best": c.best,
            "regret": c.regret,
            "speedup_over_edge": c.speedup_over_edge,
            "speedup_over_cloud": c.speedup_over_cloud,
        })).collect::<Vec<_>>(),
        "rows": rows.iter().map(|r| json!({
            "edge_cpu": r.edge_cpu,
            "uplink_mbps": r.uplink_mbps,
            "cut": r.cut,
            "e2e_ms": r.e2e_ms,
            "local_ms": r.local_ms,
            "transfer_ms": r.transfer_ms,
            "cloud_ms": r.cloud_ms,
            "predicted_ms": r.predicted_ms,
            "chosen": r.chosen,
            "best": r.best,
        })).collect::<Vec<_>>(),
    })
}

fn print_summary(report: &Value) {
    let s = &report["summary"];
    let f = |key: &str| s[key].as_f64().unwrap_or(f64::NAN);
    println!(
        "\nregret over {} cells: median {:.3}, p95 {:.3}; median speed-up over the better baseline {:.2}x",
        s["cells"],
        f("regret_median"),
        f("regret_p95"),
        f("speedup_over_better_baseline_median")
    );
}
