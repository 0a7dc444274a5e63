//! Tensors in and out of the network: [`HostTensor`] (plain f32 data, for files and the wire)
//! and [`Value`] (a Burn tensor on a device, batch first).

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::ModelError;

/// An f32 tensor in host memory, in C order, with its full shape (batch first).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl HostTensor {
    /// Wraps `data` as a tensor of `shape`; the element count must match the shape.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<HostTensor, ModelError> {
        let expected = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| ModelError::TensorData(format!("shape {shape:?} is too large")))?;
        if expected != data.len() {
            return Err(ModelError::TensorData(format!(
                "shape {shape:?} holds {expected} elements but {} were given",
                data.len()
            )));
        }
        Ok(HostTensor { shape, data })
    }

    /// The shape, batch first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements in C order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Shape and elements, by value.
    pub fn into_parts(self) -> (Vec<usize>, Vec<f32>) {
        (self.shape, self.data)
    }
}

/// A network activation on a device: a feature map `[N, C, H, W]` or a vector batch `[N, F]`.
#[derive(Debug, Clone)]
pub enum Value {
    /// A batch of feature maps.
    Map(Tensor<4>),
    /// A batch of vectors.
    Vector(Tensor<2>),
}

impl Value {
    /// The shape, batch first.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Value::Map(t) => t.dims().to_vec(),
            Value::Vector(t) => t.dims().to_vec(),
        }
    }

    /// Uploads a host tensor of rank 4 (`[N, C, H, W]`) or 2 (`[N, F]`) to `device`.
    pub fn from_host(host: HostTensor, device: &Device) -> Result<Value, ModelError> {
        let (shape, data) = host.into_parts();
        match shape.len() {
            4 => Ok(Value::Map(Tensor::from_data(
                TensorData::new(data, shape),
                device,
            ))),
            2 => Ok(Value::Vector(Tensor::from_data(
                TensorData::new(data, shape),
                device,
            ))),
            rank => Err(ModelError::TensorData(format!(
                "a tensor of rank {rank} (shape {shape:?}) cannot be an activation; expected [N, C, H, W] or [N, F]"
            ))),
        }
    }

    /// Reads the tensor back into host memory.
    pub fn to_host(self) -> Result<HostTensor, ModelError> {
        let (shape, data) = match self {
            Value::Map(t) => (t.dims().to_vec(), t.into_data()),
            Value::Vector(t) => (t.dims().to_vec(), t.into_data()),
        };
        let data = data
            .try_into_vec::<f32>()
            .map_err(|e| ModelError::Backend(format!("reading a tensor back as f32: {e:?}")))?;
        HostTensor::new(shape, data)
    }
}

/// Largest relative difference between two tensors: `max |a - b| / max |b|` (0 when both are 0).
///
/// Returns infinity when the shapes differ or a value is not finite, so a comparison against a
/// tolerance fails safely.
pub fn relative_difference(a: &HostTensor, b: &HostTensor) -> f64 {
    if a.shape != b.shape {
        return f64::INFINITY;
    }
    let mut diff = 0.0f64;
    let mut scale = 0.0f64;
    for (&x, &y) in a.data.iter().zip(&b.data) {
        if !(x.is_finite() && y.is_finite()) {
            return f64::INFINITY;
        }
        diff = diff.max((f64::from(x) - f64::from(y)).abs());
        scale = scale.max(f64::from(y).abs());
    }
    if diff == 0.0 { 0.0 } else { diff / scale }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_tensor_checks_length() {
        assert!(HostTensor::new(vec![2, 3], vec![0.0; 6]).is_ok());
        assert!(HostTensor::new(vec![2, 3], vec![0.0; 5]).is_err());
        assert!(HostTensor::new(vec![usize::MAX, 3], vec![]).is_err());
    }

    #[test]
    fn relative_difference_is_scale_free() {
        let a = HostTensor::new(vec![2], vec![1.0, 2.0]).expect("a");
        let b = HostTensor::new(vec![2], vec![1.0, 2.0 + 2e-6]).expect("b");
        assert!(relative_difference(&a, &b) < 1.1e-6);
        let c = HostTensor::new(vec![1, 2], vec![1.0, 2.0]).expect("c");
        assert!(relative_difference(&a, &c).is_infinite());
    }

    #[test]
    fn values_round_trip_through_the_host() {
        let device = Device::flex();
        let host = HostTensor::new(vec![1, 2, 1, 2], vec![1.0, -2.0, 3.5, 0.25]).expect("host");
        let value = Value::from_host(host.clone(), &device).expect("upload");
        assert_eq!(value.shape(), vec![1, 2, 1, 2]);
        assert_eq!(value.to_host().expect("read back"), host);
        let bad = HostTensor::new(vec![4], vec![0.0; 4]).expect("rank 1");
        assert!(Value::from_host(bad, &device).is_err());
    }
}
