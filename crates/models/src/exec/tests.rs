//! The executor on a tiny network computed by hand, and on a linear layer large enough to split.

use super::prepare::{LINEAR_SPLIT_BYTES, Params};
use super::*;
use crate::kernels::Activation;
use crate::net::NetBuilder;
use crate::relative_difference;

fn host(shape: Vec<usize>, data: Vec<f32>) -> HostTensor {
    HostTensor::new(shape, data).expect("host tensor")
}

/// input [1,2,2] -> conv 1->2 k2 -> bn -> relu6 -> flatten -> linear 2->1, by hand.
fn tiny() -> Model {
    let mut b = NetBuilder::new("tiny", vec![1, 2, 2]).expect("input");
    let conv = LayerKind::Conv2d {
        in_channels: 1,
        out_channels: 2,
        kernel_size: [2, 2],
        stride: [1, 1],
        padding: [0, 0],
        dilation: [1, 1],
        groups: 1,
        bias: true,
    };
    let x = b.add("conv", conv, &[0]).expect("conv");
    let bn = LayerKind::BatchNorm2d {
        num_features: 2,
        eps: 1e-5,
    };
    let x = b.add("bn", bn, &[x]).expect("bn");
    let x = b.add("act", LayerKind::Relu6, &[x]).expect("relu6");
    let x = b.add("flatten", LayerKind::Flatten, &[x]).expect("flatten");
    let fc = LayerKind::Linear {
        in_features: 2,
        out_features: 1,
        bias: true,
    };
    b.add("fc", fc, &[x]).expect("fc");
    let net = b.build().expect("tiny net");
    let mut w = Weights::new();
    // Channel 0 sums the four pixels; channel 1 takes the first minus the last.
    w.insert(
        "conv.weight",
        host(vec![2, 1, 2, 2], vec![1., 1., 1., 1., 1., 0., 0., -1.]),
    );
    w.insert("conv.bias", host(vec![2], vec![0.5, 0.0]));
    w.insert("bn.weight", host(vec![2], vec![2.0, 1.0]));
    w.insert("bn.bias", host(vec![2], vec![0.0, 1.0]));
    w.insert("bn.running_mean", host(vec![2], vec![1.0, 0.0]));
    w.insert(
        "bn.running_var",
        host(vec![2], vec![1.0 - 1e-5, 4.0 - 1e-5]),
    );
    w.insert("fc.weight", host(vec![1, 2], vec![1.0, -2.0]));
    w.insert("fc.bias", host(vec![1], vec![0.25]));
    Model::new(net, w, &Device::flex()).expect("weights fit")
}

#[test]
fn tiny_network_matches_hand_computation() {
    let model = tiny();
    let x = host(vec![1, 1, 2, 2], vec![0.1, 0.2, 0.3, 0.4]);
    let y = model
        .forward(model.upload(x).expect("upload"))
        .expect("forward")
        .to_host()
        .expect("read back");
    // conv: [1.0 + 0.5, 0.1 - 0.4] = [1.5, -0.3]
    // bn:   [(1.5 - 1) / 1 * 2 + 0, (-0.3 - 0) / 2 * 1 + 1] = [1.0, 0.85]
    // relu6 keeps both; fc: 1.0 - 2 * 0.85 + 0.25 = -0.45
    assert_eq!(y.shape(), &[1, 1]);
    assert!((y.data()[0] - -0.45).abs() < 1e-5, "{:?}", y.data());
}

#[test]
fn a_large_linear_layer_computes_the_whole_product_with_either_kernels() {
    // 2 048 x 4 352 floats = 35.7 MB: above the split threshold of the plain kernels, and
    // 4 352 outputs do not divide evenly into every thread count. The fast kernels run the
    // crate's own linear kernel over the same weight, packed in blocks of outputs.
    let (inputs, outputs) = (2048, 4352);
    assert!(inputs * outputs * 4 >= LINEAR_SPLIT_BYTES);
    let weight: Vec<f32> = (0..inputs * outputs)
        .map(|i| ((i * 7919) % 201) as f32 / 100.0 - 1.0)
        .collect();
    let bias: Vec<f32> = (0..outputs).map(|o| o as f32 / 1000.0).collect();
    let x: Vec<f32> = (0..inputs)
        .map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0)
        .collect();
    for kernels in Kernels::ALL {
        let mut b = NetBuilder::new("wide", vec![inputs]).expect("input");
        let fc = LayerKind::Linear {
            in_features: inputs,
            out_features: outputs,
            bias: true,
        };
        b.add("fc", fc, &[0]).expect("fc");
        let net = b.build().expect("net");
        let mut w = Weights::new();
        w.insert("fc.weight", host(vec![outputs, inputs], weight.clone()));
        w.insert("fc.bias", host(vec![outputs], bias.clone()));
        let model = Model::with_kernels(net, w, &Device::flex(), kernels).expect("weights fit");
        match (kernels, &model.params[1]) {
            (Kernels::Fast, Params::Dense(_)) => {}
            (Kernels::Plain, Params::Linear { blocks }) => {
                assert_eq!(blocks.len(), rayon::current_num_threads().min(outputs));
            }
            (_, other) => panic!("fc with {kernels} kernels has parameters {other:?}"),
        }
        let y = model
            .forward(
                model
                    .upload(host(vec![1, inputs], x.clone()))
                    .expect("upload"),
            )
            .expect("forward")
            .to_host()
            .expect("read back");
        assert_eq!(y.shape(), &[1, outputs]);
        for (o, got) in y.data().iter().enumerate() {
            let row = &weight[o * inputs..(o + 1) * inputs];
            let want: f64 = bias[o] as f64
                + row
                    .iter()
                    .zip(&x)
                    .map(|(w, x)| (*w as f64) * (*x as f64))
                    .sum::<f64>();
            assert!(
                (*got as f64 - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{kernels} kernels, output {o}: {got} against {want}"
            );
        }
    }
}

#[test]
fn relu6_clamps_and_batches_are_independent() {
    let model = tiny();
    let x = host(
        vec![2, 1, 2, 2],
        vec![0.1, 0.2, 0.3, 0.4, 5.0, 5.0, 5.0, 5.0],
    );
    let y = model
        .forward(model.upload(x).expect("upload"))
        .expect("forward")
        .to_host()
        .expect("read back");
    // Second sample: conv [20.5, 0], bn [39, 1], relu6 [6, 1], fc 6 - 2 + 0.25.
    assert!((y.data()[0] - -0.45).abs() < 1e-5);
    assert!((y.data()[1] - 4.25).abs() < 1e-5, "{:?}", y.data());
}

#[test]
fn run_part_reports_missing_and_misshapen_tensors() {
    let model = tiny();
    let device = model.device().clone();
    let cloud = model.net().cut(&["act", "flatten", "fc"]).expect("cut");
    let err = model
        .run_part(cloud.cloud_mask(), Activations::new())
        .expect_err("nothing handed in");
    let msg = err.to_string();
    assert!(msg.contains("`act`") && msg.contains("`bn`"), "{msg}");
    let wrong = Value::from_host(host(vec![1, 3, 1, 1], vec![0.0; 3]), &device).expect("up");
    let err = model
        .run_part(cloud.cloud_mask(), Activations::from([(2, wrong)]))
        .expect_err("wrong shape");
    let msg = err.to_string();
    assert!(
        msg.contains("`bn`") && msg.contains("[1, 3, 1, 1]") && msg.contains("[1, 2, 1, 1]"),
        "{msg}"
    );
    assert!(model.run_part(&[true], Activations::new()).is_err());
}

#[test]
fn edge_part_returns_exactly_the_crossing_tensors() {
    let model = tiny();
    let cut = model.net().cut(&["flatten", "fc"]).expect("cut");
    let x = host(vec![1, 1, 2, 2], vec![0.1, 0.2, 0.3, 0.4]);
    let boundary = model
        .run_edge(&cut, model.upload(x).expect("upload"))
        .expect("edge part");
    assert_eq!(boundary.keys().copied().collect::<Vec<_>>(), vec![3]);
    assert_eq!(boundary[&3].shape(), vec![1, 2, 1, 1]);
}

#[test]
fn wrong_weights_are_rejected_before_upload() {
    let net = tiny().net().clone();
    let err = Model::new(net, Weights::new(), &Device::flex()).expect_err("no weights");
    assert!(err.to_string().contains("missing conv.weight"), "{err}");
}

/// input [16,6,6] -> conv 3x3 -> bn -> relu -> conv 1x1 -> bn -> add(input) -> relu: a
/// residual block, with seeded weights, run with `kernels`.
fn block(kernels: Kernels) -> Model {
    let mut b = NetBuilder::new("block", vec![16, 6, 6]).expect("input");
    let conv = |k: usize, p: usize| LayerKind::Conv2d {
        in_channels: 16,
        out_channels: 16,
        kernel_size: [k, k],
        stride: [1, 1],
        padding: [p, p],
        dilation: [1, 1],
        groups: 1,
        bias: false,
    };
    let bn = LayerKind::BatchNorm2d {
        num_features: 16,
        eps: 1e-5,
    };
    let x = b.add("conv1", conv(3, 1), &[0]).expect("conv1");
    let x = b.add("bn1", bn.clone(), &[x]).expect("bn1");
    let x = b.add("relu1", LayerKind::Relu, &[x]).expect("relu1");
    let x = b.add("conv2", conv(1, 0), &[x]).expect("conv2");
    let x = b.add("bn2", bn, &[x]).expect("bn2");
    let x = b.add("add", LayerKind::Add, &[x, 0]).expect("add");
    b.add("relu", LayerKind::Relu, &[x]).expect("relu");
    let net = b.build().expect("block");
    let weights = Weights::seeded(&net, 9);
    Model::with_kernels(net, weights, &Device::flex(), kernels).expect("weights fit")
}

#[test]
fn a_residual_addition_runs_in_its_convolution_only_where_the_part_allows() {
    let fast = block(Kernels::Fast);
    let net = fast.net().clone();
    let id = |name: &str| net.index_of(name).expect("node");
    let (conv2, bn2, add) = (id("conv2"), id("bn2"), id("add"));
    let all = vec![true; net.len()];
    // The whole network: the addition and its ReLU go into conv2.
    let whole = fast.shortcuts(&all, &fast.exported(&all, false));
    let shortcut = whole.of_conv(conv2).expect("conv2 takes in the addition");
    assert_eq!(shortcut.other, 0);
    assert_eq!(shortcut.activation, Activation::Relu);
    assert_eq!(whole.sum_of(add), Some(bn2));
    // Every node's own output wanted: nothing is taken in.
    let every = fast.shortcuts(&all, &fast.exported(&all, true));
    assert!(every.of_conv(conv2).is_none() && every.sum_of(add).is_none());
    // An edge side that ends before the addition returns conv2's group's own output.
    let cut = net.cut(&["add", "relu"]).expect("cut");
    let edge = fast.shortcuts(&cut.edge_mask(), &fast.exported(&cut.edge_mask(), false));
    assert!(edge.of_conv(conv2).is_none());

    // Every one of these computes what the plain kernels compute, unfused.
    let plain = block(Kernels::Plain);
    let x: Vec<f32> = (0..16 * 36)
        .map(|i| ((i * 7) % 19) as f32 / 6.0 - 1.5)
        .collect();
    let input = || host(vec![1, 16, 6, 6], x.clone());
    let run = |model: &Model| {
        let y = model.forward(model.upload(input()).expect("upload"));
        y.expect("runs").to_host().expect("host")
    };
    let want = run(&plain);
    for cut in [
        vec!["add", "relu"],
        vec!["bn2", "add", "relu"],
        vec!["relu"],
    ] {
        let cut = net.cut(&cut).expect("cut");
        let y = fast.run_split(&cut, fast.upload(input()).expect("upload"));
        let y = y.expect("runs").to_host().expect("host");
        assert!(relative_difference(&y, &want) <= 1e-5, "{cut:?}");
    }
    assert!(relative_difference(&run(&fast), &want) <= 1e-5);
}
