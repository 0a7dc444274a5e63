//! GoogLeNet (Inception v1) as in `torchvision.models.googlenet(aux_logits=False,
//! transform_input=False)`.

use super::{Conv, adaptive_avg_pool, batch_norm, conv, dropout, flatten, linear, max_pool, relu};
use crate::error::ModelError;
use crate::layer::{LayerKind, Shape};
use crate::net::{Net, NetBuilder};

/// torchvision's `BasicConv2d` uses a BN epsilon of 0.001.
const BN_EPS: f64 = 1e-3;

/// An inception block's widths: 1×1, 3×3 reduce, 3×3, "5×5" reduce, "5×5" (torchvision uses a
/// 3×3 kernel there), pool projection.
type Widths = [usize; 6];

/// torchvision's GoogLeNet without auxiliary classifiers (6,624,904 parameters).
pub fn googlenet(input: Shape) -> Result<Net, ModelError> {
    let mut b = NetBuilder::new("googlenet", input)?;
    let mut x = b.input();
    x = basic_conv(&mut b, "conv1", x, Conv::new(64, 7).stride(2).padding(3))?;
    x = max_pool(&mut b, "maxpool1", x, 3, 2, 0, true)?;
    x = basic_conv(&mut b, "conv2", x, Conv::new(64, 1))?;
    x = basic_conv(&mut b, "conv3", x, Conv::new(192, 3).padding(1))?;
    x = max_pool(&mut b, "maxpool2", x, 3, 2, 0, true)?;
    x = inception(&mut b, "inception3a", x, [64, 96, 128, 16, 32, 32])?;
    x = inception(&mut b, "inception3b", x, [128, 128, 192, 32, 96, 64])?;
    x = max_pool(&mut b, "maxpool3", x, 3, 2, 0, true)?;
    x = inception(&mut b, "inception4a", x, [192, 96, 208, 16, 48, 64])?;
    x = inception(&mut b, "inception4b", x, [160, 112, 224, 24, 64, 64])?;
    x = inception(&mut b, "inception4c", x, [128, 128, 256, 24, 64, 64])?;
    x = inception(&mut b, "inception4d", x, [112, 144, 288, 32, 64, 64])?;
    x = inception(&mut b, "inception4e", x, [256, 160, 320, 32, 128, 128])?;
    x = max_pool(&mut b, "maxpool4", x, 2, 2, 0, true)?;
    x = inception(&mut b, "inception5a", x, [256, 160, 320, 32, 128, 128])?;
    x = inception(&mut b, "inception5b", x, [384, 192, 384, 48, 128, 128])?;
    x = adaptive_avg_pool(&mut b, "avgpool", x, 1)?;
    x = flatten(&mut b, x)?;
    x = dropout(&mut b, "dropout", x, 0.2)?;
    linear(&mut b, "fc", x, 1000)?;
    b.build()
}

/// torchvision's `BasicConv2d`: `{p}.conv` (no bias), `{p}.bn`, then a functional ReLU `{p}.relu`.
fn basic_conv(b: &mut NetBuilder, p: &str, x: usize, c: Conv) -> Result<usize, ModelError> {
    let y = conv(b, &format!("{p}.conv"), x, c.no_bias())?;
    let y = batch_norm(b, &format!("{p}.bn"), y, BN_EPS)?;
    relu(b, &format!("{p}.relu"), y)
}

/// Four branches concatenated along channels as `{p}.concat`.
fn inception(b: &mut NetBuilder, p: &str, x: usize, w: Widths) -> Result<usize, ModelError> {
    let [ch1, ch3_reduce, ch3, ch5_reduce, ch5, pool_proj] = w;
    let b1 = basic_conv(b, &format!("{p}.branch1"), x, Conv::new(ch1, 1))?;
    let b2 = basic_conv(b, &format!("{p}.branch2.0"), x, Conv::new(ch3_reduce, 1))?;
    let b2 = basic_conv(
        b,
        &format!("{p}.branch2.1"),
        b2,
        Conv::new(ch3, 3).padding(1),
    )?;
    let b3 = basic_conv(b, &format!("{p}.branch3.0"), x, Conv::new(ch5_reduce, 1))?;
    let b3 = basic_conv(
        b,
        &format!("{p}.branch3.1"),
        b3,
        Conv::new(ch5, 3).padding(1),
    )?;
    let b4 = max_pool(b, &format!("{p}.branch4.0"), x, 3, 1, 1, true)?;
    let b4 = basic_conv(b, &format!("{p}.branch4.1"), b4, Conv::new(pool_proj, 1))?;
    b.add(format!("{p}.concat"), LayerKind::Concat, &[b1, b2, b3, b4])
}
