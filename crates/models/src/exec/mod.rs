//! [`Model`]: a [`Net`] with its weights on a device, run whole, split, or a node at a time.
//!
//! Making a model prepares every layer's weights for the kernel that runs it (`prepare`);
//! running a part of the network walks its nodes in order, keeping each tensor until its last
//! reader (`part`); each node runs in `apply`.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::tensor::Device;

use crate::error::ModelError;
use crate::fusion::Fusion;
use crate::kernels::Kernels;
use crate::layer::LayerKind;
use crate::net::{Cut, Net};
use crate::tensor::{HostTensor, Value};
use crate::weights::Weights;

mod apply;
mod chains;
mod input;
mod part;
mod pinning;
mod prepare;
mod shortcut;
#[cfg(test)]
mod tests;
mod workers;

pub use chains::LARGEST_PLANE as BLOCKED_LARGEST_PLANE;
pub(crate) use chains::blocked_on_this_path;
pub(crate) use input::Input;
pub(crate) use part::NodeObserver;
pub use pinning::{PIN_THREADS_VAR, Pinning, pin_global_pool};
use prepare::{Params, prepare};
pub(crate) use workers::{on_worker, pass_on_worker};

/// Tensors keyed by the index of the node that produced them.
pub type Activations = BTreeMap<usize, Value>;

/// A network ready to run: its [`Net`] and every layer's weights on one device. Clones share
/// the prepared weights (they are never changed after preparation), so many sessions of one
/// model hold its weights once.
#[derive(Debug, Clone)]
pub struct Model {
    net: Net,
    device: Device,
    params: Arc<[Params]>,
    fusion: Fusion,
    /// Whether layers that have one run on the crate's own kernels (fast kernels on flex).
    own_kernels: bool,
}

impl Model {
    /// Puts `weights` (checked against the network first) on `device`, with the fast kernels.
    pub fn new(net: Net, weights: Weights, device: &Device) -> Result<Model, ModelError> {
        Model::with_kernels(net, weights, device, Kernels::Fast)
    }

    /// Puts `weights` (checked against the network first) on `device`, to run with `kernels`.
    pub fn with_kernels(
        net: Net,
        weights: Weights,
        device: &Device,
        kernels: Kernels,
    ) -> Result<Model, ModelError> {
        weights.check(&net)?;
        let fusion = match kernels {
            Kernels::Fast => Fusion::of(&net),
            Kernels::Plain => Fusion::none(&net),
        };
        let own_kernels = kernels == Kernels::Fast && *device == Device::flex();
        let params = prepare(&net, weights, &fusion, device, own_kernels)?;
        Ok(Model {
            net,
            device: device.clone(),
            params: params.into(),
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

    /// [`Model::run_cloud`] that asks `stop` after every node and, when it says so, abandons
    /// the run with [`ModelError::Stopped`]: a server drops work nobody waits for at the next
    /// node rather than at the end.
    pub fn run_cloud_until(
        &self,
        cut: &Cut,
        boundary: Activations,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<Value, ModelError> {
        if cut.is_edge_only() {
            let mut boundary = boundary;
            return self.take_sink(&mut boundary);
        }
        let mut out = pass_on_worker(|| {
            let mut check = |v: usize| {
                if stop() {
                    Err(ModelError::Stopped {
                        after: self.net.nodes()[v].id().to_string(),
                    })
                } else {
                    Ok(())
                }
            };
            self.run_part_here(cut.cloud_mask(), boundary, false, Some(&mut check))
        })?;
        self.take_sink(&mut out)
    }

    /// Runs the edge side and then the cloud side of `cut` in this process.
    pub fn run_split(&self, cut: &Cut, input: Value) -> Result<Value, ModelError> {
        let boundary = self.run_edge(cut, input)?;
        self.run_cloud(cut, boundary)
    }

    /// Takes the network's output out of `out`.
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
        pass_on_worker(|| self.run_part_here(part, boundary, false, None))
    }

    /// Runs the whole network from `input` and returns every node's output, each as a
    /// boundary at that node would carry it (a convolution's fused group's output where a
    /// batch norm or activation is folded into it). For measuring what each possible crossing
    /// tensor looks like, for example how well it compresses.
    pub fn run_all(&self, input: Value) -> Result<Activations, ModelError> {
        let all = vec![true; self.net.len()];
        pass_on_worker(|| self.run_part_here(&all, Activations::from([(0, input)]), true, None))
    }

    /// [`Model::forward`] on the calling thread, calling `observe` with each node's index as
    /// soon as the node has run, in execution order (the input node first, once its tensor is
    /// in place): the same loop as every other pass, for timing nodes inside a real one.
    pub(crate) fn forward_observed(
        &self,
        input: Value,
        observe: NodeObserver<'_>,
    ) -> Result<Value, ModelError> {
        let all = vec![true; self.net.len()];
        let mut out =
            self.run_part_here(&all, Activations::from([(0, input)]), false, Some(observe))?;
        self.take_sink(&mut out)
    }

    /// Runs one node on its input values (in the node's input order) and returns its output.
    ///
    /// The inputs' shapes are not checked here; [`Model::run_part`] does that. Use this to time
    /// single layers.
    pub fn run_node(&self, index: usize, inputs: Vec<Value>) -> Result<Value, ModelError> {
        let inputs = inputs.into_iter().map(Input::Value).collect();
        self.step(index, inputs)?.into_value(&self.device)
    }

    /// A copy of `x` of its own, as a pass hands a node its input (a shared one would be copied
    /// by kernels that work in place or on the host): blocked maps stay blocked.
    pub(crate) fn own_copy(&self, x: &Input) -> Result<Input, ModelError> {
        Ok(match x {
            Input::Blocked(maps) => Input::Blocked(Arc::new(maps.as_ref().clone())),
            other => {
                let host = other.clone().into_value(&self.device)?.to_host()?;
                Input::Value(self.upload(host)?)
            }
        })
    }

    /// [`Model::run_node`] on inputs as a pass hands them over, its output left as the node
    /// makes it (blocked maps from a convolution of a blocked chain).
    pub(crate) fn step(&self, index: usize, inputs: Vec<Input>) -> Result<Input, ModelError> {
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
}
