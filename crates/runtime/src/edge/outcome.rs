//! What one request produced and cost: [`Outcome`] and its [`Measured`] breakdown.

use models::HostTensor;
use partition_core::{Breakdown, Link, Plan};
use transport::LinkEstimate;

/// Where the time of one request went, as measured. All in ms.
///
/// `total_ms` is wall time from the start of the edge part to the output in hand (planning and
/// any bandwidth probe before it are not included). The parts do not add up to it exactly: the
/// rest is propagation delay, tensor encoding and scheduling ([`Measured::other_ms`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Measured {
    /// Computing on the edge: the edge part, plus the cloud's part when it ran locally.
    pub edge_ms: f64,
    /// Sending the request, from its first to its last byte as the server received them.
    pub upload_ms: f64,
    /// Waiting in the cloud's queue, as the server reported it.
    pub queue_ms: f64,
    /// Computing on the cloud, as the server reported it.
    pub cloud_ms: f64,
    /// Receiving the result, from its first to its last byte.
    pub download_ms: f64,
    /// Wall time of the whole request.
    pub total_ms: f64,
}

impl Measured {
    /// Time not in any part: propagation, encoding, decoding and scheduling (never negative).
    pub fn other_ms(&self) -> f64 {
        let parts =
            self.edge_ms + self.upload_ms + self.queue_ms + self.cloud_ms + self.download_ms;
        (self.total_ms - parts).max(0.0)
    }
}

/// The result of [`crate::EdgeSession::infer`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The network's output, batch first.
    pub output: HostTensor,
    /// The plan chosen for this request, costed under [`Outcome::link`] and
    /// [`Outcome::load_factor`]. When [`Outcome::fallback`] is set, its cloud nodes ran on the
    /// edge instead.
    pub plan: Plan,
    /// Ids of the plan's cloud nodes, in the network's node order (empty for edge-only).
    pub cloud_nodes: Vec<String>,
    /// True when the cut differs from the previous request's (the first request counts).
    pub switched: bool,
    /// The predicted breakdown: the plan's.
    pub predicted: Breakdown,
    /// The measured breakdown.
    pub measured: Measured,
    /// The link the plan was made for: the estimate, with the uplink override applied and the
    /// session's assumed link filling any direction not yet measured.
    pub link: Link,
    /// The transport's raw estimate at planning time; `None` when no connection was ever made.
    pub estimate: Option<LinkEstimate>,
    /// The cloud's load factor the plan used.
    pub load_factor: f64,
    /// Why the request ran locally although its plan used the cloud; `None` when it ran as
    /// planned.
    pub fallback: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_time_is_the_unexplained_rest() {
        let m = Measured {
            edge_ms: 1.0,
            upload_ms: 2.0,
            queue_ms: 0.5,
            cloud_ms: 3.0,
            download_ms: 0.5,
            total_ms: 8.0,
        };
        assert_eq!(m.other_ms(), 1.0);
        let local = Measured {
            edge_ms: 5.0,
            total_ms: 4.9,
            ..Measured::default()
        };
        assert_eq!(local.other_ms(), 0.0);
    }
}
