//! The solvers. Each returns a [`Plan`] whose figures come from the cost model, not from the
//! solver's own arithmetic.

mod chain;
mod dp;
mod exhaustive;
mod maxflow;
mod mincut;
mod prefix;
mod stream;

pub use exhaustive::MAX_EXHAUSTIVE_NODES;

use crate::error::SolveError;
use crate::graph::Graph;
use crate::plan::Plan;
use crate::scenario::{Objective, Scenario};

/// Which algorithm picks the cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Solver {
    /// `Chain` on chains, `MinCut` otherwise.
    #[default]
    Auto,
    /// Neurosurgeon's argmin over split points, O(n). Errors on a graph that branches.
    Chain,
    /// DADS's s–t minimum cut: exact on any DAG.
    MinCut,
    /// Neurosurgeon on a DAG's topological order: one cut, only where at most one tensor
    /// crosses. A baseline (what chain-only tools do with branching models), O(n + E).
    Prefix,
    /// Shortest path over (layer, placement) states. See the `dp` module for its complexity.
    Dp {
        /// Let work move back to the edge, paying the downlink for each tensor that goes down
        /// and a round trip for each return (the JointDNN model).
        allow_return: bool,
    },
    /// Every feasible placement; the reference for tests, up to [`MAX_EXHAUSTIVE_NODES`] nodes.
    Exhaustive {
        /// Enumerate placements that return to the edge too.
        allow_return: bool,
    },
}

impl Solver {
    /// Finds the placement that minimises the scenario's objective.
    ///
    /// For the stream objective, `chain` and `exhaustive` are exact, `mincut` (and `auto` on a
    /// DAG) searches weighted minimum cuts (see [`Solver::stream_bound`]), and `prefix` and
    /// `dp`, which minimise sums, are an error.
    pub fn solve(self, graph: &Graph, scenario: &Scenario) -> Result<Plan, SolveError> {
        if *scenario.objective() == Objective::Stream {
            return match self {
                Solver::Auto if graph.is_chain() => chain::solve(graph, scenario),
                Solver::Auto | Solver::MinCut => Ok(stream::search(graph, scenario).0),
                Solver::Chain => chain::solve(graph, scenario),
                Solver::Exhaustive { allow_return } => {
                    exhaustive::solve(graph, scenario, allow_return)
                }
                Solver::Prefix => Err(not_a_sum("prefix")),
                Solver::Dp { .. } => Err(not_a_sum("dp")),
            };
        }
        match self {
            Solver::Auto if graph.is_chain() => chain::solve(graph, scenario),
            Solver::Auto | Solver::MinCut => Ok(mincut::solve(graph, scenario)),
            Solver::Chain => chain::solve(graph, scenario),
            Solver::Prefix => Ok(prefix::solve(graph, scenario)),
            Solver::Dp { allow_return } => dp::solve(graph, scenario, allow_return),
            Solver::Exhaustive { allow_return } => exhaustive::solve(graph, scenario, allow_return),
        }
    }

    /// A lower bound on the best time per frame a successor-closed plan can reach under the
    /// stream objective, in ms, from the weighted minimum cuts the DAG search made (the plan
    /// it returns is at or above it; on a chain the chain solver is exact).
    pub fn stream_bound(graph: &Graph, scenario: &Scenario) -> f64 {
        stream::search(graph, scenario).1
    }
}

/// The error for a solver that only minimises sums.
fn not_a_sum(solver: &'static str) -> SolveError {
    SolveError::ObjectiveNotSupported {
        solver,
        objective: Objective::Stream.name(),
    }
}
