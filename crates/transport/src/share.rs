//! Uploads that share one link: how many were in flight, on average, while each was sent.
//!
//! A client's uplink sample is its own frame's bytes over the span the server saw them in.
//! When several clients of one device upload at once over one bottleneck (the lanes of a
//! pipelined stream), each frame gets only its share of the link, and each sample reads as
//! that share. Clients given one [`LinkShare`] mark their uploads in it; an upload's sample is
//! scaled by the mean number of uploads in flight while it was sent (itself included), which
//! is the link's rate when the uploads share it evenly, as congestion control makes them do.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The uploads in flight over one link, shared by the clients that use it.
#[derive(Debug)]
pub struct LinkShare {
    state: Mutex<Flight>,
}

/// Uploads in flight and their running time integral.
#[derive(Debug)]
struct Flight {
    in_flight: u32,
    /// ∫ in_flight dt, in upload-seconds, up to `since`.
    integral: f64,
    since: Instant,
}

impl Flight {
    /// Brings the integral up to `now`.
    fn advance(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.since).as_secs_f64();
        self.integral += f64::from(self.in_flight) * dt;
        self.since = now;
    }
}

impl LinkShare {
    /// A link with nothing in flight.
    pub fn new() -> Arc<LinkShare> {
        Arc::new(LinkShare {
            state: Mutex::new(Flight {
                in_flight: 0,
                integral: 0.0,
                since: Instant::now(),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, Flight> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks an upload as started; it ends when the returned [`Upload`] finishes or drops.
    pub fn begin(self: &Arc<Self>) -> Upload {
        let now = Instant::now();
        let mut state = self.state();
        state.advance(now);
        state.in_flight += 1;
        Upload {
            share: self.clone(),
            started: now,
            integral: state.integral,
            open: true,
        }
    }

    /// Uploads in flight now.
    pub fn in_flight(&self) -> u32 {
        self.state().in_flight
    }
}

/// One upload in flight over a [`LinkShare`].
#[derive(Debug)]
pub struct Upload {
    share: Arc<LinkShare>,
    started: Instant,
    integral: f64,
    open: bool,
}

impl Upload {
    /// Ends the upload and returns the mean number of uploads in flight while it was, itself
    /// included (1 when it was alone; 1 for an upload too short to measure).
    pub fn finish(mut self) -> f64 {
        self.end()
    }

    fn end(&mut self) -> f64 {
        if !self.open {
            return 1.0;
        }
        self.open = false;
        let now = Instant::now();
        let mut state = self.share.state();
        state.advance(now);
        state.in_flight = state.in_flight.saturating_sub(1);
        let span = now.saturating_duration_since(self.started).as_secs_f64();
        if span <= 0.0 {
            return 1.0;
        }
        ((state.integral - self.integral) / span).max(1.0)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_upload_alone_has_the_link_to_itself() {
        let share = LinkShare::new();
        let upload = share.begin();
        std::thread::sleep(Duration::from_millis(20));
        assert!((upload.finish() - 1.0).abs() < 1e-9);
        assert_eq!(share.in_flight(), 0);
    }

    #[test]
    fn overlapping_uploads_count_each_other_for_the_time_they_overlap() {
        let share = LinkShare::new();
        let start = Instant::now();
        let first = share.begin();
        std::thread::sleep(Duration::from_millis(60));
        let joined = Instant::now();
        let second = share.begin();
        assert_eq!(share.in_flight(), 2);
        std::thread::sleep(Duration::from_millis(60));
        let first = first.finish();
        let together = joined.elapsed().as_secs_f64();
        let alone = (joined - start).as_secs_f64();
        let second = second.finish();
        // The first had company for the time after `joined`; the second always had it.
        let expected = (alone + 2.0 * together) / (alone + together);
        assert!(
            (first - expected).abs() < 0.05,
            "{first} against {expected}"
        );
        assert!(second > 1.9, "{second}");
        assert_eq!(share.in_flight(), 0);
    }

    #[test]
    fn an_upload_dropped_unfinished_leaves_the_flight() {
        let share = LinkShare::new();
        drop(share.begin());
        assert_eq!(share.in_flight(), 0);
        let alone = share.begin();
        std::thread::sleep(Duration::from_millis(5));
        assert!((alone.finish() - 1.0).abs() < 1e-9);
    }
}
