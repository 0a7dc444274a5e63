//! [`Model`]: a [`Net`] with its weights on a device, run whole, split, or a node at a time.

use std::collections::BTreeMap;

use burn::tensor::activation::relu;
use burn::tensor::module::{adaptive_avg_pool2d, avg_pool2d, conv2d, linear, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;

use crate::error::ModelError;
use crate::fusion::{FusedActivation, Fusion};
use crate::kernels::{
    Activation, ConvShape, DenseLinear, DepthwiseConv, Kernels, PackedConv, PoolWindow, ShapeError,
    max_pool2d as max_pool,
};
use crate::layer::LayerKind;
use crate::net::{Cut, Net};
use crate::tensor::{HostTensor, Value};
use crate::weights::Weights;

/// Tensors keyed by the index of the node that produced them.
pub type Activations = BTreeMap<usize, Value>;

/// A layer's weights on the device, laid out for Burn's kernels.
#[derive(Debug, Clone)]
enum Params {
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
    /// A linear layer by the crate's own kernel (flex only).
    Dense(DenseLinear),
    /// A linear layer by Burn's `linear` (the plain kernels, and backends other than flex),
    /// which takes the weight as `[in, out]`, the transpose of PyTorch's. A large weight is split
    /// by output columns into one block per thread (see [`LINEAR_SPLIT_BYTES`]).
    Linear {
        blocks: Vec<LinearBlock>,
    },
    /// Inference batch norm folded to `x * scale + shift`, both `[1, C, 1, 1]`.
    Norm {
        scale: Tensor<4>,
        shift: Tensor<4>,
    },
}

/// A network ready to run: its [`Net`] and every layer's weights on one device.
#[derive(Debug, Clone)]
pub struct Model {
    net: Net,
    device: Device,
    params: Vec<Params>,
    fusion: Fusion,
    /// Whether layers that have one run on the crate's own kernels (fast kernels on flex).
    own_kernels: bool,
}

fn upload<const D: usize>(host: HostTensor, device: &Device) -> Tensor<D> {
    let (shape, data) = host.into_parts();
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// Linear weights at least this large are split across threads. A batch-1 linear layer reads its
/// whole weight once, so it runs at memory speed, and gemm runs a single-row product on one
/// thread; two threads reading halves draw more bandwidth (VGG16's 411 MB fc6 alone: 31 ms on
/// one thread, 18.6 ms on two; its 16 MB fc8: 2.3–2.5 ms on one, 1.2–1.6 on two).
const LINEAR_SPLIT_BYTES: usize = 4 << 20;

/// Some output columns of a linear layer: the weight `[in, cols]` and the bias `[cols]`.
#[derive(Debug, Clone)]
struct LinearBlock {
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
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
    /// Takes the batch norm `id`'s four tensors out of `weights`.
    fn take(
        take: &mut impl FnMut(&str) -> Result<HostTensor, ModelError>,
        id: &str,
        eps: f64,
    ) -> Result<NormTransform, ModelError> {
        let gamma = take(&format!("{id}.weight"))?.into_parts().1;
        let beta = take(&format!("{id}.bias"))?.into_parts().1;
        let mean = take(&format!("{id}.running_mean"))?.into_parts().1;
        let var = take(&format!("{id}.running_var"))?.into_parts().1;
        let scale: Vec<f32> = gamma
            .iter()
            .zip(&var)
            .map(|(g, v)| g / (v + eps as f32).sqrt())
            .collect();
        let shift = beta
            .iter()
            .zip(&mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        Ok(NormTransform { scale, shift })
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

impl Model {
    /// Puts `weights` (checked against the network first) on `device`, with the fast kernels.
    pub fn new(net: Net, weights: Weights, device: &Device) -> Result<Model, ModelError> {
        Model::with_kernels(net, weights, device, Kernels::Fast)
    }

    /// Puts `weights` (checked against the network first) on `device`, to run with `kernels`.
    pub fn with_kernels(
        net: Net,
        mut weights: Weights,
        device: &Device,
        kernels: Kernels,
    ) -> Result<Model, ModelError> {
        weights.check(&net)?;
        let fusion = match kernels {
            Kernels::Fast => Fusion::of(&net),
            Kernels::Plain => Fusion::none(&net),
        };
        let own_kernels = kernels == Kernels::Fast && *device == Device::flex();
        let mut params = Vec::with_capacity(net.len());
        for (v, node) in net.nodes().iter().enumerate() {
            let id = node.id();
            let mut take = |key: &str| {
                weights.take(key).ok_or(ModelError::Weights {
                    net: net.name().to_string(),
                    details: format!("missing {key}"),
                })
            };
            let p = match node.spec().kind {
                _ if fusion.is_absorbed(v) => Params::None,
                LayerKind::Conv2d {
                    in_channels,
                    out_channels,
                    kernel_size,
                    stride,
                    padding,
                    dilation,
                    groups,
                    bias,
                } => {
                    let (shape, mut weight) = take(&format!("{id}.weight"))?.into_parts();
                    let mut bias = if bias {
                        take(&format!("{id}.bias"))?.into_parts().1
                    } else {
                        vec![0.0; out_channels]
                    };
                    if let Some(bn) = fusion.norm_of(v) {
                        let bn = &net.nodes()[bn];
                        let LayerKind::BatchNorm2d { eps, .. } = bn.spec().kind else {
                            return Err(ModelError::Backend(format!(
                                "`{}` is folded into `{id}` but is not a batch norm",
                                bn.id()
                            )));
                        };
                        NormTransform::take(&mut take, bn.id(), eps)?.fold(&mut weight, &mut bias);
                    }
                    let activation = fusion.activation_of(v).into();
                    let pixels: usize = node.spec().output_shape[1..].iter().product();
                    let conv = ConvShape {
                        in_channels,
                        out_channels,
                        kernel: kernel_size,
                        stride,
                        padding,
                        dilation,
                    };
                    let packing =
                        |e: ShapeError| ModelError::TensorData(format!("`{id}`: {}", e.0));
                    if own_kernels && groups == 1 {
                        Params::Packed(
                            PackedConv::new(conv, weight, bias, activation, pixels)
                                .map_err(packing)?,
                        )
                    } else if own_kernels && groups == in_channels && groups == out_channels {
                        Params::Depthwise(
                            DepthwiseConv::new(conv, weight, bias, activation).map_err(packing)?,
                        )
                    } else {
                        Params::Conv {
                            weight: upload(HostTensor::new(shape, weight)?, device),
                            bias: Some(upload(HostTensor::new(vec![out_channels], bias)?, device)),
                            activation,
                        }
                    }
                }
                LayerKind::Linear {
                    in_features,
                    out_features,
                    bias,
                } if own_kernels => {
                    let weight = take(&format!("{id}.weight"))?.into_parts().1;
                    let bias = if bias {
                        take(&format!("{id}.bias"))?.into_parts().1
                    } else {
                        vec![0.0; out_features]
                    };
                    Params::Dense(
                        DenseLinear::new(in_features, weight, bias)
                            .map_err(|e| ModelError::TensorData(format!("`{id}`: {}", e.0)))?,
                    )
                }
                LayerKind::Linear { bias, .. } => Params::Linear {
                    blocks: linear_blocks(
                        take(&format!("{id}.weight"))?,
                        if bias {
                            Some(take(&format!("{id}.bias"))?)
                        } else {
                            None
                        },
                        device,
                    )?,
                },
                LayerKind::BatchNorm2d { num_features, eps } => {
                    let norm = NormTransform::take(&mut take, id, eps)?;
                    let shape = [1, num_features, 1, 1];
                    Params::Norm {
                        scale: Tensor::from_data(TensorData::new(norm.scale, shape), device),
                        shift: Tensor::from_data(TensorData::new(norm.shift, shape), device),
                    }
                }
                _ => Params::None,
            };
            params.push(p);
        }
        Ok(Model {
            net,
            device: device.clone(),
            params,
            fusion,
            own_kernels,
        })
    }

    /// Which nodes run inside another (all run as themselves with [`Kernels::Plain`]).
    pub fn fusion(&self) -> &Fusion {
        &self.fusion
    }

    /// The network with deterministic weights from `seed` (see [`Weights::seeded`]).
    pub fn seeded(net: Net, seed: u64, device: &Device) -> Result<Model, ModelError> {
        let weights = Weights::seeded(&net, seed);
        Model::new(net, weights, device)
    }

    /// The network.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Uploads a host tensor to this model's device.
    pub fn upload(&self, host: HostTensor) -> Result<Value, ModelError> {
        Value::from_host(host, &self.device)
    }

    /// Runs the whole network on `input` (`[N, ...input_shape]`) and returns the output.
    pub fn forward(&self, input: Value) -> Result<Value, ModelError> {
        let all = vec![true; self.net.len()];
        let mut out = self.run_part(&all, Activations::from([(0, input)]))?;
        self.take_sink(&mut out)
    }

    /// Runs the edge side of `cut` (every node not on the cloud, the input included) and returns
    /// the tensors the cloud side needs; for an edge-only cut, just the output.
    pub fn run_edge(&self, cut: &Cut, input: Value) -> Result<Activations, ModelError> {
        self.run_part(&cut.edge_mask(), Activations::from([(0, input)]))
    }

    /// Runs the cloud side of `cut` from the tensors the edge side returned, and returns the output.
    pub fn run_cloud(&self, cut: &Cut, boundary: Activations) -> Result<Value, ModelError> {
        if cut.is_edge_only() {
            let mut boundary = boundary;
            return self.take_sink(&mut boundary);
        }
        let mut out = self.run_part(cut.cloud_mask(), boundary)?;
        self.take_sink(&mut out)
    }

    /// Runs the edge side and then the cloud side of `cut` in this process.
    pub fn run_split(&self, cut: &Cut, input: Value) -> Result<Value, ModelError> {
        let boundary = self.run_edge(cut, input)?;
        self.run_cloud(cut, boundary)
    }

    fn take_sink(&self, out: &mut Activations) -> Result<Value, ModelError> {
        let sink = self.net.sink();
        out.remove(&sink)
            .ok_or_else(|| ModelError::MissingBoundary {
                node: self.net.nodes()[sink].id().to_string(),
                input: self.net.nodes()[sink].id().to_string(),
            })
    }

    /// Executes exactly the nodes flagged in `part`, in topological order, from the `boundary`
    /// tensors handed in, and returns the tensors the rest of the network needs: the output of
    /// every node of the part that a node outside it consumes, and the network's output if the
    /// part computes it.
    ///
    /// `boundary` must hold the output of every node outside the part that a node of the part
    /// consumes, and the raw input (index 0) if the part contains `input`. Every tensor is
    /// checked against the network's shape for its node, with one batch size for all.
    pub fn run_part(
        &self,
        part: &[bool],
        boundary: Activations,
    ) -> Result<Activations, ModelError> {
        on_worker(|| self.run_part_here(part, boundary, false))
    }

    /// Runs the whole network from `input` and returns every node's output, each as a
    /// boundary at that node would carry it (a convolution's fused group's output where a
    /// batch norm or activation is folded into it). For measuring what each possible crossing
    /// tensor looks like, for example how well it compresses.
    pub fn run_all(&self, input: Value) -> Result<Activations, ModelError> {
        let all = vec![true; self.net.len()];
        on_worker(|| self.run_part_here(&all, Activations::from([(0, input)]), true))
    }

    /// [`Model::run_part`] on the calling thread; with `export_all`, every node's output is
    /// returned, not only those read outside the part.
    fn run_part_here(
        &self,
        part: &[bool],
        mut boundary: Activations,
        export_all: bool,
    ) -> Result<Activations, ModelError> {
        let net = &self.net;
        let n = net.len();
        if part.len() != n {
            return Err(ModelError::InvalidCut(format!(
                "the part has {} flags but the network has {n} nodes",
                part.len()
            )));
        }
        let batch = self.check_boundary(&boundary)?;
        // Tensors still to be read by nodes of the part, so each is dropped after its last use.
        let mut uses = vec![0usize; n];
        for v in (0..n).filter(|&v| part[v]) {
            for &u in net.nodes()[v].inputs() {
                uses[u] += 1;
            }
        }
        let exported: Vec<bool> = (0..n)
            .map(|v| {
                part[v]
                    && (export_all || v == net.sink() || net.consumers(v).iter().any(|&w| !part[w]))
            })
            .collect();
        let mut values: Vec<Option<Value>> = vec![None; n];
        let mut out = Activations::new();
        for v in (0..n).filter(|&v| part[v]) {
            let node = &net.nodes()[v];
            let value = if v == 0 {
                boundary
                    .remove(&0)
                    .ok_or_else(|| ModelError::MissingBoundary {
                        node: node.id().to_string(),
                        input: node.id().to_string(),
                    })?
            } else {
                let mut inputs = Vec::with_capacity(node.inputs().len());
                for &u in node.inputs() {
                    uses[u] -= 1;
                    // The last reader takes the tensor, so the backend may reuse its buffer.
                    let value = match (part[u], uses[u] == 0) {
                        (true, true) => values[u].take(),
                        (true, false) => values[u].clone(),
                        (false, true) => boundary.remove(&u),
                        (false, false) => boundary.get(&u).cloned(),
                    };
                    inputs.push(value.ok_or_else(|| ModelError::MissingBoundary {
                        node: node.id().to_string(),
                        input: net.nodes()[u].id().to_string(),
                    })?);
                }
                let y = self.apply(v, inputs)?;
                let expected: Vec<usize> = std::iter::once(batch)
                    .chain(node.spec().output_shape.iter().copied())
                    .collect();
                if y.shape() != expected {
                    return Err(ModelError::Backend(format!(
                        "node `{}` produced shape {:?} but its spec says {expected:?}; the backend's {} differs from PyTorch's",
                        node.id(),
                        y.shape(),
                        node.spec().kind.name()
                    )));
                }
                y
            };
            if exported[v] {
                out.insert(v, value.clone());
            }
            if uses[v] > 0 {
                values[v] = Some(value);
            }
        }
        Ok(out)
    }

    /// Checks every boundary tensor's shape against its node and returns the common batch size.
    fn check_boundary(&self, boundary: &Activations) -> Result<usize, ModelError> {
        let mut batch = None;
        for (&v, value) in boundary {
            let node = self.net.node(v).ok_or_else(|| {
                ModelError::UnknownNode(format!("#{v} (the network has {} nodes)", self.net.len()))
            })?;
            let shape = value.shape();
            let b = *batch.get_or_insert(shape.first().copied().unwrap_or(0));
            let expected: Vec<usize> = std::iter::once(b)
                .chain(node.spec().output_shape.iter().copied())
                .collect();
            if shape != expected || b == 0 {
                return Err(ModelError::TensorShape {
                    node: node.id().to_string(),
                    expected,
                    got: shape,
                });
            }
        }
        Ok(batch.unwrap_or(1))
    }

    /// Runs one node on its input values (in the node's input order) and returns its output.
    ///
    /// The inputs' shapes are not checked here; [`Model::run_part`] does that. Use this to time
    /// single layers.
    pub fn run_node(&self, index: usize, inputs: Vec<Value>) -> Result<Value, ModelError> {
        if index >= self.net.len() {
            return Err(ModelError::UnknownNode(format!(
                "#{index} (the network has {} nodes)",
                self.net.len()
            )));
        }
        let moves_no_data = matches!(
            self.net.nodes()[index].spec().kind,
            LayerKind::Input | LayerKind::Dropout { .. } | LayerKind::Flatten
        );
        if moves_no_data || self.fusion.is_absorbed(index) {
            // Nothing to compute: handing it to a worker would cost more than the node.
            return self.apply(index, inputs);
        }
        on_worker(|| self.apply(index, inputs))
    }

    fn apply(&self, v: usize, inputs: Vec<Value>) -> Result<Value, ModelError> {
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
        if matches!(kind, LayerKind::Add | LayerKind::Concat) {
            return combine(kind, inputs).ok_or_else(wrong);
        }
        let [x] = <[Value; 1]>::try_from(inputs).map_err(|_| wrong())?;
        if self.fusion.is_absorbed(v) {
            // The convolution this node belongs to has already computed its output.
            return Ok(x);
        }
        let y = match (kind, &self.params[v], x) {
            (LayerKind::Input | LayerKind::Dropout { .. }, _, x) => x,
            (LayerKind::Conv2d { .. }, Params::Depthwise(conv), Value::Map(x)) => {
                let out = &node.spec().output_shape;
                Value::Map(self.on_host(node.id(), x, out, |data, hw, out_hw| {
                    conv.forward(data, hw, out_hw)
                })?)
            }
            (LayerKind::Conv2d { .. }, Params::Packed(conv), Value::Map(x)) => {
                let batch = x.dims()[0];
                let out = &node.spec().output_shape;
                Value::Map(self.on_host(node.id(), x, out, |data, hw, _| {
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
                Value::Map(x),
            ) => {
                let y = conv2d(
                    x,
                    weight.clone(),
                    bias.clone(),
                    ConvOptions::new(*stride, *padding, *dilation, *groups),
                );
                Value::Map(match activation {
                    Activation::Identity => y,
                    Activation::Relu => relu(y),
                    Activation::Relu6 => y.clamp(0.0, 6.0),
                })
            }
            (LayerKind::Linear { .. }, Params::Dense(layer), Value::Vector(x)) => {
                let [batch, _] = x.dims();
                let shape = [batch, layer.outputs()];
                Value::Vector(self.host_kernel(node.id(), x, shape, |input| layer.forward(input))?)
            }
            (LayerKind::Linear { .. }, Params::Linear { blocks }, Value::Vector(x)) => {
                Value::Vector(match &blocks[..] {
                    [one] => linear(x, one.weight.clone(), one.bias.clone()),
                    _ => {
                        let parts: Vec<Tensor<2>> = blocks
                            .par_iter()
                            .map(|b| linear(x.clone(), b.weight.clone(), b.bias.clone()))
                            .collect();
                        Tensor::cat(parts, 1)
                    }
                })
            }
            (LayerKind::BatchNorm2d { .. }, Params::Norm { scale, shift }, Value::Map(x)) => {
                Value::Map(x.mul(scale.clone()).add(shift.clone()))
            }
            (LayerKind::Relu, _, Value::Map(x)) => Value::Map(relu(x)),
            (LayerKind::Relu, _, Value::Vector(x)) => Value::Vector(relu(x)),
            (LayerKind::Relu6, _, Value::Map(x)) => Value::Map(x.clamp(0.0, 6.0)),
            (LayerKind::Relu6, _, Value::Vector(x)) => Value::Vector(x.clamp(0.0, 6.0)),
            (
                LayerKind::MaxPool2d {
                    kernel_size,
                    stride,
                    padding,
                    dilation,
                    ..
                },
                _,
                Value::Map(x),
            ) if self.own_kernels => {
                let window = PoolWindow {
                    kernel: *kernel_size,
                    stride: *stride,
                    padding: *padding,
                    dilation: *dilation,
                };
                let out = &node.spec().output_shape;
                Value::Map(self.on_host(node.id(), x, out, |data, [h, w], [ho, wo]| {
                    Ok(max_pool(data, [h, w], [ho, wo], &window))
                })?)
            }
            (
                LayerKind::MaxPool2d {
                    kernel_size,
                    stride,
                    padding,
                    dilation,
                    ceil_mode,
                },
                _,
                Value::Map(x),
            ) => Value::Map(max_pool2d(
                x,
                MaxPoolOptions::new(*kernel_size)
                    .with_stride(*stride)
                    .with_padding(*padding)
                    .with_dilation(*dilation)
                    .with_ceil_mode(*ceil_mode),
            )),
            (
                LayerKind::AvgPool2d {
                    kernel_size,
                    stride,
                    padding,
                    ceil_mode,
                    count_include_pad,
                },
                _,
                Value::Map(x),
            ) => Value::Map(avg_pool2d(
                x,
                AvgPoolOptions::new(*kernel_size)
                    .with_stride(*stride)
                    .with_padding(*padding)
                    .with_count_include_pad(*count_include_pad)
                    .with_ceil_mode(*ceil_mode),
            )),
            (LayerKind::AdaptiveAvgPool2d { output_size }, _, Value::Map(x)) => {
                Value::Map(adaptive_avg_pool2d(x, *output_size))
            }
            (LayerKind::Flatten, _, Value::Map(x)) => Value::Vector(x.flatten::<2>(1, 3)),
            (LayerKind::Flatten, _, vector @ Value::Vector(_)) => vector,
            _ => return Err(wrong()),
        };
        Ok(y)
    }

    /// Runs `kernel` on the host data of feature map `x` (free on flex for a tensor nobody else
    /// holds) and wraps its output, `[N, C, H, W]` by the spec's per-sample `out` shape.
    fn on_host(
        &self,
        id: &str,
        x: Tensor<4>,
        out: &[usize],
        kernel: impl FnOnce(&[f32], [usize; 2], [usize; 2]) -> Result<Vec<f32>, ShapeError>,
    ) -> Result<Tensor<4>, ModelError> {
        let [batch, _, h, w] = x.dims();
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
        x: Tensor<D>,
        shape: [usize; D],
        kernel: impl FnOnce(&[f32]) -> Result<Vec<f32>, ShapeError>,
    ) -> Result<Tensor<D>, ModelError> {
        let data = x.into_data();
        let input = data
            .as_slice::<f32>()
            .map_err(|e| ModelError::Backend(format!("`{id}`: reading its input as f32: {e:?}")))?;
        let y = kernel(input).map_err(|e| ModelError::Backend(format!("`{id}`: {}", e.0)))?;
        Ok(Tensor::from_data(TensorData::new(y, shape), &self.device))
    }
}

/// Runs `op` on one of rayon's worker threads and waits for it. A forward pass starts hundreds
/// of parallel kernels (the crate's own, gemm's and the flex backend's); started from a worker,
/// each is split there and the other workers steal its parts, whereas from any other thread every
/// one of them is handed to the pool while the caller sleeps until it is done: a wake-up and a
/// context switch per kernel.
pub(crate) fn on_worker<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| op())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::NetBuilder;

    fn host(shape: Vec<usize>, data: Vec<f32>) -> HostTensor {
        HostTensor::new(shape, data).expect("host tensor")
    }

    /// input [1,2,2] -> conv 1->2 k2 -> bn -> relu6 -> flatten -> linear 2->1, by hand.
    fn tiny() -> Model {
        let mut b = NetBuilder::new("tiny", vec![1, 2, 2]).expect("input");
        let conv = LayerKind::Conv2d {
            in_channels: 1,
            out_channels: 2,
            kernel_size: [2, 2],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            bias: true,
        };
        let x = b.add("conv", conv, &[0]).expect("conv");
        let bn = LayerKind::BatchNorm2d {
            num_features: 2,
            eps: 1e-5,
        };
        let x = b.add("bn", bn, &[x]).expect("bn");
        let x = b.add("act", LayerKind::Relu6, &[x]).expect("relu6");
        let x = b.add("flatten", LayerKind::Flatten, &[x]).expect("flatten");
        let fc = LayerKind::Linear {
            in_features: 2,
            out_features: 1,
            bias: true,
        };
        b.add("fc", fc, &[x]).expect("fc");
        let net = b.build().expect("tiny net");
        let mut w = Weights::new();
        // Channel 0 sums the four pixels; channel 1 takes the first minus the last.
        w.insert(
            "conv.weight",
            host(vec![2, 1, 2, 2], vec![1., 1., 1., 1., 1., 0., 0., -1.]),
        );
        w.insert("conv.bias", host(vec![2], vec![0.5, 0.0]));
        w.insert("bn.weight", host(vec![2], vec![2.0, 1.0]));
        w.insert("bn.bias", host(vec![2], vec![0.0, 1.0]));
        w.insert("bn.running_mean", host(vec![2], vec![1.0, 0.0]));
        w.insert(
            "bn.running_var",
            host(vec![2], vec![1.0 - 1e-5, 4.0 - 1e-5]),
        );
        w.insert("fc.weight", host(vec![1, 2], vec![1.0, -2.0]));
        w.insert("fc.bias", host(vec![1], vec![0.25]));
        Model::new(net, w, &Device::flex()).expect("weights fit")
    }

    #[test]
    fn tiny_network_matches_hand_computation() {
        let model = tiny();
        let x = host(vec![1, 1, 2, 2], vec![0.1, 0.2, 0.3, 0.4]);
        let y = model
            .forward(model.upload(x).expect("upload"))
            .expect("forward")
            .to_host()
            .expect("read back");
        // conv: [1.0 + 0.5, 0.1 - 0.4] = [1.5, -0.3]
        // bn:   [(1.5 - 1) / 1 * 2 + 0, (-0.3 - 0) / 2 * 1 + 1] = [1.0, 0.85]
        // relu6 keeps both; fc: 1.0 - 2 * 0.85 + 0.25 = -0.45
        assert_eq!(y.shape(), &[1, 1]);
        assert!((y.data()[0] - -0.45).abs() < 1e-5, "{:?}", y.data());
    }

    #[test]
    fn a_large_linear_layer_computes_the_whole_product_with_either_kernels() {
        // 2 048 x 4 352 floats = 35.7 MB: above the split threshold of the plain kernels, and
        // 4 352 outputs do not divide evenly into every thread count. The fast kernels run the
        // crate's own dot products over the same [out, in] weight.
        let (inputs, outputs) = (2048, 4352);
        assert!(inputs * outputs * 4 >= LINEAR_SPLIT_BYTES);
        let weight: Vec<f32> = (0..inputs * outputs)
            .map(|i| ((i * 7919) % 201) as f32 / 100.0 - 1.0)
            .collect();
        let bias: Vec<f32> = (0..outputs).map(|o| o as f32 / 1000.0).collect();
        let x: Vec<f32> = (0..inputs)
            .map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0)
            .collect();
        for kernels in Kernels::ALL {
            let mut b = NetBuilder::new("wide", vec![inputs]).expect("input");
            let fc = LayerKind::Linear {
                in_features: inputs,
                out_features: outputs,
                bias: true,
            };
            b.add("fc", fc, &[0]).expect("fc");
            let net = b.build().expect("net");
            let mut w = Weights::new();
            w.insert("fc.weight", host(vec![outputs, inputs], weight.clone()));
            w.insert("fc.bias", host(vec![outputs], bias.clone()));
            let model = Model::with_kernels(net, w, &Device::flex(), kernels).expect("weights fit");
            match (kernels, &model.params[1]) {
                (Kernels::Fast, Params::Dense(_)) => {}
                (Kernels::Plain, Params::Linear { blocks }) => {
                    assert_eq!(blocks.len(), rayon::current_num_threads().min(outputs));
                }
                (_, other) => panic!("fc with {kernels} kernels has parameters {other:?}"),
            }
            let y = model
                .forward(
                    model
                        .upload(host(vec![1, inputs], x.clone()))
                        .expect("upload"),
                )
                .expect("forward")
                .to_host()
                .expect("read back");
            assert_eq!(y.shape(), &[1, outputs]);
            for (o, got) in y.data().iter().enumerate() {
                let row = &weight[o * inputs..(o + 1) * inputs];
                let want: f64 = bias[o] as f64
                    + row
                        .iter()
                        .zip(&x)
                        .map(|(w, x)| (*w as f64) * (*x as f64))
                        .sum::<f64>();
                assert!(
                    (*got as f64 - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{kernels} kernels, output {o}: {got} against {want}"
                );
            }
        }
    }

    #[test]
    fn relu6_clamps_and_batches_are_independent() {
        let model = tiny();
        let x = host(
            vec![2, 1, 2, 2],
            vec![0.1, 0.2, 0.3, 0.4, 5.0, 5.0, 5.0, 5.0],
        );
        let y = model
            .forward(model.upload(x).expect("upload"))
            .expect("forward")
            .to_host()
            .expect("read back");
        // Second sample: conv [20.5, 0], bn [39, 1], relu6 [6, 1], fc 6 - 2 + 0.25.
        assert!((y.data()[0] - -0.45).abs() < 1e-5);
        assert!((y.data()[1] - 4.25).abs() < 1e-5, "{:?}", y.data());
    }

    #[test]
    fn run_part_reports_missing_and_misshapen_tensors() {
        let model = tiny();
        let device = model.device().clone();
        let cloud = model.net().cut(&["act", "flatten", "fc"]).expect("cut");
        let err = model
            .run_part(cloud.cloud_mask(), Activations::new())
            .expect_err("nothing handed in");
        let msg = err.to_string();
        assert!(msg.contains("`act`") && msg.contains("`bn`"), "{msg}");
        let wrong = Value::from_host(host(vec![1, 3, 1, 1], vec![0.0; 3]), &device).expect("up");
        let err = model
            .run_part(cloud.cloud_mask(), Activations::from([(2, wrong)]))
            .expect_err("wrong shape");
        let msg = err.to_string();
        assert!(
            msg.contains("`bn`") && msg.contains("[1, 3, 1, 1]") && msg.contains("[1, 2, 1, 1]"),
            "{msg}"
        );
        assert!(model.run_part(&[true], Activations::new()).is_err());
    }

    #[test]
    fn edge_part_returns_exactly_the_crossing_tensors() {
        let model = tiny();
        let cut = model.net().cut(&["flatten", "fc"]).expect("cut");
        let x = host(vec![1, 1, 2, 2], vec![0.1, 0.2, 0.3, 0.4]);
        let boundary = model
            .run_edge(&cut, model.upload(x).expect("upload"))
            .expect("edge part");
        assert_eq!(boundary.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!(boundary[&3].shape(), vec![1, 2, 1, 1]);
    }

    #[test]
    fn wrong_weights_are_rejected_before_upload() {
        let net = tiny().net().clone();
        let err = Model::new(net, Weights::new(), &Device::flex()).expect_err("no weights");
        assert!(err.to_string().contains("missing conv.weight"), "{err}");
    }
}
