//! The machine being profiled: its description, and an optional cgroup-v1 CPU quota that
//! emulates a slower edge device.

use std::fs;
use std::path::Path;

use crate::error::PredictorError;

/// Where cgroup v1 mounts its CPU controller.
const CGROUP_CPU: &str = "/sys/fs/cgroup/cpu";

/// CFS period in µs; the quota is a share of it.
const PERIOD_US: u64 = 100_000;

/// What the profiled machine is.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineInfo {
    /// Host name and CPU model, e.g. `build-7 (AMD EPYC 7B13)`.
    pub device: String,
    /// Threads available to this process (the CPU quota included, when the platform reports it).
    pub threads: usize,
}

impl MachineInfo {
    /// Reads the host name, the CPU model and the available parallelism.
    pub fn current() -> MachineInfo {
        let host = fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown-host".into());
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        MachineInfo {
            device: format!("{host} ({cpu})"),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// Puts this whole process (every thread) in a new cgroup-v1 CPU group limited to `quota`
/// CPUs (0.3 = 30 ms of CPU time per 100 ms), as an emulated edge device.
///
/// Fails with the reason when the controller is missing or not writable (it needs root):
/// profiling must not go on silently without the limit.
pub fn apply_cpu_quota(quota: f64) -> Result<(), PredictorError> {
    let fail = |reason: String| PredictorError::Quota { quota, reason };
    if !(quota.is_finite() && quota > 0.0 && quota <= 1024.0) {
        return Err(fail("give a positive share of CPUs, e.g. 0.3".into()));
    }
    let root = Path::new(CGROUP_CPU);
    if !root.join("cpu.cfs_quota_us").exists() {
        return Err(fail(format!(
            "{CGROUP_CPU} has no cpu.cfs_quota_us: this needs cgroup v1 with the cpu controller mounted"
        )));
    }
    let group = root.join(format!("cutpoint-{}", std::process::id()));
    let write = |file: &str, value: String| {
        fs::write(group.join(file), value).map_err(|e| {
            fail(format!(
                "writing {}: {e} (run as root, or profile without --cpu-quota)",
                group.join(file).display()
            ))
        })
    };
    fs::create_dir_all(&group).map_err(|e| {
        fail(format!(
            "creating {}: {e} (run as root, or profile without --cpu-quota)",
            group.display()
        ))
    })?;
    write("cpu.cfs_period_us", PERIOD_US.to_string())?;
    let quota_us = ((quota * PERIOD_US as f64).round() as u64).max(1000);
    write("cpu.cfs_quota_us", quota_us.to_string())?;
    write("cgroup.procs", std::process::id().to_string())
}
