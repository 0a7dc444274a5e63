//! Interleaved rounds: timing several networks one pass at a time, round after round, with
//! the rounds that a slow spell of the machine touched run again.
//!
//! A shared machine has slow moments (another tenant, a frequency change) that last longer
//! than a few passes. Timed back to back, every pass of one network can fall into one such
//! moment, and two profiles of one machine then disagree on that network by 10–20 %. Taking one
//! pass of each network per round spreads each network's passes over the whole measurement, so
//! a short slow moment touches a pass or two of each, and the median sets them aside.
//!
//! Some spells last longer than a batch of sampled layers takes, from seconds to many minutes,
//! and slow every parallel pass alike. On a two-core VM whose cores at such times share data
//! slowly (a round trip of a cache line between them 300–550 ns where it is otherwise near
//! 80), a two-thread pass of MobileNetV2 took 9.4 ms against 4.1 while one thread was not slowed
//! (7.0 ms): a median cannot see such a spell. So a [`SpellGuard`] times a small fixed network,
//! its *anchor*, before the first round and after every round. A round whose anchor before or
//! after took more than [`SLOW_LIMIT`] times the machine's *calm* anchor is run again, as long
//! as the redone rounds stay within the count asked for; the guard's [`Steadiness`] tells how
//! many were redone and how many slow ones had to be kept.
//!
//! The calm is the lower quartile ([`CALM_QUANTILE`]) of every anchor timed so far, not the
//! fastest: the state this machine is in for most of the measurement, which is the state an
//! application meets. On some machines the fast state is the rare one: two virtual CPUs that
//! share data slowly most of the time (a round trip near 450 ns) ran the two-thread anchor in
//! 0.72 ms (the median of a minute's passes; 98 % of them above 1.2 times the fastest) and in
//! 0.44–0.55 ms only in a stretch of a few seconds; judged against the fastest, 72 % of them
//! were slow, and a sweep's rounds were nearly all run again.
//! A spell that lasts the whole measurement is not seen: its calm is a slow one.

use std::time::Instant;

use models::{Backend, HostTensor, LayerKind, Model, ModelError, NetBuilder};
use serde::{Deserialize, Serialize};

/// A round is slow when its anchor took more than this many times the calm anchor.
pub const SLOW_LIMIT: f64 = 1.6;

/// The calm anchor is this quantile of the anchor timings: the lower quartile, so that rounds
/// slowed by a spell are seen as long as spells take less than three quarters of the time,
/// and a rare fast stretch does not make every round look slow.
pub const CALM_QUANTILE: f64 = 0.25;

/// Share of slow rounds kept above which [`Steadiness::warning`] warns: the median over a
/// sample's rounds sets a few slow ones aside, not a large share.
pub const WARN_SLOW_SHARE: f64 = 0.1;

/// How many times faster than a sweep's fastest anchor this machine must run the anchor now for
/// that sweep to count as taken in a slow spell ([`Steadiness::ran_slower_than`]). The sweep's
/// fastest is the least of its hundreds or thousands of anchor timings and the time now the
/// least of a few, so on a machine as fast as during the sweep the time now is at or above it;
/// a sweep whose every anchor ran slow (in a spell longer than the sweep: some last many
/// minutes) does not see it. The fastest, not the calm: the time now is the least of a few
/// timings, which on a machine that moves between a fast and a slower state lands in the fast
/// one, while a sweep's calm (its lower quartile) lands wherever the machine spent most of the
/// sweep; like is compared with like.
pub const PROFILED_SLOW_LIMIT: f64 = 1.3;

/// Slow rounds in a row after which a spell counts as long: its rounds are kept as they come
/// (and counted in [`Steadiness::slow_kept`]) instead of run again, until an anchor is calm
/// again. Some spells last many minutes, and running every round twice through them would
/// only spend the sweep's time budget.
pub const LONG_SPELL_ROUNDS: usize = 20;

/// Anchor passes run unmeasured before the first (the first allocates its buffers).
const ANCHOR_WARMUP: usize = 3;

/// Passes of the anchor each timing takes the fastest of. The caches as a round of cold layers
/// (or any pause of some milliseconds) leaves them slow the next passes for a while: on machine
/// E, one thread, the first pass after a round took 2.26 ms at the median and the second 1.57,
/// and only from the fifth on did the passes run as the machine runs the anchor alone (1.04–1.10
/// ms, lower quartile; 0.68–0.69 against 0.91 for the second on two threads). A register loop
/// of multiply-adds ran as fast right after a pause as later, so what recovers is the caches, not
/// the clock. With the fastest of two passes, the calm stood 40 % above the machine alone.
pub const ANCHOR_PASSES: usize = 6;

/// How a guard's rounds went.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Steadiness {
    /// Rounds measured and kept.
    pub kept: usize,
    /// Rounds run again because their anchor was slow.
    pub redone: usize,
    /// Kept rounds whose anchor was slow against the calm of the guard's whole life: slow
    /// rounds kept when the redos ran out, or rounds that looked steady until later anchors
    /// showed what calm is.
    pub slow_kept: usize,
    /// The calm anchor ([`CALM_QUANTILE`] of the anchor timings), ms.
    pub calm_ms: f64,
    /// The fastest anchor timing, ms (0 where a sweep did not record it).
    #[serde(default)]
    pub fastest_ms: f64,
}

impl Steadiness {
    /// How many times slower than `now_ms` (the fastest of a few anchor timings now, as
    /// [`SpellGuard::fastest_anchor_ms`] times them) this sweep's fastest anchor ran, where that
    /// is more than [`PROFILED_SLOW_LIMIT`]: the whole sweep ran slower than the machine runs
    /// now, and every time it measured is that much too high. `None` otherwise, or where either
    /// time is not a positive number.
    pub fn ran_slower_than(&self, now_ms: f64) -> Option<f64> {
        let ratio = self.fastest_ms / now_ms;
        (self.fastest_ms > 0.0 && now_ms > 0.0 && ratio.is_finite() && ratio > PROFILED_SLOW_LIMIT)
            .then_some(ratio)
    }

    /// Share of the kept rounds that ran slow, 0–1.
    pub fn slow_share(&self) -> f64 {
        if self.kept == 0 {
            0.0
        } else {
            self.slow_kept as f64 / self.kept as f64
        }
    }

    /// A warning to print when more than [`WARN_SLOW_SHARE`] of the kept rounds were slow,
    /// naming what to do; `None` otherwise.
    pub fn warning(&self) -> Option<String> {
        (self.slow_share() > WARN_SLOW_SHARE).then(|| {
            format!(
                "{} of {} measured rounds ran in a slow spell of this machine (a reference pass over {SLOW_LIMIT}× its usual {:.3} ms) after {} were run again: the times may be high; measure again when the machine is quieter",
                self.slow_kept, self.kept, self.calm_ms, self.redone
            )
        })
    }
}

/// Runs interleaved rounds and sets aside those a slow spell touched (see the module's
/// documentation).
pub struct SpellGuard<'a> {
    /// Times one anchor pass, ms.
    anchor: Box<dyn FnMut() -> Result<f64, ModelError> + 'a>,
    /// Every anchor timing so far, ms.
    anchors: Vec<f64>,
    /// A calm from an earlier measurement ([`SpellGuard::with_calm`]), ms; infinite if none.
    earlier_calm_ms: f64,
    /// Each kept round's slower anchor pass, ms.
    kept: Vec<f64>,
    /// Rounds run again.
    redone: usize,
    /// Slow rounds in a row, across calls.
    slow_streak: usize,
}

impl<'a> SpellGuard<'a> {
    /// A guard whose anchor pass is timed by `anchor` (in ms). [`SpellGuard::on`] gives the
    /// real one; tests script one.
    pub fn new(anchor: impl FnMut() -> Result<f64, ModelError> + 'a) -> SpellGuard<'a> {
        SpellGuard {
            anchor: Box::new(anchor),
            anchors: Vec::new(),
            earlier_calm_ms: f64::INFINITY,
            kept: Vec::new(),
            redone: 0,
            slow_streak: 0,
        }
    }

    /// A guard whose anchor is a whole forward pass, run as an application runs one, of an
    /// inverted-residual block on `backend`: a 1×1 convolution from 24 to 144 channels over
    /// 56×56, a 3×3 depthwise one and a 1×1 back to 24, each with a ReLU6 (about half a
    /// millisecond on two cores). Small enough to time after every round, and like the layers
    /// that a spell slows most: parallel, with each layer reading what both workers wrote
    /// before it, so that it sees a spell in which the cores are slow to share data.
    pub fn on(backend: Backend) -> Result<SpellGuard<'static>, ModelError> {
        let mut b = NetBuilder::new("spell-anchor", vec![24, 56, 56])?;
        let mut x = b.input();
        for (id, cin, cout, kernel, groups) in [
            ("expand", 24, 144, 1, 1),
            ("depthwise", 144, 144, 3, 144),
            ("project", 144, 24, 1, 1),
        ] {
            let kind = LayerKind::Conv2d {
                in_channels: cin,
                out_channels: cout,
                kernel_size: [kernel; 2],
                stride: [1, 1],
                padding: [kernel / 2; 2],
                dilation: [1, 1],
                groups,
                bias: true,
            };
            x = b.add(id, kind, &[x])?;
            if id != "project" {
                x = b.add(format!("{id}-relu6"), LayerKind::Relu6, &[x])?;
            }
        }
        let net = b.build()?;
        let input = models::seeded_input(&net, 1, 0)?;
        let model = Model::seeded(net, 0, &backend.device()?)?;
        // Warmed up on its first use rather than here, so that a CPU quota applied between the
        // two holds for every pass that sets the calm.
        let mut warm = false;
        Ok(SpellGuard::new(move || {
            let warmup = if warm { 0 } else { ANCHOR_WARMUP };
            warm = true;
            model.time_forward(&input, warmup, 1)
        }))
    }

    /// The guard, judging its rounds against a calm anchor of `calm_ms` where that is calmer
    /// than its own: the calm of an earlier measurement on this machine under the same
    /// conditions (a sweep's [`Steadiness::calm_ms`]), so that a spell that lasts this whole
    /// measurement is seen too. Zero or less is ignored.
    pub fn with_calm(mut self, calm_ms: f64) -> SpellGuard<'a> {
        if calm_ms > 0.0 {
            self.earlier_calm_ms = calm_ms;
        }
        self
    }

    /// The fastest of `tries` anchor timings (each the fastest of [`ANCHOR_PASSES`] passes, as the
    /// rounds time them; at least one), ms: how fast this machine runs the anchor now.
    pub fn fastest_anchor_ms(&mut self, tries: usize) -> Result<f64, ModelError> {
        let mut fastest = f64::INFINITY;
        for _ in 0..tries.max(1) {
            fastest = fastest.min(self.time_anchor()?);
        }
        Ok(fastest)
    }

    /// Times the anchor: the fastest of [`ANCHOR_PASSES`] passes, the first of which finds the
    /// caches as the round left them. Keeps the timing.
    fn time_anchor(&mut self) -> Result<f64, ModelError> {
        let mut ms = f64::INFINITY;
        for _ in 0..ANCHOR_PASSES {
            ms = ms.min((self.anchor)()?);
        }
        self.anchors.push(ms);
        Ok(ms)
    }

    /// [`CALM_QUANTILE`] of this guard's own anchor timings, ms, leaving out any earlier calm
    /// ([`SpellGuard::with_calm`]): how fast the machine ran the anchor through these rounds.
    /// `None` before the first timing.
    pub fn own_calm_ms(&self) -> Option<f64> {
        self.calm_since(0)
    }

    /// Anchor timings so far: a mark for [`SpellGuard::calm_since`].
    pub fn timings(&self) -> usize {
        self.anchors.len()
    }

    /// [`CALM_QUANTILE`] of the anchor timings from the `first`-th on (a mark from
    /// [`SpellGuard::timings`]), ms: how fast the machine ran the anchor through the rounds
    /// since. `None` where there are none.
    pub fn calm_since(&self, first: usize) -> Option<f64> {
        let since = self.anchors.get(first..).filter(|a| !a.is_empty())?;
        Some(calm_of(&mut since.to_vec()))
    }

    /// The calm anchor now, ms: [`CALM_QUANTILE`] of the anchor timings so far, or the earlier
    /// measurement's calm where that is lower; infinite before the first timing.
    fn calm_ms(&self) -> f64 {
        self.own_calm_ms()
            .unwrap_or(f64::INFINITY)
            .min(self.earlier_calm_ms)
    }

    /// Runs `warmup` unmeasured rounds and then `rounds` measured ones that were steady; each
    /// round calls `run(i)` once for every item `i` in `0..count`, in order. A slow round is
    /// run again while fewer than `rounds` have been redone in this call and the spell is not
    /// a long one ([`LONG_SPELL_ROUNDS`]); when the redos run out, the least slow of the slow
    /// rounds make up the count. Returns each item's results, in the order the kept rounds
    /// ran, or the first error.
    pub fn rounds<T, E: From<ModelError>>(
        &mut self,
        count: usize,
        warmup: usize,
        rounds: usize,
        mut run: impl FnMut(usize) -> Result<T, E>,
    ) -> Result<Vec<Vec<T>>, E> {
        for _ in 0..warmup {
            (0..count).try_for_each(|i| run(i).map(drop))?;
        }
        // Each round's results, with its slower anchor pass and when it ran.
        let mut kept: Vec<(usize, f64, Vec<T>)> = Vec::with_capacity(rounds);
        let mut set_aside: Vec<(usize, f64, Vec<T>)> = Vec::new();
        let mut before = self.time_anchor()?;
        for at in 0.. {
            if kept.len() == rounds || kept.len() + set_aside.len() == rounds + rounds {
                break;
            }
            let results = (0..count).map(&mut run).collect::<Result<Vec<T>, E>>()?;
            let after = self.time_anchor()?;
            let anchor = before.max(after);
            before = after;
            let slow = anchor > SLOW_LIMIT * self.calm_ms();
            self.slow_streak = if slow { self.slow_streak + 1 } else { 0 };
            if slow && self.slow_streak <= LONG_SPELL_ROUNDS {
                set_aside.push((at, anchor, results));
            } else {
                kept.push((at, anchor, results));
            }
        }
        // Rounds still missing are made up by the least slow of those set aside.
        set_aside.sort_by(|a, b| a.1.total_cmp(&b.1));
        let missing = rounds - kept.len();
        self.redone += set_aside.len() - missing;
        kept.extend(set_aside.into_iter().take(missing));
        kept.sort_by_key(|r| r.0);
        let mut by_item: Vec<Vec<T>> = (0..count).map(|_| Vec::with_capacity(rounds)).collect();
        for (_, anchor, results) in kept {
            self.kept.push(anchor);
            for (item, result) in by_item.iter_mut().zip(results) {
                item.push(result);
            }
        }
        Ok(by_item)
    }

    /// How the rounds run so far went, judged against the calm of all their anchors.
    pub fn steadiness(&self) -> Steadiness {
        let calm_ms = self.calm_ms();
        Steadiness {
            kept: self.kept.len(),
            redone: self.redone,
            slow_kept: self
                .kept
                .iter()
                .filter(|&&a| a > SLOW_LIMIT * calm_ms)
                .count(),
            calm_ms: if calm_ms.is_finite() { calm_ms } else { 0.0 },
            fastest_ms: self.anchors.iter().copied().reduce(f64::min).unwrap_or(0.0),
        }
    }
}

/// [`CALM_QUANTILE`] of `anchors` (not empty; reordered), ms: the value below which a quarter
/// of them lie, by nearest rank.
fn calm_of(anchors: &mut [f64]) -> f64 {
    let rank = (CALM_QUANTILE * (anchors.len() - 1) as f64).floor() as usize;
    *anchors.select_nth_unstable_by(rank, f64::total_cmp).1
}

/// How long a network runs unmeasured passes of its own before [`after_own_passes`] times it,
/// ms (at least one pass, at most [`OWN_WARMUP_PASSES`]). After another network's pass, or any
/// other work, a small network's next passes run slow for a while: on machine E, one thread,
/// LeNet's second pass after a pass of GoogLeNet took 0.081–0.103 ms at the median, its fifth
/// and later 0.065–0.092, and 200 passes in a row 0.060–0.063; networks of 10 ms or more ran
/// their second pass as fast as their fifth (MobileNetV2, ResNet-18: within 3 %).
pub const OWN_WARMUP_MS: f64 = 5.0;

/// The most unmeasured passes [`after_own_passes`] runs, however short they are.
pub const OWN_WARMUP_PASSES: usize = 1000;

/// Runs `time` on `model` and `input` right after unmeasured forward passes of `model` on
/// `input` ([`OWN_WARMUP_MS`] of them, at least one), so that a network timed in rounds with
/// others finds the caches, the recycled output buffers and the pool's workers as an
/// application that runs it pass after pass leaves them, not as the network before it in the
/// round did. (LeNet, machine D, two threads: 0.07–0.08 ms a pass after one of its own,
/// 0.11–0.15 after a pass of GoogLeNet, ResNet-50 or AlexNet.)
pub fn after_own_passes<T>(
    model: &Model,
    input: &HostTensor,
    time: impl FnOnce(&Model, &HostTensor) -> Result<T, ModelError>,
) -> Result<T, ModelError> {
    let start = Instant::now();
    for _ in 0..OWN_WARMUP_PASSES {
        model.time_forward(input, 0, 1)?;
        if start.elapsed().as_secs_f64() * 1e3 >= OWN_WARMUP_MS {
            break;
        }
    }
    time(model, input)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guard whose anchors take the scripted times in turn (the last one after that), every
    /// pass of each anchor alike.
    fn scripted(times: &[f64]) -> SpellGuard<'_> {
        let mut next = 0;
        SpellGuard::new(move || {
            let ms = times[(next / ANCHOR_PASSES).min(times.len() - 1)];
            next += 1;
            Ok(ms)
        })
    }

    #[test]
    fn each_round_visits_every_item_once_and_warm_up_rounds_are_dropped() {
        let mut guard = scripted(&[1.0]);
        let mut calls = Vec::new();
        let results = guard
            .rounds(3, 1, 2, |i| -> Result<usize, ModelError> {
                calls.push(i);
                Ok(calls.len())
            })
            .expect("no error");
        assert_eq!(calls, [0, 1, 2, 0, 1, 2, 0, 1, 2]);
        // Item 0's measured calls were the 4th and 7th.
        assert_eq!(results, [vec![4, 7], vec![5, 8], vec![6, 9]]);
        let s = guard.steadiness();
        assert_eq!((s.kept, s.redone, s.slow_kept, s.calm_ms), (2, 0, 0, 1.0));
        assert_eq!(s.warning(), None);
    }

    #[test]
    fn the_first_error_stops_the_rounds() {
        let mut guard = scripted(&[1.0]);
        let mut calls = 0;
        let result = guard.rounds(2, 0, 3, |i| {
            calls += 1;
            if calls == 4 {
                Err(TestError(format!("item {i}")))
            } else {
                Ok(())
            }
        });
        assert_eq!(result, Err(TestError("item 1".to_string())));
        assert_eq!(calls, 4);
    }

    /// An error of the test above's own type.
    #[derive(Debug, PartialEq)]
    struct TestError(String);

    impl From<ModelError> for TestError {
        fn from(e: ModelError) -> Self {
            TestError(e.to_string())
        }
    }

    /// `rounds` rounds of one item, each returning its call's number: the results and the
    /// calls made.
    fn numbered(guard: &mut SpellGuard<'_>, rounds: usize) -> (Vec<Vec<usize>>, usize) {
        let mut call = 0;
        let results = guard
            .rounds(1, 0, rounds, |_| -> Result<usize, ModelError> {
                call += 1;
                Ok(call)
            })
            .expect("no error");
        (results, call)
    }

    /// Two rounds of one item that does nothing.
    fn two_rounds(guard: &mut SpellGuard<'_>) {
        guard
            .rounds(1, 0, 2, |_| -> Result<(), ModelError> { Ok(()) })
            .expect("no error");
    }

    #[test]
    fn a_round_with_a_slow_anchor_before_or_after_it_is_run_again() {
        // Anchors: before round 1, then after rounds 1..: round 2 ends slow and round 3 starts
        // slow, so both are redone.
        let mut guard = scripted(&[1.0, 1.1, 2.5, 1.0, 1.2, 1.0]);
        let (results, _) = numbered(&mut guard, 3);
        assert_eq!(results, [vec![1, 4, 5]]);
        let s = guard.steadiness();
        assert_eq!((s.kept, s.redone, s.slow_kept), (3, 2, 0));
    }

    #[test]
    fn when_the_redos_run_out_the_least_slow_rounds_are_kept_and_named() {
        // Calm known from an earlier measurement, then every round slow: 2 rounds asked for, 2
        // redone, then the two least slow of the four slow rounds kept, in the order they ran.
        let mut guard = scripted(&[1.0, 3.0, 2.0, 4.0, 2.5, 5.0]).with_calm(1.0);
        let (results, call) = numbered(&mut guard, 2);
        // Rounds' slower anchors: 3.0, 3.0, 4.0, 4.0 → rounds 1 and 2 kept.
        assert_eq!(call, 4);
        assert_eq!(results, [vec![1, 2]]);
        let s = guard.steadiness();
        assert_eq!((s.kept, s.redone, s.slow_kept, s.calm_ms), (2, 2, 2, 1.0));
        let warning = s.warning().expect("a warning");
        assert!(warning.contains("2 of 2 measured rounds"), "{warning}");
    }

    #[test]
    fn a_long_spell_stops_the_redos_until_an_anchor_is_calm_again() {
        // Calm, then slow for good: the first LONG_SPELL_ROUNDS slow rounds are set aside
        // (across two calls), the ones after are kept as they come.
        let mut times = vec![1.0];
        times.extend(std::iter::repeat_n(3.0, 100));
        let mut guard = scripted(&times).with_calm(1.0);
        let calls = std::cell::Cell::new(0);
        let run = |_: usize| -> Result<(), ModelError> {
            calls.set(calls.get() + 1);
            Ok(())
        };
        // First call, 12 rounds asked for: the first 20 slow rounds are set aside, the next 4
        // kept as they come, and 8 of those set aside make up the count (12 redone).
        guard.rounds(1, 0, 12, run).expect("no error");
        assert_eq!(calls.get(), 24);
        // Second call: the spell is long already, so every round is kept as it comes.
        guard.rounds(1, 0, 12, run).expect("no error");
        assert_eq!(calls.get(), 36);
        let s = guard.steadiness();
        assert_eq!((s.kept, s.redone, s.slow_kept), (24, 12, 24));
    }

    #[test]
    fn an_earlier_calm_shows_a_spell_that_lasts_the_whole_measurement() {
        let mut guard = scripted(&[2.0]).with_calm(1.0);
        assert_eq!(guard.own_calm_ms(), None);
        two_rounds(&mut guard);
        let s = guard.steadiness();
        assert_eq!((s.kept, s.redone, s.slow_kept, s.calm_ms), (2, 2, 2, 1.0));
        // Its own anchors say how fast the machine ran through these rounds.
        assert_eq!(guard.own_calm_ms(), Some(2.0));
        // And those since a mark, how fast through the rounds after it.
        let mut guard = scripted(&[1.0, 1.0, 1.0, 3.0]);
        two_rounds(&mut guard);
        let mark = guard.timings();
        assert_eq!(mark, 3);
        two_rounds(&mut guard);
        assert_eq!(guard.calm_since(mark), Some(3.0));
        assert_eq!(guard.calm_since(0), Some(1.0));
        assert_eq!(guard.calm_since(guard.timings()), None);
        // Without it, the same anchors look calm.
        let mut guard = scripted(&[2.0]).with_calm(0.0);
        two_rounds(&mut guard);
        assert_eq!(guard.steadiness().slow_kept, 0);
    }

    #[test]
    fn a_sweep_slower_than_the_machine_now_says_by_how_much() {
        let steadiness = |fastest_ms| Steadiness {
            kept: 10,
            redone: 0,
            slow_kept: 0,
            calm_ms: 1.0,
            fastest_ms,
        };
        assert_eq!(steadiness(0.6).ran_slower_than(0.3), Some(2.0));
        // Within the limit, or slower now than the sweep's calm: none.
        assert_eq!(steadiness(0.35).ran_slower_than(0.3), None);
        assert_eq!(steadiness(0.3).ran_slower_than(0.6), None);
        // No calm, no time now, or no number: none.
        assert_eq!(steadiness(0.0).ran_slower_than(0.3), None);
        assert_eq!(steadiness(0.6).ran_slower_than(0.0), None);
        assert_eq!(steadiness(f64::NAN).ran_slower_than(0.3), None);
    }

    #[test]
    fn the_fastest_anchor_now_is_the_least_of_the_tries() {
        let mut guard = scripted(&[0.5, 0.3, 0.4]);
        assert_eq!(guard.fastest_anchor_ms(3).expect("timed"), 0.3);
        // At least one try.
        let mut once = scripted(&[0.7]);
        assert_eq!(once.fastest_anchor_ms(0).expect("timed"), 0.7);
    }

    #[test]
    fn a_rare_fast_anchor_does_not_make_the_usual_rounds_slow() {
        // The machine runs the anchor in 1.0 ms but for one pass of 0.5: judged against the
        // fastest, every round after it would be slow; against the lower quartile, none is.
        let mut times = vec![1.0; 8];
        times.push(0.5);
        times.push(1.0);
        let mut guard = scripted(&times);
        let (results, call) = numbered(&mut guard, 12);
        assert_eq!((results[0].len(), call), (12, 12));
        let s = guard.steadiness();
        assert_eq!((s.kept, s.redone, s.slow_kept, s.calm_ms), (12, 0, 0, 1.0));
        assert_eq!(s.fastest_ms, 0.5);
        // Slower by more than the limit than that usual time still counts as slow.
        let mut times = vec![1.0; 8];
        times.push(0.5);
        times.extend([1.0, 1.7, 1.0]);
        let mut guard = scripted(&times);
        let (_, call) = numbered(&mut guard, 10);
        // The round that ends on 1.7 and the one that starts on it.
        assert_eq!((guard.steadiness().redone, call), (2, 12));
    }

    #[test]
    fn an_anchor_is_the_fastest_of_its_passes_so_a_round_leaving_the_caches_cold_is_not_slow() {
        // Every anchor's first four passes run slow, as after a round of cold layers on machine
        // E, and the later ones as the machine does: no round is slow, and the calm is the
        // machine's 1.0 ms.
        let mut pass = 0;
        let mut guard = SpellGuard::new(move || {
            pass += 1;
            Ok(if (pass - 1) % ANCHOR_PASSES < 4 {
                2.5
            } else {
                1.0
            })
        });
        let (results, call) = numbered(&mut guard, 4);
        assert_eq!((results[0].len(), call), (4, 4));
        let s = guard.steadiness();
        assert_eq!((s.kept, s.redone, s.slow_kept, s.calm_ms), (4, 0, 0, 1.0));
        // An anchor whose every pass is slow (the third: after round 2) still makes the rounds
        // on either side of it slow: rounds 2 and 3 are run again.
        let mut pass = 0;
        let mut guard = SpellGuard::new(move || {
            pass += 1;
            let anchor = (pass - 1) / ANCHOR_PASSES;
            Ok(if anchor == 2 { 2.5 } else { 1.0 })
        });
        let (results, call) = numbered(&mut guard, 2);
        assert_eq!((results, call), (vec![vec![1, 4]], 4));
        assert_eq!(guard.steadiness().redone, 2);
    }

    #[test]
    fn rounds_judged_before_calm_was_seen_count_as_slow_kept() {
        // The machine is slow at first (anchor 2.0 looks calm), then fast (1.0).
        // The first round is kept; the second ends on the first fast anchor, is slow against
        // it and is redone.
        let mut guard = scripted(&[2.0, 2.0, 1.0]);
        two_rounds(&mut guard);
        let s = guard.steadiness();
        assert_eq!((s.kept, s.redone, s.slow_kept), (2, 1, 1));
        assert!((s.slow_share() - 0.5).abs() < 1e-12);
    }
}
