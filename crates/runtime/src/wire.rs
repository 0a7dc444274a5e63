//! Tensors between the models crate and the wire: [`HostTensor`] ⇄ [`WireTensor`].

use models::HostTensor;
use transport::WireTensor;

use crate::error::RuntimeError;

/// A host tensor as an f32 wire tensor (bit-exact).
pub fn to_wire(tensor: &HostTensor, what: &str) -> Result<WireTensor, RuntimeError> {
    WireTensor::from_f32(tensor.shape(), tensor.data()).map_err(|source| RuntimeError::Tensor {
        what: what.to_string(),
        reason: source.to_string(),
    })
}

/// A wire tensor (any codec, decoded) as a host tensor. `what` names it in errors.
pub fn from_wire(tensor: &WireTensor, what: &str) -> Result<HostTensor, RuntimeError> {
    let bad = |reason: String| RuntimeError::Tensor {
        what: what.to_string(),
        reason,
    };
    let shape = tensor.shape_usize().map_err(|e| bad(e.to_string()))?;
    let data = tensor
        .decode(&transport::Limits::default())
        .map_err(|e| bad(e.to_string()))?;
    HostTensor::new(shape, data).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_bit_exact_and_int8_dequantises() {
        let host = HostTensor::new(vec![1, 3], vec![1.5, -0.0, f32::MIN_POSITIVE]).expect("host");
        let back = from_wire(&to_wire(&host, "x").expect("wire"), "x").expect("host");
        let bits = |t: &HostTensor| t.data().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(back.shape(), host.shape());
        assert_eq!(bits(&back), bits(&host));

        let q = WireTensor::encode(&[1, 2], &[254.0, -1.0], transport::Codec::Int8).expect("int8");
        assert_eq!(from_wire(&q, "q").expect("host").data(), &[254.0, -1.0]);

        let broken = WireTensor {
            shape: vec![1, 2],
            codec: transport::Codec::Raw,
            channels: vec![],
            bytes: vec![0; 3],
        };
        let msg = from_wire(&broken, "`conv1`")
            .expect_err("short")
            .to_string();
        assert!(msg.contains("`conv1`"), "{msg}");
    }
}
