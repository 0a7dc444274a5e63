//! A request's cut for people and for JSON: [`Outcome::cut_summary`] in a few words, and
//! [`CutReport`] with every tensor that crosses.

use partition_core::Breakdown;
use serde::Serialize;

use crate::edge::Outcome;

/// A byte count for people: `812 B`, `27.2 KiB`, `1.4 MiB`.
pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// A request's cut: its kind, the cloud's nodes, the tensors the plan sends across and what
/// was actually sent. Built by [`Outcome::cut_report`]; serialises to the `cut` object of
/// `cutpoint-edge run --json` and `tasks --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CutReport {
    /// `edge-only`, `cloud-only` or `split` ([`Outcome::cut_kind`]).
    pub kind: &'static str,
    /// Whether the plan sends the image file itself.
    pub sends_file: bool,
    /// How the plan was made (the solver, or the fixed split).
    pub solver: String,
    /// Ids of the nodes the plan puts on the cloud, in the network's order.
    pub cloud_nodes: Vec<String>,
    /// Every tensor the plan sends across, either way, with its predicted size.
    pub crossing: Vec<Crossing>,
    /// Bytes sent up: those actually sent when the request reached the cloud, else the plan's
    /// prediction ([`Outcome::upload_bytes`]).
    pub crossing_bytes: u64,
    /// What was actually sent up, in the order sent; empty for edge-only and for a request
    /// that finished locally.
    pub sent: Vec<SentTensor>,
}

/// A tensor the plan sends across.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crossing {
    /// The node whose output it is.
    pub tensor: String,
    /// The encoding it travels under (`raw`, a codec's name, or the image `file`).
    pub encoding: String,
    /// Its predicted size under that encoding.
    pub bytes: u64,
    /// Its size as raw f32.
    pub raw_bytes: u64,
    /// `up` (edge to cloud) or `down`.
    pub direction: String,
}

/// A tensor (or the image file) a request actually sent up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SentTensor {
    /// The node whose output it is, or `input_file` for the image file.
    pub tensor: String,
    /// The codec it travelled under, or `file`.
    pub encoding: &'static str,
    /// Its size on the wire.
    pub bytes: u64,
    /// Its size as raw f32 (the file's own size for the file).
    pub raw_bytes: u64,
}

impl Outcome {
    /// The cut in a few words: `edge-only`, `cloud-only (27.2 KiB image file up)`,
    /// `cloud-only (3.0 KiB up: input)`, or the tensors sent up with their encodings, as in
    /// `after layer1.0.relu+layer1.1 as f16 (12.0 KiB up)` (three named, then `+N more`).
    pub fn cut_summary(&self) -> String {
        let kind = self.cut_kind();
        if kind == "edge-only" {
            return kind.to_string();
        }
        let up = human_bytes(self.upload_bytes());
        if self.sends_file() {
            return format!("cloud-only ({up} image file up)");
        }
        let ids: Vec<String> = self
            .uploads()
            .zip(self.upload_codecs())
            .map(|(t, codec)| match codec {
                "raw" => self.graph.id(t.tensor).to_string(),
                codec => format!("{} as {codec}", self.graph.id(t.tensor)),
            })
            .collect();
        if kind == "cloud-only" {
            return format!("cloud-only ({} up: {})", up, ids.join(""));
        }
        let shown = if ids.len() > 3 {
            format!("{}+{} more", ids[..3].join("+"), ids.len() - 3)
        } else {
            ids.join("+")
        };
        format!("after {shown} ({up} up)")
    }

    /// The plan as a stable label, the same for the same plan whatever the sizes: `edge-only`,
    /// `cloud-only` or `after ID[+ID…]` naming every tensor that crosses, followed by how they
    /// travel when that is not raw f32: `cloud-only (file)` sends the image file, and
    /// `after features.5 (int8)` that tensor quantised. Experiments key their rows by it.
    pub fn cut_label(&self) -> String {
        let codecs = self.upload_codecs();
        let how = if self.sends_file() {
            " (file)".to_string()
        } else if codecs.iter().all(|&c| c == "raw") {
            String::new()
        } else {
            format!(" ({})", codecs.join("+"))
        };
        match self.cut_kind() {
            "edge-only" => "edge-only".to_string(),
            "cloud-only" => format!("cloud-only{how}"),
            _ => {
                let ids: Vec<&str> = self.uploads().map(|t| self.graph.id(t.tensor)).collect();
                format!("after {}{how}", ids.join("+"))
            }
        }
    }

    /// The cut with every crossing tensor and what was sent, for reports.
    pub fn cut_report(&self) -> CutReport {
        let graph = &self.graph;
        CutReport {
            kind: self.cut_kind(),
            sends_file: self.sends_file(),
            solver: self.plan.method().to_string(),
            cloud_nodes: self.cloud_nodes.clone(),
            crossing: self
                .plan
                .transfers()
                .iter()
                .map(|t| Crossing {
                    tensor: graph.id(t.tensor).to_string(),
                    encoding: graph.encoding_name(t.tensor, t.encoding).to_string(),
                    bytes: t.bytes,
                    raw_bytes: t.raw_bytes,
                    direction: t.direction.to_string(),
                })
                .collect(),
            crossing_bytes: self.upload_bytes(),
            sent: self
                .sent
                .iter()
                .map(|s| SentTensor {
                    tensor: s.node.clone(),
                    encoding: s.codec_name(),
                    bytes: s.wire_bytes,
                    raw_bytes: s.raw_bytes,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_as_people_write_them() {
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(27_833), "27.2 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }
}

/// A predicted breakdown, ms, as reports write it (`edge`, `upload`, `cloud`, `download`, `rtt`,
/// `wait`, `total`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BreakdownMs {
    /// Edge compute.
    pub edge: f64,
    /// Uploads.
    pub upload: f64,
    /// Cloud compute.
    pub cloud: f64,
    /// The result's download.
    pub download: f64,
    /// Round trips.
    pub rtt: f64,
    /// The cloud's expected queueing wait.
    pub wait: f64,
    /// End to end.
    pub total: f64,
}

impl From<&Breakdown> for BreakdownMs {
    fn from(b: &Breakdown) -> BreakdownMs {
        BreakdownMs {
            edge: b.edge_ms,
            upload: b.upload_ms,
            cloud: b.cloud_ms,
            download: b.download_ms,
            rtt: b.rtt_ms,
            wait: b.wait_ms,
            total: b.total_ms,
        }
    }
}
