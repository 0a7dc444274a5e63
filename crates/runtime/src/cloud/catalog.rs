//! The models a cloud server offers, each loaded on first use (or at start) and then kept,
//! with the cloud's own per-node costs measured when it loads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use models::{Backend, Net};
use predictor::{SpellGuard, after_own_passes};
use tokio::sync::OnceCell;
use tracing::{info, warn};
use transport::{CloudCosts, Loss, NodeCost};

use crate::codec_costs::CodecCosts;
use crate::error::RuntimeError;
use crate::loaded::{LoadedModel, WeightsSource};

/// One offered model.
#[derive(Debug)]
pub(crate) struct Entry {
    net: Net,
    /// Weights named at registration; otherwise the weights directory or the seed decide.
    source: Option<WeightsSource>,
    loaded: OnceCell<Loaded>,
}

/// A loaded model, what its nodes cost here, and how long loading took.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    /// The model.
    pub model: Arc<LoadedModel>,
    /// Each node's time on this server at batch 1, measured inside whole passes.
    pub costs: Arc<CloudCosts>,
    /// Loading and measuring, ms.
    pub load_ms: f64,
}

/// Unmeasured rounds before the costs are timed, and rounds timed (each node's median is
/// published). A round is one pass of every model measured together ([`SpellGuard::rounds`]), as the
/// edge's profile times the networks' layers: a slow moment of a shared machine then touches a
/// pass or two of each model, where five passes back to back could all fall into one.
const COST_WARMUP: usize = 3;
const COST_ROUNDS: usize = 11;

impl Entry {
    /// The network.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// The loaded model, if it has been loaded.
    pub fn get(&self) -> Option<&Arc<LoadedModel>> {
        self.loaded.get().map(|l| &l.model)
    }

    /// The network and the weights it loads with.
    fn to_load(&self, defaults: &WeightsDefaults) -> (Net, WeightsSource) {
        let source = self
            .source
            .clone()
            .unwrap_or_else(|| defaults.source_for(self.net.name()));
        (self.net.clone(), source)
    }
}

/// Where weights come from when a model was registered without its own.
#[derive(Debug, Clone)]
pub(crate) struct WeightsDefaults {
    /// `<dir>/<model id>.safetensors` is used when it exists.
    pub dir: Option<PathBuf>,
    /// Otherwise, seeded weights from this seed.
    pub seed: u64,
}

impl WeightsDefaults {
    fn source_for(&self, id: &str) -> WeightsSource {
        self.dir
            .as_deref()
            .map(|dir| file_in(dir, id))
            .filter(|path| path.is_file())
            .map_or(WeightsSource::Seeded(self.seed), WeightsSource::File)
    }
}

fn file_in(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.safetensors"))
}

/// The offered models by id.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    entries: BTreeMap<String, Entry>,
}

impl Catalog {
    /// Offers `net` under its name, replacing any model of that name.
    pub fn insert(&mut self, net: Net, source: Option<WeightsSource>) {
        self.entries.insert(
            net.name().to_string(),
            Entry {
                net,
                source,
                loaded: OnceCell::new(),
            },
        );
    }

    /// The model with this id.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// Every entry, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(id, e)| (id.as_str(), e))
    }

    /// The ids, comma-separated (for error messages).
    pub fn ids(&self) -> String {
        self.entries.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Loads `entry` on a blocking thread the first time and measures its costs, and returns the
/// cached model after that, with `fresh` true only for the call that loaded it. Concurrent
/// first requests wait for one load; a failed load is tried again next time.
pub(crate) async fn load(
    entry: &Entry,
    defaults: &WeightsDefaults,
    backend: Backend,
) -> Result<(Loaded, bool), RuntimeError> {
    let mut fresh = false;
    let loaded = entry
        .loaded
        .get_or_try_init(|| async {
            fresh = true;
            let mut loaded = load_and_measure(vec![entry.to_load(defaults)], backend).await?;
            loaded
                .pop()
                .ok_or_else(|| RuntimeError::Task("no model was loaded".into()))
        })
        .await?
        .clone();
    Ok((loaded, fresh))
}

/// Loads every one of `entries` not loaded yet, then measures their costs together, in
/// rounds of one pass of each, so that every model's costs are timed under the same
/// conditions. Returns each entry's loaded model, in order.
pub(crate) async fn load_all(
    entries: &[&Entry],
    defaults: &WeightsDefaults,
    backend: Backend,
) -> Result<Vec<Loaded>, RuntimeError> {
    let missing: Vec<&Entry> = entries
        .iter()
        .copied()
        .filter(|e| e.loaded.get().is_none())
        .collect();
    let to_load = missing.iter().map(|e| e.to_load(defaults)).collect();
    for (entry, loaded) in missing
        .iter()
        .zip(load_and_measure(to_load, backend).await?)
    {
        // A request that loaded the model meanwhile keeps its own.
        let _ = entry.loaded.set(loaded);
    }
    entries
        .iter()
        .map(|e| {
            e.loaded.get().cloned().ok_or_else(|| {
                RuntimeError::Task(format!("model `{}` was not loaded", e.net.name()))
            })
        })
        .collect()
}

/// Loads `nets` with their weights on a blocking thread and measures their costs
/// ([`measure_costs`]). Each one's `load_ms` is its own loading and the measurement of all.
async fn load_and_measure(
    nets: Vec<(Net, WeightsSource)>,
    backend: Backend,
) -> Result<Vec<Loaded>, RuntimeError> {
    tokio::task::spawn_blocking(move || {
        let mut models = Vec::with_capacity(nets.len());
        let mut load_ms = Vec::with_capacity(nets.len());
        for (net, source) in nets {
            let started = Instant::now();
            let model = LoadedModel::load(net, &source, backend)?;
            info!(model = %model.model.net().name(), %source, weights_hash = %model.weights_hash, "model loaded");
            models.push(model);
            load_ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let started = Instant::now();
        let costs = measure_costs(&models, backend)?;
        let measure_ms = started.elapsed().as_secs_f64() * 1e3;
        info!(models = models.len(), measure_ms, "costs measured");
        Ok(models
            .into_iter()
            .zip(costs)
            .zip(load_ms)
            .map(|((model, costs), load_ms)| Loaded {
                model: Arc::new(model),
                costs: Arc::new(costs),
                load_ms: load_ms + measure_ms,
            })
            .collect())
    })
    .await
    .map_err(|e| RuntimeError::Task(e.to_string()))?
}

/// Each node's time on this machine at batch 1, for each of `loaded`: the median over
/// [`COST_ROUNDS`] passes on a seeded input, timed between nodes as the pass runs them, the
/// models' passes taken in [`interleaved`] rounds, each after passes of its own model
/// ([`after_own_passes`]), with what a whole pass (timed as a request runs one, in rounds of
/// their own) takes beyond its nodes added to the output node, which
/// every part the server runs ends with; and what decoding costs here (the embedded
/// photograph, and every codec on every node's output for that input).
fn measure_costs(
    loaded: &[LoadedModel],
    backend: Backend,
) -> Result<Vec<CloudCosts>, RuntimeError> {
    let inputs = loaded
        .iter()
        .map(|m| models::seeded_input(m.model.net(), 1, 0))
        .collect::<Result<Vec<_>, _>>()?;
    let mut guard = SpellGuard::on(backend)?;
    let passes = guard.rounds(loaded.len(), COST_WARMUP, COST_ROUNDS, |i| {
        after_own_passes(&loaded[i].model, &inputs[i], |model, input| {
            model.time_pass(input.clone())
        })
    })?;
    let wholes = guard.rounds(loaded.len(), 1, COST_ROUNDS, |i| {
        after_own_passes(&loaded[i].model, &inputs[i], |model, input| {
            model.time_forward(input, 0, 1)
        })
    })?;
    if let Some(warning) = guard.steadiness().warning() {
        warn!("{warning}");
    }
    let method = format!(
        "median of {COST_ROUNDS} whole passes at batch 1 on {backend}, timed between nodes, in rounds of one pass of each of {} models loaded together (each after an unmeasured pass of its own), a round in a slow spell of the server run again; the output node also carries what a whole pass takes beyond its nodes",
        loaded.len()
    );
    loaded
        .iter()
        .zip(inputs)
        .zip(passes.into_iter().zip(wholes))
        .map(|((m, input), (passes, wholes))| {
            let net = m.model.net();
            let mut nodes: Vec<NodeCost> = m
                .model
                .median_timings(&passes, 1)
                .into_iter()
                .map(|t| NodeCost {
                    id: t.id,
                    ms: t.median_ms,
                })
                .collect();
            let beyond = models::median(wholes) - nodes.iter().map(|n| n.ms).sum::<f64>();
            if let Some(sink) = nodes.get_mut(net.sink()) {
                sink.ms += beyond.max(0.0);
            }
            let decoding = CodecCosts::measure(&m.model, input, Loss::Int8)?
                .decoding()
                .clone();
            Ok(CloudCosts {
                model_id: net.name().to_string(),
                weights_hash: m.weights_hash.clone(),
                nodes,
                method: method.clone(),
                decoding,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weights_file_in_the_directory_wins_over_the_seed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let defaults = WeightsDefaults {
            dir: Some(dir.path().to_path_buf()),
            seed: 7,
        };
        assert_eq!(defaults.source_for("lenet"), WeightsSource::Seeded(7));
        let path = dir.path().join("lenet.safetensors");
        std::fs::write(&path, b"x").expect("file");
        assert_eq!(defaults.source_for("lenet"), WeightsSource::File(path));
    }
}
