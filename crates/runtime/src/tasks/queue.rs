//! [`TaskQueue`]: one session per model, a link monitor beside them, and the tasks one by one
//! or pipelined.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use partition_core::Objective;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
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
/// Most frames a pipelined queue keeps in flight.
pub const MAX_PIPELINE: usize = 16;

/// Settings of a [`TaskQueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Seeds the seeded inputs: task number `i` (from 1) runs on `seed + i`. Default
    /// [`DEFAULT_SEED`].
    pub seed: u64,
    /// The wait between tasks, as if they arrived one by one: one by one, after each task
    /// ends; pipelined, task `i` (from 0) arrives `i` intervals after the first. Default none.
    pub interval: Duration,
    /// Frames in flight at once, from 1 to [`MAX_PIPELINE`]. With 1 the tasks run one by one.
    /// With more, each model gets that many sessions (its lanes, each with its own
    /// connection), which share one edge: the edge computes task k+1 while task k uploads and
    /// the cloud runs task k−1. Records still come in queue order. Default 1.
    pub pipeline: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            seed: DEFAULT_SEED,
            interval: Duration::ZERO,
            pipeline: 1,
        }
    }
}

/// A model's session and where its planner's costs came from.
#[derive(Debug)]
struct ModelSession {
    name: String,
    session: EdgeSession,
    /// The sessions beside `session` that keep more of its frames in flight when pipelined.
    lanes: Vec<EdgeSession>,
    costs: String,
    /// Where the model's last completed task placed its nodes (its first task's cut is no
    /// change).
    last_placement: Option<Vec<bool>>,
}

/// A queue of inference tasks against the cloud (one server or several), one [`EdgeSession`] per model
/// (Neurosurgeon's multi-task mode).
///
/// Add a session for every model the tasks name ([`TaskQueue::add`]), connect them
/// ([`TaskQueue::connect`]), then [`TaskQueue::run`] the tasks in order, one by one or
/// pipelined ([`QueueConfig::pipeline`]). The sessions share one edge: they never compute at
/// the same time. While they run, a
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
        let mut session = session;
        if let Some(first) = self.sessions.first() {
            session.share_edge_with(&first.session);
        }
        self.sessions.push(ModelSession {
            name,
            session,
            lanes: Vec::new(),
            costs: costs.into(),
            last_placement: None,
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
    /// in flight to each server. Each session then measures its codecs and fetches the
    /// servers' published costs ([`EdgeSession::prepare`]), so that no task pays for them, and
    /// a pipelined queue opens its lanes. A cloud that cannot be reached now is not an error:
    /// its warnings come back, one per model as `MODEL: WARNING`, and the sessions run
    /// locally until it answers. A refusal is an error, and so is a pipeline depth outside
    /// 1..=[`MAX_PIPELINE`].
    pub async fn connect(
        &mut self,
        servers: impl Into<Servers>,
    ) -> Result<Vec<String>, RuntimeError> {
        let depth = self.pipeline_depth()?;
        let servers = servers.into();
        let mut warnings = Vec::new();
        for s in &mut self.sessions {
            if let Some(warning) = s.session.connect_or_run_locally(servers.clone()).await? {
                warnings.push(format!("{}: {warning}", s.name));
            }
            s.session.prepare().await?;
            s.lanes.clear();
            for _ in 1..depth {
                let mut lane = s.session.lane();
                // The first session's warning covers its lanes.
                lane.connect_or_run_locally(servers.clone()).await?;
                s.lanes.push(lane);
            }
        }
        Ok(warnings)
    }

    /// The configured pipeline depth, checked.
    fn pipeline_depth(&self) -> Result<usize, RuntimeError> {
        let depth = self.config.pipeline;
        if (1..=MAX_PIPELINE).contains(&depth) {
            Ok(depth)
        } else {
            Err(RuntimeError::Config {
                name: "pipeline",
                reason: format!(
                    "{depth} frames in flight is out of range; give 1 (one task at a time) to {MAX_PIPELINE}"
                ),
            })
        }
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
        let depth = self.pipeline_depth()?;
        let clients = Arc::new(Mutex::new(self.clients()));
        let probes = Arc::new(AtomicU64::new(0));
        let monitor = Monitor(tokio::spawn(monitor(clients.clone(), probes.clone())));
        let started = Instant::now();
        let records = if depth == 1 {
            self.run_one_by_one(tasks, &slots, &clients, &mut on_record)
                .await
        } else {
            self.run_pipelined(tasks, &slots, &mut on_record).await?
        };
        let wall = started.elapsed();
        drop(monitor);
        let summary = TaskSummary::of(&records, probes.load(Ordering::Relaxed), depth, wall);
        Ok(TaskReport {
            tasks: records,
            summary,
        })
    }

    /// Runs the tasks one after the other, each on its model's session.
    async fn run_one_by_one(
        &mut self,
        tasks: &[Task],
        slots: &[usize],
        clients: &Mutex<Vec<Arc<Client>>>,
        on_record: &mut impl FnMut(&TaskRecord),
    ) -> Vec<TaskRecord> {
        let mut records = Vec::with_capacity(tasks.len());
        for (i, (task, &slot)) in tasks.iter().zip(slots).enumerate() {
            if i > 0 && !self.config.interval.is_zero() {
                tokio::time::sleep(self.config.interval).await;
            }
            let index = i + 1;
            let seed = self.config.seed.wrapping_add(index as u64);
            let s = &mut self.sessions[slot];
            let ran = run_task(&mut s.session, &task.input, seed).await;
            let record = s.record(index, task, ran);
            on_record(&record);
            records.push(record);
            *clients.lock().unwrap_or_else(PoisonError::into_inner) = self.clients();
        }
        records
    }

    /// Runs the tasks on every model's lanes at once: the j-th task of a model goes to its
    /// lane j mod depth, each lane runs its tasks in order, and the records are handed on in
    /// queue order as they complete.
    async fn run_pipelined(
        &mut self,
        tasks: &[Task],
        slots: &[usize],
        on_record: &mut impl FnMut(&TaskRecord),
    ) -> Result<Vec<TaskRecord>, RuntimeError> {
        let start = Instant::now();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        // Every lane of every model runs as a Tokio task fed through its own channel; the
        // model's own session runs as its first lane (a disconnected stand-in holds its place).
        let mut feeds = Vec::with_capacity(self.sessions.len());
        let mut handles = Vec::with_capacity(self.sessions.len());
        for s in &mut self.sessions {
            let stand_in = s.session.lane();
            let first = std::mem::replace(&mut s.session, stand_in);
            let (mut model_feeds, mut model_handles) = (Vec::new(), Vec::new());
            for session in std::iter::once(first).chain(s.lanes.drain(..)) {
                let (tx, rx) = mpsc::unbounded_channel();
                model_feeds.push(tx);
                model_handles.push(tokio::spawn(lane(session, rx, done_tx.clone())));
            }
            feeds.push(model_feeds);
            handles.push(model_handles);
        }
        drop(done_tx);
        let mut sent = vec![0usize; self.sessions.len()];
        for (i, (task, &slot)) in tasks.iter().zip(slots).enumerate() {
            let frame = Frame {
                index: i + 1,
                input: task.input.clone(),
                seed: self.config.seed.wrapping_add(i as u64 + 1),
                arrival: start + self.config.interval.saturating_mul(i as u32),
            };
            // A lane that stopped early is reported when its handle is joined below.
            let _ = feeds[slot][sent[slot] % feeds[slot].len()].send(frame);
            sent[slot] += 1;
        }
        // Each lane ends once its channel is empty and closed.
        drop(feeds);

        let mut waiting = BTreeMap::new();
        let mut records = Vec::with_capacity(tasks.len());
        while let Some((index, ran)) = done_rx.recv().await {
            waiting.insert(index, ran);
            while let Some(ran) = waiting.remove(&(records.len() + 1)) {
                let index = records.len() + 1;
                let record = self.sessions[slots[index - 1]].record(index, &tasks[index - 1], ran);
                on_record(&record);
                records.push(record);
            }
        }
        for (s, model_handles) in self.sessions.iter_mut().zip(handles) {
            let mut sessions = Vec::with_capacity(model_handles.len());
            for handle in model_handles {
                let session = handle
                    .await
                    .map_err(|e| RuntimeError::Task(format!("a pipeline lane stopped: {e}")))?;
                sessions.push(session);
            }
            let mut sessions = sessions.into_iter();
            if let Some(first) = sessions.next() {
                s.session = first;
            }
            s.lanes = sessions.collect();
        }
        if records.len() < tasks.len() {
            return Err(RuntimeError::Task(format!(
                "the pipeline returned {} of {} tasks",
                records.len(),
                tasks.len()
            )));
        }
        Ok(records)
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

/// A task handed to a pipeline lane: its number from 1, its input and seed, and when it
/// arrives.
struct Frame {
    index: usize,
    input: TaskInput,
    seed: u64,
    arrival: Instant,
}

/// What running a task gave: the task and its plan's placement, or its error's line.
type Ran = Result<(TaskDone, Vec<bool>), String>;

/// A pipeline lane: runs each frame it is fed on its session once the frame has arrived, and
/// hands back the session when its feed closes.
async fn lane(
    mut session: EdgeSession,
    mut feed: mpsc::UnboundedReceiver<Frame>,
    done: mpsc::UnboundedSender<(usize, Ran)>,
) -> EdgeSession {
    while let Some(frame) = feed.recv().await {
        tokio::time::sleep_until(frame.arrival).await;
        let ran = run_task(&mut session, &frame.input, frame.seed).await;
        if done.send((frame.index, ran)).is_err() {
            break;
        }
    }
    session
}

impl ModelSession {
    /// The record of task `index`; a completed task's cut changed when its placement differs
    /// from the model's previous completed task's.
    fn record(&mut self, index: usize, task: &Task, ran: Ran) -> TaskRecord {
        let result = match ran {
            Ok((mut done, placement)) => {
                let previous = self.last_placement.replace(placement);
                done.cut_changed = previous.is_some() && previous != self.last_placement;
                TaskResult::Done(Box::new(done))
            }
            Err(error) => TaskResult::Failed { error },
        };
        TaskRecord {
            index,
            model: task.model.clone(),
            input: task.input.clone(),
            result,
        }
    }
}

/// Runs one task on a session; an error comes back as its line of text. The record's
/// `cut_changed` is left for [`ModelSession::record`].
async fn run_task(session: &mut EdgeSession, input: &TaskInput, seed: u64) -> Ran {
    let net = session.model().net();
    let unusable = |e: RuntimeError| format!("{e}; {INPUT_HINT}");
    let outcome = match input {
        TaskInput::Image(path) => {
            let file = read_image_file(path, net).map_err(unusable)?;
            session.infer_image(file).await
        }
        TaskInput::Tensor(path) => {
            let tensor = read_npy_input(path, net).map_err(unusable)?;
            session.infer(tensor).await
        }
        TaskInput::Seeded => {
            let tensor = models::seeded_input(net, 1, seed).map_err(|e| e.to_string())?;
            session.infer(tensor).await
        }
    }
    .map_err(|e| e.to_string())?;
    let objective = session.config().objective;
    let done = TaskDone {
        cut: outcome.cut_report(),
        cut_summary: outcome.cut_summary(),
        predicted_ms: outcome.predicted.total_ms,
        predicted_mj: matches!(objective, Objective::Energy { .. })
            .then(|| outcome.predicted.objective_value(&objective)),
        predicted_frame_ms: (objective == Objective::Stream)
            .then(|| outcome.predicted.bottleneck_ms()),
        measured_ms: outcome.measured.total_ms,
        cut_changed: false,
        fallback: outcome.fallback,
    };
    Ok((done, outcome.plan.placement().to_vec()))
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
