//! Running one node: an addition or concatenation of its inputs, or a layer on its one input by
//! its prepared [`Params`], with Burn's operations or with the crate's own kernels on the
//! tensor's host data.

use std::sync::Arc;

use burn::tensor::activation::relu;
use burn::tensor::module::{adaptive_avg_pool2d, avg_pool2d, conv2d, linear, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use super::Model;
use super::input::{Input, elements, recycle, recycle_blocked};
use super::prepare::{LinearBlock, Params};
use crate::error::ModelError;
use crate::kernels::{
    Activation, AvgWindow, ShapeError, Window, add_into, avg_pool2d as avg_pool,
    max_pool2d as max_pool, plane_means, recycled,
};
use crate::layer::LayerKind;
use crate::net::Node;
use crate::tensor::Value;

/// Values a piece of a concatenation's copy holds at most (64 KiB): a share for each thread of
/// GoogLeNet's smallest (0.4 MB), few enough pieces that handing them out costs little.
const CONCAT_PIECE: usize = 16 << 10;

impl Model {
    /// Runs node `v` on its inputs (in the node's input order) and returns its output: blocked
    /// maps from a convolution of a blocked chain, else a value.
    pub(super) fn apply(&self, v: usize, inputs: Vec<Input>) -> Result<Input, ModelError> {
        let node = &self.net.nodes()[v];
        let count = inputs.len();
        let wrong = || {
            ModelError::Backend(format!(
                "node `{}` ({}) was handed {count} input(s) of the wrong number or rank",
                node.id(),
                node.spec().kind.name(),
            ))
        };
        let kind = &node.spec().kind;
        if matches!(kind, LayerKind::Add) {
            let activation = self.fusion.activation_of(v).into();
            let sum = self.add(node.id(), inputs, activation)?.ok_or_else(wrong)?;
            return Ok(Input::Value(sum));
        }
        if matches!(kind, LayerKind::Concat) {
            let maps = self.concat(node.id(), inputs)?.ok_or_else(wrong)?;
            return Ok(Input::Value(maps));
        }
        let [x] = <[Input; 1]>::try_from(inputs).map_err(|_| wrong())?;
        if self.fusion.is_absorbed(v) {
            // The convolution this node belongs to has already computed its output.
            return Ok(x);
        }
        self.apply_layer(node, &self.params[v], x)?
            .ok_or_else(wrong)
    }

    /// Runs a single-input layer, `node` with parameters `params`, on `x`; `None` when `x` (or
    /// `params`) is not of the kind the layer takes.
    fn apply_layer(
        &self,
        node: &Node,
        params: &Params,
        x: Input,
    ) -> Result<Option<Input>, ModelError> {
        let kind = &node.spec().kind;
        if x.is_map() {
            match kind {
                LayerKind::Conv2d { .. } => return self.conv(node, params, x),
                LayerKind::MaxPool2d { .. }
                | LayerKind::AvgPool2d { .. }
                | LayerKind::AdaptiveAvgPool2d { .. } => {
                    return Ok(self.pool(node, x)?.map(|y| Input::Value(Value::Map(y))));
                }
                _ => {}
            }
        }
        let y = match (kind, x.into_value(&self.device)?) {
            (LayerKind::Input | LayerKind::Dropout { .. }, x) => Some(x),
            (LayerKind::Linear { .. }, Value::Vector(x)) => {
                self.linear(node, params, x)?.map(Value::Vector)
            }
            (LayerKind::BatchNorm2d { .. }, Value::Map(x)) => batch_norm(params, x).map(Value::Map),
            (LayerKind::Relu, Value::Map(x)) => Some(Value::Map(relu(x))),
            (LayerKind::Relu, Value::Vector(x)) => Some(Value::Vector(relu(x))),
            (LayerKind::Relu6, Value::Map(x)) => Some(Value::Map(x.clamp(0.0, 6.0))),
            (LayerKind::Relu6, Value::Vector(x)) => Some(Value::Vector(x.clamp(0.0, 6.0))),
            (LayerKind::Flatten, Value::Map(x)) => Some(Value::Vector(x.flatten::<2>(1, 3))),
            (LayerKind::Flatten, vector @ Value::Vector(_)) => Some(vector),
            _ => None,
        };
        Ok(y.map(Input::Value))
    }

    /// Runs convolution `node` on `x` with the kernel its `params` were prepared for; `None`
    /// when they are not a convolution's.
    fn conv(&self, node: &Node, params: &Params, x: Input) -> Result<Option<Input>, ModelError> {
        let out = &node.spec().output_shape;
        let id = node.id();
        let map = |y: Tensor<4>| Some(Input::Value(Value::Map(y)));
        Ok(match (&node.spec().kind, params) {
            (_, Params::BlockedDepthwise(conv)) => {
                let &[_, ho, wo] = &out[..] else {
                    return Ok(None);
                };
                let x = x.into_blocked(id)?;
                let y = conv
                    .forward(&x, [ho, wo])
                    .map_err(|e| kernel_error(id, e))?;
                recycle_blocked(x);
                Some(Input::Blocked(Arc::new(y)))
            }
            (_, Params::BlockedPointwise(conv)) => {
                let x = x.into_blocked(id)?;
                let y = conv.forward(&x, None).map_err(|e| kernel_error(id, e))?;
                recycle_blocked(x);
                Some(Input::Blocked(Arc::new(y)))
            }
            (_, Params::Depthwise(conv)) => map(self.on_host(id, x, out, |data, hw, out_hw| {
                conv.forward(data, hw, out_hw)
            })?),
            (_, Params::Packed(conv)) => {
                let batch = x.shape()[0];
                map(self.on_host(id, x, out, |data, hw, _| {
                    Ok(conv.forward(data, batch, hw)?.0)
                })?)
            }
            (
                LayerKind::Conv2d {
                    stride,
                    padding,
                    dilation,
                    groups,
                    ..
                },
                Params::Conv {
                    weight,
                    bias,
                    activation,
                },
            ) => {
                let options = ConvOptions::new(*stride, *padding, *dilation, *groups);
                let x = self.map(x)?;
                map(burn_conv(x, weight, bias, *activation, options))
            }
            _ => None,
        })
    }

    /// Runs convolution `v` on `x` with the addition it takes in (see
    /// [`Shortcuts`](super::shortcut::Shortcuts)): `shortcut` added to its outputs before
    /// `activation`, in its kernel's epilogue, written over the shortcut's buffer (copied first
    /// only if another reader still holds it).
    pub(super) fn conv_onto(
        &self,
        v: usize,
        x: Input,
        shortcut: Input,
        activation: Activation,
    ) -> Result<Input, ModelError> {
        let node = &self.net.nodes()[v];
        let id = node.id();
        if let Params::BlockedPointwise(conv) = &self.params[v] {
            let x = x.into_blocked(id)?;
            let residual = Arc::unwrap_or_clone(shortcut.into_blocked(id)?);
            let y = conv
                .forward(&x, Some(residual))
                .map_err(|e| kernel_error(id, e))?;
            recycle_blocked(x);
            return Ok(Input::Blocked(Arc::new(y)));
        }
        let Params::Packed(conv) = &self.params[v] else {
            return Err(ModelError::Backend(format!(
                "`{}` cannot add a shortcut: it does not run on the crate's own kernels",
                node.id()
            )));
        };
        let batch = x.shape().first().copied().unwrap_or(1);
        let residual = shortcut.into_vec(id)?;
        let y = self.on_host(id, x, &node.spec().output_shape, |data, hw, _| {
            Ok(conv.forward_onto(data, batch, hw, residual, activation)?.0)
        })?;
        Ok(Input::Value(Value::Map(y)))
    }

    /// Runs linear layer `node` on `x` with the kernel its `params` were prepared for; `None`
    /// when they are not a linear layer's.
    fn linear(
        &self,
        node: &Node,
        params: &Params,
        x: Tensor<2>,
    ) -> Result<Option<Tensor<2>>, ModelError> {
        Ok(match params {
            Params::Dense(layer) => {
                let [batch, _] = x.dims();
                let shape = [batch, layer.outputs()];
                let x = Input::Value(Value::Vector(x));
                Some(self.host_kernel(node.id(), x, shape, |input| layer.forward(input))?)
            }
            Params::Linear { blocks } => Some(burn_linear(x, blocks)),
            _ => None,
        })
    }

    /// Runs pooling layer `node` on `x` (max and average pooling over windows, global average
    /// pooling, and adaptive average pooling to the size the map has, with the crate's own
    /// kernels where it runs them); `None` when `node` is no pooling layer.
    fn pool(&self, node: &Node, x: Input) -> Result<Option<Tensor<4>>, ModelError> {
        // An adaptive average pool to the size the map has already (AlexNet's 6×6, VGG16's
        // 7×7): each output the mean of one value, the value itself.
        let same_size = matches!(node.spec().kind, LayerKind::AdaptiveAvgPool2d { output_size }
            if x.shape().get(2..) == Some(&output_size[..]));
        let own = match node.spec().kind {
            LayerKind::MaxPool2d { .. } | LayerKind::AvgPool2d { .. } => true,
            LayerKind::AdaptiveAvgPool2d { output_size } => output_size == [1, 1] || same_size,
            _ => false,
        };
        if !own || !self.own_kernels {
            let x = self.map(x)?;
            return Ok(self.burn_pool(node, x));
        }
        if same_size {
            return Ok(Some(self.map(x)?));
        }
        Ok(Some(match &node.spec().kind {
            LayerKind::AdaptiveAvgPool2d { .. } if matches!(x, Input::Blocked(_)) => {
                let maps = x.into_blocked(node.id())?;
                let [batch, channels, ..] = maps.shape();
                let means = TensorData::new(maps.plane_means(), [batch, channels, 1, 1]);
                recycle_blocked(maps);
                Tensor::from_data(means, &self.device)
            }
            LayerKind::AdaptiveAvgPool2d { .. } => {
                let out = &node.spec().output_shape;
                self.on_host(node.id(), x, out, |data, [h, w], _| {
                    plane_means(data, h * w)
                })?
            }
            LayerKind::MaxPool2d {
                kernel_size,
                stride,
                padding,
                dilation,
                ..
            } => {
                let window = Window {
                    kernel: *kernel_size,
                    stride: *stride,
                    padding: *padding,
                    dilation: *dilation,
                };
                let out = &node.spec().output_shape;
                self.on_host(node.id(), x, out, |data, [h, w], [ho, wo]| {
                    max_pool(data, [h, w], [ho, wo], &window)
                })?
            }
            LayerKind::AvgPool2d {
                kernel_size,
                stride,
                padding,
                count_include_pad,
                ..
            } => {
                let window = AvgWindow {
                    kernel: *kernel_size,
                    stride: *stride,
                    padding: *padding,
                    count_include_pad: *count_include_pad,
                };
                let out = &node.spec().output_shape;
                self.on_host(node.id(), x, out, |data, [h, w], [ho, wo]| {
                    avg_pool(data, [h, w], [ho, wo], &window)
                })?
            }
            _ => return Ok(None),
        }))
    }

    /// Runs pooling layer `node` on `x` with Burn's operations; `None` when `node` is no
    /// pooling layer.
    fn burn_pool(&self, node: &Node, x: Tensor<4>) -> Option<Tensor<4>> {
        Some(match &node.spec().kind {
            LayerKind::MaxPool2d {
                kernel_size,
                stride,
                padding,
                dilation,
                ceil_mode,
            } => max_pool2d(
                x,
                MaxPoolOptions::new(*kernel_size)
                    .with_stride(*stride)
                    .with_padding(*padding)
                    .with_dilation(*dilation)
                    .with_ceil_mode(*ceil_mode),
            ),
            LayerKind::AvgPool2d {
                kernel_size,
                stride,
                padding,
                ceil_mode,
                count_include_pad,
            } => avg_pool2d(
                x,
                AvgPoolOptions::new(*kernel_size)
                    .with_stride(*stride)
                    .with_padding(*padding)
                    .with_count_include_pad(*count_include_pad)
                    .with_ceil_mode(*ceil_mode),
            ),
            LayerKind::AdaptiveAvgPool2d { output_size } => adaptive_avg_pool2d(x, *output_size),
            _ => return None,
        })
    }

    /// Adds `inputs` (values of one rank) and applies the fused `activation`: feature maps of
    /// one shape with the crate's own kernel, in one pass over the host data of the first,
    /// anything else with Burn's operations. `None` when the ranks differ.
    fn add(
        &self,
        id: &str,
        inputs: Vec<Input>,
        activation: Activation,
    ) -> Result<Option<Value>, ModelError> {
        let inputs = match <[Input; 2]>::try_from(inputs) {
            Ok([a, b]) if self.own_kernels && a.is_map() && a.shape() == b.shape() => {
                let shape = a.shape();
                let other = b.into_host();
                let mut sum = a.into_vec(id)?;
                add_into(&mut sum, elements(id, &other)?, activation)
                    .map_err(|e| kernel_error(id, e))?;
                recycle(other);
                let sum = Tensor::from_data(TensorData::new(sum, shape), &self.device);
                return Ok(Some(Value::Map(sum)));
            }
            Ok(pair) => Vec::from(pair),
            Err(inputs) => inputs,
        };
        Ok(
            combine(&LayerKind::Add, self.values(inputs)?).map(|sum| match sum {
                Value::Map(t) => Value::Map(activate(t, activation)),
                Value::Vector(t) => Value::Vector(activate(t, activation)),
            }),
        )
    }

    /// Concatenates `inputs` along channels: feature maps of one batch and size with the
    /// crate's own kernels, each sample's channels copied after the last input's into a
    /// recycled buffer; anything else with Burn's operations. `None` when the ranks differ.
    fn concat(&self, id: &str, inputs: Vec<Input>) -> Result<Option<Value>, ModelError> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(Input::shape).collect();
        let maps_alike = shapes
            .windows(2)
            .all(|pair| pair[0][0] == pair[1][0] && pair[0][2..] == pair[1][2..]);
        let first = match shapes.first().map(Vec::as_slice) {
            Some(&[batch, _, h, w]) if self.own_kernels && maps_alike => [batch, h, w],
            _ => return Ok(combine(&LayerKind::Concat, self.values(inputs)?)),
        };
        let [batch, h, w] = first;
        let channels: usize = shapes.iter().map(|s| s[1]).sum();
        let mut out = recycled::take(batch * channels * h * w);
        let data: Vec<_> = inputs.into_iter().map(Input::into_host).collect();
        let sources = data
            .iter()
            .map(|x| elements(id, x))
            .collect::<Result<Vec<_>, _>>()?;
        // Each sample's run of each input, in output order, cut into pieces that every thread
        // copies a share of: the inputs were computed on every thread, and one thread copying
        // them alone reads the others' caches while they wait.
        let mut pieces = Vec::new();
        let mut rest = &mut out[..];
        for sample in 0..batch {
            for (x, shape) in sources.iter().zip(&shapes) {
                let len = shape[1] * h * w;
                let (dst, tail) = rest.split_at_mut(len);
                rest = tail;
                let src = x.get(sample * len..(sample + 1) * len).ok_or_else(|| {
                    ModelError::Backend(format!(
                        "`{id}`: an input holds {} values, fewer than its shape {shape:?}",
                        x.len()
                    ))
                })?;
                pieces.extend(dst.chunks_mut(CONCAT_PIECE).zip(src.chunks(CONCAT_PIECE)));
            }
        }
        pieces
            .into_par_iter()
            .for_each(|(dst, src)| dst.copy_from_slice(src));
        data.into_iter().for_each(recycle);
        let out = TensorData::new(out, [batch, channels, h, w]);
        Ok(Some(Value::Map(Tensor::from_data(out, &self.device))))
    }

    /// `inputs` as values on the model's device.
    fn values(&self, inputs: Vec<Input>) -> Result<Vec<Value>, ModelError> {
        inputs
            .into_iter()
            .map(|x| x.into_value(&self.device))
            .collect()
    }

    /// Feature map `x` as a tensor on the model's device.
    fn map(&self, x: Input) -> Result<Tensor<4>, ModelError> {
        let shape = x.shape();
        match x.into_value(&self.device)? {
            Value::Map(t) => Ok(t),
            Value::Vector(_) => Err(ModelError::Backend(format!(
                "a feature map was expected, not a tensor of shape {shape:?}"
            ))),
        }
    }

    /// Runs `kernel` on the host data of feature map `x` (free on flex for a tensor nobody else
    /// holds) and wraps its output, `[N, C, H, W]` by the spec's per-sample `out` shape.
    fn on_host(
        &self,
        id: &str,
        x: Input,
        out: &[usize],
        kernel: impl FnOnce(&[f32], [usize; 2], [usize; 2]) -> Result<Vec<f32>, ShapeError>,
    ) -> Result<Tensor<4>, ModelError> {
        let &[batch, _, h, w] = &x.shape()[..] else {
            return Err(ModelError::Backend(format!(
                "`{id}` reads a feature map, not a tensor of shape {:?}",
                x.shape()
            )));
        };
        let &[channels, ho, wo] = out else {
            return Err(ModelError::Backend(format!(
                "`{id}` should output a feature map, not {out:?}"
            )));
        };
        self.host_kernel(id, x, [batch, channels, ho, wo], |input| {
            kernel(input, [h, w], [ho, wo])
        })
    }

    /// Runs `kernel` on the host data of `x` and wraps its output as a tensor of `shape`.
    fn host_kernel<const D: usize>(
        &self,
        id: &str,
        x: Input,
        shape: [usize; D],
        kernel: impl FnOnce(&[f32]) -> Result<Vec<f32>, ShapeError>,
    ) -> Result<Tensor<D>, ModelError> {
        let data = x.into_host();
        let y = kernel(elements(id, &data)?).map_err(|e| kernel_error(id, e))?;
        recycle(data);
        Ok(Tensor::from_data(TensorData::new(y, shape), &self.device))
    }
}

/// Node `id`'s kernel's refusal as a model error.
fn kernel_error(id: &str, e: ShapeError) -> ModelError {
    ModelError::Backend(format!("`{id}`: {}", e.0))
}

/// Burn's `conv2d` of `x` with `options`, then the fused `activation`.
fn burn_conv(
    x: Tensor<4>,
    weight: &Tensor<4>,
    bias: &Option<Tensor<1>>,
    activation: Activation,
    options: ConvOptions<2>,
) -> Tensor<4> {
    activate(conv2d(x, weight.clone(), bias.clone(), options), activation)
}

/// `activation` applied to `y` with Burn's operations.
fn activate<const D: usize>(y: Tensor<D>, activation: Activation) -> Tensor<D> {
    match activation {
        Activation::Identity => y,
        Activation::Relu => relu(y),
        Activation::Relu6 => y.clamp(0.0, 6.0),
    }
}

/// Burn's `linear` of `x` with each block of output columns (in parallel when there are
/// several), concatenated.
fn burn_linear(x: Tensor<2>, blocks: &[LinearBlock]) -> Tensor<2> {
    match blocks {
        [one] => linear(x, one.weight.clone(), one.bias.clone()),
        _ => {
            let parts: Vec<Tensor<2>> = blocks
                .par_iter()
                .map(|b| linear(x.clone(), b.weight.clone(), b.bias.clone()))
                .collect();
            Tensor::cat(parts, 1)
        }
    }
}

/// A batch norm's inference transform of `x`; `None` when `params` are not a batch norm's.
fn batch_norm(params: &Params, x: Tensor<4>) -> Option<Tensor<4>> {
    match params {
        Params::Norm { scale, shift } => Some(x.mul(scale.clone()).add(shift.clone())),
        _ => None,
    }
}

/// Adds or concatenates (along channels) values of one rank; `None` when the ranks differ.
fn combine(kind: &LayerKind, inputs: Vec<Value>) -> Option<Value> {
    let mut maps = Vec::new();
    let mut vectors = Vec::new();
    for x in inputs {
        match x {
            Value::Map(t) => maps.push(t),
            Value::Vector(t) => vectors.push(t),
        }
    }
    let add = matches!(kind, LayerKind::Add);
    match (maps.is_empty(), vectors.is_empty()) {
        (false, true) if add => maps.into_iter().reduce(Tensor::add).map(Value::Map),
        (true, false) if add => vectors.into_iter().reduce(Tensor::add).map(Value::Vector),
        (false, true) => Some(Value::Map(Tensor::cat(maps, 1))),
        (true, false) => Some(Value::Vector(Tensor::cat(vectors, 1))),
        _ => None,
    }
}
