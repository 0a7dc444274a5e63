//! The predictor's layer classes: one regressor per class.

use models::LayerKind;
use serde::{Deserialize, Serialize};

/// A group of layer kinds that share a cost model (and a sweep, a CSV file and a regressor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LayerClass {
    /// Dense convolution (`groups = 1`).
    Conv,
    /// Grouped or depthwise convolution (`groups > 1`).
    GroupedConv,
    /// Fully connected layer.
    Linear,
    /// Batch normalisation (inference).
    BatchNorm,
    /// ReLU and ReLU6.
    Activation,
    /// Max pooling.
    MaxPool,
    /// Average and adaptive average pooling.
    AvgPool,
    /// Element-wise sum of several tensors.
    Add,
    /// Concatenation along channels.
    Concat,
}

impl LayerClass {
    /// Every class, in sweep order.
    pub const ALL: [LayerClass; 9] = [
        LayerClass::Conv,
        LayerClass::GroupedConv,
        LayerClass::Linear,
        LayerClass::BatchNorm,
        LayerClass::Activation,
        LayerClass::MaxPool,
        LayerClass::AvgPool,
        LayerClass::Add,
        LayerClass::Concat,
    ];

    /// The class of a layer kind, or `None` for kinds that cost nothing to run: the input,
    /// dropout (the identity at inference) and flatten (a reshape of metadata).
    pub fn of(kind: &LayerKind) -> Option<LayerClass> {
        Some(match kind {
            LayerKind::Conv2d { groups: 1, .. } => LayerClass::Conv,
            LayerKind::Conv2d { .. } => LayerClass::GroupedConv,
            LayerKind::Linear { .. } => LayerClass::Linear,
            LayerKind::BatchNorm2d { .. } => LayerClass::BatchNorm,
            LayerKind::Relu | LayerKind::Relu6 => LayerClass::Activation,
            LayerKind::MaxPool2d { .. } => LayerClass::MaxPool,
            LayerKind::AvgPool2d { .. } | LayerKind::AdaptiveAvgPool2d { .. } => {
                LayerClass::AvgPool
            }
            LayerKind::Add => LayerClass::Add,
            LayerKind::Concat => LayerClass::Concat,
            LayerKind::Input | LayerKind::Dropout { .. } | LayerKind::Flatten => return None,
        })
    }

    /// The name used for files and reports (`conv`, `grouped_conv`, ...).
    pub fn name(self) -> &'static str {
        match self {
            LayerClass::Conv => "conv",
            LayerClass::GroupedConv => "grouped_conv",
            LayerClass::Linear => "linear",
            LayerClass::BatchNorm => "batch_norm",
            LayerClass::Activation => "activation",
            LayerClass::MaxPool => "max_pool",
            LayerClass::AvgPool => "avg_pool",
            LayerClass::Add => "add",
            LayerClass::Concat => "concat",
        }
    }
}
