//! The fast kernels agree with the plain ones on the narrowest vector path too (`other`: what a
//! CPU without AVX2 runs, one value at a time where `pulp` has no wider vectors), with the
//! crate's own kernels capped there ([`VectorPath::cap`]). The four models between them run
//! every kernel: direct stems, depthwise convolutions, Winograd, max pooling, fused residual
//! additions, linear layers. This file is a test binary of its own, so the cap holds for every
//! test in it and for no other test.

mod common;
mod fast_plain;

use fast_plain::{
    concat_batch_fast_equals_plain, fast_equals_plain, odd_channel_blocks_fast_equal_plain,
    strided_windows_fast_equal_plain,
};
use models::VectorPath;

/// Caps the kernels at the narrowest path, which every CPU runs.
fn on_other() {
    assert_eq!(VectorPath::cap(VectorPath::Other), VectorPath::Other);
}

#[test]
fn lenet_fast_equals_plain_on_the_narrowest_path() {
    on_other();
    fast_equals_plain("lenet");
}

#[test]
fn resnet18_fast_equals_plain_on_the_narrowest_path() {
    on_other();
    fast_equals_plain("resnet18");
}

#[test]
fn mobilenet_v2_fast_equals_plain_on_the_narrowest_path() {
    on_other();
    fast_equals_plain("mobilenet_v2");
}

#[test]
fn googlenet_fast_equals_plain_on_the_narrowest_path() {
    on_other();
    fast_equals_plain("googlenet");
}

#[test]
fn odd_channel_residual_blocks_fast_equal_plain_on_the_narrowest_path() {
    on_other();
    odd_channel_blocks_fast_equal_plain();
}

#[test]
fn stride_2_windows_on_large_planes_fast_equal_plain_on_the_narrowest_path() {
    on_other();
    strided_windows_fast_equal_plain();
}

#[test]
fn concatenated_branches_of_a_batch_fast_equal_plain_on_the_narrowest_path() {
    on_other();
    concat_batch_fast_equals_plain();
}
