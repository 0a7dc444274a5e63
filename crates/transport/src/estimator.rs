//! Link estimation from real transfers: uplink and downlink goodput (EWMA) and RTT.
//!
//! This module is pure: it is fed samples and a clock value and does no IO.
//!
//! A bandwidth sample is `bytes / span`, where the span runs from the first to the last byte
//! **as the receiver saw them**. Measuring at the receiver leaves the one-way propagation delay
//! out, so a long RTT does not deflate the estimate. Transfers shorter than
//! [`EstimatorConfig::min_sample_bytes`] are ignored: they are dominated by latency and by
//! the burst allowance of any shaper on the path, and would overestimate badly.

use std::time::{Duration, Instant};

use crate::message::TransferReport;

/// Tuning of a [`LinkEstimator`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EstimatorConfig {
    /// Weight of a new sample in the EWMA, in (0, 1]. Default 0.5.
    pub alpha: f64,
    /// Smallest transfer used as a sample, in bytes. Default 64 KiB.
    pub min_sample_bytes: u64,
    /// Age after which an estimate is stale and a probe is due. Default 10 s.
    pub stale_after: Duration,
    /// Smallest probe, in bytes. Default 256 KiB: far above the few-KiB bursts of `tc tbf` or
    /// of [`crate::Shaper`] defaults, so the probe measures the sustained rate.
    pub min_probe_bytes: u64,
    /// Largest probe, in bytes. Default 8 MiB.
    pub max_probe_bytes: u64,
    /// How long a probe should last at the current estimate. Default 500 ms.
    pub probe_duration: Duration,
}

impl Default for EstimatorConfig {
    fn default() -> Self {
        EstimatorConfig {
            alpha: 0.5,
            min_sample_bytes: 64 * 1024,
            stale_after: Duration::from_secs(10),
            min_probe_bytes: 256 * 1024,
            max_probe_bytes: 8 * 1024 * 1024,
            probe_duration: Duration::from_millis(500),
        }
    }
}

/// Why an estimator configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EstimatorError {
    /// α is outside (0, 1].
    #[error("EWMA alpha {0} is outside (0, 1]; 0.5 is a good default")]
    BadAlpha(f64),
    /// The probe bounds are inverted or zero.
    #[error("probe size bounds {min}..={max} bytes are empty or zero; use e.g. 262144..=8388608")]
    BadProbeBounds {
        /// Smallest probe.
        min: u64,
        /// Largest probe.
        max: u64,
    },
}

/// One direction's estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DirectionEstimate {
    /// Smoothed goodput in Mbit/s (10^6 bit/s).
    pub mbps: f64,
    /// Time since the last sample.
    pub age: Duration,
    /// Samples taken so far.
    pub samples: u32,
}

/// A snapshot of the link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkEstimate {
    /// Edge → cloud.
    pub uplink: Option<DirectionEstimate>,
    /// Cloud → edge.
    pub downlink: Option<DirectionEstimate>,
    /// Smoothed round-trip time in ms.
    pub rtt_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Ewma {
    value: f64,
    updated: Instant,
    samples: u32,
}

impl Ewma {
    fn update(slot: &mut Option<Ewma>, sample: f64, alpha: f64, at: Instant) {
        *slot = Some(match *slot {
            None => Ewma {
                value: sample,
                updated: at,
                samples: 1,
            },
            Some(old) => Ewma {
                value: alpha * sample + (1.0 - alpha) * old.value,
                updated: at,
                samples: old.samples.saturating_add(1),
            },
        });
    }

    fn estimate(&self, now: Instant) -> DirectionEstimate {
        DirectionEstimate {
            mbps: self.value * 8.0 / 1e6,
            age: now.saturating_duration_since(self.updated),
            samples: self.samples,
        }
    }
}

/// Passive uplink/downlink/RTT estimator.
#[derive(Debug, Clone)]
pub struct LinkEstimator {
    config: EstimatorConfig,
    uplink: Option<Ewma>,
    downlink: Option<Ewma>,
    rtt: Option<Ewma>,
}

impl LinkEstimator {
    /// An estimator with no samples yet.
    pub fn new(config: EstimatorConfig) -> Result<Self, EstimatorError> {
        if !(config.alpha > 0.0 && config.alpha <= 1.0) {
            return Err(EstimatorError::BadAlpha(config.alpha));
        }
        if config.min_probe_bytes == 0 || config.min_probe_bytes > config.max_probe_bytes {
            return Err(EstimatorError::BadProbeBounds {
                min: config.min_probe_bytes,
                max: config.max_probe_bytes,
            });
        }
        Ok(LinkEstimator {
            config,
            uplink: None,
            downlink: None,
            rtt: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EstimatorConfig {
        &self.config
    }

    fn sample(&self, report: TransferReport) -> Option<f64> {
        (report.bytes >= self.config.min_sample_bytes && report.span_us > 0)
            .then(|| report.bytes as f64 / (report.span_us as f64 / 1e6))
    }

    /// Feeds an upload as the server received it, sent while `sharers` uploads (on average,
    /// itself included; see [`crate::LinkShare`]) shared the link: the sample is the frame's
    /// rate times `sharers`, the link's rate when they share it evenly. Returns whether it
    /// was used.
    pub fn record_upload(&mut self, report: TransferReport, sharers: f64, at: Instant) -> bool {
        let Some(rate) = self.sample(report) else {
            return false;
        };
        let sharers = if sharers.is_finite() {
            sharers.max(1.0)
        } else {
            1.0
        };
        Ewma::update(&mut self.uplink, rate * sharers, self.config.alpha, at);
        true
    }

    /// Feeds a download as the client received it. Returns whether it was used.
    pub fn record_download(&mut self, report: TransferReport, at: Instant) -> bool {
        let Some(rate) = self.sample(report) else {
            return false;
        };
        Ewma::update(&mut self.downlink, rate, self.config.alpha, at);
        true
    }

    /// Feeds an RTT sample (quinn's estimate).
    pub fn record_rtt(&mut self, rtt: Duration, at: Instant) {
        Ewma::update(
            &mut self.rtt,
            rtt.as_secs_f64() * 1e3,
            self.config.alpha,
            at,
        );
    }

    /// The current estimate.
    pub fn snapshot(&self, now: Instant) -> LinkEstimate {
        LinkEstimate {
            uplink: self.uplink.map(|e| e.estimate(now)),
            downlink: self.downlink.map(|e| e.estimate(now)),
            rtt_ms: self.rtt.map(|e| e.value),
        }
    }

    /// Whether either direction has no sample or one older than
    /// [`EstimatorConfig::stale_after`].
    pub fn is_stale(&self, now: Instant) -> bool {
        [self.uplink, self.downlink].iter().any(|d| match d {
            None => true,
            Some(e) => now.saturating_duration_since(e.updated) > self.config.stale_after,
        })
    }

    /// Probe sizes `(up, down)` in bytes: what each direction moves in
    /// [`EstimatorConfig::probe_duration`] at its current estimate, clamped to the configured
    /// bounds (the lower bound when there is no estimate yet).
    pub fn probe_bytes(&self) -> (u64, u64) {
        let size = |e: Option<Ewma>| {
            let wanted = e.map_or(0.0, |e| e.value * self.config.probe_duration.as_secs_f64());
            (wanted as u64).clamp(self.config.min_probe_bytes, self.config.max_probe_bytes)
        };
        (size(self.uplink), size(self.downlink))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(bytes: u64, span_ms: u64) -> TransferReport {
        TransferReport {
            bytes,
            span_us: span_ms * 1000,
        }
    }

    #[test]
    fn first_sample_sets_the_estimate_and_alpha_blends_later_ones() {
        let mut est = LinkEstimator::new(EstimatorConfig {
            alpha: 0.25,
            ..EstimatorConfig::default()
        })
        .expect("valid");
        let t0 = Instant::now();
        // 1 MB in 1 s = 8 Mbit/s.
        assert!(est.record_upload(report(1_000_000, 1000), 1.0, t0));
        let up = est.snapshot(t0).uplink.expect("one sample");
        assert!((up.mbps - 8.0).abs() < 1e-9);
        // 1 MB in 0.5 s = 16 Mbit/s; 0.25 * 16 + 0.75 * 8 = 10.
        assert!(est.record_upload(report(1_000_000, 500), 1.0, t0));
        let up = est.snapshot(t0).uplink.expect("two samples");
        assert!((up.mbps - 10.0).abs() < 1e-9);
        assert_eq!(up.samples, 2);
        assert!(est.snapshot(t0).downlink.is_none());
    }

    #[test]
    fn an_upload_that_shared_the_link_counts_for_the_link() {
        let mut est = LinkEstimator::new(EstimatorConfig::default()).expect("valid");
        let t0 = Instant::now();
        // 1 MB in 1 s while two uploads shared the link: the link carried 16 Mbit/s.
        assert!(est.record_upload(report(1_000_000, 1000), 2.0, t0));
        let up = est.snapshot(t0).uplink.expect("one sample");
        assert!((up.mbps - 16.0).abs() < 1e-9);
        // Fewer than one sharer, or none known, is the frame alone.
        for sharers in [0.5, f64::NAN] {
            let mut est = LinkEstimator::new(EstimatorConfig::default()).expect("valid");
            assert!(est.record_upload(report(1_000_000, 1000), sharers, t0));
            assert!((est.snapshot(t0).uplink.expect("sampled").mbps - 8.0).abs() < 1e-9);
        }
    }

    #[test]
    fn small_or_instant_transfers_are_ignored() {
        let mut est = LinkEstimator::new(EstimatorConfig::default()).expect("valid");
        let t0 = Instant::now();
        assert!(!est.record_download(report(1000, 10), t0));
        assert!(!est.record_download(report(1 << 20, 0), t0));
        assert!(est.snapshot(t0).downlink.is_none());
    }

    #[test]
    fn staleness_and_age_follow_the_clock() {
        let mut est = LinkEstimator::new(EstimatorConfig::default()).expect("valid");
        let t0 = Instant::now();
        assert!(est.is_stale(t0));
        est.record_upload(report(1 << 20, 100), 1.0, t0);
        assert!(est.is_stale(t0), "downlink still unknown");
        est.record_download(report(1 << 20, 100), t0);
        assert!(!est.is_stale(t0));
        let later = t0 + Duration::from_secs(11);
        assert!(est.is_stale(later));
        let up = est.snapshot(later).uplink.expect("sampled");
        assert_eq!(up.age, Duration::from_secs(11));
    }

    #[test]
    fn probe_size_scales_with_the_estimate_within_bounds() {
        let mut est = LinkEstimator::new(EstimatorConfig::default()).expect("valid");
        let t0 = Instant::now();
        assert_eq!(est.probe_bytes(), (256 * 1024, 256 * 1024));
        // 100 Mbit/s up: 0.5 s is 6.25 MB.
        est.record_upload(report(12_500_000, 1000), 1.0, t0);
        // 1000 Mbit/s down: capped at 8 MiB.
        est.record_download(report(125_000_000, 1000), t0);
        assert_eq!(est.probe_bytes(), (6_250_000, 8 * 1024 * 1024));
    }

    #[test]
    fn rtt_is_smoothed_in_ms() {
        let mut est = LinkEstimator::new(EstimatorConfig {
            alpha: 0.5,
            ..EstimatorConfig::default()
        })
        .expect("valid");
        let t0 = Instant::now();
        est.record_rtt(Duration::from_millis(20), t0);
        est.record_rtt(Duration::from_millis(40), t0);
        assert_eq!(est.snapshot(t0).rtt_ms, Some(30.0));
    }

    #[test]
    fn bad_configs_are_refused() {
        for alpha in [0.0, -0.1, 1.5, f64::NAN] {
            assert!(
                LinkEstimator::new(EstimatorConfig {
                    alpha,
                    ..EstimatorConfig::default()
                })
                .is_err()
            );
        }
        assert!(
            LinkEstimator::new(EstimatorConfig {
                min_probe_bytes: 10,
                max_probe_bytes: 5,
                ..EstimatorConfig::default()
            })
            .is_err()
        );
    }
}
