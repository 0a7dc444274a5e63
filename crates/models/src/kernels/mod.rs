//! The crate's own CPU kernels, used on the flex backend for the layers that dominate a forward
//! pass (see [`crate::Kernels`]). They read and write plain `f32` slices; `Model` hands them a
//! tensor's host data (free on flex for a tensor nobody else holds) and wraps their output.

use std::fmt;
use std::str::FromStr;

use crate::error::ModelError;

mod conv;
mod depthwise;
mod gemm;
mod linear;
mod pool;
mod scratch;
mod winograd;

pub(crate) use conv::{Activation, ConvShape, PackedConv};
pub(crate) use depthwise::DepthwiseConv;
pub(crate) use gemm::ShapeError;
pub(crate) use linear::DenseLinear;
pub(crate) use pool::{PoolWindow, max_pool2d};

/// Which kernels a [`Model`](crate::Model) runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kernels {
    /// The default: batch norms folded into their convolutions and activations fused into
    /// them (see [`Fusion`](crate::Fusion)), and on the flex backend the crate's own kernels
    /// for dense and depthwise convolutions, linear layers and max pooling. Other backends run
    /// the fused groups with Burn's own operations.
    #[default]
    Fast,
    /// Every node by itself, with Burn's own operations: the reference the fast path is tested
    /// against.
    Plain,
}

impl Kernels {
    /// Both choices.
    pub const ALL: [Kernels; 2] = [Kernels::Fast, Kernels::Plain];

    /// The name the CLIs accept.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Fast => "fast",
            Kernels::Plain => "plain",
        }
    }
}

impl fmt::Display for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kernels {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Kernels, ModelError> {
        Kernels::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ModelError::UnknownName {
                what: "kernels",
                name: s.to_string(),
                choices: Kernels::ALL.map(Kernels::name).join(", "),
            })
    }
}
