//! The deployment phase: what each class of layer costs on a device.
//!
//! Neurosurgeon profiles each device once and then predicts any model's per-layer latency
//! without running it. This crate does that in three steps:
//!
//! 1. [`run_sweep`] times seeded samples of every [`LayerClass`] on this machine (optionally
//!    under a cgroup-v1 CPU quota that emulates a slower edge), one resumable CSV per class.
//! 2. [`train`] fits smartcore regressors per class, picks one by k-fold cross-validation,
//!    reports held-out accuracy beside Neurosurgeon's linear baseline, and returns a
//!    [`DeviceProfile`].
//! 3. [`DeviceProfile::layer_costs`] predicts every node of a `models::Net`; those are the
//!    `edge_ms` / `cloud_ms` that `partition_core` solves over.
//!
//! [`measured_costs`] is the second cost source: a model's own layers, timed directly.

mod ceiling;
mod class;
mod dataset;
mod error;
pub mod features;
mod machine;
mod measured;
mod profile;
mod regress;
mod rounds;
mod small_nets;
mod space;
mod sweep;
mod train;

pub use ceiling::Ceiling;
pub use class::LayerClass;
pub use dataset::{
    Measurement, PassTime, SweepMeta, csv_path, in_pass_dir, in_pass_models, in_pass_root,
    read_class,
};
pub use error::PredictorError;
pub use features::{Context, FEATURE_SCHEMA_VERSION};
pub use machine::{MachineInfo, apply_cpu_quota};
pub use measured::{ModelCheck, check_models, measured_costs};
pub use profile::{DeviceProfile, MeasuredLayer, PROFILE_FORMAT_VERSION, Role};
pub use regress::{Accuracy, Candidate};
pub use rounds::{
    ANCHOR_PASSES, CALM_QUANTILE, LONG_SPELL_ROUNDS, OWN_WARMUP_MS, OWN_WARMUP_PASSES,
    PROFILED_SLOW_LIMIT, SLOW_LIMIT, SpellGuard, Steadiness, WARN_SLOW_SHARE, after_own_passes,
};
pub use small_nets::{INVERTED_RESIDUAL, LENET_LIKE, SMALL_NET_PREFIX, SMALL_NETS, small_nets};
pub use space::{Sample, Sampler, SweepSize};
pub use sweep::{ClassSummary, InPassSummary, SweepConfig, in_pass_name, run_in_pass, run_sweep};
pub use train::{
    ClassReport, HeldOutClass, HeldOutModel, MIN_SAMPLES, TrainOptions, held_out_models, train,
};
