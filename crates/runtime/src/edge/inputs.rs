//! The planner's inputs from live measurements: the link (with the override and the assumed
//! link filling gaps) and the cloud's expected wait (which fades back to idle with age).

use std::time::{Duration, Instant};

use partition_core::Link;
use transport::LinkEstimate;

use crate::error::RuntimeError;

/// Largest rate a [`Link`] accepts, Mbit/s.
const MAX_MBPS: f64 = 1e9;
/// Smallest rate a [`Link`] accepts, Mbit/s.
const MIN_MBPS: f64 = 1e-6;
/// Largest wait partition-core accepts, ms.
const MAX_WAIT_MS: f64 = 1e7;

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

/// The cloud's expected wait as last reported, fading back to 0 with the given half-life, so
/// that one busy moment does not keep the planner off the cloud for good.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WaitEstimate {
    wait_ms: f64,
    at: Instant,
    half_life: Duration,
}

impl WaitEstimate {
    /// An idle cloud.
    pub fn idle(half_life: Duration) -> WaitEstimate {
        WaitEstimate {
            wait_ms: 0.0,
            at: Instant::now(),
            half_life,
        }
    }

    /// Records the server's reported wait as of `at`, clamped to `[0, MAX_WAIT_MS]` (a
    /// non-finite report counts as the largest).
    pub fn set(&mut self, wait_ms: f64, at: Instant) {
        self.wait_ms = if wait_ms.is_finite() {
            wait_ms.clamp(0.0, MAX_WAIT_MS)
        } else {
            MAX_WAIT_MS
        };
        self.at = at;
    }

    /// The wait now: `W·2^(−age/half_life)`.
    pub fn value(&self, now: Instant) -> f64 {
        let half_lives = if self.half_life.is_zero() {
            f64::INFINITY
        } else {
            now.saturating_duration_since(self.at).as_secs_f64() / self.half_life.as_secs_f64()
        };
        self.wait_ms * 0.5f64.powf(half_lives)
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
    fn the_wait_fades_to_idle() {
        let t0 = Instant::now();
        let mut wait = WaitEstimate::idle(Duration::from_secs(10));
        assert_eq!(wait.value(t0), 0.0);
        wait.set(40.0, t0);
        assert_eq!(wait.value(t0), 40.0);
        assert!((wait.value(t0 + Duration::from_secs(10)) - 20.0).abs() < 1e-9);
        wait.set(f64::NAN, t0);
        assert_eq!(wait.value(t0), MAX_WAIT_MS);
        wait.set(-5.0, t0);
        assert_eq!(wait.value(t0), 0.0);
    }
}
