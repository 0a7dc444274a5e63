//! What a node is handed as an input ([`Input`]): a value, or the host data of a tensor that
//! other nodes of the part read too.
//!
//! On flex, reading a tensor's host data is free for a tensor nobody else holds, but copies it
//! for one that is shared. A feature map read by several nodes (a residual block's input, read
//! by its first convolution and by the addition; an inception module's input, read by four
//! branches) would be copied for every reader but the last. With the crate's own kernels, the
//! part's executor instead takes the host data out of the tensor once, at its first read, and
//! hands every reader that same data; the last reader gets it alone again, and may reuse its
//! buffer.
//!
//! A convolution of a blocked chain (see `chains`) hands on its output as blocked maps, which a
//! node of the other layout reads converted to NCHW.

use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::ModelError;
use crate::kernels::{BlockedMaps, recycled};
use crate::tensor::Value;

/// A node's input. (A value is a Burn tensor handle of a few hundred bytes, moved once or
/// twice per node: not worth an allocation to box.)
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Input {
    /// A value on the device.
    Value(Value),
    /// A value's host data, shared by the readers that still need it, with its shape (batch
    /// first, of rank 4 or 2).
    Host {
        /// The elements, f32 in C order.
        data: Arc<TensorData>,
        /// The shape.
        shape: Vec<usize>,
    },
    /// Feature maps in the channel-blocked layout, shared by the readers that still need them.
    Blocked(Arc<BlockedMaps>),
}

impl Input {
    /// `value`'s host data, ready to be shared (taken from the tensor without a copy when
    /// nobody else holds it).
    pub(crate) fn share(value: Value) -> Input {
        Input::Host {
            shape: value.shape(),
            data: Arc::new(host_data(value)),
        }
    }

    /// Whether the input is a batch of feature maps (`[N, C, H, W]`).
    pub(crate) fn is_map(&self) -> bool {
        match self {
            Input::Value(value) => matches!(value, Value::Map(_)),
            Input::Host { shape, .. } => shape.len() == 4,
            Input::Blocked(_) => true,
        }
    }

    /// The shape, batch first.
    pub(crate) fn shape(&self) -> Vec<usize> {
        match self {
            Input::Value(value) => value.shape(),
            Input::Host { shape, .. } => shape.clone(),
            Input::Blocked(maps) => maps.shape().to_vec(),
        }
    }

    /// The input as a value on `device` (the host data copied only if another reader still
    /// holds it; blocked maps converted to NCHW).
    pub(crate) fn into_value(self, device: &Device) -> Result<Value, ModelError> {
        match self {
            Input::Value(value) => Ok(value),
            Input::Blocked(maps) => Ok(Value::Map(Tensor::from_data(nchw_of(maps), device))),
            Input::Host { data, shape } => {
                let data = Arc::unwrap_or_clone(data);
                match shape.len() {
                    4 => Ok(Value::Map(Tensor::from_data(data, device))),
                    2 => Ok(Value::Vector(Tensor::from_data(data, device))),
                    rank => Err(ModelError::Backend(format!(
                        "a shared tensor of rank {rank} (shape {shape:?}) is no activation"
                    ))),
                }
            }
        }
    }

    /// The input's host data, to read (taken from the tensor without a copy when nobody else
    /// holds it; blocked maps converted to NCHW).
    pub(crate) fn into_host(self) -> Arc<TensorData> {
        match self {
            Input::Value(value) => Arc::new(host_data(value)),
            Input::Host { data, .. } => data,
            Input::Blocked(maps) => Arc::new(nchw_of(maps)),
        }
    }

    /// The input as blocked maps (converted from NCHW feature maps, whose buffer is then
    /// recycled if nobody else holds it), for node `id`'s kernel.
    pub(crate) fn into_blocked(self, id: &str) -> Result<Arc<BlockedMaps>, ModelError> {
        if let Input::Blocked(maps) = self {
            return Ok(maps);
        }
        let &[batch, channels, h, w] = &self.shape()[..] else {
            return Err(ModelError::Backend(format!(
                "`{id}` reads a feature map, not a tensor of shape {:?}",
                self.shape()
            )));
        };
        let data = self.into_host();
        let maps = BlockedMaps::from_nchw(elements(id, &data)?, [batch, channels, h, w])
            .map_err(|e| ModelError::Backend(format!("`{id}`: {}", e.0)))?;
        recycle(data);
        Ok(Arc::new(maps))
    }

    /// The input's elements, to own (copied only if another reader still holds them).
    pub(crate) fn into_vec(self, id: &str) -> Result<Vec<f32>, ModelError> {
        Arc::unwrap_or_clone(self.into_host())
            .try_into_vec::<f32>()
            .map_err(|e| ModelError::Backend(format!("`{id}`: reading its input as f32: {e:?}")))
    }
}

/// Gives the buffer of host data that no reader needs any more to the kernels' output pool
/// ([`recycled::give_back`]), when nobody else holds it and it is a plain `f32` buffer (else it is
/// simply freed).
pub(crate) fn recycle(data: Arc<TensorData>) {
    if let Ok(data) = Arc::try_unwrap(data)
        && let Ok(buf) = data.into_bytes().try_into_vec::<f32>()
    {
        recycled::give_back(buf);
    }
}

/// Gives the buffer of blocked maps that no reader needs any more to the kernels' output pool.
pub(crate) fn recycle_blocked(maps: Arc<BlockedMaps>) {
    if let Ok(maps) = Arc::try_unwrap(maps) {
        maps.recycle();
    }
}

/// Blocked maps as NCHW host data (the blocked buffer recycled if nobody else holds it).
fn nchw_of(maps: Arc<BlockedMaps>) -> TensorData {
    let data = TensorData::new(maps.to_nchw(), maps.shape());
    recycle_blocked(maps);
    data
}

/// `value`'s host data (without a copy when nobody else holds the tensor).
fn host_data(value: Value) -> TensorData {
    match value {
        Value::Map(t) => t.into_data(),
        Value::Vector(t) => t.into_data(),
    }
}

/// The f32 elements of host data `data`, for node `id`'s kernel.
pub(crate) fn elements<'a>(id: &str, data: &'a TensorData) -> Result<&'a [f32], ModelError> {
    data.as_slice::<f32>()
        .map_err(|e| ModelError::Backend(format!("`{id}`: reading its input as f32: {e:?}")))
}
