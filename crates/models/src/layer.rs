//! Node kinds, their hyper-parameters and shape inference: the pure-data [`LayerSpec`].
//!
//! Shapes are per sample, without the batch dimension: `[C, H, W]` for feature maps and `[F]`
//! for vectors. Every hyper-parameter is checked before any arithmetic, so a spec file can never
//! make inference panic or overflow.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// A tensor shape per sample (no batch dimension): `[C, H, W]` or `[F]`.
pub type Shape = Vec<usize>;

/// Largest number of elements accepted in one tensor (an activation per sample, or a weight):
/// 2^31, i.e. 8 GiB of f32. VGG-16's largest weight has about 10^8.
const MAX_ELEMENTS: u64 = 1 << 31;

fn one2() -> [usize; 2] {
    [1, 1]
}
fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn bn_eps() -> f64 {
    1e-5
}

/// What a node computes, with its hyper-parameters (PyTorch's names and defaults).
///
/// In spec JSON the variant is the `kind` field (`"conv2d"`, `"batch_norm2d"`, ...) and the
/// hyper-parameters sit beside it. Optional fields take PyTorch's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerKind {
    /// The raw input; its shape is the network's input shape.
    Input,
    /// `nn.Conv2d`. Parameters `weight` `[out, in/groups, kh, kw]` and `bias` `[out]` if `bias`.
    Conv2d {
        /// Channels of the input.
        in_channels: usize,
        /// Channels of the output.
        out_channels: usize,
        /// Kernel height and width.
        kernel_size: [usize; 2],
        /// Stride (default 1).
        #[serde(default = "one2")]
        stride: [usize; 2],
        /// Zero padding on each side (default 0).
        #[serde(default)]
        padding: [usize; 2],
        /// Dilation (default 1).
        #[serde(default = "one2")]
        dilation: [usize; 2],
        /// Groups (default 1; `in_channels` for a depthwise convolution).
        #[serde(default = "one")]
        groups: usize,
        /// Whether the layer has a bias (default true).
        #[serde(default = "yes")]
        bias: bool,
    },
    /// `nn.Linear`. Parameters `weight` `[out, in]` and `bias` `[out]` if `bias`.
    Linear {
        /// Features in.
        in_features: usize,
        /// Features out.
        out_features: usize,
        /// Whether the layer has a bias (default true).
        #[serde(default = "yes")]
        bias: bool,
    },
    /// `nn.BatchNorm2d` in inference mode: `weight`, `bias`, `running_mean`, `running_var`.
    BatchNorm2d {
        /// Channels.
        num_features: usize,
        /// Added to the variance (default 1e-5).
        #[serde(default = "bn_eps")]
        eps: f64,
    },
    /// `nn.ReLU`.
    Relu,
    /// `nn.ReLU6`.
    Relu6,
    /// `nn.MaxPool2d`.
    MaxPool2d {
        /// Window height and width.
        kernel_size: [usize; 2],
        /// Stride (PyTorch's default is the kernel size; here it must be written).
        stride: [usize; 2],
        /// Implicit negative-infinity padding on each side (default 0).
        #[serde(default)]
        padding: [usize; 2],
        /// Dilation (default 1).
        #[serde(default = "one2")]
        dilation: [usize; 2],
        /// Round the output size up (default false).
        #[serde(default)]
        ceil_mode: bool,
    },
    /// `nn.AvgPool2d`.
    AvgPool2d {
        /// Window height and width.
        kernel_size: [usize; 2],
        /// Stride (must be written).
        stride: [usize; 2],
        /// Zero padding on each side (default 0).
        #[serde(default)]
        padding: [usize; 2],
        /// Round the output size up (default false).
        #[serde(default)]
        ceil_mode: bool,
        /// Count padding zeros in the average (default true).
        #[serde(default = "yes")]
        count_include_pad: bool,
    },
    /// `nn.AdaptiveAvgPool2d`.
    AdaptiveAvgPool2d {
        /// Output height and width.
        output_size: [usize; 2],
    },
    /// `nn.Dropout`: the identity at inference.
    Dropout {
        /// Drop probability during training (default 0.5).
        #[serde(default = "half")]
        p: f64,
    },
    /// `torch.flatten(x, 1)`: everything but the batch dimension into one.
    Flatten,
    /// Element-wise sum of two or more inputs of one shape (residual connections).
    Add,
    /// `torch.cat(inputs, 1)`: concatenation along channels; other dimensions must agree.
    Concat,
}

fn half() -> f64 {
    0.5
}

/// One weight or buffer tensor that a layer owns, under its torchvision name suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamTensor {
    /// Suffix after the node id: `weight`, `bias`, `running_mean`, `running_var`.
    pub suffix: &'static str,
    /// The tensor's shape.
    pub shape: Shape,
    /// True for learnable parameters (counted in `params`), false for buffers (BN statistics).
    pub learnable: bool,
}

impl LayerKind {
    /// The kind's name as written in spec JSON.
    pub fn name(&self) -> &'static str {
        match self {
            LayerKind::Input => "input",
            LayerKind::Conv2d { .. } => "conv2d",
            LayerKind::Linear { .. } => "linear",
            LayerKind::BatchNorm2d { .. } => "batch_norm2d",
            LayerKind::Relu => "relu",
            LayerKind::Relu6 => "relu6",
            LayerKind::MaxPool2d { .. } => "max_pool2d",
            LayerKind::AvgPool2d { .. } => "avg_pool2d",
            LayerKind::AdaptiveAvgPool2d { .. } => "adaptive_avg_pool2d",
            LayerKind::Dropout { .. } => "dropout",
            LayerKind::Flatten => "flatten",
            LayerKind::Add => "add",
            LayerKind::Concat => "concat",
        }
    }

    /// The weight and buffer tensors the layer owns, in torchvision's order.
    ///
    /// Call it only on a kind that passed [`LayerSpec::infer`], whose numbers are checked.
    pub fn tensors(&self) -> Vec<ParamTensor> {
        let learnable = |suffix, shape| ParamTensor {
            suffix,
            shape,
            learnable: true,
        };
        match *self {
            LayerKind::Conv2d {
                in_channels,
                out_channels,
                kernel_size,
                groups,
                bias,
                ..
            } => {
                let per_group = in_channels / groups.max(1);
                let mut t = vec![learnable(
                    "weight",
                    vec![out_channels, per_group, kernel_size[0], kernel_size[1]],
                )];
                if bias {
                    t.push(learnable("bias", vec![out_channels]));
                }
                t
            }
            LayerKind::Linear {
                in_features,
                out_features,
                bias,
            } => {
                let mut t = vec![learnable("weight", vec![out_features, in_features])];
                if bias {
                    t.push(learnable("bias", vec![out_features]));
                }
                t
            }
            LayerKind::BatchNorm2d { num_features, .. } => {
                let c = vec![num_features];
                vec![
                    learnable("weight", c.clone()),
                    learnable("bias", c.clone()),
                    ParamTensor {
                        suffix: "running_mean",
                        shape: c.clone(),
                        learnable: false,
                    },
                    ParamTensor {
                        suffix: "running_var",
                        shape: c,
                        learnable: false,
                    },
                ]
            }
            _ => Vec::new(),
        }
    }
}

/// A node's pure-data description: what it computes, on what shapes, at what cost.
///
/// FLOPs count one multiply and one add as two operations: a convolution costs
/// `2 · out_elements · in_channels/groups · kh · kw` plus `out_elements` for the bias, a linear
/// layer `2 · in · out` plus `out`; batch norm costs 2 per element, ReLU 1, ReLU6 2, add one per
/// element per extra input, pooling one per window element read, and flatten, concat, dropout and
/// the input nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// Kind and hyper-parameters.
    pub kind: LayerKind,
    /// Shapes of the inputs, per sample, in the node's input order.
    pub input_shapes: Vec<Shape>,
    /// Shape of the output, per sample.
    pub output_shape: Shape,
    /// Floating-point operations per sample (see the type's documentation).
    pub flops: u64,
    /// Learnable parameters (BN running statistics excluded, as in `model.parameters()`).
    pub params: u64,
    /// Size of the output in bytes for one sample in f32.
    pub out_bytes: u64,
}

/// Number of elements of `shape`, or an error naming `node` when it is empty or too large.
pub(crate) fn checked_elements(node: &str, shape: &[usize]) -> Result<u64, ModelError> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(ModelError::ShapeMismatch {
            node: node.to_string(),
            expected: "a non-empty shape with every dimension at least 1".into(),
            got: shape.to_vec(),
            hint: "check the input shape and the layers before this node",
        });
    }
    let mut n: u64 = 1;
    for &d in shape {
        n = n
            .checked_mul(d as u64)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| ModelError::ShapeMismatch {
                node: node.to_string(),
                expected: format!("at most {MAX_ELEMENTS} elements"),
                got: shape.to_vec(),
                hint: "the tensor is too large; use a smaller input",
            })?;
    }
    Ok(n)
}

fn bad(node: &str, field: &'static str, reason: impl Into<String>) -> ModelError {
    ModelError::BadParameter {
        node: node.to_string(),
        field,
        reason: reason.into(),
    }
}

fn positive2(node: &str, field: &'static str, v: [usize; 2]) -> Result<(), ModelError> {
    if v.contains(&0) {
        return Err(bad(
            node,
            field,
            format!("is {v:?}; every entry must be at least 1"),
        ));
    }
    Ok(())
}

/// Output length of a sliding window (PyTorch's formula, with its `ceil_mode` rule that the last
/// window must start inside the input or the left padding).
fn window_out(
    node: &str,
    len: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Result<usize, ModelError> {
    // u128: no product or sum of two usize values can overflow it.
    let span = dilation as u128 * (kernel as u128 - 1) + 1;
    let padded = len as u128 + 2 * pad as u128;
    let (stride, len, pad) = (stride as u128, len as u128, pad as u128);
    if padded < span {
        return Err(ModelError::ShapeMismatch {
            node: node.to_string(),
            expected: format!(
                "a spatial size of at least {} (window {span} minus padding)",
                span.saturating_sub(2 * pad)
            ),
            got: vec![len as usize],
            hint: "the input is too small for this window; use a larger input",
        });
    }
    let room = padded - span;
    let mut out = if ceil_mode {
        room.div_ceil(stride) + 1
    } else {
        room / stride + 1
    };
    if ceil_mode && (out - 1) * stride >= len + pad {
        out -= 1;
    }
    usize::try_from(out).map_err(|_| bad(node, "padding", "makes the output too large"))
}

fn expect_inputs(
    node: &str,
    kind: &LayerKind,
    inputs: &[Shape],
    expected: usize,
) -> Result<(), ModelError> {
    if inputs.len() != expected {
        return Err(ModelError::InputCount {
            node: node.to_string(),
            kind: kind.name(),
            expected: if expected == 0 { "0" } else { "1" },
            got: inputs.len(),
        });
    }
    Ok(())
}

/// The single input as `[C, H, W]`, or an error naming the node.
fn chw(node: &str, shape: &[usize]) -> Result<[usize; 3], ModelError> {
    match *shape {
        [c, h, w] => Ok([c, h, w]),
        _ => Err(ModelError::ShapeMismatch {
            node: node.to_string(),
            expected: "a feature map [C, H, W]".into(),
            got: shape.to_vec(),
            hint: "this layer needs a 3-D input per sample; remove the flatten before it",
        }),
    }
}

fn channels_mismatch(node: &str, field: &str, want: usize, got: &[usize]) -> ModelError {
    ModelError::ShapeMismatch {
        node: node.to_string(),
        expected: format!("{want} channels (`{field}`) first"),
        got: got.to_vec(),
        hint: "make the layer's channel count match the output of its input node",
    }
}

impl LayerSpec {
    /// The spec of the network's input node for this per-sample input shape.
    pub fn input(node: &str, shape: Shape) -> Result<LayerSpec, ModelError> {
        if shape.len() != 1 && shape.len() != 3 {
            return Err(ModelError::ShapeMismatch {
                node: node.to_string(),
                expected: "[C, H, W] or [F]".into(),
                got: shape,
                hint: "give the input shape per sample, without the batch dimension",
            });
        }
        let elements = checked_elements(node, &shape)?;
        Ok(LayerSpec {
            kind: LayerKind::Input,
            input_shapes: Vec::new(),
            output_shape: shape,
            flops: 0,
            params: 0,
            out_bytes: elements * 4,
        })
    }

    /// Checks `kind` against its input shapes and works out the output shape, FLOPs, parameter
    /// count and output size. Errors name `node` and, for a shape mismatch, both shapes.
    pub fn infer(node: &str, kind: LayerKind, inputs: Vec<Shape>) -> Result<LayerSpec, ModelError> {
        for shape in &inputs {
            checked_elements(node, shape)?;
        }
        let (output_shape, flops) = infer_output(node, &kind, &inputs)?;
        let out_elements = checked_elements(node, &output_shape)?;
        let mut params = 0u64;
        for tensor in kind.tensors() {
            let n = checked_elements(node, &tensor.shape)?;
            if tensor.learnable {
                params += n;
            }
        }
        Ok(LayerSpec {
            kind,
            input_shapes: inputs,
            output_shape,
            flops,
            params,
            out_bytes: out_elements * 4,
        })
    }
}

/// Elements of `shape`, saturating: an output shape is inferred before it is checked
/// ([`checked_elements`]), and a huge one must fail that check, not overflow here.
fn elements(shape: &[usize]) -> u64 {
    shape.iter().fold(1u64, |n, &d| n.saturating_mul(d as u64))
}

/// Output shape and FLOPs of `kind` on `inputs` (whose element counts are already checked).
fn infer_output(
    node: &str,
    kind: &LayerKind,
    inputs: &[Shape],
) -> Result<(Shape, u64), ModelError> {
    match *kind {
        LayerKind::Input => Err(ModelError::InputNode(format!(
            "node `{node}` has kind `input`, but only the network's one input node may; give it a layer kind"
        ))),
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
            expect_inputs(node, kind, inputs, 1)?;
            positive2(node, "kernel_size", kernel_size)?;
            positive2(node, "stride", stride)?;
            positive2(node, "dilation", dilation)?;
            if in_channels == 0 || out_channels == 0 {
                return Err(bad(node, "in_channels/out_channels", "must be at least 1"));
            }
            if groups == 0 || in_channels % groups != 0 || out_channels % groups != 0 {
                return Err(bad(
                    node,
                    "groups",
                    format!(
                        "is {groups}; it must be at least 1 and divide in_channels ({in_channels}) and out_channels ({out_channels})"
                    ),
                ));
            }
            let [c, h, w] = chw(node, &inputs[0])?;
            if c != in_channels {
                return Err(channels_mismatch(
                    node,
                    "in_channels",
                    in_channels,
                    &inputs[0],
                ));
            }
            let ho = window_out(
                node,
                h,
                kernel_size[0],
                stride[0],
                padding[0],
                dilation[0],
                false,
            )?;
            let wo = window_out(
                node,
                w,
                kernel_size[1],
                stride[1],
                padding[1],
                dilation[1],
                false,
            )?;
            let out = vec![out_channels, ho, wo];
            let out_el = elements(&out);
            let per_output = 2u64
                .saturating_mul((in_channels / groups) as u64)
                .saturating_mul(kernel_size[0] as u64)
                .saturating_mul(kernel_size[1] as u64);
            let flops =
                out_el
                    .saturating_mul(per_output)
                    .saturating_add(if bias { out_el } else { 0 });
            Ok((out, flops))
        }
        LayerKind::Linear {
            in_features,
            out_features,
            bias,
        } => {
            expect_inputs(node, kind, inputs, 1)?;
            if out_features == 0 {
                return Err(bad(node, "out_features", "must be at least 1"));
            }
            if inputs[0] != [in_features] {
                return Err(ModelError::ShapeMismatch {
                    node: node.to_string(),
                    expected: format!("[{in_features}] (`in_features`)"),
                    got: inputs[0].clone(),
                    hint: "a linear layer takes a vector: add a flatten node before it, or fix `in_features`",
                });
            }
            let flops = 2u64
                .saturating_mul(in_features as u64)
                .saturating_mul(out_features as u64)
                .saturating_add(if bias { out_features as u64 } else { 0 });
            Ok((vec![out_features], flops))
        }
        LayerKind::BatchNorm2d { num_features, eps } => {
            expect_inputs(node, kind, inputs, 1)?;
            if !(eps.is_finite() && eps > 0.0) {
                return Err(bad(
                    node,
                    "eps",
                    format!("is {eps}; it must be a positive number"),
                ));
            }
            let [c, _, _] = chw(node, &inputs[0])?;
            if c != num_features {
                return Err(channels_mismatch(
                    node,
                    "num_features",
                    num_features,
                    &inputs[0],
                ));
            }
            Ok((inputs[0].clone(), 2 * elements(&inputs[0])))
        }
        LayerKind::Relu | LayerKind::Relu6 => {
            expect_inputs(node, kind, inputs, 1)?;
            let per = if matches!(kind, LayerKind::Relu6) {
                2
            } else {
                1
            };
            Ok((inputs[0].clone(), per * elements(&inputs[0])))
        }
        LayerKind::Dropout { p } => {
            expect_inputs(node, kind, inputs, 1)?;
            if !(0.0..1.0).contains(&p) {
                return Err(bad(node, "p", format!("is {p}; it must lie in [0, 1)")));
            }
            Ok((inputs[0].clone(), 0))
        }
        LayerKind::MaxPool2d {
            kernel_size,
            stride,
            padding,
            dilation,
            ceil_mode,
        } => {
            expect_inputs(node, kind, inputs, 1)?;
            positive2(node, "kernel_size", kernel_size)?;
            positive2(node, "stride", stride)?;
            positive2(node, "dilation", dilation)?;
            for i in 0..2 {
                if 2 * padding[i] as u128 > dilation[i] as u128 * (kernel_size[i] as u128 - 1) + 1 {
                    return Err(bad(
                        node,
                        "padding",
                        format!(
                            "is {padding:?}; it may be at most half the (dilated) window {kernel_size:?}"
                        ),
                    ));
                }
            }
            pool(
                node,
                &inputs[0],
                kernel_size,
                stride,
                padding,
                dilation,
                ceil_mode,
            )
        }
        LayerKind::AvgPool2d {
            kernel_size,
            stride,
            padding,
            ceil_mode,
            ..
        } => {
            expect_inputs(node, kind, inputs, 1)?;
            positive2(node, "kernel_size", kernel_size)?;
            positive2(node, "stride", stride)?;
            for i in 0..2 {
                if 2 * padding[i] as u128 > kernel_size[i] as u128 {
                    return Err(bad(
                        node,
                        "padding",
                        format!(
                            "is {padding:?}; it may be at most half the window {kernel_size:?}"
                        ),
                    ));
                }
            }
            pool(
                node,
                &inputs[0],
                kernel_size,
                stride,
                padding,
                [1, 1],
                ceil_mode,
            )
        }
        LayerKind::AdaptiveAvgPool2d { output_size } => {
            expect_inputs(node, kind, inputs, 1)?;
            positive2(node, "output_size", output_size)?;
            let [c, _, _] = chw(node, &inputs[0])?;
            Ok((
                vec![c, output_size[0], output_size[1]],
                elements(&inputs[0]),
            ))
        }
        LayerKind::Flatten => {
            expect_inputs(node, kind, inputs, 1)?;
            let n = elements(&inputs[0]);
            let n =
                usize::try_from(n).map_err(|_| bad(node, "input", "is too large to flatten"))?;
            Ok((vec![n], 0))
        }
        LayerKind::Add => {
            at_least_two(node, kind, inputs)?;
            for shape in &inputs[1..] {
                if *shape != inputs[0] {
                    return Err(ModelError::ShapeMismatch {
                        node: node.to_string(),
                        expected: format!("{:?}, the shape of its first input", inputs[0]),
                        got: shape.clone(),
                        hint: "every input of an add must have the same shape",
                    });
                }
            }
            let extra = (inputs.len() - 1) as u64;
            Ok((inputs[0].clone(), extra * elements(&inputs[0])))
        }
        LayerKind::Concat => {
            at_least_two(node, kind, inputs)?;
            let first = &inputs[0];
            let mut channels = 0usize;
            for shape in inputs {
                if shape.len() != first.len() || shape[1..] != first[1..] {
                    return Err(ModelError::ShapeMismatch {
                        node: node.to_string(),
                        expected: format!(
                            "[_, {:?}...], matching its first input {first:?} after the channels",
                            &first[1..]
                        ),
                        got: shape.clone(),
                        hint: "concatenated inputs may differ only in their channel count",
                    });
                }
                channels = channels
                    .checked_add(shape[0])
                    .ok_or_else(|| bad(node, "inputs", "have too many channels in total"))?;
            }
            let mut out = first.clone();
            out[0] = channels;
            Ok((out, 0))
        }
    }
}

fn at_least_two(node: &str, kind: &LayerKind, inputs: &[Shape]) -> Result<(), ModelError> {
    if inputs.len() < 2 {
        return Err(ModelError::InputCount {
            node: node.to_string(),
            kind: kind.name(),
            expected: "at least 2",
            got: inputs.len(),
        });
    }
    Ok(())
}

fn pool(
    node: &str,
    input: &[usize],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
) -> Result<(Shape, u64), ModelError> {
    let [c, h, w] = chw(node, input)?;
    let ho = window_out(
        node,
        h,
        kernel[0],
        stride[0],
        padding[0],
        dilation[0],
        ceil_mode,
    )?;
    let wo = window_out(
        node,
        w,
        kernel[1],
        stride[1],
        padding[1],
        dilation[1],
        ceil_mode,
    )?;
    let out = vec![c, ho, wo];
    let flops = elements(&out)
        .saturating_mul(kernel[0] as u64)
        .saturating_mul(kernel[1] as u64);
    Ok((out, flops))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(in_channels: usize, out_channels: usize, k: usize, s: usize, p: usize) -> LayerKind {
        LayerKind::Conv2d {
            in_channels,
            out_channels,
            kernel_size: [k, k],
            stride: [s, s],
            padding: [p, p],
            dilation: [1, 1],
            groups: 1,
            bias: true,
        }
    }

    #[test]
    fn conv_shape_flops_params() {
        let spec = LayerSpec::infer("c", conv(3, 64, 11, 4, 2), vec![vec![3, 224, 224]])
            .expect("valid conv");
        assert_eq!(spec.output_shape, vec![64, 55, 55]);
        assert_eq!(spec.params, 64 * 3 * 121 + 64);
        assert_eq!(spec.out_bytes, 64 * 55 * 55 * 4);
        assert_eq!(spec.flops, 64 * 55 * 55 * (2 * 3 * 121 + 1));
    }

    #[test]
    fn channel_mismatch_names_node_and_shapes() {
        let err = LayerSpec::infer("features.3", conv(64, 192, 5, 1, 2), vec![vec![32, 27, 27]])
            .expect_err("wrong channels");
        let msg = err.to_string();
        assert!(msg.contains("features.3"), "{msg}");
        assert!(
            msg.contains("[32, 27, 27]") && msg.contains("64 channels"),
            "{msg}"
        );
    }

    #[test]
    fn ceil_mode_pool_matches_pytorch() {
        let pool = |k, s, p, ceil| LayerKind::MaxPool2d {
            kernel_size: [k, k],
            stride: [s, s],
            padding: [p, p],
            dilation: [1, 1],
            ceil_mode: ceil,
        };
        let out = |kind, h| {
            LayerSpec::infer("p", kind, vec![vec![1, h, h]])
                .expect("valid pool")
                .output_shape[1]
        };
        // GoogLeNet's pools at 224: 112 -> 56 -> 28 -> 14 -> 7 with ceil_mode.
        assert_eq!(out(pool(3, 2, 0, true), 112), 56);
        assert_eq!(out(pool(2, 2, 0, true), 14), 7);
        assert_eq!(out(pool(3, 2, 0, false), 55), 27);
        // The last window must start inside the input or the left padding: 3 with k=2 s=2 p=1
        // would give 3 windows by rounding up, but the third would start in the right padding.
        assert_eq!(out(pool(2, 2, 1, true), 3), 2);
        assert_eq!(out(pool(3, 2, 1, true), 6), 4);
        assert_eq!(out(pool(2, 2, 0, true), 5), 3);
    }

    #[test]
    fn too_small_input_is_an_error() {
        let err =
            LayerSpec::infer("c", conv(3, 8, 7, 1, 0), vec![vec![3, 4, 4]]).expect_err("too small");
        assert!(matches!(err, ModelError::ShapeMismatch { .. }), "{err}");
    }

    #[test]
    fn zero_stride_and_bad_groups_are_errors() {
        let mut kind = conv(4, 8, 3, 1, 1);
        if let LayerKind::Conv2d { stride, .. } = &mut kind {
            *stride = [0, 1];
        }
        assert!(LayerSpec::infer("c", kind, vec![vec![4, 8, 8]]).is_err());
        let mut kind = conv(4, 8, 3, 1, 1);
        if let LayerKind::Conv2d { groups, .. } = &mut kind {
            *groups = 3;
        }
        let err = LayerSpec::infer("c", kind, vec![vec![4, 8, 8]]).expect_err("bad groups");
        assert!(err.to_string().contains("groups"), "{err}");
    }

    #[test]
    fn concat_and_add_check_shapes() {
        let cat = LayerSpec::infer("cat", LayerKind::Concat, vec![vec![2, 4, 4], vec![3, 4, 4]])
            .expect("valid concat");
        assert_eq!(cat.output_shape, vec![5, 4, 4]);
        assert!(
            LayerSpec::infer("cat", LayerKind::Concat, vec![vec![2, 4, 4], vec![3, 5, 4]]).is_err()
        );
        assert!(
            LayerSpec::infer("add", LayerKind::Add, vec![vec![2, 4, 4], vec![3, 4, 4]]).is_err()
        );
        assert!(LayerSpec::infer("add", LayerKind::Add, vec![vec![2, 4, 4]]).is_err());
    }

    #[test]
    fn huge_shapes_do_not_overflow() {
        let err = LayerSpec::input("input", vec![usize::MAX, usize::MAX, 2]).expect_err("too big");
        assert!(err.to_string().contains("too large"), "{err}");
    }
}
