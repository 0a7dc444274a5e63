//! The cloud's bounded work queue: admission, worker slots, and the expected wait it reports.
//!
//! A request is first *admitted* (or refused at once when `workers + capacity` requests are
//! already in the system), then waits for one of `workers` slots, then runs. Every admitted
//! request leaves through [`Running`]'s drop, whatever happens to it, so the counts never leak.
//!
//! # Expected wait
//!
//! With `w` workers, `n` requests in the system (running and waiting), `s̄` the mean service
//! time of recent requests (EWMA, α = 0.3; loading a model is not service) and `e` the time the
//! longest-running request has run:
//!
//! ```text
//! W = 0                                        when n < w (a worker is free)
//! W = max(0, s̄ − e) + (n − w)/w · s̄            otherwise
//! ```
//!
//! A new request waits for the first running request to finish (about `s̄ − e`) and then for
//! the `n − w` requests ahead of it, which `w` workers clear in `(n − w)·s̄/w`. The cost model
//! adds W once to every plan that uses the cloud; it does not scale the layers. Before any
//! request has finished, `s̄` is taken as `e`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Weight of a new service time in the mean.
const SERVICE_ALPHA: f64 = 0.3;

/// The largest wait reported, ms (the protocol's bound on a figure).
const MAX_WAIT_MS: f64 = transport::MAX_FIGURE_MS;

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
    /// The expected wait of a request that arrives now, ms (see the module docs).
    pub wait_ms: f64,
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
            wait_ms: expected_wait_ms(&state, self.inner.workers, Instant::now()),
        }
    }
}

/// The expected wait of a request that arrives now before a worker takes it, ms: none while
/// a worker is free; else what is left of the oldest running request (its expected service
/// time s̄ less what it has run, at least 0) plus s̄ for every `workers` requests ahead of it
/// ((n − w)/w). Before any request has finished, s̄ is taken as the time the oldest has run.
fn expected_wait_ms(state: &State, workers: usize, now: Instant) -> f64 {
    let n = state.admitted;
    if n < workers {
        return 0.0;
    }
    let Some(oldest) = state.running.iter().map(|r| r.1).min() else {
        // Everyone admitted is still between admission and a worker: a moment.
        return 0.0;
    };
    let elapsed_ms = now.saturating_duration_since(oldest).as_secs_f64() * 1e3;
    let mean = state.mean_service_ms.unwrap_or(elapsed_ms);
    let ahead = (n - workers) as f64 / workers as f64;
    let remaining = (mean - elapsed_ms).max(0.0);
    (remaining + ahead * mean).min(MAX_WAIT_MS)
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
    /// Starts the service clock again: what came before (loading the model for a first
    /// request) is not service, and stays out of the mean.
    pub fn restart_clock(&mut self) {
        let now = Instant::now();
        self.started = now;
        let mut state = self.admission.inner.state();
        if let Some(entry) = state.running.iter_mut().find(|r| r.0 == self.id) {
            entry.1 = now;
        }
    }

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
    fn the_expected_wait_follows_the_formula() {
        let now = Instant::now();
        let started = now - Duration::from_millis(25);
        let wait = |s: &State, workers| expected_wait_ms(s, workers, now);
        // A free worker: no wait.
        assert_eq!(wait(&state(1, vec![(0, started)], Some(100.0)), 2), 0.0);
        // Both workers busy (the oldest 25 ms into 100), two waiting: 75 + 2/2 × 100.
        let busy = state(4, vec![(0, started), (1, now)], Some(100.0));
        assert!((wait(&busy, 2) - 175.0).abs() < 1e-6);
        // Nothing finished yet: the oldest's run so far stands for the service time.
        let first = state(2, vec![(0, started)], None);
        assert!((wait(&first, 1) - 25.0).abs() < 1e-6);
        // A request running past the mean leaves no remainder.
        let overdue = state(1, vec![(0, now - Duration::from_secs(1))], Some(100.0));
        assert_eq!(wait(&overdue, 1), 0.0);
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
        assert!(stats.wait_ms >= 0.0, "{stats:?}");
        running.finish();
        let running = second.start().await.expect("a slot");
        drop(running);
        let stats = queue.stats();
        assert_eq!((stats.running, stats.waiting, stats.served), (0, 0, 1));
        assert_eq!(stats.wait_ms, 0.0);
        assert!(stats.mean_service_ms.is_some());
        // A dropped admission gives its place back too.
        drop(queue.admit().expect("room"));
        assert!(queue.admit().is_some() && queue.admit().is_some());
    }
}
