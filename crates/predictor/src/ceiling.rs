//! The fastest each kernel ran on this machine: a floor under every prediction.
//!
//! Tree ensembles and power laws extrapolate badly. Asked for a layer larger than most of the
//! rows they learned from, they can price it faster than its kernel ever ran here: ResNet-50's
//! wide 1×1 layers, predicted without their own rows, came out at 1.3–1.7× the best rate the
//! 1×1 kernel showed on any other layer (`docs/EXPERIMENTS.md`, "Latency predictor"). A
//! layer's FLOPs over the best rate its kernel reached among the rows a regressor learned from
//! is a time that no prediction goes under.
//!
//! For the kernels whose rate the vector units bound: those that do a layer's FLOPs as they
//! are counted, in matrix products ([`compute_bound`]). Winograd's kernels do fewer
//! multiplications than counted, and their rate in counted FLOPs grows with the channels
//! (VGG16's 3×3 layers reach 1.4× the best of any other network's); depthwise layers and the
//! layers without weights are bound by memory, whose rate grows as a layer fits a nearer cache.
//!
//! And for linear layers whose weight no cache holds ([`STREAMED_BYTES`]), bound by the rate at
//! which memory streams their weight: their weight's bytes over the best rate any such layer
//! streamed at among the rows. Machine A, two threads, a quick profile at kernel revision 61:
//! every sampled or in-pass linear layer of 64 MiB or more streamed 30.5–32.9 GB/s, and VGG16's
//! 411 MB one, predicted without its own rows, came out 27 % under its in-pass time without
//! this floor.

use models::{ConvKernel, ConvRun, LayerKind, LayerSpec};
use serde::{Deserialize, Serialize};

use crate::dataset::Measurement;

/// The kernel of a convolution run as `conv`, where it is bound by the vector units: the
/// im2col, 1×1, gathered-patches and direct kernels.
fn compute_bound(conv: Option<ConvRun>) -> Option<ConvKernel> {
    let kernel = conv?.kernel;
    let bound = matches!(
        kernel,
        ConvKernel::PixelMajor
            | ConvKernel::ChannelMajor
            | ConvKernel::Direct
            | ConvKernel::Pointwise
            | ConvKernel::Patches
            | ConvKernel::BlockedPointwise
    );
    bound.then_some(kernel)
}

/// Bytes of weight from which a linear layer reads its weight from memory on every pass,
/// whatever the machine's caches hold: larger than the share of a third-level cache any of the
/// measured machines gives a core.
pub const STREAMED_BYTES: u64 = 64 << 20;

/// The weight's bytes of a linear layer `spec` of at least [`STREAMED_BYTES`]; `None` for any
/// other layer.
fn streamed_bytes(spec: &LayerSpec) -> Option<f64> {
    let bytes = spec.params.saturating_mul(size_of::<f32>() as u64);
    (matches!(spec.kind, LayerKind::Linear { .. }) && bytes >= STREAMED_BYTES)
        .then_some(bytes as f64)
}

/// The best rate, in FLOPs per ms, that each compute-bound kernel of one layer class reached
/// on the rows a regressor learned from, and the best rate, in bytes per ms, at which a linear
/// layer streamed its weight from memory there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    /// For each compute-bound kernel seen, its best rate.
    best: Vec<(ConvKernel, f64)>,
    /// The best rate at which a linear layer of [`STREAMED_BYTES`] or more read its weight,
    /// bytes per ms; 0 where the rows held none.
    #[serde(default)]
    stream: f64,
}

impl Ceiling {
    /// The best rate of each compute-bound kernel among `rows`, and the best rate at which a
    /// linear layer among them streamed its weight; rows of no FLOPs or no time say nothing.
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a Measurement>) -> Ceiling {
        let mut ceiling = Ceiling::default();
        for row in rows {
            if let Some(bytes) = streamed_bytes(&row.spec)
                && row.median_ms > 0.0
            {
                ceiling.stream = ceiling.stream.max(bytes / row.median_ms);
            }
            let Some(kernel) = compute_bound(row.conv) else {
                continue;
            };
            let timed = row.spec.flops > 0 && row.median_ms > 0.0;
            if !timed {
                continue;
            }
            let rate = row.spec.flops as f64 / row.median_ms;
            match ceiling.best.iter_mut().find(|(k, _)| *k == kernel) {
                Some((_, best)) => *best = best.max(rate),
                None => ceiling.best.push((kernel, rate)),
            }
        }
        ceiling
    }

    /// The least time a layer `spec` run as `conv` can take at its kernel's best rate, or a
    /// linear layer of [`STREAMED_BYTES`] or more at the best rate a weight streamed, in ms; 0
    /// where the kernel is not compute-bound or was never seen.
    pub fn floor_ms(&self, spec: &LayerSpec, conv: Option<ConvRun>) -> f64 {
        if let Some(bytes) = streamed_bytes(spec) {
            return if self.stream > 0.0 {
                bytes / self.stream
            } else {
                0.0
            };
        }
        let Some(kernel) = compute_bound(conv) else {
            return 0.0;
        };
        self.best
            .iter()
            .find(|(k, _)| *k == kernel)
            .map_or(0.0, |(_, rate)| spec.flops as f64 / rate)
    }

    /// `predicted_ms` for layer `spec` run as `conv`, raised to [`Ceiling::floor_ms`].
    pub fn bound(&self, predicted_ms: f64, spec: &LayerSpec, conv: Option<ConvRun>) -> f64 {
        predicted_ms.max(self.floor_ms(spec, conv))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointwise(channels: usize, side: usize, ms: f64) -> Measurement {
        let kind = crate::space::conv(channels, channels, 1, 1, 0, 1);
        Measurement {
            spec: LayerSpec::infer("layer", kind, vec![vec![channels, side, side]]).expect("valid"),
            conv: Some(ConvRun {
                kernel: ConvKernel::Pointwise,
                residual: false,
            }),
            median_ms: ms,
        }
    }

    #[test]
    fn no_layer_is_priced_faster_than_its_kernel_ever_ran() {
        let slow = pointwise(64, 14, 1.0);
        let fast = pointwise(256, 14, 0.5);
        let ceiling = Ceiling::of([&slow, &fast, &pointwise(8, 7, 0.0)]);
        let rate = fast.spec.flops as f64 / 0.5;
        let wide = pointwise(1024, 14, 2.0);
        let floor = ceiling.floor_ms(&wide.spec, wide.conv);
        assert!(
            (floor - wide.spec.flops as f64 / rate).abs() < 1e-12,
            "{floor}"
        );
        assert_eq!(ceiling.bound(0.1, &wide.spec, wide.conv), floor);
        assert_eq!(ceiling.bound(9.0, &wide.spec, wide.conv), 9.0);
        // Another kernel was never seen: no floor.
        let patches = Some(ConvRun {
            kernel: ConvKernel::Patches,
            residual: false,
        });
        assert_eq!(ceiling.floor_ms(&wide.spec, patches), 0.0);
        // Winograd's rate in counted FLOPs is no bound: never one.
        let mut winograd = pointwise(256, 14, 0.01);
        winograd.conv = Some(ConvRun {
            kernel: ConvKernel::Winograd4,
            residual: false,
        });
        let with = Ceiling::of([&slow, &winograd]);
        assert_eq!(with, Ceiling::of([&slow]));
        assert_eq!(with.floor_ms(&wide.spec, winograd.conv), 0.0);
        assert_eq!(Ceiling::of([]).floor_ms(&wide.spec, wide.conv), 0.0);
    }

    fn linear(inputs: usize, outputs: usize, ms: f64) -> Measurement {
        let kind = LayerKind::Linear {
            in_features: inputs,
            out_features: outputs,
            bias: true,
        };
        Measurement {
            spec: LayerSpec::infer("layer", kind, vec![vec![inputs]]).expect("valid"),
            conv: None,
            median_ms: ms,
        }
    }

    #[test]
    fn no_weight_from_memory_is_priced_faster_than_a_weight_ever_streamed() {
        // 9216 × 4096 (151 MB) at 5 ms and 4096 × 4096 (67 MB, just above the bound) at 3 ms;
        // a 1024 × 1024 layer (4 MB, cached) faster than either says nothing.
        let (large, just, cached) = (
            linear(9216, 4096, 5.0),
            linear(4096, 4096, 3.0),
            linear(1024, 1024, 0.01),
        );
        let ceiling = Ceiling::of([&large, &just, &cached, &linear(8192, 8192, 0.0)]);
        let bytes = |m: &Measurement| (m.spec.params * 4) as f64;
        let rate = bytes(&large) / 5.0;
        let vgg = linear(25088, 4096, 10.0);
        let floor = ceiling.floor_ms(&vgg.spec, None);
        assert!((floor - bytes(&vgg) / rate).abs() < 1e-9, "{floor}");
        assert_eq!(ceiling.bound(1.0, &vgg.spec, None), floor);
        assert_eq!(ceiling.bound(20.0, &vgg.spec, None), 20.0);
        // Below the bound a weight may sit in a cache: no floor, nor with no large rows.
        assert_eq!(ceiling.floor_ms(&cached.spec, None), 0.0);
        assert_eq!(ceiling.floor_ms(&linear(4000, 4096, 1.0).spec, None), 0.0);
        assert_eq!(Ceiling::of([&cached]).floor_ms(&vgg.spec, None), 0.0);
    }
}
