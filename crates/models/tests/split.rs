//! Split execution equals the whole forward pass: at every cut of the chain models, and at random
//! valid (successor-closed, input on the edge) cuts of the DAG models.

mod common;

use common::{Lcg, input};
use models::{Backend, HostTensor, Model, Net, Value, relative_difference, zoo};

const TOLERANCE: f64 = 1e-5;

/// Random cuts per DAG model: a few hundred in release builds, fewer in debug builds.
const RANDOM_CUTS: usize = if cfg!(debug_assertions) { 25 } else { 300 };

fn model(name: &str, side: usize) -> Model {
    let net = zoo::build_with_input(
        name,
        vec![zoo::default_input_shape(name).expect("zoo")[0], side, side],
    )
    .expect("zoo model at a reduced input size");
    let device = Backend::default().device().expect("default backend");
    Model::seeded(net, 42, &device).expect("seeded model")
}

fn forward(model: &Model, x: &HostTensor) -> HostTensor {
    let value = model.upload(x.clone()).expect("upload");
    model
        .forward(value)
        .expect("forward")
        .to_host()
        .expect("read back")
}

fn split(model: &Model, cloud: Vec<bool>, x: &HostTensor) -> HostTensor {
    let cut = model.net().cut_from_mask(cloud).expect("valid cut");
    let value: Value = model.upload(x.clone()).expect("upload");
    let boundary = model.run_edge(&cut, value).expect("edge part");
    model
        .run_cloud(&cut, boundary)
        .expect("cloud part")
        .to_host()
        .expect("read back")
}

fn every_chain_cut(name: &str, side: usize) {
    let model = model(name, side);
    assert!(model.net().is_chain(), "{name} is a chain");
    let mut rng = Lcg(7);
    let x = input(model.net(), 2, &mut rng);
    let whole = forward(&model, &x);
    let output_len: usize = model.net().output_shape().iter().product();
    assert_eq!(whole.data().len(), 2 * output_len);
    assert!(whole.data().iter().all(|v| v.is_finite()));
    let n = model.net().len();
    // Split point k: nodes k.. run on the cloud; k = n is edge only.
    for k in 1..=n {
        let cloud: Vec<bool> = (0..n).map(|v| v >= k).collect();
        let got = split(&model, cloud, &x);
        let diff = relative_difference(&got, &whole);
        assert!(
            diff <= TOLERANCE,
            "{name}: cut before node {k} differs by {diff}"
        );
    }
}

/// A random successor-closed set without the input: the descendants of a few random nodes.
fn random_cloud_set(net: &Net, rng: &mut Lcg) -> Vec<bool> {
    let n = net.len();
    let mut cloud = vec![false; n];
    for _ in 0..1 + rng.below(3) {
        cloud[1 + rng.below(n - 1)] = true;
    }
    for v in 1..n {
        if cloud[v] {
            for &w in net.consumers(v) {
                cloud[w] = true;
            }
        }
    }
    cloud
}

fn random_dag_cuts(name: &str, side: usize) {
    let model = model(name, side);
    assert!(!model.net().is_chain(), "{name} is a DAG");
    let mut rng = Lcg(11);
    let x = input(model.net(), 1, &mut rng);
    let whole = forward(&model, &x);
    assert!(whole.data().iter().all(|v| v.is_finite()));
    for _ in 0..RANDOM_CUTS {
        let cloud = random_cloud_set(model.net(), &mut rng);
        let ids: Vec<&str> = (0..cloud.len())
            .filter(|&v| cloud[v])
            .map(|v| model.net().nodes()[v].id())
            .collect();
        let got = split(&model, cloud.clone(), &x);
        let diff = relative_difference(&got, &whole);
        assert!(diff <= TOLERANCE, "{name}: cut {ids:?} differs by {diff}");
    }
}

#[test]
fn lenet_every_cut() {
    every_chain_cut("lenet", 32);
}

#[test]
fn alexnet_every_cut() {
    every_chain_cut("alexnet", 64);
}

#[test]
fn vgg16_every_cut() {
    every_chain_cut("vgg16", 32);
}

#[test]
fn resnet18_random_cuts() {
    random_dag_cuts("resnet18", 32);
}

#[test]
fn resnet50_random_cuts() {
    random_dag_cuts("resnet50", 32);
}

#[test]
fn mobilenet_v2_random_cuts() {
    random_dag_cuts("mobilenet_v2", 32);
}

#[test]
fn googlenet_random_cuts() {
    random_dag_cuts("googlenet", 32);
}
