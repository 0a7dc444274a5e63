//! A token-bucket rate limiter that emulates a slow link in user space.
//!
//! This is **emulation**, not traffic control: the client paces its own writes (uplink) or reads
//! (downlink) so that the bytes it moves through a stream never exceed `rate_mbps` on average,
//! after an initial `burst_bytes`. It needs no root and no `tc`, which is what a demo on one
//! machine wants; it does not model queueing, loss or the other traffic of a real link.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Bytes a shaped stream moves per step; the bucket is charged before each step.
pub(crate) const SHAPER_CHUNK_BYTES: usize = 16 * 1024;

/// Why a shaper could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShaperError {
    /// The rate is not a finite positive number.
    #[error(
        "shaper rate {rate_mbps} Mbit/s is not a finite positive number; give a rate such as 5.0"
    )]
    BadRate {
        /// The rate given.
        rate_mbps: f64,
    },
}

/// A token bucket: `rate_mbps` (10^6 bit/s) sustained, `burst_bytes` at most at once.
#[derive(Debug)]
pub struct Shaper {
    bytes_per_sec: f64,
    burst_bytes: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Shaper {
    /// A shaper for `rate_mbps` with a burst allowance of `burst_bytes` (at least one byte).
    /// The bucket starts full. A step larger than the bucket waits for the tokens it lacks, so
    /// a burst below the 16 KiB step paces even small writes.
    pub fn new(rate_mbps: f64, burst_bytes: usize) -> Result<Self, ShaperError> {
        if !(rate_mbps.is_finite() && rate_mbps > 0.0) {
            return Err(ShaperError::BadRate { rate_mbps });
        }
        let burst_bytes = burst_bytes.max(1) as f64;
        Ok(Shaper {
            bytes_per_sec: rate_mbps * 1e6 / 8.0,
            burst_bytes,
            state: Mutex::new(Bucket {
                tokens: burst_bytes,
                last: Instant::now(),
            }),
        })
    }

    /// The sustained rate in Mbit/s.
    pub fn rate_mbps(&self) -> f64 {
        self.bytes_per_sec * 8.0 / 1e6
    }

    /// The burst allowance in bytes.
    pub fn burst_bytes(&self) -> usize {
        self.burst_bytes as usize
    }

    /// Waits until `bytes` may pass. Callers are served in order.
    pub async fn acquire(&self, bytes: usize) {
        let mut bucket = self.state.lock().await;
        let now = Instant::now();
        let refill = now.duration_since(bucket.last).as_secs_f64() * self.bytes_per_sec;
        bucket.tokens = (bucket.tokens + refill).min(self.burst_bytes);
        bucket.last = now;
        bucket.tokens -= bytes as f64;
        if bucket.tokens < 0.0 {
            let wait = Duration::from_secs_f64(-bucket.tokens / self.bytes_per_sec);
            // The debt stays in the bucket and is repaid by the next refill, so timer rounding
            // does not accumulate. Holding the lock while waiting queues later callers.
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_rates() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Shaper::new(rate, 0).is_err());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_rate_after_the_burst() {
        let shaper = Shaper::new(8.0, SHAPER_CHUNK_BYTES).expect("valid rate"); // 1 MB/s, 16 KiB burst
        let start = Instant::now();
        for _ in 0..64 {
            shaper.acquire(SHAPER_CHUNK_BYTES).await;
        }
        // 64 chunks of 16 KiB, the first one free: 63 * 16384 / 1e6 s of virtual time.
        let elapsed = start.elapsed().as_secs_f64();
        let expected = 63.0 * SHAPER_CHUNK_BYTES as f64 / 1e6;
        assert!((elapsed - expected).abs() < 0.01, "{elapsed} vs {expected}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_below_one_step_paces_the_first_write_too() {
        let shaper = Shaper::new(8.0, 1500).expect("valid rate"); // 1 MB/s
        let start = Instant::now();
        shaper.acquire(10_000).await;
        let elapsed = start.elapsed().as_secs_f64();
        let expected = (10_000.0 - 1500.0) / 1e6;
        assert!((elapsed - expected).abs() < 1e-3, "{elapsed} vs {expected}");
    }
}
