//! What crosses the link, over a real loopback server: an image sent as its own file, and
//! boundary tensors under every codec, against local runs.

mod common;

use common::{closure, edge_config, input, load, local_forward, session, start};
use models::{HostTensor, Net, SAMPLE_JPEG, decode_image, relative_difference};
use runtime::{CloudConfig, INPUT_FILE_ID, SplitMode};
use transport::{Codec, Loss};

/// A small network on ImageNet-sized inputs, so that it can take a photograph.
fn tiny_image_net() -> Net {
    Net::from_spec_json(
        r#"{ "name": "tiny224", "input_shape": [3, 224, 224], "nodes": [
            {"id": "input", "inputs": [], "kind": "input"},
            {"id": "conv", "inputs": ["input"], "kind": "conv2d", "in_channels": 3,
             "out_channels": 16, "kernel_size": [4, 4], "stride": [4, 4]},
            {"id": "relu", "inputs": ["conv"], "kind": "relu"},
            {"id": "conv2", "inputs": ["relu"], "kind": "conv2d", "in_channels": 16,
             "out_channels": 16, "kernel_size": [3, 3], "padding": [1, 1]},
            {"id": "flatten", "inputs": ["conv2"], "kind": "flatten"},
            {"id": "fc", "inputs": ["flatten"], "kind": "linear", "in_features": 50176,
             "out_features": 10}
        ] }"#,
    )
    .expect("spec")
}

/// A cloud serving [`tiny_image_net`], with its identity and token in a fresh directory.
async fn serve_tiny_image_net() -> (tempfile::TempDir, Net, common::Cloud) {
    let dir = tempfile::tempdir().expect("temp dir");
    let net = tiny_image_net();
    let cloud = start(
        dir.path(),
        CloudConfig::default(),
        std::slice::from_ref(&net),
    )
    .await;
    (dir, net, cloud)
}

fn bits(t: &HostTensor) -> Vec<u32> {
    t.data().iter().map(|x| x.to_bits()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_sent_as_its_file_gives_the_edges_output_bit_for_bit() {
    let (dir, net, cloud) = serve_tiny_image_net().await;
    let preprocessed = decode_image(SAMPLE_JPEG).expect("decodes");
    let expected = local_forward(&load(&net, 0), &preprocessed);
    let mut session = session(&cloud, dir.path(), &net, edge_config(SplitMode::CloudOnly)).await;

    let sent_file = session
        .infer_image(SAMPLE_JPEG.to_vec())
        .await
        .expect("completes");
    assert_eq!(sent_file.fallback, None);
    assert!(sent_file.sends_file(), "cloud-only sends the file");
    assert_eq!(sent_file.cut_kind(), "cloud-only");
    assert_eq!(sent_file.sent.len(), 1);
    assert_eq!(sent_file.sent[0].node, INPUT_FILE_ID);
    assert_eq!(sent_file.sent[0].wire_bytes, SAMPLE_JPEG.len() as u64);
    assert_eq!(bits(&sent_file.output), bits(&expected));
    // The cloud did the decoding, and reported it.
    assert!(sent_file.measured.cloud_ms > 0.0);

    // The same request as a preprocessed tensor: the same output, bit for bit.
    session.set_raw_wire(true).expect("raw wire");
    let sent_tensor = session
        .infer_image(SAMPLE_JPEG.to_vec())
        .await
        .expect("completes");
    assert!(!sent_tensor.sends_file());
    assert_eq!(sent_tensor.sent[0].node, "input");
    assert_eq!(sent_tensor.sent[0].codec, Some(Codec::Raw));
    assert_eq!(sent_tensor.sent[0].wire_bytes, 3 * 224 * 224 * 4);
    // Decoding the file on the edge is priced there, and measured there.
    assert!(
        sent_tensor.predicted.edge_ms > 0.0,
        "{:?}",
        sent_tensor.predicted
    );
    assert!(sent_tensor.measured.edge_ms > 0.0);
    assert_eq!(
        sent_file.predicted.edge_ms, 0.0,
        "{:?}",
        sent_file.predicted
    );
    assert_eq!(bits(&sent_tensor.output), bits(&expected));

    // A split run decodes on the edge.
    session.set_raw_wire(false).expect("codecs");
    session
        .set_split(SplitMode::Fixed(closure(&net, 3)))
        .expect("cut");
    let split = session
        .infer_image(SAMPLE_JPEG.to_vec())
        .await
        .expect("completes");
    assert!(!split.sends_file());
    assert_eq!(split.cut_kind(), "split");
    assert!(relative_difference(&split.output, &expected) <= 1e-5);
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_slow_link_the_planner_sends_the_file() {
    let (dir, net, cloud) = serve_tiny_image_net().await;
    let mut session = session(&cloud, dir.path(), &net, edge_config(SplitMode::Auto)).await;
    // At 0.2 Mbit/s the 602 KB input tensor takes 24 s, the first convolution's 200 KB output
    // 8 s (half that if it compressed 2:1), and the 28 KB file 1.1 s; the test graph prices
    // the whole network at about 2 s on the edge (10 MFLOP/s).
    session.set_uplink_override(Some(0.2)).expect("in range");
    let slow = session
        .infer_image(SAMPLE_JPEG.to_vec())
        .await
        .expect("completes");
    assert!(slow.sends_file(), "plan: {:?}", slow.cloud_nodes);
    // The plan's file cost is what was sent.
    let up: Vec<_> = slow.uploads().collect();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].bytes, SAMPLE_JPEG.len() as u64);
    cloud.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_runs_under_every_codec_match_the_local_output_within_the_codecs_bound() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cloud = start(dir.path(), CloudConfig::default(), &[]).await;
    let net = common::lenet();
    let x = input(&net, 2, 11);
    let expected = local_forward(&load(&net, 0), &x);
    // The cut after the first ReLU: a sparse tensor with plenty of zeros.
    let cut = closure(&net, 3);
    // Per loss budget, the largest relative difference of the output allowed.
    for (loss, bound) in [(Loss::Exact, 0.0), (Loss::F16, 1e-2), (Loss::Int8, 5e-2)] {
        let mut config = edge_config(SplitMode::Fixed(cut.clone()));
        config.max_loss = loss;
        let mut session = session(&cloud, dir.path(), &net, config).await;
        // A crawl of an uplink, so that the smallest encoding wins.
        session.set_uplink_override(Some(0.001)).expect("in range");
        let outcome = session.infer(x.clone()).await.expect("completes");
        assert_eq!(outcome.fallback, None);
        assert_eq!(outcome.sent.len(), 1);
        let codec = outcome.sent[0].codec.expect("a tensor");
        assert!(loss.allows(codec), "{loss}: {codec:?}");
        assert_ne!(codec, Codec::Raw, "at 1 kbit/s every budget compresses");
        assert!(outcome.sent[0].wire_bytes < outcome.sent[0].raw_bytes);
        let diff = relative_difference(&outcome.output, &expected);
        assert!(diff <= bound, "{loss} ({codec:?}): {diff}");
        if loss == Loss::Exact {
            assert_eq!(bits(&outcome.output), bits(&expected));
        }
        // The plan reports the codec it chose for the tensor it sent.
        let planned = outcome.upload_codecs();
        assert_eq!(planned, vec![codec.name()]);
    }
    cloud.stop().await;
}

/// Every codec, forced for a boundary tensor of a real split (the edge part run here, the rest
/// on a real server over loopback), gives the local output: bit for bit where lossless, within
/// the codec's bound where lossy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boundary_under_each_codec_is_served_within_the_codecs_bound() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cloud = start(dir.path(), CloudConfig::default(), &[]).await;
    let net = common::lenet();
    let model = load(&net, 0);
    let x = input(&net, 2, 5);
    let expected = local_forward(&model, &x);
    // The edge runs up to node 3; the cloud runs the rest from node 3's output.
    let boundary_node = 3;
    let outputs = model
        .model
        .run_all(model.model.upload(x).expect("upload"))
        .expect("runs");
    let boundary = outputs
        .into_iter()
        .find(|(v, _)| *v == boundary_node)
        .map(|(_, value)| value.to_host().expect("read back"))
        .expect("node 3's output");
    let client = transport::Client::connect(common::client_config(&cloud, dir.path()))
        .await
        .expect("connects");
    for codec in Codec::ALL {
        let wire = transport::WireTensor::encode(boundary.shape(), boundary.data(), codec)
            .expect("encodes");
        let request = transport::InferRequest {
            model_id: net.name().to_string(),
            weights_hash: model.weights_hash.clone(),
            cloud_nodes: closure(&net, boundary_node + 1),
            boundary: [(net.nodes()[boundary_node].id().to_string(), wire)]
                .into_iter()
                .collect(),
            input_file: None,
        };
        let response = client.infer(request).await.expect("served");
        let output = runtime::from_wire(&response.output, "output").expect("decodes");
        let bound = match codec.loss() {
            Loss::Exact => 0.0,
            Loss::F16 => 1e-2,
            Loss::Int8 => 5e-2,
        };
        let diff = relative_difference(&output, &expected);
        assert!(diff <= bound, "{codec:?}: {diff}");
        if codec.loss() == Loss::Exact {
            assert_eq!(bits(&output), bits(&expected), "{codec:?}");
        }
    }
    cloud.stop().await;
}
