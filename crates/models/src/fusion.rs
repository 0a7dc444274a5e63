//! Which layers run inside another: a batch norm folded into the convolution before it, and a
//! ReLU or ReLU6 applied in that convolution's epilogue, or in the same pass as the addition
//! before it (a residual block's add and ReLU).
//!
//! The [`Fusion`] of a network is a pure function of its [`Net`], so an edge and a cloud that
//! load the same network agree on it. A fused group is a convolution followed by its batch norm
//! and/or its activation, or an addition followed by its activation, each the only consumer of
//! the node before it. The group's output is computed by its first node and becomes that node's
//! value; the absorbed nodes pass it on unchanged and cost nothing (their timings, predictions
//! and graph costs are zero).
//!
//! **Cuts and fusion**: a cut may fall anywhere, also inside a group. The tensor that crosses
//! at the convolution or at an absorbed node is the same group output, of the same shape and
//! size as the planner assumes, and the absorbed nodes on the far side pass it through, so every
//! cut computes the same result as the unfused network. (A cut never puts a convolution on the
//! cloud and its absorbed nodes on the edge: plans are closed under successors.)

use crate::layer::LayerKind;
use crate::net::Net;

/// The activation a fused convolution applies to its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FusedActivation {
    /// None: the group has no activation.
    Identity,
    /// ReLU.
    Relu,
    /// ReLU6.
    Relu6,
}

/// The fused groups of one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fusion {
    /// For each node, the convolution or addition it is absorbed into, if any.
    absorbed_into: Vec<Option<usize>>,
    /// For each node, the batch norm folded into it (convolutions only).
    norm: Vec<Option<usize>>,
    /// For each node, the activation applied to its output (convolutions and additions only).
    activation: Vec<FusedActivation>,
    /// For each addition, the convolution that can add it in its epilogue (see
    /// [`Fusion::shortcut_conv`]).
    shortcut: Vec<Option<usize>>,
}

impl Fusion {
    /// No group at all: every node runs as itself (the plain reference path).
    pub fn none(net: &Net) -> Fusion {
        Fusion {
            absorbed_into: vec![None; net.len()],
            norm: vec![None; net.len()],
            activation: vec![FusedActivation::Identity; net.len()],
            shortcut: vec![None; net.len()],
        }
    }

    /// Every convolution → batch norm → activation and addition → activation group of
    /// `net`, where each absorbed node is the only consumer of the node before it.
    pub fn of(net: &Net) -> Fusion {
        let mut fusion = Fusion::none(net);
        let only_consumer = |v: usize| match net.consumers(v) {
            [w] => Some(*w),
            _ => None,
        };
        for (v, node) in net.nodes().iter().enumerate() {
            let mut tail = v;
            match node.spec().kind {
                LayerKind::Conv2d { .. } => {}
                LayerKind::Add => {
                    if let Some(act) = only_consumer(v) {
                        fusion.absorb_activation(net, v, act);
                    }
                    continue;
                }
                _ => continue,
            }
            if let Some(bn) = only_consumer(v)
                .filter(|&w| matches!(net.nodes()[w].spec().kind, LayerKind::BatchNorm2d { .. }))
            {
                fusion.norm[v] = Some(bn);
                fusion.absorbed_into[bn] = Some(v);
                tail = bn;
            }
            if let Some(act) = only_consumer(tail) {
                fusion.absorb_activation(net, v, act);
            }
        }
        for (v, node) in net.nodes().iter().enumerate() {
            if matches!(node.spec().kind, LayerKind::Add) {
                fusion.shortcut[v] = fusion.find_shortcut(net, v);
            }
        }
        fusion
    }

    /// Of addition `add`'s inputs, the convolution group (without an activation of its own,
    /// read by nothing but the addition) whose convolution runs last, provided the other input
    /// runs before it.
    fn find_shortcut(&self, net: &Net, add: usize) -> Option<usize> {
        let &[a, b] = net.nodes()[add].inputs() else {
            return None;
        };
        [(a, b), (b, a)]
            .into_iter()
            .filter_map(|(tail, other)| {
                let conv = self.absorbed_into(tail).unwrap_or(tail);
                let fits = matches!(net.nodes()[conv].spec().kind, LayerKind::Conv2d { .. })
                    && self.activation_of(conv) == FusedActivation::Identity
                    && net.consumers(tail) == [add]
                    && other < conv;
                fits.then_some(conv)
            })
            .max()
    }

    /// Makes node `v` apply node `act`'s activation, when `act` is a ReLU or ReLU6.
    fn absorb_activation(&mut self, net: &Net, v: usize, act: usize) {
        let activation = match net.nodes()[act].spec().kind {
            LayerKind::Relu => FusedActivation::Relu,
            LayerKind::Relu6 => FusedActivation::Relu6,
            _ => return,
        };
        self.activation[v] = activation;
        self.absorbed_into[act] = Some(v);
    }

    /// The convolution or addition that node `v` runs inside, or `None` when it runs as itself.
    pub fn absorbed_into(&self, v: usize) -> Option<usize> {
        self.absorbed_into.get(v).copied().flatten()
    }

    /// Whether node `v` costs nothing because another node computes it.
    pub fn is_absorbed(&self, v: usize) -> bool {
        self.absorbed_into(v).is_some()
    }

    /// The batch norm folded into convolution `v`, if any.
    pub fn norm_of(&self, v: usize) -> Option<usize> {
        self.norm.get(v).copied().flatten()
    }

    /// The activation convolution or addition `v` applies to its output.
    pub fn activation_of(&self, v: usize) -> FusedActivation {
        self.activation
            .get(v)
            .copied()
            .unwrap_or(FusedActivation::Identity)
    }

    /// For addition `v`, the convolution that adds it in its epilogue, with the addition's
    /// activation, where the two run on one side (on flex with the fast kernels, for the
    /// kernels that can: all but the direct and pixel-major ones). The addition's other input
    /// runs before the convolution, and the convolution's group (no activation of its own)
    /// feeds nothing but the addition; at a cut between the two, each runs as itself. `None`
    /// for any other node.
    pub fn shortcut_conv(&self, v: usize) -> Option<usize> {
        self.shortcut.get(v).copied().flatten()
    }

    /// How many nodes run inside another.
    pub fn absorbed_count(&self) -> usize {
        self.absorbed_into.iter().flatten().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo;

    #[test]
    fn resnet_blocks_fold_their_norms_and_relus_into_convolutions_and_adds() {
        let net = zoo::build("resnet18").expect("resnet18");
        let fusion = Fusion::of(&net);
        let at = |id: &str| net.index_of(id).expect("node");
        let conv1 = at("layer1.0.conv1");
        assert_eq!(fusion.absorbed_into(at("layer1.0.bn1")), Some(conv1));
        assert_eq!(fusion.norm_of(conv1), Some(at("layer1.0.bn1")));
        assert_eq!(fusion.activation_of(conv1), FusedActivation::Relu);
        // The second conv's batch norm feeds the residual add, so only the norm is folded.
        let conv2 = at("layer1.0.conv2");
        assert_eq!(fusion.absorbed_into(at("layer1.0.bn2")), Some(conv2));
        assert_eq!(fusion.activation_of(conv2), FusedActivation::Identity);
        assert!(!fusion.is_absorbed(conv1) && !fusion.is_absorbed(at("fc")));
        // The block's add applies the ReLU after it.
        let add = at("layer1.0.add");
        assert_eq!(fusion.absorbed_into(at("layer1.0.relu2")), Some(add));
        assert_eq!(fusion.activation_of(add), FusedActivation::Relu);
        // 20 convolutions, each with its norm; 9 of them (the stem and each block's first)
        // with their ReLU; 8 adds with theirs.
        assert_eq!(fusion.absorbed_count(), 20 + 9 + 8);
        assert_eq!(Fusion::none(&net).absorbed_count(), 0);
        // The add can run in the epilogue of the block's second convolution; in a block with a
        // downsampling shortcut, in that of the downsample, which runs last in node order.
        assert_eq!(fusion.shortcut_conv(add), Some(conv2));
        let down = at("layer2.0.add");
        assert_eq!(
            fusion.shortcut_conv(down),
            Some(at("layer2.0.downsample.0"))
        );
        assert_eq!(fusion.shortcut_conv(conv2), None);
        assert_eq!(Fusion::none(&net).shortcut_conv(add), None);
    }

    #[test]
    fn vgg_fuses_relus_and_mobilenet_relu6s() {
        let vgg = zoo::build("vgg16").expect("vgg16");
        let fusion = Fusion::of(&vgg);
        let conv = vgg.index_of("features.0").expect("conv");
        assert_eq!(fusion.activation_of(conv), FusedActivation::Relu);
        assert_eq!(fusion.absorbed_count(), 13);
        let mobilenet = zoo::build("mobilenet_v2").expect("mobilenet");
        let fusion = Fusion::of(&mobilenet);
        let stem = mobilenet.index_of("features.0.0").expect("stem");
        assert_eq!(fusion.activation_of(stem), FusedActivation::Relu6);
    }
}
