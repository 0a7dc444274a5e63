//! Putting a network's weights on the device, each layer's laid out for the kernel that runs it
//! ([`Params`]), once, when a [`Model`](super::Model) is made: batch norms folded into their
//! convolutions, convolution and linear weights packed for the crate's own kernels or uploaded
//! for Burn's.

use burn::tensor::{Device, Tensor, TensorData};

use super::chains::blocked_on_this_path;
use crate::error::ModelError;
use crate::fusion::{FusedActivation, Fusion};
use crate::kernels::{
    Activation, BlockedDepthwise, BlockedPointwise, ConvShape, DenseLinear, DepthwiseConv,
    PackedConv, ShapeError,
};
use crate::layer::LayerKind;
use crate::net::Net;
use crate::tensor::HostTensor;
use crate::weights::Weights;

/// A layer's weights, laid out for the kernel that runs it: on the device for Burn's, in host
/// memory for the crate's own.
#[derive(Debug, Clone)]
pub(super) enum Params {
    /// No weights: the layer has none, or runs inside the convolution it follows.
    None,
    /// A convolution by Burn's `conv2d`, then its fused activation.
    Conv {
        weight: Tensor<4>,
        bias: Option<Tensor<1>>,
        activation: Activation,
    },
    /// A dense convolution by the crate's own kernel (flex only).
    Packed(PackedConv),
    /// A depthwise convolution by the crate's own kernel (flex only).
    Depthwise(DepthwiseConv),
    /// A 1×1 convolution of a blocked chain (see `chains`) by the crate's own kernel.
    BlockedPointwise(BlockedPointwise),
    /// A depthwise convolution of a blocked chain by the crate's own kernel.
    BlockedDepthwise(BlockedDepthwise),
    /// A linear layer by the crate's own kernel (flex only).
    Dense(DenseLinear),
    /// A linear layer by Burn's `linear` (the plain kernels, and backends other than flex),
    /// which takes the weight as `[in, out]`, the transpose of PyTorch's. A large weight is split
    /// by output columns into one block per thread (see [`LINEAR_SPLIT_BYTES`]).
    Linear { blocks: Vec<LinearBlock> },
    /// Inference batch norm folded to `x * scale + shift`, both `[1, C, 1, 1]`.
    Norm { scale: Tensor<4>, shift: Tensor<4> },
}

/// Every node's [`Params`], in node order, from `weights` (already checked against `net`): the
/// layers `fusion` absorbs get none, and with `own_kernels` the layers that have one are packed
/// for the crate's own kernels.
pub(super) fn prepare(
    net: &Net,
    weights: Weights,
    fusion: &Fusion,
    device: &Device,
    own_kernels: bool,
) -> Result<Vec<Params>, ModelError> {
    let blocked = if own_kernels {
        blocked_on_this_path(net, fusion)
    } else {
        vec![false; net.len()]
    };
    let mut loader = Loader {
        net,
        weights,
        fusion,
        device,
        own_kernels,
        blocked,
    };
    let mut params = Vec::with_capacity(net.len());
    for v in 0..net.len() {
        params.push(loader.params(v)?);
    }
    Ok(params)
}

/// What preparing the layers needs: the network, the weights not yet taken, and where and how
/// the layers will run.
struct Loader<'a> {
    net: &'a Net,
    weights: Weights,
    fusion: &'a Fusion,
    device: &'a Device,
    /// Whether layers that have one run on the crate's own kernels (fast kernels on flex).
    own_kernels: bool,
    /// For each node, whether it is a convolution of a blocked chain.
    blocked: Vec<bool>,
}

impl Loader<'_> {
    /// Takes the tensor under `key` out of the weights.
    fn take(&mut self, key: &str) -> Result<HostTensor, ModelError> {
        self.weights.take(key).ok_or_else(|| ModelError::Weights {
            net: self.net.name().to_string(),
            details: format!("missing {key}"),
        })
    }

    /// Takes the bias under `{id}.bias` if the layer has one, else `outputs` zeros.
    fn bias_or_zeros(
        &mut self,
        id: &str,
        has_bias: bool,
        outputs: usize,
    ) -> Result<Vec<f32>, ModelError> {
        Ok(if has_bias {
            self.take(&format!("{id}.bias"))?.into_parts().1
        } else {
            vec![0.0; outputs]
        })
    }

    /// Node `v`'s parameters.
    fn params(&mut self, v: usize) -> Result<Params, ModelError> {
        let net = self.net;
        let id = net.nodes()[v].id();
        let kind = &net.nodes()[v].spec().kind;
        Ok(match *kind {
            _ if self.fusion.is_absorbed(v) => Params::None,
            LayerKind::Conv2d { bias, .. } => match ConvShape::of_layer(kind) {
                Some((shape, groups)) => self.conv(v, shape, groups, bias)?,
                None => Params::None,
            },
            LayerKind::Linear {
                in_features,
                out_features,
                bias,
            } if self.own_kernels => self.dense(id, in_features, out_features, bias)?,
            LayerKind::Linear { bias, .. } => self.linear(id, bias)?,
            LayerKind::BatchNorm2d { num_features, eps } => self.norm(id, num_features, eps)?,
            _ => Params::None,
        })
    }

    /// Convolution `v`'s parameters, with the batch norm folded into it (if any) and its fused
    /// activation: for the crate's own dense or depthwise kernel where one runs it, else for
    /// Burn's `conv2d`.
    fn conv(
        &mut self,
        v: usize,
        shape: ConvShape,
        groups: usize,
        has_bias: bool,
    ) -> Result<Params, ModelError> {
        let node = &self.net.nodes()[v];
        let id = node.id();
        let (dims, mut weight) = self.take(&format!("{id}.weight"))?.into_parts();
        let mut bias = self.bias_or_zeros(id, has_bias, shape.out_channels)?;
        self.fold_norm(v, &mut weight, &mut bias)?;
        let activation = self.fusion.activation_of(v).into();
        let output = match node.spec().output_shape[..] {
            [_, ho, wo] => [ho, wo],
            _ => [0, 0],
        };
        let packing = |e: ShapeError| ModelError::TensorData(format!("`{id}`: {}", e.0));
        let own = self.own_kernels;
        Ok(if self.blocked[v] && groups == 1 {
            Params::BlockedPointwise(
                BlockedPointwise::new(
                    [shape.in_channels, shape.out_channels],
                    &weight,
                    &bias,
                    activation,
                )
                .map_err(packing)?,
            )
        } else if self.blocked[v] {
            Params::BlockedDepthwise(
                BlockedDepthwise::new(shape, &weight, &bias, activation).map_err(packing)?,
            )
        } else if own && groups == 1 {
            Params::Packed(
                PackedConv::new(shape, weight, bias, activation, output).map_err(packing)?,
            )
        } else if own && groups == shape.in_channels && groups == shape.out_channels {
            Params::Depthwise(DepthwiseConv::new(shape, weight, bias, activation).map_err(packing)?)
        } else {
            Params::Conv {
                weight: upload(HostTensor::new(dims, weight)?, self.device),
                bias: Some(upload(
                    HostTensor::new(vec![shape.out_channels], bias)?,
                    self.device,
                )),
                activation,
            }
        })
    }

    /// Folds the batch norm that the fusion folds into convolution `v`, if any, into the
    /// convolution's `weight` and `bias`.
    fn fold_norm(
        &mut self,
        v: usize,
        weight: &mut [f32],
        bias: &mut [f32],
    ) -> Result<(), ModelError> {
        let Some(bn) = self.fusion.norm_of(v) else {
            return Ok(());
        };
        let net = self.net;
        let bn = &net.nodes()[bn];
        let LayerKind::BatchNorm2d { eps, .. } = bn.spec().kind else {
            return Err(ModelError::Backend(format!(
                "`{}` is folded into `{}` but is not a batch norm",
                bn.id(),
                net.nodes()[v].id()
            )));
        };
        self.norm_transform(bn.id(), eps)?.fold(weight, bias);
        Ok(())
    }

    /// A linear layer's parameters for the crate's own kernel.
    fn dense(
        &mut self,
        id: &str,
        in_features: usize,
        out_features: usize,
        has_bias: bool,
    ) -> Result<Params, ModelError> {
        let weight = self.take(&format!("{id}.weight"))?.into_parts().1;
        let bias = self.bias_or_zeros(id, has_bias, out_features)?;
        Ok(Params::Dense(
            DenseLinear::new(in_features, weight, bias)
                .map_err(|e| ModelError::TensorData(format!("`{id}`: {}", e.0)))?,
        ))
    }

    /// A linear layer's parameters for Burn's `linear`.
    fn linear(&mut self, id: &str, has_bias: bool) -> Result<Params, ModelError> {
        let weight = self.take(&format!("{id}.weight"))?;
        let bias = if has_bias {
            Some(self.take(&format!("{id}.bias"))?)
        } else {
            None
        };
        Ok(Params::Linear {
            blocks: linear_blocks(weight, bias, self.device)?,
        })
    }

    /// A batch norm's parameters, as its inference transform.
    fn norm(&mut self, id: &str, num_features: usize, eps: f64) -> Result<Params, ModelError> {
        let norm = self.norm_transform(id, eps)?;
        let shape = [1, num_features, 1, 1];
        Ok(Params::Norm {
            scale: Tensor::from_data(TensorData::new(norm.scale, shape), self.device),
            shift: Tensor::from_data(TensorData::new(norm.shift, shape), self.device),
        })
    }

    /// Takes the batch norm `id`'s four tensors out of the weights, as its inference transform.
    fn norm_transform(&mut self, id: &str, eps: f64) -> Result<NormTransform, ModelError> {
        let gamma = self.take(&format!("{id}.weight"))?.into_parts().1;
        let beta = self.take(&format!("{id}.bias"))?.into_parts().1;
        let mean = self.take(&format!("{id}.running_mean"))?.into_parts().1;
        let var = self.take(&format!("{id}.running_var"))?.into_parts().1;
        Ok(NormTransform::new(&gamma, &beta, &mean, &var, eps))
    }
}

fn upload<const D: usize>(host: HostTensor, device: &Device) -> Tensor<D> {
    let (shape, data) = host.into_parts();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// Linear weights at least this large are split across threads. A batch-1 linear layer reads its
/// whole weight once, so it runs at memory speed, and gemm runs a single-row product on one
/// thread; two threads reading halves draw more bandwidth (VGG16's 411 MB fc6 alone: 31 ms on
/// one thread, 18.6 ms on two; its 16 MB fc8: 2.3–2.5 ms on one, 1.2–1.6 on two).
pub(super) const LINEAR_SPLIT_BYTES: usize = 4 << 20;

/// Some output columns of a linear layer: the weight `[in, cols]` and the bias `[cols]`.
#[derive(Debug, Clone)]
pub(super) struct LinearBlock {
    pub(super) weight: Tensor<2>,
    pub(super) bias: Option<Tensor<1>>,
}

/// PyTorch's `[out, in]` weight (and `[out]` bias) as blocks of output columns on `device`:
/// one block, or one per thread when the weight is at least [`LINEAR_SPLIT_BYTES`]. Each block
/// is `[in, cols]`, laid out contiguously so that every forward pass reads it in order rather than
/// through a strided view.
fn linear_blocks(
    weight: HostTensor,
    bias: Option<HostTensor>,
    device: &Device,
) -> Result<Vec<LinearBlock>, ModelError> {
    let (shape, data) = weight.into_parts();
    let [rows, cols] = shape[..] else {
        return Err(ModelError::TensorData(format!(
            "a linear weight must be a matrix, not shape {shape:?}"
        )));
    };
    let parts = if data.len() * 4 >= LINEAR_SPLIT_BYTES {
        rayon::current_num_threads().clamp(1, rows)
    } else {
        1
    };
    let bias = bias.map(|b| b.into_parts().1);
    let per = rows.div_ceil(parts);
    (0..rows)
        .step_by(per)
        .map(|start| {
            let end = (start + per).min(rows);
            let mut block = Vec::with_capacity((end - start) * cols);
            for c in 0..cols {
                block.extend((start..end).map(|r| data[r * cols + c]));
            }
            Ok(LinearBlock {
                weight: upload(HostTensor::new(vec![cols, end - start], block)?, device),
                bias: match &bias {
                    Some(b) => Some(upload(
                        HostTensor::new(vec![end - start], b[start..end].to_vec())?,
                        device,
                    )),
                    None => None,
                },
            })
        })
        .collect()
}

/// A batch norm's inference transform `x * scale + shift`, per channel.
struct NormTransform {
    scale: Vec<f32>,
    shift: Vec<f32>,
}

impl NormTransform {
    /// The transform of a batch norm with weight `gamma`, bias `beta`, running mean `mean` and
    /// running variance `var`.
    fn new(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], eps: f64) -> NormTransform {
        let scale: Vec<f32> = gamma
            .iter()
            .zip(var)
            .map(|(g, v)| g / (v + eps as f32).sqrt())
            .collect();
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        NormTransform { scale, shift }
    }

    /// Folds the transform into a convolution's `[out, ...]` weight and `[out]` bias.
    fn fold(&self, weight: &mut [f32], bias: &mut [f32]) {
        let per_out = weight.len() / self.scale.len().max(1);
        for (c, (w, b)) in weight.chunks_mut(per_out).zip(bias.iter_mut()).enumerate() {
            w.iter_mut().for_each(|w| *w *= self.scale[c]);
            *b = *b * self.scale[c] + self.shift[c];
        }
    }
}

impl From<FusedActivation> for Activation {
    fn from(a: FusedActivation) -> Activation {
        match a {
            FusedActivation::Identity => Activation::Identity,
            FusedActivation::Relu => Activation::Relu,
            FusedActivation::Relu6 => Activation::Relu6,
        }
    }
}
