//! [`TaskQueue`]: one session per model, a link monitor beside them, and the tasks one by one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use partition_core::Objective;
use tokio::task::JoinHandle;
use transport::Client;

use super::report::{QueueModel, TaskDone, TaskRecord, TaskReport, TaskResult, TaskSummary};
use super::{Task, TaskInput};
use crate::edge::{EdgeSession, Servers};
use crate::error::RuntimeError;
use crate::input_files::{read_image_file, read_npy_input};
use crate::loaded::DEFAULT_SEED;

/// How often the monitor looks at each connection's link estimate.
const MONITOR_PERIOD: Duration = Duration::from_secs(1);
/// Longest the monitor waits for one probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a [`TaskQueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Seeds the seeded inputs: task number `i` (from 1) runs on `seed + i`. Default
    /// [`DEFAULT_SEED`].
    pub seed: u64,
    /// The wait between tasks, as if they arrived one by one. Default none.
    pub interval: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            seed: DEFAULT_SEED,
            interval: Duration::ZERO,
        }
    }
}

/// A model's session and where its planner's costs came from.
#[derive(Debug)]
struct ModelSession {
    name: String,
    session: EdgeSession,
    costs: String,
    /// Whether a task of this model has completed (its first cut is no change).
    started: bool,
}

/// A queue of inference tasks against the cloud (one server or several), one [`EdgeSession`] per model
/// (Neurosurgeon's multi-task mode).
///
/// Add a session for every model the tasks name ([`TaskQueue::add`]), connect them
/// ([`TaskQueue::connect`]), then [`TaskQueue::run`] the tasks in order. While they run, a
/// background monitor probes every open connection whose bandwidth estimate has gone stale,
/// so that each plan uses a fresh estimate; it stops when the run ends. A task that fails (an
/// unreadable input, a refusal) is recorded and the queue goes on; a cloud that stops
/// answering makes the remaining tasks finish locally as fallbacks.
///
/// `run` is async and its sessions keep their connections on the Tokio runtime they were
/// connected on: drive the queue on one runtime (such as [`crate::async_runtime`]) and drop
/// the queue before it.
#[derive(Debug)]
pub struct TaskQueue {
    config: QueueConfig,
    sessions: Vec<ModelSession>,
}

impl TaskQueue {
    /// An empty queue with these settings.
    pub fn new(config: QueueConfig) -> TaskQueue {
        TaskQueue {
            config,
            sessions: Vec::new(),
        }
    }

    /// Adds the session that runs the tasks of its model, and where its costs came from
    /// (the origin [`crate::Costs::session`] returns). A model has one session.
    pub fn add(
        &mut self,
        session: EdgeSession,
        costs: impl Into<String>,
    ) -> Result<(), RuntimeError> {
        let name = session.model().net().name().to_string();
        if self.sessions.iter().any(|s| s.name == name) {
            return Err(RuntimeError::TaskModel {
                model: name,
                reason: "the queue has a session for it already; add one session per model".into(),
            });
        }
        self.sessions.push(ModelSession {
            name,
            session,
            costs: costs.into(),
            started: false,
        });
        Ok(())
    }

    /// The models, in the order added, with where their costs came from.
    pub fn models(&self) -> Vec<QueueModel> {
        self.sessions
            .iter()
            .map(|s| QueueModel {
                model: s.name.clone(),
                costs: s.costs.clone(),
            })
            .collect()
    }

    /// Connects every session to the cloud servers (one, or several: [`Servers`])
    /// ([`EdgeSession::connect_or_run_locally`]); the sessions share their counts of requests
    /// in flight to each server. A cloud that cannot be reached now is not an error: its
    /// warnings come back, one per model as `MODEL: WARNING`, and the sessions run locally
    /// until it answers. A refusal is an error.
    pub async fn connect(
        &mut self,
        servers: impl Into<Servers>,
    ) -> Result<Vec<String>, RuntimeError> {
        let servers = servers.into();
        let mut warnings = Vec::new();
        for s in &mut self.sessions {
            if let Some(warning) = s.session.connect_or_run_locally(servers.clone()).await? {
                warnings.push(format!("{}: {warning}", s.name));
            }
        }
        Ok(warnings)
    }

    /// Runs `tasks` in order, calling `on_record` with each task's record as it finishes,
    /// and returns every record with the summary.
    ///
    /// It is an error, before any task runs, when a task names a model without a session.
    pub async fn run(
        &mut self,
        tasks: &[Task],
        mut on_record: impl FnMut(&TaskRecord),
    ) -> Result<TaskReport, RuntimeError> {
        // Each task's session, found before any task runs.
        let mut slots = Vec::with_capacity(tasks.len());
        for task in tasks {
            match self.sessions.iter().position(|s| s.name == task.model) {
                Some(slot) => slots.push(slot),
                None => return Err(self.no_session(&task.model)),
            }
        }
        let clients = Arc::new(Mutex::new(self.clients()));
        let probes = Arc::new(AtomicU64::new(0));
        let monitor = Monitor(tokio::spawn(monitor(clients.clone(), probes.clone())));

        let mut records = Vec::with_capacity(tasks.len());
        for (i, (task, slot)) in tasks.iter().zip(slots).enumerate() {
            if i > 0 && !self.config.interval.is_zero() {
                tokio::time::sleep(self.config.interval).await;
            }
            let index = i + 1;
            let seed = self.config.seed.wrapping_add(index as u64);
            let result = match run_task(&mut self.sessions[slot], &task.input, seed).await {
                Ok(done) => TaskResult::Done(done),
                Err(error) => TaskResult::Failed { error },
            };
            let record = TaskRecord {
                index,
                model: task.model.clone(),
                input: task.input.clone(),
                result,
            };
            on_record(&record);
            records.push(record);
            *clients.lock().unwrap_or_else(PoisonError::into_inner) = self.clients();
        }
        drop(monitor);
        let summary = TaskSummary::of(&records, probes.load(Ordering::Relaxed));
        Ok(TaskReport {
            tasks: records,
            summary,
        })
    }

    /// The error for a task whose model has no session.
    fn no_session(&self, model: &str) -> RuntimeError {
        let names: Vec<&str> = self.sessions.iter().map(|s| s.name.as_str()).collect();
        RuntimeError::TaskModel {
            model: model.to_string(),
            reason: format!(
                "the queue has no session for it (it has: {}); add one with TaskQueue::add",
                names.join(", ")
            ),
        }
    }

    /// The transport clients of every server the sessions have connected to at least once.
    fn clients(&self) -> Vec<Arc<Client>> {
        self.sessions
            .iter()
            .flat_map(|s| s.session.clients())
            .collect()
    }
}

/// What a task whose input file cannot be used is told besides the error.
const INPUT_HINT: &str = "a task's input is a float32 .npy tensor or a JPEG or PNG image, and a relative path starts at the tasks file's directory";

/// Runs one task on its model's session; an error comes back as its line of text.
async fn run_task(s: &mut ModelSession, input: &TaskInput, seed: u64) -> Result<TaskDone, String> {
    let net = s.session.model().net();
    let unusable = |e: RuntimeError| format!("{e}; {INPUT_HINT}");
    let outcome = match input {
        TaskInput::Image(path) => {
            let file = read_image_file(path, net).map_err(unusable)?;
            s.session.infer_image(file).await
        }
        TaskInput::Tensor(path) => {
            let tensor = read_npy_input(path, net).map_err(unusable)?;
            s.session.infer(tensor).await
        }
        TaskInput::Seeded => {
            let tensor = models::seeded_input(net, 1, seed).map_err(|e| e.to_string())?;
            s.session.infer(tensor).await
        }
    }
    .map_err(|e| e.to_string())?;
    let done = TaskDone {
        cut: outcome.cut_report(),
        cut_summary: outcome.cut_summary(),
        predicted_ms: outcome.predicted.total_ms,
        predicted_mj: match s.session.config().objective {
            objective @ Objective::Energy { .. } => {
                Some(outcome.predicted.objective_value(&objective))
            }
            Objective::Latency => None,
        },
        measured_ms: outcome.measured.total_ms,
        cut_changed: s.started && outcome.switched,
        fallback: outcome.fallback,
    };
    s.started = true;
    Ok(done)
}

/// The monitor's task, stopped when dropped: the monitor lives exactly as long as a run,
/// however the run ends.
struct Monitor(JoinHandle<()>);

impl Drop for Monitor {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every [`MONITOR_PERIOD`], probes each open connection whose estimate is stale, counting
/// the probes. A failed probe needs no action here: the session's next request finds the
/// connection down and finishes locally.
async fn monitor(clients: Arc<Mutex<Vec<Arc<Client>>>>, probes: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(MONITOR_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let current = clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for client in current.iter().filter(|c| !c.is_closed()) {
            let probed = tokio::time::timeout(PROBE_TIMEOUT, client.refresh_if_stale()).await;
            if matches!(probed, Ok(Ok(true))) {
                probes.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
