//! The metrics endpoint over a real loopback server: scraped after real requests (served,
//! busy and refused) and parsed as Prometheus parses it.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use common::{client_config, input, lenet, start};
use models::Weights;
use prometheus_parse::{Scrape, Value};
use runtime::{CloudConfig, serve_metrics, to_wire, weights_hash};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use transport::{Client, ClientError, ErrorCode, InferRequest};

/// Concurrent requests sent to a server with one worker and no queue: one runs at a time,
/// the others are refused as busy while it does.
const REQUESTS: usize = 24;

/// Sends `request` as an HTTP/1.1 request and returns the status line and the body.
async fn http(addr: SocketAddr, request: &[u8]) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    stream.write_all(request).await.expect("sends");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.expect("reads");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
    let status = head.lines().next().expect("a status line").to_string();
    (status, body.to_string())
}

/// The samples of a scrape by metric name and label text.
fn samples(body: &str) -> HashMap<(String, String), Value> {
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let scrape = Scrape::parse(lines).expect("Prometheus parses the scrape");
    scrape
        .samples
        .into_iter()
        .map(|s| ((s.metric, s.labels.to_string()), s.value))
        .collect()
}

fn counter(samples: &HashMap<(String, String), Value>, name: &str, labels: &str) -> f64 {
    match samples.get(&(name.to_string(), labels.to_string())) {
        Some(Value::Counter(v) | Value::Untyped(v) | Value::Gauge(v)) => *v,
        other => panic!("{name}{{{labels}}} is {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_endpoint_counts_what_was_sent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = CloudConfig {
        queue_capacity: 0,
        ..CloudConfig::default()
    };
    let cloud = start(dir.path(), config, &[]).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let metrics_addr = listener.local_addr().expect("address");
    let endpoint = tokio::spawn(serve_metrics(listener, cloud.server.clone()));

    let net = lenet();
    let client = Arc::new(
        Client::connect(client_config(&cloud, dir.path()))
            .await
            .expect("connects"),
    );
    let request = |seed: u32| InferRequest {
        model_id: "lenet".into(),
        weights_hash: weights_hash(&Weights::seeded(&net, 0)),
        cloud_nodes: net.nodes()[1..]
            .iter()
            .map(|n| n.id().to_string())
            .collect(),
        boundary: [(
            "input".to_string(),
            to_wire(&input(&net, 1, seed), "input").expect("wire"),
        )]
        .into(),
        input_file: None,
    };
    let sent_bytes: u64 = (0..REQUESTS as u32)
        .map(|seed| request(seed).boundary["input"].encoded_len())
        .sum();
    let mut tasks = Vec::new();
    for seed in 0..REQUESTS as u32 {
        let (client, request) = (client.clone(), request(seed));
        tasks.push(tokio::spawn(async move { client.infer(request).await }));
    }
    let (mut served, mut busy, mut output_bytes) = (0, 0, 0);
    for task in tasks {
        match task.await.expect("request task") {
            Ok(response) => {
                served += 1;
                output_bytes += response.output.encoded_len();
            }
            Err(ClientError::Remote {
                code: ErrorCode::Busy,
                ..
            }) => busy += 1,
            Err(e) => panic!("unexpected answer: {e}"),
        }
    }
    assert!(served > 0);
    // One refused outright: a model the server lacks.
    let unknown = InferRequest {
        model_id: "mystery".into(),
        ..request(0)
    };
    assert!(client.infer(unknown).await.is_err());

    let (status, body) = http(metrics_addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let samples = samples(&body);
    let requests = "cutpoint_requests_total";
    assert_eq!(
        counter(&samples, requests, "result=\"served\""),
        served as f64
    );
    if busy > 0 {
        assert_eq!(counter(&samples, requests, "result=\"busy\""), busy as f64);
    }
    assert_eq!(counter(&samples, requests, "result=\"refused\""), 1.0);
    assert_eq!(cloud.server.stats().served, served);
    let received = sent_bytes + request(0).boundary["input"].encoded_len();
    assert_eq!(
        counter(&samples, "cutpoint_received_bytes_total", ""),
        received as f64
    );
    assert_eq!(
        counter(&samples, "cutpoint_sent_bytes_total", ""),
        output_bytes as f64
    );
    assert_eq!(counter(&samples, "cutpoint_queue_waiting", ""), 0.0);
    for histogram in [
        "cutpoint_batch_size",
        "cutpoint_queue_seconds",
        "cutpoint_compute_seconds",
    ] {
        match samples.get(&(histogram.to_string(), String::new())) {
            Some(Value::Histogram(buckets)) => {
                let all = buckets.last().expect("a +Inf bucket");
                assert_eq!(all.count, served as f64, "{histogram}");
            }
            other => panic!("{histogram} is {other:?}"),
        }
    }
    match samples.get(&("cutpoint_batch_size".to_string(), String::new())) {
        Some(Value::Histogram(buckets)) => {
            assert_eq!(buckets[0].less_than, 1.0);
            // With no queue, no request waits for a batch to form: one computation each.
            assert_eq!(buckets[0].count, served as f64, "every batch was of one");
            assert_eq!(cloud.server.stats().batches, served);
        }
        other => panic!("batch sizes: {other:?}"),
    }

    // Only GET /metrics is served; a head too long is refused.
    let (status, _) = http(metrics_addr, b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _) = http(metrics_addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    // Exactly the 8 KiB the endpoint reads, without the blank line that ends a head.
    let mut long = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    long.resize(8 * 1024, b'a');
    let (status, _) = http(metrics_addr, &long).await;
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");

    endpoint.abort();
    client.close();
    cloud.stop().await;
}
