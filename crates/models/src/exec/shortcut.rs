//! Residual additions taken into the convolution before them: where a part runs both a
//! convolution and the addition its output feeds (a residual block's last convolution, its
//! batch norm folded in, and the block's shortcut), the convolution's kernel adds the shortcut
//! and applies the addition's activation as it stores its outputs, and the addition passes the
//! sum on. The feature map is then written once instead of being written, read twice and
//! written again.
//!
//! Which additions are taken in depends on the part, not only on the network: the convolution's
//! own output must be needed by nothing but the addition (no node outside the part reads it, and
//! the part does not return it), and the shortcut must be at hand when the convolution runs (a
//! boundary tensor, or the output of a node that runs before it). A cut between the convolution
//! and the addition therefore still carries the convolution's own output, and every part
//! computes what the unfused network does.

use super::Model;
use super::prepare::Params;
use crate::kernels::Activation;

/// An addition taken into a convolution.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shortcut {
    /// The addition's other input: the tensor the convolution adds.
    pub other: usize,
    /// The activation the addition applies to the sum.
    pub activation: Activation,
}

/// The additions one part runs inside convolutions.
#[derive(Debug)]
pub(super) struct Shortcuts {
    /// For each convolution that takes in an addition: what it adds.
    by_conv: Vec<Option<Shortcut>>,
    /// For each addition taken into a convolution: its input that carries the sum (the last
    /// node of the convolution's fused group).
    sum_from: Vec<Option<usize>>,
}

impl Shortcuts {
    /// What convolution `v` adds in its epilogue, if anything.
    pub(super) fn of_conv(&self, v: usize) -> Option<Shortcut> {
        self.by_conv.get(v).copied().flatten()
    }

    /// For an addition taken into a convolution, its input that already holds the sum.
    pub(super) fn sum_of(&self, v: usize) -> Option<usize> {
        self.sum_from.get(v).copied().flatten()
    }
}

impl Model {
    /// The additions that the nodes of `part` run inside convolutions, where the part returns
    /// the outputs flagged in `exported`: each addition [`Fusion::shortcut_conv`] pairs with a
    /// convolution whose kernel can add it, when the part runs both, returns nothing of the
    /// convolution's group, and has the addition's other input at hand (a boundary tensor, or
    /// computed before the convolution).
    ///
    /// [`Fusion::shortcut_conv`]: crate::Fusion::shortcut_conv
    pub(super) fn shortcuts(&self, part: &[bool], exported: &[bool]) -> Shortcuts {
        let n = self.net.len();
        let mut shortcuts = Shortcuts {
            by_conv: vec![None; n],
            sum_from: vec![None; n],
        };
        if !self.own_kernels {
            return shortcuts;
        }
        for add in (0..n).filter(|&v| part[v]) {
            let Some(conv) = self.fusion.shortcut_conv(add) else {
                continue;
            };
            let &[a, b] = self.net.nodes()[add].inputs() else {
                continue;
            };
            // The convolution and its folded batch norm (a group paired with an addition has
            // no activation of its own).
            let group = [Some(conv), self.fusion.norm_of(conv)];
            let in_group = |v: usize| group.contains(&Some(v));
            let (tail, other) = if in_group(a) { (a, b) } else { (b, a) };
            let kernel_adds = match &self.params[conv] {
                Params::Packed(kernel) => kernel.adds_residual(),
                Params::BlockedPointwise(_) => true,
                _ => false,
            };
            // The group's outputs go nowhere but into the addition.
            let group_private = group.into_iter().flatten().all(|v| part[v] && !exported[v]);
            if kernel_adds && group_private {
                shortcuts.by_conv[conv] = Some(Shortcut {
                    other,
                    activation: self.fusion.activation_of(add).into(),
                });
                shortcuts.sum_from[add] = Some(tail);
            }
        }
        shortcuts
    }
}
