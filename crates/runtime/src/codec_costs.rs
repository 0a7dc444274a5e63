//! What each tensor that may cross the link costs under each codec, and what an image file
//! costs to decode: measured once on a sample input, then corrected from every request.
//!
//! The planner needs, for every node u and codec c, the encoded size s_c(u), the edge's encode
//! time and the cloud's decode time (docs/DESIGN.md, "Encodings"). Sizes are not known before the
//! tensor exists, so they are predicted from a ratio per node and codec: measured by running the
//! network on a sample input and encoding every node's output, then replaced by a running
//! average of the sizes actually sent. Times are kept per megabyte of raw tensor, so that they
//! scale with the batch.
//!
//! The cloud's decode times come from the server's own measurement when it publishes one
//! ([`DecodingCosts`], the same measurement run there): a node's decode time here, times how
//! much faster the server decodes that codec. A server that publishes none is assumed to decode
//! as much faster as it computes layers. Either is then corrected by a running factor from the
//! decode times the server reports.

use std::time::Instant;

use models::{HostTensor, Model, SAMPLE_JPEG, decode_image, image_dimensions};
use partition_core::Encoding;
use transport::{Codec, CodecSpeed, DecodingCosts, Limits, Loss, WireTensor};

use crate::error::RuntimeError;

/// Weight of a new observation in the running averages.
const NEW_WEIGHT: f64 = 0.3;

/// Bytes in the megabyte that per-size times are kept in.
const MB: f64 = 1e6;

/// One codec's running estimate for one node.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Estimate {
    codec: Codec,
    /// Encoded bytes over raw bytes.
    ratio: f64,
    /// Edge (this machine) time to encode, ms per raw MB.
    encode_ms_per_mb: f64,
    /// This machine's time to decode, ms per raw MB.
    decode_ms_per_mb: f64,
    /// Raw MB of the tensor the times were first measured on.
    sample_mb: f64,
}

/// Where the cloud's decode times come from, for [`CodecCosts::encodings`] and
/// [`CodecCosts::cloud_image_ms`].
#[derive(Debug, Clone, Copy)]
pub struct CloudDecoding<'a> {
    /// The server's own measurement, when it published one.
    pub published: Option<&'a DecodingCosts>,
    /// How many times this machine's time the cloud takes for a layer: the assumption for
    /// whatever the server did not measure.
    pub cloud_factor: f64,
}

/// Codec and image-decoding costs for one network, as an [`crate::EdgeSession`] plans with them.
#[derive(Debug, Clone, PartialEq)]
pub struct CodecCosts {
    /// Per network node (the network's order): an estimate for each codec that encoded it.
    nodes: Vec<Vec<Estimate>>,
    /// This machine's decoding speeds as first measured, over every node (what a server
    /// publishes, and what the edge compares a server's against).
    measured: DecodingCosts,
    /// Edge time to decode and preprocess an image file, ms per megapixel of the file.
    image_ms_per_mpixel: f64,
    /// The cloud's reported decode time over the predicted one, running.
    cloud_decode_scale: f64,
}

impl CodecCosts {
    /// Measures every codec `loss` allows (raw aside) on every node's output for `sample`
    /// (`[1, ...input shape]`), and the decoding of the embedded sample photograph.
    ///
    /// A codec that cannot encode a node's output (f16 beyond its range, say) is no candidate
    /// for that node. Runs the whole network once: call it on a blocking thread.
    pub fn measure(
        model: &Model,
        sample: HostTensor,
        loss: Loss,
    ) -> Result<CodecCosts, RuntimeError> {
        let image_ms_per_mpixel = time_sample_photo()?;
        let net = model.net();
        let outputs = model.run_all(model.upload(sample)?)?;
        let codecs: Vec<Codec> = loss
            .codecs()
            .into_iter()
            .filter(|&c| c != Codec::Raw)
            .collect();
        let mut nodes = vec![Vec::new(); net.len()];
        for (v, value) in outputs {
            if v == net.sink() {
                continue;
            }
            let host = value.to_host()?;
            nodes[v] = codecs
                .iter()
                .filter_map(|&codec| measure_one(&host, codec))
                .collect();
        }
        let measured = DecodingCosts {
            image_ms_per_mpixel,
            codecs: codecs
                .iter()
                .filter_map(|&codec| pooled_speed(&nodes, codec))
                .collect(),
        };
        Ok(CodecCosts {
            nodes,
            measured,
            image_ms_per_mpixel,
            cloud_decode_scale: 1.0,
        })
    }

    /// This machine's decoding costs as measured: the image file, and each codec's decode time
    /// pooled over every node's output (total time over total size). A server publishes these.
    pub fn decoding(&self) -> &DecodingCosts {
        &self.measured
    }

    /// How many times this machine's time the cloud takes to decode `codec`.
    fn cloud_decode_factor(&self, codec: Codec, cloud: CloudDecoding<'_>) -> f64 {
        let speed = |costs: &DecodingCosts| {
            costs
                .codecs
                .iter()
                .find(|s| s.codec == codec)
                .map(|s| s.decode_ms_per_mb)
        };
        match (cloud.published.and_then(speed), speed(&self.measured)) {
            (Some(there), Some(here)) if here > 0.0 => there / here,
            _ => cloud.cloud_factor,
        }
    }

    /// The candidate encodings of network node `v`'s output of `raw_bytes`, for the planner:
    /// each codec `loss` allows, with its predicted bytes, its encode time on the edge
    /// (`edge_factor` times this machine's) and its decode time on the cloud (this machine's
    /// scaled to the cloud as `cloud` says, and the running correction).
    pub fn encodings(
        &self,
        v: usize,
        raw_bytes: u64,
        loss: Loss,
        edge_factor: f64,
        cloud: CloudDecoding<'_>,
    ) -> Vec<Encoding> {
        let mb = raw_bytes as f64 / MB;
        self.nodes
            .get(v)
            .into_iter()
            .flatten()
            .filter(|e| loss.allows(e.codec))
            .map(|e| Encoding {
                name: e.codec.name().to_string(),
                bytes: (e.ratio * raw_bytes as f64).ceil() as u64,
                edge_ms: e.encode_ms_per_mb * mb * edge_factor,
                cloud_ms: e.decode_ms_per_mb
                    * mb
                    * self.cloud_decode_factor(e.codec, cloud)
                    * self.cloud_decode_scale,
            })
            .collect()
    }

    /// The edge's predicted time to decode and preprocess an image file of `pixels` pixels,
    /// at this machine's speed.
    pub fn image_ms(&self, pixels: u64) -> f64 {
        self.image_ms_per_mpixel * pixels as f64 / 1e6
    }

    /// The cloud's predicted time for the same: at the speed the server published, or else
    /// `cloud.cloud_factor` times this machine's; and the running correction.
    pub fn cloud_image_ms(&self, pixels: u64, cloud: CloudDecoding<'_>) -> f64 {
        let per_mpixel = match cloud.published {
            Some(costs) => costs.image_ms_per_mpixel,
            None => self.image_ms_per_mpixel * cloud.cloud_factor,
        };
        per_mpixel * pixels as f64 / 1e6 * self.cloud_decode_scale
    }

    /// Learns from a tensor sent: node `v`'s `raw_bytes` went as `wire_bytes` under `codec`,
    /// and encoding took `encode_ms` on this machine.
    pub fn record_sent(
        &mut self,
        v: usize,
        codec: Codec,
        raw_bytes: u64,
        wire_bytes: u64,
        encode_ms: f64,
    ) {
        let Some(estimate) = self
            .nodes
            .get_mut(v)
            .and_then(|list| list.iter_mut().find(|e| e.codec == codec))
        else {
            return;
        };
        if raw_bytes == 0 {
            return;
        }
        let mb = raw_bytes as f64 / MB;
        blend(&mut estimate.ratio, wire_bytes as f64 / raw_bytes as f64);
        blend(&mut estimate.encode_ms_per_mb, encode_ms / mb);
    }

    /// Learns from an image file decoded on the edge: `pixels` pixels in `ms` at this
    /// machine's speed.
    pub fn record_image(&mut self, pixels: u64, ms: f64) {
        if pixels > 0 {
            blend(&mut self.image_ms_per_mpixel, ms / (pixels as f64 / 1e6));
        }
    }

    /// Learns from the server's reported decode time against the one predicted for it.
    pub fn record_cloud_decode(&mut self, predicted_ms: f64, reported_ms: f64) {
        // Below a tenth of a millisecond both are timer noise.
        if predicted_ms > 0.1 && reported_ms.is_finite() && reported_ms >= 0.0 {
            let ratio = (reported_ms / predicted_ms * self.cloud_decode_scale).clamp(1e-3, 1e3);
            blend(&mut self.cloud_decode_scale, ratio);
        }
    }
}

/// Moves `estimate` towards `observed` (ignoring non-finite observations).
fn blend(estimate: &mut f64, observed: f64) {
    if observed.is_finite() && observed >= 0.0 {
        *estimate += NEW_WEIGHT * (observed - *estimate);
    }
}

/// Encodes and decodes `host` once under `codec`; `None` when the codec cannot encode it.
fn measure_one(host: &HostTensor, codec: Codec) -> Option<Estimate> {
    let raw_bytes = std::mem::size_of_val(host.data());
    if raw_bytes == 0 {
        return None;
    }
    let started = Instant::now();
    let wire = WireTensor::encode(host.shape(), host.data(), codec).ok()?;
    let encode_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    wire.decode(&Limits::default()).ok()?;
    let decode_ms = started.elapsed().as_secs_f64() * 1e3;
    let mb = raw_bytes as f64 / MB;
    Some(Estimate {
        codec,
        ratio: wire.encoded_len() as f64 / raw_bytes as f64,
        encode_ms_per_mb: encode_ms / mb,
        decode_ms_per_mb: decode_ms / mb,
        sample_mb: mb,
    })
}

/// `codec`'s decode speed over every node that measured it: total time over total size.
fn pooled_speed(nodes: &[Vec<Estimate>], codec: Codec) -> Option<CodecSpeed> {
    let (ms, mb) = nodes
        .iter()
        .flatten()
        .filter(|e| e.codec == codec)
        .fold((0.0, 0.0), |(ms, mb), e| {
            (ms + e.decode_ms_per_mb * e.sample_mb, mb + e.sample_mb)
        });
    (mb > 0.0).then(|| CodecSpeed {
        codec,
        decode_ms_per_mb: ms / mb,
    })
}

/// This machine's time to decode and preprocess the embedded photograph, ms per megapixel (the
/// faster of two runs, the first of which warms the caches).
fn time_sample_photo() -> Result<f64, RuntimeError> {
    let (w, h) = image_dimensions(SAMPLE_JPEG)?;
    let mut best = f64::INFINITY;
    for _ in 0..2 {
        let started = Instant::now();
        decode_image(SAMPLE_JPEG)?;
        best = best.min(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(best / (f64::from(w) * f64::from(h) / 1e6))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn costs(ratio: f64) -> CodecCosts {
        CodecCosts {
            nodes: vec![
                vec![],
                vec![Estimate {
                    codec: Codec::Lossless,
                    ratio,
                    encode_ms_per_mb: 2.0,
                    decode_ms_per_mb: 1.0,
                    sample_mb: 1.0,
                }],
            ],
            measured: DecodingCosts {
                image_ms_per_mpixel: 10.0,
                codecs: vec![CodecSpeed {
                    codec: Codec::Lossless,
                    decode_ms_per_mb: 1.0,
                }],
            },
            image_ms_per_mpixel: 10.0,
            cloud_decode_scale: 1.0,
        }
    }

    /// A cloud that publishes nothing and computes `factor` times this machine's time.
    fn scaled(factor: f64) -> CloudDecoding<'static> {
        CloudDecoding {
            published: None,
            cloud_factor: factor,
        }
    }

    #[test]
    fn encodings_scale_with_size_and_both_sides_speeds() {
        let c = costs(0.25);
        let e = c.encodings(1, 2_000_000, Loss::Exact, 10.0, scaled(0.5));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].name, "lossless");
        assert_eq!(e[0].bytes, 500_000);
        assert!((e[0].edge_ms - 40.0).abs() < 1e-9, "{}", e[0].edge_ms);
        assert!((e[0].cloud_ms - 1.0).abs() < 1e-9, "{}", e[0].cloud_ms);
        assert!(
            c.encodings(0, 1000, Loss::Int8, 1.0, scaled(1.0))
                .is_empty()
        );
        assert!(
            c.encodings(7, 1000, Loss::Int8, 1.0, scaled(1.0))
                .is_empty()
        );
    }

    #[test]
    fn a_published_decoding_speed_replaces_the_assumed_one() {
        let c = costs(0.25);
        let published = DecodingCosts {
            image_ms_per_mpixel: 4.0,
            codecs: vec![CodecSpeed {
                codec: Codec::Lossless,
                decode_ms_per_mb: 0.25,
            }],
        };
        let cloud = CloudDecoding {
            published: Some(&published),
            cloud_factor: 0.5,
        };
        // This node decodes at 1 ms/MB here, and the server decodes lossless 4x faster than
        // this machine: 0.25 ms/MB there, whatever its layers' speed.
        let e = c.encodings(1, 2_000_000, Loss::Exact, 1.0, cloud);
        assert!((e[0].cloud_ms - 0.5).abs() < 1e-9, "{}", e[0].cloud_ms);
        assert!((c.cloud_image_ms(2_000_000, cloud) - 8.0).abs() < 1e-9);
        // A codec the server did not measure falls back to the layer speed ratio.
        let silent = DecodingCosts {
            image_ms_per_mpixel: 4.0,
            codecs: Vec::new(),
        };
        let cloud = CloudDecoding {
            published: Some(&silent),
            cloud_factor: 0.5,
        };
        let e = c.encodings(1, 2_000_000, Loss::Exact, 1.0, cloud);
        assert!((e[0].cloud_ms - 1.0).abs() < 1e-9, "{}", e[0].cloud_ms);
    }

    #[test]
    fn sizes_sent_pull_the_ratio_towards_them() {
        let mut c = costs(0.5);
        for _ in 0..40 {
            c.record_sent(1, Codec::Lossless, 1000, 100, 0.002);
        }
        let e = c.encodings(1, 1000, Loss::Exact, 1.0, scaled(1.0));
        assert!((e[0].bytes as f64 - 100.0).abs() <= 1.0, "{}", e[0].bytes);
        // A codec never measured for the node is not invented.
        c.record_sent(1, Codec::Int8, 1000, 10, 0.0);
        assert_eq!(c.encodings(1, 1000, Loss::Int8, 1.0, scaled(1.0)).len(), 1);
    }

    #[test]
    fn the_cloud_decode_scale_follows_reports() {
        let mut c = costs(0.5);
        for _ in 0..40 {
            let predicted = c.encodings(1, 10_000_000, Loss::Exact, 1.0, scaled(1.0))[0].cloud_ms;
            c.record_cloud_decode(predicted, 3.0 * 10.0);
        }
        let cloud_ms = c.encodings(1, 10_000_000, Loss::Exact, 1.0, scaled(1.0))[0].cloud_ms;
        assert!((cloud_ms - 30.0).abs() < 0.5, "{cloud_ms}");
        assert!((c.cloud_image_ms(1_000_000, scaled(1.0)) - 30.0).abs() < 0.5);
    }

    #[test]
    fn measured_on_a_real_network() {
        let net = models::zoo::build("lenet").expect("lenet");
        let model =
            Model::seeded(net, 1, &models::Backend::Flex.device().expect("flex")).expect("model");
        let mut shape = vec![1];
        shape.extend_from_slice(model.net().input_shape());
        let n = shape.iter().product();
        let sample =
            HostTensor::new(shape, (0..n).map(|i| (i % 7) as f32 * 0.1).collect()).expect("input");
        let costs = CodecCosts::measure(&model, sample, Loss::Int8).expect("measures");
        let sink = model.net().sink();
        assert!(costs.nodes[sink].is_empty());
        // Every other node has an int8 estimate of about a quarter of raw.
        for (v, list) in costs.nodes.iter().enumerate().filter(|&(v, _)| v != sink) {
            let int8 = list.iter().find(|e| e.codec == Codec::Int8).expect("int8");
            assert!(
                int8.ratio > 0.2 && int8.ratio < 0.6,
                "node {v}: {}",
                int8.ratio
            );
        }
        assert!(costs.image_ms(1_000_000) > 0.0);
        // What a server would publish: every lossy and lossless codec, pooled over the nodes.
        let published: Vec<Codec> = costs.decoding().codecs.iter().map(|s| s.codec).collect();
        assert_eq!(published, Codec::ALL[1..].to_vec());
        assert!(
            costs
                .decoding()
                .codecs
                .iter()
                .all(|s| s.decode_ms_per_mb > 0.0)
        );
    }
}
