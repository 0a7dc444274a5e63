//! The models a cloud server offers, each loaded on first use (or at start) and then kept,
//! with the cloud's own per-node costs measured when it loads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use models::{Backend, Net};
use tokio::sync::OnceCell;
use tracing::info;
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

/// Unmeasured passes before the costs are timed.
const COST_WARMUP: usize = 1;
/// Passes whose per-node median is published.
const COST_RUNS: usize = 5;

impl Entry {
    /// The network.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// The loaded model, if it has been loaded.
    pub fn get(&self) -> Option<&Arc<LoadedModel>> {
        self.loaded.get().map(|l| &l.model)
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
            let net = entry.net.clone();
            let source = entry
                .source
                .clone()
                .unwrap_or_else(|| defaults.source_for(net.name()));
            let id = net.name().to_string();
            let started = Instant::now();
            let (model, costs, source) = tokio::task::spawn_blocking(move || {
                let model = LoadedModel::load(net, &source, backend)?;
                let costs = measure_costs(&model, backend)?;
                Ok::<_, RuntimeError>((model, costs, source))
            })
            .await
            .map_err(|e| RuntimeError::Task(e.to_string()))??;
            let load_ms = started.elapsed().as_secs_f64() * 1e3;
            info!(model = %id, %source, weights_hash = %model.weights_hash, load_ms, "model loaded and its costs measured");
            Ok::<_, RuntimeError>(Loaded {
                model: Arc::new(model),
                costs: Arc::new(costs),
                load_ms,
            })
        })
        .await?
        .clone();
    Ok((loaded, fresh))
}

/// Each node's time on this machine at batch 1: the median over whole passes on a seeded
/// input, timed between nodes as the pass runs them; and what decoding costs here (the
/// embedded photograph, and every codec on every node's output for that input).
fn measure_costs(model: &LoadedModel, backend: Backend) -> Result<CloudCosts, RuntimeError> {
    let net = model.model.net();
    let input = models::seeded_input(net, 1, 0)?;
    let decoding = CodecCosts::measure(&model.model, input.clone(), Loss::Int8)?
        .decoding()
        .clone();
    let timings = model.model.time_in_pass(input, COST_WARMUP, COST_RUNS)?;
    Ok(CloudCosts {
        model_id: net.name().to_string(),
        weights_hash: model.weights_hash.clone(),
        nodes: timings
            .into_iter()
            .map(|t| NodeCost {
                id: t.id,
                ms: t.median_ms,
            })
            .collect(),
        method: format!(
            "median of {COST_RUNS} whole passes at batch 1 on {backend}, timed between nodes"
        ),
        decoding,
    })
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
