//! The configuration space each sweep samples: every layer of the zoo lies inside it, and it
//! reaches well beyond (channels, spatial sizes, kernels, strides, groups, features).
//!
//! Sampling is seeded (no hand-picked lists): a class's n-th sample is the same on every run,
//! which is what lets an interrupted sweep resume where it stopped.

use models::{LayerKind, LayerSpec, ModelError, Net, NetBuilder, Shape};
use partition_core::synthetic::SplitMix64;

use crate::class::LayerClass;

/// How big a sweep is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepSize {
    /// Few samples and timing runs, over a space that still covers every zoo layer: the whole
    /// sweep takes at most about two minutes on two cores.
    Quick,
    /// The whole space, more samples and more timing runs.
    Full,
}

impl SweepSize {
    /// Largest FLOPs of one sampled layer.
    fn max_flops(self) -> f64 {
        match self {
            // VGG-16's 64-channel 3×3 convolutions at 224×224 have 3.7e9.
            SweepSize::Quick => 4e9,
            SweepSize::Full => 8e9,
        }
    }

    /// Largest activation (elements per sample) in or out of one sampled layer.
    fn max_elements(self) -> f64 {
        match self {
            // VGG-16's first activations hold 64×224×224 = 3.2e6.
            SweepSize::Quick => 3.3e6,
            SweepSize::Full => 7e6,
        }
    }
}

/// Largest parameter count of one sampled layer, in both sizes: VGG-16's first linear layer
/// has 1.03e8.
const MAX_PARAMS: f64 = 1.1e8;

/// Most channels in or out of a sampled dense convolution: ResNet-50's last blocks' 1×1
/// layers have 2048.
const CONV_MAX_CHANNELS: usize = 2048;

/// Share of the 1×1 and depthwise samples drawn as layers of an inverted residual block on a
/// small map ([`Sample::in_chain`]).
const CHAIN_SHARE: f64 = 0.25;

/// Largest map side of a sample drawn in a chain: the side of the largest square maps that a
/// chain runs on channel-blocked maps ([`models::BLOCKED_LARGEST_PLANE`], 14 for MobileNetV2's
/// blocks 8 to 17).
const CHAIN_MAX_SIDE: usize = models::BLOCKED_LARGEST_PLANE.isqrt();

/// One sampled layer: its kind, the shapes of its inputs, and what feeds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The layer.
    pub kind: LayerKind,
    /// Shapes of its inputs, per sample.
    pub inputs: Vec<Shape>,
    /// Whether the layer is fed as inside an inverted residual block (MobileNetV2's chains of
    /// 1×1 and depthwise layers): a 1×1 layer by a 3×3 depthwise layer, a depthwise layer by a
    /// 1×1 layer, each keeping its map's shape. On the AVX-512 path such a chain runs on
    /// channel-blocked maps, so the layer is timed on the blocked kernel, on the blocked input
    /// a pass hands it, as no lone layer is.
    pub in_chain: bool,
}

impl Sample {
    /// The layer's spec, with shapes inferred and checked.
    pub fn spec(&self) -> Result<LayerSpec, ModelError> {
        LayerSpec::infer("layer", self.kind.clone(), self.inputs.clone())
    }

    /// A network that feeds this layer its inputs; the layer is the last node, `layer`.
    ///
    /// One input comes straight from the network's input, or, [`Sample::in_chain`], through
    /// the layer that feeds it in a chain. Several inputs of one shape come through identity
    /// (dropout) nodes; inputs of different channel counts through 1×1 convolutions from a
    /// one-channel input.
    pub fn net(&self) -> Result<Net, ModelError> {
        let first = self.inputs.first().cloned().unwrap_or_default();
        let same = self.inputs.iter().all(|s| *s == first);
        if self.inputs.len() <= 1 {
            let channels = first.first().copied().unwrap_or(1);
            let mut b = NetBuilder::new("sweep", first)?;
            let mut input = b.input();
            if self.in_chain {
                input = b.add("feed", self.chain_feed(channels), &[input])?;
            }
            b.add("layer", self.kind.clone(), &[input])?;
            return b.build();
        }
        let (h, w) = (
            first.get(1).copied().unwrap_or(1),
            first.get(2).copied().unwrap_or(1),
        );
        let start = if same { first.clone() } else { vec![1, h, w] };
        let mut b = NetBuilder::new("sweep", start)?;
        let input = b.input();
        let mut feeds = Vec::new();
        for (i, shape) in self.inputs.iter().enumerate() {
            let kind = if same {
                LayerKind::Dropout { p: 0.5 }
            } else {
                LayerKind::Conv2d {
                    in_channels: 1,
                    out_channels: shape[0],
                    kernel_size: [1, 1],
                    stride: [1, 1],
                    padding: [0, 0],
                    dilation: [1, 1],
                    groups: 1,
                    bias: false,
                }
            };
            feeds.push(b.add(format!("feed{i}"), kind, &[input])?);
        }
        b.add("layer", self.kind.clone(), &feeds)?;
        b.build()
    }

    /// The layer before this one in an inverted residual block, on its input of `channels`
    /// channels: a 3×3 depthwise layer before a 1×1 layer, a 1×1 layer before any other.
    fn chain_feed(&self, channels: usize) -> LayerKind {
        let pointwise = matches!(
            self.kind,
            LayerKind::Conv2d {
                kernel_size: [1, 1],
                ..
            }
        );
        if pointwise {
            conv(channels, channels, 3, 1, 1, channels)
        } else {
            conv(channels, channels, 1, 1, 0, 1)
        }
    }
}

/// Draws samples of one class.
pub struct Sampler {
    class: LayerClass,
    size: SweepSize,
    rng: SplitMix64,
}

impl Sampler {
    /// A sampler whose sequence depends only on the class, the size and `seed`.
    pub fn new(class: LayerClass, size: SweepSize, seed: u64) -> Sampler {
        let salt = class as u64 * 0x9E37_79B9 + size as u64;
        Sampler {
            class,
            size,
            rng: SplitMix64::new(seed ^ salt),
        }
    }

    /// The next sample that fits the size's limits.
    pub fn next_sample(&mut self) -> Sample {
        loop {
            let sample = self.draw();
            if let Ok(spec) = sample.spec()
                && self.fits(&spec)
            {
                return sample;
            }
        }
    }

    fn fits(&self, spec: &LayerSpec) -> bool {
        let elems = |s: &Shape| s.iter().map(|&d| d as f64).product::<f64>();
        let largest = spec
            .input_shapes
            .iter()
            .chain([&spec.output_shape])
            .map(elems)
            .fold(0.0, f64::max);
        (spec.flops as f64) <= self.size.max_flops()
            && (spec.params as f64) <= MAX_PARAMS
            && largest <= self.size.max_elements()
    }

    fn int(&mut self, lo: usize, hi: usize) -> usize {
        self.rng.log_uniform(lo as f64, hi as f64 + 0.999).floor() as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.range(0, items.len() - 1)]
    }

    fn map(&mut self, c_lo: usize, c_hi: usize, h_lo: usize, h_hi: usize) -> Shape {
        let c = self.int(c_lo, c_hi);
        let h = self.int(h_lo, h_hi);
        vec![c, h, h]
    }

    fn draw(&mut self) -> Sample {
        match self.class {
            LayerClass::Conv if self.rng.unit() < CHAIN_SHARE => {
                // A 1×1 layer of an inverted residual block on a small map.
                let input = self.map(8, 1024, 1, CHAIN_MAX_SIDE);
                let out_channels = self.int(8, 1280);
                Sample {
                    kind: conv(input[0], out_channels, 1, 1, 0, 1),
                    inputs: vec![input],
                    in_chain: true,
                }
            }
            LayerClass::Conv => {
                let kernel = self.pick(&[1, 1, 3, 3, 3, 5, 7, 11]);
                let stride = if kernel >= 7 {
                    self.pick(&[2, 4])
                } else {
                    self.pick(&[1, 1, 2])
                };
                let input = self.map(3, CONV_MAX_CHANNELS, 7, 224);
                let out_channels = self.int(8, CONV_MAX_CHANNELS);
                Sample {
                    kind: conv(input[0], out_channels, kernel, stride, kernel / 2, 1),
                    inputs: vec![input],
                    in_chain: false,
                }
            }
            LayerClass::GroupedConv if self.rng.unit() < CHAIN_SHARE => {
                // A 3×3 depthwise layer of an inverted residual block on a small map.
                let input = self.map(8, 1024, 2, CHAIN_MAX_SIDE);
                let c = input[0];
                let stride = self.pick(&[1, 1, 2]);
                Sample {
                    kind: conv(c, c, 3, stride, 1, c),
                    inputs: vec![input],
                    in_chain: true,
                }
            }
            LayerClass::GroupedConv => {
                let kernel = self.pick(&[3, 3, 5]);
                let stride = self.pick(&[1, 1, 2]);
                let input = self.map(8, 1024, 7, 112);
                let c = input[0];
                let groups = if self.rng.unit() < 0.7 {
                    c
                } else {
                    let g = self.pick(&[2, 4, 8, 16, 32]);
                    if c % g == 0 { g } else { c }
                };
                Sample {
                    kind: conv(c, c, kernel, stride, kernel / 2, groups),
                    inputs: vec![input],
                    in_chain: false,
                }
            }
            LayerClass::Linear => {
                let in_features = self.int(16, 25_088);
                let out_features = self.int(10, 4096);
                Sample {
                    kind: LayerKind::Linear {
                        in_features,
                        out_features,
                        bias: true,
                    },
                    inputs: vec![vec![in_features]],
                    in_chain: false,
                }
            }
            LayerClass::BatchNorm => {
                let input = self.map(3, 2048, 1, 112);
                Sample {
                    kind: LayerKind::BatchNorm2d {
                        num_features: input[0],
                        eps: 1e-5,
                    },
                    inputs: vec![input],
                    in_chain: false,
                }
            }
            LayerClass::Activation => {
                let kind = if self.rng.unit() < 0.5 {
                    LayerKind::Relu
                } else {
                    LayerKind::Relu6
                };
                let input = if self.rng.unit() < 0.8 {
                    self.map(3, 2048, 1, 224)
                } else {
                    vec![self.int(10, 25_088)]
                };
                Sample {
                    kind,
                    inputs: vec![input],
                    in_chain: false,
                }
            }
            LayerClass::MaxPool => {
                let kernel = self.pick(&[2, 3, 3]);
                let stride = self.pick(&[1, 2, 2]);
                let padding = if kernel == 3 { self.pick(&[0, 1]) } else { 0 };
                let ceil_mode = self.rng.unit() < 0.3;
                Sample {
                    kind: LayerKind::MaxPool2d {
                        kernel_size: [kernel; 2],
                        stride: [stride; 2],
                        padding: [padding; 2],
                        dilation: [1, 1],
                        ceil_mode,
                    },
                    inputs: vec![self.map(16, 1024, 7, 224)],
                    in_chain: false,
                }
            }
            LayerClass::AvgPool => {
                let input = self.map(16, 2048, 1, 112);
                let kind = if self.rng.unit() < 0.5 {
                    let out = self.pick(&[1, 1, 6, 7]);
                    LayerKind::AdaptiveAvgPool2d {
                        output_size: [out; 2],
                    }
                } else {
                    let kernel = self.pick(&[2, 3, 5]);
                    LayerKind::AvgPool2d {
                        kernel_size: [kernel; 2],
                        stride: [self.pick(&[1, 2, 3]); 2],
                        padding: [0, 0],
                        ceil_mode: false,
                        count_include_pad: true,
                    }
                };
                Sample {
                    kind,
                    inputs: vec![input],
                    in_chain: false,
                }
            }
            LayerClass::Add => {
                let shape = self.map(16, 2048, 1, 112);
                let n = self.pick(&[2, 2, 2, 3]);
                Sample {
                    kind: LayerKind::Add,
                    inputs: vec![shape; n],
                    in_chain: false,
                }
            }
            LayerClass::Concat => {
                let h = self.int(1, 56);
                let n = self.pick(&[2, 3, 4]);
                let inputs = (0..n).map(|_| vec![self.int(16, 384), h, h]).collect();
                Sample {
                    kind: LayerKind::Concat,
                    inputs,
                    in_chain: false,
                }
            }
        }
    }
}

/// A dense or grouped 2-D convolution with a bias, square kernel, stride and padding.
pub(crate) fn conv(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    groups: usize,
) -> LayerKind {
    LayerKind::Conv2d {
        in_channels,
        out_channels,
        kernel_size: [kernel; 2],
        stride: [stride; 2],
        padding: [padding; 2],
        dilation: [1, 1],
        groups,
        bias: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_convolutions_are_drawn_as_wide_as_the_zoo_has_them() {
        let mut widest = 0;
        for name in models::zoo::MODELS {
            let net = models::zoo::build(name).expect("zoo model");
            for node in net.nodes() {
                if let LayerKind::Conv2d {
                    in_channels,
                    out_channels,
                    groups: 1,
                    ..
                } = node.spec().kind
                {
                    widest = widest.max(in_channels).max(out_channels);
                }
            }
        }
        assert_eq!(widest, CONV_MAX_CHANNELS);
        // And the draws reach it: some samples have more than 1024 channels on each side.
        let mut sampler = Sampler::new(LayerClass::Conv, SweepSize::Quick, 1);
        let convs: Vec<(usize, usize)> = (0..400)
            .filter_map(|_| match sampler.next_sample().kind {
                LayerKind::Conv2d {
                    in_channels,
                    out_channels,
                    ..
                } => Some((in_channels, out_channels)),
                _ => None,
            })
            .collect();
        assert!(convs.iter().all(|&(i, o)| i.max(o) <= CONV_MAX_CHANNELS));
        assert!(convs.iter().any(|&(i, _)| i > 1024), "{convs:?}");
        assert!(convs.iter().any(|&(_, o)| o > 1024), "{convs:?}");
    }
}
