//! The fast kernels (folded batch norms, fused activations, the crate's own convolutions on
//! flex) compute what Burn's plain operations compute: for every zoo model, whole and split at
//! random cuts, including cuts inside a fused group.

use models::{Backend, HostTensor, Kernels, Model, Net, Weights, relative_difference, zoo};

/// The bar: 1e-4 of the output's largest magnitude.
const TOLERANCE: f64 = 1e-4;

/// Random cuts per model on top of the cuts inside fused groups.
const RANDOM_CUTS: usize = 6;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn input(net: &Net, rng: &mut Lcg) -> HostTensor {
    let mut shape = vec![1];
    shape.extend_from_slice(net.input_shape());
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|_| (rng.next() % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    HostTensor::new(shape, data).expect("input tensor")
}

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
    let x = input(&net, &mut rng);
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
