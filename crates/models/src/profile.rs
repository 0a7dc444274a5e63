//! Timing: per-layer latency (Neurosurgeon's layer characterisation), each layer alone or inside
//! whole passes, and whole forward passes.

use std::time::Instant;

use rayon::prelude::*;

use crate::error::ModelError;
use crate::exec::{Input, Model, pass_on_worker};
use crate::tensor::HostTensor;

/// Which revision of the layers' kernels this build runs. It changes whenever a change makes
/// layers faster or slower (a new kernel, a new CPU feature), so that timings cached by an
/// earlier build (device profiles) are measured again rather than trusted. Revision 2: gemm
/// with AVX-512 kernels; 3: large linear layers split across threads; 4: folded batch norms,
/// fused activations, the crate's own convolutions and max pooling (see [`crate::Kernels`]);
/// 5: Winograd's F(2×2, 3×3) for 3×3, stride-1 convolutions of at least 512 output pixels,
/// channel-major RGB stems, reused scratch buffers, linear weights from 4 MB split; 6: depthwise
/// convolutions on padded, phase-split planes with register sums, at the CPU's widest vectors;
/// passes and single layers run on a rayon worker; strided 1×1 convolutions channel-major;
/// Winograd for small maps, split by output channels; the crate's own linear layers; 7:
/// Winograd's F(4×4, 3×3) for maps of at least 16 4×4 tiles, max pooling in vectorised row
/// passes (and the vector path, [`crate::VectorPath`], cappable at AVX2); 8: depthwise
/// convolutions with fused multiply-adds into independent register sums, padding zeroed once
/// per task and stride-2 rows split in one pass; max pooling on the same padded planes;
/// residual additions and their ReLU in one pass; layers of fewer than 16 input channels (the
/// stems) by direct convolution on padded input planes; 9: unpadded 1×1 convolutions by their own
/// register-tiled kernel, NCHW to NCHW, with the bias and activation fused; a tensor read by
/// several nodes shared as host data instead of copied per read; 10: layers on 7×7 maps from
/// gathered patches in register tiles over output channels (AVX-512); 11: the same on AVX2, its
/// weight in blocks of 16 output channels; 12: layers' outputs in recycled buffers instead of
/// zeroed fresh memory, stride-2 depthwise and pooling layers on inputs narrower than 32
/// columns without the column split, short rows copied as masked whole vectors, the last few
/// pixels of a 1×1 layer summed one at a time over channel vectors, global average pooling by
/// its own kernel, channel concatenation into a recycled buffer; 13: max pooling in two
/// passes (down the columns, then along the rows), a residual addition and its activation in
/// the epilogue of the convolution before it where both run in one part, stride-1 3×3
/// depthwise layers and max pools on small planes read in place; 14: the pool's other workers
/// kept polling for work while a pass runs (no wake-up per kernel on two or more threads); 15:
/// Winograd's F(2×2, 3×3) on maps of fewer than 64 4×4 tiles on AVX-512, 32 on AVX2 (F(4×4)'s
/// larger weight made 14×14 layers wait on memory), the 7×7 kernel's patches gathered from
/// padded copies of the input planes, a 1×1 layer's chunks kept whole on one thread; 16: the 7×7
/// kernel's deep layers summed in parts of the rows that stay in the core's cache with every
/// block (AVX-512), the next block's weights asked for ahead of use; 17: packed weights and
/// scratch buffers on 64-byte boundaries; 18: the stems' direct kernel through the 1×1 kernel's
/// register tiles over a panel of each tile's taps; 19: a lone thread's 1×1 layers with a weight
/// over 192 KiB in chunks of up to 512 KiB; 20: the 7×7 kernel's 24 sums kept in registers
/// (its epilogue's activation applied lane by lane, not with vector constants that pushed a sum
/// to the stack), a strided 1×1 layer's gather shared by every thread, a small map's 1×1 pixels
/// split between threads where its weight is the smaller read; 21: Winograd's layers in bands
/// of rows of tiles, each block's pixels written into the band's rows of the NCHW output by the
/// thread that computed them; 22: the 7×7 kernel's rows taken four at a time, the next
/// weights asked for once per four; 23: the copies between NCHW and channels-last (Winograd's
/// padded input and output pixels, the pixel-major kernel's input and output) transposed 8×8 in
/// AVX registers; 24: 3×3 depthwise layers at stride 2 read straight from the NCHW rows, their
/// even and odd columns split in registers (AVX2 and AVX-512); 25: 3×3 stride-1 windows read in
/// place on large planes two output rows at a time where the CPU has 32 vector registers; 26:
/// a 1×1 layer's tasks of few channel blocks read their whole tiles' columns straight from the
/// input's rows instead of a packed copy; 27: a linear layer's groups of rows ask for the next
/// group's ahead of use; 28: a small plane's 3×3 windows read each input row's run with one
/// bounds check instead of one a load; 29: on the AVX2 path, 3×3 stride-1 depthwise layers on
/// planes of at most 256 values run eight channels to a vector, channels-last; 30: on the
/// AVX-512 path, MobileNetV2-style chains of depthwise and 1×1 layers on maps of at most 14×14
/// run on channel-blocked maps (`kernels::blocked`); 31: the blocked depthwise kernel finds a
/// border output's taps by range, and sums four inside outputs of a row at a time; 32: weights
/// of at least 4 MiB on transparent huge pages where Linux offers them on request, and a linear
/// layer's rows summed in two vectors' lanes on every path; 33: the patches kernel's tiles each
/// in a function of their own, 6 pixels × 16 channels on AVX2, which also runs 3×3 layers on
/// maps of at most 14×14 there, but for Winograd's exactly tiled ones; 34: Winograd's F(2×2,
/// 5×5) for 5×5 layers of at least 32 input channels; 35: on the AVX2 path, the 1×1 and direct
/// kernels' tiles sum 6 output channels (12 sums) instead of two halves of 4, and a 1×1 layer
/// of more than 2 MiB of weights asks for the next block's weights ahead of use; 36: linear
/// layers over a weight packed in blocks of 16 outputs, one sequential stream per block; 37:
/// the direct kernel's tiles run on into the next output row where a row's outputs do not fill
/// whole vectors; 38: stride-2 max pools of 2×2 windows and of unpadded 3×3 ones taken across
/// each input row once, then down; 39: on AVX2, 3×3 layers at stride 2 onto maps larger than
/// 14×14 run direct; 40: 3×3 stride-1 max pools on planes of at most 256 values taken across
/// each row, then down; 41: on AVX2, a 1×1 layer's last few pixels summed against its blocks'
/// weight vectors, and chunks of many tiles packed tile by tile; 42: on AVX2, 3×3 depthwise
/// layers with padding 1 on planes of at most 28 × 28 run eight channels to a vector at stride
/// 2 too; 43: the direct kernel's tiles ask for the output lines of the tile two ahead; 44: on
/// AVX2, stride-2 depthwise layers on larger planes take four vectors of a row at a time; 45:
/// average pools over windows (LeNet's) by the crate's own kernel instead of Burn's; 46: the
/// direct kernel asks for every cache line of those output lines, not only a tile's first and
/// last (an AVX-512 tile of 48 outputs spans three or four); 47: Winograd's bands of rows of
/// tiles sized so that every thread gets as many rows (28×28 maps on two threads: 7 and 7
/// rows of tiles, not 8 and 6); 48: 2×2 stride-2 max pools without padding on planes of even
/// sides in one pass over pairs of rows; 49: on AVX-512, 1×1 tasks of 5–8 channel blocks over
/// more than 170 input rows that start on few of the first-level cache's sets (planes a
/// multiple of 4 cache lines, as 56×56) pack their columns; 50: a recycled output buffer
/// lengthened by every thread; 51: a concatenation copied by every thread; 52: Winograd's
/// bands one per thread, of adjacent rows of tiles; 53: the direct kernel's padded copies
/// phase row by phase row on every thread; 54: AVX2's 1×1 tiles packed input channel by input
/// channel; 55: the 1×1 and direct kernels' tiles read packed columns two input channels a
/// step; 56: the direct kernel's phase-split copies write their padding with the input
/// rather than zeroing the whole copy first; 57: the direct kernel shares a row's last vectors
/// evenly between its last tiles (3 + 2 + 2 on AVX-512's 112-wide rows, not 3 + 3 + 1); 58:
/// 3×3 layers of fewer than 32 input channels onto maps larger than 14×14 run direct; 59:
/// linear layers ask for their weights 3 KiB ahead of the multiply-adds; 60: Winograd's
/// products in register tiles of its own over a weight packed in blocks of 16 output channels
/// (not gemm), and on AVX2 3×3 layers on maps of up to 14×14 by Winograd wherever it pays; 61:
/// F(4×4, 3×3) from 32 tiles on AVX-512 too (28×28 maps); 62: Winograd's maps of 32 tiles or
/// more split by bands of tile rows on several threads, not by output channels.
pub const KERNEL_REVISION: u32 = 62;

/// One node's measured latency and output size.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTiming {
    /// The node's index.
    pub node: usize,
    /// The node's id.
    pub id: String,
    /// The node's kind name (`conv2d`, `relu`, ...).
    pub kind: &'static str,
    /// Median latency over the measured runs, in ms (0 for the input node).
    pub median_ms: f64,
    /// Output size for the batch that was timed, in bytes (f32).
    pub out_bytes: u64,
}

/// The batch of an `[N, ...]` input (1 for a tensor of no dimensions).
fn batch_of(input: &HostTensor) -> u64 {
    input.shape().first().copied().unwrap_or(1) as u64
}

/// The median of `samples` (the mean of the middle two for an even count; 0 when empty).
pub fn median(mut samples: Vec<f64>) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}

/// Evicts the CPU caches by writing every cache line of a buffer larger than them.
#[derive(Debug)]
pub struct CacheScrub {
    buffer: Vec<u8>,
    /// Changes each scrub, so that no write is a no-op the hardware could skip.
    pass: u8,
}

/// Bytes of one cache line (64 on every x86-64 and most ARM cores).
const CACHE_LINE: usize = 64;

/// Bytes each parallel task of a scrub writes: large enough that splitting costs nothing,
/// small enough that the workers share the buffer evenly.
const SCRUB_CHUNK: usize = 1 << 20;

/// The last-level cache assumed where the machine does not say (Linux sysfs): 32 MiB.
const DEFAULT_LAST_LEVEL_CACHE: usize = 32 << 20;

/// The most a scrub of this machine writes. A server chip reports its whole last-level cache
/// (480 MiB on one such machine here), shared by all of its cores: twice that took a tenth of a
/// second before every timed run, so that a quick sweep's 12 s per class measured 4–7 layers.
/// 128 MiB is more than a layer of the zoo reads, its largest weights apart (VGG16's first
/// fully connected layer, 392 MiB, which no cache holds).
const MAX_SCRUB: usize = 128 << 20;

impl CacheScrub {
    /// A scrub of `bytes` (at least one cache line).
    pub fn new(bytes: usize) -> CacheScrub {
        CacheScrub {
            buffer: vec![0; bytes.max(CACHE_LINE)],
            pass: 0,
        }
    }

    /// A scrub of twice this machine's last-level cache ([`last_level_cache_bytes`]), at most
    /// 128 MiB.
    pub fn for_this_machine() -> CacheScrub {
        CacheScrub::new(scrub_bytes(last_level_cache_bytes()))
    }

    /// Its size in bytes.
    pub fn bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Writes one byte of every cache line of the buffer, in parallel on the current rayon
    /// pool. Each worker writes its share, so every core's own caches are evicted, not only the
    /// caller's: a layer split over two cores would otherwise find the part the other core ran
    /// last time still in that core's cache, or not, as the work happened to be shared. And the
    /// pool's other workers are busy until the timed run starts: left idle through a scrub of
    /// tens of milliseconds they fall asleep, and waking one costs a small layer tens of
    /// microseconds, more on some runs than others.
    pub fn scrub(&mut self) {
        self.pass = self.pass.wrapping_add(1);
        let pass = self.pass;
        self.buffer.par_chunks_mut(SCRUB_CHUNK).for_each(|chunk| {
            for line in chunk.chunks_mut(CACHE_LINE) {
                line[0] = pass;
            }
        });
        std::hint::black_box(&mut self.buffer);
    }
}

/// The bytes a scrub writes for a last-level cache of `cache` bytes (where known): twice it,
/// at most [`MAX_SCRUB`].
fn scrub_bytes(cache: Option<usize>) -> usize {
    cache
        .unwrap_or(DEFAULT_LAST_LEVEL_CACHE)
        .saturating_mul(2)
        .min(MAX_SCRUB)
}

/// The size of the largest CPU cache of cpu0 as Linux reports it
/// (`/sys/devices/system/cpu/cpu0/cache/index*/size`), or `None` where it does not.
pub fn last_level_cache_bytes() -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("size")).ok())
        .filter_map(|size| parse_cache_size(size.trim()))
        .max()
}

/// Parses a sysfs cache size such as `32768K`, `1M` or `512`.
fn parse_cache_size(text: &str) -> Option<usize> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let n: usize = digits.parse().ok()?;
    let scale = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// The error for a timing asked to measure no runs.
fn no_runs() -> ModelError {
    ModelError::BadParameter {
        node: "(timing)".into(),
        field: "runs",
        reason: "must be at least 1".into(),
    }
}

fn sync(model: &Model) -> Result<(), ModelError> {
    model
        .device()
        .sync()
        .map_err(|e| ModelError::Backend(format!("device sync failed: {e:?}")))
}

impl Model {
    /// Times every node on its own: one forward pass records every activation, then each node
    /// runs `warmup` times unmeasured and `runs` times measured on those inputs (a fresh copy
    /// each run, made before the clock starts; synchronising the device after each run), and its
    /// median latency is reported. `runs` must be at least 1. The activations are kept as a pass
    /// hands them on (blocked maps inside a blocked chain), so a node converts between layouts
    /// only where a pass converts.
    ///
    /// The nodes run on a rayon worker thread, as they do in a forward pass, so that a node's
    /// time holds no hand-off from the caller's thread to the pool.
    pub fn time_layers(
        &self,
        input: HostTensor,
        warmup: usize,
        runs: usize,
    ) -> Result<Vec<LayerTiming>, ModelError> {
        pass_on_worker(|| self.time_layers_here(input, warmup, runs, None))
    }

    /// [`Model::time_layers`] with the caches as a forward pass leaves them: before each run,
    /// [`CacheScrub`] writes a buffer twice the size of the last-level cache, evicting the
    /// node's weights (as the other layers of a pass do), and only then is the node's input
    /// copied in (as the node before it would have written it). A node timed alone and warm
    /// finds its weights in cache, which a pass of a network larger than the cache never does,
    /// so this is the timing the profiler's sweep uses. `scrub` is the buffer written
    /// ([`CacheScrub::for_this_machine`]); keep one for many calls, since a fresh one is paged
    /// in on its first scrub.
    pub fn time_layers_cold(
        &self,
        input: HostTensor,
        warmup: usize,
        runs: usize,
        scrub: &mut CacheScrub,
    ) -> Result<Vec<LayerTiming>, ModelError> {
        pass_on_worker(|| self.time_layers_here(input, warmup, runs, Some(scrub)))
    }

    /// [`Model::time_layers`] on the calling thread, scrubbing the caches before each run when
    /// `scrub` is given.
    fn time_layers_here(
        &self,
        input: HostTensor,
        warmup: usize,
        runs: usize,
        mut scrub: Option<&mut CacheScrub>,
    ) -> Result<Vec<LayerTiming>, ModelError> {
        if runs == 0 {
            return Err(no_runs());
        }
        let net = self.net();
        let batch = batch_of(&input);
        let first = Input::Value(self.upload(input)?);
        // Every activation as the pass leaves it (blocked maps inside a blocked chain), kept so
        // that each node can be timed on its real inputs and converts only where a pass would.
        let mut values: Vec<Input> = Vec::with_capacity(net.len());
        values.push(first);
        let mut timings = vec![LayerTiming {
            node: 0,
            id: net.nodes()[0].id().to_string(),
            kind: net.nodes()[0].spec().kind.name(),
            median_ms: 0.0,
            out_bytes: batch * net.nodes()[0].spec().out_bytes,
        }];
        for (v, node) in net.nodes().iter().enumerate().skip(1) {
            // Each run gets inputs of its own, as in a forward pass, where a layer's last
            // reader takes its input.
            let own = || -> Result<Vec<Input>, ModelError> {
                node.inputs()
                    .iter()
                    .map(|&u| self.own_copy(&values[u]))
                    .collect()
            };
            let mut samples = Vec::with_capacity(runs);
            for i in 0..warmup + runs {
                if let Some(scrub) = scrub.as_deref_mut() {
                    scrub.scrub();
                }
                let inputs = own()?;
                let start = Instant::now();
                let y = self.step(v, inputs)?;
                sync(self)?;
                let elapsed = start.elapsed().as_secs_f64() * 1e3;
                drop(y);
                if i >= warmup {
                    samples.push(elapsed);
                }
            }
            // The activation kept for the nodes after: the inputs shared, not copied.
            let shared = node.inputs().iter().map(|&u| values[u].clone()).collect();
            values.push(self.step(v, shared)?);
            timings.push(LayerTiming {
                node: v,
                id: node.id().to_string(),
                kind: node.spec().kind.name(),
                median_ms: median(samples),
                out_bytes: batch * node.spec().out_bytes,
            });
        }
        Ok(timings)
    }

    /// Times every node inside whole forward passes: `warmup` unmeasured passes, then `runs`
    /// measured ones, each on a fresh upload of `input` made before its clock starts. A pass
    /// runs the nodes in execution order through the same loop as [`Model::forward`], so each
    /// node finds the caches as the node before it left them, and takes a timestamp as each
    /// node finishes; a node's time is the gap since the previous node's timestamp, and its
    /// median over the measured passes is reported. The input node gets 0 ms, and the nodes'
    /// times add up to a pass less its setup (shape checks, the hand-off to a worker) and the
    /// output's read-back. Same nodes, order, ids, kinds and output sizes as
    /// [`Model::time_layers`]; `runs` must be at least 1.
    ///
    /// The device is synchronised after every node, as [`Model::time_layers`] does after every
    /// run, so that a node's time is its own work rather than the queueing of it. On the CPU
    /// backends (flex, ndarray) work is done when a node returns and the sync costs nothing; on
    /// wgpu each sync waits for the queue to drain, which removes the overlap of one node's
    /// submission with the previous node's execution that a real pass has, so the nodes' times
    /// there add up to somewhat more than a pass.
    ///
    /// The passes run on a rayon worker thread, as [`Model::forward`]'s do.
    pub fn time_in_pass(
        &self,
        input: HostTensor,
        warmup: usize,
        runs: usize,
    ) -> Result<Vec<LayerTiming>, ModelError> {
        pass_on_worker(|| self.time_in_pass_here(input, warmup, runs))
    }

    /// [`Model::time_in_pass`] on the calling thread.
    fn time_in_pass_here(
        &self,
        input: HostTensor,
        warmup: usize,
        runs: usize,
    ) -> Result<Vec<LayerTiming>, ModelError> {
        if runs == 0 {
            return Err(no_runs());
        }
        let mut passes = Vec::with_capacity(runs);
        for i in 0..warmup + runs {
            let times = self.time_pass_here(input.clone())?;
            if i >= warmup {
                passes.push(times);
            }
        }
        Ok(self.median_timings(&passes, batch_of(&input)))
    }

    /// One forward pass timed node by node, as [`Model::time_in_pass`] times each of its
    /// passes: every node's time in ms, in node order (0 for the input node). For passes
    /// spread over time, between other work, so that no single moment of a busy machine
    /// decides a node's time; [`Model::median_timings`] turns them into timings.
    pub fn time_pass(&self, input: HostTensor) -> Result<Vec<f64>, ModelError> {
        pass_on_worker(|| self.time_pass_here(input))
    }

    /// [`Model::time_pass`] on the calling thread.
    fn time_pass_here(&self, input: HostTensor) -> Result<Vec<f64>, ModelError> {
        let n = self.net().len();
        let mut times = vec![0.0; n];
        // When each node finished; allocated before the pass, so that recording a timestamp
        // allocates nothing inside it.
        let mut stamps: Vec<(usize, Instant)> = Vec::with_capacity(n);
        let x = self.upload(input)?;
        let mut observe = |v: usize| -> Result<(), ModelError> {
            sync(self)?;
            stamps.push((v, Instant::now()));
            Ok(())
        };
        drop(self.forward_observed(x, &mut observe)?);
        for pair in stamps.windows(2) {
            let (_, before) = pair[0];
            let (v, after) = pair[1];
            times[v] = (after - before).as_secs_f64() * 1e3;
        }
        Ok(times)
    }

    /// Each node's median over `passes` (each [`Model::time_pass`]'s result for this model)
    /// as timings of batch `batch`. A pass of another length counts for no node it lacks.
    pub fn median_timings(&self, passes: &[Vec<f64>], batch: u64) -> Vec<LayerTiming> {
        self.net()
            .nodes()
            .iter()
            .enumerate()
            .map(|(v, node)| LayerTiming {
                node: v,
                id: node.id().to_string(),
                kind: node.spec().kind.name(),
                median_ms: median(passes.iter().filter_map(|p| p.get(v).copied()).collect()),
                out_bytes: batch * node.spec().out_bytes,
            })
            .collect()
    }

    /// Median latency in ms of a whole forward pass on `input`, after `warmup` unmeasured passes,
    /// reading the output back to the host each time. `runs` must be at least 1.
    pub fn time_forward(
        &self,
        input: &HostTensor,
        warmup: usize,
        runs: usize,
    ) -> Result<f64, ModelError> {
        if runs == 0 {
            return Err(no_runs());
        }
        let mut samples = Vec::with_capacity(runs);
        for i in 0..warmup + runs {
            let x = self.upload(input.clone())?;
            let start = Instant::now();
            self.forward(x)?.to_host()?;
            if i >= warmup {
                samples.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        Ok(median(samples))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo;
    use burn::tensor::Device;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
    }

    #[test]
    fn every_layer_is_timed_with_its_output_size() {
        let net = zoo::build("lenet").expect("lenet");
        let model = Model::seeded(net, 1, &Device::flex()).expect("model");
        let x = HostTensor::new(vec![2, 1, 32, 32], vec![0.5; 2 * 32 * 32]).expect("input");
        let timings = model.time_layers(x.clone(), 1, 3).expect("timings");
        assert_eq!(timings.len(), model.net().len());
        assert_eq!(timings[1].id, "features.0");
        assert_eq!(timings[1].kind, "conv2d");
        assert_eq!(timings[1].out_bytes, 2 * 6 * 28 * 28 * 4);
        assert!(
            timings
                .iter()
                .all(|t| t.median_ms >= 0.0 && t.median_ms.is_finite())
        );
        assert!(model.time_layers(x.clone(), 0, 0).is_err());
        assert!(model.time_forward(&x, 0, 1).expect("forward time") >= 0.0);
    }

    #[test]
    fn median_timings_take_each_node_over_the_passes_that_hold_it() {
        let net = zoo::build("lenet").expect("lenet");
        let n = net.len();
        let model = Model::seeded(net, 1, &Device::flex()).expect("model");
        let pass = |k: f64| (0..n).map(|v| v as f64 * k).collect::<Vec<_>>();
        // Three passes of every node, and one that stops after two nodes.
        let passes = [pass(1.0), pass(3.0), pass(2.0), vec![0.0, 100.0]];
        let timings = model.median_timings(&passes, 2);
        assert_eq!(timings.len(), n);
        assert_eq!(timings[1].median_ms, 2.5);
        assert_eq!(timings[2].median_ms, 4.0);
        assert_eq!(timings[n - 1].median_ms, 2.0 * (n - 1) as f64);
        assert_eq!(timings[1].id, "features.0");
        assert_eq!(timings[1].out_bytes, 2 * 6 * 28 * 28 * 4);
        // One real pass: a time per node, the input's 0.
        let x = HostTensor::new(vec![1, 1, 32, 32], vec![0.5; 32 * 32]).expect("input");
        let times = model.time_pass(x).expect("a timed pass");
        assert_eq!(times.len(), n);
        assert_eq!(times[0], 0.0);
        assert!(
            times.iter().all(|t| t.is_finite() && *t >= 0.0),
            "{times:?}"
        );
    }

    /// A seeded model of zoo network `name` on flex, and an input of `batch` samples of
    /// `shape`.
    fn model_and_input(name: &str, shape: Vec<usize>, batch: usize) -> (Model, HostTensor) {
        let net = zoo::build_with_input(name, shape.clone()).expect("zoo model");
        let model = Model::seeded(net, 7, &Device::flex()).expect("model");
        let len = batch * shape.iter().product::<usize>();
        let data = (0..len).map(|i| (i % 17) as f32 / 17.0 - 0.5).collect();
        let x = HostTensor::new([vec![batch], shape].concat(), data).expect("input");
        (model, x)
    }

    #[test]
    fn in_pass_and_alone_time_every_node_of_blocked_chains() {
        in_pass_matches_alone("mobilenet_v2", vec![3, 32, 32]);
    }

    #[test]
    fn a_node_timed_alone_gets_its_input_as_a_pass_hands_it_on() {
        // On 32² inputs, MobileNetV2's blocks from the second on work on maps of at most 14²:
        // on AVX-512 their convolutions run blocked and hand on blocked maps, which the next
        // one is timed on without converting them.
        let (model, x) = model_and_input("mobilenet_v2", vec![3, 32, 32], 1);
        let net = model.net();
        let expand = net
            .nodes()
            .iter()
            .position(|n| n.id() == "features.3.conv.0.0")
            .expect("node");
        let mut values: Vec<Input> = vec![Input::Value(model.upload(x).expect("upload"))];
        for v in 1..=expand {
            let inputs = net.nodes()[v]
                .inputs()
                .iter()
                .map(|&u| model.own_copy(&values[u]).expect("copy"))
                .collect();
            values.push(model.step(v, inputs).expect("runs"));
        }
        let avx512 = crate::VectorPath::current() == crate::VectorPath::Avx512;
        assert_eq!(matches!(values[expand], Input::Blocked(_)), avx512);
        let copy = model.own_copy(&values[expand]).expect("copy");
        assert_eq!(matches!(copy, Input::Blocked(_)), avx512);
        assert_eq!(copy.shape(), values[expand].shape());
    }

    /// In-pass timings cover the same nodes, in the same order, with the same ids, kinds and
    /// output sizes as timings of each node alone; every time is finite and not negative, the
    /// input's is 0, and together they make up a plausible share of a whole pass (loosely: the
    /// machine running the tests may be busy).
    fn in_pass_matches_alone(name: &str, shape: Vec<usize>) {
        let (model, x) = model_and_input(name, shape, 1);
        let alone = model.time_layers(x.clone(), 0, 1).expect("timings alone");
        let in_pass = model
            .time_in_pass(x.clone(), 1, 3)
            .expect("timings in pass");
        assert_eq!(in_pass.len(), model.net().len());
        let key = |t: &LayerTiming| (t.node, t.id.clone(), t.kind, t.out_bytes);
        assert_eq!(
            in_pass.iter().map(key).collect::<Vec<_>>(),
            alone.iter().map(key).collect::<Vec<_>>()
        );
        assert!(
            in_pass
                .iter()
                .all(|t| t.median_ms.is_finite() && t.median_ms >= 0.0),
            "{in_pass:?}"
        );
        assert_eq!(in_pass[0].median_ms, 0.0);
        let sum: f64 = in_pass.iter().map(|t| t.median_ms).sum();
        let forward = model.time_forward(&x, 1, 3).expect("forward time");
        assert!(sum > 0.0, "the nodes of {name} took no time at all");
        assert!(
            sum <= 3.0 * forward,
            "{name}: the nodes' in-pass times add up to {sum:.3} ms, a whole pass takes {forward:.3} ms"
        );
    }

    #[test]
    fn cache_sizes_parse_as_linux_writes_them() {
        assert_eq!(parse_cache_size("32768K"), Some(32 << 20));
        assert_eq!(parse_cache_size("1M"), Some(1 << 20));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size("12Q"), None);
        assert_eq!(parse_cache_size(""), None);
        assert_eq!(parse_cache_size("99999999999999999999G"), None);
    }

    #[test]
    fn a_scrub_writes_every_line_of_its_buffer() {
        let mut scrub = CacheScrub::new(10 * CACHE_LINE + 1);
        assert_eq!(scrub.bytes(), 10 * CACHE_LINE + 1);
        scrub.scrub();
        scrub.scrub();
        let firsts: Vec<u8> = scrub.buffer.chunks(CACHE_LINE).map(|l| l[0]).collect();
        assert_eq!(firsts, vec![2; 11]);
        assert_eq!(CacheScrub::new(0).bytes(), CACHE_LINE);
        // Twice the last-level cache, but not twice a server chip's whole one.
        assert_eq!(scrub_bytes(Some(32 << 20)), 64 << 20);
        assert_eq!(scrub_bytes(None), 64 << 20);
        assert_eq!(scrub_bytes(Some(480 << 20)), 128 << 20);
        assert_eq!(scrub_bytes(Some(usize::MAX)), 128 << 20);
    }

    #[test]
    fn cold_timings_cover_the_nodes_that_warm_ones_do() {
        let (model, x) = model_and_input("lenet", vec![1, 32, 32], 1);
        let warm = model.time_layers(x.clone(), 0, 1).expect("warm");
        let mut scrub = CacheScrub::new(1 << 20);
        let cold = model
            .time_layers_cold(x.clone(), 0, 2, &mut scrub)
            .expect("cold");
        let key = |t: &LayerTiming| (t.node, t.id.clone(), t.kind, t.out_bytes);
        assert_eq!(
            cold.iter().map(key).collect::<Vec<_>>(),
            warm.iter().map(key).collect::<Vec<_>>()
        );
        assert!(cold[1..].iter().all(|t| t.median_ms > 0.0), "{cold:?}");
        assert!(model.time_layers_cold(x, 0, 0, &mut scrub).is_err());
    }

    #[test]
    fn in_pass_times_every_node_of_a_chain() {
        in_pass_matches_alone("lenet", vec![1, 32, 32]);
    }

    #[test]
    fn in_pass_times_every_node_of_a_dag() {
        in_pass_matches_alone("resnet18", vec![3, 32, 32]);
    }

    #[test]
    fn in_pass_refuses_zero_runs() {
        let (model, x) = model_and_input("lenet", vec![1, 32, 32], 2);
        assert!(matches!(
            model.time_in_pass(x, 3, 0),
            Err(ModelError::BadParameter { field: "runs", .. })
        ));
    }

    #[test]
    fn in_pass_output_sizes_count_the_batch() {
        let (model, x) = model_and_input("lenet", vec![1, 32, 32], 2);
        let timings = model.time_in_pass(x, 0, 1).expect("timings in pass");
        assert_eq!(timings[1].id, "features.0");
        assert_eq!(timings[1].out_bytes, 2 * 6 * 28 * 28 * 4);
        assert!(timings[1..].iter().all(|t| t.median_ms.is_finite()));
    }
}
