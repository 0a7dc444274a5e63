//! What the planner minimises: `--objective`, `--device-class` and the power overrides, shared
//! by `run`, `tasks`, `demo` and `plan`, and how reports state the choice.

use anyhow::{Result, anyhow, bail};
use clap::{Args, ValueEnum};
use partition_core::{
    Breakdown, DeviceClass, Link, Objective, Powers, Scenario, ScenarioError, readable,
};
use serde::Serialize;

/// `--objective latency|energy|stream`, the device class and the powers.
#[derive(Args, Debug, Clone)]
pub struct ObjectiveArgs {
    /// What the planner minimises: latency (end-to-end ms), energy (the edge device's mJ: the
    /// power of each state times the time in it, with the --device-class powers), or stream
    /// (the time per frame of a pipelined stream: the slowest of the edge, the uplink, the
    /// cloud with its wait, and the downlink) [default: latency; stream for `tasks --pipeline`
    /// above 1].
    #[arg(long, value_enum)]
    objective: Option<ObjectiveKind>,
    /// The edge's kind of device, for --objective energy; it sets the default powers in W
    /// (compute / transmit / idle): phone 3.0 / 4.1 / 0.6 (LTE), raspberry-pi 6.4 / 4.25 /
    /// 2.7, jetson 5.6 / 3.15 / 1.6, laptop 20 / 6.55 / 5.0 (Wi-Fi). docs/DESIGN.md gives the
    /// published measurements behind each [default: phone].
    #[arg(long, value_name = "NAME", value_parser = parse_device_class)]
    device_class: Option<DeviceClass>,
    /// Edge power while computing, in W (energy objective) [default: the device class's].
    #[arg(long, value_name = "W")]
    compute_w: Option<f64>,
    /// Edge power while transmitting, in W (energy objective) [default: the device class's].
    #[arg(long, value_name = "W")]
    transmit_w: Option<f64>,
    /// Edge power while idle, waiting for the cloud, in W (energy objective) [default: the
    /// device class's].
    #[arg(long, value_name = "W")]
    idle_w: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ObjectiveKind {
    Latency,
    Energy,
    Stream,
}

fn parse_device_class(text: &str) -> Result<DeviceClass, String> {
    text.parse()
        .map_err(|e: partition_core::UnknownDeviceClass| e.to_string())
}

impl ObjectiveArgs {
    /// The objective the flags choose, latency when none is given. Power flags without
    /// `--objective energy` are an error (they would change nothing).
    pub fn choice(&self) -> Result<ObjectiveChoice> {
        self.choice_or(ObjectiveChoice::Latency)
    }

    /// The objective the flags choose, `default` when none is given.
    pub fn choice_or(&self, default: ObjectiveChoice) -> Result<ObjectiveChoice> {
        let given = [
            ("--device-class", self.device_class.is_some()),
            ("--compute-w", self.compute_w.is_some()),
            ("--transmit-w", self.transmit_w.is_some()),
            ("--idle-w", self.idle_w.is_some()),
        ];
        let kind = match (self.objective, &default) {
            (Some(kind), _) => kind,
            (None, ObjectiveChoice::Stream) => ObjectiveKind::Stream,
            (None, _) => ObjectiveKind::Latency,
        };
        match kind {
            ObjectiveKind::Latency | ObjectiveKind::Stream => {
                if let Some((flag, _)) = given.iter().find(|(_, set)| *set) {
                    bail!("{flag} only applies to --objective energy");
                }
                Ok(if kind == ObjectiveKind::Stream {
                    ObjectiveChoice::Stream
                } else {
                    ObjectiveChoice::Latency
                })
            }
            ObjectiveKind::Energy => {
                let class = self.device_class.unwrap_or(DeviceClass::DEFAULT);
                let powers =
                    class
                        .powers()
                        .with_overrides(self.compute_w, self.transmit_w, self.idle_w);
                check_powers(powers)?;
                let overridden: Vec<&'static str> = given[1..]
                    .iter()
                    .filter(|(_, set)| *set)
                    .map(|(flag, _)| *flag)
                    .collect();
                Ok(ObjectiveChoice::Energy {
                    class,
                    powers,
                    overridden,
                })
            }
        }
    }
}

/// Checks the powers against the planner's range, naming the flag of one out of range.
fn check_powers(powers: Powers) -> Result<()> {
    let link = Link::new(1.0, 1.0, 0.0).expect("a constant link within range");
    Scenario::new(link, powers.objective(), 1.0).map_err(flag_error)?;
    Ok(())
}

/// Names the flag rather than the field: `--compute-w -1 is out of range: give …`.
pub fn flag_error(e: ScenarioError) -> anyhow::Error {
    let ScenarioError::OutOfRange {
        name,
        value,
        expected,
    } = e;
    let flag = name.replace('_', "-");
    anyhow!(
        "--{flag} {} is out of range: give {expected}",
        readable(value)
    )
}

/// The objective as the flags chose it, with where its powers came from.
#[derive(Debug, Clone, PartialEq)]
pub enum ObjectiveChoice {
    /// End-to-end latency.
    Latency,
    /// The edge's energy.
    Energy {
        /// The device class whose defaults fill any power not given.
        class: DeviceClass,
        /// The powers used.
        powers: Powers,
        /// The power flags given, which replace the class's figures.
        overridden: Vec<&'static str>,
    },
    /// A pipelined stream's time per frame.
    Stream,
}

impl ObjectiveChoice {
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
                    source: if overridden.is_empty() {
                        format!("device class {class}: {}", class.source())
                    } else if overridden.len() == 3 {
                        "given with --compute-w, --transmit-w and --idle-w".to_string()
                    } else {
                        format!(
                            "device class {class}, with {} given: {}",
                            overridden.join(" and "),
                            class.source()
                        )
                    },
                }),
            },
        }
    }
}

/// What a report says of the objective.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectiveReport {
    /// `latency`, `energy` or `stream`.
    pub name: &'static str,
    /// The powers the energy objective used; absent for latency.
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
