//! VGG-16 (configuration "D", no batch norm) as in `torchvision.models.vgg16`.

use super::{Conv, adaptive_avg_pool, conv, dropout, flatten, linear, max_pool, relu};
use crate::error::ModelError;
use crate::layer::Shape;
use crate::net::{Net, NetBuilder};

/// Configuration "D": output channels of each 3×3 convolution, 0 for a 2×2 max pool.
const CFG_D: [usize; 18] = [
    64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
];

/// torchvision's VGG-16 (138,357,544 parameters). A chain of 39 layers after the input.
pub fn vgg16(input: Shape) -> Result<Net, ModelError> {
    let mut b = NetBuilder::new("vgg16", input)?;
    let mut x = b.input();
    let mut i = 0;
    for out in CFG_D {
        if out == 0 {
            x = max_pool(&mut b, &format!("features.{i}"), x, 2, 2, 0, false)?;
            i += 1;
        } else {
            x = conv(
                &mut b,
                &format!("features.{i}"),
                x,
                Conv::new(out, 3).padding(1),
            )?;
            x = relu(&mut b, &format!("features.{}", i + 1), x)?;
            i += 2;
        }
    }
    x = adaptive_avg_pool(&mut b, "avgpool", x, 7)?;
    x = flatten(&mut b, x)?;
    x = linear(&mut b, "classifier.0", x, 4096)?;
    x = relu(&mut b, "classifier.1", x)?;
    x = dropout(&mut b, "classifier.2", x, 0.5)?;
    x = linear(&mut b, "classifier.3", x, 4096)?;
    x = relu(&mut b, "classifier.4", x)?;
    x = dropout(&mut b, "classifier.5", x, 0.5)?;
    linear(&mut b, "classifier.6", x, 1000)?;
    b.build()
}
