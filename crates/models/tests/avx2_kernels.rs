//! The fast kernels agree with the plain ones on the AVX2 path too, where the CPU has AVX-512
//! and the crate would otherwise run that: every zoo model, whole and at random cuts, with the
//! crate's own kernels capped at AVX2 ([`VectorPath::cap`]). This file is a test binary of its
//! own, so the cap holds for every test in it and for no other test.

mod common;
mod fast_plain;

use fast_plain::{
    concat_batch_fast_equals_plain, fast_equals_plain, odd_channel_blocks_fast_equal_plain,
    strided_windows_fast_equal_plain,
};
use models::VectorPath;

/// Caps the kernels at AVX2 and says whether they run it (not on a CPU without AVX2, where
/// there is nothing more to test than `fast_kernels.rs` does).
fn on_avx2() -> bool {
    let path = VectorPath::cap(VectorPath::Avx2);
    if path != VectorPath::Avx2 {
        eprintln!("this CPU has no AVX2: the kernels run {path}, which fast_kernels.rs tests");
    }
    path == VectorPath::Avx2
}

#[test]
fn lenet_fast_equals_plain_on_avx2() {
    if on_avx2() {
        fast_equals_plain("lenet");
    }
}

#[test]
fn alexnet_fast_equals_plain_on_avx2() {
    if on_avx2() {
        fast_equals_plain("alexnet");
    }
}

#[test]
fn vgg16_fast_equals_plain_on_avx2() {
    if on_avx2() {
        fast_equals_plain("vgg16");
    }
}

#[test]
fn resnet18_fast_equals_plain_on_avx2() {
    if on_avx2() {
        fast_equals_plain("resnet18");
    }
}

#[test]
fn resnet50_fast_equals_plain_on_avx2() {
    if on_avx2() {
        fast_equals_plain("resnet50");
    }
}

#[test]
fn mobilenet_v2_fast_equals_plain_on_avx2() {
    if on_avx2() {
        fast_equals_plain("mobilenet_v2");
    }
}

#[test]
fn googlenet_fast_equals_plain_on_avx2() {
    if on_avx2() {
        fast_equals_plain("googlenet");
    }
}

#[test]
fn odd_channel_residual_blocks_fast_equal_plain_on_avx2() {
    if on_avx2() {
        odd_channel_blocks_fast_equal_plain();
    }
}

#[test]
fn stride_2_windows_on_large_planes_fast_equal_plain_on_avx2() {
    if on_avx2() {
        strided_windows_fast_equal_plain();
    }
}

#[test]
fn concatenated_branches_of_a_batch_fast_equal_plain_on_avx2() {
    if on_avx2() {
        concat_batch_fast_equals_plain();
    }
}
