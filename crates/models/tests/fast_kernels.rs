//! The fast kernels (folded batch norms, fused activations, the crate's own convolutions on
//! flex) compute what Burn's plain operations compute: for every zoo model, whole and split at
//! random cuts, including cuts inside a fused group.

mod common;

use common::{Lcg, input};
use models::{Backend, HostTensor, Kernels, Model, Net, Weights, relative_difference, zoo};

/// The bar: 1e-4 of the output's largest magnitude.
const TOLERANCE: f64 = 1e-4;

/// Random cuts per model on top of the cuts inside fused groups.
const RANDOM_CUTS: usize = 6;

fn run(model: &Model, cloud: Option<Vec<bool>>, x: &HostTensor) -> HostTensor {
    let value = model.upload(x.clone()).expect("upload");
    let y = match cloud {
        None => model.forward(value),
        Some(cloud) => {
            let cut = model.net().cut_from_mask(cloud).expect("valid cut");
            model.run_split(&cut, value)
        }
    };
    y.expect("runs").to_host().expect("read back")
}

/// Node `first` and everything after it: a successor-closed cloud set.
fn descendants(net: &Net, first: &[usize]) -> Vec<bool> {
    let mut cloud = vec![false; net.len()];
    for &v in first {
        cloud[v] = true;
    }
    for v in 1..net.len() {
        if cloud[v] {
            for &w in net.consumers(v) {
                cloud[w] = true;
            }
        }
    }
    cloud
}

fn fast_equals_plain(name: &str) {
    let net = zoo::build(name).expect("zoo model");
    let weights = Weights::seeded(&net, 5);
    let device = Backend::Flex.device().expect("flex");
    let plain = Model::with_kernels(net.clone(), weights.clone(), &device, Kernels::Plain)
        .expect("plain model");
    let fast = Model::with_kernels(net.clone(), weights, &device, Kernels::Fast).expect("fast");
    let mut rng = Lcg(3);
    let x = input(&net, 1, &mut rng);
    let want = run(&plain, None, &x);
    let diff = relative_difference(&run(&fast, None, &x), &want);
    assert!(diff <= TOLERANCE, "{name}: whole pass differs by {diff}");

    // Cuts right after a convolution whose batch norm or activation is fused into it, then
    // random ones.
    let fusion = fast.fusion();
    let inside: Vec<usize> = (0..net.len()).filter(|&v| fusion.is_absorbed(v)).collect();
    let mut cuts: Vec<Vec<usize>> = (0..3)
        .filter(|_| !inside.is_empty())
        .map(|_| vec![inside[rng.below(inside.len())]])
        .collect();
    cuts.extend((0..RANDOM_CUTS).map(|_| vec![1 + rng.below(net.len() - 1)]));
    for first in cuts {
        let cloud = descendants(&net, &first);
        let diff = relative_difference(&run(&fast, Some(cloud), &x), &want);
        let id = net.nodes()[first[0]].id();
        assert!(
            diff <= TOLERANCE,
            "{name}: cut before `{id}` differs by {diff}"
        );
    }
}

#[test]
fn lenet_fast_equals_plain() {
    fast_equals_plain("lenet");
}

#[test]
fn alexnet_fast_equals_plain() {
    fast_equals_plain("alexnet");
}

#[test]
fn vgg16_fast_equals_plain() {
    fast_equals_plain("vgg16");
}

#[test]
fn resnet18_fast_equals_plain() {
    fast_equals_plain("resnet18");
}

#[test]
fn resnet50_fast_equals_plain() {
    fast_equals_plain("resnet50");
}

#[test]
fn mobilenet_v2_fast_equals_plain() {
    fast_equals_plain("mobilenet_v2");
}

#[test]
fn googlenet_fast_equals_plain() {
    fast_equals_plain("googlenet");
}
