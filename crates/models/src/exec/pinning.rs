//! rayon's global pool with each worker pinned to a CPU of its own.
//!
//! A pass's kernels are split between the pool's workers, so a pass runs as fast as its
//! slowest worker's CPU lets it. Left to the scheduler, workers that slept can wake up sharing
//! one CPU: on a virtual machine whose kernel packs work onto fewer virtual CPUs (a Firecracker
//! guest booted with `sched_vcpu_pack`), a two-thread pass after 100 ms or more of idle ran at
//! one thread's speed (AlexNet 24–25 ms against 13–14 back to back), and so would every request
//! that follows a pause. Pinned, the same pass took 14.4–15.1 ms after the pause.

/// The environment variable that turns pinning off when set to `0`.
pub const PIN_THREADS_VAR: &str = "CUTPOINT_PIN_THREADS";

/// How [`pin_global_pool`] left rayon's global pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinning {
    /// Worker `i` pinned to `cpus[i]`.
    Pinned {
        /// The CPU of each worker, in worker order.
        cpus: Vec<usize>,
    },
    /// The workers left to the scheduler, and why.
    Unpinned(String),
}

/// Builds rayon's global pool with one worker per thread it is asked for (`RAYON_NUM_THREADS`,
/// or every CPU this process may run on) and pins worker `i` to the `i`-th of those CPUs.
/// Left unpinned: when [`PIN_THREADS_VAR`] is `0`, for a single thread, when there are more
/// threads than CPUs, where the system cannot say which CPUs the process may use, and where
/// the pool was already built (call this first thing in `main`). A worker whose CPU the system
/// refuses stays unpinned.
pub fn pin_global_pool() -> Pinning {
    if std::env::var(PIN_THREADS_VAR).is_ok_and(|v| v.trim() == "0") {
        return Pinning::Unpinned(format!("{PIN_THREADS_VAR}=0"));
    }
    let Some(allowed) = allowed_cpus() else {
        return Pinning::Unpinned("this system does not say which CPUs the process may use".into());
    };
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(allowed.len());
    if threads < 2 {
        // One worker has no other to wake up beside it; pinned to the first CPU it also took
        // that CPU's interrupts (ResNet-50 on one thread 2 % slower).
        return Pinning::Unpinned("one thread".into());
    }
    if threads > allowed.len() {
        return Pinning::Unpinned(format!("{threads} threads for {} CPUs", allowed.len()));
    }
    let cpus: Vec<usize> = allowed[..threads].to_vec();
    let targets = cpus.clone();
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .start_handler(move |worker| {
            if let Some(&cpu) = targets.get(worker) {
                pin_this_thread(cpu);
            }
        })
        .build_global();
    match built {
        Ok(()) => Pinning::Pinned { cpus },
        Err(e) => Pinning::Unpinned(format!("the pool was already built ({e})")),
    }
}

/// The CPUs this process may run on, in order, or `None` where the system cannot say.
#[cfg(target_os = "linux")]
fn allowed_cpus() -> Option<Vec<usize>> {
    let cpus = cpus_in(&rustix::thread::sched_getaffinity(None).ok()?);
    (!cpus.is_empty()).then_some(cpus)
}

/// The CPUs `set` holds, in order.
#[cfg(target_os = "linux")]
fn cpus_in(set: &rustix::thread::CpuSet) -> Vec<usize> {
    (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&cpu| set.is_set(cpu))
        .collect()
}

#[cfg(not(target_os = "linux"))]
fn allowed_cpus() -> Option<Vec<usize>> {
    None
}

/// Pins the calling thread to `cpu`; where the system refuses, the thread stays as it was.
#[cfg(target_os = "linux")]
fn pin_this_thread(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    let _ = rustix::thread::sched_setaffinity(None, &set);
}

#[cfg(not(target_os = "linux"))]
fn pin_this_thread(_cpu: usize) {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn this_process_may_run_on_some_cpus() {
        let cpus = allowed_cpus().expect("Linux says which CPUs a process may use");
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]), "{cpus:?}");
    }

    #[test]
    fn a_pinned_thread_runs_only_on_its_cpu() {
        let cpu = allowed_cpus().expect("cpus")[0];
        let on = std::thread::spawn(move || {
            pin_this_thread(cpu);
            cpus_in(&rustix::thread::sched_getaffinity(None).expect("affinity"))
        })
        .join()
        .expect("thread");
        assert_eq!(on, [cpu]);
    }
}
