//! Layer features: what a regressor sees of a [`LayerSpec`].
//!
//! Two feature sets per class. `ours` feeds the chosen regressors: how the layer was timed
//! ([`Context`]: alone and cold, or inside a pass, with the bytes it moves), log-transformed FLOPs,
//! input and output elements and parameters, plus the class's hyper-parameters; for a
//! convolution also which kernel runs it ([`ConvKernel`], one-hot, a blocked kernel as its
//! NCHW twin), whether that kernel adds a residual block's shortcut ([`ConvRun`]), and its
//! working set (input, output, shortcut and weights in bytes), since layers of equal FLOPs
//! differ several-fold between kernels and between fitting in the cache or not. `baseline` is
//! Neurosurgeon's: a few raw sizes per layer type for a plain linear regression, kept to show
//! what the better models buy. Both are pure functions of the spec, so featurisation is
//! deterministic.

use models::{ConvKernel, ConvRun, LayerKind, LayerSpec};

use crate::class::LayerClass;

/// Version of the feature definitions and of how the sweep times a layer. Sweeps and profiles
/// of another version are refused; bump [`PROFILE_FORMAT_VERSION`](crate::PROFILE_FORMAT_VERSION)
/// with it. Version 2: convolutions' kernel and working set; layers timed with the caches
/// evicted before each run ([`models::Model::time_layers_cold`]). Version 3: the networks'
/// layers timed inside their passes in interleaved rounds (one pass of every network a round).
/// Version 4: how a layer was timed ([`Context`]) is a feature. Version 5: the sampled layers
/// timed a batch at a time in interleaved rounds, the caches evicted by every worker. Version 6:
/// the stride-2 depthwise kernel ([`ConvKernel::DepthwiseStride2`]) among the kernels.
/// Version 7: the kernel as the layer's network runs it ([`ConvKernel::of_net`], the
/// channel-blocked kernels among them) recorded with every row, and layers timed alone on
/// their inputs as a pass hands them on. Version 8: a quarter of the sampled 1×1 and depthwise
/// layers drawn inside a chain on a small map ([`crate::Sample::in_chain`]), which changes the
/// sampler's sequence. Version 9: whether a convolution adds a residual in its epilogue
/// ([`ConvRun::residual`]) recorded with every row, a feature, and its shortcut's bytes in the
/// layer's working set; dense convolutions sampled with up to 2048 channels on either side.
/// Version 10: Winograd's F(2×2, 5×5) ([`ConvKernel::Winograd5`]) among the kernels.
/// Version 11: small seeded networks ([`crate::small_nets`]) timed in-pass beside the zoo's,
/// and only the sampled classes written from a pass. Version 12: networks of inverted residual
/// blocks among the small ones. Version 13: a network's in-pass layers scaled to add up to its
/// median pass, and its whole passes timed in the same rounds as its nodes. Version 14: rounds
/// judged slow against the lower quartile of the guard's anchor timings, not the fastest
/// ([`crate::CALM_QUANTILE`]). Version 15: each anchor timing the fastest of
/// [`crate::ANCHOR_PASSES`] passes, not of two; each network's timed passes after
/// [`crate::OWN_WARMUP_MS`] of its own, not one.
pub const FEATURE_SCHEMA_VERSION: u32 = 15;

/// How a layer was timed, or is to be priced: its context changes its time as much as its shape
/// does (a small layer timed alone after the caches are evicted takes several times what it
/// takes between its neighbours in a pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Alone, with the caches evicted first: the sweep's sampled layers.
    Cold,
    /// Inside a network's forward pass: the networks' in-pass layers, and every prediction.
    InPass,
}

fn elements(shape: &[usize]) -> f64 {
    shape.iter().map(|&d| d as f64).product()
}

fn ln1p(x: f64) -> f64 {
    x.ln_1p()
}

/// Spatial size (height) of a `[C, H, W]` shape, 1 for vectors.
fn height(shape: &[usize]) -> f64 {
    if shape.len() == 3 {
        shape[1] as f64
    } else {
        1.0
    }
}

fn channels(shape: &[usize]) -> f64 {
    shape.first().copied().unwrap_or(1) as f64
}

/// A convolution's kernel as features: one-hot over the NCHW kernels, a blocked kernel in its
/// NCHW twin's place. The regressors are not told that a layer runs blocked: with lone
/// depthwise layers the only blocked ones sampled, a flag learned from them priced a network's
/// blocked 1×1 layers high; with layers sampled inside chains ([`crate::Sample::in_chain`]) a
/// flag moved MobileNetV2 unseen from −4.4 to −8.9 % and from +5.4 to +3.0 % on two sweeps,
/// and held-out accuracy by +2 and 0 points: no consistent gain (`docs/EXPERIMENTS.md`,
/// "Latency predictor").
fn kernel_features(kernel: Option<ConvKernel>) -> impl Iterator<Item = f64> {
    let nchw = kernel.map(ConvKernel::on_nchw);
    ConvKernel::ALL
        .into_iter()
        .filter(|k| !k.is_blocked())
        .map(move |k| if Some(k) == nchw { 1.0 } else { 0.0 })
}

/// Our features for `spec`, whose class is `class`, run as `conv` says (for a convolution: see
/// [`ConvRun::of_net`]) and timed or priced in `context`. The first
/// two say which: inside a pass, 1 and the log of the bytes the layer reads and writes (what
/// a pass's warm caches save grows with it, so the gap between the two contexts is not one
/// ratio for every size); alone and cold, both 0.
pub fn ours(
    class: LayerClass,
    spec: &LayerSpec,
    conv: Option<ConvRun>,
    context: Context,
) -> Vec<f64> {
    let input = spec.input_shapes.first().map(Vec::as_slice).unwrap_or(&[]);
    let in_elems: f64 = spec.input_shapes.iter().map(|s| elements(s)).sum();
    let out_elems = elements(&spec.output_shape);
    let residual = conv.is_some_and(|c| c.residual);
    // A shortcut added in the epilogue is a second map of the output's size to read.
    let shortcut_elems = if residual { out_elems } else { 0.0 };
    let bytes = 4.0 * (in_elems + out_elems + shortcut_elems + spec.params as f64);
    let in_pass = if context == Context::InPass { 1.0 } else { 0.0 };
    let mut f = vec![
        in_pass,
        in_pass * ln1p(bytes),
        ln1p(spec.flops as f64),
        ln1p(in_elems),
        ln1p(out_elems),
        ln1p(spec.params as f64),
    ];
    match (&spec.kind, class) {
        (
            LayerKind::Conv2d {
                in_channels,
                out_channels,
                kernel_size,
                stride,
                groups,
                ..
            },
            _,
        ) => {
            f.extend([
                ln1p(*in_channels as f64),
                ln1p(*out_channels as f64),
                kernel_size[0] as f64,
                stride[0] as f64,
                ln1p(height(input)),
                ln1p(height(&spec.output_shape)),
                ln1p(*groups as f64),
                if residual { 1.0 } else { 0.0 },
                ln1p(bytes),
            ]);
            f.extend(kernel_features(conv.map(|c| c.kernel)));
        }
        (
            LayerKind::Linear {
                in_features,
                out_features,
                ..
            },
            _,
        ) => f.extend([ln1p(*in_features as f64), ln1p(*out_features as f64)]),
        (
            LayerKind::MaxPool2d {
                kernel_size,
                stride,
                ..
            },
            _,
        )
        | (
            LayerKind::AvgPool2d {
                kernel_size,
                stride,
                ..
            },
            _,
        ) => f.extend([
            kernel_size[0] as f64,
            stride[0] as f64,
            ln1p(channels(input)),
            ln1p(height(input)),
            ln1p(height(&spec.output_shape)),
            0.0,
        ]),
        (LayerKind::AdaptiveAvgPool2d { output_size }, _) => f.extend([
            (height(input) / output_size[0] as f64).ceil(),
            0.0,
            ln1p(channels(input)),
            ln1p(height(input)),
            ln1p(height(&spec.output_shape)),
            1.0,
        ]),
        (LayerKind::Relu6, _) => f.extend([1.0, ln1p(channels(input)), ln1p(height(input))]),
        (_, LayerClass::Activation) => f.extend([0.0, ln1p(channels(input)), ln1p(height(input))]),
        (_, LayerClass::BatchNorm) => f.extend([ln1p(channels(input)), ln1p(height(input))]),
        (_, LayerClass::Add | LayerClass::Concat) => f.extend([
            spec.input_shapes.len() as f64,
            ln1p(channels(input)),
            ln1p(height(input)),
        ]),
        _ => {}
    }
    f
}

/// Neurosurgeon's features: for convolutions the input feature-map size and
/// (filter size / stride)² × filters; for linear layers input and output neurons; for every
/// other layer the input and output sizes.
pub fn baseline(spec: &LayerSpec) -> Vec<f64> {
    let in_elems: f64 = spec.input_shapes.iter().map(|s| elements(s)).sum();
    match &spec.kind {
        LayerKind::Conv2d {
            out_channels,
            kernel_size,
            stride,
            ..
        } => {
            let ratio = kernel_size[0] as f64 / stride[0] as f64;
            vec![in_elems, ratio * ratio * *out_channels as f64]
        }
        LayerKind::Linear {
            in_features,
            out_features,
            ..
        } => vec![*in_features as f64, *out_features as f64],
        _ => vec![in_elems, elements(&spec.output_shape)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our features of zoo network `name`'s node `id`, run by the kernel its network runs it
    /// with.
    fn features_of(name: &str, id: &str) -> Vec<f64> {
        let net = models::zoo::build(name).expect("zoo model");
        let v = net.nodes().iter().position(|n| n.id() == id).expect("node");
        let spec = net.nodes()[v].spec();
        let class = LayerClass::of(&spec.kind).expect("a class");
        ours(class, spec, ConvRun::of_net(&net)[v], Context::InPass)
    }

    /// Zoo network `name`'s node `id` and how it runs as a layer alone: its NCHW kernel, no
    /// residual.
    fn alone(name: &str, id: &str) -> (LayerSpec, Option<ConvRun>) {
        let net = models::zoo::build(name).expect("zoo model");
        let node = net.nodes().iter().find(|n| n.id() == id).expect("node");
        let conv = ConvKernel::of(node.spec()).map(|kernel| ConvRun {
            kernel,
            residual: false,
        });
        (node.spec().clone(), conv)
    }

    #[test]
    fn a_convolution_says_which_kernel_runs_it() {
        // ResNet-18's layer1 3×3 runs Winograd F(4×4); its strided layer2 3×3 runs im2col, or
        // on AVX2 the direct kernel (a stride-2 3×3 layer onto a large map).
        let winograd = features_of("resnet18", "layer1.0.conv1");
        let strided_layer = features_of("resnet18", "layer2.0.conv1");
        assert_eq!(winograd.len(), strided_layer.len());
        // The kernel's features: one-hot over the NCHW kernels.
        let nchw: Vec<ConvKernel> = ConvKernel::ALL
            .into_iter()
            .filter(|k| !k.is_blocked())
            .collect();
        let tail = |f: &[f64]| f[f.len() - nchw.len()..].to_vec();
        let hot = |kernel| {
            nchw.iter()
                .map(|&k| if k == kernel { 1.0 } else { 0.0 })
                .collect::<Vec<f64>>()
        };
        assert_eq!(tail(&winograd), hot(ConvKernel::Winograd4));
        let strided = match models::VectorPath::current() {
            models::VectorPath::Avx2 => ConvKernel::Direct,
            _ => ConvKernel::PixelMajor,
        };
        assert_eq!(tail(&strided_layer), hot(strided));
        // MobileNetV2's 1×1 and depthwise layers on 14² maps, blocked on AVX-512, in their NCHW
        // twins' places.
        let expand = features_of("mobilenet_v2", "features.12.conv.0.0");
        let depthwise = features_of("mobilenet_v2", "features.12.conv.1.0");
        assert_eq!(tail(&expand), hot(ConvKernel::Pointwise));
        assert_eq!(tail(&depthwise), hot(ConvKernel::Depthwise));
        // The working set (just before the kernel) counts input, output and weights, and the
        // residual flag before it is off for a block's first layer.
        let ws = winograd[winograd.len() - nchw.len() - 1];
        let bytes: f64 = 4.0 * (2.0 * 64.0 * 56.0 * 56.0 + 64.0 * 64.0 * 9.0);
        assert!((ws - bytes.ln_1p()).abs() < 1e-9, "{ws}");
        assert_eq!(winograd[winograd.len() - nchw.len() - 2], 0.0);
    }

    #[test]
    fn a_convolution_that_adds_a_shortcut_says_so_and_counts_its_bytes() {
        // ResNet-50's last block: its 1×1 widening layer adds the shortcut, 2048 × 7 × 7 more
        // floats to read; the 1×1 reduction that starts the block adds nothing.
        let widen = features_of("resnet50", "layer4.2.conv3");
        let reduce = features_of("resnet50", "layer4.2.conv1");
        let tail = ConvKernel::ALL.iter().filter(|k| !k.is_blocked()).count();
        let at = |f: &[f64], back: usize| f[f.len() - tail - back];
        assert_eq!((at(&widen, 2), at(&reduce, 2)), (1.0, 0.0));
        let out = 2048.0 * 7.0 * 7.0;
        let bytes: f64 = 4.0 * (512.0 * 7.0 * 7.0 + 2.0 * out + 512.0 * 2048.0);
        assert!((at(&widen, 1) - bytes.ln_1p()).abs() < 1e-9);
        assert!((widen[1] - bytes.ln_1p()).abs() < 1e-9, "{}", widen[1]);
        // Timed alone, the same layer adds nothing.
        let (spec, alone) = alone("resnet50", "layer4.2.conv3");
        let lone = ours(LayerClass::Conv, &spec, alone, Context::InPass);
        assert_eq!(at(&lone, 2), 0.0);
        assert!(lone[1] < widen[1]);
    }

    #[test]
    fn the_context_leads_the_features_and_is_their_only_difference() {
        let (spec, conv) = alone("resnet18", "layer1.0.conv1");
        let class = LayerClass::of(&spec.kind).expect("a class");
        let cold = ours(class, &spec, conv, Context::Cold);
        let in_pass = ours(class, &spec, conv, Context::InPass);
        assert_eq!(cold[..2], [0.0, 0.0]);
        // Inside a pass: the flag, and the log of the bytes the layer reads and writes.
        let bytes: f64 = 4.0 * (2.0 * 64.0 * 56.0 * 56.0 + 64.0 * 64.0 * 9.0);
        assert_eq!(in_pass[0], 1.0);
        assert!((in_pass[1] - bytes.ln_1p()).abs() < 1e-9, "{}", in_pass[1]);
        assert_eq!(cold[2..], in_pass[2..]);
    }
}
