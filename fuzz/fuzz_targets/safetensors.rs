//! Fuzzes the safetensors weights reader: any bytes must read to weights or to a typed error,
//! never panic or hang (or allocate past libFuzzer's malloc limit). Weights that read must write and
//! read back to the same tensors.

#![no_main]

use libfuzzer_sys::fuzz_target;
use models::{read_safetensors, write_safetensors};

fuzz_target!(|data: &[u8]| {
    let Ok(weights) = read_safetensors(data) else {
        return;
    };
    let bytes = write_safetensors(&weights).expect("weights that read write");
    let back = read_safetensors(&bytes).expect("written weights read");
    assert_eq!(
        format!("{back:?}"),
        format!("{weights:?}"),
        "weights change on a round trip"
    );
});
