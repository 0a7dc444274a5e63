//! The check both kernel paths' tests run: a zoo model's fast kernels against its plain ones.

use crate::common::{Lcg, input};
use models::{
    Backend, HostTensor, Kernels, LayerKind, Model, Net, Weights, relative_difference, zoo,
};

/// The bar: 1e-4 of the output's largest magnitude.
pub const TOLERANCE: f64 = 1e-4;

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

/// Runs zoo model `name` with the fast and the plain kernels, whole and at random cuts (some
/// inside fused groups), and checks that they agree within [`TOLERANCE`].
pub fn fast_equals_plain(name: &str) {
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

    // Cuts right after a convolution whose batch norm or activation is fused into it, cuts
    // right before a residual addition (whose convolution then runs on the other side, its own
    // output crossing), then random ones.
    let fusion = fast.fusion();
    let inside: Vec<usize> = (0..net.len()).filter(|&v| fusion.is_absorbed(v)).collect();
    let adds: Vec<usize> = (0..net.len())
        .filter(|&v| matches!(net.nodes()[v].spec().kind, LayerKind::Add))
        .collect();
    let mut cuts: Vec<Vec<usize>> = (0..3)
        .filter(|_| !inside.is_empty())
        .map(|_| vec![inside[rng.below(inside.len())]])
        .collect();
    cuts.extend(
        (0..2)
            .filter(|_| !adds.is_empty())
            .map(|_| vec![adds[rng.below(adds.len())]]),
    );
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
