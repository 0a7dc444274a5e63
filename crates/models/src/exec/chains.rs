//! Which convolutions run on channel-blocked maps ([`BlockedMaps`](crate::kernels::BlockedMaps)):
//! chains of depthwise and 1×1 convolutions, as in MobileNetV2's inverted residual blocks.
//!
//! Every 3×3 depthwise convolution without dilation runs blocked, and so does every unpadded
//! 1×1 convolution at stride 1 whose input comes blocked (through the batch norms and
//! activations folded into the convolution before it, and through additions of blocked maps)
//! or that feeds a depthwise convolution, where the maps in and out have at most
//! [`LARGEST_PLANE`] pixels, when the model is made on the AVX-512 path (with AVX2's 8-lane
//! vectors the NCHW kernels are faster). A network without depthwise layers runs as before. The executor converts a map where
//! a node of the other layout reads it, and at a cut.

use crate::fusion::Fusion;
use crate::kernels::{BlockedDepthwise, ConvShape, VectorPath};
use crate::layer::LayerKind;
use crate::net::Net;

/// Pixels of the largest output map a blocked convolution makes: 14 × 14. On larger maps the
/// NCHW kernels are faster (MobileNetV2's 28², 56² and 112² layers: see `docs/EXPERIMENTS.md`,
/// "Edge speed against ONNX Runtime").
pub const LARGEST_PLANE: usize = 14 * 14;

/// For each node of `net` run with `fusion` by the crate's own kernels, whether it is a
/// convolution that runs on blocked maps when the model is made now: [`blocked_convs`] on the
/// AVX-512 path, none on the others.
pub(crate) fn blocked_on_this_path(net: &Net, fusion: &Fusion) -> Vec<bool> {
    if VectorPath::current() == VectorPath::Avx512 {
        blocked_convs(net, fusion)
    } else {
        vec![false; net.len()]
    }
}

/// For each node of `net` run with `fusion`, whether it is a convolution that runs on blocked
/// maps on the AVX-512 path.
fn blocked_convs(net: &Net, fusion: &Fusion) -> Vec<bool> {
    let nodes = net.nodes();
    let small = |v: usize| match nodes[v].spec().output_shape[..] {
        [_, h, w] => h * w <= LARGEST_PLANE,
        _ => false,
    };
    // A depthwise layer whose input map is larger (a stride-2 layer from 28²) is left to the
    // NCHW kernels rather than converting its input.
    let depthwise: Vec<bool> = (0..nodes.len())
        .map(|v| {
            let input_small = nodes[v].inputs().iter().all(|&u| small(u));
            small(v) && input_small && is_depthwise(&nodes[v].spec().kind)
        })
        .collect();
    // The node whose output a node's output is: a folded node's convolution or addition.
    let group = |u: usize| fusion.absorbed_into(u).unwrap_or(u);
    let feeds_depthwise = |v: usize| {
        (0..nodes.len()).any(|w| depthwise[w] && nodes[w].inputs().iter().any(|&u| group(u) == v))
    };
    let mut blocked = vec![false; nodes.len()];
    // Whether a node's output is left blocked.
    let mut out_blocked = vec![false; nodes.len()];
    for (v, node) in nodes.iter().enumerate() {
        let kind = &node.spec().kind;
        out_blocked[v] = if let Some(head) = fusion.absorbed_into(v) {
            out_blocked[head]
        } else if depthwise[v] {
            blocked[v] = true;
            true
        } else if small(v) && is_pointwise(kind) {
            let input_blocked = node.inputs().iter().any(|&u| out_blocked[u]);
            blocked[v] = input_blocked || feeds_depthwise(v);
            blocked[v]
        } else if matches!(kind, LayerKind::Add) {
            node.inputs().iter().all(|&u| out_blocked[u])
        } else {
            false
        };
    }
    blocked
}

/// Whether `kind` is a depthwise convolution that runs on blocked maps.
fn is_depthwise(kind: &LayerKind) -> bool {
    ConvShape::of_layer(kind).is_some_and(|(shape, groups)| {
        groups == shape.in_channels && groups > 1 && BlockedDepthwise::suits(&shape)
    })
}

/// Whether `kind` is an unpadded 1×1 convolution at stride 1.
fn is_pointwise(kind: &LayerKind) -> bool {
    matches!(
        *kind,
        LayerKind::Conv2d {
            kernel_size: [1, 1],
            stride: [1, 1],
            padding: [0, 0],
            groups: 1,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo;

    /// The ids of zoo network `name`'s blocked convolutions.
    fn blocked_ids(name: &str) -> Vec<String> {
        let net = zoo::build(name).expect("zoo model");
        let fusion = Fusion::of(&net);
        let blocked = blocked_convs(&net, &fusion);
        (0..net.len())
            .filter(|&v| blocked[v])
            .map(|v| net.nodes()[v].id().to_string())
            .collect()
    }

    #[test]
    fn mobilenet_v2_runs_its_blocks_on_14_and_7_pixel_maps_blocked() {
        let ids = blocked_ids("mobilenet_v2");
        // Blocks 8 to 17 (expansion, depthwise, projection), and the last 1×1 layer, whose
        // input comes blocked.
        assert_eq!(ids.len(), 10 * 3 + 1, "{ids:?}");
        for id in [
            "features.8.conv.0.0",
            "features.14.conv.1.0",
            "features.17.conv.2",
            "features.18.0",
        ] {
            assert!(ids.contains(&id.to_string()), "{id} in {ids:?}");
        }
        // The stem, the 28² blocks, and block 7's stride-2 layer from 28² stay NCHW.
        for id in [
            "features.0.0",
            "features.5.conv.1.0",
            "features.7.conv.1.0",
            "features.7.conv.2",
        ] {
            assert!(!ids.contains(&id.to_string()), "{id} in {ids:?}");
        }
    }

    #[test]
    fn networks_without_depthwise_layers_run_as_before() {
        for name in ["resnet18", "resnet50", "googlenet", "alexnet"] {
            assert!(blocked_ids(name).is_empty(), "{name}");
        }
    }
}
