//! The models a cloud server offers, each loaded on first use and then kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use models::{Backend, Net};
use tokio::sync::OnceCell;
use tracing::info;

use crate::error::RuntimeError;
use crate::loaded::{LoadedModel, WeightsSource};

/// One offered model.
#[derive(Debug)]
pub(crate) struct Entry {
    net: Net,
    /// Weights named at registration; otherwise the weights directory or the seed decide.
    source: Option<WeightsSource>,
    loaded: OnceCell<Arc<LoadedModel>>,
}

impl Entry {
    /// The network.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// The loaded model, if it has been loaded.
    pub fn get(&self) -> Option<&Arc<LoadedModel>> {
        self.loaded.get()
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

/// Loads `entry` on a blocking thread the first time, and returns the cached model after that.
/// Concurrent first requests wait for one load; a failed load is tried again next time.
pub(crate) async fn load(
    entry: &Entry,
    defaults: &WeightsDefaults,
    backend: Backend,
) -> Result<Arc<LoadedModel>, RuntimeError> {
    entry
        .loaded
        .get_or_try_init(|| async {
            let net = entry.net.clone();
            let source = entry
                .source
                .clone()
                .unwrap_or_else(|| defaults.source_for(net.name()));
            let id = net.name().to_string();
            let loaded = tokio::task::spawn_blocking(move || {
                LoadedModel::load(net, &source, backend).map(|m| (m, source))
            })
            .await
            .map_err(|e| RuntimeError::Task(e.to_string()))??;
            let (model, source) = loaded;
            info!(model = %id, %source, weights_hash = %model.weights_hash, "model loaded");
            Ok(Arc::new(model))
        })
        .await
        .cloned()
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
