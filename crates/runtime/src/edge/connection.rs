//! The edge's connection to the cloud: usable or not, and reconnecting in the background after
//! a fault so that later requests use the cloud again.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use transport::{Client, ClientConfig, ClientError};

/// What the background task and the session share.
#[derive(Debug, Default)]
struct State {
    /// The client of the last successful connection (kept when it fails, for its estimate).
    client: Option<Arc<Client>>,
    /// Whether requests may use `client`.
    healthy: bool,
    /// Why the cloud is not usable, when it is not.
    last_error: Option<String>,
    /// Whether a reconnect task is running.
    retrying: bool,
    /// Counts successful connections, so the session notices a reconnect.
    generation: u64,
}

/// Delays between reconnect attempts: `first`, doubling up to `max`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

/// A connection that may be down, with its reconnect task.
#[derive(Debug)]
pub(crate) struct CloudLink {
    config: ClientConfig,
    backoff: Backoff,
    shared: Arc<Mutex<State>>,
    task: Option<JoinHandle<()>>,
}

fn lock(shared: &Mutex<State>) -> MutexGuard<'_, State> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Errors that another attempt cannot fix: the server refused us or is not who it should be.
fn is_permanent(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Unauthorized(_)
            | ClientError::VersionMismatch(_)
            | ClientError::FingerprintChanged { .. }
            | ClientError::FingerprintMismatch { .. }
            | ClientError::Identity(_)
            | ClientError::Estimator(_)
    )
}

impl CloudLink {
    /// Connects now. On a fault that may pass (unreachable, timeout) the link starts
    /// reconnecting in the background; on a refusal it does not. The error, if any, is returned
    /// beside the link.
    pub async fn connect(
        config: ClientConfig,
        backoff: Backoff,
    ) -> (CloudLink, Result<(), ClientError>) {
        let mut link = CloudLink {
            config,
            backoff,
            shared: Arc::new(Mutex::new(State::default())),
            task: None,
        };
        let result = match Client::connect(link.config.clone()).await {
            Ok(client) => {
                let mut state = lock(&link.shared);
                state.client = Some(Arc::new(client));
                state.healthy = true;
                state.generation += 1;
                Ok(())
            }
            Err(e) => {
                let permanent = is_permanent(&e);
                link.down(e.to_string(), !permanent);
                Err(e)
            }
        };
        (link, result)
    }

    /// A link that starts connecting now, in the background (retrying as after a fault), and
    /// is not usable until it has: for a server that joins a running session.
    pub fn connect_later(config: ClientConfig, backoff: Backoff) -> CloudLink {
        let mut link = CloudLink {
            config,
            backoff,
            shared: Arc::new(Mutex::new(State::default())),
            task: None,
        };
        link.mark_down("not connected yet".into(), Some(Duration::ZERO));
        link
    }

    /// The client when requests may use it. A connection found closed is marked down (and a
    /// reconnect starts) here.
    pub fn usable(&mut self) -> Option<(Arc<Client>, u64)> {
        let (client, generation) = {
            let state = lock(&self.shared);
            match (&state.client, state.healthy) {
                (Some(client), true) => (client.clone(), state.generation),
                _ => return None,
            }
        };
        if client.is_closed() {
            self.down("the connection was closed".into(), true);
            return None;
        }
        Some((client, generation))
    }

    /// The last client, usable or not, for its link estimate.
    pub fn last_client(&self) -> Option<Arc<Client>> {
        lock(&self.shared).client.clone()
    }

    /// Whether requests may use the cloud now.
    pub fn is_healthy(&self) -> bool {
        let state = lock(&self.shared);
        state.healthy && state.client.as_ref().is_some_and(|c| !c.is_closed())
    }

    /// Why the cloud is not usable, when it is not.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared).last_error.clone()
    }

    /// Marks the connection down after a fault, and reconnects in the background when
    /// `retry` is set (and no reconnect is running yet).
    pub fn down(&mut self, reason: String, retry: bool) {
        self.mark_down(reason, retry.then_some(self.backoff.first));
    }

    /// Marks the connection down, and reconnects in the background after `first_attempt`
    /// when given (and no reconnect is running yet).
    fn mark_down(&mut self, reason: String, first_attempt: Option<Duration>) {
        let retry = first_attempt.is_some();
        let start = {
            let mut state = lock(&self.shared);
            state.healthy = false;
            state.last_error = Some(reason);
            let start = retry && !state.retrying;
            state.retrying |= start;
            start
        };
        if start {
            self.task = Some(tokio::spawn(reconnect(
                self.config.clone(),
                self.backoff,
                first_attempt.unwrap_or(self.backoff.first),
                self.shared.clone(),
            )));
        }
    }
}

impl Drop for CloudLink {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(client) = lock(&self.shared).client.take() {
            client.close();
        }
    }
}

/// Reconnects, the first attempt after `first_attempt`, then with exponential backoff, until
/// it succeeds or the server refuses us.
async fn reconnect(
    config: ClientConfig,
    backoff: Backoff,
    first_attempt: Duration,
    shared: Arc<Mutex<State>>,
) {
    let mut delay = first_attempt;
    loop {
        tokio::time::sleep(delay).await;
        let existing = lock(&shared).client.clone();
        let attempt = match existing {
            Some(client) => client.reconnect().await.map(|()| client),
            None => Client::connect(config.clone()).await.map(Arc::new),
        };
        let mut state = lock(&shared);
        match attempt {
            Ok(client) => {
                info!(server = %config.server, address = ?config.address, "reconnected to the cloud");
                state.client = Some(client);
                state.healthy = true;
                state.last_error = None;
                state.retrying = false;
                state.generation += 1;
                return;
            }
            Err(e) if is_permanent(&e) => {
                warn!(server = %config.server, address = ?config.address, error = %e, "the cloud refused the reconnect; giving up");
                state.last_error = Some(e.to_string());
                state.retrying = false;
                return;
            }
            Err(e) => {
                debug!(server = %config.server, address = ?config.address, error = %e, ?delay, "reconnect failed; will retry");
                state.last_error = Some(e.to_string());
                delay = (delay * 2).max(backoff.first).min(backoff.max);
            }
        }
    }
}
