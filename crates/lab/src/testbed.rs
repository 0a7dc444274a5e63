//! Real shaping on one Linux machine: the edge in its own network namespace, joined to the
//! cloud's namespace by a veth pair whose edge end has a `tc` token-bucket (tbf) rate, and the
//! edge process under a cgroup-v1 CPU quota. Needs root, iproute2 (`ip`, `tc`) and the cgroup-v1
//! `cpu` controller at `/sys/fs/cgroup/cpu`. This kernel's `tc` has no netem, so round-trip time
//! is added by the transport's userspace UDP relay in the cloud's namespace.
//!
//! Everything a [`Testbed`] makes is named after this process's id and removed when it drops.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::LabError;

/// The edge end's address on the veth pair. The pair connects only the testbed's two
/// namespaces, so these addresses never meet the host's.
pub const EDGE_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 213, 0, 1));

/// The cloud end's address on the veth pair.
pub const CLOUD_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 213, 0, 2));

/// The CFS period of the edge's CPU quota, µs. An edge CPU of 0.3 is 3 ms of CPU time (over all
/// threads) in every 10 ms. Kubernetes uses 100 ms periods, but then a request's time is a step
/// function of its CPU time: one that fits in the 30 ms it finds left runs at full speed, one
/// just over waits 70 ms (AlexNet at 0.3 CPU measured 3.9× and 6.1× its profile in two runs).
/// A 10 ms period makes the edge behave like a uniformly slower device, which is what it emulates.
pub const CFS_PERIOD_US: u64 = 10_000;

/// Where the cgroup-v1 `cpu` controller is mounted.
const CGROUP_CPU_ROOT: &str = "/sys/fs/cgroup/cpu";

/// A cgroup-v1 CPU cgroup named after this process (`cutpoint-<pid>-<name>`), removed when it
/// drops (once its processes have exited). A process joins it when its pid is written to
/// `cgroup.procs` there ([`CpuCgroup::add`]).
#[derive(Debug)]
pub struct CpuCgroup {
    dir: PathBuf,
}

impl CpuCgroup {
    /// Makes the cgroup under `/sys/fs/cgroup/cpu`, first removing the `cutpoint-<pid>-…`
    /// cgroups and namespaces of processes that no longer exist. Needs root and the cgroup-v1
    /// `cpu` controller.
    pub fn create(name: &str) -> Result<CpuCgroup, LabError> {
        remove_stale();
        let dir =
            Path::new(CGROUP_CPU_ROOT).join(format!("cutpoint-{}-{name}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| {
            failed(
                &format!("creating the cgroup {}", dir.display()),
                e.to_string(),
            )
        })?;
        Ok(CpuCgroup { dir })
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sets its CPU quota to `cpus` CPUs (0.3: 3 ms of every [`CFS_PERIOD_US`] period, summed
    /// over all its threads), in the sense of a Kubernetes CPU limit.
    pub fn set_cpus(&self, cpus: f64) -> Result<(), LabError> {
        if !(cpus.is_finite() && cpus >= 0.01) {
            return Err(LabError::Config {
                name: "edge_cpus",
                reason: format!("{cpus} is not a CPU quota of at least 0.01 CPU"),
            });
        }
        let quota = (cpus * CFS_PERIOD_US as f64).round() as u64;
        self.write("cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
        self.write("cpu.cfs_quota_us", &quota.to_string())
    }

    /// Moves the process `pid` (all its threads) into the cgroup.
    pub fn add(&self, pid: u32) -> Result<(), LabError> {
        self.write("cgroup.procs", &pid.to_string())
    }

    fn write(&self, file: &str, value: &str) -> Result<(), LabError> {
        let path = self.dir.join(file);
        std::fs::write(&path, value).map_err(|e| {
            failed(
                &format!("writing {value} to {}", path.display()),
                e.to_string(),
            )
        })
    }
}

impl Drop for CpuCgroup {
    fn drop(&mut self) {
        // Only an empty cgroup can be removed; a failure leaves a directory that a later
        // cgroup (another pid) never trips over, and that `remove_stale` clears.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The two namespaces, the veth pair between them and the edge's CPU cgroup.
#[derive(Debug)]
pub struct Testbed {
    edge_ns: String,
    cloud_ns: String,
    edge_if: String,
    cgroup: CpuCgroup,
}

impl Testbed {
    /// Makes the namespaces, the veth pair (edge end [`EDGE_ADDR`], cloud end [`CLOUD_ADDR`])
    /// and the cgroup. On failure whatever was made is removed, and the error says which step
    /// failed and why (typically: not root).
    ///
    /// It first removes what earlier testbeds of processes that no longer exist left behind
    /// (a sweep killed before it could clean up).
    pub fn create() -> Result<Testbed, LabError> {
        let tag = std::process::id();
        // The cgroup first (it clears what earlier testbeds left): from here on, dropping the
        // testbed removes whatever was made.
        let testbed = Testbed {
            cgroup: CpuCgroup::create("edge")?,
            edge_ns: format!("cutpoint-{tag}-edge"),
            cloud_ns: format!("cutpoint-{tag}-cloud"),
            edge_if: format!("cp{tag}e"),
        };
        let cloud_if = format!("cp{tag}c");
        let (edge_ns, cloud_ns, edge_if) = (
            testbed.edge_ns.as_str(),
            testbed.cloud_ns.as_str(),
            testbed.edge_if.as_str(),
        );
        ip(&["netns", "add", edge_ns])?;
        ip(&["netns", "add", cloud_ns])?;
        ip(&[
            "link", "add", edge_if, "netns", edge_ns, "type", "veth", "peer", "name", &cloud_if,
            "netns", cloud_ns,
        ])?;
        for (ns, dev, addr) in [
            (edge_ns, edge_if, EDGE_ADDR),
            (cloud_ns, cloud_if.as_str(), CLOUD_ADDR),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(testbed)
    }

    /// The edge's namespace.
    pub fn edge_ns(&self) -> &str {
        &self.edge_ns
    }

    /// The cloud's namespace.
    pub fn cloud_ns(&self) -> &str {
        &self.cloud_ns
    }

    /// Shapes the uplink (edge → cloud) to `mbps` with a tbf qdisc on the edge's veth end,
    /// replacing any earlier rate. The bucket holds 1 ms of traffic (at least 4 KiB) and the
    /// queue 500 ms (at least 64 KiB), so that bursts are paced and a congestion window that
    /// overshoots loses packets rather than waiting without bound.
    pub fn set_uplink(&self, mbps: f64) -> Result<(), LabError> {
        if !(mbps.is_finite() && mbps > 0.0) {
            return Err(LabError::Config {
                name: "uplink_mbps",
                reason: format!("{mbps} is not a rate in Mbit/s above zero"),
            });
        }
        let bytes_per_s = mbps * 1e6 / 8.0;
        let burst = (bytes_per_s * 0.001).max(4096.0) as u64;
        let limit = (bytes_per_s * 0.5).max(65536.0) as u64;
        let rate = format!("{}bit", (mbps * 1e6).round() as u64);
        tc(
            &self.edge_ns,
            &[
                "qdisc",
                "replace",
                "dev",
                &self.edge_if,
                "root",
                "tbf",
                "rate",
                &rate,
                "burst",
                &burst.to_string(),
                "limit",
                &limit.to_string(),
            ],
        )
    }

    /// Moves the process `pid` into the edge's CPU cgroup.
    pub fn join_edge_cgroup(&self, pid: u32) -> Result<(), LabError> {
        self.cgroup.add(pid)
    }

    /// Sets the edge's CPU quota to `cpus` CPUs ([`CpuCgroup::set_cpus`]).
    pub fn set_edge_cpu(&self, cpus: f64) -> Result<(), LabError> {
        self.cgroup.set_cpus(cpus)
    }

    /// A command that runs `program` inside the edge's namespace.
    pub fn in_edge(&self, program: &Path) -> Command {
        in_namespace(&self.edge_ns, program)
    }

    /// A command that runs `program` inside the cloud's namespace.
    pub fn in_cloud(&self, program: &Path) -> Command {
        in_namespace(&self.cloud_ns, program)
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth pair with it; the cgroup goes with its own
        // drop. Failures here leave nothing that a later testbed (with another pid) would
        // trip over.
        for ns in [&self.edge_ns, &self.cloud_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Removes the namespaces and cgroups named `cutpoint-<pid>-…` whose process is gone.
fn remove_stale() {
    let gone = |name: &str| {
        name.strip_prefix("cutpoint-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        let listed = String::from_utf8_lossy(&out.stdout).into_owned();
        for ns in listed.lines().filter_map(|l| l.split_whitespace().next()) {
            if gone(ns) {
                let _ = Command::new("ip").args(["netns", "del", ns]).output();
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(CGROUP_CPU_ROOT) {
        for entry in entries.flatten() {
            if entry.file_name().to_str().is_some_and(gone) {
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }
}

fn in_namespace(ns: &str, program: &Path) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns]).arg(program);
    command
}

fn ip(args: &[&str]) -> Result<(), LabError> {
    run("ip", args)
}

fn tc(ns: &str, args: &[&str]) -> Result<(), LabError> {
    let mut full = vec!["netns", "exec", ns, "tc"];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Runs a setup command; its stderr becomes the error.
fn run(program: &str, args: &[&str]) -> Result<(), LabError> {
    let step = format!("`{program} {}`", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| failed(&step, format!("{e} (is iproute2 installed?)")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(failed(
        &step,
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    ))
}

fn failed(step: &str, reason: String) -> LabError {
    LabError::Testbed {
        step: step.to_string(),
        reason,
    }
}
