//! Through the userspace relay: 20 ms RTT and 2 % loss in each direction.

mod common;

use std::time::Duration;

use common::{request, start, token, varied_f32};
use transport::{Client, ClientConfig, Relay, RelayConfig, ServerTrust, WireTensor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tensors_arrive_bit_exact_under_delay_and_loss_and_rtt_reflects_the_delay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path()).await;
    let relay = Relay::start(
        "127.0.0.1:0".parse().expect("address"),
        server.addr,
        RelayConfig {
            delay: Duration::from_millis(10),
            loss_rate: 0.02,
            seed: 42,
            ..RelayConfig::default()
        },
    )
    .await
    .expect("relay starts");
    let client = Client::connect(ClientConfig::new(
        relay.local_addr().to_string(),
        ServerTrust::Fingerprint(server.fingerprint),
        token(dir.path()),
    ))
    .await
    .expect("connects through the relay");

    for i in 0..6 {
        let values = varied_f32(64 * 1024, i + 1);
        let t = WireTensor::from_f32(&[64, 1024], &values).expect("tensor");
        let back = client.infer(request(t.clone())).await.expect("answer");
        assert!(back.output.bytes == t.bytes, "tensor {i} corrupted");
        assert_eq!(back.output.shape, t.shape);
    }
    let stats = relay.stats();
    assert!(stats.lost > 0, "the relay dropped nothing: {stats:?}");

    // 10 ms each way: the RTT estimate cannot be below 20 ms, and should not be far above.
    let rtt = client.link().rtt_ms.expect("rtt measured");
    assert!((20.0..220.0).contains(&rtt), "rtt {rtt} ms");
    server.stop().await;
}
