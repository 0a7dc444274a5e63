//! Which of the crate's kernels runs a convolution: the same decision the packing makes, told
//! to anyone who prices layers (the predictor gives it to its regressors as a feature, since
//! two layers of equal FLOPs on different kernels differ several-fold in time).

use crate::layer::LayerSpec;

use super::ConvShape;
use super::conv::{Layout, choose_layout};
use super::halving;
use super::winograd::Tiling;

/// The kernel a convolution runs on the flex backend with the fast kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConvKernel {
    /// Winograd's F(4×4, 3×3) (3×3, stride 1, larger maps).
    Winograd4,
    /// Winograd's F(2×2, 3×3) (3×3, stride 1, small maps).
    Winograd2,
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
}

impl ConvKernel {
    /// Every kernel, in a fixed order (a one-hot feature's positions).
    pub const ALL: [ConvKernel; 10] = [
        ConvKernel::Winograd4,
        ConvKernel::Winograd2,
        ConvKernel::PixelMajor,
        ConvKernel::ChannelMajor,
        ConvKernel::Direct,
        ConvKernel::Pointwise,
        ConvKernel::Patches,
        ConvKernel::Depthwise,
        ConvKernel::DepthwiseStride2,
        ConvKernel::Grouped,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            ConvKernel::Winograd4 => "winograd-f4",
            ConvKernel::Winograd2 => "winograd-f2",
            ConvKernel::PixelMajor => "im2col-pixel-major",
            ConvKernel::ChannelMajor => "im2col-channel-major",
            ConvKernel::Direct => "direct",
            ConvKernel::Pointwise => "pointwise",
            ConvKernel::Patches => "patches",
            ConvKernel::Depthwise => "depthwise",
            ConvKernel::DepthwiseStride2 => "depthwise-stride2",
            ConvKernel::Grouped => "grouped",
        }
    }

    /// The kernel that runs the convolution `spec` (with its own output shape), or `None` when
    /// `spec` is not a 2-D convolution with a `[C, H, W]` output.
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
        Some(match choose_layout(&shape, [ho, wo]) {
            Layout::Winograd(Tiling::F4) => ConvKernel::Winograd4,
            Layout::Winograd(Tiling::F2) => ConvKernel::Winograd2,
            Layout::PixelMajor => ConvKernel::PixelMajor,
            Layout::ChannelMajor => ConvKernel::ChannelMajor,
            Layout::Direct => ConvKernel::Direct,
            Layout::Pointwise => ConvKernel::Pointwise,
            Layout::Patches { .. } => ConvKernel::Patches,
        })
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
        // ResNet-18: the 7×7 RGB stem (direct), a 3×3 on 56×56 maps, a strided 3×3, a strided
        // 1×1 downsample.
        assert_eq!(kernel("resnet18", "conv1"), Some(ConvKernel::Direct));
        assert_eq!(
            kernel("resnet18", "layer1.0.conv1"),
            Some(ConvKernel::Winograd4)
        );
        assert_eq!(
            kernel("resnet18", "layer2.0.conv1"),
            Some(ConvKernel::PixelMajor)
        );
        assert_eq!(
            kernel("resnet18", "layer2.0.downsample.0"),
            Some(ConvKernel::Pointwise)
        );
        // A 3×3 layer on a 7×7 map: gathered patches where the CPU has AVX2 or AVX-512,
        // Winograd's F(2×2) on the narrowest path; a 1×1 layer there stays pointwise.
        let small_map = match crate::VectorPath::current() {
            crate::VectorPath::Other => ConvKernel::Winograd2,
            _ => ConvKernel::Patches,
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
        // Not a convolution.
        assert_eq!(kernel("resnet18", "fc"), None);
        assert_eq!(ConvKernel::ALL.len(), 10);
    }
}
