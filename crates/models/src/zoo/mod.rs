//! The model zoo: LeNet-5 and six torchvision architectures, exactly as torchvision builds them.
//!
//! Node ids are torchvision's module paths, so weight keys are `"{id}.weight"` and so on;
//! functional operations (`flatten`, residual `add`, inception `concat`, the ReLUs that torchvision
//! applies functionally or through one shared module) get nodes of their own.

mod alexnet;
mod googlenet;
mod lenet;
mod mobilenet;
mod resnet;
mod vgg;

pub use alexnet::alexnet;
pub use googlenet::googlenet;
pub use lenet::lenet;
pub use mobilenet::mobilenet_v2;
pub use resnet::{resnet18, resnet50};
pub use vgg::vgg16;

use crate::error::ModelError;
use crate::layer::{LayerKind, Shape};
use crate::net::{Net, NetBuilder};

/// The zoo's model names, as the CLIs accept them.
pub const MODELS: [&str; 7] = [
    "lenet",
    "alexnet",
    "vgg16",
    "mobilenet_v2",
    "resnet18",
    "resnet50",
    "googlenet",
];

/// The input shape a zoo model is defined for: `[1, 32, 32]` for LeNet, `[3, 224, 224]` otherwise.
pub fn default_input_shape(name: &str) -> Result<Shape, ModelError> {
    match name {
        "lenet" => Ok(vec![1, 32, 32]),
        _ if MODELS.contains(&name) => Ok(vec![3, 224, 224]),
        _ => Err(unknown(name)),
    }
}

/// Builds a zoo model for its default input shape.
pub fn build(name: &str) -> Result<Net, ModelError> {
    build_with_input(name, default_input_shape(name)?)
}

/// Builds a zoo model for another input size (e.g. `[3, 64, 64]` to keep tests fast).
///
/// The architecture, and so the parameter count, is unchanged; an input too small for the
/// network's windows is an error that names the first node it does not fit.
pub fn build_with_input(name: &str, input_shape: Shape) -> Result<Net, ModelError> {
    match name {
        "lenet" => lenet(input_shape),
        "alexnet" => alexnet(input_shape),
        "vgg16" => vgg16(input_shape),
        "mobilenet_v2" => mobilenet_v2(input_shape),
        "resnet18" => resnet18(input_shape),
        "resnet50" => resnet50(input_shape),
        "googlenet" => googlenet(input_shape),
        _ => Err(unknown(name)),
    }
}

fn unknown(name: &str) -> ModelError {
    ModelError::UnknownName {
        what: "model",
        name: name.to_string(),
        choices: MODELS.join(", "),
    }
}

/// Channel count of an added node's output (its first dimension).
fn channels(b: &NetBuilder, x: usize) -> usize {
    b.shape(x).and_then(|s| s.first().copied()).unwrap_or(0)
}

/// Hyper-parameters of a square convolution.
#[derive(Clone, Copy)]
struct Conv {
    out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    groups: usize,
    bias: bool,
}

impl Conv {
    /// A biased convolution with stride 1, no padding and one group.
    fn new(out: usize, kernel: usize) -> Conv {
        Conv {
            out,
            kernel,
            stride: 1,
            padding: 0,
            groups: 1,
            bias: true,
        }
    }
    fn stride(self, stride: usize) -> Conv {
        Conv { stride, ..self }
    }
    fn padding(self, padding: usize) -> Conv {
        Conv { padding, ..self }
    }
    fn groups(self, groups: usize) -> Conv {
        Conv { groups, ..self }
    }
    fn no_bias(self) -> Conv {
        Conv {
            bias: false,
            ..self
        }
    }
}

fn conv(b: &mut NetBuilder, id: &str, x: usize, c: Conv) -> Result<usize, ModelError> {
    let kind = LayerKind::Conv2d {
        in_channels: channels(b, x),
        out_channels: c.out,
        kernel_size: [c.kernel; 2],
        stride: [c.stride; 2],
        padding: [c.padding; 2],
        dilation: [1, 1],
        groups: c.groups,
        bias: c.bias,
    };
    b.add(id, kind, &[x])
}

fn batch_norm(b: &mut NetBuilder, id: &str, x: usize, eps: f64) -> Result<usize, ModelError> {
    let kind = LayerKind::BatchNorm2d {
        num_features: channels(b, x),
        eps,
    };
    b.add(id, kind, &[x])
}

fn relu(b: &mut NetBuilder, id: &str, x: usize) -> Result<usize, ModelError> {
    b.add(id, LayerKind::Relu, &[x])
}

fn max_pool(
    b: &mut NetBuilder,
    id: &str,
    x: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    ceil_mode: bool,
) -> Result<usize, ModelError> {
    let kind = LayerKind::MaxPool2d {
        kernel_size: [kernel; 2],
        stride: [stride; 2],
        padding: [padding; 2],
        dilation: [1, 1],
        ceil_mode,
    };
    b.add(id, kind, &[x])
}

fn adaptive_avg_pool(
    b: &mut NetBuilder,
    id: &str,
    x: usize,
    size: usize,
) -> Result<usize, ModelError> {
    b.add(
        id,
        LayerKind::AdaptiveAvgPool2d {
            output_size: [size, size],
        },
        &[x],
    )
}

fn flatten(b: &mut NetBuilder, x: usize) -> Result<usize, ModelError> {
    b.add("flatten", LayerKind::Flatten, &[x])
}

fn dropout(b: &mut NetBuilder, id: &str, x: usize, p: f64) -> Result<usize, ModelError> {
    b.add(id, LayerKind::Dropout { p }, &[x])
}

fn linear(b: &mut NetBuilder, id: &str, x: usize, out: usize) -> Result<usize, ModelError> {
    let kind = LayerKind::Linear {
        in_features: channels(b, x),
        out_features: out,
        bias: true,
    };
    b.add(id, kind, &[x])
}

#[cfg(test)]
mod tests {
    use super::*;
    use partition_core::{Graph, LayerGraph};

    fn params(name: &str) -> u64 {
        build(name).expect("zoo model builds").param_count()
    }

    #[test]
    fn torchvision_parameter_counts() {
        assert_eq!(params("alexnet"), 61_100_840);
        assert_eq!(params("vgg16"), 138_357_544);
        assert_eq!(params("resnet18"), 11_689_512);
        assert_eq!(params("resnet50"), 25_557_032);
        assert_eq!(params("mobilenet_v2"), 3_504_872);
        assert_eq!(params("googlenet"), 6_624_904);
    }

    #[test]
    fn lenet5_is_the_classic_shape() {
        let net = build("lenet").expect("lenet");
        // C1 156 + C3 2,416 + C5 48,120 + F6 10,164 + output 850 (full C3 connections).
        assert_eq!(net.param_count(), 61_706);
        assert_eq!(net.output_shape(), &[10]);
        let c5 = net.index_of("classifier.0").expect("C5");
        assert_eq!(net.nodes()[c5].spec().input_shapes, vec![vec![400]]);
    }

    #[test]
    fn every_model_outputs_its_classes_and_is_a_valid_graph() {
        for name in MODELS {
            let net = build(name).expect("zoo model builds");
            let classes = if name == "lenet" { 10 } else { 1000 };
            assert_eq!(net.output_shape(), &[classes], "{name}");
            assert_eq!(net.node_id(0), "input");
            let zeros = vec![0.0; net.node_count()];
            let graph = Graph::from_layer_graph(name, &net, &zeros, &zeros)
                .expect("a zoo model is a valid partition graph");
            assert_eq!(graph.len(), net.len());
        }
    }

    #[test]
    fn chains_and_dags() {
        for (name, chain) in [
            ("lenet", true),
            ("alexnet", true),
            ("vgg16", true),
            ("mobilenet_v2", false),
            ("resnet18", false),
            ("resnet50", false),
            ("googlenet", false),
        ] {
            assert_eq!(build(name).expect("builds").is_chain(), chain, "{name}");
        }
    }

    #[test]
    fn ids_follow_torchvision_paths() {
        let r18 = build("resnet18").expect("resnet18");
        for id in [
            "conv1",
            "layer1.0.conv1",
            "layer1.0.add",
            "layer2.0.downsample.0",
            "fc",
        ] {
            r18.index_of(id).expect(id);
        }
        let g = build("googlenet").expect("googlenet");
        for id in [
            "conv1.conv",
            "inception3a.branch2.1.bn",
            "inception3a.concat",
            "fc",
        ] {
            g.index_of(id).expect(id);
        }
        let m = build("mobilenet_v2").expect("mobilenet_v2");
        for id in [
            "features.0.0",
            "features.1.conv.1",
            "features.3.add",
            "classifier.1",
        ] {
            m.index_of(id).expect(id);
        }
    }

    #[test]
    fn reduced_inputs_build_and_too_small_fails() {
        for name in [
            "alexnet",
            "vgg16",
            "resnet18",
            "resnet50",
            "mobilenet_v2",
            "googlenet",
        ] {
            let net = build_with_input(name, vec![3, 64, 64]).expect("64x64 builds");
            assert_eq!(net.output_shape(), &[1000], "{name}");
        }
        let err = build_with_input("alexnet", vec![3, 4, 4]).expect_err("too small");
        assert!(err.to_string().contains("features.0"), "{err}");
        assert!(build("nope").is_err());
    }
}
