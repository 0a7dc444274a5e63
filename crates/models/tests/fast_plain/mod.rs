//! The check both kernel paths' tests run: a zoo model's fast kernels against its plain ones.

use crate::common::{Lcg, input};
use models::{
    Backend, ConvKernel, HostTensor, Kernels, LayerKind, Model, Net, NetBuilder, VectorPath,
    Weights, relative_difference, zoo,
};

/// The bar: 1e-4 of the output's largest magnitude.
pub const TOLERANCE: f64 = 1e-4;

/// Random cuts per model on top of the cuts inside fused groups.
const RANDOM_CUTS: usize = 6;

fn run(model: &Model, cloud: Option<Vec<bool>>, x: &HostTensor) -> HostTensor {
    let value = model.upload(x.clone()).expect("upload");
    let y = match cloud {
        None => model.forward(value),
        Some(cloud) => {
            let cut = model.net().cut_from_mask(cloud).expect("valid cut");
            model.run_split(&cut, value)
        }
    };
    y.expect("runs").to_host().expect("read back")
}

/// Node `first` and everything after it: a successor-closed cloud set.
fn descendants(net: &Net, first: &[usize]) -> Vec<bool> {
    let mut cloud = vec![false; net.len()];
    for &v in first {
        cloud[v] = true;
    }
    for v in 1..net.len() {
        if cloud[v] {
            for &w in net.consumers(v) {
                cloud[w] = true;
            }
        }
    }
    cloud
}

/// Runs zoo model `name` with the fast and the plain kernels, whole and at random cuts (some
/// inside fused groups), and checks that they agree within [`TOLERANCE`].
pub fn fast_equals_plain(name: &str) {
    net_fast_equals_plain(zoo::build(name).expect("zoo model"));
}

/// [`fast_equals_plain`] for any network.
pub fn net_fast_equals_plain(net: Net) {
    let name = net.name().to_string();
    let weights = Weights::seeded(&net, 5);
    let device = Backend::Flex.device().expect("flex");
    let plain = Model::with_kernels(net.clone(), weights.clone(), &device, Kernels::Plain)
        .expect("plain model");
    let fast = Model::with_kernels(net.clone(), weights, &device, Kernels::Fast).expect("fast");
    let mut rng = Lcg(3);
    let x = input(&net, 1, &mut rng);
    let want = run(&plain, None, &x);
    let diff = relative_difference(&run(&fast, None, &x), &want);
    assert!(diff <= TOLERANCE, "{name}: whole pass differs by {diff}");

    // Cuts right after a convolution whose batch norm or activation is fused into it, cuts
    // right before a residual addition (whose convolution then runs on the other side, its own
    // output crossing), then random ones.
    let fusion = fast.fusion();
    let inside: Vec<usize> = (0..net.len()).filter(|&v| fusion.is_absorbed(v)).collect();
    let adds: Vec<usize> = (0..net.len())
        .filter(|&v| matches!(net.nodes()[v].spec().kind, LayerKind::Add))
        .collect();
    let mut cuts: Vec<Vec<usize>> = (0..3)
        .filter(|_| !inside.is_empty())
        .map(|_| vec![inside[rng.below(inside.len())]])
        .collect();
    cuts.extend(
        (0..2)
            .filter(|_| !adds.is_empty())
            .map(|_| vec![adds[rng.below(adds.len())]]),
    );
    cuts.extend((0..RANDOM_CUTS).map(|_| vec![1 + rng.below(net.len() - 1)]));
    for first in cuts {
        let cloud = descendants(&net, &first);
        let diff = relative_difference(&run(&fast, Some(cloud), &x), &want);
        let id = net.nodes()[first[0]].id();
        assert!(
            diff <= TOLERANCE,
            "{name}: cut before `{id}` differs by {diff}"
        );
    }
}

/// A 3×3 convolution of `c` channels to `c` in `groups` groups, with a bias.
fn conv3x3(c: usize, stride: usize, padding: usize, groups: usize) -> LayerKind {
    conv([c, c], 3, [stride, padding], groups)
}

/// A `kernel`-square convolution of `[in, out]` channels at `[stride, padding]` on both axes,
/// in `groups` groups, with a bias.
fn conv(
    [in_channels, out_channels]: [usize; 2],
    kernel: usize,
    [stride, padding]: [usize; 2],
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

/// A max pool of `kernel`-square windows at stride 2 with `padding`.
fn max_pool(kernel: usize, padding: usize) -> LayerKind {
    LayerKind::MaxPool2d {
        kernel_size: [kernel; 2],
        stride: [2, 2],
        padding: [padding; 2],
        dilation: [1, 1],
        ceil_mode: false,
    }
}

/// Residual blocks of 3×3 convolutions with 36 channels, a count the kernels' blocks of 8 and
/// 16 leave a remainder of, on maps whose rows of tiles end in a lone tile: Winograd's
/// output pixels go partly in registers and partly value by value.
fn odd_channel_blocks() -> Net {
    let conv = |c| conv3x3(c, 1, 1, 1);
    let mut b = NetBuilder::new("odd_channels", vec![36, 52, 52]).expect("builder");
    let x = b.input();
    let a = b.add("a", conv(36), &[x]).expect("a");
    let sum = b.add("a_add", LayerKind::Add, &[a, x]).expect("add");
    let y = b.add("a_relu", LayerKind::Relu, &[sum]).expect("relu");
    let p = b.add("pool", max_pool(2, 0), &[y]).expect("pool");
    let c = b.add("c", conv(36), &[p]).expect("c");
    let sum = b.add("c_add", LayerKind::Add, &[c, p]).expect("add");
    b.add("c_relu", LayerKind::Relu, &[sum]).expect("relu");
    b.build().expect("net")
}

/// [`net_fast_equals_plain`] on [`odd_channel_blocks`], whose convolutions must run Winograd
/// on the path in effect.
pub fn odd_channel_blocks_fast_equal_plain() {
    let net = odd_channel_blocks();
    for id in ["a", "c"] {
        let v = net.index_of(id).expect("node");
        let kernel = ConvKernel::of(net.nodes()[v].spec());
        assert!(
            matches!(
                kernel,
                Some(ConvKernel::Winograd4 | ConvKernel::Winograd2 | ConvKernel::Winograd5)
            ),
            "{id} runs {kernel:?}"
        );
    }
    net_fast_equals_plain(net);
}

/// A network of stride-2 3×3 windows on planes too large for the channel blocks, read
/// straight from the rows where the path has AVX2 or AVX-512 (`halving.rs`): a depthwise layer
/// with padding 1 onto 45 columns (several vectors and a partial one on either path), one with
/// padding 0 onto 22 rows of 22, and a max pool with padding 1 after them.
fn strided_windows() -> Net {
    let depthwise = |padding| conv3x3(6, 2, padding, 6);
    let mut b = NetBuilder::new("strided_windows", vec![6, 75, 90]).expect("builder");
    let x = b.input();
    let a = b.add("a", depthwise(1), &[x]).expect("a");
    let a = b.add("a_relu6", LayerKind::Relu6, &[a]).expect("relu6");
    let c = b.add("c", depthwise(0), &[a]).expect("c");
    b.add("pool", max_pool(3, 1), &[c]).expect("pool");
    b.build().expect("net")
}

/// [`net_fast_equals_plain`] on [`strided_windows`], whose depthwise layers must run the
/// stride-2 kernel where the path has AVX2 or AVX-512.
pub fn strided_windows_fast_equal_plain() {
    let net = strided_windows();
    if VectorPath::current() <= VectorPath::Avx2 {
        for id in ["a", "c"] {
            let v = net.index_of(id).expect("node");
            let kernel = ConvKernel::of(net.nodes()[v].spec());
            assert_eq!(kernel, Some(ConvKernel::DepthwiseStride2), "{id}");
        }
    }
    net_fast_equals_plain(net);
}

/// Branches of a 1×1 and a 3×3 convolution concatenated with their input, over 40 channels of
/// 30×30 (36,000 values a sample: a concatenation's copy in several pieces), two samples.
fn concat_branches() -> Net {
    let mut b = NetBuilder::new("concat_branches", vec![40, 30, 30]).expect("builder");
    let x = b.input();
    let a = b.add("a", conv([40, 24], 1, [1, 0], 1), &[x]).expect("a");
    let c = b.add("c", conv3x3(40, 1, 1, 1), &[x]).expect("c");
    b.add("cat", LayerKind::Concat, &[a, x, c]).expect("concat");
    b.build().expect("net")
}

/// The fast kernels' concatenation against the plain one on [`concat_branches`], a batch of
/// two samples, each sample's channels in the inputs' order.
pub fn concat_batch_fast_equals_plain() {
    let net = concat_branches();
    let weights = Weights::seeded(&net, 9);
    let device = Backend::Flex.device().expect("flex");
    let plain = Model::with_kernels(net.clone(), weights.clone(), &device, Kernels::Plain)
        .expect("plain model");
    let fast = Model::with_kernels(net.clone(), weights, &device, Kernels::Fast).expect("fast");
    let x = input(&net, 2, &mut Lcg(11));
    let want = run(&plain, None, &x);
    assert_eq!(want.shape(), &[2, 104, 30, 30]);
    let got = run(&fast, None, &x);
    let diff = relative_difference(&got, &want);
    assert!(diff <= TOLERANCE, "concatenation differs by {diff}");
}
