//! Running a part of the network: its nodes in topological order, from the boundary tensors
//! handed in, each tensor kept until the part's last node that reads it and exported if a node
//! outside the part reads it. An optional observer is told as each node finishes (for timing
//! nodes inside a real pass); without one the loop pays a single branch per node.

use super::input::Input;
use super::shortcut::Shortcuts;
use super::{Activations, Model};
use crate::error::ModelError;
use crate::net::Node;

/// Told the index of each node of a part as soon as it has run, in execution order.
pub(crate) type NodeObserver<'a> = &'a mut dyn FnMut(usize) -> Result<(), ModelError>;

/// The tensors of a part while it runs.
struct Tensors<'a> {
    /// Which nodes are in the part.
    part: &'a [bool],
    /// For each node, how many reads by the part's nodes its output still has to serve.
    uses: Vec<usize>,
    /// The outputs of the part's nodes that are still to be read.
    values: Vec<Option<Input>>,
    /// The tensors handed in from outside the part.
    boundary: Activations,
    /// Whether an output read more than once is shared as host data (see [`Input`]), which
    /// the crate's own kernels read in place.
    share_host: bool,
}

impl Tensors<'_> {
    /// Node `u`'s output for one read by a node of the part, or `None` if nobody computed or
    /// handed it in. The last reader takes the tensor, so the backend may reuse its buffer;
    /// with `share_host`, the first of several readers turns it into shared host data.
    fn read(&mut self, u: usize) -> Option<Input> {
        self.uses[u] -= 1;
        let last = self.uses[u] == 0;
        if !self.part[u] {
            let value = if last {
                self.boundary.remove(&u)
            } else {
                self.boundary.get(&u).cloned()
            };
            return value.map(Input::Value);
        }
        let slot = &mut self.values[u];
        if last {
            return slot.take();
        }
        if self.share_host {
            *slot = slot.take().map(|input| match input {
                Input::Value(value) => Input::share(value),
                host => host,
            });
        }
        slot.clone()
    }
}

impl Model {
    /// [`Model::run_part`] on the calling thread; with `export_all`, every node's output is
    /// returned, not only those read outside the part. `observe`, if given, is called with each
    /// node's index once the node has run and its output has been stored (the input node
    /// included, once its tensor has been taken from the boundary); an error from it ends the
    /// run.
    pub(super) fn run_part_here(
        &self,
        part: &[bool],
        boundary: Activations,
        export_all: bool,
        mut observe: Option<NodeObserver<'_>>,
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
        let exported = self.exported(part, export_all);
        let shortcuts = self.shortcuts(part, &exported);
        let mut tensors = Tensors {
            part,
            uses: self.reads_within(part),
            values: vec![None; n],
            boundary,
            share_host: self.own_kernels,
        };
        let mut out = Activations::new();
        for v in (0..n).filter(|&v| part[v]) {
            let y = if v == 0 {
                let node = &net.nodes()[v];
                let x = tensors
                    .boundary
                    .remove(&0)
                    .ok_or_else(|| ModelError::MissingBoundary {
                        node: node.id().to_string(),
                        input: node.id().to_string(),
                    })?;
                Input::Value(x)
            } else {
                self.run_in_part(v, batch, &shortcuts, &mut tensors)?
            };
            if exported[v] {
                out.insert(v, y.clone().into_value(&self.device)?);
            }
            if tensors.uses[v] > 0 {
                tensors.values[v] = Some(y);
            }
            if let Some(observe) = observe.as_mut() {
                observe(v)?;
            }
        }
        Ok(out)
    }

    /// For each node, how many times the nodes of `part` read its output.
    fn reads_within(&self, part: &[bool]) -> Vec<usize> {
        let n = self.net.len();
        let mut uses = vec![0usize; n];
        for v in (0..n).filter(|&v| part[v]) {
            for &u in self.net.nodes()[v].inputs() {
                uses[u] += 1;
            }
        }
        uses
    }

    /// Which nodes' outputs the part returns: with `export_all` all of its nodes', else those a
    /// node outside the part reads, and the network's output.
    pub(super) fn exported(&self, part: &[bool], export_all: bool) -> Vec<bool> {
        let net = &self.net;
        (0..net.len())
            .map(|v| {
                part[v]
                    && (export_all || v == net.sink() || net.consumers(v).iter().any(|&w| !part[w]))
            })
            .collect()
    }

    /// Runs node `v` (not the input) of the part on its inputs from `tensors`, and checks its
    /// output's shape: `batch` samples of the node's spec. A convolution that takes in an
    /// addition (see [`Shortcuts`]) also reads the addition's other input, and that addition
    /// then passes on the sum, reading nothing else.
    fn run_in_part(
        &self,
        v: usize,
        batch: usize,
        shortcuts: &Shortcuts,
        tensors: &mut Tensors<'_>,
    ) -> Result<Input, ModelError> {
        let node = &self.net.nodes()[v];
        let mut read = |u: usize| {
            tensors.read(u).ok_or_else(|| ModelError::MissingBoundary {
                node: node.id().to_string(),
                input: self.net.nodes()[u].id().to_string(),
            })
        };
        let y = if let Some(sum) = shortcuts.sum_of(v) {
            read(sum)?
        } else if let (Some(shortcut), &[u]) = (shortcuts.of_conv(v), node.inputs()) {
            let x = read(u)?;
            let other = read(shortcut.other)?;
            self.conv_onto(v, x, other, shortcut.activation)?
        } else {
            let inputs = node
                .inputs()
                .iter()
                .map(|&u| read(u))
                .collect::<Result<_, _>>()?;
            self.apply(v, inputs)?
        };
        check_output(node, batch, &y.shape())?;
        Ok(y)
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
}

/// Checks that `node`'s output, of `shape`, is `batch` samples of the shape its spec says.
fn check_output(node: &Node, batch: usize, shape: &[usize]) -> Result<(), ModelError> {
    let expected: Vec<usize> = std::iter::once(batch)
        .chain(node.spec().output_shape.iter().copied())
        .collect();
    if shape != expected {
        return Err(ModelError::Backend(format!(
            "node `{}` produced shape {:?} but its spec says {expected:?}; the backend's {} differs from PyTorch's",
            node.id(),
            shape,
            node.spec().kind.name()
        )));
    }
    Ok(())
}
