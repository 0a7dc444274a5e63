//! `cutpoint-lab-worker`: the processes of `cutpoint-edge sweep --shaping real`, the cloud
//! (`cloud`) and one cell's edge (`cell`), each in its network namespace. `sweep` starts it
//! from the directory `cutpoint-edge` runs from and speaks JSON lines to it on stdin and
//! stdout; it is not meant to be run by hand. The work is [`lab::run_worker`].

use std::process::ExitCode;

fn main() -> ExitCode {
    let role = std::env::args().nth(1).unwrap_or_default();
    // Before any parallel work: the pool's workers each on a CPU of their own.
    models::pin_global_pool();
    match lab::run_worker(&role) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli_common::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
