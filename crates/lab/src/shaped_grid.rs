//! The grid on real shaping: the cloud and the edge as separate processes in the two
//! namespaces of a [`Testbed`], the uplink shaped by `tc`, the edge under a CPU quota, and the
//! round-trip time added by a UDP relay in front of the cloud.
//!
//! The processes are the lab's worker binary, [`WORKER_BIN`] (built with `cutpoint-edge`, and
//! found next to it by [`worker_path`]), whose `main` hands its one argument, `cloud` or `cell`,
//! to [`run_worker`]. They speak JSON lines on stdin and stdout:
//!
//! - cloud: reads a `CloudJob`, answers `CloudReady`, serves until its stdin closes;
//! - edge, one per cell: reads a `CellJob`, loads the model at full speed and answers
//!   `loaded`; the parent moves it into the CPU cgroup (the namespace's own `/sys` hides the
//!   cgroup tree from it) and answers `go`; it calibrates its speed under the quota, measures the
//!   cell and answers a `CellResult`.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use models::{Backend, Net};
use partition_core::Objective;
use serde::{Deserialize, Serialize};
use transport::{ClientConfig, Fingerprint, ServerTrust, Token};

use runtime::{async_runtime, quick_profile};

use crate::error::LabError;
use crate::grid::{self, CellSpec, GridCell, GridConfig, GridRow};
use crate::rig::{self, lab_input};
use crate::testbed::{CLOUD_ADDR, Testbed};

/// What the cloud process serves.
#[derive(Debug, Serialize, Deserialize)]
struct CloudJob {
    /// The network, as spec JSON.
    spec: String,
    /// The backend's name.
    backend: String,
    /// Round-trip time the relay adds, ms.
    rtt_ms: f64,
    /// Where the relay listens.
    listen: SocketAddr,
}

/// How the edge reaches the cloud process.
#[derive(Debug, Serialize, Deserialize)]
struct CloudReady {
    /// The relay's address.
    addr: SocketAddr,
    /// The server certificate's fingerprint.
    fingerprint: String,
    /// The token.
    token: String,
}

/// One cell for an edge process.
#[derive(Debug, Serialize, Deserialize)]
struct CellJob {
    /// The network, as spec JSON.
    spec: String,
    /// The backend's name.
    backend: String,
    /// Where the quick profile is cached (the parent has built it).
    cache_dir: PathBuf,
    /// The profile's sample cap, as the parent built it.
    sweep_samples: Option<usize>,
    /// Every uplink of the grid, Mbit/s: a DAG's candidate cuts are the min-cut plans for all.
    uplinks_mbps: Vec<f64>,
    /// This cell's edge CPU quota, CPUs.
    edge_cpu: f64,
    /// This cell's uplink, Mbit/s.
    uplink_mbps: f64,
    /// The relay's round-trip time, ms.
    rtt_ms: f64,
    /// Measured requests per cut.
    repeats: usize,
    /// The loss the planner may use at the boundary (`exact`, `f16` or `int8`).
    max_loss: String,
    /// The cloud.
    cloud: CloudReady,
}

/// What an edge process measured.
#[derive(Debug, Serialize, Deserialize)]
struct CellResult {
    /// Every cut.
    rows: Vec<GridRow>,
    /// The verdict.
    cell: GridCell,
}

/// The worker binary's name: its `cloud` and `cell` commands run the grid's cloud process and
/// one cell's edge process (see [`run_worker`]).
pub const WORKER_BIN: &str = "cutpoint-lab-worker";

/// The worker binary ([`WORKER_BIN`]) in the directory of the running program, where cargo
/// builds and installs it beside `cutpoint-edge`; an error naming it, and how to build it, when
/// it is not there.
pub fn worker_path() -> Result<PathBuf, LabError> {
    let dir = std::env::current_exe()
        .map_err(|e| LabError::WorkerMissing {
            dir: format!("this program's directory (unknown: {e})"),
        })?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let worker = dir.join(format!("{WORKER_BIN}{}", std::env::consts::EXE_SUFFIX));
    if worker.is_file() {
        Ok(worker)
    } else {
        Err(LabError::WorkerMissing {
            dir: dir.display().to_string(),
        })
    }
}

/// Runs the worker command `role`: `cloud`, the grid's cloud process, or `cell`, one cell's edge
/// process (see the module's documentation for what they say to each other). This is all
/// [`WORKER_BIN`]'s `main` does with its argument.
pub fn run_worker(role: &str) -> Result<(), LabError> {
    match role {
        "cloud" => worker_cloud(),
        "cell" => worker_cell(),
        _ => Err(LabError::Config {
            name: "worker command",
            reason: format!(
                "`{role}` is not `cloud` or `cell`; {WORKER_BIN} is started by `cutpoint-edge sweep --shaping real`, not by hand"
            ),
        }),
    }
}

/// Runs the grid on real shaping in `testbed` (make it first with [`Testbed::create`], which
/// tells whether real shaping is possible here). `worker` is the worker binary (see
/// [`worker_path`]). `config.edge_cpus` are CPU
/// quotas in CPUs (0.3 = 3 ms per 10 ms, over all threads). `on_cell` receives each cell as it
/// is measured. Blocks; call it outside an async runtime.
pub fn run_shaped_grid(
    config: &GridConfig,
    testbed: &Testbed,
    worker: &Path,
    mut on_cell: impl FnMut(&[GridRow], &GridCell),
) -> Result<(Vec<GridRow>, Vec<GridCell>), LabError> {
    grid::check(config)?;
    quick_profile(
        &config.cache_dir,
        config.backend,
        std::slice::from_ref(&config.net),
        config.sweep_samples,
        config.progress,
    )?;
    let spec = serde_json::to_string(&config.net.to_spec()).map_err(|e| LabError::Testbed {
        step: "writing the model spec".into(),
        reason: e.to_string(),
    })?;
    let mut cloud = Process::spawn(testbed.in_cloud(worker).arg("cloud"), "cloud")?;
    cloud.send(&CloudJob {
        spec: spec.clone(),
        backend: config.backend.name().into(),
        rtt_ms: config.rtt_ms,
        listen: SocketAddr::new(CLOUD_ADDR, 0),
    })?;
    let ready: CloudReady = cloud.receive()?;
    let (mut rows, mut cells) = (Vec::new(), Vec::new());
    for &edge_cpu in &config.edge_cpus {
        testbed.set_edge_cpu(edge_cpu)?;
        for &uplink_mbps in &config.uplinks_mbps {
            testbed.set_uplink(uplink_mbps)?;
            let mut edge = Process::spawn(testbed.in_edge(worker).arg("cell"), "edge")?;
            edge.send(&CellJob {
                spec: spec.clone(),
                backend: config.backend.name().into(),
                cache_dir: config.cache_dir.clone(),
                sweep_samples: config.sweep_samples,
                uplinks_mbps: config.uplinks_mbps.clone(),
                edge_cpu,
                uplink_mbps,
                rtt_ms: config.rtt_ms,
                repeats: config.repeats,
                max_loss: config.max_loss.to_string(),
                cloud: CloudReady {
                    addr: ready.addr,
                    fingerprint: ready.fingerprint.clone(),
                    token: ready.token.clone(),
                },
            })?;
            let _: Loaded = edge.receive()?;
            testbed.join_edge_cgroup(edge.pid())?;
            edge.send(&Go { go: true })?;
            let result: CellResult = edge.receive()?;
            edge.finish()?;
            on_cell(&result.rows, &result.cell);
            rows.extend(result.rows);
            cells.push(result.cell);
        }
    }
    cloud.finish()?;
    Ok((rows, cells))
}

/// The edge process has loaded its model.
#[derive(Serialize, Deserialize)]
struct Loaded {
    loaded: bool,
}

/// The edge process may start measuring.
#[derive(Serialize, Deserialize)]
struct Go {
    go: bool,
}

/// The cloud process: reads its job (the network, the backend, the RTT, where to listen) on
/// stdin, serves the network behind a relay, answers where it listens on stdout and serves until
/// stdin closes.
fn worker_cloud() -> Result<(), LabError> {
    let mut io = OwnStdin::new();
    let job: CloudJob = io.receive()?;
    let net = Net::from_spec_json(&job.spec)?;
    let backend = parse_backend(&job.backend)?;
    let runtime = async_runtime()?;
    runtime.block_on(async {
        let cloud = rig::start_cloud(std::slice::from_ref(&net), backend)?;
        cloud.server().preload(net.name()).await?;
        let relay = rig::rtt_relay(job.listen, cloud.addr(), job.rtt_ms).await?;
        answer(&CloudReady {
            addr: relay.local_addr(),
            fingerprint: cloud.fingerprint().to_string(),
            token: cloud.token().expose().to_string(),
        })?;
        // Serve until the parent closes stdin (or dies).
        tokio::task::spawn_blocking(move || io.wait_for_close())
            .await
            .map_err(|e| LabError::Task(e.to_string()))?;
        drop(relay);
        cloud.stop().await;
        Ok(())
    })
}

/// The edge process for one cell: reads its job (the network, the cell, the cloud) on stdin,
/// loads the model, answers `loaded`, waits for `go` (by then it is under the CPU quota),
/// calibrates, measures every candidate cut and answers the cell's rows and verdict.
fn worker_cell() -> Result<(), LabError> {
    let mut io = OwnStdin::new();
    let job: CellJob = io.receive()?;
    let net = Net::from_spec_json(&job.spec)?;
    let backend = parse_backend(&job.backend)?;
    let profiles = quick_profile(
        &job.cache_dir,
        backend,
        std::slice::from_ref(&net),
        job.sweep_samples,
        false,
    )?;
    let mut session = rig::slow_edge_session(&net, backend, &profiles, 1.0, Objective::Latency)?;
    let max_loss = job.max_loss.parse().map_err(|e| LabError::Config {
        name: "max_loss",
        reason: format!("{e}"),
    })?;
    session.set_max_loss(max_loss)?;
    let input = lab_input(&net)?;
    let trust =
        ServerTrust::Fingerprint(Fingerprint::parse(&job.cloud.fingerprint).map_err(|e| {
            LabError::Testbed {
                step: "reading the cloud's fingerprint".into(),
                reason: e.to_string(),
            }
        })?);
    let token = Token::parse(&job.cloud.token, "the parent").map_err(|e| LabError::Testbed {
        step: "reading the cloud's token".into(),
        reason: e.to_string(),
    })?;
    answer(&Loaded { loaded: true })?;
    let _: Go = io.receive()?;
    // From here on stdin only closes: when the parent is done, or gone (killed mid-sweep).
    // Either way there is nobody left to measure for.
    std::thread::spawn(move || {
        io.wait_for_close();
        std::process::exit(0)
    });
    let runtime = async_runtime()?;
    let result = runtime.block_on(async {
        // The planner's edge costs come from the full-speed profile; scale them by what the
        // quota actually does to a whole forward pass.
        let edge_scale = rig::calibrate_edge(&mut session, &input, job.repeats).await?;
        let modes = grid::candidates(&mut session, &input, &job.uplinks_mbps, job.rtt_ms).await?;
        session
            .connect(ClientConfig::new(job.cloud.addr.to_string(), trust, token))
            .await?;
        let cell = CellSpec {
            edge_cpu: job.edge_cpu,
            uplink_mbps: job.uplink_mbps,
            rtt_ms: job.rtt_ms,
            repeats: job.repeats,
            edge_scale,
        };
        let (rows, cell) = grid::measure_cell(&mut session, &modes, &input, &cell).await?;
        session.disconnect();
        Ok::<_, LabError>(CellResult { rows, cell })
    })?;
    answer(&result)
}

fn parse_backend(name: &str) -> Result<Backend, LabError> {
    name.parse()
        .map_err(|e: models::ModelError| LabError::Config {
            name: "backend",
            reason: e.to_string(),
        })
}

/// A child process of the grid, spoken to in JSON lines.
struct Process {
    role: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Process {
    fn spawn(command: &mut std::process::Command, role: &'static str) -> Result<Process, LabError> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| LabError::Testbed {
                step: format!("starting the {role} process"),
                reason: e.to_string(),
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(LabError::Testbed {
                step: format!("starting the {role} process"),
                reason: "its stdin or stdout is not a pipe".into(),
            });
        };
        Ok(Process {
            role,
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
        })
    }

    fn send<T: Serialize>(&mut self, message: &T) -> Result<(), LabError> {
        let step = format!("writing to the {} process", self.role);
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(self.failure(&step, "its stdin is closed".into()));
        };
        let written = write_line(stdin, message);
        written.map_err(|reason| self.failure(&step, reason))
    }

    fn receive<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T, LabError> {
        let step = format!("reading from the {} process", self.role);
        let read = read_line(&mut self.stdout);
        read.map_err(|reason| self.failure(&step, reason))
    }

    /// Its process id.
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes its stdin and waits for it to exit successfully.
    fn finish(mut self) -> Result<(), LabError> {
        self.stdin = None;
        let step = format!("waiting for the {} process", self.role);
        match self.child.wait() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(self.failure(&step, format!("it exited with {status}"))),
            Err(e) => Err(self.failure(&step, e.to_string())),
        }
    }

    /// The error for a failed step, with what the process said on stderr once it has exited.
    fn failure(&mut self, step: &str, reason: String) -> LabError {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut said = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut said);
        }
        let said = said.trim();
        LabError::Testbed {
            step: step.to_string(),
            reason: if said.is_empty() {
                reason
            } else {
                format!("{reason}; it said: {said}")
            },
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's own stdin, as JSON lines.
struct OwnStdin {
    stdin: BufReader<std::io::Stdin>,
}

impl OwnStdin {
    fn new() -> OwnStdin {
        OwnStdin {
            stdin: BufReader::new(std::io::stdin()),
        }
    }

    fn receive<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T, LabError> {
        read_line(&mut self.stdin).map_err(|reason| LabError::Testbed {
            step: "reading the job from stdin".into(),
            reason,
        })
    }

    /// Reads and discards stdin until it closes.
    fn wait_for_close(mut self) {
        let mut sink = String::new();
        while matches!(self.stdin.read_line(&mut sink), Ok(n) if n > 0) {
            sink.clear();
        }
    }
}

/// Answers the parent with one JSON line on stdout.
fn answer<T: Serialize>(message: &T) -> Result<(), LabError> {
    write_line(&mut std::io::stdout(), message).map_err(|reason| LabError::Testbed {
        step: "answering on stdout".into(),
        reason,
    })
}

fn write_line<T: Serialize>(to: &mut impl Write, message: &T) -> Result<(), String> {
    let mut line = serde_json::to_string(message).map_err(|e| e.to_string())?;
    line.push('\n');
    to.write_all(line.as_bytes())
        .and_then(|()| to.flush())
        .map_err(|e| e.to_string())
}

fn read_line<T: for<'de> Deserialize<'de>>(from: &mut impl BufRead) -> Result<T, String> {
    let mut line = String::new();
    match from.read_line(&mut line) {
        Ok(0) => Err("it closed the pipe".into()),
        Ok(_) => serde_json::from_str(&line).map_err(|e| format!("unreadable message: {e}")),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_worker_is_named_with_how_to_build_it() {
        // A test binary lives in `deps/`, where cargo puts no worker.
        let err = worker_path().expect_err("no worker beside a test binary");
        let text = err.to_string();
        assert!(text.contains(WORKER_BIN), "{text}");
        assert!(text.contains("cargo build --release -p edge-cli"), "{text}");
    }

    #[test]
    fn an_unknown_worker_command_is_refused() {
        let err = run_worker("serve").expect_err("not a worker command");
        assert!(
            err.to_string().contains("`serve` is not `cloud` or `cell`"),
            "{err}"
        );
    }
}
