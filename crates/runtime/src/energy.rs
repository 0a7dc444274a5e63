//! [`EnergyCounters`]: the CPU's own energy counters, where Linux exposes them through the
//! powercap interface (`/sys/class/powercap`: Intel RAPL, and AMD's RAPL under the same
//! interface), read around a stretch of work.
//!
//! A package zone (`intel-rapl:0`, named `package-0`) counts the energy of the whole CPU
//! package in µJ, for every process on it, so a reading is package-wide, never one process's.
//! Subzones (`intel-rapl:0:0`, the cores) are inside their package and are not added again,
//! nor are the `intel-rapl-mmio` zones, which expose the same packages a second way. Each
//! counter wraps at its `max_energy_range_uj`. Since Linux 5.10 only root may read
//! `energy_uj`; an unreadable counter is reported as such, never guessed.

use std::path::{Path, PathBuf};

/// Where Linux puts the powercap zones.
pub const POWERCAP_ROOT: &str = "/sys/class/powercap";

/// Why no energy can be measured on this machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnergyUnavailable {
    /// No package zone under the powercap directory (no RAPL, a virtual machine, or not Linux).
    #[error("no powercap energy counters on this machine (no package zone under {root})")]
    NoCounters {
        /// The directory searched.
        root: String,
    },
    /// A counter exists but cannot be read or parsed.
    #[error("the powercap energy counter {path} cannot be read: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// What went wrong, with what to do about it.
        reason: String,
    },
}

/// One package zone's counter.
#[derive(Debug, Clone)]
struct Zone {
    /// The zone's directory name and its own name: `intel-rapl:0 (package-0)`.
    label: String,
    /// Its `energy_uj` file.
    energy_uj: PathBuf,
    /// The value at which the counter wraps to 0, µJ.
    max_range_uj: u64,
}

/// A reading of every package counter, µJ, in [`EnergyCounters`]' zone order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnergySample {
    uj: Vec<u64>,
}

/// The package energy counters of one machine.
#[derive(Debug, Clone)]
pub struct EnergyCounters {
    zones: Vec<Zone>,
}

impl EnergyCounters {
    /// This machine's counters, under [`POWERCAP_ROOT`].
    pub fn system() -> Result<EnergyCounters, EnergyUnavailable> {
        EnergyCounters::open(Path::new(POWERCAP_ROOT))
    }

    /// The package zones under `root`, a powercap class directory (its entries are zone
    /// directories such as `intel-rapl:0` holding `name`, `energy_uj` and
    /// `max_energy_range_uj`). Every counter is read once here, so that a counter this
    /// process may not read is reported now.
    pub fn open(root: &Path) -> Result<EnergyCounters, EnergyUnavailable> {
        let no_counters = || EnergyUnavailable::NoCounters {
            root: root.display().to_string(),
        };
        let Ok(entries) = std::fs::read_dir(root) else {
            return Err(no_counters());
        };
        let mut dirs: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .filter(|(name, _)| is_top_level_zone(name))
            .collect();
        dirs.sort();
        let mut zones = Vec::new();
        for (dir_name, dir) in dirs {
            // A zone without a readable name is not a package we can vouch for.
            let Ok(name) = std::fs::read_to_string(dir.join("name")) else {
                continue;
            };
            let name = name.trim();
            if !name.starts_with("package") {
                continue;
            }
            let zone = Zone {
                label: format!("{dir_name} ({name})"),
                energy_uj: dir.join("energy_uj"),
                max_range_uj: read_uj(&dir.join("max_energy_range_uj"))?,
            };
            read_uj(&zone.energy_uj)?;
            zones.push(zone);
        }
        if zones.is_empty() {
            return Err(no_counters());
        }
        Ok(EnergyCounters { zones })
    }

    /// The zones read, as `intel-rapl:0 (package-0)`.
    pub fn zones(&self) -> Vec<&str> {
        self.zones.iter().map(|z| z.label.as_str()).collect()
    }

    /// Reads every counter now.
    pub fn sample(&self) -> Result<EnergySample, EnergyUnavailable> {
        let uj = self
            .zones
            .iter()
            .map(|z| read_uj(&z.energy_uj))
            .collect::<Result<_, _>>()?;
        Ok(EnergySample { uj })
    }

    /// The package energy between two samples, in mJ, summed over the packages. A counter
    /// that went down wrapped once at its `max_energy_range_uj` (an interval long enough to
    /// wrap twice, hours at full power, cannot be told apart).
    pub fn energy_mj(&self, before: &EnergySample, after: &EnergySample) -> f64 {
        let uj: u64 = self
            .zones
            .iter()
            .zip(before.uj.iter().zip(&after.uj))
            .map(|(zone, (&b, &a))| {
                if a >= b {
                    a - b
                } else {
                    zone.max_range_uj.saturating_sub(b).saturating_add(a)
                }
            })
            .sum();
        uj as f64 / 1e3
    }

    /// A few words on what a reading covers, for reports.
    pub fn describe(&self) -> String {
        format!(
            "package-wide (every process on the CPU, not this one alone), from the powercap counters {}",
            self.zones().join(", ")
        )
    }
}

/// Whether a powercap entry is a top-level zone of a control type other than the MMIO
/// duplicate: `intel-rapl:0` yes, `intel-rapl:0:0` (a subzone), `intel-rapl` (the control
/// type itself) and `intel-rapl-mmio:0` no.
fn is_top_level_zone(name: &str) -> bool {
    name.matches(':').count() == 1 && !name.contains("-mmio")
}

/// Reads a counter file: a decimal number of µJ.
fn read_uj(path: &Path) -> Result<u64, EnergyUnavailable> {
    let unreadable = |reason: String| EnergyUnavailable::Unreadable {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        unreadable(match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (since Linux 5.10 only root may read it; run as root, or grant read access to the file)".to_string()
            }
            _ => e.to_string(),
        })
    })?;
    text.trim()
        .parse()
        .map_err(|_| unreadable(format!("`{}` is not a number of µJ", text.trim())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a zone directory `dir` under `root` with these files.
    fn zone(root: &Path, dir: &str, name: &str, energy_uj: &str, max_uj: &str) {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).expect("zone dir");
        std::fs::write(d.join("name"), format!("{name}\n")).expect("name");
        std::fs::write(d.join("energy_uj"), format!("{energy_uj}\n")).expect("energy");
        std::fs::write(d.join("max_energy_range_uj"), format!("{max_uj}\n")).expect("max");
    }

    fn set(root: &Path, dir: &str, energy_uj: u64) {
        std::fs::write(root.join(dir).join("energy_uj"), energy_uj.to_string()).expect("energy");
    }

    #[test]
    fn packages_are_summed_and_subzones_and_mmio_duplicates_left_out() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path();
        std::fs::create_dir_all(root.join("intel-rapl")).expect("control type");
        zone(root, "intel-rapl:0", "package-0", "1000", "262143328850");
        zone(root, "intel-rapl:0:0", "core", "500", "262143328850");
        zone(root, "intel-rapl:1", "package-1", "7000", "262143328850");
        zone(
            root,
            "intel-rapl-mmio:0",
            "package-0",
            "1000",
            "262143328850",
        );
        zone(root, "intel-rapl:2", "psys", "1000", "262143328850");
        let counters = EnergyCounters::open(root).expect("counters");
        assert_eq!(
            counters.zones(),
            ["intel-rapl:0 (package-0)", "intel-rapl:1 (package-1)"]
        );
        let before = counters.sample().expect("sample");
        set(root, "intel-rapl:0", 251_000);
        set(root, "intel-rapl:0:0", 99_999_999);
        set(root, "intel-rapl:1", 57_000);
        set(root, "intel-rapl-mmio:0", 99_999_999);
        let after = counters.sample().expect("sample");
        // 250 000 µJ + 50 000 µJ.
        assert_eq!(counters.energy_mj(&before, &after), 300.0);
        assert!(counters.describe().contains("package-wide"));
    }

    #[test]
    fn a_counter_that_wrapped_counts_through_its_range() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path();
        zone(root, "intel-rapl:0", "package-0", "999000", "1000000");
        let counters = EnergyCounters::open(root).expect("counters");
        let before = counters.sample().expect("sample");
        set(root, "intel-rapl:0", 4000);
        let after = counters.sample().expect("sample");
        // 1000 µJ up to the wrap, 4000 after it.
        assert_eq!(counters.energy_mj(&before, &after), 5.0);
    }

    #[test]
    fn no_zones_or_no_directory_says_there_are_no_counters() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let err = EnergyCounters::open(&tmp.path().join("absent")).expect_err("no dir");
        assert!(
            err.to_string()
                .starts_with("no powercap energy counters on this machine"),
            "{err}"
        );
        zone(tmp.path(), "intel-rapl:0", "dram", "1", "10");
        let err = EnergyCounters::open(tmp.path()).expect_err("no package");
        assert!(matches!(err, EnergyUnavailable::NoCounters { .. }), "{err}");
    }

    #[test]
    fn an_unreadable_or_garbled_counter_is_reported_with_its_path() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path();
        zone(root, "intel-rapl:0", "package-0", "12", "100");
        // A directory where the counter should be cannot be read, even by root.
        let energy = root.join("intel-rapl:0").join("energy_uj");
        std::fs::remove_file(&energy).expect("remove");
        std::fs::create_dir(&energy).expect("dir in its place");
        let err = EnergyCounters::open(root).expect_err("unreadable");
        match &err {
            EnergyUnavailable::Unreadable { path, .. } => assert!(path.ends_with("energy_uj")),
            other => panic!("expected Unreadable, got {other:?}"),
        }
        std::fs::remove_dir(&energy).expect("remove dir");
        std::fs::write(&energy, "lots").expect("garbage");
        let err = EnergyCounters::open(root).expect_err("garbled");
        assert!(err.to_string().contains("`lots` is not a number"), "{err}");
    }

    #[test]
    fn a_counter_that_becomes_unreadable_fails_the_sample() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path();
        zone(root, "intel-rapl:0", "package-0", "12", "100");
        let counters = EnergyCounters::open(root).expect("counters");
        std::fs::remove_dir_all(root.join("intel-rapl:0")).expect("zone gone");
        assert!(matches!(
            counters.sample(),
            Err(EnergyUnavailable::Unreadable { .. })
        ));
    }
}
