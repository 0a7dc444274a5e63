//! A plan beside its baselines, for people and for JSON: what `cutpoint-edge plan` prints; and
//! the graph it plans a model on from two device profiles ([`profiled_graph`]).

use models::{Backend, Net};
use partition_core::{Graph, Objective, Plan, Scenario};
use predictor::DeviceProfile;
use serde::Serialize;
use transport::Loss;

use crate::cut_report::{BreakdownMs, human_bytes};
use crate::edge::{EdgeConfig, EdgeSession};
use crate::error::RuntimeError;
use crate::loaded::{LoadedModel, WeightsSource};
use crate::objective::PowersReport;
use crate::table::Table;
use crate::tokio_rt::async_runtime;

/// The cost graph a request of `net` would be planned on, priced by the `edge` and `cloud`
/// profiles. With neither `max_loss` nor `image`, every tensor is priced as raw f32 (the
/// profiles' [`DeviceProfile::predict_graph`]); otherwise the encodings `max_loss` allows are
/// measured by running the model (seeded weights, on flex) on `image` (a JPEG or PNG file, also
/// a candidate to send as it is) or on a seeded input ([`EdgeSession::request_graph`]).
/// Blocks; call it outside an async runtime.
pub fn profiled_graph(
    net: Net,
    edge: &DeviceProfile,
    cloud: &DeviceProfile,
    max_loss: Option<Loss>,
    image: Option<&[u8]>,
) -> Result<Graph, RuntimeError> {
    if max_loss.is_none() && image.is_none() {
        return Ok(DeviceProfile::predict_graph(&net, edge, cloud)?);
    }
    let model = LoadedModel::load(net, &WeightsSource::default(), Backend::Flex)?;
    let config = EdgeConfig {
        max_loss: max_loss.unwrap_or_default(),
        ..EdgeConfig::default()
    };
    let mut session = EdgeSession::with_profiles(model, edge, cloud, config)?;
    async_runtime()?.block_on(session.request_graph(image))
}

/// A solved plan with edge-only and cloud-only for the same graph and scenario.
#[derive(Debug, Clone)]
pub struct PlanComparison {
    graph: Graph,
    scenario: Scenario,
    plan: Plan,
    edge_only: Plan,
    cloud_only: Plan,
}

/// A plan's report: its cut, predicted breakdown, baselines and scenario. Serialises to
/// `cutpoint-edge plan --json`.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    /// The graph's name.
    pub graph: String,
    /// How the plan was made.
    pub solver: String,
    /// `latency`, `energy` or `stream`.
    pub objective: &'static str,
    /// The plan's objective value.
    pub objective_value: f64,
    /// Its unit (`ms` or `mJ`).
    pub objective_unit: &'static str,
    /// The energy objective's powers and where they come from; absent for latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub powers_w: Option<PowersReport>,
    /// Ids of the nodes on the cloud.
    pub cloud_nodes: Vec<String>,
    /// Ids of the nodes on the edge.
    pub edge_nodes: Vec<String>,
    /// The tensors that cross.
    pub transfers: Vec<TransferReport>,
    /// The plan's predicted breakdown.
    pub predicted_ms: BreakdownMs,
    /// Edge-only and cloud-only.
    pub baselines: Baselines,
    /// The link planned for.
    pub link: PlanLink,
    /// The cloud load factor.
    pub load_factor: f64,
    /// The cloud's expected wait, ms.
    pub wait_ms: f64,
}

/// A tensor that crosses, as the plan sends it.
#[derive(Debug, Clone, Serialize)]
pub struct TransferReport {
    /// The node whose output it is.
    pub tensor: String,
    /// Its size under its encoding.
    pub bytes: u64,
    /// `up` or `down`.
    pub direction: String,
    /// The encoding it travels under.
    pub encoding: String,
    /// Its size as raw f32.
    pub raw_bytes: u64,
}

/// Edge-only and cloud-only for the same scenario; energies with the energy objective.
#[derive(Debug, Clone, Serialize)]
pub struct Baselines {
    /// Edge-only's predicted latency, ms.
    pub edge_only_ms: f64,
    /// Cloud-only's predicted latency, ms.
    pub cloud_only_ms: f64,
    /// Edge-only's edge energy, mJ (energy objective).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge_only_mj: Option<f64>,
    /// Cloud-only's edge energy, mJ (energy objective).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_only_mj: Option<f64>,
}

/// The link planned for.
#[derive(Debug, Clone, Serialize)]
pub struct PlanLink {
    /// Mbit/s.
    pub uplink_mbps: f64,
    /// Mbit/s.
    pub downlink_mbps: f64,
    /// ms.
    pub rtt_ms: f64,
}

impl PlanComparison {
    /// `plan` (solved for `graph` and `scenario`) beside edge-only and cloud-only.
    pub fn new(graph: Graph, scenario: Scenario, plan: Plan) -> PlanComparison {
        let edge_only = Plan::edge_only(&graph, &scenario);
        let cloud_only = Plan::cloud_only(&graph, &scenario);
        PlanComparison {
            graph,
            scenario,
            plan,
            edge_only,
            cloud_only,
        }
    }

    fn energy(&self) -> bool {
        matches!(self.scenario.objective(), Objective::Energy { .. })
    }

    fn ids(&self, nodes: &[usize]) -> Vec<String> {
        nodes
            .iter()
            .map(|&v| self.graph.id(v).to_string())
            .collect()
    }

    /// The report, with `powers_w` the energy objective's powers as chosen
    /// ([`crate::ObjectiveReport::powers_w`]).
    pub fn report(&self, powers_w: Option<PowersReport>) -> PlanReport {
        let (graph, s, plan) = (&self.graph, &self.scenario, &self.plan);
        let energy = self.energy();
        PlanReport {
            graph: graph.name().to_string(),
            solver: plan.method().to_string(),
            objective: s.objective().name(),
            objective_value: plan.value(),
            objective_unit: s.objective().unit(),
            powers_w,
            cloud_nodes: self.ids(&plan.cloud_nodes()),
            edge_nodes: self.ids(&plan.edge_nodes()),
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
            predicted_ms: BreakdownMs::from(plan.breakdown()),
            baselines: Baselines {
                edge_only_ms: self.edge_only.breakdown().total_ms,
                cloud_only_ms: self.cloud_only.breakdown().total_ms,
                edge_only_mj: energy.then(|| self.edge_only.value()),
                cloud_only_mj: energy.then(|| self.cloud_only.value()),
            },
            link: PlanLink {
                uplink_mbps: s.link().uplink_mbps(),
                downlink_mbps: s.link().downlink_mbps(),
                rtt_ms: s.link().rtt_ms(),
            },
            load_factor: s.load_factor(),
            wait_ms: s.wait_ms(),
        }
    }

    /// Up to `max` ids, then how many more there are.
    fn short_list(&self, nodes: &[usize], max: usize) -> String {
        let mut shown = self.ids(&nodes[..nodes.len().min(max)]).join(", ");
        if nodes.len() > max {
            shown.push_str(&format!(", … (+{} more)", nodes.len() - max));
        }
        shown
    }

    /// The comparison as text: the graph and scenario, the cut and its crossing tensors, the
    /// three plans' breakdowns, and how much better the plan is than the better baseline.
    pub fn render(&self) -> String {
        let (graph, s, plan) = (&self.graph, &self.scenario, &self.plan);
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
                self.short_list(&cloud, 6)
            ));
            for t in plan.transfers() {
                // As `run` prints it, with the raw size too when the tensor goes encoded.
                let mut size = human_bytes(t.bytes);
                if t.encoding.is_some() {
                    size.push_str(&format!(", {} raw", human_bytes(t.raw_bytes)));
                }
                out.push_str(&format!(
                    "  sends {}: {} as {} ({size})\n",
                    t.direction,
                    graph.id(t.tensor),
                    graph.encoding_name(t.tensor, t.encoding)
                ));
            }
        }
        out.push('\n');
        // The objective's own column, when it is not the total.
        let value_column = match self.scenario.objective() {
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
            ("edge-only".to_string(), &self.edge_only),
            ("cloud-only".to_string(), &self.cloud_only),
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
        let best_baseline = self.edge_only.value().min(self.cloud_only.value());
        if plan.value() > 0.0 {
            out.push_str(&format!(
                "\n{:.2}× better than the better of edge-only and cloud-only\n",
                best_baseline / plan.value()
            ));
        }
        out
    }
}

/// `1 node`, `N nodes`.
fn nodes(n: usize) -> String {
    if n == 1 {
        "1 node".into()
    } else {
        format!("{n} nodes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use partition_core::{Link, Solver};

    #[test]
    fn a_split_plan_beside_its_baselines() {
        let graph = Graph::from_json(
            r#"{"name": "three", "nodes": [
                {"id": "input", "inputs": [], "edge_ms": 0, "cloud_ms": 0, "out_bytes": 1000000},
                {"id": "a", "inputs": ["input"], "edge_ms": 1, "cloud_ms": 1, "out_bytes": 10},
                {"id": "b", "inputs": ["a"], "edge_ms": 100, "cloud_ms": 1, "out_bytes": 10}
            ]}"#,
        )
        .expect("graph");
        let link = Link::new(1.0, 1.0, 0.0).expect("link");
        let scenario = Scenario::new(link, Objective::Latency, 1.0).expect("scenario");
        let plan = Solver::Auto.solve(&graph, &scenario).expect("plan");
        let comparison = PlanComparison::new(graph, scenario, plan);
        let report = comparison.report(None);
        assert_eq!(report.cloud_nodes, ["b"]);
        assert_eq!(report.edge_nodes, ["input", "a"]);
        assert_eq!(report.transfers.len(), 1);
        assert_eq!(report.transfers[0].tensor, "a");
        assert!(report.objective_value < report.baselines.edge_only_ms);
        assert!(report.objective_value < report.baselines.cloud_only_ms);
        let json = serde_json::to_value(&report).expect("JSON");
        assert!(json.get("powers_w").is_none(), "{json}");
        assert!(json["baselines"].get("edge_only_mj").is_none(), "{json}");

        let text = comparison.render();
        assert!(text.starts_with("three: 3 nodes, a chain\n"), "{text}");
        assert!(
            text.contains("cut: 2 nodes on the edge, 1 node on the cloud (b)"),
            "{text}"
        );
        assert!(text.contains("  sends up: a as raw (10 B)"), "{text}");
        assert!(
            text.contains("better than the better of edge-only and cloud-only"),
            "{text}"
        );
    }
}
