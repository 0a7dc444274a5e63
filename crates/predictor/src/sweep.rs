//! Profiling sweeps: time sampled layers of every class on this machine, one CSV per class.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use models::{
    Backend, CacheScrub, ConvRun, Fusion, LayerKind, LayerTiming, Model, Net, NetBuilder, median,
};
use partition_core::synthetic::SplitMix64;

use crate::class::LayerClass;
use crate::dataset::{CsvSink, Measurement, PassTime, SweepMeta, in_pass_dir, in_pass_root};
use crate::error::PredictorError;
use crate::machine::{MachineInfo, apply_cpu_quota};
use crate::rounds::{SpellGuard, after_own_passes};
use crate::space::{Sampler, SweepSize};

/// What to sweep, where to write it, and under which conditions.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// Directory for the per-class CSVs; an existing sweep there is resumed.
    pub out_dir: PathBuf,
    /// Quick (about two minutes) or full.
    pub size: SweepSize,
    /// Backend to time on.
    pub backend: Backend,
    /// CPU quota to run under (cgroup v1), or none.
    pub cpu_quota: Option<f64>,
    /// Seed of the sampled configurations.
    pub seed: u64,
    /// Classes to sweep (all of them by default).
    pub classes: Vec<LayerClass>,
    /// Cap on the samples per class, below the size's own (for a fast trial run).
    pub max_samples: Option<usize>,
    /// Show progress bars.
    pub progress: bool,
}

/// How a class's sweep went.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassSummary {
    /// The class.
    pub class: LayerClass,
    /// Rows found from an earlier, interrupted run.
    pub resumed: usize,
    /// Rows measured now.
    pub measured: usize,
}

/// Samples per class, time budget per class, warm-up runs and timed runs.
struct Plan {
    samples: usize,
    budget: Duration,
    warmup: usize,
    runs: usize,
}

fn plan(size: SweepSize) -> Plan {
    match size {
        SweepSize::Quick => Plan {
            samples: 400,
            budget: Duration::from_secs(12),
            warmup: 2,
            runs: 9,
        },
        SweepSize::Full => Plan {
            samples: 500,
            budget: Duration::from_secs(300),
            warmup: 3,
            runs: 11,
        },
    }
}

/// Applies `config`'s CPU quota (or fails) and returns the conditions the rows are measured
/// under.
fn start(config: &SweepConfig) -> Result<SweepMeta, PredictorError> {
    if let Some(quota) = config.cpu_quota {
        apply_cpu_quota(quota)?;
    }
    let machine = MachineInfo::current();
    let meta = SweepMeta {
        device: machine.device,
        backend: config.backend.name().to_string(),
        threads: machine.threads,
        cpu_quota: config.cpu_quota,
    };
    Ok(meta)
}

/// Samples timed together, in [`SpellGuard::rounds`]: one run of each a round.
const SAMPLE_BATCH: usize = 8;

/// Runs the sweep: applies the CPU quota (or fails), then times samples of each class until
/// it has enough or the class's time budget is spent. The samples are timed [`SAMPLE_BATCH`]
/// at a time in `guard`'s interleaved rounds, each run alone with the caches evicted first
/// ([`Model::time_layers_cold`]), so that a slow moment of the machine touches a run or two of
/// each sample rather than every run of one, and a round in a longer slow spell is run again.
/// Each batch's rows are flushed as it ends.
pub fn run_sweep(
    config: &SweepConfig,
    guard: &mut SpellGuard,
) -> Result<(SweepMeta, Vec<ClassSummary>), PredictorError> {
    let meta = start(config)?;
    let device = config.backend.device()?;
    let mut plan = plan(config.size);
    if let Some(cap) = config.max_samples {
        plan.samples = plan.samples.min(cap);
    }
    let mut scrub = CacheScrub::for_this_machine();
    let mut summaries = Vec::new();
    for &class in &config.classes {
        let (mut sink, resumed) = CsvSink::open(&config.out_dir, class, &meta)?;
        let mut sampler = Sampler::new(class, config.size, config.seed);
        for _ in 0..resumed {
            sampler.next_sample();
        }
        let bar = progress_bar(config.progress, class, plan.samples, resumed);
        let mut rng = SplitMix64::new(config.seed ^ 0xC0FFEE);
        let started = Instant::now();
        let mut measured = 0;
        while resumed + measured < plan.samples && started.elapsed() < plan.budget {
            let count = SAMPLE_BATCH.min(plan.samples - resumed - measured);
            let mut batch = Vec::with_capacity(count);
            for _ in 0..count {
                let sample = sampler.next_sample();
                let net = sample.net()?;
                let input = models::seeded_input(&net, 1, rng.next_u64())?;
                // The sampled layer is the network's last node.
                let conv = ConvRun::of_net(&net).pop().flatten();
                let model = Model::seeded(net, config.seed, &device)?;
                batch.push((sample.spec()?, conv, model, input));
            }
            let runs = guard.rounds(batch.len(), plan.warmup, plan.runs, |i| {
                let (_, _, model, input) = &batch[i];
                let timings = model.time_layers_cold(input.clone(), 0, 1, &mut scrub)?;
                Ok::<_, PredictorError>(timings.last().map_or(0.0, |t| t.median_ms))
            })?;
            for ((spec, conv, _, _), runs) in batch.into_iter().zip(runs) {
                let median_ms = models::median(runs);
                sink.push(&Measurement {
                    spec,
                    conv,
                    median_ms,
                })?;
            }
            measured += count;
            bar.inc(count as u64);
        }
        bar.finish_and_clear();
        summaries.push(ClassSummary {
            class,
            resumed,
            measured,
        });
    }
    Ok((meta, summaries))
}

/// One network's layers timed inside its passes.
#[derive(Debug, Clone, PartialEq)]
pub struct InPassSummary {
    /// The network's name and input shape ([`in_pass_name`]).
    pub model: String,
    /// Layers written (those of a known class that a fusion does not absorb).
    pub layers: usize,
    /// Their in-pass times added up, ms.
    pub total_ms: f64,
    /// Its whole pass against all its nodes' in-pass times.
    pub pass: PassTime,
}

/// How a network's in-pass layers are named in a sweep directory: its name and input shape
/// (`resnet18-3x224x224`), since one network can be built for several input sizes.
pub fn in_pass_name(net: &Net) -> String {
    let shape: Vec<String> = net.input_shape().iter().map(usize::to_string).collect();
    format!("{}-{}", net.name(), shape.join("x"))
}

/// The network whose passes tell what a pass costs beyond its nodes ([`PassTime`]): one ReLU
/// over 64 values, whose own time is next to nothing, so that what its whole pass takes beyond
/// it is the pass's fixed cost (handing it to a worker and waking that worker, setting it up).
fn pass_probe() -> Result<Net, PredictorError> {
    let mut b = NetBuilder::new("pass-probe", vec![1, 8, 8])?;
    let input = b.input();
    b.add("relu", LayerKind::Relu, &[input])?;
    Ok(b.build()?)
}

/// Rounds run before timing, and rounds timed (each layer's median is kept); a round is one
/// pass of every network.
const IN_PASS_WARMUP: usize = 3;
const IN_PASS_ROUNDS: usize = 11;

/// Tries at most of the networks' in-pass and whole passes, while their nodes sum to more than
/// [`NODES_EXCESS_LIMIT`] above their whole passes; the try with the least excess is kept.
/// Machine D, a quick profile in a slow spell: MobileNetV2's nodes 7.02 ms against its whole
/// passes' 4.55, ResNet-18's 19.60 against 15.06, where a steady profile had 4.42 against 4.52.
const IN_PASS_TRIES: usize = 3;

/// How far the networks' nodes may sum above their whole passes (a share): a pass runs its
/// nodes and more, so only timing noise puts them above it.
const NODES_EXCESS_LIMIT: f64 = 0.05;

/// The wait before another try, so that it may fall outside the spell.
const IN_PASS_PAUSE: Duration = Duration::from_secs(5);

/// Each node's median over one network's `passes` ([`Model::time_pass`]), scaled so that the
/// nodes add up to the median of the passes' own sums ([`scale_to_typical_pass`]).
fn typical_pass_timings(model: &Model, passes: &[Vec<f64>]) -> Vec<LayerTiming> {
    let mut timings = model.median_timings(passes, 1);
    let mut times: Vec<f64> = timings.iter().map(|t| t.median_ms).collect();
    scale_to_typical_pass(&mut times, passes);
    for (timing, ms) in timings.iter_mut().zip(times) {
        timing.median_ms = ms;
    }
    timings
}

/// Scales the nodes' `medians` (each over `passes`, a pass's node times each) so that they add
/// up to the median of the passes' sums, keeping their ratios. A node's times lean to the slow
/// side (now and then one of its runs is interrupted, rarely the same node twice), so medians
/// taken node by node add up to less than a typical pass: machine D, passes timed between
/// nodes alternating with whole passes, 100–120 of each, one and two threads, by 0.2–3.1 %
/// (most on MobileNetV2 and GoogLeNet), where the median pass's nodes came within 0–2.1 % of
/// the whole passes. A network prices its layers at their sum, so that sum should be its
/// typical pass.
fn scale_to_typical_pass(medians: &mut [f64], passes: &[Vec<f64>]) {
    let sum: f64 = medians.iter().sum();
    let typical = median(passes.iter().map(|p| p.iter().sum()).collect());
    if sum > 0.0 && typical.is_finite() && typical > 0.0 {
        let scale = typical / sum;
        medians.iter_mut().for_each(|m| *m *= scale);
    }
}

/// One try of [`run_in_pass`]'s timings: for each network its rounds' node times and its whole
/// passes, and how far its nodes summed above its whole passes ([`nodes_excess`]).
struct InPassTry {
    excess: f64,
    passes: Vec<Vec<Vec<f64>>>,
    wholes: Vec<Vec<f64>>,
    /// The guard's calm anchor through the try's rounds, ms.
    anchor_ms: f64,
}

/// How far the nodes of all the networks of `times` sum above their whole passes, as a share
/// of the latter (negative where below).
fn nodes_excess(times: &[PassTime]) -> f64 {
    let nodes: f64 = times.iter().map(|t| t.nodes_ms).sum();
    let whole: f64 = times.iter().map(|t| t.whole_ms).sum();
    if whole > 0.0 {
        nodes / whole - 1.0
    } else {
        0.0
    }
}

/// Times every layer of each of `nets` inside real forward passes (batch 1, a seeded input;
/// [`Model::time_pass`]: timestamps between nodes as a pass runs them, with the caches as
/// the pass leaves them) and writes each layer that costs something (of a known class, not
/// absorbed by a fusion, not a residual addition its convolution adds in its epilogue) to
/// [`in_pass_dir`]'s per-class CSVs, replacing an earlier run's. The passes run in `guard`'s
/// interleaved rounds, one pass of each network per round, so that all of `nets` are held
/// at once. The CPU quota, backend and seed are the sweep's. These are the layers of real
/// networks in their real context, which the sampled layers of [`run_sweep`] are not. A node's
/// time is its median over the rounds, scaled so that the network's nodes add up to its median
/// pass ([`scale_to_typical_pass`]). In the same rounds, each network's whole passes, run as an
/// application runs one (right after its pass timed between nodes), go against its nodes' sum
/// into its summary's [`PassTime`], and a probe network's (one ReLU, timed in the same rounds)
/// into [`in_pass_root`]`/pass.csv`: what a pass costs beyond its nodes, which `train` keeps as
/// the profile's `pass_ms`. Each [`PassTime`] also holds the guard's anchor through the rounds
/// that timed it (how fast the machine ran then). Where the networks' nodes sum to more
/// than their whole passes ([`NODES_EXCESS_LIMIT`]), the node timings ran in a slow spell that
/// the guard's anchor did not show: both are timed again after a pause, up to
/// [`IN_PASS_TRIES`] tries, and the try with the least excess is kept (with `progress`, each
/// retry is said on stderr). Only the classes the sweep samples
/// (`config.classes`) are written, since `train` needs sampled rows of every class it fits.
/// Callers add [`small_nets`](crate::small_nets) to `nets` so that layers of LeNet's size
/// have in-pass rows from other networks than LeNet.
pub fn run_in_pass(
    config: &SweepConfig,
    nets: &[Net],
    guard: &mut SpellGuard,
) -> Result<(SweepMeta, Vec<InPassSummary>), PredictorError> {
    let meta = start(config)?;
    if nets.is_empty() {
        return Ok((meta, Vec::new()));
    }
    let device = config.backend.device()?;
    let mut models = Vec::with_capacity(nets.len());
    let mut inputs = Vec::with_capacity(nets.len());
    for net in nets {
        models.push(Model::seeded(net.clone(), config.seed, &device)?);
        inputs.push(models::seeded_input(net, 1, config.seed)?);
    }
    // The probe last, timed in the same rounds as the networks.
    let probe = pass_probe()?;
    models.push(Model::seeded(probe.clone(), config.seed, &device)?);
    inputs.push(models::seeded_input(&probe, 1, config.seed)?);
    let pass_time = |timings: &[LayerTiming], wholes: Vec<f64>, anchor_ms| PassTime {
        whole_ms: median(wholes),
        nodes_ms: timings.iter().map(|t| t.median_ms).sum(),
        anchor_ms,
    };
    // Each try: in every round, each network's pass timed between nodes and then a whole pass
    // as an application runs one, from this thread, both right after passes of its own network
    // ([`after_own_passes`]), so that the two see the machine in the same moments. A try whose
    // nodes add up to more than its whole passes ran its node timings in a slow spell the
    // anchor did not show.
    let time_try = |guard: &mut SpellGuard| -> Result<InPassTry, PredictorError> {
        let mark = guard.timings();
        let rounds = guard.rounds(models.len(), IN_PASS_WARMUP, IN_PASS_ROUNDS, |i| {
            after_own_passes(&models[i], &inputs[i], |model, input| {
                let nodes = model.time_pass(input.clone())?;
                Ok((nodes, model.time_forward(input, 0, 1)?))
            })
        })?;
        let anchor_ms = guard.calm_since(mark).unwrap_or(0.0);
        let (passes, wholes): (Vec<Vec<Vec<f64>>>, Vec<Vec<f64>>) = rounds
            .into_iter()
            .map(|model_rounds| model_rounds.into_iter().unzip())
            .unzip();
        let times: Vec<PassTime> = models
            .iter()
            .zip(&passes)
            .zip(&wholes)
            .map(|((model, passes), wholes)| {
                pass_time(
                    &typical_pass_timings(model, passes),
                    wholes.clone(),
                    anchor_ms,
                )
            })
            .collect();
        Ok(InPassTry {
            excess: nodes_excess(&times),
            passes,
            wholes,
            anchor_ms,
        })
    };
    let mut best = time_try(guard)?;
    for _ in 1..IN_PASS_TRIES {
        if best.excess <= NODES_EXCESS_LIMIT {
            break;
        }
        if config.progress {
            eprintln!(
                "The networks' nodes summed {:.0} % above their whole passes (a slow spell while they were timed): timing them again",
                100.0 * best.excess
            );
        }
        std::thread::sleep(IN_PASS_PAUSE);
        let again = time_try(guard)?;
        if again.excess < best.excess {
            best = again;
        }
    }
    let InPassTry {
        mut passes,
        mut wholes,
        anchor_ms,
        ..
    } = best;
    if let (Some(model), Some(passes), Some(wholes)) = (models.pop(), passes.pop(), wholes.pop()) {
        let timings = typical_pass_timings(&model, &passes);
        pass_time(&timings, wholes, anchor_ms).write(&in_pass_root(&config.out_dir))?;
    }
    let mut summaries = Vec::new();
    for (((net, model), passes), wholes) in nets.iter().zip(&models).zip(passes).zip(wholes) {
        let dir = in_pass_dir(&config.out_dir, &in_pass_name(net));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| PredictorError::io("cannot replace", &dir, e))?;
        }
        let timings = typical_pass_timings(model, &passes);
        let pass = pass_time(&timings, wholes, anchor_ms);
        let fusion = Fusion::of(net);
        let runs = ConvRun::of_net(net);
        let mut sinks: BTreeMap<LayerClass, CsvSink> = BTreeMap::new();
        let mut summary = InPassSummary {
            model: in_pass_name(net),
            layers: 0,
            total_ms: 0.0,
            pass,
        };
        for (v, timing) in timings.iter().enumerate() {
            let spec = net.nodes()[v].spec();
            let Some(class) = LayerClass::of(&spec.kind) else {
                continue;
            };
            if !config.classes.contains(&class) {
                continue;
            }
            if fusion.is_absorbed(v) || fusion.shortcut_conv(v).is_some() {
                continue;
            }
            let sink = match sinks.entry(class) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(CsvSink::open(&dir, class, &meta)?.0),
            };
            sink.push(&Measurement {
                spec: spec.clone(),
                conv: runs[v],
                median_ms: timing.median_ms,
            })?;
            summary.layers += 1;
            summary.total_ms += timing.median_ms;
        }
        summaries.push(summary);
    }
    Ok((meta, summaries))
}

fn progress_bar(show: bool, class: LayerClass, total: usize, done: usize) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64).with_position(done as u64);
    let style =
        ProgressStyle::with_template("{prefix:>13} [{bar:30}] {pos}/{len} layers, {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(class.name());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_above_their_whole_passes_are_caught() {
        let time = |nodes_ms, whole_ms| PassTime {
            whole_ms,
            nodes_ms,
            anchor_ms: 0.0,
        };
        // A steady profile: every network's nodes a little below its whole pass.
        let steady = [time(4.42, 4.52), time(14.72, 14.80), time(0.07, 0.11)];
        assert!(nodes_excess(&steady) < 0.0);
        assert!(nodes_excess(&steady) <= NODES_EXCESS_LIMIT);
        // The node timings in a slow spell, the whole passes not: 7.02 + 19.60 against
        // 4.55 + 15.06, 36 % above.
        let spell = [time(7.02, 4.55), time(19.60, 15.06)];
        let excess = nodes_excess(&spell);
        assert!((excess - (26.62 / 19.61 - 1.0)).abs() < 1e-9, "{excess}");
        assert!(excess > NODES_EXCESS_LIMIT);
        // Nothing timed: no excess.
        assert_eq!(nodes_excess(&[]), 0.0);
    }

    #[test]
    fn node_medians_are_scaled_to_add_up_to_the_median_pass() {
        // Five passes of three nodes, each pass slowed in one node: every node's median is
        // its quiet time (1, 2, 3: 6 ms in all), but a typical pass takes 7.
        let passes = vec![
            vec![2.0, 2.0, 3.0],
            vec![1.0, 3.0, 3.0],
            vec![1.0, 2.0, 4.0],
            vec![1.0, 2.0, 3.0],
            vec![2.0, 2.0, 3.0],
        ];
        let mut times = vec![1.0, 2.0, 3.0];
        scale_to_typical_pass(&mut times, &passes);
        let sums: Vec<f64> = passes.iter().map(|p| p.iter().sum()).collect();
        assert_eq!(median(sums), 7.0);
        assert!((times.iter().sum::<f64>() - 7.0).abs() < 1e-12, "{times:?}");
        // The nodes keep their ratios.
        assert!((times[1] / times[0] - 2.0).abs() < 1e-12);
        assert!((times[2] / times[0] - 3.0).abs() < 1e-12);
        // Nothing timed, or nodes that took no time: left as they are.
        let mut zeros = vec![0.0, 0.0];
        scale_to_typical_pass(&mut zeros, &[vec![0.0, 0.0]]);
        assert_eq!(zeros, [0.0, 0.0]);
        let mut untouched = vec![1.0];
        scale_to_typical_pass(&mut untouched, &[]);
        assert_eq!(untouched, [1.0]);
    }
}
