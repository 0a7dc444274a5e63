//! Faults over a real loopback QUIC server: a server that goes away and comes back, a wrong
//! token, other weights, an unknown model, invalid requests and a full queue.

mod common;

use std::time::Duration;

use common::{
    Cloud, client_config, edge_config, graph_of, input, lenet, load, local_forward, session, start,
    start_at, wait_for,
};
use models::{Net, Weights, relative_difference, zoo};
use runtime::{CloudConfig, EdgeSession, RuntimeError, SplitMode, to_wire, weights_hash};
use transport::{Client, ClientError, ErrorCode, InferRequest, Token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_finish_locally_while_the_server_is_gone_and_use_it_again_after() {
    let dir = tempfile::tempdir().expect("temp dir");
    let net = lenet();
    let expected = local_forward(&load(&net, 0), &input(&net, 1, 5));
    let cloud = start(dir.path(), CloudConfig::default(), &[]).await;
    let addr = cloud.addr;
    let mut session = session(&cloud, dir.path(), &net, edge_config(SplitMode::CloudOnly)).await;
    for _ in 0..2 {
        let outcome = session.infer(input(&net, 1, 5)).await.expect("served");
        assert_eq!(outcome.fallback, None);
    }
    cloud.stop().await;

    for _ in 0..3 {
        let outcome = session
            .infer(input(&net, 1, 5))
            .await
            .expect("completes locally");
        let reason = outcome.fallback.expect("marked as a fallback");
        assert!(reason.contains("cloud"), "{reason}");
        assert!(relative_difference(&outcome.output, &expected) <= 1e-5);
        assert!(
            !outcome.cloud_nodes.is_empty(),
            "the plan still wanted the cloud"
        );
        assert_eq!(outcome.measured.cloud_ms, 0.0);
    }
    assert!(!session.is_connected());
    assert!(session.cloud_error().is_some());

    // Same address, same identity and token: the session reconnects by itself.
    let cloud = start_at(dir.path(), addr, CloudConfig::default(), &[]).await;
    wait_for("the session to reconnect", Duration::from_secs(60), || {
        session.is_connected()
    })
    .await;
    let outcome = session
        .infer(input(&net, 1, 5))
        .await
        .expect("served again");
    assert_eq!(outcome.fallback, None);
    assert!(relative_difference(&outcome.output, &expected) <= 1e-5);
    assert_eq!(cloud.server.stats().served, 1);
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_unreachable_at_start_is_used_once_it_comes_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let net = lenet();
    // A loopback port with nothing behind it yet.
    let addr = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port");
    let identity =
        transport::ServerIdentity::load_or_create(&dir.path().join("identity")).expect("identity");
    Token::load_or_create(&dir.path().join("token")).expect("token");
    let mut config = transport::ClientConfig::new(
        addr.to_string(),
        transport::ServerTrust::Fingerprint(identity.fingerprint()),
        Token::from_file(&dir.path().join("token")).expect("token"),
    );
    config.connect_timeout = Duration::from_millis(500);
    let mut session = EdgeSession::new(
        load(&net, 0),
        graph_of(&net),
        edge_config(SplitMode::CloudOnly),
    )
    .expect("session");
    let err = session.connect(config).await.expect_err("nothing listens");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
    let outcome = session
        .infer(input(&net, 1, 4))
        .await
        .expect("runs locally");
    assert!(outcome.fallback.is_some());

    let cloud = start_at(dir.path(), addr, CloudConfig::default(), &[]).await;
    wait_for("the session to connect", Duration::from_secs(60), || {
        session.is_connected()
    })
    .await;
    let outcome = session.infer(input(&net, 1, 4)).await.expect("served");
    assert_eq!(outcome.fallback, None);
    assert_eq!(cloud.server.stats().served, 1);
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_clearly_and_requests_still_complete() {
    let dir = tempfile::tempdir().expect("temp dir");
    let net = lenet();
    let cloud = start(dir.path(), CloudConfig::default(), &[]).await;
    let mut session = EdgeSession::new(
        load(&net, 0),
        graph_of(&net),
        edge_config(SplitMode::CloudOnly),
    )
    .expect("session");
    let mut config = client_config(&cloud, dir.path());
    config.token = Token::parse("not-the-token-the-server-printed", "test").expect("token");
    let err = session.connect(config).await.expect_err("refused");
    let refused = match &err {
        RuntimeError::Connect { error, .. } => matches!(**error, ClientError::Unauthorized(_)),
        _ => false,
    };
    assert!(refused, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("token") && message.contains(&cloud.addr.to_string()),
        "{message}"
    );
    assert!(!session.is_connected());

    let outcome = session
        .infer(input(&net, 1, 1))
        .await
        .expect("runs locally");
    let reason = outcome.fallback.expect("a fallback");
    assert!(reason.contains("token"), "{reason}");
    assert_eq!(cloud.server.stats().served, 0);
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_weights_and_unknown_models_are_clear_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let net = lenet();
    let cloud = start(dir.path(), CloudConfig::default(), &[]).await;
    let cloud_hash = weights_hash(&Weights::seeded(&net, 0));

    // The cloud has not loaded lenet yet, so the mismatch shows on the first request.
    let mut other = EdgeSession::new(
        load(&net, 1),
        graph_of(&net),
        edge_config(SplitMode::CloudOnly),
    )
    .expect("session");
    other
        .connect(client_config(&cloud, dir.path()))
        .await
        .expect("nothing to compare yet");
    let edge_hash = other.weights_hash().to_string();
    assert_ne!(edge_hash, cloud_hash);
    let err = other.infer(input(&net, 1, 2)).await.expect_err("refused");
    match &err {
        RuntimeError::Refused {
            code: ErrorCode::WeightsMismatch,
            message,
        } => assert!(
            message.contains(&edge_hash) && message.contains(&cloud_hash),
            "{message}"
        ),
        other => panic!("wrong error: {other}"),
    }

    // Now it has, and the welcome carries its hash: the mismatch shows at connect.
    let mut late = EdgeSession::new(
        load(&net, 1),
        graph_of(&net),
        edge_config(SplitMode::CloudOnly),
    )
    .expect("session");
    let err = late
        .connect(client_config(&cloud, dir.path()))
        .await
        .expect_err("refused at connect");
    assert!(matches!(err, RuntimeError::WeightsMismatch { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&edge_hash) && message.contains(&cloud_hash),
        "{message}"
    );
    let welcome = late.client().expect("a client").welcome();
    let offer = welcome
        .models
        .iter()
        .find(|m| m.id == "lenet")
        .expect("offered");
    assert_eq!(offer.weights_hash, cloud_hash);

    // A network the cloud does not serve.
    let mut spec = net.to_spec();
    spec.name = "mystery".into();
    let mystery = Net::from_spec(&spec).expect("renamed lenet");
    let mut unknown = EdgeSession::new(
        load(&mystery, 0),
        graph_of(&mystery),
        edge_config(SplitMode::CloudOnly),
    )
    .expect("session");
    let err = unknown
        .connect(client_config(&cloud, dir.path()))
        .await
        .expect_err("not offered");
    let message = err.to_string();
    assert!(matches!(err, RuntimeError::NotOffered { .. }), "{message}");
    assert!(
        message.contains("`mystery`") && message.contains("lenet"),
        "{message}"
    );

    // The same request sent anyway gets the server's refusal.
    let client = Client::connect(client_config(&cloud, dir.path()))
        .await
        .expect("connects");
    let x = to_wire(&input(&mystery, 1, 1), "input").expect("wire");
    let request = InferRequest {
        model_id: "mystery".into(),
        weights_hash: String::new(),
        cloud_nodes: vec!["features.0".into()],
        boundary: [("input".to_string(), x)].into(),
        input_file: None,
    };
    match client.infer(request).await {
        Err(ClientError::Remote {
            code: ErrorCode::UnknownModel,
            message,
        }) => assert!(
            message.contains("`mystery`") && message.contains("lenet"),
            "{message}"
        ),
        other => panic!("wrong answer: {other:?}"),
    }
    cloud.stop().await;
}

/// Sends a raw request and returns the server's BadRequest message.
async fn bad_request(client: &Client, request: InferRequest) -> String {
    match client.infer(request).await {
        Err(ClientError::Remote {
            code: ErrorCode::BadRequest,
            message,
        }) => message,
        other => panic!("expected a bad-request refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_refused_naming_the_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let net = lenet();
    let cloud = start(dir.path(), CloudConfig::default(), &[]).await;
    let client = Client::connect(client_config(&cloud, dir.path()))
        .await
        .expect("connects");
    let hash = weights_hash(&Weights::seeded(&net, 0));
    let all: Vec<String> = net.nodes()[1..]
        .iter()
        .map(|n| n.id().to_string())
        .collect();
    let x = to_wire(&input(&net, 1, 1), "input").expect("wire");
    let request =
        |cloud_nodes: Vec<String>, boundary: Vec<(&str, transport::WireTensor)>| InferRequest {
            model_id: "lenet".into(),
            weights_hash: hash.clone(),
            cloud_nodes,
            boundary: boundary
                .into_iter()
                .map(|(id, t)| (id.to_string(), t))
                .collect(),
            input_file: None,
        };

    let mut with_input = all.clone();
    with_input.push("input".into());
    let msg = bad_request(&client, request(with_input, vec![("input", x.clone())])).await;
    assert!(msg.contains("`input`"), "{msg}");

    let first = all[0].clone();
    let msg = bad_request(
        &client,
        request(vec![first.clone()], vec![("input", x.clone())]),
    )
    .await;
    assert!(msg.contains(&format!("`{first}`")), "{msg}");

    let msg = bad_request(&client, request(all.clone(), vec![])).await;
    assert!(msg.contains("missing boundary tensor `input`"), "{msg}");

    let squashed = transport::WireTensor::from_f32(&[1, 1, 16, 16], &[0.0; 256]).expect("tensor");
    let msg = bad_request(&client, request(all.clone(), vec![("input", squashed)])).await;
    assert!(
        msg.contains("`input`") && msg.contains("[1, 1, 16, 16]"),
        "{msg}"
    );

    // An input file must come alone, for a cloud-only run, and decode to the network's input.
    let with_file = |cloud_nodes: Vec<String>, file: &[u8]| InferRequest {
        input_file: Some(file.to_vec()),
        ..request(cloud_nodes, vec![])
    };
    let msg = bad_request(&client, with_file(all[3..].to_vec(), models::SAMPLE_JPEG)).await;
    assert!(msg.contains("input file") && msg.contains("split"), "{msg}");
    let msg = bad_request(&client, with_file(all.clone(), b"not a picture")).await;
    assert!(
        msg.contains("input file") && msg.contains("JPEG or PNG"),
        "{msg}"
    );
    let msg = bad_request(&client, with_file(all.clone(), models::SAMPLE_JPEG)).await;
    assert!(
        msg.contains("[1, 3, 224, 224]") && msg.contains("`lenet`"),
        "{msg}"
    );

    // The valid request is served, and nothing refused was queued.
    let response = client
        .infer(request(all, vec![("input", x)]))
        .await
        .expect("served");
    assert_eq!(response.output.shape, vec![1, 10]);
    let stats = cloud.server.stats();
    assert_eq!((stats.served, stats.refused), (1, 0));
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_busy_and_every_request_still_completes() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Heavy enough per request that concurrent requests overlap on one worker.
    let net = zoo::build_with_input("resnet18", vec![3, 64, 64]).expect("resnet18");
    let config = CloudConfig {
        workers: 1,
        queue_capacity: 1,
        ..CloudConfig::default()
    };
    let cloud: Cloud = start(dir.path(), config, std::slice::from_ref(&net)).await;
    cloud.server.preload("resnet18").await.expect("loads");
    let batch = 8;
    let expected = local_forward(&load(&net, 0), &input(&net, batch, 9));
    let mut sessions = Vec::new();
    for _ in 0..6 {
        let mut s = session(&cloud, dir.path(), &net, edge_config(SplitMode::CloudOnly)).await;
        // Probe now, so that the requests below reach the server together.
        let first = s.infer(input(&net, 1, 9)).await.expect("warm-up");
        assert_eq!(first.fallback, None);
        sessions.push(s);
    }
    let warmups = cloud.server.stats().served;
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|mut s| {
            let x = input(&net, batch, 9);
            tokio::spawn(async move { s.infer(x).await })
        })
        .collect();
    let mut busy = 0;
    let mut served = 0;
    for task in tasks {
        let outcome = task.await.expect("task").expect("every request completes");
        assert!(relative_difference(&outcome.output, &expected) <= 1e-5);
        match &outcome.fallback {
            None => served += 1,
            Some(reason) => {
                assert!(reason.contains("busy"), "{reason}");
                busy += 1;
            }
        }
    }
    assert_eq!(served + busy, 6);
    assert!(served >= 2, "one running and one queued are served");
    assert!(
        busy >= 1,
        "six at once overflow one worker and one place in the queue"
    );
    let stats = cloud.server.stats();
    assert_eq!(stats.served - warmups, served);
    assert_eq!(stats.refused, busy);
    assert_eq!((stats.running, stats.waiting), (0, 0));
    cloud.stop().await;
}
