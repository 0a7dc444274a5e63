//! The fast kernels (folded batch norms, fused activations, the crate's own convolutions on
//! flex) compute what Burn's plain operations compute: for every zoo model, whole and split at
//! random cuts, including cuts inside a fused group, on the widest vector path the CPU has (see
//! `avx2_kernels.rs` for the AVX2 path).

mod common;
mod fast_plain;

use fast_plain::{
    concat_batch_fast_equals_plain, fast_equals_plain, odd_channel_blocks_fast_equal_plain,
    strided_windows_fast_equal_plain,
};

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

#[test]
fn odd_channel_residual_blocks_fast_equal_plain() {
    odd_channel_blocks_fast_equal_plain();
}

#[test]
fn concatenated_branches_of_a_batch_fast_equal_plain() {
    concat_batch_fast_equals_plain();
}

#[test]
fn stride_2_windows_on_large_planes_fast_equal_plain() {
    strided_windows_fast_equal_plain();
}
