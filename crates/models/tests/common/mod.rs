//! What the models integration tests share: a tiny deterministic generator and inputs from it.

use models::{HostTensor, Net};

/// Tiny deterministic generator for inputs and cut choices.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next pseudo-random number (31 bits).
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A `[batch, ...input shape]` input of values in [-1, 1].
pub fn input(net: &Net, batch: usize, rng: &mut Lcg) -> HostTensor {
    let mut shape = vec![batch];
    shape.extend_from_slice(net.input_shape());
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|_| (rng.next() % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    HostTensor::new(shape, data).expect("input tensor")
}
