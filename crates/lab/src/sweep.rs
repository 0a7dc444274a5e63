//! A sweep: the grid on real shaping or emulated in this process, summed up in a
//! [`SweepReport`].

use runtime::async_runtime;

use crate::error::LabError;
use crate::grid::{GridCell, GridConfig, GridRow, run_grid};
use crate::shaped_grid::{run_shaped_grid, worker_path};
use crate::summary::SweepReport;
use crate::testbed::Testbed;

/// What a sweep on real shaping runs on, in words (the report's `shaping`).
pub const REAL_SHAPING: &str = "real shaping: edge and cloud processes in two network namespaces, uplink by tc tbf on a veth pair, edge CPU by a cgroup-v1 quota (CPUs), RTT by a UDP relay";

/// What an emulated sweep runs on, in words.
pub const EMULATED: &str = "emulated: built-in shaper for the uplink, UDP relay for the RTT, edge CPU share of this machine emulated by waiting";

/// [`REAL_SHAPING`] with a testbed, else [`EMULATED`].
pub fn shaping(testbed: Option<&Testbed>) -> &'static str {
    if testbed.is_some() {
        REAL_SHAPING
    } else {
        EMULATED
    }
}

/// Runs the grid of `config` on real shaping in `testbed` ([`run_shaped_grid`], with the
/// worker binary beside this program), or without one emulated in this process
/// ([`run_grid`]), and sums it up. `on_cell` receives each cell as it is measured. Blocks; call
/// it outside an async runtime.
pub fn run_sweep(
    config: &GridConfig,
    testbed: Option<&Testbed>,
    on_cell: impl FnMut(&[GridRow], &GridCell),
) -> Result<SweepReport, LabError> {
    let (rows, cells) = match testbed {
        Some(testbed) => run_shaped_grid(config, testbed, &worker_path()?, on_cell)?,
        None => async_runtime()?.block_on(run_grid(config, on_cell))?,
    };
    Ok(SweepReport::new(config, shaping(testbed), rows, cells))
}
