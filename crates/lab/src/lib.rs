//! cutpoint's experiments: what the demo, `sweep`, `fidelity`, `load` and `layers` measure,
//! report and draw, on top of the production [`runtime`]. Each report renders its own text
//! (`render`, [`render_case`], [`render_cell`]), so a program only prints it.
//!
//! - [`run_demo`]: the demo — an in-process cloud, an emulated slow edge and shaped uplinks,
//!   the planner's cut beside edge-only and cloud-only.
//! - [`run_grid`]: split × bandwidth × edge-CPU grids with regret and speed-ups (emulated), and
//!   [`run_shaped_grid`]: the same on real shaping ([`testbed`]: namespaces, `tc`, a CPU quota),
//!   with the cloud and each cell's edge in processes of the worker binary ([`run_worker`]).
//!   [`run_sweep`] runs either and returns the [`SweepReport`], which summarises a grid
//!   (regret, speed-ups, and where a split or a compressed boundary beats every baseline) and
//!   writes its files.
//! - [`run_load`]: many edge sessions against one server at once (a load generator), with
//!   throughput, latency percentiles, busy answers, fallbacks, and lost or wrong results.
//! - [`run_stream`]: a stream of frames from one edge over a shaped uplink, one at a time
//!   against pipelined (planned for latency, and for the stream objective).
//! - [`measure_layers`]: Neurosurgeon's per-layer latency and output size, with a whole pass
//!   for comparison.
//! - [`measure_fidelity`]: what each lossy codec at each cut costs in top-1 agreement and
//!   output error.
//! - With the `plot` feature (on by default): [`draw_grid`], the sweep's figure, and
//!   [`draw_layers`], Neurosurgeon's per-layer figure.
//!
//! The slow edge is emulated through the edge session's own extension point,
//! [`runtime::EdgeConfig::edge_slowdown`]; nothing here is needed to run cutpoint in production.

mod demo;
mod error;
mod fidelity;
mod grid;
mod layers;
mod load;
#[cfg(feature = "plot")]
mod plot;
mod rig;
mod shaped_grid;
mod stream;
mod summary;
mod sweep;
pub mod testbed;

pub use demo::{DemoConfig, DemoRow, Strategy, demo_csv, render_case, run_demo};
pub use error::LabError;
pub use fidelity::{FidelityReport, FidelityRow, MAX_IMAGES, measure_fidelity, read_images};
pub use grid::{GridCell, GridConfig, GridRow, grid_csv, render_cell, run_grid};
pub use layers::{LayerRow, LayersConfig, LayersReport, TimingMode, layers_csv, measure_layers};
pub use load::{DEFAULT_LOAD_TIMEOUT, LatencyMs, LoadConfig, LoadReport, MAX_CLIENTS, run_load};
#[cfg(feature = "plot")]
pub use plot::{PlotFormat, draw_grid, draw_layers, plot_format};
pub use shaped_grid::{WORKER_BIN, run_shaped_grid, run_worker, worker_path};
pub use stream::{StreamConfig, StreamMode, StreamRow, run_stream};
pub use summary::{SweepReport, SweepSummary};
pub use sweep::{EMULATED, REAL_SHAPING, run_sweep, shaping};
