//! The conditions a plan is made for: the link, what to minimise, and the cloud's load.

use crate::error::ScenarioError;

/// The network between edge and cloud. Rates are in Mbit/s (10^6 bit/s), times in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    uplink_mbps: f64,
    downlink_mbps: f64,
    rtt_ms: f64,
}

impl Link {
    /// A link with the given rates and round-trip time. Rates must be positive and finite,
    /// the RTT finite and non-negative.
    pub fn new(uplink_mbps: f64, downlink_mbps: f64, rtt_ms: f64) -> Result<Link, ScenarioError> {
        positive("uplink_mbps", uplink_mbps)?;
        positive("downlink_mbps", downlink_mbps)?;
        non_negative("rtt_ms", rtt_ms)?;
        Ok(Link {
            uplink_mbps,
            downlink_mbps,
            rtt_ms,
        })
    }

    /// Edge → cloud rate in Mbit/s.
    pub fn uplink_mbps(&self) -> f64 {
        self.uplink_mbps
    }

    /// Cloud → edge rate in Mbit/s.
    pub fn downlink_mbps(&self) -> f64 {
        self.downlink_mbps
    }

    /// Round-trip time in ms.
    pub fn rtt_ms(&self) -> f64 {
        self.rtt_ms
    }

    /// Milliseconds to send `bytes` up to the cloud.
    pub fn upload_ms(&self, bytes: u64) -> f64 {
        transfer_ms(bytes, self.uplink_mbps)
    }

    /// Milliseconds to send `bytes` down to the edge.
    pub fn download_ms(&self, bytes: u64) -> f64 {
        transfer_ms(bytes, self.downlink_mbps)
    }
}

/// `bytes` at `mbps` Mbit/s, in ms: bytes · 8 bit / (mbps · 10^6 bit/s) · 10^3 ms/s.
fn transfer_ms(bytes: u64, mbps: f64) -> f64 {
    bytes as f64 * 8.0e-3 / mbps
}

/// What a plan minimises.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// End-to-end latency, in ms.
    Latency,
    /// The edge's energy, in mJ (W × ms): computing at `compute_w`, transmitting at
    /// `transmit_w`, and idle at `idle_w` while it waits for the cloud, the RTT and downloads.
    Energy {
        /// Power while the edge computes, in W.
        compute_w: f64,
        /// Power while the edge's radio transmits, in W.
        transmit_w: f64,
        /// Power while the edge waits, in W.
        idle_w: f64,
    },
}

impl Objective {
    /// Short name: `latency` or `energy`.
    pub fn name(&self) -> &'static str {
        match self {
            Objective::Latency => "latency",
            Objective::Energy { .. } => "energy",
        }
    }

    /// Unit of the objective's value: `ms` or `mJ`.
    pub fn unit(&self) -> &'static str {
        match self {
            Objective::Latency => "ms",
            Objective::Energy { .. } => "mJ",
        }
    }
}

/// Everything a solver needs besides the graph: link, objective and cloud load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scenario {
    link: Link,
    objective: Objective,
    load_factor: f64,
}

impl Scenario {
    /// A scenario. `load_factor` (≥ 1) multiplies every cloud time; energy powers must be
    /// finite and non-negative.
    pub fn new(
        link: Link,
        objective: Objective,
        load_factor: f64,
    ) -> Result<Scenario, ScenarioError> {
        if !(load_factor.is_finite() && load_factor >= 1.0) {
            return Err(ScenarioError::OutOfRange {
                name: "load_factor",
                value: load_factor,
                expected: "a finite number ≥ 1 (1 means an idle cloud)",
            });
        }
        if let Objective::Energy {
            compute_w,
            transmit_w,
            idle_w,
        } = objective
        {
            non_negative("compute_w", compute_w)?;
            non_negative("transmit_w", transmit_w)?;
            non_negative("idle_w", idle_w)?;
        }
        Ok(Scenario {
            link,
            objective,
            load_factor,
        })
    }

    /// Minimise latency over `link` with an idle cloud.
    pub fn latency(link: Link) -> Scenario {
        Scenario {
            link,
            objective: Objective::Latency,
            load_factor: 1.0,
        }
    }

    /// The link.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The objective.
    pub fn objective(&self) -> &Objective {
        &self.objective
    }

    /// The cloud's load factor (≥ 1).
    pub fn load_factor(&self) -> f64 {
        self.load_factor
    }
}

fn positive(name: &'static str, value: f64) -> Result<(), ScenarioError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ScenarioError::OutOfRange {
            name,
            value,
            expected: "a finite rate > 0 Mbit/s",
        })
    }
}

fn non_negative(name: &'static str, value: f64) -> Result<(), ScenarioError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ScenarioError::OutOfRange {
            name,
            value,
            expected: "a finite number ≥ 0",
        })
    }
}
