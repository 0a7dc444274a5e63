//! Collaborative inference, end to end.
//!
//! - [`CloudServer`]: the cloud side. A [`transport::Handler`] that serves zoo and spec models,
//!   loads each on first use, checks every request against the network and the weights hash,
//!   runs it behind a bounded queue (answering `Busy` when full) in batches across clients,
//!   publishes its own per-node and
//!   decoding costs, and reports its expected wait with every reply.
//! - [`EdgeSession`]: the edge side. Plans each request with the live link estimate and the
//!   cloud's load (with hysteresis), runs the edge part, ships the boundary tensors and returns
//!   an [`Outcome`] with predicted and measured breakdowns. Given several servers
//!   ([`Servers`]), it picks the server and the cut together and fails over to the next server.
//!   When no cloud is reachable, or all are busy or too slow, it finishes the request locally,
//!   says so, and reconnects in the background.
//! - [`LoadedModel`] and [`weights_hash`]: what both sides load, and the fingerprint that proves
//!   they loaded the same thing.
//! - [`LocalCloud`]: a cloud server on loopback inside this process (the demo, the examples).
//! - [`run_local`]: a model run here, whole or split at a cut, with no network ([`LocalReport`]).
//! - [`quick_profile`]: this machine's quick device profile, built on first use and cached.
//! - [`pattern_input`]: a deterministic input for any network, for samples and experiments.
//! - [`Costs`]: where the planner's per-layer costs come from for each model (cost graphs,
//!   device profiles or the quick profile), and the sessions that plan with them.
//! - [`tasks`]: a queue of inference tasks against the cloud servers, one session per model, with a
//!   background link monitor, typed per-task records and a latency summary.
//! - [`Outcome::cut_summary`] and [`CutReport`]: a request's cut in words and for reports;
//!   [`OutcomeReport`]: a whole request for JSON and as text; [`top5`]: an ImageNet output's
//!   most likely classes; [`PlanComparison`]: a plan beside edge-only and cloud-only, for JSON
//!   ([`PlanReport`]) and as text.
//! - [`read_npy_input`], [`read_image_file`]: a network's input from a `.npy` tensor file or
//!   a JPEG or PNG file, run as a [`RequestInput`] (a seeded one is `models::seeded_input`).
//! - [`ObjectiveChoice`]: what the planner minimises (latency, a stream's time per frame, or the
//!   edge's energy with a device class's powers), and how reports state it
//!   ([`ObjectiveReport`]).
//! - [`EnergyCounters`]: the CPU's package energy counters (Linux powercap), which a session
//!   reads around the edge's compute where the machine has them.
//! - [`async_runtime`]: the Tokio runtime a program that is not async drives sessions on.
//! - [`UserDir`]: where cutpoint keeps its files on this machine (cache, configuration, data);
//!   [`default_known_servers`], the edge's pinned certificates; [`StateDir`], a cloud server's
//!   identity and token.
//! - [`Table`]: the plain-text table the reports render to.
//!
//! The CLIs are thin wrappers over this crate, so an application that embeds cutpoint gets
//! exactly what the CLIs do. The experiments (the demo, the grids, real shaping) live in the
//! `lab` crate on top of this one; a slower edge is emulated through
//! [`EdgeConfig::edge_slowdown`].

mod cloud;
mod codec_costs;
mod costs;
mod cut_report;
mod dirs;
mod edge;
mod energy;
mod error;
mod input_files;
mod loaded;
mod local_cloud;
mod local_run;
mod objective;
mod outcome_report;
mod plan_report;
mod quick_profile;
mod request_input;
mod table;
pub mod tasks;
mod tokio_rt;
mod weights_hash;
mod wire;

pub use cloud::{
    CloudConfig, CloudServer, DEFAULT_BATCH_MAX, DEFAULT_BATCH_WAIT, DEFAULT_MAX_BATCH, Preloaded,
    QueueStats, check_request, serve_metrics,
};
pub use codec_costs::{CloudDecoding, CodecCosts};
pub use costs::{CostChoice, Costs};
pub use cut_report::{BreakdownMs, Crossing, CutReport, SentTensor, human_bytes};
pub use dirs::{StateDir, UserDir, default_known_servers};
pub use edge::{
    CloudCostSource, EdgeConfig, EdgeSession, INPUT_FILE_ID, Lookup, Measured, Outcome, Resolve,
    Sent, Servers, SplitMode, SystemResolver, pattern_input,
};
pub use energy::{EnergyCounters, EnergySample, EnergyUnavailable, POWERCAP_ROOT};
pub use error::RuntimeError;
pub use input_files::{read_image_file, read_npy_input};
pub use loaded::{DEFAULT_SEED, LoadedModel, WeightsSource};
pub use local_cloud::LocalCloud;
pub use local_run::{LocalCrossing, LocalCut, LocalReport, run_local};
pub use objective::{ObjectiveChoice, ObjectiveReport, PowersReport};
pub use outcome_report::{
    ClassScore, EnergyReport, LinkReport, MeasuredLink, MeasuredMs, OutcomeReport, PlannedLink,
    render_top5, top5,
};
pub use plan_report::{
    Baselines, PlanComparison, PlanLink, PlanReport, TransferReport, profiled_graph,
};
pub use quick_profile::{QuickProfiles, default_cache_dir, quick_profile};
pub use request_input::{CostsReport, InputReport, InputShape, RequestInput};
pub use table::Table;
pub use tokio_rt::async_runtime;
pub use weights_hash::weights_hash;
pub use wire::{from_wire, to_wire};
