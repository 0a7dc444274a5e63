//! The fastest each kernel ran on this machine: a floor under every prediction.
//!
//! Tree ensembles and power laws extrapolate badly. Asked for a layer larger than most of the
//! rows they learned from, they can price it faster than its kernel ever ran here: ResNet-50's
//! wide 1×1 layers, predicted without their own rows, came out at 1.3–1.7× the best rate the
//! 1×1 kernel showed on any other layer (`docs/EXPERIMENTS.md`, "Latency predictor"). A
//! layer's FLOPs over the best rate its kernel reached among the rows a regressor learned from
//! is a time that no prediction goes under.
//!
//! Only for the kernels whose rate the vector units bound: those that do a layer's FLOPs as
//! they are counted, in matrix products ([`compute_bound`]). Winograd's kernels do fewer
//! multiplications than counted, and their rate in counted FLOPs grows with the channels
//! (VGG16's 3×3 layers reach 1.4× the best of any other network's); depthwise layers, linear
//! layers at batch 1 and the layers without weights are bound by memory, whose rate grows as a
//! layer fits a nearer cache.

use models::{ConvKernel, ConvRun, LayerSpec};
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

/// The best rate, in FLOPs per ms, that each compute-bound kernel of one layer class reached
/// on the rows a regressor learned from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    /// For each compute-bound kernel seen, its best rate.
    best: Vec<(ConvKernel, f64)>,
}

impl Ceiling {
    /// The best rate of each compute-bound kernel among `rows`; rows of no FLOPs or no time
    /// say nothing.
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a Measurement>) -> Ceiling {
        let mut ceiling = Ceiling::default();
        for row in rows {
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

    /// The least time a layer `spec` run as `conv` can take at its kernel's best rate, in ms;
    /// 0 where the kernel is not compute-bound or was never seen.
    pub fn floor_ms(&self, spec: &LayerSpec, conv: Option<ConvRun>) -> f64 {
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
}
