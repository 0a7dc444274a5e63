//! Split × bandwidth × edge-CPU grids on one machine: for every cell, measure every candidate cut
//! of a network, mark the planner's choice and the measured best, and report regret and
//! speed-ups. This is the built-in-emulation mode of `cutpoint-edge sweep`: the uplink is paced by
//! the transport's shaper, a slower edge CPU is emulated with [`crate::EdgeConfig::edge_slowdown`], and
//! round-trip time is added by the transport's userspace UDP relay.

use std::net::SocketAddr;
use std::path::PathBuf;

use models::{Backend, Net};
use partition_core::{Link, Objective, Scenario, Solver};
use serde::{Deserialize, Serialize};
use transport::Loss;

use runtime::{EdgeSession, LocalCloud, QuickProfiles, SplitMode, Table};

use crate::error::LabError;
use crate::rig::{self, LabInput, lab_input};

/// What a grid measures.
#[derive(Debug, Clone)]
pub struct GridConfig {
    /// The network.
    pub net: Net,
    /// Emulated uplinks, Mbit/s.
    pub uplinks_mbps: Vec<f64>,
    /// Edge CPU shares relative to this machine, in (0, 1]: 0.3 emulates an edge 1/0.3 times
    /// slower.
    pub edge_cpus: Vec<f64>,
    /// Round-trip time added by a userspace UDP relay between the edge and the cloud, ms
    /// (0: none, loopback's own).
    pub rtt_ms: f64,
    /// Measured requests per cut and cell; the median (by end-to-end time) is kept.
    pub repeats: usize,
    /// Backend of both sides.
    pub backend: Backend,
    /// Where the quick profile is cached.
    pub cache_dir: PathBuf,
    /// Cap on the profile sweep's samples per class (`None`: the full quick sweep).
    pub sweep_samples: Option<usize>,
    /// Progress on stderr while the profile is built.
    pub progress: bool,
    /// The loss the planner may use at the boundary; every cut is measured with the codecs it
    /// allows (the planner's pick for that cut) and as raw f32.
    pub max_loss: Loss,
}

/// One cut measured in one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridRow {
    /// Edge CPU share.
    pub edge_cpu: f64,
    /// Uplink, Mbit/s.
    pub uplink_mbps: f64,
    /// The plan: `edge-only`, `cloud-only` or `after ID[+ID…]`, followed by how the crossing
    /// tensors travel when not as raw f32: `cloud-only (file)` sends the image file, `after ID
    /// (lossless)` compresses that tensor.
    pub cut: String,
    /// Predicted end-to-end time, ms, for the nominal uplink.
    pub predicted_ms: f64,
    /// Measured end-to-end time, ms (median request).
    pub e2e_ms: f64,
    /// Measured edge compute, ms.
    pub local_ms: f64,
    /// Measured link time, ms: the end-to-end time less the edge's compute and the cloud's
    /// queue and compute, so uploads, downloads and round trips (0 when the cut keeps
    /// everything on the edge). The receiver's own span of an upload starts at its first byte,
    /// which misses a shaper that holds the first byte back; the remainder does not.
    pub transfer_ms: f64,
    /// Measured cloud queue plus compute, ms.
    pub cloud_ms: f64,
    /// The planner chose this cut for this cell.
    pub chosen: bool,
    /// The fastest cut measured in this cell.
    pub best: bool,
}

/// A cell's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridCell {
    /// Edge CPU share.
    pub edge_cpu: f64,
    /// Uplink, Mbit/s.
    pub uplink_mbps: f64,
    /// The planner's cut.
    pub chosen: String,
    /// The cut that measured fastest.
    pub best: String,
    /// Measured end-to-end of the chosen cut ÷ that of the best (≥ 1).
    pub regret: f64,
    /// Edge-only's measured time ÷ the chosen cut's (`None` when edge-only was not measured).
    pub speedup_over_edge: Option<f64>,
    /// Cloud-only's measured time, sending the input as raw f32, ÷ the chosen cut's (`None`
    /// when it was not measured).
    pub speedup_over_cloud: Option<f64>,
    /// Cloud-only's measured time, sending the image file, ÷ the chosen cut's (`None` when
    /// the input is not an image).
    pub speedup_over_cloud_file: Option<f64>,
    /// The edge's calibration: its measured forward pass ÷ its profile's prediction, by which
    /// the planner's edge costs were scaled before the cell was measured.
    pub edge_scale: f64,
}

pub(crate) fn check(config: &GridConfig) -> Result<(), LabError> {
    let invalid = |name, reason: String| Err(LabError::Config { name, reason });
    if config.uplinks_mbps.is_empty() || config.edge_cpus.is_empty() {
        return invalid(
            "grid",
            "give at least one uplink and one edge CPU share".into(),
        );
    }
    if let Some(cpu) = config
        .edge_cpus
        .iter()
        .find(|c| !(c.is_finite() && **c > 0.0 && **c <= 1.0))
    {
        return invalid(
            "edge_cpus",
            format!("{cpu} is not a CPU share in (0, 1] (1 is this machine)"),
        );
    }
    if config.repeats == 0 {
        return invalid("repeats", "must be at least 1".into());
    }
    if !(config.rtt_ms.is_finite() && (0.0..=10_000.0).contains(&config.rtt_ms)) {
        return invalid(
            "rtt_ms",
            format!(
                "{} is not a round-trip time in [0, 10000] ms",
                config.rtt_ms
            ),
        );
    }
    Ok(())
}

/// The candidate cuts: every split point of a chain; for a DAG, edge-only, cloud-only, and for
/// every uplink of the grid the min-cut plan of the raw graph (every tensor as f32, as
/// Neurosurgeon and DADS price it) and of the graph a request is planned on (with the
/// encodings the loss allows and, for an image, the file). As cloud node id lists, without
/// repeats; a plan that sends the image file is cloud-only, which the grid measures anyway.
pub(crate) async fn candidates(
    session: &mut EdgeSession,
    input: &LabInput,
    uplinks_mbps: &[f64],
    rtt_ms: f64,
) -> Result<Vec<SplitMode>, LabError> {
    let image = match input {
        LabInput::Image(file) => Some(*file),
        LabInput::Tensor(_) => None,
    };
    let encoded = session.request_graph(image).await?;
    let graph = session.graph();
    let n = graph.len();
    let mut placements: Vec<Vec<bool>> = Vec::new();
    if graph.is_chain() {
        placements.extend((0..n).map(|k| (0..n).map(|v| v > k).collect()));
    } else {
        placements.push(vec![false; n]);
        placements.push((0..n).map(|v| v != graph.source()).collect());
        for &uplink in uplinks_mbps {
            let scenario = Scenario::latency(Link::new(uplink, uplink, rtt_ms)?);
            let plan = Solver::MinCut.solve(graph, &scenario)?;
            placements.push(plan.placement().to_vec());
            let plan = Solver::MinCut.solve(&encoded, &scenario)?;
            let on_cloud = |v: usize| {
                encoded
                    .index_of(graph.id(v))
                    .is_some_and(|e| plan.placement()[e])
            };
            if !on_cloud(graph.source()) {
                placements.push((0..n).map(on_cloud).collect());
            }
        }
    }
    let mut seen = Vec::new();
    let mut modes = Vec::new();
    for p in placements {
        if seen.contains(&p) {
            continue;
        }
        let ids: Vec<String> = (0..n)
            .filter(|&v| p[v])
            .map(|v| graph.id(v).to_string())
            .collect();
        modes.push(if ids.is_empty() {
            SplitMode::EdgeOnly
        } else {
            SplitMode::Fixed(ids)
        });
        seen.push(p);
    }
    Ok(modes)
}

/// Runs the grid: builds (or loads) the quick profile, starts an in-process cloud, and measures
/// every candidate cut in every cell. `on_cell` receives each cell's rows and verdict as soon as
/// they are measured. Must be called inside a multi-threaded Tokio runtime.
pub async fn run_grid(
    config: &GridConfig,
    mut on_cell: impl FnMut(&[GridRow], &GridCell),
) -> Result<(Vec<GridRow>, Vec<GridCell>), LabError> {
    check(config)?;
    let (profiles, cloud) = rig::start(
        std::slice::from_ref(&config.net),
        config.backend,
        &config.cache_dir,
        config.sweep_samples,
        config.progress,
    )
    .await?;
    let (relay, server) = rig::behind_relay(&cloud, config.rtt_ms).await?;
    let mut out = (Vec::new(), Vec::new());
    let result = measure(config, &profiles, &cloud, server, &mut out, &mut on_cell).await;
    drop(relay);
    cloud.stop().await;
    result.map(|()| out)
}

async fn measure(
    config: &GridConfig,
    profiles: &QuickProfiles,
    cloud: &LocalCloud,
    server: SocketAddr,
    (rows, cells): &mut (Vec<GridRow>, Vec<GridCell>),
    on_cell: &mut impl FnMut(&[GridRow], &GridCell),
) -> Result<(), LabError> {
    let net = &config.net;
    cloud.server().preload(net.name()).await?;
    let input = lab_input(net)?;
    for &edge_cpu in &config.edge_cpus {
        let mut session = rig::slow_edge_session(
            net,
            config.backend,
            profiles,
            1.0 / edge_cpu,
            Objective::Latency,
        )?;
        session.set_max_loss(config.max_loss)?;
        let edge_scale = rig::calibrate_edge(&mut session, &input, config.repeats).await?;
        let modes = candidates(&mut session, &input, &config.uplinks_mbps, config.rtt_ms).await?;
        for &uplink_mbps in &config.uplinks_mbps {
            session
                .connect(rig::shaped_client(cloud, server, uplink_mbps)?)
                .await?;
            let cell = CellSpec {
                edge_cpu,
                uplink_mbps,
                rtt_ms: config.rtt_ms,
                repeats: config.repeats,
                edge_scale,
            };
            let (cell_rows, verdict) = measure_cell(&mut session, &modes, &input, &cell).await?;
            on_cell(&cell_rows, &verdict);
            rows.extend(cell_rows);
            cells.push(verdict);
        }
        session.disconnect();
    }
    Ok(())
}

/// Where one cell sits in the grid, and how it is measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CellSpec {
    /// Edge CPU (the label of the cell).
    pub edge_cpu: f64,
    /// Uplink, Mbit/s: the label of the cell and the nominal link its predictions use.
    pub uplink_mbps: f64,
    /// Round-trip time of the nominal link, ms.
    pub rtt_ms: f64,
    /// Measured requests per cut.
    pub repeats: usize,
    /// The edge's calibration ([`GridCell::edge_scale`]).
    pub edge_scale: f64,
}

/// Measures one cell with a connected `session`: the planner's pick (after one request has
/// measured the link), then every cut of `modes`, and the verdict.
pub(crate) async fn measure_cell(
    session: &mut EdgeSession,
    modes: &[SplitMode],
    input: &LabInput,
    cell: &CellSpec,
) -> Result<(Vec<GridRow>, GridCell), LabError> {
    session.set_split(SplitMode::Auto)?;
    input.infer(session).await?;
    let chosen = input.infer(session).await?;
    let chosen_cut = chosen.cut_label();
    let nominal = Scenario::latency(Link::new(cell.uplink_mbps, cell.uplink_mbps, cell.rtt_ms)?);
    let mut rows = Vec::new();
    let mut modes = modes.to_vec();
    if matches!(input, LabInput::Image(_)) {
        modes.push(SplitMode::CloudOnly);
    }
    // Each cut with the codecs the loss allows (the planner's pick for that cut), then as raw
    // f32; a plan already measured under another mode is not measured again.
    let wires = modes.iter().flat_map(|m| [(m, false), (m, true)]);
    for (mode, raw_wire) in wires {
        session.set_raw_wire(raw_wire)?;
        let measured = rig::median_request(session, mode.clone(), input, cell.repeats).await;
        session.set_raw_wire(false)?;
        let Some((o, fallback)) = measured? else {
            continue;
        };
        let cut = o.cut_label();
        if rows.iter().any(|r: &GridRow| r.cut == cut) {
            continue;
        }
        // A request that fell back ran locally: its time is not this cut's.
        if let Some(reason) = fallback {
            return Err(LabError::CutFellBack {
                cut,
                uplink_mbps: cell.uplink_mbps,
                reason,
            });
        }
        let m = o.measured;
        rows.push(GridRow {
            edge_cpu: cell.edge_cpu,
            uplink_mbps: cell.uplink_mbps,
            predicted_ms: o.plan.reprice(&o.graph, &nominal)?.breakdown().total_ms,
            e2e_ms: m.total_ms,
            local_ms: m.edge_ms,
            transfer_ms: if o.cloud_nodes.is_empty() {
                0.0
            } else {
                (m.total_ms - m.edge_ms - m.queue_ms - m.cloud_ms).max(0.0)
            },
            cloud_ms: m.queue_ms + m.cloud_ms,
            chosen: cut == chosen_cut,
            best: false,
            cut,
        });
    }
    let verdict = verdict(&mut rows, cell, chosen_cut, chosen.measured.total_ms);
    Ok((rows, verdict))
}

/// Marks the best row and sums the cell up. The chosen cut's time is its candidate row's when it
/// has one (the same cut measured like the others), else the planner's own request.
fn verdict(
    rows: &mut [GridRow],
    cell: &CellSpec,
    chosen: String,
    chosen_request_ms: f64,
) -> GridCell {
    let best = rows
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.e2e_ms.total_cmp(&b.1.e2e_ms))
        .map(|(i, _)| i);
    if let Some(i) = best {
        rows[i].best = true;
    }
    let time_of = |cut: &str| rows.iter().find(|r| r.cut == cut).map(|r| r.e2e_ms);
    let chosen_ms = time_of(&chosen).unwrap_or(chosen_request_ms);
    let best_row = best.map(|i| &rows[i]);
    let best_ms = best_row.map_or(chosen_ms, |r| r.e2e_ms).min(chosen_ms);
    GridCell {
        edge_cpu: cell.edge_cpu,
        uplink_mbps: cell.uplink_mbps,
        best: best_row.map_or_else(|| chosen.clone(), |r| r.cut.clone()),
        regret: chosen_ms / best_ms,
        speedup_over_edge: time_of("edge-only").map(|t| t / chosen_ms),
        speedup_over_cloud: time_of("cloud-only").map(|t| t / chosen_ms),
        speedup_over_cloud_file: time_of("cloud-only (file)").map(|t| t / chosen_ms),
        edge_scale: cell.edge_scale,
        chosen,
    }
}

/// The rows as CSV in the seeds' lab layout (cpu, bandwidth, split, e2e, local, transfer,
/// cloud), plus the prediction and the chosen and best marks.
pub fn grid_csv(rows: &[GridRow]) -> String {
    let mut out = String::from(
        "edge_cpu,uplink_mbps,cut,e2e_ms,local_ms,transfer_ms,cloud_ms,predicted_ms,chosen,best\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{},{}\n",
            r.edge_cpu,
            r.uplink_mbps,
            r.cut,
            r.e2e_ms,
            r.local_ms,
            r.transfer_ms,
            r.cloud_ms,
            r.predicted_ms,
            r.chosen,
            r.best
        ));
    }
    out
}

/// One cell as text, as `cutpoint-edge sweep` prints it: every cut's times, with the chosen and
/// the best cut marked, and the edge's calibration.
pub fn render_cell(rows: &[GridRow], cell: &GridCell) -> String {
    let mut out = format!(
        "\ncpu {} x uplink {} Mbit/s: chosen {}, best {}, regret {:.3}\n",
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
        out += &format!("  {line}\n");
    }
    out += &format!(
        "  (a forward pass on this edge took {:.2}x its profile's prediction; the planner's edge costs were scaled by that)\n",
        cell.edge_scale
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use models::zoo;
    use runtime::{EdgeConfig, LoadedModel, WeightsSource};

    #[test]
    fn a_cell_marks_the_chosen_and_the_best_cut() {
        let row = |cut: &str, e2e_ms: f64, chosen: bool, best: bool| GridRow {
            edge_cpu: 0.5,
            uplink_mbps: 5.0,
            cut: cut.into(),
            predicted_ms: 1.0,
            e2e_ms,
            local_ms: 0.0,
            transfer_ms: 0.0,
            cloud_ms: 0.0,
            chosen,
            best,
        };
        let cell = GridCell {
            edge_cpu: 0.5,
            uplink_mbps: 5.0,
            chosen: "edge-only".into(),
            best: "cloud-only".into(),
            regret: 1.25,
            speedup_over_edge: None,
            speedup_over_cloud: None,
            speedup_over_cloud_file: None,
            edge_scale: 2.0,
        };
        let rows = [
            row("edge-only", 5.0, true, false),
            row("cloud-only", 4.0, false, true),
        ];
        let text = render_cell(&rows, &cell);
        assert!(
            text.starts_with(
                "\ncpu 0.5 x uplink 5 Mbit/s: chosen edge-only, best cloud-only, regret 1.250\n"
            ),
            "{text}"
        );
        let marks: Vec<&str> = text.lines().filter(|l| l.contains("-only ")).collect();
        assert!(marks[0].trim_end().ends_with("chosen"), "{text}");
        assert!(marks[1].trim_end().ends_with("best"), "{text}");
        assert!(
            text.contains("took 2.00x its profile's prediction"),
            "{text}"
        );
    }
    use transport::Loss;

    /// A DAG's candidates hold, for every uplink, the min-cut plan of the graph a request is
    /// planned on (here with int8 boundaries), not only that of the raw graph, and no plan twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dag_candidates_include_the_encoded_min_cut_plans() {
        let net = zoo::build_with_input("resnet18", vec![3, 32, 32]).expect("resnet18");
        // The stem (input, conv, batch norm, ReLU, max pool) is free on the edge and dear on the
        // cloud, the rest 20 times faster on the cloud: the plan is edge-only, or the stem on the
        // edge and its output sent, raw or (when that is cheaper) as int8.
        let stem = 5;
        let edge_ms: Vec<f64> = (net.nodes().iter().enumerate())
            .map(|(v, n)| {
                if v < stem {
                    0.0
                } else {
                    n.spec().flops as f64 / 1e4
                }
            })
            .collect();
        let cloud_ms: Vec<f64> = (edge_ms.iter().enumerate())
            .map(|(v, ms)| if v < stem { 1e4 } else { ms / 20.0 })
            .collect();
        let graph = net.graph(&edge_ms, &cloud_ms).expect("graph");
        let model = LoadedModel::load(net.clone(), &WeightsSource::Seeded(0), Backend::Flex)
            .expect("model");
        let mut session = EdgeSession::new(model, graph, EdgeConfig::default()).expect("session");
        session.set_max_loss(Loss::Int8).expect("int8");
        let input = LabInput::Tensor(models::seeded_input(&net, 1, 0).expect("input"));
        let uplinks = [0.005, 0.015];
        let modes = candidates(&mut session, &input, &uplinks, 20.0)
            .await
            .expect("candidates");

        let encoded = session.request_graph(None).await.expect("graph");
        // At 0.015 Mbit/s the raw stem output is too slow to send and the int8 one is not.
        let slow = Scenario::latency(Link::new(0.015, 0.015, 20.0).expect("link"));
        let raw_plan = Solver::MinCut.solve(session.graph(), &slow).expect("plan");
        let int8_plan = Solver::MinCut.solve(&encoded, &slow).expect("plan");
        assert_ne!(raw_plan.placement(), int8_plan.placement());
        assert!(
            (0..encoded.len()).any(|v| !encoded.encodings(v).is_empty()),
            "int8 gives the planner encodings"
        );
        for uplink in uplinks {
            let scenario = Scenario::latency(Link::new(uplink, uplink, 20.0).expect("link"));
            let plan = Solver::MinCut.solve(&encoded, &scenario).expect("plan");
            let ids: Vec<String> = plan
                .cloud_nodes()
                .iter()
                .map(|&v| encoded.id(v).to_string())
                .collect();
            let mode = if ids.is_empty() {
                SplitMode::EdgeOnly
            } else {
                SplitMode::Fixed(ids)
            };
            assert!(
                modes.contains(&mode),
                "{uplink} Mbit/s: {mode:?} not in {modes:?}"
            );
        }
        for (i, mode) in modes.iter().enumerate() {
            assert!(!modes[i + 1..].contains(mode), "{mode:?} twice");
        }
    }
}
