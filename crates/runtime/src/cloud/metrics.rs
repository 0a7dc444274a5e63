//! The cloud server's metrics, and a small HTTP endpoint that serves them to Prometheus.
//!
//! [`Metrics`] keeps, with the `prometheus-client` crate's registry:
//!
//! | metric | kind | what |
//! | --- | --- | --- |
//! | `cutpoint_requests_total{result}` | counter | inference requests answered, by `result`: `served`, `busy` (refused as busy: full queue, memory, batch cap), `refused` (invalid, unknown model, other weights) or `failed` (the server's fault) |
//! | `cutpoint_queue_waiting`, `cutpoint_queue_running` | gauges | requests waiting for a worker and running, at the scrape |
//! | `cutpoint_expected_wait_seconds` | gauge | the wait the server reports to edges, at the scrape |
//! | `cutpoint_batch_size` | histogram | the batch dimension of each computation served |
//! | `cutpoint_queue_seconds`, `cutpoint_compute_seconds` | histograms | time each served request waited for a worker, and computed (decoding included) |
//! | `cutpoint_received_bytes_total`, `cutpoint_sent_bytes_total` | counters | payload bytes of inference requests (boundary tensors or image files) and of their outputs |
//!
//! [`serve_metrics`] answers `GET /metrics` on a TCP listener with the OpenMetrics text
//! encoding. It reads at most [`MAX_REQUEST_BYTES`] of a request head within
//! [`REQUEST_TIMEOUT`], serves [`MAX_CONNECTIONS`] connections at once (more are closed at
//! once), answers anything but `GET` with 405 and any other path with 404, and closes every
//! connection after one answer.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};
use transport::{ErrorCode, ErrorReply, InferRequest, Inference};

use super::CloudServer;
use super::queue::QueueStats;

/// Most bytes of an HTTP request head read; a longer one is answered 431.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Longest time a scrape connection may take to send its request and take the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most scrape connections served at once.
pub const MAX_CONNECTIONS: usize = 16;

/// A request's `result` label.
type ResultLabel = Vec<(&'static str, &'static str)>;

/// The server's counters, gauges and histograms (see the module docs).
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<ResultLabel, Counter>,
    waiting: Gauge,
    running: Gauge,
    expected_wait: Gauge<f64, AtomicU64>,
    batch: Histogram,
    queue_seconds: Histogram,
    compute_seconds: Histogram,
    received_bytes: Counter,
    sent_bytes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered.
    pub fn new() -> Metrics {
        // 0.5 ms to about 65 s, doubling.
        let seconds = || Histogram::new(exponential_buckets(0.0005, 2.0, 18));
        let (requests, waiting, running) = (Family::default(), Gauge::default(), Gauge::default());
        let expected_wait = Gauge::default();
        let batch = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        let (queue_seconds, compute_seconds) = (seconds(), seconds());
        let (received_bytes, sent_bytes) = (Counter::default(), Counter::default());
        let mut registry = Registry::with_prefix("cutpoint");
        registry.register(
            "requests",
            "Inference requests answered, by result: served, busy, refused or failed",
            requests.clone(),
        );
        registry.register(
            "queue_waiting",
            "Requests waiting for a worker",
            waiting.clone(),
        );
        registry.register("queue_running", "Requests running", running.clone());
        registry.register(
            "expected_wait_seconds",
            "The expected wait of a request arriving now, as reported to edges",
            expected_wait.clone(),
        );
        registry.register(
            "batch_size",
            "The batch dimension of each computation served",
            batch.clone(),
        );
        registry.register(
            "queue_seconds",
            "Time each served request waited for a worker",
            queue_seconds.clone(),
        );
        registry.register(
            "compute_seconds",
            "Time each served request computed, decoding included",
            compute_seconds.clone(),
        );
        registry.register(
            "received_bytes",
            "Payload bytes of inference requests: boundary tensors or image files",
            received_bytes.clone(),
        );
        registry.register(
            "sent_bytes",
            "Payload bytes of the outputs sent back",
            sent_bytes.clone(),
        );
        Metrics {
            registry,
            requests,
            waiting,
            running,
            expected_wait,
            batch,
            queue_seconds,
            compute_seconds,
            received_bytes,
            sent_bytes,
        }
    }

    /// Counts one inference request received with `received` payload bytes, and what it
    /// ended with.
    pub(crate) fn record(&self, received: u64, result: &Result<Inference, ErrorReply>) {
        self.received_bytes.inc_by(received);
        let label = match result {
            Ok(inference) => {
                self.queue_seconds.observe(inference.queue_ms / 1e3);
                self.compute_seconds
                    .observe((inference.cloud_ms + inference.decode_ms) / 1e3);
                self.sent_bytes.inc_by(inference.output.encoded_len());
                "served"
            }
            Err(reply) => match reply.code {
                ErrorCode::Busy => "busy",
                ErrorCode::Internal | ErrorCode::Unknown => "failed",
                _ => "refused",
            },
        };
        self.requests.get_or_create(&vec![("result", label)]).inc();
    }

    /// Records one computation over a batch of `size`.
    pub(crate) fn observe_batch(&self, size: u64) {
        self.batch.observe(size as f64);
    }

    /// The metrics in the OpenMetrics text encoding, with the gauges set from `stats`.
    pub fn encode(&self, stats: &QueueStats) -> String {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.waiting.set(count(stats.waiting));
        self.running.set(count(stats.running));
        self.expected_wait.set(stats.wait_ms / 1e3);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// The payload bytes `request` carries: its boundary tensors, or its image file.
pub(crate) fn payload_bytes(request: &InferRequest) -> u64 {
    let tensors: u64 = request.boundary.values().map(|t| t.encoded_len()).sum();
    let file = request.input_file.as_ref().map_or(0, |f| f.len() as u64);
    tensors + file
}

/// Serves `server`'s metrics at `GET /metrics` on `listener` until the task is dropped (see
/// the module docs for the bounds).
pub async fn serve_metrics(listener: TcpListener, server: Arc<CloudServer>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "the metrics endpoint cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "too many metrics connections; closing this one");
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &server))
                .await
                .is_err()
            {
                debug!(%peer, "a metrics connection took too long; closed");
            }
            drop(slot);
        });
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, server: &CloudServer) {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if head.len() >= MAX_REQUEST_BYTES {
            break false;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n.min(MAX_REQUEST_BYTES - head.len())]),
        }
    };
    let (status, body) = if complete {
        route(&head, server)
    } else {
        ("431 Request Header Fields Too Large", String::new())
    };
    let content_type = if status.starts_with("200") {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The status and body for a request head: the metrics for `GET /metrics`.
fn route(head: &[u8], server: &CloudServer) -> (&'static str, String) {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => ("200 OK", server.metrics_text()),
        (Some(b"GET"), _) => ("404 Not Found", "try GET /metrics\n".into()),
        _ => ("405 Method Not Allowed", "only GET /metrics\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_result() {
        let metrics = Metrics::new();
        let busy = ErrorReply {
            code: ErrorCode::Busy,
            message: "full".into(),
        };
        metrics.record(100, &Err(busy));
        let text = metrics.encode(&QueueStats {
            workers: 1,
            capacity: 4,
            running: 1,
            waiting: 2,
            served: 0,
            refused: 1,
            mean_service_ms: None,
            wait_ms: 1500.0,
            batch_max: 16,
            batches: 0,
            largest_batch: 0,
        });
        assert!(
            text.contains("cutpoint_requests_total{result=\"busy\"} 1"),
            "{text}"
        );
        assert!(text.contains("cutpoint_received_bytes_total 100"), "{text}");
        assert!(text.contains("cutpoint_queue_waiting 2"), "{text}");
        assert!(
            text.contains("cutpoint_expected_wait_seconds 1.5"),
            "{text}"
        );
    }
}
