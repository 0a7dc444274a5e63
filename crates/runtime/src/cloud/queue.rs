//! The cloud's bounded work queue: admission, worker slots, and the load factor it reports.
//!
//! A request is first *admitted* (or refused at once when `workers + capacity` requests are
//! already in the system), then waits for one of `workers` slots, then runs. Every admitted
//! request leaves through [`Running`]'s drop, whatever happens to it, so the counts never leak.
//!
//! # Load factor
//!
//! With `w` workers, `n` requests in the system (running and waiting), `s̄` the mean service
//! time of recent requests (EWMA, α = 0.3) and `e` the time the longest-running request has run:
//!
//! ```text
//! λ = 1                                        when n < w (a worker is free)
//! λ = 1 + (n − w)/w + max(0, 1 − e/s̄)          otherwise
//! ```
//!
//! A new request waits for the first running request to finish (about `s̄ − e`) and then for
//! the `n − w` requests ahead of it, which `w` workers clear in `(n − w)·s̄/w`. Its own service
//! takes about `s̄`, so it spends `λ·s̄` in the cloud: λ is the factor the cost model of
//! docs/DESIGN.md applies to every cloud time. Before any request has finished, `e/s̄` counts
//! as 0.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Weight of a new service time in the mean.
const SERVICE_ALPHA: f64 = 0.3;

/// The largest load factor reported (partition-core's upper bound).
const MAX_LOAD_FACTOR: f64 = 1e6;

/// A snapshot of the queue, for logs and monitoring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueStats {
    /// Requests that may run at once.
    pub workers: usize,
    /// Requests that may wait for a worker; more are refused as busy.
    pub capacity: usize,
    /// Requests running now.
    pub running: usize,
    /// Requests waiting for a worker now.
    pub waiting: usize,
    /// Requests that ran to the end (successfully or not) since start.
    pub served: u64,
    /// Requests refused as busy since start.
    pub refused: u64,
    /// Mean service time of recent requests, ms (EWMA); `None` before the first.
    pub mean_service_ms: Option<f64>,
    /// The load factor λ ≥ 1 (see the module docs).
    pub load_factor: f64,
}

#[derive(Debug)]
struct State {
    admitted: usize,
    running: Vec<(u64, Instant)>,
    next_id: u64,
    served: u64,
    refused: u64,
    mean_service_ms: Option<f64>,
}

#[derive(Debug)]
struct Inner {
    workers: usize,
    capacity: usize,
    slots: Arc<Semaphore>,
    state: Mutex<State>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The queue. Cheap to share: clones refer to the same queue.
#[derive(Debug, Clone)]
pub(crate) struct WorkQueue {
    inner: Arc<Inner>,
}

/// An admitted request that has not started yet. Dropping it gives its place back.
#[derive(Debug)]
pub(crate) struct Admission {
    inner: Arc<Inner>,
}

/// A request holding a worker slot. Dropping it frees the slot and the request's place; call
/// [`Running::finish`] to record its service time first.
#[derive(Debug)]
pub(crate) struct Running {
    admission: Admission,
    id: u64,
    started: Instant,
    _slot: OwnedSemaphorePermit,
}

impl WorkQueue {
    /// A queue with `workers ≥ 1` slots and room for `capacity` waiting requests.
    pub fn new(workers: usize, capacity: usize) -> WorkQueue {
        WorkQueue {
            inner: Arc::new(Inner {
                workers,
                capacity,
                slots: Arc::new(Semaphore::new(workers)),
                state: Mutex::new(State {
                    admitted: 0,
                    running: Vec::new(),
                    next_id: 0,
                    served: 0,
                    refused: 0,
                    mean_service_ms: None,
                }),
            }),
        }
    }

    /// Admits a request, or returns `None` (and counts a refusal) when the queue is full.
    pub fn admit(&self) -> Option<Admission> {
        let mut state = self.inner.state();
        if state.admitted >= self.inner.workers + self.inner.capacity {
            state.refused += 1;
            return None;
        }
        state.admitted += 1;
        Some(Admission {
            inner: self.inner.clone(),
        })
    }

    /// The current snapshot.
    pub fn stats(&self) -> QueueStats {
        let state = self.inner.state();
        let running = state.running.len();
        QueueStats {
            workers: self.inner.workers,
            capacity: self.inner.capacity,
            running,
            waiting: state.admitted.saturating_sub(running),
            served: state.served,
            refused: state.refused,
            mean_service_ms: state.mean_service_ms,
            load_factor: load_factor(&state, self.inner.workers, Instant::now()),
        }
    }
}

/// λ as the module docs define it.
fn load_factor(state: &State, workers: usize, now: Instant) -> f64 {
    let n = state.admitted;
    if n < workers {
        return 1.0;
    }
    let ahead = (n - workers) as f64 / workers as f64;
    let remaining = match (
        state.mean_service_ms,
        state.running.iter().map(|r| r.1).min(),
    ) {
        (Some(mean), Some(oldest)) if mean > 0.0 => {
            let elapsed_ms = now.saturating_duration_since(oldest).as_secs_f64() * 1e3;
            (1.0 - elapsed_ms / mean).max(0.0)
        }
        _ => 1.0,
    };
    (1.0 + ahead + remaining).min(MAX_LOAD_FACTOR)
}

impl Admission {
    /// Waits for a free worker. `None` only if the queue has been shut down (its slots closed),
    /// which this crate never does.
    pub async fn start(self) -> Option<Running> {
        let slot = self.inner.slots.clone().acquire_owned().await.ok()?;
        let started = Instant::now();
        let id = {
            let mut state = self.inner.state();
            let id = state.next_id;
            state.next_id += 1;
            state.running.push((id, started));
            id
        };
        Some(Running {
            admission: self,
            id,
            started,
            _slot: slot,
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut state = self.inner.state();
        state.admitted = state.admitted.saturating_sub(1);
    }
}

impl Running {
    /// Records the service time (from the start to now) and returns it in ms.
    pub fn finish(self) -> f64 {
        let ms = self.started.elapsed().as_secs_f64() * 1e3;
        let mut state = self.admission.inner.state();
        state.served += 1;
        state.mean_service_ms = Some(match state.mean_service_ms {
            None => ms,
            Some(mean) => SERVICE_ALPHA * ms + (1.0 - SERVICE_ALPHA) * mean,
        });
        ms
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut state = self.admission.inner.state();
        state.running.retain(|&(id, _)| id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn state(admitted: usize, running: Vec<(u64, Instant)>, mean: Option<f64>) -> State {
        State {
            admitted,
            running,
            next_id: 0,
            served: 0,
            refused: 0,
            mean_service_ms: mean,
        }
    }

    #[test]
    fn load_factor_follows_the_formula() {
        let now = Instant::now();
        let started = now - Duration::from_millis(25);
        // A free worker: no wait.
        assert_eq!(
            load_factor(&state(1, vec![(0, started)], Some(100.0)), 2, now),
            1.0
        );
        // Both workers busy, the oldest a quarter done, two waiting: 1 + 2/2 + 0.75.
        let busy = state(4, vec![(0, started), (1, now)], Some(100.0));
        assert!((load_factor(&busy, 2, now) - 2.75).abs() < 1e-9);
        // No history yet: a full service time is assumed for the running request.
        assert_eq!(load_factor(&state(1, vec![(0, now)], None), 1, now), 2.0);
        // Overdue requests are about to finish.
        let overdue = state(1, vec![(0, now - Duration::from_secs(1))], Some(100.0));
        assert_eq!(load_factor(&overdue, 1, now), 1.0);
    }

    #[tokio::test]
    async fn full_queue_refuses_and_every_place_comes_back() {
        let queue = WorkQueue::new(1, 1);
        let first = queue.admit().expect("room to run");
        let second = queue.admit().expect("room to wait");
        assert!(
            queue.admit().is_none(),
            "one running and one waiting fill it"
        );
        let running = first.start().await.expect("a slot");
        let stats = queue.stats();
        assert_eq!((stats.running, stats.waiting, stats.refused), (1, 1, 1));
        assert!(stats.load_factor >= 2.0, "{stats:?}");
        running.finish();
        let running = second.start().await.expect("a slot");
        drop(running);
        let stats = queue.stats();
        assert_eq!((stats.running, stats.waiting, stats.served), (0, 0, 1));
        assert_eq!(stats.load_factor, 1.0);
        assert!(stats.mean_service_ms.is_some());
        // A dropped admission gives its place back too.
        drop(queue.admit().expect("room"));
        assert!(queue.admit().is_some() && queue.admit().is_some());
    }
}
