//! MobileNetV2's blocked chains, chosen when a model is made on the AVX-512 path, still agree
//! with the plain kernels when the kernels are capped at a narrower path afterwards: the
//! blocked kernels run on every path. This file is a test binary of its own, so the caps hold
//! for no other test.

mod common;

use common::{Lcg, input};
use models::{Backend, Kernels, Model, VectorPath, Weights, relative_difference, zoo};

#[test]
fn mobilenet_v2_made_on_avx512_runs_capped_at_avx2_and_at_the_narrowest_path() {
    if VectorPath::cap(VectorPath::Avx512) != VectorPath::Avx512 {
        eprintln!("this CPU has no AVX-512: no model runs blocked chains, nothing to test here");
        return;
    }
    let net = zoo::build("mobilenet_v2").expect("zoo model");
    let weights = Weights::seeded(&net, 5);
    let device = Backend::Flex.device().expect("flex");
    let fast = Model::with_kernels(net.clone(), weights.clone(), &device, Kernels::Fast)
        .expect("fast model, made on AVX-512");
    let plain = Model::with_kernels(net.clone(), weights, &device, Kernels::Plain).expect("plain");
    let mut rng = Lcg(9);
    let x = input(&net, 2, &mut rng);
    // Whole, and split inside the blocked chains (everything from a node on, in node order,
    // runs on the other side: the blocked maps cross the cut as NCHW).
    let first = net.index_of("features.8.conv.0.0").expect("node") + rng.below(40);
    let cut = net
        .cut_from_mask((0..net.len()).map(|v| v >= first).collect())
        .expect("cut");
    let run = |model: &Model, split: bool| {
        let x = model.upload(x.clone()).expect("upload");
        let y = if split {
            model.run_split(&cut, x)
        } else {
            model.forward(x)
        };
        y.expect("runs").to_host().expect("read back")
    };
    let want = run(&plain, false);
    for path in [VectorPath::Avx2, VectorPath::Other] {
        assert_eq!(VectorPath::cap(path), path);
        for split in [false, true] {
            let diff = relative_difference(&run(&fast, split), &want);
            assert!(
                diff <= 1e-4,
                "capped at {path}, split {split}: differs by {diff}"
            );
        }
    }
}
