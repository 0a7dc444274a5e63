//! Fuzzes the model spec reader: any text must build a network or give a typed error, never
//! panic or hang (or allocate past libFuzzer's malloc limit). A network that builds has nodes,
//! and everything but its input is a valid cut.

#![no_main]

use libfuzzer_sys::fuzz_target;
use models::Net;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(net) = Net::from_spec_json(text) else {
        return;
    };
    assert!(net.len() >= 1);
    let mut cloud = vec![true; net.len()];
    cloud[0] = false;
    if net.len() > 1 {
        net.cut_from_mask(cloud)
            .expect("everything but the input is a cut");
    }
});
