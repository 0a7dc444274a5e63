//! Small seeded networks, timed inside their own passes beside the zoo's ([`crate::run_in_pass`]).
//!
//! A layer of a few thousand FLOPs takes a few microseconds inside a pass, most of it the fixed
//! cost of running a node at all, and several times that when timed alone with the caches
//! evicted. The sampled layers are timed alone, and the zoo's in-pass layers are nearly all
//! large, so without these networks a regressor meets a LeNet-sized layer in a pass only in
//! LeNet itself. Likewise the depthwise layers: the zoo's in-pass ones are all MobileNetV2's.
//! Each network here is drawn from a seed: [`LENET_LIKE`] chains of convolution blocks
//! (convolution, sometimes batch normalisation, ReLU, max or average pooling) on a small map,
//! then a few linear layers; and [`INVERTED_RESIDUAL`] chains of MobileNetV2's blocks (1×1
//! expansion, 3×3 depthwise, 1×1 projection, the shortcut added where the shape is kept) on
//! maps of 7 to 56 pixels a side, then a global average pool and a linear layer.

use models::{LayerKind, Net, NetBuilder};
use partition_core::synthetic::SplitMix64;

use crate::error::PredictorError;

/// How many LeNet-like networks a sweep times in-pass (`small-0` onwards).
pub const LENET_LIKE: usize = 8;

/// How many networks of inverted residual blocks a sweep times in-pass (after the LeNet-like
/// ones).
pub const INVERTED_RESIDUAL: usize = 4;

/// How many small networks a sweep times in-pass.
pub const SMALL_NETS: usize = LENET_LIKE + INVERTED_RESIDUAL;

/// The names of the small networks all begin so (`small-0`, `small-1`, ...).
pub const SMALL_NET_PREFIX: &str = "small-";

/// Most features the flattened map hands to the first linear layer.
const MAX_FLAT_FEATURES: usize = 4096;

/// The [`SMALL_NETS`] small networks of `seed`: the same on every run with one seed.
pub fn small_nets(seed: u64) -> Result<Vec<Net>, PredictorError> {
    let mut rng = SplitMix64::new(seed ^ 0x5A11_0E75);
    (0..SMALL_NETS)
        .map(|i| {
            let name = format!("{SMALL_NET_PREFIX}{i}");
            if i < LENET_LIKE {
                lenet_like(&name, &mut rng)
            } else {
                inverted_residual(&name, &mut rng)
            }
        })
        .collect()
}

/// An integer drawn log-uniformly from `lo..=hi`.
fn int(rng: &mut SplitMix64, lo: usize, hi: usize) -> usize {
    (rng.log_uniform(lo as f64, hi as f64 + 0.999).floor() as usize).clamp(lo, hi)
}

/// One network: one to three convolution blocks on a map of 1 or 3 channels and 12 to 40 on a
/// side, then one to three linear layers down to 2 to 100 outputs.
fn lenet_like(name: &str, rng: &mut SplitMix64) -> Result<Net, PredictorError> {
    let mut channels = if rng.unit() < 0.5 { 1 } else { 3 };
    let mut side = rng.range(12, 40);
    let mut b = NetBuilder::new(name, vec![channels, side, side])?;
    let mut x = b.input();
    let blocks = rng.range(1, 3);
    for block in 0..blocks {
        let kernel = [3, 3, 5][rng.range(0, 2)];
        if side < kernel + 2 {
            break;
        }
        let padding = if rng.unit() < 0.5 { kernel / 2 } else { 0 };
        let out_channels = int(rng, 4, 48);
        x = b.add(
            format!("block{block}.conv"),
            LayerKind::Conv2d {
                in_channels: channels,
                out_channels,
                kernel_size: [kernel; 2],
                stride: [1, 1],
                padding: [padding; 2],
                dilation: [1, 1],
                groups: 1,
                bias: true,
            },
            &[x],
        )?;
        channels = out_channels;
        side = side + 2 * padding - kernel + 1;
        if rng.unit() < 0.3 {
            let kind = LayerKind::BatchNorm2d {
                num_features: channels,
                eps: 1e-5,
            };
            x = b.add(format!("block{block}.bn"), kind, &[x])?;
        }
        x = b.add(format!("block{block}.relu"), LayerKind::Relu, &[x])?;
        x = pool(&mut b, &format!("block{block}.pool"), x, rng.unit() < 0.5)?;
        side /= 2;
    }
    while channels * side * side > MAX_FLAT_FEATURES {
        x = pool(&mut b, &format!("shrink{side}"), x, true)?;
        side /= 2;
    }
    x = b.add("flatten", LayerKind::Flatten, &[x])?;
    let mut features = channels * side * side;
    let hidden = rng.range(0, 2);
    for layer in 0..=hidden {
        let out_features = if layer == hidden {
            int(rng, 2, 100)
        } else {
            int(rng, 16, 512)
        };
        let kind = LayerKind::Linear {
            in_features: features,
            out_features,
            bias: true,
        };
        x = b.add(format!("fc{layer}"), kind, &[x])?;
        features = out_features;
        if layer < hidden {
            x = b.add(format!("fc{layer}.relu"), LayerKind::Relu, &[x])?;
        }
    }
    Ok(b.build()?)
}

/// Most values of an expanded map (channels × pixels) in an inverted residual block: MobileNetV2's
/// largest on 56×56 maps hold 144 × 56².
const MAX_EXPANDED: usize = 144 * 56 * 56;

/// One network of two to four inverted residual blocks on a map of 16 to 96 channels and 7, 14,
/// 28 or 56 pixels a side, then a global average pool and a linear layer to 10 to 100 outputs.
/// Channel counts are multiples of 8, as MobileNetV2's are (its widths are rounded so).
fn inverted_residual(name: &str, rng: &mut SplitMix64) -> Result<Net, PredictorError> {
    let mut channels = 8 * int(rng, 2, 12);
    let mut side = [7, 14, 28, 56][rng.range(0, 3)];
    let mut b = NetBuilder::new(name, vec![channels, side, side])?;
    let mut x = b.input();
    for block in 0..rng.range(2, 4) {
        let expand = [1, 6, 6][rng.range(0, 2)];
        let hidden = (channels * expand).min((MAX_EXPANDED / (side * side) / 8 * 8).max(channels));
        let stride = if side >= 14 && rng.unit() < 0.3 { 2 } else { 1 };
        let out = if stride == 1 && rng.unit() < 0.5 {
            channels
        } else {
            8 * int(rng, 2, 20)
        };
        let p = format!("block{block}");
        let mut y = x;
        if hidden != channels {
            y = conv_bn(&mut b, &format!("{p}.expand"), y, [channels, hidden], 1, 1)?;
            y = b.add(format!("{p}.expand.relu6"), LayerKind::Relu6, &[y])?;
        }
        y = conv_bn(
            &mut b,
            &format!("{p}.depthwise"),
            y,
            [hidden, hidden],
            3,
            stride,
        )?;
        y = b.add(format!("{p}.depthwise.relu6"), LayerKind::Relu6, &[y])?;
        y = conv_bn(&mut b, &format!("{p}.project"), y, [hidden, out], 1, 1)?;
        if stride == 1 && out == channels {
            y = b.add(format!("{p}.add"), LayerKind::Add, &[x, y])?;
        }
        x = y;
        channels = out;
        side = side.div_ceil(stride);
    }
    let pool = LayerKind::AdaptiveAvgPool2d {
        output_size: [1, 1],
    };
    x = b.add("pool", pool, &[x])?;
    x = b.add("flatten", LayerKind::Flatten, &[x])?;
    let kind = LayerKind::Linear {
        in_features: channels,
        out_features: int(rng, 10, 100),
        bias: true,
    };
    b.add("fc", kind, &[x])?;
    Ok(b.build()?)
}

/// A convolution without bias from `channels[0]` to `channels[1]` channels (depthwise where a
/// 3×3 layer keeps the count), `kernel` square, padded to keep the map at stride 1, then its
/// batch normalisation.
fn conv_bn(
    b: &mut NetBuilder,
    id: &str,
    x: usize,
    [inp, out]: [usize; 2],
    kernel: usize,
    stride: usize,
) -> Result<usize, PredictorError> {
    let groups = if kernel == 3 && inp == out { inp } else { 1 };
    let kind = LayerKind::Conv2d {
        in_channels: inp,
        out_channels: out,
        kernel_size: [kernel; 2],
        stride: [stride; 2],
        padding: [kernel / 2; 2],
        dilation: [1, 1],
        groups,
        bias: false,
    };
    let y = b.add(id, kind, &[x])?;
    let norm = LayerKind::BatchNorm2d {
        num_features: out,
        eps: 1e-5,
    };
    Ok(b.add(format!("{id}.bn"), norm, &[y])?)
}

/// A 2×2 pooling of stride 2: max pooling when `max`, else average pooling.
fn pool(b: &mut NetBuilder, id: &str, x: usize, max: bool) -> Result<usize, PredictorError> {
    let kind = if max {
        LayerKind::MaxPool2d {
            kernel_size: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            dilation: [1, 1],
            ceil_mode: false,
        }
    } else {
        LayerKind::AvgPool2d {
            kernel_size: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            ceil_mode: false,
            count_include_pad: true,
        }
    };
    Ok(b.add(id, kind, &[x])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::LayerClass;

    #[test]
    fn small_networks_are_seeded_small_and_cover_lenets_classes() {
        let nets = small_nets(1).expect("small networks");
        assert_eq!(nets.len(), SMALL_NETS);
        assert_eq!(nets, small_nets(1).expect("again"), "one seed, one set");
        assert_ne!(nets, small_nets(2).expect("another seed"));
        let lenet = models::zoo::build("lenet").expect("lenet");
        let classes = |net: &Net| -> Vec<LayerClass> {
            net.nodes()
                .iter()
                .filter_map(|n| LayerClass::of(&n.spec().kind))
                .collect()
        };
        let covered: Vec<LayerClass> = nets.iter().flat_map(classes).collect();
        for class in classes(&lenet) {
            assert!(covered.contains(&class), "{class:?}");
        }
        for (i, net) in nets.iter().enumerate() {
            assert!(net.name().starts_with(SMALL_NET_PREFIX));
            let flops: u64 = net.nodes().iter().map(|n| n.spec().flops).sum();
            // LeNet-5 has 0.4 MFLOPs, MobileNetV2 630; these stay below the latter.
            assert!(flops < 500_000_000, "{}: {flops}", net.name());
            assert!(net.output_shape()[0] <= 100);
            // The inverted residual networks have depthwise layers; the others none.
            let depthwise = classes(net).contains(&LayerClass::GroupedConv);
            assert_eq!(depthwise, i >= LENET_LIKE, "{}", net.name());
        }
    }
}
