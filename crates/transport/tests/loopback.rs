//! End-to-end tests over real loopback QUIC.

mod common;

use std::sync::Arc;

use common::{request, request_for, start, start_in, token, varied_f32};
use transport::{
    Client, ClientConfig, ClientError, Codec, ErrorCode, Fingerprint, Limits, LinkShare, Message,
    ServerTrust, Shaper, WireTensor, frame,
};

fn pinned(server: &common::Running, dir: &std::path::Path) -> ClientConfig {
    ClientConfig::new(
        server.addr.to_string(),
        ServerTrust::Fingerprint(server.fingerprint),
        token(dir),
    )
}

fn same_bits(a: &WireTensor, b: &WireTensor) {
    assert_eq!(a.shape, b.shape);
    assert_eq!(a.codec, b.codec);
    assert_eq!(a.channels, b.channels);
    assert!(a.bytes == b.bytes, "tensor bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tensors_make_the_round_trip_bit_exact() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path()).await;
    let client = Client::connect(pinned(&server, dir.path()))
        .await
        .expect("connects");
    assert_eq!(client.welcome().models[0].id, "echo");
    let values = varied_f32(3 * 224 * 224, 1);
    let f32s = WireTensor::from_f32(&[1, 3, 224, 224], &values).expect("tensor");
    let mut tensors = vec![f32s];
    let finite: Vec<f32> = (0..3 * 16 * 16).map(|i| (i as f32 * 0.1).sin()).collect();
    for codec in Codec::ALL {
        tensors.push(WireTensor::encode(&[1, 3, 16, 16], &finite, codec).expect("tensor"));
    }
    for tensor in tensors {
        let response = client.infer(request(tensor.clone())).await.expect("answer");
        same_bits(&response.output, &tensor);
        assert_eq!(response.cloud_ms, 0.5);
        assert!(response.upload.bytes > tensor.bytes.len() as u64);
    }
    let big_back = client
        .infer(request(
            WireTensor::from_f32(&[values.len()], &values).expect("tensor"),
        ))
        .await
        .expect("answer");
    let back = big_back.output.decode(&Limits::default()).expect("f32");
    assert!(
        back.iter()
            .zip(&values)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_is_refused_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path()).await;
    let mut config = pinned(&server, dir.path());
    config.token = transport::Token::parse("not-the-right-token-at-all", "test").expect("token");
    let err = Client::connect(config).await.expect_err("refused");
    assert!(matches!(err, ClientError::Unauthorized(_)), "{err}");
    assert!(err.to_string().contains("token"), "{err}");
    let good = Client::connect(pinned(&server, dir.path()))
        .await
        .expect("right token connects");
    good.infer(request(WireTensor::from_f32(&[1], &[1.0]).expect("tensor")))
        .await
        .expect("served");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_fingerprint_is_refused_with_instructions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let known = dir.path().join("known_servers");
    let server = start(dir.path()).await;
    let addr = server.addr;
    let config = ClientConfig::new(
        addr.to_string(),
        ServerTrust::KnownServers(known.clone()),
        token(dir.path()),
    );
    // First use pins, second use matches.
    Client::connect(config.clone()).await.expect("first use");
    let text = std::fs::read_to_string(&known).expect("pinned");
    assert!(text.contains(&server.fingerprint.to_string()), "{text}");
    Client::connect(config.clone())
        .await
        .expect("same key again");
    server.stop().await;

    // Same address, new key.
    std::fs::remove_dir_all(dir.path().join("identity")).expect("drop old identity");
    let server = start_in(dir.path(), addr).await;
    let err = Client::connect(config.clone())
        .await
        .expect_err("changed key refused");
    match &err {
        ClientError::FingerprintChanged {
            expected, found, ..
        } => {
            assert_ne!(expected, found);
            assert_eq!(*found, server.fingerprint);
        }
        other => panic!("wrong error: {other}"),
    }
    let message = err.to_string();
    assert!(message.contains("delete the line"), "{message}");
    assert!(message.contains("known_servers"), "{message}");

    // An explicitly given wrong fingerprint is refused too.
    let mut wrong = pinned(&server, dir.path());
    wrong.trust = ServerTrust::Fingerprint(Fingerprint::of_der(b"some other certificate"));
    let err = Client::connect(wrong).await.expect_err("refused");
    assert!(
        matches!(err, ClientError::FingerprintMismatch { .. }),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_of_one_name_connecting_at_once_pin_it_once() {
    // Two servers with different keys behind one name, three connections to each at once.
    let first_dir = tempfile::tempdir().expect("temp dir");
    let second_dir = tempfile::tempdir().expect("temp dir");
    let first = start(first_dir.path()).await;
    std::fs::copy(
        first_dir.path().join("token"),
        second_dir.path().join("token"),
    )
    .expect("token shared");
    let second = start(second_dir.path()).await;
    assert_ne!(first.fingerprint, second.fingerprint);
    let known = first_dir.path().join("known_servers");
    let name = "pool.test:4433";
    let mut attempts = Vec::new();
    for _ in 0..3 {
        for server in [&first, &second] {
            let mut config = ClientConfig::new(
                name,
                ServerTrust::KnownServers(known.clone()),
                token(first_dir.path()),
            );
            config.address = Some(server.addr);
            attempts.push((server.fingerprint, tokio::spawn(Client::connect(config))));
        }
    }
    let mut results = Vec::new();
    for (fingerprint, attempt) in attempts {
        results.push((fingerprint, attempt.await.expect("connect task")));
    }
    let pins = std::fs::read_to_string(&known).expect("pinned");
    let lines: Vec<&str> = pins.lines().collect();
    assert_eq!(lines.len(), 1, "one pin for the name: {pins}");
    let pinned = [first.fingerprint, second.fingerprint]
        .into_iter()
        .find(|fp| lines[0] == format!("{name} {fp}"))
        .expect("pinned to one of the two");
    for (fingerprint, result) in results {
        match result {
            Ok(client) => {
                assert_eq!(fingerprint, pinned, "only the pinned key connects");
                client.close();
            }
            Err(ClientError::FingerprintChanged {
                server,
                expected,
                found,
                ..
            }) => {
                assert_eq!(
                    (server.as_str(), expected, found),
                    (name, pinned, fingerprint)
                );
            }
            Err(other) => panic!("wrong error: {other}"),
        }
    }
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_file_trust_verifies_the_chain() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path()).await;
    // The self-signed certificate is its own CA, issued for `localhost`.
    let mut config = pinned(&server, dir.path());
    config.trust = ServerTrust::CaFile(dir.path().join("identity").join("cert.pem"));
    config.server_name = Some("localhost".into());
    Client::connect(config.clone())
        .await
        .expect("chain verifies");
    config.server_name = Some("elsewhere.example".into());
    let err = Client::connect(config).await.expect_err("wrong name");
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_mismatch_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path()).await;
    let mut config = pinned(&server, dir.path());
    config.protocol_version = transport::PROTOCOL_VERSION + 1;
    let err = Client::connect(config).await.expect_err("refused");
    assert!(matches!(err, ClientError::VersionMismatch(_)), "{err}");
    let ours = transport::PROTOCOL_VERSION;
    assert!(err.to_string().contains(&format!("v{ours}")), "{err}");
    assert!(err.to_string().contains(&format!("v{}", ours + 1)), "{err}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_are_answered_and_survived() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path()).await;
    let client = Client::connect(pinned(&server, dir.path()))
        .await
        .expect("connects");

    let mut oversized = (100u32 * 1024 * 1024).to_be_bytes().to_vec();
    oversized.extend_from_slice(&[0; 4096]);
    let mut truncated = 100u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&[0x92; 10]);
    let mut malformed = 3u32.to_be_bytes().to_vec();
    malformed.extend_from_slice(&[0xc1, 0xc1, 0xc1]);
    let mismatched = {
        let tensor = WireTensor {
            shape: vec![4, 4],
            codec: Codec::Raw,
            channels: vec![],
            bytes: vec![0; 63],
        };
        frame::encode(&Message::InferRequest(request(tensor))).expect("encodes")
    };
    let wrong_kind = frame::encode(&Message::Welcome(transport::Welcome {
        server_name: "me".into(),
        models: vec![],
        state: transport::ServerState::default(),
        limits: transport::ServerLimits {
            max_frame_bytes: 1,
            max_probe_reply_bytes: 1,
            max_batch: 1,
        },
    }))
    .expect("encodes");

    for (name, bytes, code, needle) in [
        (
            "oversized",
            oversized,
            ErrorCode::BadFrame,
            "exceeds the limit",
        ),
        ("truncated", truncated, ErrorCode::BadFrame, "truncated"),
        ("malformed", malformed, ErrorCode::BadFrame, "malformed"),
        (
            "mismatched",
            mismatched,
            ErrorCode::BadFrame,
            "needs 64 bytes",
        ),
        (
            "wrong kind",
            wrong_kind,
            ErrorCode::Unexpected,
            "not a request",
        ),
    ] {
        match client.send_raw(&bytes).await {
            Err(ClientError::Remote { code: got, message }) => {
                assert_eq!(got, code, "{name}: {message}");
                assert!(message.contains(needle), "{name}: {message}");
            }
            other => panic!("{name}: expected an error reply, got {other:?}"),
        }
    }
    // The same connection and the server still work.
    let t = WireTensor::from_f32(&[2], &[1.0, 2.0]).expect("tensor");
    let back = client.infer(request(t.clone())).await.expect("served");
    same_bits(&back.output, &t);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_times_a_hundred_requests_none_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path()).await;
    let mut tasks = Vec::new();
    for c in 0..64u32 {
        let config = pinned(&server, dir.path());
        tasks.push(tokio::spawn(async move {
            let client = Client::connect(config).await.expect("connects");
            let mut answered = 0u32;
            for r in 0..100u32 {
                let values = varied_f32(64, c * 1000 + r + 1);
                let t = WireTensor::from_f32(&[64], &values).expect("tensor");
                let back = client.infer(request(t.clone())).await.expect("answer");
                assert!(back.output == t || back.output.bytes == t.bytes);
                answered += 1;
            }
            client.close();
            answered
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("client task");
    }
    assert_eq!(total, 6400);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_disconnects_mid_stream_does_not_disturb_others() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path()).await;
    // A slow uploader: 4 MiB at 8 Mbit/s would take about 4 s.
    let mut slow_config = pinned(&server, dir.path());
    slow_config.uplink_shaper = Some(Arc::new(Shaper::new(8.0, 0).expect("shaper")));
    let slow = Arc::new(Client::connect(slow_config).await.expect("connects"));
    let upload = {
        let slow = slow.clone();
        tokio::spawn(async move {
            let values = vec![1.0f32; 1024 * 1024];
            let t = WireTensor::from_f32(&[values.len()], &values).expect("tensor");
            slow.infer(request(t)).await
        })
    };
    let other = Client::connect(pinned(&server, dir.path()))
        .await
        .expect("connects");
    for i in 0..20 {
        if i == 5 {
            // Vanish in the middle of the upload.
            slow.close();
        }
        let t = WireTensor::from_f32(&[3], &[i as f32, 2.0, 3.0]).expect("tensor");
        let back = other.infer(request_for("slow", t.clone())).await;
        same_bits(&back.expect("unaffected").output, &t);
    }
    let err = upload.await.expect("task").expect_err("cut off");
    assert!(
        matches!(err, ClientError::ConnectionLost(_) | ClientError::Frame(_)),
        "{err}"
    );
    // New clients are still welcome.
    Client::connect(pinned(&server, dir.path()))
        .await
        .expect("connects after the disconnect");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reconnects_after_server_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path()).await;
    let addr = server.addr;
    let mut config = pinned(&server, dir.path());
    config.trust = ServerTrust::KnownServers(dir.path().join("known_servers"));
    let client = Client::connect(config).await.expect("connects");
    let t = WireTensor::from_f32(&[1], &[7.0]).expect("tensor");
    client.infer(request(t.clone())).await.expect("served");
    server.stop().await;

    let err = client
        .infer(request(t.clone()))
        .await
        .expect_err("server is down");
    assert!(matches!(err, ClientError::ConnectionLost(_)), "{err}");
    assert!(client.is_closed());

    let server = start_in(dir.path(), addr).await;
    client.reconnect().await.expect("reconnects");
    let back = client
        .infer(request(t.clone()))
        .await
        .expect("served again");
    same_bits(&back.output, &t);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_transfers_feed_the_estimator() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path()).await;
    let client = Client::connect(pinned(&server, dir.path()))
        .await
        .expect("connects");
    assert!(client.link_is_stale());
    assert!(client.refresh_if_stale().await.expect("probe runs"));
    let link = client.link();
    let up = link.uplink.expect("uplink measured");
    let down = link.downlink.expect("downlink measured");
    assert!(up.mbps > 0.0 && down.mbps > 0.0);
    assert_eq!(up.samples, 1);
    assert!(link.rtt_ms.is_some());
    assert!(
        !client.refresh_if_stale().await.expect("no probe"),
        "fresh estimate needs no probe"
    );
    // A big inference is a passive sample.
    let values = vec![0.5f32; 256 * 1024];
    client
        .infer(request(
            WireTensor::from_f32(&[values.len()], &values).expect("tensor"),
        ))
        .await
        .expect("served");
    assert_eq!(client.link().uplink.expect("uplink").samples, 2);
    // Asking for more than the frame limit is refused, not obeyed.
    let err = client.probe(0, u32::MAX).await.expect_err("too big");
    assert!(
        matches!(
            err,
            ClientError::Remote {
                code: ErrorCode::BadRequest,
                ..
            }
        ),
        "{err}"
    );
    server.stop().await;
}

/// The cloud publishes its costs for the model and weights asked about, refuses others, and
/// every reply (welcome, result, probe reply, status) carries the server's load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costs_and_the_server_state_travel_with_every_reply() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path()).await;
    let client = Client::connect(pinned(&server, dir.path()))
        .await
        .expect("connects");
    assert_eq!(client.welcome().state, common::ECHO_STATE);

    let costs = client.costs("echo", "none").await.expect("published");
    assert_eq!(
        (costs.model_id.as_str(), costs.weights_hash.as_str()),
        ("echo", "none")
    );
    let ids: Vec<&str> = costs.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["input", "echo"]);
    let err = client
        .costs("other", "none")
        .await
        .expect_err("unknown model");
    assert!(
        matches!(
            err,
            ClientError::Remote {
                code: ErrorCode::UnknownModel,
                ..
            }
        ),
        "{err}"
    );

    assert_eq!(client.status().await.expect("status"), common::ECHO_STATE);
    let probe = client.probe(64, 64).await.expect("probe");
    assert_eq!(probe.state, common::ECHO_STATE);
    let values = [1.0f32, 2.0];
    let reply = client
        .infer(request(
            WireTensor::from_f32(&[2], &values).expect("tensor"),
        ))
        .await
        .expect("served");
    assert_eq!((reply.state, reply.load_ms), (common::ECHO_STATE, 0.0));
    let (state, age) = client.server_state();
    assert_eq!(state, common::ECHO_STATE);
    assert!(age.as_secs() < 60);
    server.stop().await;
}

/// A reply whose figures are out of range (a NaN wait, a negative load time, a cost table
/// too long) does not decode.
#[test]
fn out_of_range_figures_are_refused() {
    use transport::{
        CloudCosts, Codec, CodecSpeed, DecodingCosts, MAX_COST_NODES, NodeCost, ServerState,
    };
    let bad_state = ServerState {
        wait_ms: f64::NAN,
        ..common::ECHO_STATE
    };
    let too_long = CloudCosts {
        model_id: "m".into(),
        weights_hash: "h".into(),
        nodes: vec![
            NodeCost {
                id: "n".into(),
                ms: 1.0
            };
            MAX_COST_NODES + 1
        ],
        method: "m".into(),
        decoding: DecodingCosts {
            image_ms_per_mpixel: 1.0,
            codecs: Vec::new(),
        },
    };
    let negative = CloudCosts {
        nodes: vec![NodeCost {
            id: "n".into(),
            ms: -1.0,
        }],
        ..too_long.clone()
    };
    let slow_image = CloudCosts {
        nodes: Vec::new(),
        decoding: DecodingCosts {
            image_ms_per_mpixel: f64::INFINITY,
            codecs: Vec::new(),
        },
        ..too_long.clone()
    };
    let twice = CloudCosts {
        nodes: Vec::new(),
        decoding: DecodingCosts {
            image_ms_per_mpixel: 1.0,
            codecs: vec![
                CodecSpeed {
                    codec: Codec::Int8,
                    decode_ms_per_mb: 1.0,
                };
                2
            ],
        },
        ..too_long.clone()
    };
    for message in [
        Message::Status(bad_state),
        Message::CostReply(too_long),
        Message::CostReply(negative),
        Message::CostReply(slow_image),
        Message::CostReply(twice),
    ] {
        let bytes = frame::encode(&message).expect("encodes");
        let err = frame::decode(&bytes, &Limits::default()).expect_err("refused");
        assert!(
            ["limit", "at most", "figure", "twice"]
                .iter()
                .any(|word| err.to_string().contains(word)),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shaper_emulates_a_slow_uplink() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path()).await;
    let mut config = pinned(&server, dir.path());
    config.uplink_shaper = Some(Arc::new(Shaper::new(20.0, 0).expect("shaper")));
    let client = Client::connect(config).await.expect("connects");
    client.probe(512 * 1024, 0).await.expect("probe");
    let up = client.link().uplink.expect("measured").mbps;
    // Loopback is far faster than 20 Mbit/s, so the estimate reflects the shaper: never above
    // it (beyond the 16 KiB burst), and not far below it unless the machine is overloaded.
    assert!(up <= 20.0 * 1.05 && up > 20.0 * 0.5, "uplink {up} Mbit/s");
    server.stop().await;
}

/// Two clients of one device upload at once over one 20 Mbit/s uplink. Each frame gets about
/// half the link, and that is what each client measures on its own; clients given one
/// `LinkShare` count the upload they overlapped with and measure the link, as one client
/// alone does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_sharing_an_uplink_measure_the_link_not_their_share() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path()).await;
    // Uplink estimates of `clients` probing at once over one shaped uplink.
    let measure = |clients: usize, shared: bool| {
        let config = pinned(&server, dir.path());
        async move {
            let uplink = Arc::new(Shaper::new(20.0, 0).expect("shaper"));
            let share = LinkShare::new();
            let mut connected = Vec::new();
            for _ in 0..clients {
                let mut config = config.clone();
                config.uplink_shaper = Some(uplink.clone());
                config.link_share = shared.then(|| share.clone());
                connected.push(Arc::new(Client::connect(config).await.expect("connects")));
            }
            let probes: Vec<_> = connected
                .iter()
                .map(|c| {
                    let c = c.clone();
                    tokio::spawn(async move { c.probe(512 * 1024, 0).await })
                })
                .collect();
            for probe in probes {
                probe.await.expect("task").expect("probe");
            }
            assert_eq!(share.in_flight(), 0);
            connected
                .iter()
                .map(|c| c.link().uplink.expect("measured").mbps)
                .collect::<Vec<_>>()
        }
    };
    let alone = measure(1, false).await[0];
    for up in measure(2, false).await {
        assert!(up < 0.65 * alone, "{up} Mbit/s each against {alone} alone");
    }
    for up in measure(2, true).await {
        assert!(
            up > 0.8 * alone && up < 1.25 * alone,
            "{up} Mbit/s each, shared, against {alone} alone"
        );
    }
    server.stop().await;
}
