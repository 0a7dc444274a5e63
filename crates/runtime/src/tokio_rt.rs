//! The async runtime that sessions, servers and task queues run on.

use crate::error::RuntimeError;

/// A multi-threaded Tokio runtime with I/O and timers, for a program that is not async itself
/// (a CLI command, a test) to drive sessions with `block_on`.
///
/// Make it before the sessions it drives and drop it after them: a session's connection and
/// background reconnects live on it.
pub fn async_runtime() -> Result<tokio::runtime::Runtime, RuntimeError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RuntimeError::AsyncRuntime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_runs_timers() {
        let runtime = async_runtime().expect("starts");
        let slept = runtime.block_on(async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            true
        });
        assert!(slept);
    }
}
