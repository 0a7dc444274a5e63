//! Quick device profiles of this machine, swept and trained on first use and cached, so that a
//! session can plan without the user running `profile` and `train` first.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use models::{Backend, Net};
use predictor::{
    DeviceProfile, LayerClass, Role, SpellGuard, Steadiness, SweepConfig, SweepSize, TrainOptions,
};

use crate::dirs::UserDir;
use crate::error::RuntimeError;

/// The profiles a session on one machine plans with: this machine as the edge, and this
/// machine again as the cloud (the same regressors with the cloud role).
#[derive(Debug)]
pub struct QuickProfiles {
    /// This machine, edge role.
    pub edge: DeviceProfile,
    /// This machine, cloud role: it assumes the cloud is as fast as this machine.
    pub cloud: DeviceProfile,
    /// The profile file they were loaded from.
    pub path: PathBuf,
    /// True when this call swept and trained it (the first use), false when it was cached.
    pub built: bool,
    /// Where this call threw a cached profile away and took it again because the machine now
    /// runs the sweep's anchor faster than the whole cached sweep did: how many times slower
    /// the cached sweep ran ([`predictor::Steadiness::ran_slower_than`]).
    pub slow_before: Option<f64>,
}

/// Where cutpoint caches what it builds for itself: [`UserDir::Cache`].
pub fn default_cache_dir() -> Result<PathBuf, RuntimeError> {
    UserDir::Cache.path()
}

/// The seed of the quick sweep's samples and small networks.
const SEED: u64 = 1;

/// The layer classes `nets` need a regressor for.
fn classes_of(nets: &[Net]) -> BTreeSet<LayerClass> {
    nets.iter()
        .flat_map(|net| net.nodes().iter())
        .filter_map(|node| LayerClass::of(&node.spec().kind))
        .collect()
}

/// Loads the cached profile when it exists, is readable by this version and covers `needed`.
fn cached(path: &Path, needed: &BTreeSet<LayerClass>) -> Option<DeviceProfile> {
    let profile = DeviceProfile::load(path).ok()?;
    let has: BTreeSet<LayerClass> = profile.classes().into_iter().collect();
    needed.is_subset(&has).then_some(profile)
}

/// The networks of `nets` whose layers `sweep_dir` has not timed inside their passes.
fn missing_in_pass(sweep_dir: &Path, nets: &[Net]) -> Vec<Net> {
    let have = predictor::in_pass_models(sweep_dir).unwrap_or_default();
    nets.iter()
        .filter(|net| !have.contains(&predictor::in_pass_name(net)))
        .cloned()
        .collect()
}

/// The quick profile of this machine on `backend`, covering every layer class of `nets`.
///
/// It lives in `cache_dir/quick-<backend>-k<revision>-f<features>-<vector path>/`, the revision
/// being the build's [`models::KERNEL_REVISION`], the features
/// [`predictor::FEATURE_SCHEMA_VERSION`] and the path [`models::VectorPath::current`] (capped
/// by `CUTPOINT_VECTOR_PATH`), so a build or a run whose kernels run at another speed, or that
/// times or describes layers differently, profiles afresh. The first call (or one that needs a
/// class the cache lacks, or a network whose layers it has not timed inside its passes) runs
/// the quick sweep of the missing classes, which resumes an interrupted one, times each new
/// network's layers inside its own forward passes (see [`predictor::run_in_pass`]), with
/// [`predictor::small_nets`] beside them, and trains the profile on both: about a minute on
/// two cores. `max_samples` caps the samples per class below the quick sweep's own count, for
/// a trial run that also skips the networks' own passes (`None` for the full quick sweep).
/// A cached sweep that ran slower throughout than the machine runs its anchor now (a slow spell
/// longer than the sweep) is thrown away and taken again ([`QuickProfiles::slow_before`]).
/// With `progress` it says so on stderr and draws a bar per class.
pub fn quick_profile(
    cache_dir: &Path,
    backend: Backend,
    nets: &[Net],
    max_samples: Option<usize>,
    progress: bool,
) -> Result<QuickProfiles, RuntimeError> {
    let dir = cache_dir.join(format!(
        "quick-{}-k{}-f{}-{}",
        backend.name(),
        models::KERNEL_REVISION,
        predictor::FEATURE_SCHEMA_VERSION,
        models::VectorPath::current()
    ));
    let path = dir.join("quick.profile");
    let slow_before = cached_sweep_ran_slow(&dir, backend)?;
    if let Some(ratio) = slow_before {
        if progress {
            eprintln!(
                "The cached profile of this machine ({}) was taken while the machine ran {ratio:.1}× slower than it does now: profiling it again",
                dir.display()
            );
        }
        discard(&dir, &path)?;
    }
    let needed = classes_of(nets);
    // A trial run (`max_samples`) skips the networks' own passes.
    let mut unseen = if max_samples.is_some() {
        Vec::new()
    } else {
        missing_in_pass(&dir.join("sweep"), nets)
    };
    if !unseen.is_empty() {
        unseen.extend(predictor::small_nets(SEED)?);
    }
    let (edge, built) = match cached(&path, &needed) {
        Some(profile) if unseen.is_empty() => (profile, false),
        _ => (
            build(
                &dir,
                &path,
                backend,
                &needed,
                &unseen,
                max_samples,
                progress,
            )?,
            true,
        ),
    };
    let mut cloud = DeviceProfile::load(&path)?;
    cloud.role = Role::Cloud;
    Ok(QuickProfiles {
        edge,
        cloud,
        path,
        built,
        slow_before,
    })
}

/// How many times slower than this machine runs now the cached sweep under `dir` ran its
/// anchor, where the whole sweep ran slow ([`predictor::Steadiness::ran_slower_than`]): the
/// fastest of [`ANCHOR_TRIES`] anchor timings now against the sweep's fastest. `None` where the
/// sweep ran as fast, or where there is no finished sweep.
fn cached_sweep_ran_slow(dir: &Path, backend: Backend) -> Result<Option<f64>, RuntimeError> {
    let Some(steadiness) = Steadiness::read(&dir.join("sweep"))? else {
        return Ok(None);
    };
    let now_ms = SpellGuard::on(backend)?.fastest_anchor_ms(ANCHOR_TRIES)?;
    Ok(steadiness.ran_slower_than(now_ms))
}

/// Anchor timings that say how fast this machine runs now: a few milliseconds in all.
const ANCHOR_TRIES: usize = 5;

/// Removes the cached sweep under `dir` and its profile at `path`, so that they are taken again.
fn discard(dir: &Path, path: &Path) -> Result<(), RuntimeError> {
    let io = |at: &Path, source| {
        RuntimeError::Predictor(predictor::PredictorError::Io {
            action: "cannot remove the cached profile taken while the machine ran slow",
            path: at.to_path_buf(),
            source,
        })
    };
    let sweep = dir.join("sweep");
    std::fs::remove_dir_all(&sweep).map_err(|e| io(&sweep, e))?;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path, e)),
        _ => Ok(()),
    }
}

/// Sweeps the `needed` classes into `dir/sweep` (keeping what is there), times the layers of
/// `unseen` inside their passes, and trains every class found there into the profile at
/// `path`.
fn build(
    dir: &Path,
    path: &Path,
    backend: Backend,
    needed: &BTreeSet<LayerClass>,
    unseen: &[Net],
    max_samples: Option<usize>,
    progress: bool,
) -> Result<DeviceProfile, RuntimeError> {
    let sweep_dir = dir.join("sweep");
    if progress {
        eprintln!(
            "Profiling this machine once ({} backend, quick sweep of {} layer classes); cached in {}",
            backend.name(),
            needed.len(),
            dir.display()
        );
    }
    let config = SweepConfig {
        out_dir: sweep_dir.clone(),
        size: SweepSize::Quick,
        backend,
        cpu_quota: None,
        seed: SEED,
        classes: needed.iter().copied().collect(),
        max_samples,
        progress,
    };
    let mut guard = SpellGuard::on(backend)?;
    predictor::run_sweep(&config, &mut guard)?;
    predictor::run_in_pass(&config, unseen, &mut guard)?;
    let steadiness = guard.steadiness();
    steadiness.write(&sweep_dir)?;
    if let (true, Some(warning)) = (progress, steadiness.warning()) {
        eprintln!("Warning: {warning}");
    }
    let options = TrainOptions {
        name: format!("quick-{}", backend.name()),
        role: Role::Edge,
        seed: 1,
        holdout: 0.2,
        folds: 5,
    };
    let (profile, _reports) = predictor::train(&sweep_dir, &options)?;
    profile.save(path)?;
    Ok(profile)
}
