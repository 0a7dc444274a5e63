//! Which of the crate's kernels runs a convolution: the same decision the packing makes, told
//! to anyone who prices layers (the predictor gives it to its regressors as a feature, since
//! two layers of equal FLOPs on different kernels differ several-fold in time).

use serde::{Deserialize, Serialize};

use crate::exec::blocked_on_this_path;
use crate::fusion::Fusion;
use crate::layer::LayerSpec;
use crate::net::Net;

use super::ConvShape;
use super::conv::{Layout, choose_layout};
use super::halving;
use super::winograd::Tiling;

/// The kernel a convolution runs on the flex backend with the fast kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConvKernel {
    /// Winograd's F(4×4, 3×3) (3×3, stride 1, larger maps).
    Winograd4,
    /// Winograd's F(2×2, 3×3) (3×3, stride 1, small maps).
    Winograd2,
    /// Winograd's F(2×2, 5×5) (5×5, stride 1).
    Winograd5,
    /// im2col, `[pixels, K] × [K, out]` from a channels-last copy (most layers).
    PixelMajor,
    /// im2col, `[out, K] × [K, pixels]` straight into NCHW (few pixels, unpadded 1×1
    /// convolutions).
    ChannelMajor,
    /// Direct convolution on padded input planes (few input channels, as in an RGB stem).
    Direct,
    /// The 1×1 kernel: unpadded 1×1 convolutions straight from NCHW into NCHW.
    Pointwise,
    /// Gathered patches in register tiles over output channels (small maps).
    Patches,
    /// The depthwise kernel (one group per channel).
    Depthwise,
    /// 3×3 depthwise layers at stride 2 with padding 0 or 1, straight from the NCHW rows (where
    /// the vector path has AVX2 or AVX-512).
    DepthwiseStride2,
    /// Burn's own grouped convolution (any other group count).
    Grouped,
    /// The 1×1 kernel of a chain on channel-blocked maps (MobileNetV2's small maps on AVX-512).
    BlockedPointwise,
    /// The 3×3 depthwise kernel of a chain on channel-blocked maps.
    BlockedDepthwise,
}

impl ConvKernel {
    /// Every kernel, in a fixed order (a one-hot feature's positions).
    pub const ALL: [ConvKernel; 13] = [
        ConvKernel::Winograd4,
        ConvKernel::Winograd2,
        ConvKernel::Winograd5,
        ConvKernel::PixelMajor,
        ConvKernel::ChannelMajor,
        ConvKernel::Direct,
        ConvKernel::Pointwise,
        ConvKernel::Patches,
        ConvKernel::Depthwise,
        ConvKernel::DepthwiseStride2,
        ConvKernel::Grouped,
        ConvKernel::BlockedPointwise,
        ConvKernel::BlockedDepthwise,
    ];

    /// Whether the kernel can add a residual block's shortcut, and apply the addition's
    /// activation, as it stores its outputs (see [`Fusion::shortcut_conv`]): all but the direct,
    /// pixel-major, depthwise and grouped kernels.
    pub fn adds_residual(self) -> bool {
        matches!(
            self,
            ConvKernel::Winograd4
                | ConvKernel::Winograd2
                | ConvKernel::Winograd5
                | ConvKernel::ChannelMajor
                | ConvKernel::Pointwise
                | ConvKernel::Patches
                | ConvKernel::BlockedPointwise
        )
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            ConvKernel::Winograd4 => "winograd-f4",
            ConvKernel::Winograd2 => "winograd-f2",
            ConvKernel::Winograd5 => "winograd-f2-5x5",
            ConvKernel::PixelMajor => "im2col-pixel-major",
            ConvKernel::ChannelMajor => "im2col-channel-major",
            ConvKernel::Direct => "direct",
            ConvKernel::Pointwise => "pointwise",
            ConvKernel::Patches => "patches",
            ConvKernel::Depthwise => "depthwise",
            ConvKernel::DepthwiseStride2 => "depthwise-stride2",
            ConvKernel::Grouped => "grouped",
            ConvKernel::BlockedPointwise => "blocked-pointwise",
            ConvKernel::BlockedDepthwise => "blocked-depthwise",
        }
    }

    /// Whether the kernel runs on channel-blocked maps.
    pub fn is_blocked(self) -> bool {
        matches!(
            self,
            ConvKernel::BlockedPointwise | ConvKernel::BlockedDepthwise
        )
    }

    /// The NCHW kernel of the same kind: the 1×1 or depthwise kernel for a blocked one, the
    /// kernel itself otherwise.
    pub fn on_nchw(self) -> ConvKernel {
        match self {
            ConvKernel::BlockedPointwise => ConvKernel::Pointwise,
            ConvKernel::BlockedDepthwise => ConvKernel::Depthwise,
            kernel => kernel,
        }
    }

    /// The kernel called `name` ([`ConvKernel::name`]), if any.
    pub fn from_name(name: &str) -> Option<ConvKernel> {
        ConvKernel::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kernel that runs each node of `net`, in node order, when a model of it is made now
    /// with the fast kernels: `None` for nodes that are not 2-D convolutions. Unlike
    /// [`ConvKernel::of`], this sees the chains of depthwise and 1×1 layers that run on
    /// channel-blocked maps, which depend on a layer's neighbours and on the vector path.
    pub fn of_net(net: &Net) -> Vec<Option<ConvKernel>> {
        let blocked = blocked_on_this_path(net, &Fusion::of(net));
        net.nodes()
            .iter()
            .zip(blocked)
            .map(|(node, blocked)| {
                let kernel = ConvKernel::of(node.spec())?;
                Some(match (blocked, kernel) {
                    (false, kernel) => kernel,
                    (true, ConvKernel::Depthwise | ConvKernel::DepthwiseStride2) => {
                        ConvKernel::BlockedDepthwise
                    }
                    (true, _) => ConvKernel::BlockedPointwise,
                })
            })
            .collect()
    }

    /// The kernel that runs the convolution `spec` (with its own output shape) on NCHW maps, or
    /// `None` when `spec` is not a 2-D convolution with a `[C, H, W]` output. Whether it runs
    /// on channel-blocked maps instead depends on the network around it: see
    /// [`ConvKernel::of_net`].
    pub fn of(spec: &LayerSpec) -> Option<ConvKernel> {
        let (shape, groups) = ConvShape::of_layer(&spec.kind)?;
        let [_, ho, wo] = spec.output_shape[..] else {
            return None;
        };
        let (in_channels, out_channels) = (shape.in_channels, shape.out_channels);
        if groups == in_channels && groups == out_channels && groups > 1 {
            return Some(if halving::suits(&shape.window()) {
                ConvKernel::DepthwiseStride2
            } else {
                ConvKernel::Depthwise
            });
        }
        if groups != 1 {
            return Some(ConvKernel::Grouped);
        }
        Some(ConvKernel::of_layout(choose_layout(&shape, [ho, wo])))
    }

    /// The kernel that runs a dense convolution packed for `layout`.
    pub(crate) fn of_layout(layout: Layout) -> ConvKernel {
        match layout {
            Layout::Winograd(Tiling::F4) => ConvKernel::Winograd4,
            Layout::Winograd(Tiling::F2) => ConvKernel::Winograd2,
            Layout::Winograd(Tiling::F2Of5) => ConvKernel::Winograd5,
            Layout::PixelMajor => ConvKernel::PixelMajor,
            Layout::ChannelMajor => ConvKernel::ChannelMajor,
            Layout::Direct => ConvKernel::Direct,
            Layout::Pointwise => ConvKernel::Pointwise,
            Layout::Patches { .. } => ConvKernel::Patches,
        }
    }
}

/// How a convolution runs inside its network: its kernel, and whether that kernel also adds a
/// residual block's shortcut in its epilogue (reading a second map of the output's size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConvRun {
    /// The kernel ([`ConvKernel::of_net`]).
    pub kernel: ConvKernel,
    /// Whether it adds the shortcut of the addition its output feeds.
    pub residual: bool,
}

impl ConvRun {
    /// How each node of `net` runs, in node order, when a model of it is made now with the fast
    /// kernels and runs whole: `None` for nodes that are not 2-D convolutions. A convolution
    /// adds a residual where [`Fusion::shortcut_conv`] pairs it with an addition and its kernel
    /// [`adds_residual`](ConvKernel::adds_residual).
    pub fn of_net(net: &Net) -> Vec<Option<ConvRun>> {
        let fusion = Fusion::of(net);
        let kernels = ConvKernel::of_net(net);
        let mut residual = vec![false; net.len()];
        for add in 0..net.len() {
            if let Some(conv) = fusion.shortcut_conv(add) {
                residual[conv] = kernels[conv].is_some_and(ConvKernel::adds_residual);
            }
        }
        kernels
            .into_iter()
            .zip(residual)
            .map(|(kernel, residual)| {
                Some(ConvRun {
                    kernel: kernel?,
                    residual,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo;

    /// The kernel of zoo network `name`'s node `id`.
    fn kernel(name: &str, id: &str) -> Option<ConvKernel> {
        let net = zoo::build(name).expect("zoo model");
        let node = net.nodes().iter().find(|n| n.id() == id).expect("node");
        ConvKernel::of(node.spec())
    }

    #[test]
    fn zoo_layers_get_the_kernels_the_packing_picks() {
        // ResNet-18: the 7×7 RGB stem (direct), a 3×3 on 56×56 maps, a strided 3×3 (direct
        // on AVX2, onto its 28×28 map), a strided 1×1 downsample.
        assert_eq!(kernel("resnet18", "conv1"), Some(ConvKernel::Direct));
        assert_eq!(
            kernel("resnet18", "layer1.0.conv1"),
            Some(ConvKernel::Winograd4)
        );
        let strided = match crate::VectorPath::current() {
            crate::VectorPath::Avx2 => ConvKernel::Direct,
            _ => ConvKernel::PixelMajor,
        };
        assert_eq!(kernel("resnet18", "layer2.0.conv1"), Some(strided));
        assert_eq!(
            kernel("resnet18", "layer2.0.downsample.0"),
            Some(ConvKernel::Pointwise)
        );
        // A 3×3 layer on a 7×7 map: gathered patches where the CPU has AVX-512, Winograd's
        // F(2×2) on the narrower paths; a 1×1 layer there stays pointwise.
        let small_map = match crate::VectorPath::current() {
            crate::VectorPath::Avx512 => ConvKernel::Patches,
            _ => ConvKernel::Winograd2,
        };
        assert_eq!(kernel("resnet18", "layer4.1.conv1"), Some(small_map));
        assert_eq!(
            kernel("resnet50", "layer4.1.conv1"),
            Some(ConvKernel::Pointwise)
        );
        // MobileNetV2's depthwise layers: stride 1, and stride 2 where the CPU has AVX2 or
        // AVX-512.
        assert_eq!(
            kernel("mobilenet_v2", "features.1.conv.0.0"),
            Some(ConvKernel::Depthwise)
        );
        let halving = match crate::VectorPath::current() {
            crate::VectorPath::Other => ConvKernel::Depthwise,
            _ => ConvKernel::DepthwiseStride2,
        };
        assert_eq!(kernel("mobilenet_v2", "features.2.conv.1.0"), Some(halving));
        // AlexNet's 5×5 layer, 64 → 192 channels on a 27×27 map.
        assert_eq!(kernel("alexnet", "features.3"), Some(ConvKernel::Winograd5));
        // Not a convolution.
        assert_eq!(kernel("resnet18", "fc"), None);
        assert_eq!(ConvKernel::ALL.len(), 13);
    }

    #[test]
    fn the_network_tells_which_layers_run_blocked() {
        let kernels = |name: &str| {
            let net = zoo::build(name).expect("zoo model");
            let kernels = ConvKernel::of_net(&net);
            let ids: Vec<String> = net.nodes().iter().map(|n| n.id().to_string()).collect();
            move |id: &str| kernels[ids.iter().position(|i| i == id).expect("node")]
        };
        let mobilenet = kernels("mobilenet_v2");
        // The 14² blocks run blocked on AVX-512; elsewhere as alone, the stride-2 depthwise
        // layer that starts them halving where the CPU has AVX2.
        let (pointwise, depthwise) = match crate::VectorPath::current() {
            crate::VectorPath::Avx512 => {
                (ConvKernel::BlockedPointwise, ConvKernel::BlockedDepthwise)
            }
            crate::VectorPath::Avx2 => (ConvKernel::Pointwise, ConvKernel::DepthwiseStride2),
            crate::VectorPath::Other => (ConvKernel::Pointwise, ConvKernel::Depthwise),
        };
        assert_eq!(mobilenet("features.14.conv.1.0"), Some(depthwise));
        assert_eq!(mobilenet("features.14.conv.0.0"), Some(pointwise));
        assert_eq!(mobilenet("features.18.0"), Some(pointwise));
        // The 28² blocks and the classifier are as a layer alone runs them.
        assert_eq!(
            mobilenet("features.5.conv.1.0"),
            Some(ConvKernel::Depthwise)
        );
        assert_eq!(mobilenet("classifier.1"), None);
        // A network without depthwise layers: every layer as alone, its 1×1 layers on 14² maps
        // included.
        let net = zoo::build("resnet50").expect("zoo model");
        let alone: Vec<_> = net
            .nodes()
            .iter()
            .map(|n| ConvKernel::of(n.spec()))
            .collect();
        assert_eq!(ConvKernel::of_net(&net), alone);
        for kernel in ConvKernel::ALL {
            assert_eq!(ConvKernel::from_name(kernel.name()), Some(kernel));
            assert!(!kernel.on_nchw().is_blocked());
            assert_eq!(kernel.on_nchw() == kernel, !kernel.is_blocked());
        }
        assert_eq!(ConvKernel::from_name("winograd"), None);
    }

    #[test]
    fn residual_blocks_last_convolutions_add_their_shortcuts() {
        let residuals = |name: &str| {
            let net = zoo::build(name).expect("zoo model");
            let runs = ConvRun::of_net(&net);
            assert_eq!(
                runs.iter().map(|r| r.map(|r| r.kernel)).collect::<Vec<_>>(),
                ConvKernel::of_net(&net)
            );
            net.nodes()
                .iter()
                .zip(runs)
                .filter(|(_, run)| run.is_some_and(|r| r.residual))
                .map(|(node, _)| node.id().to_string())
                .collect::<Vec<_>>()
        };
        // One per residual block: ResNet-50's 16 bottlenecks end in a 1×1 layer, ResNet-18's 8
        // basic blocks in a 3×3 one; MobileNetV2's 10 residual blocks in their 1×1 projection.
        let resnet50 = residuals("resnet50");
        assert_eq!(resnet50.len(), 16, "{resnet50:?}");
        assert!(
            resnet50
                .iter()
                .all(|id| id.ends_with("conv3") || id.ends_with("downsample.0"))
        );
        assert!(resnet50.contains(&"layer4.2.conv3".to_string()));
        assert_eq!(residuals("resnet18").len(), 8);
        let mobilenet = residuals("mobilenet_v2");
        assert_eq!(mobilenet.len(), 10, "{mobilenet:?}");
        assert!(mobilenet.contains(&"features.3.conv.2".to_string()));
        // No residual blocks: none.
        assert!(residuals("vgg16").is_empty());
        assert!(residuals("alexnet").is_empty());
    }
}
