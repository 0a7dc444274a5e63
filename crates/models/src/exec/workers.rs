//! Where a pass runs: on one of rayon's worker threads, with the pool's other workers kept
//! polling for its parts while it runs.
//!
//! A forward pass starts hundreds of parallel kernels (the crate's own, gemm's and the flex
//! backend's). Between two of them the other workers run out of work, and rayon puts an idle
//! worker to sleep after a few dozen polls; waking it for the next kernel then costs a
//! system call and, on a virtual machine, an interrupt to another virtual CPU: 20–40 µs
//! measured on a 2-core VM, as long as a small layer's whole share. So while a pass runs, each
//! other worker runs a [`KeepAwake`] job that keeps polling for work and runs what it finds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Passes running now in this process (of any pool). Workers are kept awake only for a pass
/// running alone: a polling job waits for its own pass to end, and with two passes in one pool
/// one pass's job could end up polling above a part of the other that it then waits on.
static PASSES: AtomicUsize = AtomicUsize::new(0);

/// How long a polling worker goes without finding work before it leaves the rest to rayon's
/// own sleep: a gap that long makes a wake-up a small part of it.
const IDLE_LIMIT: Duration = Duration::from_millis(1);

/// Runs `op` on one of rayon's worker threads and waits for it. Started from a worker, each
/// kernel of a pass is split there and the other workers steal its parts, whereas from any
/// other thread every one of them is handed to the pool while the caller sleeps until it is
/// done: a wake-up and a context switch per kernel. Use [`pass_on_worker`] for a pass.
pub(crate) fn on_worker<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| op())
}

/// [`on_worker`] for a pass of many kernels: the pool's other workers poll for its parts
/// until it ends.
pub(crate) fn pass_on_worker<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    on_worker(|| {
        let _awake = KeepAwake::start();
        op()
    })
}

/// The other workers of the current pool polling for work until this is dropped.
struct KeepAwake {
    /// Set when the pass ends; every polling job then returns.
    done: Arc<AtomicBool>,
}

impl KeepAwake {
    /// Starts a polling job on every worker of the current pool but this one, unless the pool
    /// has one thread or another pass is running.
    fn start() -> KeepAwake {
        let done = Arc::new(AtomicBool::new(false));
        let alone = PASSES.fetch_add(1, Ordering::AcqRel) == 0;
        if let (true, true, Some(me)) = (
            alone,
            rayon::current_num_threads() > 1,
            rayon::current_thread_index(),
        ) {
            let flag = Arc::clone(&done);
            rayon::spawn_broadcast(move |worker| {
                if worker.index() != me {
                    poll_until(&flag);
                }
            });
        }
        KeepAwake { done }
    }
}

impl Drop for KeepAwake {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        PASSES.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs the pool's pending work as it appears until `done` is set, another pass starts, or no
/// work has come for [`IDLE_LIMIT`].
fn poll_until(done: &AtomicBool) {
    let mut last_work = Instant::now();
    while !done.load(Ordering::Acquire) && PASSES.load(Ordering::Acquire) == 1 {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => last_work = Instant::now(),
            _ if last_work.elapsed() > IDLE_LIMIT => return,
            _ => std::hint::spin_loop(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_workers() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a pool")
    }

    /// Many small parallel parts, as a pass's kernels are.
    fn parts(n: u64) -> u64 {
        (0..n)
            .map(|i| rayon::join(|| i, || i * 2))
            .map(|(a, b)| a + b)
            .sum()
    }

    #[test]
    fn a_polling_worker_returns_once_no_work_comes() {
        // Nothing sets the flag: the job must still end, by its idle limit.
        let never = AtomicBool::new(false);
        two_workers().install(|| poll_until(&never));
    }

    #[test]
    fn a_pass_inside_a_pass_runs_without_waiting_on_a_polling_job() {
        let total: u64 = two_workers()
            .install(|| pass_on_worker(|| (0..8u64).map(|i| pass_on_worker(|| parts(i))).sum()));
        assert_eq!(
            total,
            (0..8u64).map(|i| 3 * (0..i).sum::<u64>()).sum::<u64>()
        );
    }

    #[test]
    fn two_passes_at_once_in_one_pool_both_finish() {
        let (a, b) = two_workers().install(|| {
            rayon::join(
                || pass_on_worker(|| parts(500)),
                || pass_on_worker(|| parts(300)),
            )
        });
        assert_eq!(
            (a, b),
            (3 * (0..500u64).sum::<u64>(), 3 * (0..300u64).sum::<u64>())
        );
    }
}
