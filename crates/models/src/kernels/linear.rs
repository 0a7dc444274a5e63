//! Fully connected layers for the small batches an edge device runs.
//!
//! At batch 1 a linear layer reads its whole weight once and does two flops per value read, so it
//! runs at the speed memory delivers the weight. The weight is packed once, at load, as blocks of
//! [`BLOCK`] outputs side by side per input (`[⌈out / BLOCK⌉, in, BLOCK]`), so that a block's sums
//! read one contiguous run of memory from start to end: a single sequential stream per thread,
//! whose loop asks the CPU for the weights [`STREAM_AHEAD`] values ahead of its loads (machine A,
//! one thread: AlexNet's 9216 → 4096 10.4 → 8.4 ms, VGG16's 25088 → 4096 28.5 → 22.4). A block's
//! outputs are summed in vector registers, each input value broadcast to every lane and multiplied
//! by the next row of the block, [`UNROLL`] rows' sums apart so that the multiply-adds do not wait
//! on each other. Runs of blocks go to threads, and a run's loops run through `pulp`, compiled for
//! the widest vector instructions the CPU has. Each block is read once for every sample of the
//! batch, the later ones from cache.
//!
//! Against dot products of `[out, in]` rows four at a time (four streams, each group asking for
//! the next group's rows ahead), machine D, one thread, in-pass, AlexNet's 9216 → 4096 layer
//! (151 MB): 5.70–5.95 → 4.60–4.77 ms on AVX-512, 5.72–6.21 → 5.01–5.50 on AVX2; on two
//! threads, which draw all the memory bandwidth either way, the same (`docs/EXPERIMENTS.md`,
//! "Fast kernels").

use rayon::prelude::*;

use super::aligned::Aligned;
use super::prefetch::{LINE, STREAM_AHEAD, prefetch};
use super::vector::{dispatch, load, store};
use super::{ShapeError, interleave_channels};

/// Outputs a block of the packed weight holds side by side: a whole number of vectors on every
/// path (one of AVX-512, two of AVX2).
const BLOCK: usize = 16;

/// Rows of a block summed into separate registers before they are added together.
const UNROLL: usize = 4;

/// Runs of blocks per thread, so that a thread that falls behind is helped.
const RUNS_PER_THREAD: usize = 4;

/// A linear layer ready to run.
#[derive(Debug, Clone)]
pub(crate) struct DenseLinear {
    inputs: usize,
    outputs: usize,
    /// PyTorch's `[out, in]` weight as `[⌈out / BLOCK⌉, in, BLOCK]` (zeros past the last
    /// output), on a cache line.
    weight: Aligned,
    /// `[⌈out / BLOCK⌉ · BLOCK]` (zeros for a layer without bias, and past the last output).
    bias: Vec<f32>,
}

impl DenseLinear {
    /// Takes PyTorch's `[out, in]` weight, `inputs` long rows, and `[out]` bias.
    pub(crate) fn new(
        inputs: usize,
        weight: Vec<f32>,
        bias: Vec<f32>,
    ) -> Result<DenseLinear, ShapeError> {
        let outputs = bias.len();
        if inputs == 0 || weight.len() != outputs * inputs {
            return Err(ShapeError(format!(
                "a linear layer of {inputs} inputs and {outputs} outputs needs {} weights, not {}",
                outputs * inputs,
                weight.len()
            )));
        }
        let mut padded_bias = bias;
        padded_bias.resize(outputs.div_ceil(BLOCK) * BLOCK, 0.0);
        Ok(DenseLinear {
            inputs,
            outputs,
            weight: Aligned::copy_of(&interleave_channels(&weight, inputs, BLOCK)),
            bias: padded_bias,
        })
    }

    /// Outputs per sample.
    pub(crate) fn outputs(&self) -> usize {
        self.outputs
    }

    /// `x` (`[batch, in]`) into `[batch, out]`.
    pub(crate) fn forward(&self, x: &[f32]) -> Result<Vec<f32>, ShapeError> {
        let (inputs, outputs) = (self.inputs, self.outputs);
        if x.is_empty() || x.len() % inputs != 0 {
            return Err(ShapeError(format!(
                "the input holds {} values, not a multiple of {inputs}",
                x.len()
            )));
        }
        let batch = x.len() / inputs;
        let threads = rayon::current_num_threads().max(1);
        let blocks = outputs.div_ceil(BLOCK);
        let run = blocks.div_ceil(threads * RUNS_PER_THREAD).max(1);
        // [blocks, batch, BLOCK]: each run of blocks is one contiguous chunk.
        let mut by_block = vec![0.0f32; blocks * batch * BLOCK];
        by_block
            .par_chunks_mut(run * batch * BLOCK)
            .zip(self.weight.par_chunks(run * inputs * BLOCK))
            .zip(self.bias.par_chunks(run * BLOCK))
            .for_each(|((y, weight), bias)| {
                dispatch(Run {
                    inputs,
                    weight,
                    bias,
                    x,
                    y,
                })
            });
        if batch == 1 {
            by_block.truncate(outputs);
            return Ok(by_block);
        }
        let mut out = vec![0.0f32; outputs * batch];
        for (b, samples) in by_block.chunks_exact(batch * BLOCK).enumerate() {
            for (n, values) in samples.chunks_exact(BLOCK).enumerate() {
                let first = b * BLOCK;
                let count = BLOCK.min(outputs - first);
                let row = &mut out[n * outputs + first..n * outputs + first + count];
                row.copy_from_slice(&values[..count]);
            }
        }
        Ok(out)
    }
}

/// One run of blocks: `y` (`[blocks, batch, BLOCK]`) from their packed `weight` (`[blocks, in,
/// BLOCK]`) and `bias` (`[blocks · BLOCK]`) and the whole input `x` (`[batch, in]`). Run
/// through [`dispatch`], so that its loops, inlined into one function, are compiled for the
/// widest vectors the CPU has.
struct Run<'a> {
    inputs: usize,
    weight: &'a [f32],
    bias: &'a [f32],
    x: &'a [f32],
    y: &'a mut [f32],
}

impl pulp::WithSimd for Run<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        // A block's outputs in `BLOCK / lanes` vectors.
        match BLOCK / S::F32_LANES {
            1 => self.run::<S, 1>(simd),
            2 => self.run::<S, 2>(simd),
            4 => self.run::<S, 4>(simd),
            8 => self.run::<S, 8>(simd),
            16 => self.run::<S, 16>(simd),
            // Vectors wider than a block: a lane at a time.
            _ => self.run::<pulp::Scalar, 16>(pulp::Scalar::new()),
        }
    }
}

impl Run<'_> {
    /// The run, each block's outputs in `V` vectors of `S`.
    #[inline(always)]
    fn run<S: pulp::Simd, const V: usize>(self, simd: S) {
        let n = self.inputs;
        let blocks = self
            .bias
            .chunks_exact(BLOCK)
            .zip(self.y.chunks_exact_mut(self.x.len() / n * BLOCK));
        for (b, (bias, y)) in blocks.enumerate() {
            // The block's weights and the run's after them, which its last steps ask for.
            let weights = &self.weight[b * n * BLOCK..];
            for (x, y) in self.x.chunks_exact(n).zip(y.chunks_exact_mut(BLOCK)) {
                block::<S, V>(simd, weights, x, bias, y);
            }
        }
    }
}

/// One sample's [`BLOCK`] outputs `y` from the block's packed `weights` (`[in, BLOCK]`, and
/// whatever follows them, which the last steps ask for ahead), the sample `x` (`[in]`) and the
/// block's `bias`: each input value broadcast and multiplied by its row of the block, in `V`
/// vectors of `S`, [`UNROLL`] rows at a time into separate sums, each step asking for the
/// weights [`STREAM_AHEAD`] values ahead of its own.
#[inline(always)]
fn block<S: pulp::Simd, const V: usize>(
    simd: S,
    weights: &[f32],
    x: &[f32],
    bias: &[f32],
    y: &mut [f32],
) {
    let lanes = S::F32_LANES;
    let mut acc = [[simd.splat_f32s(0.0); V]; UNROLL];
    // Adds `row` (one input's `BLOCK` weights) times `value` into `sums`.
    let add_row = |sums: &mut [S::f32s; V], row: &[f32], value: f32| {
        let value = simd.splat_f32s(value);
        for (v, sum) in sums.iter_mut().enumerate() {
            *sum = simd.mul_add_e_f32s(load::<S>(&row[v * lanes..]), value, *sum);
        }
    };
    let steps = weights
        .chunks_exact(UNROLL * BLOCK)
        .zip(x.chunks_exact(UNROLL));
    for (step, (rows, values)) in steps.enumerate() {
        let at = step * UNROLL * BLOCK + STREAM_AHEAD;
        for line in 0..UNROLL * BLOCK / LINE {
            prefetch(weights, at + line * LINE);
        }
        for ((sums, row), &value) in acc.iter_mut().zip(rows.chunks_exact(BLOCK)).zip(values) {
            add_row(sums, row, value);
        }
    }
    let done = x.len() / UNROLL * UNROLL;
    for (row, &value) in weights[done * BLOCK..].chunks_exact(BLOCK).zip(&x[done..]) {
        add_row(&mut acc[0], row, value);
    }
    for v in 0..V {
        let at = v * lanes;
        let [a, b, c, d] = acc.map(|sums| sums[v]);
        let total = simd.add_f32s(simd.add_f32s(a, b), simd.add_f32s(c, d));
        store::<S>(&mut y[at..], simd.add_f32s(total, load::<S>(&bias[at..])));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_the_rows_dot_the_input_plus_the_bias() {
        // Row counts around the groups of four and the runs, inputs around the lanes, and
        // batches of one and three; a pool of three threads makes several runs.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("a pool of three threads");
        for (inputs, outputs, batch) in [
            (16, 4, 1),
            (37, 9, 1),
            (100, 61, 3),
            (5, 1, 2),
            (1000, 130, 1),
        ] {
            let weight: Vec<f32> = (0..inputs * outputs)
                .map(|i| ((i * 7) % 19) as f32 / 9.0 - 1.0)
                .collect();
            let bias: Vec<f32> = (0..outputs).map(|o| o as f32 * 0.5 - 2.0).collect();
            let x: Vec<f32> = (0..batch * inputs)
                .map(|i| ((i * 5) % 11) as f32 / 5.0 - 1.0)
                .collect();
            let layer = DenseLinear::new(inputs, weight.clone(), bias.clone()).expect("fits");
            let y = pool.install(|| layer.forward(&x)).expect("runs");
            assert_eq!(y.len(), batch * outputs);
            for n in 0..batch {
                for o in 0..outputs {
                    let want: f64 = bias[o] as f64
                        + (0..inputs)
                            .map(|i| weight[o * inputs + i] as f64 * x[n * inputs + i] as f64)
                            .sum::<f64>();
                    let got = y[n * outputs + o] as f64;
                    assert!(
                        (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "{inputs} -> {outputs}, sample {n}, output {o}: {got}, not {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn mismatched_sizes_are_refused() {
        assert!(DenseLinear::new(3, vec![0.0; 7], vec![0.0; 2]).is_err());
        assert!(DenseLinear::new(0, vec![], vec![0.0; 2]).is_err());
        let layer = DenseLinear::new(3, vec![0.0; 6], vec![0.0; 2]).expect("fits");
        assert!(layer.forward(&[0.0; 4]).is_err());
        assert!(layer.forward(&[]).is_err());
        assert_eq!(layer.forward(&[1.0; 6]).expect("two samples").len(), 4);
    }
}
