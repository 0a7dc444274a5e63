//! MobileNetV2 (width 1.0) as in `torchvision.models.mobilenet_v2`.

use super::{Conv, adaptive_avg_pool, batch_norm, channels, conv, dropout, flatten, linear};
use crate::error::ModelError;
use crate::layer::{LayerKind, Shape};
use crate::net::{Net, NetBuilder};

const BN_EPS: f64 = 1e-5;

/// Inverted residual settings: expansion t, output channels c, repeats n, first stride s.
const SETTINGS: [[usize; 4]; 7] = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
];

/// torchvision's MobileNetV2 (3,504,872 parameters).
pub fn mobilenet_v2(input: Shape) -> Result<Net, ModelError> {
    let mut b = NetBuilder::new("mobilenet_v2", input)?;
    let mut x = b.input();
    x = conv_bn_relu6(
        &mut b,
        "features.0",
        x,
        Conv::new(32, 3).stride(2).padding(1),
    )?;
    let mut index = 1;
    for [t, c, n, s] in SETTINGS {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            x = inverted_residual(&mut b, &format!("features.{index}"), x, c, stride, t)?;
            index += 1;
        }
    }
    x = conv_bn_relu6(&mut b, &format!("features.{index}"), x, Conv::new(1280, 1))?;
    x = adaptive_avg_pool(&mut b, "avgpool", x, 1)?;
    x = flatten(&mut b, x)?;
    x = dropout(&mut b, "classifier.0", x, 0.2)?;
    linear(&mut b, "classifier.1", x, 1000)?;
    b.build()
}

/// torchvision's `Conv2dNormActivation`: `{p}.0` conv (no bias), `{p}.1` BN, `{p}.2` ReLU6.
fn conv_bn_relu6(b: &mut NetBuilder, p: &str, x: usize, c: Conv) -> Result<usize, ModelError> {
    let y = conv(b, &format!("{p}.0"), x, c.no_bias())?;
    let y = batch_norm(b, &format!("{p}.1"), y, BN_EPS)?;
    b.add(format!("{p}.2"), LayerKind::Relu6, &[y])
}

/// `{p}.conv.*`: optional 1×1 expansion, 3×3 depthwise, 1×1 linear projection and its BN;
/// `{p}.add` adds the input back when stride is 1 and the channel count is kept.
fn inverted_residual(
    b: &mut NetBuilder,
    p: &str,
    x: usize,
    out: usize,
    stride: usize,
    expand: usize,
) -> Result<usize, ModelError> {
    let inp = channels(b, x);
    let hidden = inp * expand;
    let mut y = x;
    let mut k = 0;
    if expand != 1 {
        y = conv_bn_relu6(b, &format!("{p}.conv.0"), y, Conv::new(hidden, 1))?;
        k = 1;
    }
    let depthwise = Conv::new(hidden, 3)
        .stride(stride)
        .padding(1)
        .groups(hidden);
    y = conv_bn_relu6(b, &format!("{p}.conv.{k}"), y, depthwise)?;
    y = conv(
        b,
        &format!("{p}.conv.{}", k + 1),
        y,
        Conv::new(out, 1).no_bias(),
    )?;
    y = batch_norm(b, &format!("{p}.conv.{}", k + 2), y, BN_EPS)?;
    if stride == 1 && inp == out {
        y = b.add(format!("{p}.add"), LayerKind::Add, &[x, y])?;
    }
    Ok(y)
}
