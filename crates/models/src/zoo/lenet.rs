//! LeNet-5 (LeCun et al., 1998) on a 1×32×32 input.

use super::{Conv, conv, flatten, linear, relu};
use crate::error::ModelError;
use crate::layer::{LayerKind, Shape};
use crate::net::{Net, NetBuilder};

/// Classic LeNet-5: C1 conv 6@5×5, S2 2×2 subsampling, C3 conv 16@5×5, S4, C5 120, F6 84,
/// output 10. Subsampling is average pooling and the squashing function is ReLU; C3 connects to
/// all six S2 maps. 61,706 parameters.
pub fn lenet(input: Shape) -> Result<Net, ModelError> {
    let mut b = NetBuilder::new("lenet", input)?;
    let subsample = |b: &mut NetBuilder, id: &str, x| {
        let kind = LayerKind::AvgPool2d {
            kernel_size: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            ceil_mode: false,
            count_include_pad: true,
        };
        b.add(id, kind, &[x])
    };
    let mut x = b.input();
    x = conv(&mut b, "features.0", x, Conv::new(6, 5))?;
    x = relu(&mut b, "features.1", x)?;
    x = subsample(&mut b, "features.2", x)?;
    x = conv(&mut b, "features.3", x, Conv::new(16, 5))?;
    x = relu(&mut b, "features.4", x)?;
    x = subsample(&mut b, "features.5", x)?;
    x = flatten(&mut b, x)?;
    x = linear(&mut b, "classifier.0", x, 120)?;
    x = relu(&mut b, "classifier.1", x)?;
    x = linear(&mut b, "classifier.2", x, 84)?;
    x = relu(&mut b, "classifier.3", x)?;
    linear(&mut b, "classifier.4", x, 10)?;
    b.build()
}
