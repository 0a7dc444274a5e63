//! Fuzzes the `.npy` reader: any bytes must read to a tensor whose data matches its shape, or
//! to a typed error, never panic or hang (or allocate past libFuzzer's malloc limit for a
//! shape the bytes do not hold). A tensor that
//! reads must write and read back to the same bits.

#![no_main]

use libfuzzer_sys::fuzz_target;
use models::{read_npy, write_npy};

fuzz_target!(|data: &[u8]| {
    let Ok(tensor) = read_npy(data) else {
        return;
    };
    assert_eq!(
        tensor.shape().iter().product::<usize>(),
        tensor.data().len()
    );
    let back = read_npy(&write_npy(&tensor)).expect("a written tensor reads");
    assert_eq!(back.shape(), tensor.shape());
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(back.data()), bits(tensor.data()));
});
