//! The cloud's bounded work queue: admission, worker slots, and the expected wait it reports.
//!
//! A request is first *admitted* (or refused at once when `workers + capacity` requests are
//! already in the system) and holds its place until it is answered ([`Admission`]'s drop).
//! A worker runs one *batch* at a time ([`Running`]): the requests, for the same model and
//! cut, that the batcher (`batch.rs`) put together, at most `B` samples in all (`B = 1`: every
//! request alone).
//!
//! # Expected wait
//!
//! With `w` workers, `n` requests in the system (running and waiting), `q` of them waiting,
//! `B` the batch cap, `d` the batching window, `s̄` the mean service time of recent batches
//! (EWMA, α = 0.3; loading a model is not service) and `e` the time the longest-running batch
//! has run (between two batches, when none runs, the remainder `max(0, s̄ − e)` is 0):
//!
//! ```text
//! W = d′                                        when n < w (a worker is free)
//! W = max(0, s̄ − e) + ⌊q/B⌋/w · s̄               otherwise
//! ```
//!
//! where `d′` is the window a leader waits now ([`WorkQueue::window_ms`]): `d` while the last
//! batch formed served more than one request (other edges are about), else 0, so that a lone
//! edge never waits for companions that do not come. A request that finds a worker free waits
//! at most that window for companions. Otherwise it
//! waits for the first running batch to finish (about `s̄ − e`) and then for the full batches
//! ahead of it, which `w` workers clear in `⌊q/B⌋·s̄/w`; it rides in the first batch with room.
//! With `B = 1` this is the unbatched queue's formula, `(n − w)/w · s̄`. The count is in
//! requests (most carry one sample), and it assumes the waiting requests can share a batch:
//! requests for different models or cuts cannot, so under such a mix the figure is low. The
//! cost model adds W once to every plan that uses the cloud; it does not scale the layers.
//! Before any batch has finished, `s̄` is taken as `e`; before any has started, `W = 0`.

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
    /// Batches that may run at once.
    pub workers: usize,
    /// Requests that may wait for a worker; more are refused as busy.
    pub capacity: usize,
    /// Most samples in one batch (1: batching off).
    pub batch_max: usize,
    /// Requests running now (in the batches the workers run).
    pub running: usize,
    /// Requests waiting for a worker now.
    pub waiting: usize,
    /// Requests that ran to the end (successfully or not) since start.
    pub served: u64,
    /// Batches that ran to the end since start (a request alone is a batch of one).
    pub batches: u64,
    /// The most requests one batch has served since start.
    pub largest_batch: usize,
    /// Requests refused as busy since start.
    pub refused: u64,
    /// Mean service time of recent batches, ms (EWMA); `None` before the first.
    pub mean_service_ms: Option<f64>,
    /// The expected wait of a request that arrives now, ms (see the module docs).
    pub wait_ms: f64,
}

/// A batch on a worker: its id, when its service clock started, and how many requests it serves.
#[derive(Debug, Clone, Copy)]
struct OnWorker {
    id: u64,
    started: Instant,
    requests: usize,
}

#[derive(Debug)]
struct State {
    admitted: usize,
    running: Vec<OnWorker>,
    next_id: u64,
    served: u64,
    batches: u64,
    largest_batch: usize,
    refused: u64,
    mean_service_ms: Option<f64>,
    /// Requests in the last batch formed (0 before the first).
    last_batch: usize,
}

impl State {
    fn running_requests(&self) -> usize {
        self.running.iter().map(|r| r.requests).sum()
    }
}

/// How the queue reports: workers, waiting room and the batcher's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueShape {
    /// Batches that run at once (≥ 1).
    pub workers: usize,
    /// Requests that may wait.
    pub capacity: usize,
    /// Most samples in one batch (≥ 1).
    pub batch_max: usize,
    /// The batching window, ms (what a request that finds a worker free may wait).
    pub batch_wait_ms: f64,
}

#[derive(Debug)]
struct Inner {
    shape: QueueShape,
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

/// An admitted request's place in the system. Dropping it gives the place back.
#[derive(Debug)]
pub(crate) struct Admission {
    inner: Arc<Inner>,
}

/// A batch holding a worker slot. Dropping it frees the slot; call [`Running::finish`] to
/// record its service time first.
#[derive(Debug)]
pub(crate) struct Running {
    inner: Arc<Inner>,
    id: u64,
    started: Instant,
    requests: usize,
    _slot: OwnedSemaphorePermit,
}

impl WorkQueue {
    /// A queue of this shape.
    pub fn new(shape: QueueShape) -> WorkQueue {
        WorkQueue {
            inner: Arc::new(Inner {
                shape,
                slots: Arc::new(Semaphore::new(shape.workers)),
                state: Mutex::new(State {
                    admitted: 0,
                    running: Vec::new(),
                    next_id: 0,
                    served: 0,
                    batches: 0,
                    largest_batch: 0,
                    refused: 0,
                    mean_service_ms: None,
                    last_batch: 0,
                }),
            }),
        }
    }

    /// Admits a request, or returns `None` (and counts a refusal) when the queue is full.
    pub fn admit(&self) -> Option<Admission> {
        let mut state = self.inner.state();
        let shape = self.inner.shape;
        if state.admitted >= shape.workers + shape.capacity {
            state.refused += 1;
            return None;
        }
        state.admitted += 1;
        Some(Admission {
            inner: self.inner.clone(),
        })
    }

    /// Waits for a free worker, for a batch of (so far) one request. `None` only if the queue
    /// has been shut down (its slots closed), which this crate never does.
    pub async fn worker(&self) -> Option<Running> {
        let slot = self.inner.slots.clone().acquire_owned().await.ok()?;
        let started = Instant::now();
        let id = {
            let mut state = self.inner.state();
            let id = state.next_id;
            state.next_id += 1;
            state.running.push(OnWorker {
                id,
                started,
                requests: 1,
            });
            id
        };
        Some(Running {
            inner: self.inner.clone(),
            id,
            started,
            requests: 1,
            _slot: slot,
        })
    }

    /// How long a request that gets a free worker now waits, from its arrival, for companions,
    /// ms: the batching window while the last batch formed served more than one request, else
    /// 0 (see the module docs).
    pub fn window_ms(&self) -> f64 {
        window_ms(&self.inner.state(), self.inner.shape)
    }

    /// The current snapshot.
    pub fn stats(&self) -> QueueStats {
        let state = self.inner.state();
        let shape = self.inner.shape;
        let running = state.running_requests();
        QueueStats {
            workers: shape.workers,
            capacity: shape.capacity,
            batch_max: shape.batch_max,
            running,
            waiting: state.admitted.saturating_sub(running),
            served: state.served,
            batches: state.batches,
            largest_batch: state.largest_batch,
            refused: state.refused,
            mean_service_ms: state.mean_service_ms,
            wait_ms: expected_wait_ms(&state, shape, Instant::now()),
        }
    }
}

/// The batching window that applies now, ms.
fn window_ms(state: &State, shape: QueueShape) -> f64 {
    if shape.batch_max > 1 && state.last_batch > 1 {
        shape.batch_wait_ms
    } else {
        0.0
    }
}

/// The expected wait of a request that arrives now before a worker takes it, ms (the module
/// docs give the formula). Before any batch has finished, s̄ is taken as the time the oldest
/// has run.
fn expected_wait_ms(state: &State, shape: QueueShape, now: Instant) -> f64 {
    let n = state.admitted;
    if n < shape.workers {
        return window_ms(state, shape).min(MAX_WAIT_MS);
    }
    // No batch on a worker is a moment between two batches, or before the first: nothing
    // has run, and the requests ahead each take a whole service time.
    let oldest = state.running.iter().map(|r| r.started).min();
    let elapsed_ms = oldest.map_or(0.0, |t| {
        now.saturating_duration_since(t).as_secs_f64() * 1e3
    });
    let Some(mean) = state.mean_service_ms.or(oldest.map(|_| elapsed_ms)) else {
        // Nothing has run or is running: no service time to go by yet.
        return 0.0;
    };
    let waiting = n.saturating_sub(state.running_requests());
    let batches_ahead = (waiting / shape.batch_max) as f64 / shape.workers as f64;
    let remaining = oldest.map_or(0.0, |_| (mean - elapsed_ms).max(0.0));
    (remaining + batches_ahead * mean).min(MAX_WAIT_MS)
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut state = self.inner.state();
        state.admitted = state.admitted.saturating_sub(1);
    }
}

impl Running {
    /// Starts the service clock again: what came before (loading the model for a first
    /// request, waiting for companions) is not service, and stays out of the mean.
    pub fn restart_clock(&mut self) {
        let now = Instant::now();
        self.started = now;
        self.update(|r| r.started = now);
    }

    /// When the service clock started (the worker taken, or [`Running::restart_clock`]): the
    /// end of the batch's members' time in the queue.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The batch is formed and serves `requests` requests (counted as running, no longer
    /// waiting); its size decides the next window.
    pub fn set_requests(&mut self, requests: usize) {
        self.requests = requests;
        self.update(|r| r.requests = requests);
        self.inner.state().last_batch = requests;
    }

    fn update(&self, change: impl FnOnce(&mut OnWorker)) {
        let mut state = self.inner.state();
        if let Some(entry) = state.running.iter_mut().find(|r| r.id == self.id) {
            change(entry);
        }
    }

    /// Records the service time (from the start to now) and returns it in ms.
    pub fn finish(self) -> f64 {
        let ms = self.started.elapsed().as_secs_f64() * 1e3;
        let mut state = self.inner.state();
        state.served += self.requests as u64;
        state.batches += 1;
        state.largest_batch = state.largest_batch.max(self.requests);
        state.mean_service_ms = Some(match state.mean_service_ms {
            None => ms,
            Some(mean) => SERVICE_ALPHA * ms + (1.0 - SERVICE_ALPHA) * mean,
        });
        ms
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut state = self.inner.state();
        state.running.retain(|r| r.id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn shape(workers: usize, batch_max: usize) -> QueueShape {
        QueueShape {
            workers,
            capacity: 1,
            batch_max,
            batch_wait_ms: 2.0,
        }
    }

    fn on_worker(id: u64, started: Instant, requests: usize) -> OnWorker {
        OnWorker {
            id,
            started,
            requests,
        }
    }

    fn state(admitted: usize, running: Vec<OnWorker>, mean: Option<f64>) -> State {
        State {
            admitted,
            running,
            next_id: 0,
            served: 0,
            batches: 0,
            largest_batch: 0,
            refused: 0,
            mean_service_ms: mean,
            last_batch: 0,
        }
    }

    #[test]
    fn the_expected_wait_follows_the_formula() {
        let now = Instant::now();
        let started = now - Duration::from_millis(25);
        let wait = |s: &State, workers| expected_wait_ms(s, shape(workers, 1), now);
        // A free worker: no wait.
        let one = vec![on_worker(0, started, 1)];
        assert_eq!(wait(&state(1, one.clone(), Some(100.0)), 2), 0.0);
        // Both workers busy (the oldest 25 ms into 100), two waiting: 75 + 2/2 × 100.
        let both = vec![on_worker(0, started, 1), on_worker(1, now, 1)];
        assert!((wait(&state(4, both, Some(100.0)), 2) - 175.0).abs() < 1e-6);
        // Nothing finished yet: the oldest's run so far stands for the service time.
        assert!((wait(&state(2, one, None), 1) - 25.0).abs() < 1e-6);
        // Between two batches (one finished, the next not yet on the worker), the three
        // waiting are all ahead: 3 × 100.
        assert!((wait(&state(3, vec![], Some(100.0)), 1) - 300.0).abs() < 1e-6);
        // Nothing run or running yet: no figure to go by.
        assert_eq!(wait(&state(3, vec![], None), 1), 0.0);
        // A request running past the mean leaves no remainder.
        let overdue = vec![on_worker(0, now - Duration::from_secs(1), 1)];
        assert_eq!(wait(&state(1, overdue, Some(100.0)), 1), 0.0);
    }

    #[test]
    fn the_expected_wait_counts_full_batches_ahead() {
        let now = Instant::now();
        let started = now - Duration::from_millis(25);
        // A batch of 3 running, 9 waiting, batches of 4: two full batches ahead, then ours.
        let running = vec![on_worker(0, started, 3)];
        let busy = state(12, running, Some(100.0));
        assert!((expected_wait_ms(&busy, shape(1, 4), now) - 275.0).abs() < 1e-6);
        // Three waiting fit the next batch: only the running one's remainder.
        let light = state(6, vec![on_worker(0, started, 3)], Some(100.0));
        assert!((expected_wait_ms(&light, shape(1, 4), now) - 75.0).abs() < 1e-6);
        // A free worker: no wait while the last batch ran alone, at most the window while
        // other edges are about.
        let mut idle = state(0, vec![], None);
        idle.last_batch = 1;
        assert_eq!(expected_wait_ms(&idle, shape(1, 4), now), 0.0);
        idle.last_batch = 3;
        assert_eq!(expected_wait_ms(&idle, shape(1, 4), now), 2.0);
        assert_eq!(
            expected_wait_ms(&idle, shape(1, 1), now),
            0.0,
            "batching off"
        );
    }

    #[tokio::test]
    async fn full_queue_refuses_and_every_place_comes_back() {
        let queue = WorkQueue::new(shape(1, 1));
        let first = queue.admit().expect("room to run");
        let second = queue.admit().expect("room to wait");
        assert!(
            queue.admit().is_none(),
            "one running and one waiting fill it"
        );
        let running = queue.worker().await.expect("a slot");
        let stats = queue.stats();
        assert_eq!((stats.running, stats.waiting, stats.refused), (1, 1, 1));
        assert!(stats.wait_ms >= 0.0, "{stats:?}");
        running.finish();
        drop(first);
        let mut running = queue.worker().await.expect("a slot");
        running.set_requests(1);
        drop(running);
        drop(second);
        let stats = queue.stats();
        assert_eq!((stats.running, stats.waiting, stats.served), (0, 0, 1));
        assert_eq!((stats.batches, stats.largest_batch), (1, 1));
        assert_eq!(stats.wait_ms, 0.0);
        assert!(stats.mean_service_ms.is_some());
        // A dropped admission gives its place back too.
        drop(queue.admit().expect("room"));
        assert!(queue.admit().is_some() && queue.admit().is_some());
    }

    #[tokio::test]
    async fn a_batch_counts_its_requests_as_running_and_served() {
        let queue = WorkQueue::new(QueueShape {
            capacity: 4,
            ..shape(1, 4)
        });
        let places: Vec<_> = (0..3).map(|_| queue.admit().expect("room")).collect();
        let mut running = queue.worker().await.expect("a slot");
        assert_eq!((queue.stats().running, queue.stats().waiting), (1, 2));
        assert_eq!(queue.window_ms(), 0.0, "no batch with companions yet");
        running.set_requests(3);
        assert_eq!((queue.stats().running, queue.stats().waiting), (3, 0));
        assert_eq!(queue.window_ms(), 2.0);
        running.finish();
        drop(places);
        let stats = queue.stats();
        assert_eq!(
            (stats.served, stats.batches, stats.largest_batch),
            (3, 1, 3)
        );
    }
}
