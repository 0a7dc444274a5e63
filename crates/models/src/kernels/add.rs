//! Element-wise addition with the activation after it in the same pass: a residual block's
//! add and ReLU read and write the feature map once instead of twice. Runs through `pulp`, at
//! the [`VectorPath`](super::VectorPath) in effect, in parallel over large maps.

use rayon::prelude::*;

use super::vector::{dispatch, load, store};
use super::{Activation, ShapeError};

/// Values one task adds at least.
const TASK_VALUES: usize = 64 * 1024;

/// `sum[i] = activation(sum[i] + x[i])` for every `i`.
pub(crate) fn add_into(
    sum: &mut [f32],
    x: &[f32],
    activation: Activation,
) -> Result<(), ShapeError> {
    if sum.len() != x.len() {
        return Err(ShapeError(format!(
            "cannot add {} values to {}: the shapes differ",
            x.len(),
            sum.len()
        )));
    }
    sum.par_chunks_mut(TASK_VALUES)
        .zip(x.par_chunks(TASK_VALUES))
        .for_each(|(sum, x)| dispatch(AddInto { sum, x, activation }));
    Ok(())
}

/// One task's run of [`add_into`].
struct AddInto<'a> {
    sum: &'a mut [f32],
    x: &'a [f32],
    activation: Activation,
}

impl pulp::WithSimd for AddInto<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let lanes = S::F32_LANES;
        let whole = self.sum.len() / lanes * lanes;
        let (head, tail) = self.sum.split_at_mut(whole);
        for (at, s) in (0..whole).step_by(lanes).zip(head.chunks_exact_mut(lanes)) {
            let v = simd.add_f32s(load::<S>(s), load::<S>(&self.x[at..]));
            store::<S>(s, self.activation.apply_vector(simd, v));
        }
        for (s, &x) in tail.iter_mut().zip(&self.x[whole..]) {
            *s += x;
        }
        self.activation.apply(tail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_go_through_the_activation_and_mismatched_lengths_are_refused() {
        // Lengths around the vector widths and the task size.
        for n in [1, 7, 16, 17, 100, 64 * 1024 + 3] {
            let a: Vec<f32> = (0..n).map(|i| (i % 13) as f32 - 6.0).collect();
            let b: Vec<f32> = (0..n).map(|i| (i % 5) as f32 * 0.75 - 1.5).collect();
            for activation in [Activation::Identity, Activation::Relu, Activation::Relu6] {
                let mut sum = a.clone();
                add_into(&mut sum, &b, activation).expect("adds");
                for (i, &got) in sum.iter().enumerate() {
                    let mut want = [a[i] + b[i]];
                    activation.apply(&mut want);
                    assert_eq!(got, want[0], "{n} values, {activation:?}, at {i}");
                }
            }
        }
        assert!(add_into(&mut [0.0; 3], &[0.0; 4], Activation::Relu).is_err());
    }
}
