//! What one request produced and cost: [`Outcome`] and its [`Measured`] breakdown.

use models::{HostTensor, INPUT_ID};
use partition_core::{Breakdown, Direction, Graph, Link, Plan, Transfer};
use transport::{Codec, LinkEstimate};

/// Where the time of one request went, as measured. All in ms.
///
/// `total_ms` is wall time from the start of the edge part to the output in hand (planning and
/// any bandwidth probe before it are not included). The parts do not add up to it exactly: the
/// rest is propagation delay and scheduling ([`Measured::other_ms`]). As in the plan's
/// breakdown, the edge's decoding of an image file and encoding of boundary tensors count as
/// edge time, and the cloud's decoding as cloud time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Measured {
    /// Computing on the edge: the edge part, plus the cloud's part when it ran locally.
    pub edge_ms: f64,
    /// Sending the request, from its first to its last byte as the server received them.
    pub upload_ms: f64,
    /// Waiting in the cloud's queue, as the server reported it.
    pub queue_ms: f64,
    /// Computing on the cloud, decoding included, as the server reported it.
    pub cloud_ms: f64,
    /// Loading the model on the cloud, when this request was its first there (0 otherwise):
    /// a one-off, not compute.
    pub load_ms: f64,
    /// Receiving the result, from its first to its last byte.
    pub download_ms: f64,
    /// Wall time of the whole request.
    pub total_ms: f64,
    /// The CPU packages' energy over the edge's compute (its part, or the whole network when
    /// it ran here), in mJ, from the powercap counters: package-wide, so every process on the
    /// CPU counts. `None` where the machine has no readable counters
    /// ([`crate::EdgeSession::energy_counters`] says why).
    pub edge_energy_mj: Option<f64>,
}

impl Measured {
    /// Time not in any part: propagation and scheduling (never negative).
    pub fn other_ms(&self) -> f64 {
        let parts = self.edge_ms
            + self.upload_ms
            + self.queue_ms
            + self.cloud_ms
            + self.load_ms
            + self.download_ms;
        (self.total_ms - parts).max(0.0)
    }

    /// Adds the package energy of one stretch of edge compute, when it was measured.
    pub(crate) fn add_edge_energy(&mut self, mj: Option<f64>) {
        if let Some(mj) = mj {
            *self.edge_energy_mj.get_or_insert(0.0) += mj;
        }
    }
}

/// One thing a request sent up: a boundary tensor or the input file.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// The node whose output it is, or `input_file` for the image file.
    pub node: String,
    /// The codec it travelled under; `None` for the image file, which goes as it is.
    pub codec: Option<Codec>,
    /// Its size as raw f32 (the file's own size for the file).
    pub raw_bytes: u64,
    /// Its size on the wire: the encoded payload with any codec parameters
    /// ([`transport::WireTensor::encoded_len`]), or the file's size.
    pub wire_bytes: u64,
}

impl Sent {
    /// The codec's name, or `file` for the image file.
    pub fn codec_name(&self) -> &'static str {
        self.codec.map_or("file", Codec::name)
    }
}

/// The result of [`crate::EdgeSession::infer`] and [`crate::EdgeSession::infer_image`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The network's output, batch first.
    pub output: HostTensor,
    /// The plan chosen for this request, costed under [`Outcome::link`] and
    /// [`Outcome::wait_ms`]. When [`Outcome::fallback`] is set, its cloud nodes ran on the
    /// edge instead.
    pub plan: Plan,
    /// The graph the plan was made on, which its node indices refer to: the session's graph
    /// with this request's encoding estimates, and for an image file an `input_file` node in
    /// front of `input` (a plan that runs `input` on the cloud sends the file).
    pub graph: Graph,
    /// Ids of the plan's cloud nodes, in the network's node order (empty for edge-only).
    pub cloud_nodes: Vec<String>,
    /// What was sent up, in the order sent; empty for edge-only and for a request that
    /// finished locally.
    pub sent: Vec<Sent>,
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
    /// The cloud's expected wait the plan used, ms (as the server last reported it, faded with
    /// age).
    pub wait_ms: f64,
    /// Why the request ran locally although its plan used the cloud; `None` when it ran as
    /// planned.
    pub fallback: Option<String>,
    /// The cloud server that ran the cloud's part, as the session names it
    /// ([`crate::EdgeSession::servers`]); `None` when nothing ran on a cloud.
    pub server: Option<String>,
}

impl Outcome {
    /// The tensors the plan sends up, in topological order.
    pub fn uploads(&self) -> impl Iterator<Item = &Transfer> {
        self.plan
            .transfers()
            .iter()
            .filter(|t| t.direction == Direction::Up)
    }

    /// `edge-only`, `cloud-only` (only the input crosses: the image file, or the input tensor)
    /// or `split`.
    pub fn cut_kind(&self) -> &'static str {
        let ups: Vec<&Transfer> = self.uploads().collect();
        match ups.as_slice() {
            [] => "edge-only",
            [t] if t.tensor == self.graph.source() || self.graph.id(t.tensor) == INPUT_ID => {
                "cloud-only"
            }
            _ => "split",
        }
    }

    /// Whether the request's plan sends the image file itself.
    pub fn sends_file(&self) -> bool {
        self.uploads()
            .any(|t| self.graph.id(t.tensor) == crate::edge::INPUT_FILE_ID)
    }

    /// Bytes sent up: those actually sent when the request reached the cloud, else the plan's
    /// prediction.
    pub fn upload_bytes(&self) -> u64 {
        if self.sent.is_empty() {
            self.uploads().map(|t| t.bytes).sum()
        } else {
            self.sent.iter().map(|s| s.wire_bytes).sum()
        }
    }

    /// The encoding each uploaded tensor travels under (`raw`, a codec's name, or `raw` for
    /// the image file, which is its own encoding), in the order of [`Outcome::uploads`].
    pub fn upload_codecs(&self) -> Vec<&str> {
        self.uploads()
            .map(|t| self.graph.encoding_name(t.tensor, t.encoding))
            .collect()
    }
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
            load_ms: 0.25,
            download_ms: 0.5,
            total_ms: 8.0,
            edge_energy_mj: None,
        };
        assert_eq!(m.other_ms(), 0.75);
        let local = Measured {
            edge_ms: 5.0,
            total_ms: 4.9,
            ..Measured::default()
        };
        assert_eq!(local.other_ms(), 0.0);
    }
}
