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
    /// A link with the given rates and round-trip time. Rates must lie in
    /// [10^-6, 10^9] Mbit/s (1 bit/s to 1 Pbit/s), the RTT in [0, 10^9] ms.
    pub fn new(uplink_mbps: f64, downlink_mbps: f64, rtt_ms: f64) -> Result<Link, ScenarioError> {
        let rates = "a rate from 0.000001 to 1e9 Mbit/s";
        within("uplink_mbps", uplink_mbps, 1e-6, 1e9, rates)?;
        within("downlink_mbps", downlink_mbps, 1e-6, 1e9, rates)?;
        within("rtt_ms", rtt_ms, 0.0, 1e9, "a time from 0 to 1e9 ms")?;
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
    /// The time per frame of a pipelined stream of frames from one edge, in ms: the slowest
    /// stage of edge compute, uplink, cloud (its expected wait included) and downlink, which
    /// sets the throughput when the edge computes frame k+1 while frame k uploads and the
    /// cloud runs frame k−1 (DADS's heavy-load case). Among plans with the same slowest
    /// stage, the lower end-to-end latency wins.
    Stream,
}

impl Objective {
    /// Short name: `latency`, `energy` or `stream`.
    pub fn name(&self) -> &'static str {
        match self {
            Objective::Latency => "latency",
            Objective::Energy { .. } => "energy",
            Objective::Stream => "stream",
        }
    }

    /// Unit of the objective's value: `ms`, `mJ`, or `ms/frame` for the stream.
    pub fn unit(&self) -> &'static str {
        match self {
            Objective::Latency => "ms",
            Objective::Stream => "ms/frame",
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
    wait_ms: f64,
}

impl Scenario {
    /// A scenario. `load_factor` (in [1, 10^6]) multiplies every layer's cloud time (not the
    /// decoding of encoded tensors); energy powers must lie in [0, 10^6] W.
    pub fn new(
        link: Link,
        objective: Objective,
        load_factor: f64,
    ) -> Result<Scenario, ScenarioError> {
        let load = "a factor from 1 (an idle cloud) to 1e6";
        within("load_factor", load_factor, 1.0, 1e6, load)?;
        if let Objective::Energy {
            compute_w,
            transmit_w,
            idle_w,
        } = objective
        {
            let watts = "a power from 0 to 1e6 W";
            within("compute_w", compute_w, 0.0, 1e6, watts)?;
            within("transmit_w", transmit_w, 0.0, 1e6, watts)?;
            within("idle_w", idle_w, 0.0, 1e6, watts)?;
        }
        Ok(Scenario {
            link,
            objective,
            load_factor,
            wait_ms: 0.0,
        })
    }

    /// Minimise latency over `link` with an idle cloud.
    pub fn latency(link: Link) -> Scenario {
        Scenario {
            link,
            objective: Objective::Latency,
            load_factor: 1.0,
            wait_ms: 0.0,
        }
    }

    /// The same scenario with the cloud's expected wait W (ms, in [0, 10^7]): the time a new
    /// request queues before a worker takes it. Every request to the cloud pays it once, with
    /// its round trip; it does not scale the layers, as the load factor does.
    pub fn with_wait(self, wait_ms: f64) -> Result<Scenario, ScenarioError> {
        within("wait_ms", wait_ms, 0.0, 1e7, "a wait from 0 to 1e7 ms")?;
        Ok(Scenario { wait_ms, ..self })
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

    /// The cloud's expected wait for a new request, ms (0 for an idle cloud).
    pub fn wait_ms(&self) -> f64 {
        self.wait_ms
    }
}

/// Checks `lo ≤ value ≤ hi` (false for NaN).
fn within(
    name: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
    expected: &'static str,
) -> Result<(), ScenarioError> {
    if (lo..=hi).contains(&value) {
        Ok(())
    } else {
        Err(ScenarioError::OutOfRange {
            name,
            value,
            expected,
        })
    }
}
