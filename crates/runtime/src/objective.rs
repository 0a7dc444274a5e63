//! What the planner minimises, as a program chose it ([`ObjectiveChoice`]): latency, a
//! pipelined stream's time per frame, or the edge's energy with the powers of a device class
//! and any given in their place; and how reports state the choice ([`ObjectiveReport`]).

use partition_core::{Breakdown, DeviceClass, Link, Objective, Powers, Scenario, ScenarioError};
use serde::Serialize;

/// The objective as chosen, with where the energy objective's powers came from.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectiveChoice {
    /// End-to-end latency.
    Latency,
    /// The edge's energy.
    Energy {
        /// The device class whose figures fill any power not given.
        class: DeviceClass,
        /// The powers used.
        powers: Powers,
        /// The names of the powers given in place of the class's figures, as the caller
        /// spells them (the CLIs: `--compute-w`, `--transmit-w`, `--idle-w`), in that order.
        overridden: Vec<&'static str>,
    },
    /// A pipelined stream's time per frame.
    Stream,
}

impl ObjectiveChoice {
    /// The energy objective with `powers` (the `class`'s figures, with those named in
    /// `overridden` given in their place), checked against the planner's range: a power out
    /// of range is [`ScenarioError::OutOfRange`] naming its field (`compute_w`, …).
    pub fn energy(
        class: DeviceClass,
        powers: Powers,
        overridden: Vec<&'static str>,
    ) -> Result<ObjectiveChoice, ScenarioError> {
        // Any link in range will do: only the objective's powers are checked here.
        Scenario::new(Link::new(1.0, 1.0, 0.0)?, powers.objective(), 1.0)?;
        Ok(ObjectiveChoice::Energy {
            class,
            powers,
            overridden,
        })
    }

    /// The planner's objective.
    pub fn objective(&self) -> Objective {
        match self {
            ObjectiveChoice::Latency => Objective::Latency,
            ObjectiveChoice::Energy { powers, .. } => powers.objective(),
            ObjectiveChoice::Stream => Objective::Stream,
        }
    }

    /// A plan's predicted edge energy in mJ under the energy objective; `None` otherwise.
    pub fn predicted_mj(&self, breakdown: &Breakdown) -> Option<f64> {
        match self {
            ObjectiveChoice::Latency | ObjectiveChoice::Stream => None,
            ObjectiveChoice::Energy { .. } => Some(breakdown.objective_value(&self.objective())),
        }
    }

    /// The choice as reports give it.
    pub fn report(&self) -> ObjectiveReport {
        match self {
            ObjectiveChoice::Latency => ObjectiveReport {
                name: "latency",
                powers_w: None,
            },
            ObjectiveChoice::Stream => ObjectiveReport {
                name: "stream",
                powers_w: None,
            },
            ObjectiveChoice::Energy {
                class,
                powers,
                overridden,
            } => ObjectiveReport {
                name: "energy",
                powers_w: Some(PowersReport {
                    compute: powers.compute_w,
                    transmit: powers.transmit_w,
                    idle: powers.idle_w,
                    device_class: class.name(),
                    source: powers_source(*class, overridden),
                }),
            },
        }
    }
}

/// Where the energy objective's powers come from, in words.
fn powers_source(class: DeviceClass, overridden: &[&str]) -> String {
    match overridden {
        [] => format!("device class {class}: {}", class.source()),
        [compute, transmit, idle] => format!("given with {compute}, {transmit} and {idle}"),
        _ => format!(
            "device class {class}, with {} given: {}",
            overridden.join(" and "),
            class.source()
        ),
    }
}

/// What a report says of the objective.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectiveReport {
    /// `latency`, `energy` or `stream`.
    pub name: &'static str,
    /// The powers the energy objective used; absent for latency and stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub powers_w: Option<PowersReport>,
}

impl ObjectiveReport {
    /// One line for text reports: the objective, and for energy its powers and their source.
    pub fn line(&self) -> String {
        match &self.powers_w {
            None if self.name == "stream" => "objective: stream (ms per frame: the slowest of edge, uplink, cloud with its wait, downlink)".to_string(),
            None => "objective: latency (ms)".to_string(),
            Some(p) => format!(
                "objective: energy (mJ) at {} W computing, {} W transmitting, {} W idle ({})",
                p.compute, p.transmit, p.idle, p.source
            ),
        }
    }
}

/// The energy objective's powers, W, and where they came from.
#[derive(Debug, Clone, Serialize)]
pub struct PowersReport {
    /// While computing.
    pub compute: f64,
    /// While transmitting.
    pub transmit: f64,
    /// While waiting.
    pub idle: f64,
    /// The device class behind the defaults.
    pub device_class: &'static str,
    /// Where the figures come from.
    pub source: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_and_stream_report_no_powers_and_no_energy() {
        let breakdown = Breakdown::default();
        for (choice, line) in [
            (ObjectiveChoice::Latency, "objective: latency (ms)"),
            (
                ObjectiveChoice::Stream,
                "objective: stream (ms per frame: the slowest of edge, uplink, cloud with its wait, downlink)",
            ),
        ] {
            assert_eq!(choice.predicted_mj(&breakdown), None);
            let report = choice.report();
            assert_eq!(report.line(), line);
            let json = serde_json::to_value(&report).expect("JSON");
            assert!(json.get("powers_w").is_none(), "{json}");
        }
        assert_eq!(ObjectiveChoice::Stream.objective(), Objective::Stream);
    }

    #[test]
    fn energy_states_its_powers_and_where_they_came_from() {
        let class = DeviceClass::RaspberryPi;
        let powers = class.powers().with_overrides(Some(2.5), None, None);
        let choice = ObjectiveChoice::energy(class, powers, vec!["--compute-w"]).expect("in range");
        let report = choice.report();
        let p = report.powers_w.as_ref().expect("powers");
        assert_eq!((p.compute, p.device_class), (2.5, "raspberry-pi"));
        assert_eq!(
            p.source,
            format!(
                "device class raspberry-pi, with --compute-w given: {}",
                class.source()
            )
        );
        assert!(
            report
                .line()
                .starts_with("objective: energy (mJ) at 2.5 W computing, "),
            "{}",
            report.line()
        );

        let all = ObjectiveChoice::energy(class, powers, vec!["--c", "--t", "--i"]).expect("ok");
        let source = all.report().powers_w.expect("powers").source;
        assert_eq!(source, "given with --c, --t and --i");

        // One second of compute at 2.5 W is 2500 mJ.
        let breakdown = Breakdown {
            edge_ms: 1000.0,
            total_ms: 1000.0,
            ..Breakdown::default()
        };
        assert_eq!(choice.predicted_mj(&breakdown), Some(2500.0));
    }

    #[test]
    fn a_power_out_of_range_names_its_field() {
        let class = DeviceClass::DEFAULT;
        let powers = class.powers().with_overrides(Some(-1.0), None, None);
        match ObjectiveChoice::energy(class, powers, vec!["--compute-w"]) {
            Err(ScenarioError::OutOfRange { name, .. }) => assert_eq!(name, "compute_w"),
            other => panic!("expected compute_w out of range, got {other:?}"),
        }
    }
}
