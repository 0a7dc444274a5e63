//! The wgpu backend computes what flex computes. Builds with `--features wgpu` and is ignored in
//! a plain run (it needs a Vulkan adapter, e.g. Mesa's lavapipe, `mesa-vulkan-drivers`): run it
//! with `-- --ignored`, where it fails, saying why, when there is no adapter.
#![cfg(feature = "wgpu")]

use std::panic::{AssertUnwindSafe, catch_unwind};

use models::{Backend, HostTensor, Model, relative_difference, zoo};

fn input(shape: &[usize]) -> HostTensor {
    let count: usize = shape.iter().product();
    let data = (0..count)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    HostTensor::new(shape.to_vec(), data).expect("input")
}

/// Run it where a Vulkan adapter exists:
/// `cargo test -p models --features wgpu --test wgpu -- --ignored`.
#[test]
#[ignore = "needs a GPU (a Vulkan adapter; Mesa's lavapipe will do)"]
fn wgpu_matches_flex_whole_and_split() {
    let device = Backend::Wgpu.device().expect("wgpu is compiled in");
    // burn sets up the adapter on first use and panics when there is none.
    let probe = catch_unwind(AssertUnwindSafe(|| {
        let net = zoo::build("lenet").expect("lenet");
        let model = Model::seeded(net, 1, &device).expect("model");
        let x = model.upload(input(&[1, 1, 32, 32])).expect("upload");
        model.forward(x).and_then(|y| y.to_host())
    }));
    assert!(
        probe.is_ok(),
        "no wgpu adapter on this machine; install a Vulkan driver (Debian: mesa-vulkan-drivers) to run this test"
    );
    let flex = Backend::Flex.device().expect("flex");
    for (name, shape) in [
        ("lenet", vec![1, 32, 32]),
        ("resnet18", vec![3, 64, 64]),
        ("mobilenet_v2", vec![3, 64, 64]),
    ] {
        let net = zoo::build_with_input(name, shape.clone()).expect("net");
        let mut batch = vec![2];
        batch.extend(shape);
        let x = input(&batch);
        let on_flex = Model::seeded(net.clone(), 5, &flex).expect("flex model");
        let on_wgpu = Model::seeded(net.clone(), 5, &device).expect("wgpu model");
        let want = on_flex
            .forward(on_flex.upload(x.clone()).expect("upload"))
            .and_then(|y| y.to_host())
            .expect("flex forward");
        let got = on_wgpu
            .forward(on_wgpu.upload(x.clone()).expect("upload"))
            .and_then(|y| y.to_host())
            .expect("wgpu forward");
        let diff = relative_difference(&got, &want);
        assert!(diff <= 1e-4, "{name}: wgpu differs from flex by {diff}");

        // The cloud part: the second half of the nodes in topological order, which is
        // successor-closed.
        let half = net.len() / 2;
        let mask: Vec<bool> = (0..net.len()).map(|v| v >= half).collect();
        let cut = net.cut_from_mask(mask).expect("a suffix is a valid cut");
        let split = on_wgpu
            .run_split(&cut, on_wgpu.upload(x).expect("upload"))
            .and_then(|y| y.to_host())
            .expect("wgpu split");
        let diff = relative_difference(&split, &got);
        assert!(diff <= 1e-5, "{name}: split differs from whole by {diff}");
    }
}
