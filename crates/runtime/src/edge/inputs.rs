//! The planner's inputs from live measurements: the link (with the override and the assumed
//! link filling gaps) and the cloud's load factor (which fades back to idle with age).

use std::time::{Duration, Instant};

use partition_core::Link;
use transport::LinkEstimate;

use crate::error::RuntimeError;

/// Largest rate a [`Link`] accepts, Mbit/s.
const MAX_MBPS: f64 = 1e9;
/// Smallest rate a [`Link`] accepts, Mbit/s.
const MIN_MBPS: f64 = 1e-6;
/// Largest load factor partition-core accepts.
const MAX_LOAD: f64 = 1e6;

/// The link to plan for: the override uplink if given, else the measured one; measured
/// downlink and RTT; `assumed` for anything not measured yet. Measured values are clamped to
/// the range [`Link`] accepts.
pub(crate) fn planning_link(
    estimate: Option<&LinkEstimate>,
    uplink_override_mbps: Option<f64>,
    assumed: &Link,
) -> Result<Link, RuntimeError> {
    let rate = |mbps: f64| mbps.clamp(MIN_MBPS, MAX_MBPS);
    let measured_up = estimate.and_then(|e| e.uplink).map(|d| rate(d.mbps));
    let up = uplink_override_mbps
        .or(measured_up)
        .unwrap_or(assumed.uplink_mbps());
    let down = estimate
        .and_then(|e| e.downlink)
        .map_or(assumed.downlink_mbps(), |d| rate(d.mbps));
    let rtt = estimate
        .and_then(|e| e.rtt_ms)
        .map_or(assumed.rtt_ms(), |r| r.clamp(0.0, 1e9));
    Ok(Link::new(up, down, rtt)?)
}

/// The cloud's load factor as last seen, fading back to 1 with the given half-life so that one
/// busy moment does not keep the planner off the cloud for good.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadEstimate {
    value: f64,
    at: Instant,
    half_life: Duration,
}

impl LoadEstimate {
    /// An idle cloud.
    pub fn idle(half_life: Duration) -> LoadEstimate {
        LoadEstimate {
            value: 1.0,
            at: Instant::now(),
            half_life,
        }
    }

    /// Records a load factor (the server's, from its welcome), clamped to [1, 10^6].
    pub fn set(&mut self, load_factor: f64, now: Instant) {
        self.value = if load_factor.is_finite() {
            load_factor.clamp(1.0, MAX_LOAD)
        } else {
            MAX_LOAD
        };
        self.at = now;
    }

    /// Records what a reply showed: a request that queued `queue_ms` for `cloud_ms` of compute
    /// spent `1 + queue_ms / cloud_ms` times its compute time in the cloud. Compute times under
    /// 1 ms count as 1 ms, so scheduling noise on tiny parts does not read as load.
    pub fn observe(&mut self, queue_ms: f64, cloud_ms: f64, now: Instant) {
        let queue_ms = if queue_ms.is_finite() {
            queue_ms.max(0.0)
        } else {
            0.0
        };
        let cloud_ms = if cloud_ms.is_finite() {
            cloud_ms.max(1.0)
        } else {
            1.0
        };
        self.set(1.0 + queue_ms / cloud_ms, now);
    }

    /// The load factor now: `1 + (λ − 1)·2^(−age/half_life)`.
    pub fn value(&self, now: Instant) -> f64 {
        let half_lives = if self.half_life.is_zero() {
            f64::INFINITY
        } else {
            now.saturating_duration_since(self.at).as_secs_f64() / self.half_life.as_secs_f64()
        };
        1.0 + (self.value - 1.0) * 0.5f64.powf(half_lives)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use transport::DirectionEstimate;

    fn direction(mbps: f64) -> Option<DirectionEstimate> {
        Some(DirectionEstimate {
            mbps,
            age: Duration::ZERO,
            samples: 1,
        })
    }

    #[test]
    fn link_prefers_override_then_measurement_then_assumption() {
        let assumed = Link::new(10.0, 20.0, 30.0).expect("link");
        let none = planning_link(None, None, &assumed).expect("link");
        assert_eq!(none, assumed);
        let estimate = LinkEstimate {
            uplink: direction(5.0),
            downlink: None,
            rtt_ms: Some(1.5),
        };
        let measured = planning_link(Some(&estimate), None, &assumed).expect("link");
        assert_eq!(measured, Link::new(5.0, 20.0, 1.5).expect("link"));
        let forced = planning_link(Some(&estimate), Some(1.1), &assumed).expect("link");
        assert_eq!(forced.uplink_mbps(), 1.1);
        let huge = LinkEstimate {
            uplink: direction(1e12),
            downlink: direction(0.0),
            rtt_ms: None,
        };
        let clamped = planning_link(Some(&huge), None, &assumed).expect("clamped");
        assert_eq!(clamped.uplink_mbps(), MAX_MBPS);
        assert_eq!(clamped.downlink_mbps(), MIN_MBPS);
        assert!(planning_link(None, Some(-1.0), &assumed).is_err());
    }

    #[test]
    fn load_fades_to_idle() {
        let t0 = Instant::now();
        let mut load = LoadEstimate::idle(Duration::from_secs(10));
        load.observe(30.0, 10.0, t0);
        assert_eq!(load.value(t0), 4.0);
        assert!((load.value(t0 + Duration::from_secs(10)) - 2.5).abs() < 1e-9);
        load.observe(0.4, 0.01, t0);
        assert!((load.value(t0) - 1.4).abs() < 1e-9);
        load.set(f64::NAN, t0);
        assert_eq!(load.value(t0), MAX_LOAD);
        load.set(0.5, t0);
        assert_eq!(load.value(t0), 1.0);
    }
}
