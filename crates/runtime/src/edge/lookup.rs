//! Looking the servers' names up again while a session runs, so that servers added behind a
//! name (a pool scaled up) join the session and servers gone from it leave.
//!
//! Lookups are due per name: every [`crate::EdgeConfig::resolve_interval`], and sooner (after
//! the first reconnect delay) while every server of the name is down. The session checks at
//! each request; due lookups run in the background, one name after another, each within
//! [`LOOKUP_TIMEOUT`](super::pool::LOOKUP_TIMEOUT), and their answers are applied at the next request, so a request never
//! waits for the resolver.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use transport::ClientError;

use super::pool::Servers;

/// The addresses each name looked up stands for now, or why the lookup failed, by the name's
/// index in [`Servers::configs`].
pub(crate) type Found = Vec<(usize, Result<Vec<SocketAddr>, ClientError>)>;

/// When each name was looked up, and the lookups running now.
#[derive(Debug, Default)]
pub(crate) struct Lookups {
    /// When each of the servers' settings was last looked up; `None` for one that gives an
    /// address rather than a name.
    looked_up: Vec<Option<Instant>>,
    /// The lookups running in the background.
    running: Option<JoinHandle<Found>>,
}

impl Lookups {
    /// The schedule for `servers`, every name just looked up at `now`.
    pub fn new(servers: &Servers, now: Instant) -> Lookups {
        Lookups {
            looked_up: (0..servers.configs().len())
                .map(|origin| servers.is_name(origin).then_some(now))
                .collect(),
            running: None,
        }
    }

    /// The answers of the lookups that finished since the last call, if any.
    pub async fn finished(&mut self) -> Option<Found> {
        if !self.running.as_ref()?.is_finished() {
            return None;
        }
        // Finished: awaiting it returns at once (an error only if the task panicked).
        self.running.take()?.await.ok()
    }

    /// Starts looking up, in the background, every name of `servers` that is due at `now`:
    /// after `retry` when `down(origin)` says every server of the name is down, else after
    /// `interval`. Nothing starts while earlier lookups run.
    pub fn start_due(
        &mut self,
        servers: &Servers,
        now: Instant,
        interval: Duration,
        retry: Duration,
        down: impl Fn(usize) -> bool,
    ) {
        if self.running.is_some() {
            return;
        }
        let mut due = Vec::new();
        for (origin, looked_up) in self.looked_up.iter_mut().enumerate() {
            let Some(at) = looked_up else { continue };
            let wait = if down(origin) { retry } else { interval };
            if now.saturating_duration_since(*at) >= wait {
                *looked_up = Some(now);
                due.push(origin);
            }
        }
        if due.is_empty() {
            return;
        }
        let servers = servers.clone();
        self.running = Some(tokio::spawn(async move {
            let mut found = Vec::with_capacity(due.len());
            for origin in due {
                found.push((origin, servers.addresses(origin).await));
            }
            found
        }));
    }
}

impl Drop for Lookups {
    fn drop(&mut self) {
        if let Some(task) = self.running.take() {
            task.abort();
        }
    }
}
