//! What the property tests share: random scenarios and a tolerance for comparing costs.

use std::ops::Range;

use partition_core::{Link, Objective, Scenario};
use proptest::prelude::*;

/// Links from 0.1 to 1000 Mbit/s (log-uniform) and RTTs from 0 to 100 ms, under either
/// objective, with a cloud load factor drawn from `loads` and an expected wait of 0 (a third
/// of the time) or up to 500 ms.
pub fn scenario(loads: Range<f64>) -> impl Strategy<Value = Scenario> {
    let mbps = (-1.0f64..3.0).prop_map(|e| 10f64.powf(e));
    let energy = (0.1f64..5.0, 0.1f64..5.0, 0.01f64..1.0).prop_map(|(c, t, i)| Objective::Energy {
        compute_w: c,
        transmit_w: t,
        idle_w: i,
    });
    let objective = prop_oneof![Just(Objective::Latency), energy];
    let wait = prop_oneof![Just(0.0f64), 0.0f64..500.0, 0.0f64..500.0];
    (mbps.clone(), mbps, 0.0f64..100.0, objective, loads, wait).prop_map(
        |(up, down, rtt, objective, load, wait)| {
            let link = Link::new(up, down, rtt).expect("generated link is valid");
            Scenario::new(link, objective, load)
                .and_then(|s| s.with_wait(wait))
                .expect("generated scenario is valid")
        },
    )
}

/// Equal up to 1e-9 relative (absolute below 1).
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}
