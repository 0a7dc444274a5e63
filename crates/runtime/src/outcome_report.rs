//! One request's [`Outcome`] for people and for JSON: the link as measured and as planned, the
//! cut, the predicted against the measured breakdown and the edge's energy
//! ([`OutcomeReport`]), and an ImageNet output's most likely classes ([`top5`]).

use models::{HostTensor, IMAGENET_CLASS_COUNT, imagenet_class, top_k};
use serde::Serialize;
use transport::LinkEstimate;

use crate::cut_report::{BreakdownMs, CutReport, human_bytes};
use crate::edge::{EdgeSession, INPUT_FILE_ID, Outcome};
use crate::table::Table;

/// What one request did: serialises to the fields of `cutpoint-edge run --json` from `link` to
/// `output_shape`, and [`OutcomeReport::render`] writes the same as text.
#[derive(Debug, Clone, Serialize)]
pub struct OutcomeReport {
    /// The link as the transport measured it and as the plan assumed it.
    pub link: LinkReport,
    /// The cloud's expected wait the plan paid, ms.
    pub wait_ms: f64,
    /// The cut, with every tensor that crosses.
    pub cut: CutReport,
    /// The plan's predicted breakdown.
    pub predicted_ms: BreakdownMs,
    /// The plan's predicted edge energy, mJ, under the energy objective (the caller sets it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted_mj: Option<f64>,
    /// The measured breakdown.
    pub measured_ms: MeasuredMs,
    /// The edge's energy as the CPU's own counters measured it.
    pub measured_energy: EnergyReport,
    /// Why the request finished on the edge, when it had to.
    pub fallback: Option<String>,
    /// The output tensor's shape.
    pub output_shape: Vec<usize>,
    /// For the text: the split mode, the loss allowed and the network's node count (without
    /// the image file's pseudo-node).
    #[serde(skip)]
    text: TextContext,
}

/// What the text says that the JSON states elsewhere.
#[derive(Debug, Clone)]
struct TextContext {
    split: String,
    max_loss: String,
    net_nodes: usize,
}

/// The link as the transport measured it and as the plan assumed it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkReport {
    /// The transport's estimate.
    pub measured: MeasuredLink,
    /// The link the plan was made for.
    pub planned: PlannedLink,
}

/// The transport's estimate; `None` for what is not measured yet.
#[derive(Debug, Clone, Serialize)]
pub struct MeasuredLink {
    /// Mbit/s.
    pub uplink_mbps: Option<f64>,
    /// Mbit/s.
    pub downlink_mbps: Option<f64>,
    /// ms.
    pub rtt_ms: Option<f64>,
}

/// The link the plan was made for.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedLink {
    /// Mbit/s.
    pub uplink_mbps: f64,
    /// Mbit/s.
    pub downlink_mbps: f64,
    /// ms.
    pub rtt_ms: f64,
    /// Whether the session's uplink override replaced the measured uplink.
    pub uplink_override: bool,
}

/// The measured breakdown, ms.
#[derive(Debug, Clone, Serialize)]
pub struct MeasuredMs {
    /// Edge compute.
    pub edge: f64,
    /// Uploads.
    pub upload: f64,
    /// Waiting in the cloud's queue.
    pub queue: f64,
    /// Cloud compute.
    pub cloud: f64,
    /// Loading the model on the cloud (its first request there), apart from compute.
    pub load: f64,
    /// The result's download.
    pub download: f64,
    /// Round trips and everything else.
    pub other: f64,
    /// End to end.
    pub total: f64,
}

/// The edge's energy as the CPU's own counters measured it.
#[derive(Debug, Clone, Serialize)]
pub struct EnergyReport {
    /// The CPU packages' energy over the edge's compute, mJ; `None` without counters.
    pub edge_mj: Option<f64>,
    /// What the figure covers (package-wide), or why there is none.
    pub note: String,
}

impl OutcomeReport {
    /// The report of `outcome`, a request `session` ran (its link estimate, uplink override,
    /// split, loss and energy counters). `predicted_mj` is left `None`.
    pub fn new(session: &EdgeSession, outcome: &Outcome) -> OutcomeReport {
        let estimate = session.client().map(|c| c.link());
        let config = session.config();
        let graph = &outcome.graph;
        let measured = &outcome.measured;
        OutcomeReport {
            link: LinkReport {
                measured: measured_link(estimate.as_ref()),
                planned: PlannedLink {
                    uplink_mbps: outcome.link.uplink_mbps(),
                    downlink_mbps: outcome.link.downlink_mbps(),
                    rtt_ms: outcome.link.rtt_ms(),
                    uplink_override: config.uplink_mbps.is_some(),
                },
            },
            wait_ms: outcome.wait_ms,
            cut: outcome.cut_report(),
            predicted_ms: BreakdownMs::from(&outcome.predicted),
            predicted_mj: None,
            measured_ms: MeasuredMs {
                edge: measured.edge_ms,
                upload: measured.upload_ms,
                queue: measured.queue_ms,
                cloud: measured.cloud_ms,
                load: measured.load_ms,
                download: measured.download_ms,
                other: measured.other_ms(),
                total: measured.total_ms,
            },
            measured_energy: EnergyReport {
                edge_mj: measured.edge_energy_mj,
                note: match session.energy_counters() {
                    Ok(counters) => format!("the edge's compute only, {}", counters.describe()),
                    Err(reason) => reason.to_string(),
                },
            },
            fallback: outcome.fallback.clone(),
            output_shape: outcome.output.shape().to_vec(),
            text: TextContext {
                split: config.split.to_string(),
                max_loss: config.max_loss.to_string(),
                net_nodes: graph.len() - usize::from(graph.index_of(INPUT_FILE_ID).is_some()),
            },
        }
    }

    /// The report as text: the link, then `objective` (a line saying what the plan
    /// minimised), the cut and its crossing tensors, the predicted against the measured
    /// breakdown, the energy, the cloud's load time and any fallback.
    pub fn render(&self, objective: &str) -> String {
        let measured = &self.link.measured;
        let mut out = format!(
            "link (measured): up {}, down {}, RTT {}\n",
            figure(measured.uplink_mbps, "Mbit/s"),
            figure(measured.downlink_mbps, "Mbit/s"),
            figure(measured.rtt_ms, "ms"),
        );
        let planned = &self.link.planned;
        let uplink_note = if planned.uplink_override {
            " (--uplink-mbps: planning only, the link is not shaped)"
        } else {
            ""
        };
        out += &format!(
            "planned for: up {}{uplink_note}, down {}, RTT {}; cloud wait {:.2} ms\n",
            figure(Some(planned.uplink_mbps), "Mbit/s"),
            figure(Some(planned.downlink_mbps), "Mbit/s"),
            figure(Some(planned.rtt_ms), "ms"),
            self.wait_ms
        );
        out += &format!("{objective}\n");
        let TextContext {
            split,
            max_loss,
            net_nodes,
        } = &self.text;
        let cloud = self.cut.cloud_nodes.len();
        out += &match self.cut.kind {
            "edge-only" => format!(
                "cut ({split}, {}): everything runs on the edge\n",
                self.cut.solver
            ),
            kind => format!(
                "cut ({split}, {}, max loss {max_loss}): {kind}, {} node(s) on the edge, {cloud} on the cloud\n",
                self.cut.solver,
                net_nodes - cloud
            ),
        };
        for t in &self.cut.crossing {
            out += &format!(
                "  sends {}: {} as {} ({}, {} raw)\n",
                t.direction,
                t.tensor,
                t.encoding,
                human_bytes(t.bytes),
                human_bytes(t.raw_bytes)
            );
        }
        if let Some(&n) = self.output_shape.first().filter(|&&n| n > 1) {
            out += &format!("(predictions are for one sample; the input holds {n})\n");
        }
        out.push('\n');
        out += &self.times_table();
        if let Some(mj) = self.predicted_mj {
            out += &format!("predicted edge energy: {mj:.1} mJ\n");
        }
        let energy = &self.measured_energy;
        out += &match energy.edge_mj {
            Some(mj) => format!("measured edge energy: {mj:.1} mJ ({})\n", energy.note),
            None => format!("measured edge energy: {}\n", energy.note),
        };
        if self.measured_ms.load > 0.0 {
            out += &format!(
                "the cloud loaded the model for this first request in {:.1} ms (apart from compute)\n",
                self.measured_ms.load
            );
        }
        if let Some(reason) = &self.fallback {
            out += &format!("\nfallback: ran locally because {reason}\n");
        }
        out
    }

    /// The predicted and the measured breakdown, one row each.
    fn times_table(&self) -> String {
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
        let p = &self.predicted_ms;
        let m = &self.measured_ms;
        for (label, row) in [
            (
                "predicted",
                [
                    p.edge, p.upload, p.wait, p.cloud, p.download, p.rtt, p.total,
                ],
            ),
            (
                "measured",
                [
                    m.edge, m.upload, m.queue, m.cloud, m.download, m.other, m.total,
                ],
            ),
        ] {
            let mut cells = vec![label.to_string()];
            cells.extend(row.iter().map(|x| format!("{x:.2}")));
            table.row(cells);
        }
        table.render()
    }
}

/// The transport's measured link (`None` for what is not measured yet).
fn measured_link(link: Option<&LinkEstimate>) -> MeasuredLink {
    MeasuredLink {
        uplink_mbps: link.and_then(|l| l.uplink).map(|d| d.mbps),
        downlink_mbps: link.and_then(|l| l.downlink).map(|d| d.mbps),
        rtt_ms: link.and_then(|l| l.rtt_ms),
    }
}

/// A measured figure, or `not measured`.
fn figure(value: Option<f64>, unit: &str) -> String {
    value.map_or_else(|| "not measured".to_string(), |v| format!("{v:.2} {unit}"))
}

/// One of a sample's most likely ImageNet classes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassScore {
    /// The class index.
    pub class: usize,
    /// The class name.
    pub name: &'static str,
    /// Its softmax probability.
    pub probability: f32,
}

/// The five most likely ImageNet classes of each sample, when the output is `[N, 1000]`.
pub fn top5(output: &HostTensor) -> Option<Vec<Vec<ClassScore>>> {
    let [n, classes] = *output.shape() else {
        return None;
    };
    if classes != IMAGENET_CLASS_COUNT {
        return None;
    }
    let samples = (0..n)
        .map(|i| {
            let logits = &output.data()[i * classes..(i + 1) * classes];
            top_k(logits, 5)
                .into_iter()
                .map(|(class, probability)| ClassScore {
                    class,
                    name: imagenet_class(class).unwrap_or("?"),
                    probability,
                })
                .collect()
        })
        .collect();
    Some(samples)
}

/// [`top5`]'s classes as text: a ranked list per sample.
pub fn render_top5(samples: &[Vec<ClassScore>]) -> String {
    let mut out = String::new();
    for (i, ranked) in samples.iter().enumerate() {
        out += &format!("top-5 (sample {i}):\n");
        for (rank, entry) in ranked.iter().enumerate() {
            out += &format!(
                "  {}. {:>6.2}%  {} ({})\n",
                rank + 1,
                entry.probability * 100.0,
                entry.name,
                entry.class,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EdgeConfig, LoadedModel, SplitMode, WeightsSource, async_runtime};

    #[test]
    fn an_edge_only_request_reports_its_cut_times_and_unmeasured_link() {
        let net = models::zoo::build("lenet").expect("lenet");
        let input = crate::pattern_input(&net).expect("input");
        let model = LoadedModel::load(net, &WeightsSource::default(), models::Backend::Flex)
            .expect("model");
        let config = EdgeConfig {
            split: SplitMode::EdgeOnly,
            uplink_mbps: Some(5.0),
            ..EdgeConfig::default()
        };
        let mut costs = crate::Costs::new();
        costs.measure_here();
        let (mut session, _) = costs.session(model, config).expect("session");
        let outcome = async_runtime()
            .expect("runtime")
            .block_on(session.infer(input))
            .expect("a local run");
        let report = OutcomeReport::new(&session, &outcome);
        assert_eq!(report.cut.kind, "edge-only");
        assert!(report.link.measured.uplink_mbps.is_none());
        assert!(report.link.planned.uplink_override);
        assert_eq!(report.link.planned.uplink_mbps, 5.0);
        assert_eq!(report.output_shape, outcome.output.shape());
        assert_eq!(report.measured_ms.total, outcome.measured.total_ms);

        let text = report.render("objective: latency (ms)");
        assert!(text.contains("link (measured): up not measured"), "{text}");
        assert!(text.contains("up 5.00 Mbit/s (--uplink-mbps"), "{text}");
        assert!(text.contains("\nobjective: latency (ms)\n"), "{text}");
        assert!(text.contains("cut (edge, "), "{text}");
        assert!(text.contains("everything runs on the edge"), "{text}");
        assert!(text.contains("\nmeasured "), "{text}");
        let json = serde_json::to_value(&report).expect("JSON");
        assert!(json.get("text").is_none(), "{json}");
        assert!(json.get("predicted_mj").is_none(), "{json}");
        assert_eq!(json["cut"]["kind"], "edge-only");
    }

    #[test]
    fn top5_needs_a_thousand_logits() {
        let small = HostTensor::new(vec![1, 10], vec![0.0; 10]).expect("tensor");
        assert!(top5(&small).is_none());
        let mut logits = vec![0.0; 1000];
        logits[7] = 5.0;
        let out = HostTensor::new(vec![1, 1000], logits).expect("tensor");
        let ranked = top5(&out).expect("top-5");
        assert_eq!(ranked[0][0].class, 7);
        assert!(render_top5(&ranked).contains("1. "));
    }
}
