//! AlexNet as in `torchvision.models.alexnet`.

use super::{Conv, adaptive_avg_pool, conv, dropout, flatten, linear, max_pool, relu};
use crate::error::ModelError;
use crate::layer::Shape;
use crate::net::{Net, NetBuilder};

/// torchvision's AlexNet (61,100,840 parameters). A chain of 23 layers after the input.
pub fn alexnet(input: Shape) -> Result<Net, ModelError> {
    let mut b = NetBuilder::new("alexnet", input)?;
    let mut x = b.input();
    x = conv(
        &mut b,
        "features.0",
        x,
        Conv::new(64, 11).stride(4).padding(2),
    )?;
    x = relu(&mut b, "features.1", x)?;
    x = max_pool(&mut b, "features.2", x, 3, 2, 0, false)?;
    x = conv(&mut b, "features.3", x, Conv::new(192, 5).padding(2))?;
    x = relu(&mut b, "features.4", x)?;
    x = max_pool(&mut b, "features.5", x, 3, 2, 0, false)?;
    x = conv(&mut b, "features.6", x, Conv::new(384, 3).padding(1))?;
    x = relu(&mut b, "features.7", x)?;
    x = conv(&mut b, "features.8", x, Conv::new(256, 3).padding(1))?;
    x = relu(&mut b, "features.9", x)?;
    x = conv(&mut b, "features.10", x, Conv::new(256, 3).padding(1))?;
    x = relu(&mut b, "features.11", x)?;
    x = max_pool(&mut b, "features.12", x, 3, 2, 0, false)?;
    x = adaptive_avg_pool(&mut b, "avgpool", x, 6)?;
    x = flatten(&mut b, x)?;
    x = dropout(&mut b, "classifier.0", x, 0.5)?;
    x = linear(&mut b, "classifier.1", x, 4096)?;
    x = relu(&mut b, "classifier.2", x)?;
    x = dropout(&mut b, "classifier.3", x, 0.5)?;
    x = linear(&mut b, "classifier.4", x, 4096)?;
    x = relu(&mut b, "classifier.5", x)?;
    linear(&mut b, "classifier.6", x, 1000)?;
    b.build()
}
