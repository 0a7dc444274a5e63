//! Inputs from files never panic the library: arbitrary hyper-parameters, shapes and bytes give
//! a value or an error.

use models::{LayerKind, LayerSpec, read_npy, read_safetensors};
use proptest::prelude::*;

fn dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..8,
        Just(usize::MAX),
        Just(usize::MAX / 2),
        1usize..100_000
    ]
}

proptest! {
    #[test]
    fn conv_and_pool_inference_never_panics(
        c in dim(), h in dim(), w in dim(), out in dim(),
        k in [dim(), dim()], s in [dim(), dim()], p in [dim(), dim()], d in [dim(), dim()],
        groups in dim(), ceil_mode in any::<bool>(),
    ) {
        let conv = LayerKind::Conv2d {
            in_channels: c, out_channels: out, kernel_size: k, stride: s, padding: p,
            dilation: d, groups, bias: true,
        };
        if let Ok(spec) = LayerSpec::infer("conv", conv, vec![vec![c, h, w]]) {
            prop_assert!(spec.output_shape.iter().all(|&x| x >= 1));
            prop_assert_eq!(spec.out_bytes % 4, 0);
        }
        let pool = LayerKind::MaxPool2d { kernel_size: k, stride: s, padding: p, dilation: d, ceil_mode };
        if let Ok(spec) = LayerSpec::infer("pool", pool, vec![vec![c, h, w]]) {
            prop_assert!(spec.output_shape.iter().all(|&x| x >= 1));
        }
    }

    #[test]
    fn file_readers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = read_npy(&bytes);
        let mut npy = b"\x93NUMPY\x01\x00".to_vec();
        npy.extend_from_slice(&bytes);
        let _ = read_npy(&npy);
        let _ = read_safetensors(&bytes);
    }
}
