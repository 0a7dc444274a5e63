//! Partitioning strategies compared on every zoo model: Neurosurgeon (one cut of the topological
//! order where at most one tensor crosses) and DADS (min-cut) on raw f32 tensors, cutpoint's plan
//! (min-cut over the cut and each crossing tensor's encoding, lossless within the exact budget,
//! with the input as a JPEG), and the three baselines: edge-only, cloud-only sending the JPEG,
//! and cloud-only sending raw f32. By predicted latency and solve time, across five uplinks.
//! Last, cutpoint's plan for a pipelined stream of frames (the stream objective): its time per
//! frame and how long the search takes to plan it. `cargo bench --bench partition`.
//!
//! Costs come from this machine's quick profile (swept and cached on first use, as the demo
//! does), with the edge taken ten times slower than the cloud, as in the demo; codec costs and
//! compressed sizes are measured on the demo's photograph.

use std::time::Instant;

use models::{Backend, SAMPLE_JPEG, zoo};
use partition_core::{Link, Objective, Plan, Scenario, Solver};
use runtime::Table;
use runtime::{
    DEFAULT_SEED, EdgeConfig, EdgeSession, LoadedModel, WeightsSource, default_cache_dir,
    quick_profile,
};

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
        "cutpoint",
        "edge-only",
        "cloud file",
        "cloud raw",
        "gain",
        "ns µs",
        "dads µs",
        "cutpoint µs",
        "stream ms/frame",
        "stream µs",
    ]);
    let runtime = runtime::async_runtime()?;
    for net in &nets {
        let model = LoadedModel::load(
            net.clone(),
            &WeightsSource::Seeded(DEFAULT_SEED),
            Backend::Flex,
        )?;
        let config = EdgeConfig {
            edge_slowdown: EDGE_SLOWDOWN,
            ..EdgeConfig::default()
        };
        let mut session =
            EdgeSession::with_profiles(model, &profiles.edge, &profiles.cloud, config)?;
        // Raw f32 tensors, as Neurosurgeon and DADS price them, and what cutpoint plans on;
        // both with the JPEG's decoding priced on the edge when the model takes an image.
        let image = (net.input_shape() == [3, 224, 224]).then_some(SAMPLE_JPEG);
        session.set_raw_wire(true)?;
        let raw = runtime.block_on(session.request_graph(image))?;
        session.set_raw_wire(false)?;
        let encoded = runtime.block_on(session.request_graph(image))?;
        for uplink in UPLINKS_MBPS {
            let scenario = Scenario::latency(Link::new(uplink, 4.0 * uplink, 20.0)?);
            let (ns, ns_us) = timed(|| Solver::Prefix.solve(&raw, &scenario).expect("solves"));
            let (dads, dads_us) = timed(|| Solver::MinCut.solve(&raw, &scenario).expect("solves"));
            let (ours, ours_us) =
                timed(|| Solver::Auto.solve(&encoded, &scenario).expect("solves"));
            let stream = Scenario::new(*scenario.link(), Objective::Stream, 1.0)?;
            let (pipelined, stream_us) =
                timed(|| Solver::Auto.solve(&encoded, &stream).expect("solves"));
            let ms = |p: &Plan| format!("{:.1}", p.breakdown().total_ms);
            let cloud_file = Plan::cloud_only(&encoded, &scenario);
            let cloud_raw = Plan::cloud_only(&raw, &scenario);
            let edge = Plan::edge_only(&raw, &scenario);
            let best_baseline = [&edge, &cloud_file, &cloud_raw]
                .iter()
                .map(|p| p.breakdown().total_ms)
                .fold(f64::INFINITY, f64::min);
            table.row(vec![
                net.name().to_string(),
                format!("{uplink}"),
                ms(&ns),
                ms(&dads),
                ms(&ours),
                ms(&edge),
                if image.is_some() {
                    ms(&cloud_file)
                } else {
                    "-".into()
                },
                ms(&cloud_raw),
                format!("{:.2}x", best_baseline / ours.breakdown().total_ms),
                format!("{ns_us:.1}"),
                format!("{dads_us:.1}"),
                format!("{ours_us:.1}"),
                format!("{:.1}", pipelined.breakdown().bottleneck_ms()),
                format!("{stream_us:.1}"),
            ]);
        }
    }
    print!("{}", table.render());
    println!(
        "\ngain: the best baseline (edge-only, cloud-only with the file, cloud-only raw) over cutpoint's plan"
    );
    Ok(())
}
