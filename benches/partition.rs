//! Partitioning strategies compared on every zoo model: Neurosurgeon (one cut of the topological
//! order where at most one tensor crosses), DADS (min-cut), edge-only and cloud-only, by
//! predicted latency and solve time, across five uplinks. `cargo bench --bench partition`.
//!
//! Costs come from this machine's quick profile (swept and cached on first use, as the demo
//! does), with the edge taken ten times slower than the cloud, as in the demo.

use std::time::Instant;

use models::{Backend, zoo};
use partition_core::{Graph, Link, Plan, Scenario, Solver};
use predictor::DeviceProfile;
use runtime::cli::Table;
use runtime::{default_cache_dir, quick_profile};

/// The uplinks compared, Mbit/s (downlink 4× faster, RTT 20 ms).
const UPLINKS_MBPS: [f64; 5] = [0.13, 1.1, 5.85, 18.88, 100.0];
/// How many times slower the edge is than the profiled machine.
const EDGE_SLOWDOWN: f64 = 10.0;

/// Median solve time of `solve` in µs, and its plan.
fn timed(solve: impl Fn() -> Plan) -> (Plan, f64) {
    let mut times: Vec<f64> = (0..51)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(solve());
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (solve(), times[times.len() / 2])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let nets = zoo::MODELS
        .iter()
        .map(|name| zoo::build(name))
        .collect::<Result<Vec<_>, _>>()?;
    let profiles = quick_profile(&default_cache_dir()?, Backend::Flex, &nets, None, true)?;
    println!(
        "Predicted latency (ms) and solve time (µs); quick profile {} with the edge {EDGE_SLOWDOWN}x slower; downlink 4x the uplink, RTT 20 ms\n",
        profiles.path.display()
    );
    let mut table = Table::new(&[
        "model",
        "uplink",
        "neurosurgeon",
        "dads",
        "edge-only",
        "cloud-only",
        "dads gain",
        "ns µs",
        "dads µs",
    ]);
    for net in &nets {
        let graph: Graph = DeviceProfile::predict_graph(net, &profiles.edge, &profiles.cloud)?
            .with_edge_scaled(EDGE_SLOWDOWN)?;
        for uplink in UPLINKS_MBPS {
            let scenario = Scenario::latency(Link::new(uplink, 4.0 * uplink, 20.0)?);
            let solve = |solver: Solver| solver.solve(&graph, &scenario).expect("solves");
            let (ns, ns_us) = timed(|| solve(Solver::Prefix));
            let (dads, dads_us) = timed(|| solve(Solver::MinCut));
            let ms = |p: &Plan| format!("{:.1}", p.breakdown().total_ms);
            table.row(vec![
                net.name().to_string(),
                format!("{uplink}"),
                ms(&ns),
                ms(&dads),
                ms(&Plan::edge_only(&graph, &scenario)),
                ms(&Plan::cloud_only(&graph, &scenario)),
                format!(
                    "{:.2}x",
                    ns.breakdown().total_ms / dads.breakdown().total_ms
                ),
                format!("{ns_us:.1}"),
                format!("{dads_us:.1}"),
            ]);
        }
    }
    print!("{}", table.render());
    Ok(())
}
