//! The edge's power model for the energy objective: what the whole device draws while it
//! computes, while its radio transmits, and while it waits, with documented defaults for a few
//! named device classes.
//!
//! The defaults are whole-device figures, in W, taken from published measurements (each class
//! names its own in [`DeviceClass::source`]):
//!
//! | class          | compute | transmit | idle | radio  |
//! |----------------|--------:|---------:|-----:|--------|
//! | `phone`        |    3.0  |    4.1   | 0.6  | LTE    |
//! | `raspberry-pi` |    6.4  |    4.25  | 2.7  | Wi-Fi  |
//! | `jetson`       |    5.6  |    3.15  | 1.6  | Wi-Fi  |
//! | `laptop`       |   20.0  |    6.55  | 5.0  | Wi-Fi  |
//!
//! Transmit power is the idle draw plus the radio's while it sends. The radio's comes from the
//! uplink power model of Huang et al., "A Close Examination of Performance and Power
//! Characteristics of 4G LTE Networks" (MobiSys 2012), which Neurosurgeon (Kang et al.,
//! ASPLOS 2017) also used for its mobile energy figures: a base power plus a power per Mbit/s
//! of uplink throughput, about 1.29 W + 0.44 W per Mbit/s for LTE and 0.13 W + 0.28 W per
//! Mbit/s for Wi-Fi. A constant power cannot follow the rate, so the defaults evaluate it at a
//! nominal 5 Mbit/s uplink (LTE's median uplink in that study was about 6 Mbit/s): 3.5 W for
//! LTE and 1.55 W for Wi-Fi. Measure your own device and pass the three powers for anything
//! better than a class default.

use std::fmt;
use std::str::FromStr;

use crate::scenario::Objective;

/// What the whole edge device draws in each state the energy objective tells apart, in W.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Powers {
    /// While the edge computes (its part of the network, encoding, image decoding).
    pub compute_w: f64,
    /// While its radio sends tensors up.
    pub transmit_w: f64,
    /// While it waits: for the cloud's compute and queue, the round trip and downloads.
    pub idle_w: f64,
}

impl Powers {
    /// These powers with each `Some` override in place of the default.
    pub fn with_overrides(
        self,
        compute_w: Option<f64>,
        transmit_w: Option<f64>,
        idle_w: Option<f64>,
    ) -> Powers {
        Powers {
            compute_w: compute_w.unwrap_or(self.compute_w),
            transmit_w: transmit_w.unwrap_or(self.transmit_w),
            idle_w: idle_w.unwrap_or(self.idle_w),
        }
    }

    /// The energy objective with these powers. [`crate::Scenario::new`] checks their range.
    pub fn objective(self) -> Objective {
        Objective::Energy {
            compute_w: self.compute_w,
            transmit_w: self.transmit_w,
            idle_w: self.idle_w,
        }
    }
}

/// A named class of edge device with default [`Powers`] from published measurements (see the
/// module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceClass {
    /// A phone-class SoC on LTE.
    Phone,
    /// A Raspberry-Pi-4-class single-board computer on Wi-Fi.
    RaspberryPi,
    /// A Jetson-TK1-class module (Neurosurgeon's mobile platform) on Wi-Fi.
    Jetson,
    /// A laptop with a 15 W-class processor on Wi-Fi.
    Laptop,
}

/// The radio's extra draw while it sends at the nominal 5 Mbit/s, from Huang et al.
/// (MobiSys 2012): 1.29 W + 0.44 W/Mbit/s × 5 Mbit/s for LTE.
const LTE_SEND_W: f64 = 3.5;
/// As [`LTE_SEND_W`] for Wi-Fi: 0.13 W + 0.28 W/Mbit/s × 5 Mbit/s.
const WIFI_SEND_W: f64 = 1.55;

impl DeviceClass {
    /// Every class, in the order `--help` lists them.
    pub const ALL: [DeviceClass; 4] = [
        DeviceClass::Phone,
        DeviceClass::RaspberryPi,
        DeviceClass::Jetson,
        DeviceClass::Laptop,
    ];

    /// The class assumed when none is named: a phone, the usual edge of split inference.
    pub const DEFAULT: DeviceClass = DeviceClass::Phone;

    /// The name flags and reports use: `phone`, `raspberry-pi`, `jetson` or `laptop`.
    pub fn name(self) -> &'static str {
        match self {
            DeviceClass::Phone => "phone",
            DeviceClass::RaspberryPi => "raspberry-pi",
            DeviceClass::Jetson => "jetson",
            DeviceClass::Laptop => "laptop",
        }
    }

    /// The class's default powers.
    pub fn powers(self) -> Powers {
        let (compute_w, idle_w, radio_w) = match self {
            DeviceClass::Phone => (3.0, 0.6, LTE_SEND_W),
            DeviceClass::RaspberryPi => (6.4, 2.7, WIFI_SEND_W),
            DeviceClass::Jetson => (5.6, 1.6, WIFI_SEND_W),
            DeviceClass::Laptop => (20.0, 5.0, WIFI_SEND_W),
        };
        Powers {
            compute_w,
            transmit_w: idle_w + radio_w,
            idle_w,
        }
    }

    /// Where the class's figures come from, in one sentence.
    pub fn source(self) -> &'static str {
        match self {
            DeviceClass::Phone => {
                "compute and idle: the 3 W and 0.6 W ends of the 'typical use' range eLinux.org's Jetson TK1 Power page gives for the tablet-class Tegra K1 SoC; transmit: idle plus LTE at 5 Mbit/s from Huang et al. (MobiSys 2012)"
            }
            DeviceClass::RaspberryPi => {
                "compute and idle: RasPi.TV's measurements of a Raspberry Pi 4B (2.7 W idle, 6.4 W with all four cores under stress); transmit: idle plus Wi-Fi at 5 Mbit/s from Huang et al. (MobiSys 2012)"
            }
            DeviceClass::Jetson => {
                "idle: the 1.6 W eLinux.org's Jetson TK1 Power page measured for the whole board at the command line; compute: that plus the 4 W the page gives as the SoC's usual ceiling; transmit: idle plus Wi-Fi at 5 Mbit/s from Huang et al. (MobiSys 2012)"
            }
            DeviceClass::Laptop => {
                "compute: a 5 W idle ultrabook plus the 15 W TDP Intel specifies for its U-series processors; transmit: idle plus Wi-Fi at 5 Mbit/s from Huang et al. (MobiSys 2012)"
            }
        }
    }
}

impl fmt::Display for DeviceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A device class name that is not one of [`DeviceClass::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown device class `{0}`: use phone, raspberry-pi, jetson or laptop, or give the three powers"
)]
pub struct UnknownDeviceClass(pub String);

impl FromStr for DeviceClass {
    type Err = UnknownDeviceClass;

    fn from_str(text: &str) -> Result<DeviceClass, UnknownDeviceClass> {
        DeviceClass::ALL
            .into_iter()
            .find(|c| c.name() == text)
            .ok_or_else(|| UnknownDeviceClass(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Link, Scenario};

    #[test]
    fn every_class_is_a_valid_energy_scenario_that_costs_more_to_work_than_to_wait() {
        let link = Link::new(10.0, 10.0, 20.0).expect("link");
        for class in DeviceClass::ALL {
            let p = class.powers();
            assert!(p.compute_w > p.idle_w, "{class}: {p:?}");
            assert!(p.transmit_w > p.idle_w, "{class}: {p:?}");
            Scenario::new(link, p.objective(), 1.0).expect("powers within range");
            assert!(!class.source().is_empty());
        }
    }

    #[test]
    fn transmit_is_idle_plus_the_class_radio() {
        let phone = DeviceClass::Phone.powers();
        assert_eq!(phone.transmit_w, phone.idle_w + LTE_SEND_W);
        let pi = DeviceClass::RaspberryPi.powers();
        assert_eq!(pi.transmit_w, pi.idle_w + WIFI_SEND_W);
        // The radio's share is the Huang et al. model at 5 Mbit/s, rounded.
        assert!((LTE_SEND_W - (1.288 + 0.438 * 5.0)).abs() < 0.05);
        assert!((WIFI_SEND_W - (0.133 + 0.283 * 5.0)).abs() < 0.05);
    }

    #[test]
    fn names_parse_back_and_unknown_ones_list_the_classes() {
        for class in DeviceClass::ALL {
            assert_eq!(class.name().parse::<DeviceClass>(), Ok(class));
        }
        let err = "toaster".parse::<DeviceClass>().expect_err("unknown");
        let text = err.to_string();
        assert!(
            text.contains("toaster") && text.contains("raspberry-pi"),
            "{text}"
        );
    }

    #[test]
    fn overrides_replace_only_the_powers_given() {
        let base = DeviceClass::Jetson.powers();
        let p = base.with_overrides(None, Some(9.0), None);
        assert_eq!(p.compute_w, base.compute_w);
        assert_eq!(p.transmit_w, 9.0);
        assert_eq!(p.idle_w, base.idle_w);
        assert_eq!(
            p.objective(),
            Objective::Energy {
                compute_w: base.compute_w,
                transmit_w: 9.0,
                idle_w: base.idle_w
            }
        );
    }
}
