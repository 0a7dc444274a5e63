//! The global pool pinned: each worker runs only on its own CPU, and a second call leaves the
//! built pool as it is. (A test binary of its own: the global pool is built once per process.)

#![cfg(target_os = "linux")]

use models::{Pinning, pin_global_pool};

/// The CPUs the calling thread may run on.
fn my_cpus() -> Vec<usize> {
    let set = rustix::thread::sched_getaffinity(None).expect("affinity");
    (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| set.is_set(c))
        .collect()
}

#[test]
fn every_worker_runs_on_its_own_cpu() {
    let allowed = my_cpus();
    let pinning = pin_global_pool();
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(allowed.len());
    if std::env::var(models::PIN_THREADS_VAR).is_ok_and(|v| v == "0")
        || threads < 2
        || threads > allowed.len()
    {
        assert!(matches!(pinning, Pinning::Unpinned(_)), "{pinning:?}");
        return;
    }
    let Pinning::Pinned { cpus } = pinning else {
        panic!("not pinned: {pinning:?}");
    };
    assert_eq!(cpus, allowed[..threads]);
    assert_eq!(rayon::current_num_threads(), threads);
    let mut seen = rayon::broadcast(|worker| (worker.index(), my_cpus()));
    seen.sort();
    let expected: Vec<(usize, Vec<usize>)> = cpus
        .iter()
        .enumerate()
        .map(|(i, &cpu)| (i, vec![cpu]))
        .collect();
    assert_eq!(seen, expected);
    // The pool exists now: a second call says so and changes nothing.
    let again = pin_global_pool();
    assert!(
        matches!(&again, Pinning::Unpinned(why) if why.contains("already built")),
        "{again:?}"
    );
}
