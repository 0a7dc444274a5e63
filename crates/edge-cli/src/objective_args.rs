//! What the planner minimises: `--objective`, `--device-class` and the power overrides, shared
//! by `run`, `tasks`, `demo` and `plan`, read into a [`runtime::ObjectiveChoice`].

use anyhow::{Result, anyhow, bail};
use clap::{Args, ValueEnum};
use partition_core::{DeviceClass, ScenarioError, readable};
use runtime::ObjectiveChoice;

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
                let overridden = given[1..]
                    .iter()
                    .filter(|(_, set)| *set)
                    .map(|(flag, _)| *flag)
                    .collect();
                ObjectiveChoice::energy(class, powers, overridden).map_err(flag_error)
            }
        }
    }
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
