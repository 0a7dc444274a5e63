//! ResNet-18 and ResNet-50 as in `torchvision.models` (v1.5: the stride sits on the 3×3 conv).

use super::{Conv, adaptive_avg_pool, batch_norm, channels, conv, flatten, linear, max_pool, relu};
use crate::error::ModelError;
use crate::layer::{LayerKind, Shape};
use crate::net::{Net, NetBuilder};

const BN_EPS: f64 = 1e-5;

#[derive(Clone, Copy)]
enum Block {
    /// Two 3×3 convolutions (expansion 1).
    Basic,
    /// 1×1, 3×3, 1×1 convolutions (expansion 4).
    Bottleneck,
}

/// torchvision's ResNet-18 (11,689,512 parameters).
pub fn resnet18(input: Shape) -> Result<Net, ModelError> {
    resnet("resnet18", input, Block::Basic, [2, 2, 2, 2])
}

/// torchvision's ResNet-50 (25,557,032 parameters).
pub fn resnet50(input: Shape) -> Result<Net, ModelError> {
    resnet("resnet50", input, Block::Bottleneck, [3, 4, 6, 3])
}

fn resnet(name: &str, input: Shape, block: Block, layers: [usize; 4]) -> Result<Net, ModelError> {
    let mut b = NetBuilder::new(name, input)?;
    let mut x = b.input();
    x = conv(
        &mut b,
        "conv1",
        x,
        Conv::new(64, 7).stride(2).padding(3).no_bias(),
    )?;
    x = batch_norm(&mut b, "bn1", x, BN_EPS)?;
    x = relu(&mut b, "relu", x)?;
    x = max_pool(&mut b, "maxpool", x, 3, 2, 1, false)?;
    for (l, (&blocks, planes)) in layers.iter().zip([64, 128, 256, 512]).enumerate() {
        for i in 0..blocks {
            let stride = if i == 0 && l > 0 { 2 } else { 1 };
            let prefix = format!("layer{}.{i}", l + 1);
            x = match block {
                Block::Basic => basic_block(&mut b, &prefix, x, planes, stride)?,
                Block::Bottleneck => bottleneck(&mut b, &prefix, x, planes, stride)?,
            };
        }
    }
    x = adaptive_avg_pool(&mut b, "avgpool", x, 1)?;
    x = flatten(&mut b, x)?;
    linear(&mut b, "fc", x, 1000)?;
    b.build()
}

/// A conv without bias followed by its batch norm: `{p}.conv{i}` and `{p}.bn{i}`.
fn conv_bn(b: &mut NetBuilder, p: &str, i: usize, x: usize, c: Conv) -> Result<usize, ModelError> {
    let y = conv(b, &format!("{p}.conv{i}"), x, c.no_bias())?;
    batch_norm(b, &format!("{p}.bn{i}"), y, BN_EPS)
}

/// The shortcut: the input itself, or `{p}.downsample.0/1` (1×1 conv, BN) when the shape changes.
fn shortcut(
    b: &mut NetBuilder,
    p: &str,
    x: usize,
    out: usize,
    stride: usize,
) -> Result<usize, ModelError> {
    if stride == 1 && channels(b, x) == out {
        return Ok(x);
    }
    let y = conv(
        b,
        &format!("{p}.downsample.0"),
        x,
        Conv::new(out, 1).stride(stride).no_bias(),
    )?;
    batch_norm(b, &format!("{p}.downsample.1"), y, BN_EPS)
}

/// `{p}.add` sums the block's branch and its shortcut; `{p}.relu{last}` follows.
fn residual(
    b: &mut NetBuilder,
    p: &str,
    branch: usize,
    identity: usize,
    last_relu: usize,
) -> Result<usize, ModelError> {
    let sum = b.add(format!("{p}.add"), LayerKind::Add, &[branch, identity])?;
    relu(b, &format!("{p}.relu{last_relu}"), sum)
}

fn basic_block(
    b: &mut NetBuilder,
    p: &str,
    x: usize,
    planes: usize,
    stride: usize,
) -> Result<usize, ModelError> {
    let mut y = conv_bn(b, p, 1, x, Conv::new(planes, 3).stride(stride).padding(1))?;
    y = relu(b, &format!("{p}.relu1"), y)?;
    y = conv_bn(b, p, 2, y, Conv::new(planes, 3).padding(1))?;
    let identity = shortcut(b, p, x, planes, stride)?;
    residual(b, p, y, identity, 2)
}

fn bottleneck(
    b: &mut NetBuilder,
    p: &str,
    x: usize,
    planes: usize,
    stride: usize,
) -> Result<usize, ModelError> {
    let mut y = conv_bn(b, p, 1, x, Conv::new(planes, 1))?;
    y = relu(b, &format!("{p}.relu1"), y)?;
    y = conv_bn(b, p, 2, y, Conv::new(planes, 3).stride(stride).padding(1))?;
    y = relu(b, &format!("{p}.relu2"), y)?;
    y = conv_bn(b, p, 3, y, Conv::new(planes * 4, 1))?;
    let identity = shortcut(b, p, x, planes * 4, stride)?;
    residual(b, p, y, identity, 3)
}
