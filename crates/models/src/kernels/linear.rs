//! Fully connected layers as dot products over PyTorch's `[out, in]` weight, for the small
//! batches an edge device runs.
//!
//! At batch 1 a linear layer reads its whole weight once and does two flops per value read, so
//! it runs at the speed memory delivers the weight. Each output is the dot product of one
//! contiguous weight row with the input, and the rows are taken [`ROWS`] at a time, each
//! summed in registers across [`LANES`] lanes: a few long sequential streams, which the
//! hardware prefetchers follow, each group of rows asking for the next group's as it goes. (gemm, given the `[in, out]` weight that Burn's `linear`
//! takes, runs a batch-1 product as `out += w[k] · x[k]` over the weight's rows, reading and
//! writing the whole output for every input value.) Output rows go to threads in equal runs,
//! and a run's loops run through `pulp`, compiled for the widest vector instructions the CPU
//! has. Each weight row is read once for every sample of the batch while it is in cache.

use rayon::prelude::*;

use super::ShapeError;
use super::aligned::Aligned;
use super::prefetch::{LINE, prefetch};
use super::vector::dispatch;

/// Weight rows whose dot products are computed together.
const ROWS: usize = 4;

/// Products summed side by side in one row's registers: two vectors of AVX-512, so that the
/// [`ROWS`] rows' sums take 8 of its 32 registers.
const LANES: usize = 32;

/// [`LANES`] with 16 vector registers (AVX2): two vectors of 8 lanes. With 32 lanes the four
/// rows' sums alone took all 16 registers and spilled to the stack.
const LANES_16: usize = 16;

/// Runs of output rows per thread, so that a thread that falls behind is helped.
const RUNS_PER_THREAD: usize = 4;

/// A linear layer ready to run.
#[derive(Debug, Clone)]
pub(crate) struct DenseLinear {
    inputs: usize,
    /// `[out, in]`, as PyTorch stores it, on a cache line.
    weight: Aligned,
    /// `[out]` (zeros for a layer without bias).
    bias: Vec<f32>,
}

impl DenseLinear {
    /// Takes PyTorch's `[out, in]` weight, `inputs` long rows, and `[out]` bias.
    pub(crate) fn new(
        inputs: usize,
        weight: Vec<f32>,
        bias: Vec<f32>,
    ) -> Result<DenseLinear, ShapeError> {
        if inputs == 0 || weight.len() != bias.len() * inputs {
            return Err(ShapeError(format!(
                "a linear layer of {inputs} inputs and {} outputs needs {} weights, not {}",
                bias.len(),
                bias.len() * inputs,
                weight.len()
            )));
        }
        Ok(DenseLinear {
            inputs,
            weight: Aligned::copy_of(&weight),
            bias,
        })
    }

    /// Outputs per sample.
    pub(crate) fn outputs(&self) -> usize {
        self.bias.len()
    }

    /// `x` (`[batch, in]`) into `[batch, out]`.
    pub(crate) fn forward(&self, x: &[f32]) -> Result<Vec<f32>, ShapeError> {
        let (inputs, outputs) = (self.inputs, self.bias.len());
        if x.is_empty() || x.len() % inputs != 0 {
            return Err(ShapeError(format!(
                "the input holds {} values, not a multiple of {inputs}",
                x.len()
            )));
        }
        let batch = x.len() / inputs;
        let threads = rayon::current_num_threads().max(1);
        let run = outputs
            .div_ceil(threads * RUNS_PER_THREAD)
            .next_multiple_of(ROWS)
            .max(ROWS);
        // [out, batch]: each run of output rows is one contiguous chunk.
        let mut by_output = vec![0.0f32; outputs * batch];
        by_output
            .par_chunks_mut(run * batch)
            .zip(self.weight.par_chunks(run * inputs))
            .zip(self.bias.par_chunks(run))
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
            return Ok(by_output);
        }
        let mut out = vec![0.0f32; outputs * batch];
        for (o, values) in by_output.chunks_exact(batch).enumerate() {
            for (n, &v) in values.iter().enumerate() {
                out[n * outputs + o] = v;
            }
        }
        Ok(out)
    }
}

/// One run of output rows: `y` (`[rows, batch]`) from their `weight` (`[rows, in]`) and `bias`
/// and the whole input `x` (`[batch, in]`). Run through [`dispatch`], so that its
/// loops, inlined into one function, are compiled for the widest vectors the CPU has.
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
    fn with_simd<S: pulp::Simd>(self, _: S) {
        if S::REGISTER_COUNT < 32 {
            self.run::<LANES_16>();
        } else {
            self.run::<LANES>();
        }
    }
}

impl Run<'_> {
    /// The run, each row's products summed `L` lanes side by side.
    #[inline(always)]
    fn run<const L: usize>(self) {
        let n = self.inputs;
        let batch = self.x.len() / n;
        let groups = self
            .weight
            .chunks(ROWS * n)
            .zip(self.bias.chunks(ROWS))
            .zip(self.y.chunks_mut(ROWS * batch));
        for (g, ((rows, bias), y)) in groups.enumerate() {
            let next = self
                .weight
                .get((g + 1) * ROWS * n..(g + 2) * ROWS * n)
                .unwrap_or(&[]);
            for (sample, x) in self.x.chunks_exact(n).enumerate() {
                if let Ok(biases) = <&[f32; ROWS]>::try_from(bias) {
                    let ahead = if sample == 0 { next } else { &[] };
                    let sums = dot4::<L>(rows_of(rows, n), x, ahead);
                    for (r, (&s, &b)) in sums.iter().zip(biases).enumerate() {
                        y[r * batch + sample] = s + b;
                    }
                } else {
                    for (r, (row, &b)) in rows.chunks_exact(n).zip(bias).enumerate() {
                        y[r * batch + sample] = dot::<L>(row, x) + b;
                    }
                }
            }
        }
    }
}

/// The [`ROWS`] rows of `n` values in `rows`.
#[inline(always)]
fn rows_of(rows: &[f32], n: usize) -> [&[f32]; ROWS] {
    let (r0, rest) = rows.split_at(n);
    let (r1, rest) = rest.split_at(n);
    let (r2, r3) = rest.split_at(n);
    [r0, r1, r2, &r3[..n]]
}

/// The dot products of four rows with `x` (each as long as `x`), asking for the rows of
/// `ahead` (the next group's, or none) as it goes: at each step the same values of each row.
/// Without, the prefetchers start four new streams at every group and wait for each (a
/// 1280-value row is 80 cache lines); machine D, the 1280 → 1000 layer from memory, one
/// thread: 0.22–0.31 → 0.15–0.20 ms, two: 0.11–0.16 → 0.06–0.11; AlexNet's 9216 → 4096 also
/// faster (two threads 4.8–5.6 → 3.4–4.8 ms). Laying each group's rows out interleaved, one
/// stream, did as well on short rows but made AlexNet's 20 % slower on one thread. (With the
/// weight in cache, the requests cost: 0.078 → 0.085 ms.)
#[inline(always)]
fn dot4<const L: usize>([w0, w1, w2, w3]: [&[f32]; ROWS], x: &[f32], ahead: &[f32]) -> [f32; ROWS] {
    let n = x.len();
    let (mut a0, mut a1, mut a2, mut a3) = ([0.0f32; L], [0.0; L], [0.0; L], [0.0; L]);
    let chunks = x
        .chunks_exact(L)
        .zip(w0.chunks_exact(L))
        .zip(w1.chunks_exact(L))
        .zip(w2.chunks_exact(L).zip(w3.chunks_exact(L)));
    for (i, (((x, w0), w1), (w2, w3))) in chunks.enumerate() {
        if !ahead.is_empty() {
            for row in 0..ROWS {
                for line in (0..L).step_by(LINE) {
                    prefetch(ahead, row * n + i * L + line);
                }
            }
        }
        for l in 0..L {
            a0[l] += w0[l] * x[l];
            a1[l] += w1[l] * x[l];
            a2[l] += w2[l] * x[l];
            a3[l] += w3[l] * x[l];
        }
    }
    let tail = x.len() - x.len() % L;
    let mut sums = [w0, w1, w2, w3].map(|w| dot_tail(&w[tail..], &x[tail..]));
    for (s, a) in sums.iter_mut().zip([a0, a1, a2, a3]) {
        *s += a.iter().sum::<f32>();
    }
    sums
}

/// The dot product of one row with `x` (as long as it), `L` lanes side by side.
#[inline(always)]
fn dot<const L: usize>(w: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; L];
    for (w, x) in w.chunks_exact(L).zip(x.chunks_exact(L)) {
        for ((a, &w), &x) in acc.iter_mut().zip(w).zip(x) {
            *a += w * x;
        }
    }
    let tail = x.len() - x.len() % L;
    dot_tail(&w[tail..], &x[tail..]) + acc.iter().sum::<f32>()
}

/// The dot product of the few values past the last full vectors of lanes.
#[inline(always)]
fn dot_tail(w: &[f32], x: &[f32]) -> f32 {
    w.iter().zip(x).map(|(w, x)| w * x).sum()
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
