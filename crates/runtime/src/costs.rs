//! [`Costs`]: where the planner's per-layer costs come from, for every network an application
//! runs — a cost graph per model, device profiles for the rest, or this machine's quick
//! profile.

use std::path::{Path, PathBuf};

use models::{Backend, Net};
use partition_core::Graph;
use predictor::DeviceProfile;

use crate::edge::{EdgeConfig, EdgeSession};
use crate::error::RuntimeError;
use crate::loaded::LoadedModel;
use crate::quick_profile::{default_cache_dir, quick_profile};

/// Where a program's user chose to take the planner's costs from (`cutpoint-edge run`'s cost
/// flags), for [`Costs::choose`].
#[derive(Debug, Default)]
pub struct CostChoice {
    /// This device's profile (from `train`). Without `cloud_profile` the cloud's costs are the
    /// ones the server publishes.
    pub edge_profile: Option<PathBuf>,
    /// The server's profile, with `edge_profile`.
    pub cloud_profile: Option<PathBuf>,
    /// Cost graphs, each with where it came from, used for the model its `name` names.
    pub graphs: Vec<(String, Graph)>,
    /// Price this device's layers by timing the model here ([`Costs::measure_here`]).
    pub measure_edge: bool,
    /// Ignore the costs servers publish ([`Costs::ignore_published`]).
    pub ignore_published: bool,
}

/// An edge and a cloud device profile, and where they came from.
#[derive(Debug)]
struct Profiles {
    edge: DeviceProfile,
    /// The cloud's profile; `None` when the edge's stands in for it.
    cloud: Option<DeviceProfile>,
    origin: String,
    /// Whether the cloud profile describes the real server (so its published costs are not
    /// wanted), or stands in for it until the server publishes its own.
    cloud_given: bool,
}

/// The planner's costs for a set of networks: cost graphs by model name (a graph's `name` is
/// the model it prices), and an edge and a cloud device profile for every model without one.
///
/// Each source carries an origin, a few words such as `graph file lenet.json`, that
/// [`Costs::session`] hands back so that reports can say where a plan's costs came from.
///
/// ```
/// # fn main() -> Result<(), runtime::RuntimeError> {
/// let net = models::zoo::build("lenet")?;
/// // The edge computes 10 MFLOP/s, the cloud 20 times as fast.
/// let edge_ms: Vec<f64> = net.nodes().iter().map(|n| n.spec().flops as f64 / 1e4).collect();
/// let cloud_ms: Vec<f64> = edge_ms.iter().map(|ms| ms / 20.0).collect();
/// let mut costs = runtime::Costs::new();
/// costs.add_graph("FLOP counts", net.graph(&edge_ms, &cloud_ms)?)?;
/// costs.check(std::slice::from_ref(&net))?;
/// assert_eq!(costs.origin("lenet"), Some("FLOP counts"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct Costs {
    /// (origin, graph), at most one graph per model.
    graphs: Vec<(String, Graph)>,
    profiles: Option<Profiles>,
    /// Whether models without a graph are priced by timing them here, in whole passes, when
    /// their session starts ([`Costs::measure_here`]); before the profiles.
    measure_here: bool,
    /// Whether sessions ignore the costs servers publish ([`Costs::ignore_published`]).
    ignore_published: bool,
}

/// Where [`Costs::measure_here`]'s costs come from, in reports.
const MEASURED_ORIGIN: &str = "measured on this device at start (3 whole passes at batch 1, each node's median share of the mean pass); the cloud's as the server publishes them, else assumed as fast as this device";

/// Unmeasured passes before a model's nodes are timed on this device.
const MEASURE_WARMUP: usize = 1;
/// Measured passes whose median gives each node's time on this device.
const MEASURE_RUNS: usize = 3;

impl Costs {
    /// No costs yet: add graphs, profiles, or both.
    pub fn new() -> Costs {
        Costs::default()
    }

    /// Costs from this machine's quick profile for both sides (the cloud is assumed as fast as
    /// this machine), covering `nets` on `backend`: loaded from `cache_dir`, or swept and
    /// trained there on first use (printing progress when `progress` is set), which takes a
    /// while.
    pub fn quick(
        cache_dir: &Path,
        backend: Backend,
        nets: &[Net],
        progress: bool,
    ) -> Result<Costs, RuntimeError> {
        let quick = quick_profile(cache_dir, backend, nets, None, progress)?;
        let mut costs = Costs::new();
        costs.profiles = Some(Profiles {
            edge: quick.edge,
            cloud: Some(quick.cloud),
            origin: format!(
                "this machine's quick profile {} ({}); the cloud's costs as the server publishes them, else assumed as fast as this machine",
                quick.path.display(),
                if quick.built { "built now" } else { "cached" }
            ),
            cloud_given: false,
        });
        Ok(costs)
    }

    /// The costs `choice` states for `nets`, checking that every one has costs. The profiles
    /// when given; else, with neither graphs nor `measure_edge`, the quick profile of this
    /// machine on `backend` for both sides (swept and trained in [`default_cache_dir`] on
    /// first use, then cached). Graphs price the models they name before anything else.
    pub fn choose(
        choice: CostChoice,
        nets: &[Net],
        backend: Backend,
    ) -> Result<Costs, RuntimeError> {
        let mut costs = match (&choice.edge_profile, &choice.cloud_profile) {
            (Some(edge), None) => {
                let mut costs = Costs::new();
                costs.set_edge_profile(
                    DeviceProfile::load(edge)?,
                    format!(
                        "device profile {} (edge); the cloud's as the server publishes them, else assumed as fast as this device",
                        edge.display()
                    ),
                );
                costs
            }
            (Some(edge), Some(cloud)) => {
                let mut costs = Costs::new();
                costs.set_profiles(
                    DeviceProfile::load(edge)?,
                    DeviceProfile::load(cloud)?,
                    format!(
                        "device profiles {} (edge) and {} (cloud)",
                        edge.display(),
                        cloud.display()
                    ),
                );
                costs
            }
            _ if !choice.graphs.is_empty() || choice.measure_edge => Costs::new(),
            _ => Costs::quick(&default_cache_dir()?, backend, nets, true)?,
        };
        costs.measure_here = choice.measure_edge;
        costs.ignore_published = choice.ignore_published;
        for (origin, graph) in choice.graphs {
            costs.add_graph(origin, graph)?;
        }
        costs.check(nets)?;
        Ok(costs)
    }

    /// Adds the cost graph of the model its `name` names, with edge and cloud times filled in
    /// (`Net::graph`, `DeviceProfile::predict_graph`, or `cutpoint-edge graph` output). It is
    /// an error when another graph is for the same model.
    pub fn add_graph(
        &mut self,
        origin: impl Into<String>,
        graph: Graph,
    ) -> Result<(), RuntimeError> {
        let origin = origin.into();
        if let Some((first, _)) = self.graph_for(graph.name()) {
            return Err(RuntimeError::DuplicateCosts {
                model: graph.name().to_string(),
                first: first.clone(),
                second: origin,
            });
        }
        self.graphs.push((origin, graph));
        Ok(())
    }

    /// Prices every model without a cost graph with these profiles: `edge` for this device,
    /// `cloud` for the server. Replaces any profiles set before. The cloud profile is taken as
    /// the server's: sessions do not swap in the costs a server publishes.
    pub fn set_profiles(
        &mut self,
        edge: DeviceProfile,
        cloud: DeviceProfile,
        origin: impl Into<String>,
    ) {
        self.profiles = Some(Profiles {
            edge,
            cloud: Some(cloud),
            origin: origin.into(),
            cloud_given: true,
        });
    }

    /// Prices every model without a cost graph with this device's profile, and the cloud with
    /// the costs the server publishes (until it does, or if it cannot, as fast as this device).
    /// Replaces any profiles set before.
    pub fn set_edge_profile(&mut self, edge: DeviceProfile, origin: impl Into<String>) {
        self.profiles = Some(Profiles {
            edge,
            cloud: None,
            origin: origin.into(),
            cloud_given: false,
        });
    }

    /// Prices every model without a cost graph by timing its nodes on this device when its
    /// session starts: a few whole passes at batch 1 (after one warm-up), each node timed
    /// between its neighbours as the pass runs it, as a server measures the costs it
    /// publishes, and its median share scaled to the mean pass. This is the device's speed as it runs now (under a CPU quota or a power
    /// cap, say) rather than a profile's prediction. The cloud's costs are the ones the server
    /// publishes, or until it does (or if it cannot) the same as this device's.
    pub fn measure_here(&mut self) {
        self.measure_here = true;
    }

    /// Makes sessions plan with the cloud costs given here (a graph, a cloud profile, or this
    /// device's own) and never swap in the ones a server publishes, as when comparing plans
    /// with and without them.
    pub fn ignore_published(&mut self) {
        self.ignore_published = true;
    }

    /// Whether device profiles price the models without a graph.
    pub fn has_profiles(&self) -> bool {
        self.profiles.is_some()
    }

    /// Checks that every network in `nets` has costs, so that a missing graph is reported
    /// before anything runs.
    pub fn check(&self, nets: &[Net]) -> Result<(), RuntimeError> {
        match nets.iter().find(|n| self.origin(n.name()).is_none()) {
            Some(net) => Err(self.no_costs(net.name())),
            None => Ok(()),
        }
    }

    /// Where `model`'s costs come from: its graph's origin, or the profiles'; `None` when
    /// nothing prices it.
    pub fn origin(&self, model: &str) -> Option<&str> {
        match (self.graph_for(model), &self.profiles) {
            (Some((origin, _)), _) => Some(origin),
            (None, _) if self.measure_here => Some(MEASURED_ORIGIN),
            (None, Some(p)) => Some(&p.origin),
            (None, None) => None,
        }
    }

    /// A session for `model` that plans with its costs (its graph when it has one, else the
    /// profiles), and where those costs came from. A cost graph or given profiles are
    /// authoritative for the cloud too; with the quick profile the session plans with the
    /// costs the server publishes ([`EdgeConfig::use_published_costs`]).
    pub fn session(
        &self,
        model: LoadedModel,
        mut config: EdgeConfig,
    ) -> Result<(EdgeSession, String), RuntimeError> {
        let net = model.model.net();
        if self.ignore_published {
            config.use_published_costs = false;
        }
        if self.graph_for(net.name()).is_none() && self.measure_here {
            let ms = measure_on_this_device(&model)?;
            let graph = net.graph(&ms, &ms)?;
            return Ok((
                EdgeSession::new(model, graph, config)?,
                MEASURED_ORIGIN.to_string(),
            ));
        }
        if let Some((origin, graph)) = self.graph_for(net.name()) {
            config.use_published_costs = false;
            return Ok((
                EdgeSession::new(model, graph.clone(), config)?,
                origin.clone(),
            ));
        }
        match &self.profiles {
            Some(p) => {
                config.use_published_costs &= !p.cloud_given;
                let session = match &p.cloud {
                    Some(cloud) => EdgeSession::with_profiles(model, &p.edge, cloud, config)?,
                    None => {
                        let graph = DeviceProfile::predict_graph_alike(net, &p.edge)?;
                        EdgeSession::new(model, graph, config)?
                    }
                };
                Ok((session, p.origin.clone()))
            }
            None => Err(self.no_costs(net.name())),
        }
    }

    /// The error for a model that nothing prices, naming the graphs there are.
    fn no_costs(&self, model: &str) -> RuntimeError {
        let named: Vec<String> = self
            .graphs
            .iter()
            .map(|(origin, g)| format!("{origin} is for `{}`", g.name()))
            .collect();
        RuntimeError::NoCosts {
            model: model.to_string(),
            graphs: if named.is_empty() {
                "no cost graph was given".to_string()
            } else {
                named.join(", ")
            },
        }
    }

    fn graph_for(&self, model: &str) -> Option<&(String, Graph)> {
        self.graphs.iter().find(|(_, g)| g.name() == model)
    }
}

/// Each node's time on this device, ms, in the network's order: its median share of
/// [`MEASURE_RUNS`] whole passes at batch 1 (after [`MEASURE_WARMUP`]), scaled so that the nodes
/// add up to the mean pass. The scaling matters when the device is throttled (a CPU quota): a
/// node shorter than the quota's slice usually runs unthrottled and its median misses the
/// stalls, which the mean over whole passes keeps.
fn measure_on_this_device(model: &LoadedModel) -> Result<Vec<f64>, RuntimeError> {
    let input = models::seeded_input(model.model.net(), 1, 0)?;
    model.model.time_in_pass(input.clone(), MEASURE_WARMUP, 1)?;
    let started = std::time::Instant::now();
    let timings = model.model.time_in_pass(input, 0, MEASURE_RUNS)?;
    let pass_ms = started.elapsed().as_secs_f64() * 1e3 / MEASURE_RUNS as f64;
    let ms: Vec<f64> = timings.iter().map(|t| t.median_ms).collect();
    let sum: f64 = ms.iter().sum();
    let scale = if sum > 0.0 { pass_ms / sum } else { 1.0 };
    Ok(ms.into_iter().map(|m| m * scale).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `net`'s graph with every layer costing 1 ms on the edge and 0.1 ms on the cloud.
    fn flat_graph(net: &Net) -> Graph {
        net.graph(&vec![1.0; net.len()], &vec![0.1; net.len()])
            .expect("graph")
    }

    #[test]
    fn a_choice_of_graphs_prices_their_models_and_names_what_is_missing() {
        let lenet = models::zoo::build("lenet").expect("lenet");
        let alexnet = models::zoo::build("alexnet").expect("alexnet");
        let choice = |graphs: Vec<(String, Graph)>| CostChoice {
            graphs,
            ignore_published: true,
            ..CostChoice::default()
        };
        let one = vec![("lenet.json".to_string(), flat_graph(&lenet))];
        let costs = Costs::choose(
            choice(one.clone()),
            std::slice::from_ref(&lenet),
            Backend::Flex,
        )
        .expect("lenet is priced");
        assert_eq!(costs.origin("lenet"), Some("lenet.json"));
        assert!(costs.ignore_published && !costs.measure_here);
        let err = Costs::choose(
            choice(one.clone()),
            &[lenet.clone(), alexnet],
            Backend::Flex,
        )
        .expect_err("alexnet has no costs");
        assert!(matches!(err, RuntimeError::NoCosts { .. }), "{err}");
        let twice = [one.clone(), one].concat();
        let err = Costs::choose(choice(twice), &[lenet], Backend::Flex).expect_err("twice");
        assert!(matches!(err, RuntimeError::DuplicateCosts { .. }), "{err}");
    }

    #[test]
    fn every_model_needs_costs_and_one_graph_at_most() {
        let lenet = models::zoo::build("lenet").expect("lenet");
        let alexnet = models::zoo::build("alexnet").expect("alexnet");
        let mut costs = Costs::new();
        let err = costs
            .check(std::slice::from_ref(&lenet))
            .expect_err("no costs");
        assert!(err.to_string().contains("no cost graph was given"), "{err}");
        costs
            .add_graph("graph file a.json", flat_graph(&lenet))
            .expect("first");
        let err = costs
            .add_graph("graph file b.json", flat_graph(&lenet))
            .expect_err("a second graph for lenet")
            .to_string();
        assert!(
            err.starts_with("graph file a.json and graph file b.json are both for model `lenet`"),
            "{err}"
        );
        assert_eq!(costs.origin("lenet"), Some("graph file a.json"));
        assert_eq!(costs.origin("alexnet"), None);
        assert!(!costs.has_profiles());
        costs
            .check(std::slice::from_ref(&lenet))
            .expect("lenet has a graph");
        let err = costs
            .check(&[lenet, alexnet])
            .expect_err("alexnet has none")
            .to_string();
        assert!(
            err.contains("model `alexnet` (graph file a.json is for `lenet`)"),
            "{err}"
        );
    }

    #[test]
    fn sessions_plan_with_the_model_s_graph() {
        let lenet = models::zoo::build("lenet").expect("lenet");
        let mut costs = Costs::new();
        costs
            .add_graph("flat costs", flat_graph(&lenet))
            .expect("graph");
        let load = |net: Net| {
            LoadedModel::load(net, &crate::WeightsSource::default(), Backend::Flex).expect("model")
        };
        let (session, origin) = costs
            .session(load(lenet.clone()), EdgeConfig::default())
            .expect("session");
        assert_eq!(origin, "flat costs");
        assert_eq!(session.graph().edge_ms(1), 1.0);
        let tiny = models::zoo::build_with_input("resnet18", vec![3, 32, 32]).expect("resnet18");
        let err = costs
            .session(load(tiny), EdgeConfig::default())
            .expect_err("no costs for resnet18")
            .to_string();
        assert!(err.contains("`resnet18`"), "{err}");
    }

    #[test]
    fn measured_costs_price_both_sides_with_this_device_until_the_server_publishes() {
        let lenet = models::zoo::build("lenet").expect("lenet");
        let model = LoadedModel::load(
            lenet.clone(),
            &crate::WeightsSource::default(),
            Backend::Flex,
        )
        .expect("model");
        let mut costs = Costs::new();
        costs.measure_here();
        costs
            .check(std::slice::from_ref(&lenet))
            .expect("measured costs cover it");
        let (session, origin) = costs
            .session(model, EdgeConfig::default())
            .expect("session");
        assert!(origin.starts_with("measured on this device"), "{origin}");
        let graph = session.graph();
        let edge: f64 = (0..graph.len()).map(|v| graph.edge_ms(v)).sum();
        assert!(edge > 0.0);
        for v in 0..graph.len() {
            assert_eq!(graph.edge_ms(v), graph.cloud_ms(v));
        }
        assert!(session.config().use_published_costs);

        // Told to ignore the server's table, the session keeps these.
        costs.ignore_published();
        let model = LoadedModel::load(lenet, &crate::WeightsSource::default(), Backend::Flex)
            .expect("model");
        let (session, _) = costs
            .session(model, EdgeConfig::default())
            .expect("session");
        assert!(!session.config().use_published_costs);
        assert_eq!(session.cloud_cost_source(), &crate::CloudCostSource::Given);
    }
}
