//! Keeps the current cut unless a new one is clearly better, so that a noisy bandwidth
//! estimate does not move the cut on every request.

use crate::error::SolveError;
use crate::graph::Graph;
use crate::plan::Plan;
use crate::scenario::Scenario;

/// Default share a new plan must save before it replaces the current one.
pub const DEFAULT_MIN_SAVING: f64 = 0.05;

/// The outcome of [`Hysteresis::choose`].
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The plan to run, costed under the scenario that was passed in.
    pub plan: Plan,
    /// True when the cut changed (the first plan counts as a change).
    pub switched: bool,
}

/// Remembers the plan in force and switches only for a saving of at least `min_saving`.
#[derive(Debug, Clone)]
pub struct Hysteresis {
    min_saving: f64,
    current: Option<Plan>,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis {
            min_saving: DEFAULT_MIN_SAVING,
            current: None,
        }
    }
}

impl Hysteresis {
    /// A helper that switches only when the candidate saves at least `min_saving` (a share in
    /// [0, 1)) of the current plan's cost under the same scenario.
    pub fn new(min_saving: f64) -> Result<Hysteresis, SolveError> {
        if !(0.0..1.0).contains(&min_saving) {
            return Err(SolveError::BadHysteresis(min_saving));
        }
        Ok(Hysteresis {
            min_saving,
            current: None,
        })
    }

    /// The plan in force, as last returned.
    pub fn current(&self) -> Option<&Plan> {
        self.current.as_ref()
    }

    /// Chooses between the plan in force and `candidate`, which must be solved for `graph`
    /// under `scenario`. The plan in force is re-costed under `scenario` first, so that both
    /// are compared under today's link and load.
    pub fn choose(
        &mut self,
        graph: &Graph,
        scenario: &Scenario,
        candidate: Plan,
    ) -> Result<Decision, SolveError> {
        let decision = match &self.current {
            None => Decision {
                plan: candidate,
                switched: true,
            },
            Some(current) => {
                let current = current.reprice(graph, scenario)?;
                let switch = !candidate.same_placement(&current)
                    && candidate.value() < current.value() * (1.0 - self.min_saving);
                if switch {
                    Decision {
                        plan: candidate,
                        switched: true,
                    }
                } else {
                    Decision {
                        plan: current,
                        switched: false,
                    }
                }
            }
        };
        self.current = Some(decision.plan.clone());
        Ok(decision)
    }
}
