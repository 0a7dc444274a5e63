//! A load generator: many edge sessions in one process, each with its own connections to one
//! cloud server or a pool of them, each sending its requests one after another (a closed loop), and a
//! [`LoadReport`] of what came back: throughput, latency percentiles, busy answers, fallbacks,
//! and lost or wrong results. Every output is checked against a local run of the same input.
//!
//! The run is bounded in count (`clients × requests`) and in time ([`LoadConfig::timeout`]):
//! once the time is up, requests in flight are cut off and counted lost, and requests not yet
//! sent are counted apart.

use std::time::{Duration, Instant};

use models::{HostTensor, relative_difference, seeded_input};
use runtime::{EdgeSession, Outcome, RuntimeError, Servers};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::error::LabError;

/// What a load run sends.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Concurrent edge sessions, each with its own connection, at most [`MAX_CLIENTS`].
    /// Default 8.
    pub clients: usize,
    /// Requests each session sends, one after another, after one unmeasured warm-up request.
    /// Default 100.
    pub requests: usize,
    /// The whole run's time limit, warm-up included. Default [`DEFAULT_LOAD_TIMEOUT`].
    pub timeout: Duration,
    /// Largest relative difference from the local run for a result to count as right.
    /// Default 1e-4.
    pub tolerance: f64,
}

/// The default time limit of a load run.
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(300);

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            clients: 8,
            requests: 100,
            timeout: DEFAULT_LOAD_TIMEOUT,
            tolerance: 1e-4,
        }
    }
}

/// Most concurrent sessions a run makes: a server's default connection limit.
pub const MAX_CLIENTS: usize = 1024;

/// Distinct inputs the sessions cycle through (each with its local reference output).
const INPUTS: usize = 8;

/// Latency of the answered requests, measured around each request by the client, ms.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencyMs {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

/// What a load run measured.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LoadReport {
    /// The model.
    pub model: String,
    /// The sessions' split mode (`auto`, `cloud`, …).
    pub split: String,
    /// Concurrent sessions.
    pub clients: usize,
    /// Requests each session was to send.
    pub requests_per_client: usize,
    /// Requests sent (warm-ups not counted).
    pub sent: u64,
    /// Requests answered with an output.
    pub answered: u64,
    /// Answered with a cloud part run by the server.
    pub in_cloud: u64,
    /// Answered on the edge alone because the planner chose it.
    pub edge_only: u64,
    /// Answered on the edge because the cloud could not serve them (busy included).
    pub fallbacks: u64,
    /// Of the fallbacks, those the server answered as busy.
    pub busy: u64,
    /// Sent and never answered: an error, or cut off by the time limit.
    pub lost: u64,
    /// Answered with an output farther than the tolerance from the local run.
    pub wrong: u64,
    /// Not sent because the time limit came first.
    pub not_sent: u64,
    /// Whether the time limit cut the run short.
    pub timed_out: bool,
    /// From the first request sent to the last answer, s.
    pub elapsed_s: f64,
    /// Answered requests per second.
    pub throughput_rps: f64,
    /// Requests per second answered with a cloud part run by the server.
    pub cloud_rps: f64,
    /// Latency of the answered requests.
    pub latency_ms: LatencyMs,
    /// The distinct errors behind lost requests (at most a few).
    pub errors: Vec<String>,
}

/// Most distinct errors a report keeps.
const MAX_ERRORS: usize = 5;

/// One session's tally.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    in_cloud: u64,
    edge_only: u64,
    fallbacks: u64,
    busy: u64,
    lost: u64,
    wrong: u64,
    latencies_ms: Vec<f64>,
    errors: Vec<String>,
}

impl Tally {
    fn record(&mut self, outcome: &Outcome, expected: &HostTensor, tolerance: f64) {
        match outcome.fallback.as_deref() {
            Some(reason) => {
                self.fallbacks += 1;
                // The session's wording for a `Busy` answer.
                if reason.starts_with("the cloud is busy") {
                    self.busy += 1;
                }
            }
            None if outcome.cut_kind() == "edge-only" => self.edge_only += 1,
            None => self.in_cloud += 1,
        }
        if relative_difference(&outcome.output, expected) > tolerance {
            self.wrong += 1;
        }
    }

    fn lose(&mut self, error: String) {
        self.lost += 1;
        if self.errors.len() < MAX_ERRORS && !self.errors.contains(&error) {
            self.errors.push(error);
        }
    }

    fn add(&mut self, other: Tally) {
        self.sent += other.sent;
        self.in_cloud += other.in_cloud;
        self.edge_only += other.edge_only;
        self.fallbacks += other.fallbacks;
        self.busy += other.busy;
        self.lost += other.lost;
        self.wrong += other.wrong;
        self.latencies_ms.extend(other.latencies_ms);
        for error in other.errors {
            if self.errors.len() < MAX_ERRORS && !self.errors.contains(&error) {
                self.errors.push(error);
            }
        }
    }
}

/// Runs `config.clients` sessions made by `make_session`, each with connections of its own to
/// the `servers` (one server or a pool; the sessions share its count of requests in flight, so
/// they spread over a pool), `config.requests` requests each after one unmeasured warm-up, and
/// reports what came back.
///
/// The sessions should share one model; the inputs are that model's seeded inputs, and the
/// reference outputs are the first session's model run locally. Fails when a setting is out of
/// range or a session cannot be made or connected.
pub async fn run_load(
    mut make_session: impl FnMut() -> Result<EdgeSession, LabError>,
    servers: &Servers,
    config: &LoadConfig,
) -> Result<LoadReport, LabError> {
    check(config)?;
    let deadline = tokio::time::Instant::now() + config.timeout;
    let mut sessions = Vec::with_capacity(config.clients);
    for _ in 0..config.clients {
        sessions.push(make_session()?);
    }
    let (model_id, split) = (
        sessions[0].model().net().name().to_string(),
        sessions[0].config().split.to_string(),
    );
    let cases = std::sync::Arc::new(references(&sessions[0])?);

    // The first connects alone, so that a server seen for the first time is pinned once.
    let mut sessions = sessions.into_iter();
    let mut first = sessions.next().ok_or(LabError::Config {
        name: "clients",
        reason: "must be at least 1".into(),
    })?;
    first.connect(servers.clone()).await?;
    let mut connecting = JoinSet::new();
    for mut session in sessions {
        let servers = servers.clone();
        connecting.spawn(async move { session.connect(servers).await.map(|()| session) });
    }
    let mut sessions = vec![first];
    while let Some(joined) = connecting.join_next().await {
        sessions.push(joined.map_err(|e| LabError::Task(e.to_string()))??);
    }

    // One warm-up each, together: the model loads on the server, the links are measured.
    let mut running = JoinSet::new();
    for (i, mut session) in sessions.into_iter().enumerate() {
        let cases = cases.clone();
        let (requests, tolerance) = (config.requests, config.tolerance);
        running.spawn(async move {
            let (input, _) = &cases[i % INPUTS];
            let _ = tokio::time::timeout_at(deadline, session.infer(input.clone())).await;
            (session, i, requests, tolerance)
        });
    }
    let mut warm = Vec::with_capacity(config.clients);
    while let Some(joined) = running.join_next().await {
        warm.push(joined.map_err(|e| LabError::Task(e.to_string()))?);
    }

    let started = Instant::now();
    let mut clients = JoinSet::new();
    for (mut session, i, requests, tolerance) in warm {
        let cases = cases.clone();
        clients.spawn(async move {
            let mut tally = Tally::default();
            for j in 0..requests {
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
                let (input, expected) = &cases[(i + j) % INPUTS];
                tally.sent += 1;
                let sent = Instant::now();
                match tokio::time::timeout_at(deadline, session.infer(input.clone())).await {
                    Ok(Ok(outcome)) => {
                        tally.latencies_ms.push(sent.elapsed().as_secs_f64() * 1e3);
                        tally.record(&outcome, expected, tolerance);
                    }
                    Ok(Err(e)) => tally.lose(e.to_string()),
                    Err(_) => tally.lose("cut off by the run's time limit".into()),
                }
            }
            tally
        });
    }
    let mut total = Tally::default();
    while let Some(joined) = clients.join_next().await {
        total.add(joined.map_err(|e| LabError::Task(e.to_string()))?);
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let planned = (config.clients as u64).saturating_mul(config.requests as u64);
    let answered = total.latencies_ms.len() as u64;
    let per_s = |n: u64| {
        if elapsed_s > 0.0 {
            n as f64 / elapsed_s
        } else {
            0.0
        }
    };
    Ok(LoadReport {
        model: model_id,
        split,
        clients: config.clients,
        requests_per_client: config.requests,
        sent: total.sent,
        answered,
        in_cloud: total.in_cloud,
        edge_only: total.edge_only,
        fallbacks: total.fallbacks,
        busy: total.busy,
        lost: total.lost,
        wrong: total.wrong,
        not_sent: planned - total.sent,
        timed_out: tokio::time::Instant::now() >= deadline,
        elapsed_s,
        throughput_rps: per_s(answered),
        cloud_rps: per_s(total.in_cloud),
        latency_ms: latency(total.latencies_ms),
        errors: total.errors,
    })
}

/// The inputs the sessions send, each with the output of the whole model run here.
fn references(session: &EdgeSession) -> Result<Vec<(HostTensor, HostTensor)>, RuntimeError> {
    let model = session.model();
    (0..INPUTS as u64)
        .map(|seed| {
            let input = seeded_input(model.net(), 1, seed)?;
            let expected = model.forward(model.upload(input.clone())?)?.to_host()?;
            Ok((input, expected))
        })
        .collect()
}

fn check(config: &LoadConfig) -> Result<(), LabError> {
    let bad = |name, reason: &str| {
        Err(LabError::Config {
            name,
            reason: reason.into(),
        })
    };
    if config.clients == 0 || config.clients > MAX_CLIENTS {
        return bad(
            "clients",
            "must be between 1 and 1024 (each is a connection; a server serves 1024 by default)",
        );
    }
    if config.requests == 0 {
        return bad("requests", "must be at least 1");
    }
    if config.timeout.is_zero() {
        return bad("timeout", "must be above 0");
    }
    if config.tolerance.is_nan() || config.tolerance < 0.0 {
        return bad("tolerance", "must be a number at least 0");
    }
    Ok(())
}

/// Mean, nearest-rank percentiles and maximum of `samples`; zeros when there are none.
fn latency(mut samples: Vec<f64>) -> LatencyMs {
    if samples.is_empty() {
        return LatencyMs::default();
    }
    samples.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let at = ((p / 100.0) * samples.len() as f64).ceil() as usize;
        samples[at.clamp(1, samples.len()) - 1]
    };
    LatencyMs {
        mean: samples.iter().sum::<f64>() / samples.len() as f64,
        p50: rank(50.0),
        p95: rank(95.0),
        p99: rank(99.0),
        max: samples[samples.len() - 1],
    }
}

impl LoadReport {
    /// The report as a few lines of text.
    pub fn render(&self) -> String {
        let l = &self.latency_ms;
        let mut text = format!(
            "{} clients x {} requests of {} (split {}) in {:.2} s\n\
             throughput: {:.1} requests/s answered, {:.1}/s in the cloud\n\
             latency ms: mean {:.2}, p50 {:.2}, p95 {:.2}, p99 {:.2}, max {:.2}\n\
             sent {}, answered {} (in the cloud {}, edge-only {}, fallbacks {} of which busy {}), lost {}, wrong {}, not sent {}\n",
            self.clients,
            self.requests_per_client,
            self.model,
            self.split,
            self.elapsed_s,
            self.throughput_rps,
            self.cloud_rps,
            l.mean,
            l.p50,
            l.p95,
            l.p99,
            l.max,
            self.sent,
            self.answered,
            self.in_cloud,
            self.edge_only,
            self.fallbacks,
            self.busy,
            self.lost,
            self.wrong,
            self.not_sent,
        );
        if self.timed_out {
            text.push_str("the time limit cut the run short\n");
        }
        for error in &self.errors {
            text.push_str(&format!("error: {error}\n"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let l = latency((1..=100).map(f64::from).rev().collect());
        assert_eq!((l.p50, l.p95, l.p99, l.max), (50.0, 95.0, 99.0, 100.0));
        assert!((l.mean - 50.5).abs() < 1e-9);
        assert_eq!(latency(vec![]), LatencyMs::default());
        assert_eq!(latency(vec![7.0]).p99, 7.0);
    }

    #[test]
    fn a_run_without_clients_is_refused() {
        let config = LoadConfig {
            clients: 0,
            ..LoadConfig::default()
        };
        assert!(check(&config).is_err());
        assert!(check(&LoadConfig::default()).is_ok());
    }
}
