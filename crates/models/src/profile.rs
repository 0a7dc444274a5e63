//! Timing: per-layer latency (Neurosurgeon's layer characterisation) and whole forward passes.

use std::time::Instant;

use crate::error::ModelError;
use crate::exec::{Model, on_worker};
use crate::tensor::{HostTensor, Value};

/// Which revision of the layers' kernels this build runs. It changes whenever a change makes
/// layers faster or slower (a new kernel, a new CPU feature), so that timings cached by an
/// earlier build (device profiles) are measured again rather than trusted. Revision 2: gemm
/// with AVX-512 kernels; 3: large linear layers split across threads; 4: folded batch norms,
/// fused activations, the crate's own convolutions and max pooling (see [`crate::Kernels`]);
/// 5: Winograd's F(2×2, 3×3) for 3×3, stride-1 convolutions of at least 512 output pixels,
/// channel-major RGB stems, reused scratch buffers, linear weights from 4 MB split; 6: depthwise
/// convolutions on padded, phase-split planes with register sums, at the CPU's widest vectors;
/// passes and single layers run on a rayon worker; strided 1×1 convolutions channel-major;
/// Winograd for small maps, split by output channels; the crate's own linear layers.
pub const KERNEL_REVISION: u32 = 6;

/// One node's measured latency and output size.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTiming {
    /// The node's index.
    pub node: usize,
    /// The node's id.
    pub id: String,
    /// The node's kind name (`conv2d`, `relu`, ...).
    pub kind: &'static str,
    /// Median latency over the measured runs, in ms (0 for the input node).
    pub median_ms: f64,
    /// Output size for the batch that was timed, in bytes (f32).
    pub out_bytes: u64,
}

fn median(mut samples: Vec<f64>) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}

fn sync(model: &Model) -> Result<(), ModelError> {
    model
        .device()
        .sync()
        .map_err(|e| ModelError::Backend(format!("device sync failed: {e:?}")))
}

impl Model {
    /// Times every node on its own: one forward pass records every activation, then each node
    /// runs `warmup` times unmeasured and `runs` times measured on those inputs (a fresh copy
    /// each run, made before the clock starts; synchronising the device after each run), and its
    /// median latency is reported. `runs` must be at least 1.
    ///
    /// The nodes run on a rayon worker thread, as they do in a forward pass, so that a node's
    /// time holds no hand-off from the caller's thread to the pool.
    pub fn time_layers(
        &self,
        input: HostTensor,
        warmup: usize,
        runs: usize,
    ) -> Result<Vec<LayerTiming>, ModelError> {
        on_worker(|| self.time_layers_here(input, warmup, runs))
    }

    /// [`Model::time_layers`] on the calling thread.
    fn time_layers_here(
        &self,
        input: HostTensor,
        warmup: usize,
        runs: usize,
    ) -> Result<Vec<LayerTiming>, ModelError> {
        if runs == 0 {
            return Err(ModelError::BadParameter {
                node: "(timing)".into(),
                field: "runs",
                reason: "must be at least 1".into(),
            });
        }
        let net = self.net();
        let batch = input.shape().first().copied().unwrap_or(1) as u64;
        let first = self.upload(input)?;
        // Every activation, kept so that each node can be timed on its real inputs.
        let mut values: Vec<Value> = Vec::with_capacity(net.len());
        values.push(first);
        let mut timings = vec![LayerTiming {
            node: 0,
            id: net.nodes()[0].id().to_string(),
            kind: net.nodes()[0].spec().kind.name(),
            median_ms: 0.0,
            out_bytes: batch * net.nodes()[0].spec().out_bytes,
        }];
        for (v, node) in net.nodes().iter().enumerate().skip(1) {
            let shared =
                || -> Vec<Value> { node.inputs().iter().map(|&u| values[u].clone()).collect() };
            let mut samples = Vec::with_capacity(runs);
            for i in 0..warmup + runs {
                // Each run gets inputs of its own, as in a forward pass, where a layer's last
                // reader takes its input; a shared one would be copied by kernels that work in
                // place or on the host.
                let inputs = shared()
                    .into_iter()
                    .map(|x| self.upload(x.to_host()?))
                    .collect::<Result<Vec<_>, _>>()?;
                let start = Instant::now();
                let y = self.run_node(v, inputs)?;
                sync(self)?;
                let elapsed = start.elapsed().as_secs_f64() * 1e3;
                drop(y);
                if i >= warmup {
                    samples.push(elapsed);
                }
            }
            values.push(self.run_node(v, shared())?);
            timings.push(LayerTiming {
                node: v,
                id: node.id().to_string(),
                kind: node.spec().kind.name(),
                median_ms: median(samples),
                out_bytes: batch * node.spec().out_bytes,
            });
        }
        Ok(timings)
    }

    /// Median latency in ms of a whole forward pass on `input`, after `warmup` unmeasured passes,
    /// reading the output back to the host each time. `runs` must be at least 1.
    pub fn time_forward(
        &self,
        input: &HostTensor,
        warmup: usize,
        runs: usize,
    ) -> Result<f64, ModelError> {
        if runs == 0 {
            return Err(ModelError::BadParameter {
                node: "(timing)".into(),
                field: "runs",
                reason: "must be at least 1".into(),
            });
        }
        let mut samples = Vec::with_capacity(runs);
        for i in 0..warmup + runs {
            let x = self.upload(input.clone())?;
            let start = Instant::now();
            self.forward(x)?.to_host()?;
            if i >= warmup {
                samples.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        Ok(median(samples))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo;
    use burn::tensor::Device;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
    }

    #[test]
    fn every_layer_is_timed_with_its_output_size() {
        let net = zoo::build("lenet").expect("lenet");
        let model = Model::seeded(net, 1, &Device::flex()).expect("model");
        let x = HostTensor::new(vec![2, 1, 32, 32], vec![0.5; 2 * 32 * 32]).expect("input");
        let timings = model.time_layers(x.clone(), 1, 3).expect("timings");
        assert_eq!(timings.len(), model.net().len());
        assert_eq!(timings[1].id, "features.0");
        assert_eq!(timings[1].kind, "conv2d");
        assert_eq!(timings[1].out_bytes, 2 * 6 * 28 * 28 * 4);
        assert!(
            timings
                .iter()
                .all(|t| t.median_ms >= 0.0 && t.median_ms.is_finite())
        );
        assert!(model.time_layers(x.clone(), 0, 0).is_err());
        assert!(model.time_forward(&x, 0, 1).expect("forward time") >= 0.0);
    }
}
