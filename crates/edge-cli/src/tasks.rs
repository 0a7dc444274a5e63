//! `cutpoint-edge tasks`: Neurosurgeon's multi-task mode. A queue of inference tasks runs
//! against one cloud, one session per model, while a background monitor keeps each
//! connection's bandwidth estimate fresh; one line per task, then latency statistics.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use cli_common::{error_line, parse_backend};
use models::{Backend, HostTensor, Net, zoo};
use runtime::{DEFAULT_SEED, EdgeSession, WeightsSource};
use serde_json::{Value, json};
use transport::Client;

use crate::connect_args::{ConnectArgs, connect};
use crate::model_args::build_net;
use crate::run::{
    CostArgs, SplitArgs, async_runtime, cut_json, cut_summary, load, read_image_file,
};
use crate::tensor_io::{SplitMix, read_input, seeded_input};

/// How often the monitor looks at each connection's link estimate.
const MONITOR_PERIOD: Duration = Duration::from_secs(1);
/// Longest the monitor waits for one probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Run a queue of inference tasks against a cloud server (Neurosurgeon's multi-task mode).
///
/// Each distinct model gets its own session, connected before the first task. While the tasks
/// run, a background monitor probes every connection whose bandwidth estimate has gone stale,
/// so each plan uses a fresh estimate. It prints one line per task (the cut, the predicted and
/// the measured latency, and whether it had to finish locally), then the mean, p50 and p95
/// latency, the cut changes and the fallbacks. A task that fails is reported on its line and
/// counted, and the command then exits with an error.
#[derive(Args)]
#[command(after_help = "Examples:
  cutpoint-edge tasks --connect 10.0.0.5:4433 --token-file token --random 50 \\
      --models alexnet,resnet18,mobilenet_v2
  cutpoint-edge tasks --connect 10.0.0.5:4433 --tasks queue.txt --json
  cutpoint-edge tasks --connect 10.0.0.5:4433 --random 20 --models my_net \\
      --model-spec my_net.spec.json --interval-ms 500

A tasks file holds one task per line, `MODEL [INPUT]`, with `#` starting a comment; the input
is a float32 .npy tensor or a JPEG or PNG image (sent as the file when that is cheapest):
  resnet18 images/cat.npy
  resnet18 images/cat.jpg
  alexnet            # a seeded random input")]
pub struct TasksArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Tasks file: one task per line, `MODEL [INPUT.npy|IMAGE.jpg]`, `#` starts a comment;
    /// relative input paths are relative to the file's directory, and a task without one gets
    /// a seeded input.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "random",
        conflicts_with = "random"
    )]
    tasks: Option<PathBuf>,
    /// Draw N tasks at random from --models (with seeded inputs) instead of --tasks.
    #[arg(long, value_name = "N")]
    random: Option<usize>,
    /// The models --random draws from: zoo names, or names of --model-spec networks.
    #[arg(
        long,
        value_name = "NAME,NAME,...",
        value_delimiter = ',',
        default_value = "alexnet,resnet18,mobilenet_v2",
        conflicts_with = "tasks"
    )]
    models: Vec<String>,
    /// Seed for the --random draws and for the seeded inputs.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// A model spec JSON file (`graph --spec` output) whose network tasks and --models may
    /// name (repeatable); the server must serve it too (`cutpoint-cloud serve --model-spec`).
    #[arg(long, value_name = "FILE")]
    model_spec: Vec<PathBuf>,
    /// Seed for the models' weights (the server's --seed must match).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SEED)]
    weights_seed: u64,
    /// Wait this long between tasks, as if they arrived one by one.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    interval_ms: u64,
    #[command(flatten)]
    planning: SplitArgs,
    #[command(flatten)]
    costs: CostArgs,
    /// Backend: flex (default, fastest on CPU), ndarray, or wgpu (each needs its cargo feature).
    #[arg(long, value_name = "NAME", default_value = "flex", value_parser = parse_backend)]
    backend: Backend,
    /// Print the task records and the summary as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// One inference task.
struct Task {
    model: String,
    /// Its input file; `None` for a seeded input.
    input: Option<PathBuf>,
}

/// A model's session and where its planner's costs came from.
struct ModelSession {
    name: String,
    session: EdgeSession,
    costs: String,
    /// Whether a task of this model has completed (its first cut is no change).
    started: bool,
}

/// What became of one task.
struct Record {
    index: usize,
    model: String,
    input: Option<PathBuf>,
    result: Result<Done, String>,
}

/// A completed task.
struct Done {
    cut: Value,
    cut_summary: String,
    predicted_ms: f64,
    measured_ms: f64,
    /// The cut differs from the previous task of the same model.
    cut_changed: bool,
    fallback: Option<String>,
}

/// Runs the command.
pub fn run(args: &TasksArgs) -> Result<()> {
    let client = args.connect.client_config()?;
    // Made first so that the sessions, which hold the connections, are dropped before it.
    let runtime = async_runtime()?;
    let specs: Vec<Net> = args
        .model_spec
        .iter()
        .map(|path| build_net(None, Some(path)))
        .collect::<Result<_>>()?;
    let tasks = match (&args.tasks, args.random) {
        (Some(path), _) => read_tasks(path)?,
        (None, Some(n)) => random_tasks(n, &args.models, args.seed)?,
        (None, None) => bail!("give the tasks with --tasks FILE or --random N"),
    };
    let mut nets: Vec<Net> = Vec::new();
    for task in &tasks {
        if nets.iter().all(|n| n.name() != task.model) {
            nets.push(resolve(&task.model, &specs)?);
        }
    }
    let costs = args.costs.load(&nets, args.backend)?;
    let mut sessions = Vec::new();
    for net in nets {
        let name = net.name().to_string();
        let model = load(net, &WeightsSource::Seeded(args.weights_seed), args.backend)?;
        let (session, costs) = costs.session(model, args.planning.config())?;
        sessions.push(ModelSession {
            name,
            session,
            costs,
            started: false,
        });
    }

    let (records, warnings, probes) =
        runtime.block_on(run_queue(args, client, &mut sessions, &tasks))?;
    let summary = summarise(&records, probes);
    if args.json {
        let report = json!({
            "server": args.connect.server(),
            "split": args.planning.split_name(),
            "models": sessions
                .iter()
                .map(|s| json!({"model": s.name, "costs": s.costs}))
                .collect::<Vec<_>>(),
            "connect_warnings": warnings,
            "tasks": records.iter().map(record_json).collect::<Vec<_>>(),
            "summary": summary,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_summary(&summary));
    }
    let failed = summary["failed"].as_u64().unwrap_or_default();
    if failed > 0 {
        bail!(
            "{failed} of {} tasks failed; their lines say why",
            records.len()
        );
    }
    Ok(())
}

/// Connects every session, starts the monitor and works through the queue. Returns the
/// records, the connect warnings and how many probes the monitor ran.
async fn run_queue(
    args: &TasksArgs,
    client: transport::ClientConfig,
    sessions: &mut [ModelSession],
    tasks: &[Task],
) -> Result<(Vec<Record>, Vec<String>, u64)> {
    let mut warnings = Vec::new();
    for s in sessions.iter_mut() {
        if let Some(warning) = connect(&mut s.session, client.clone()).await? {
            eprintln!("warning: {}: {warning}", s.name);
            warnings.push(format!("{}: {warning}", s.name));
        }
    }
    let clients = Arc::new(Mutex::new(current_clients(sessions)));
    let probes = Arc::new(AtomicU64::new(0));
    let monitor = tokio::spawn(monitor(clients.clone(), probes.clone()));

    if !args.json {
        println!(
            "queue of {} task(s) against {}, split {}",
            tasks.len(),
            args.connect.server(),
            args.planning.split_name()
        );
        for s in sessions.iter() {
            println!("  {}: costs from {}", s.name, s.costs);
        }
        println!(
            "{:>4}  {:<14}  {:<36}  {:>12}  {:>11}",
            "#", "model", "cut", "predicted ms", "measured ms"
        );
    }
    let mut records = Vec::with_capacity(tasks.len());
    for (i, task) in tasks.iter().enumerate() {
        if i > 0 && args.interval_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        }
        let index = i + 1;
        let Some(s) = sessions.iter_mut().find(|s| s.name == task.model) else {
            return Err(anyhow!("no session for model `{}`", task.model));
        };
        let result = run_task(s, task, args.seed.wrapping_add(index as u64)).await;
        let record = Record {
            index,
            model: task.model.clone(),
            input: task.input.clone(),
            result,
        };
        if !args.json {
            println!("{}", record_line(&record));
        }
        records.push(record);
        *clients.lock().unwrap_or_else(PoisonError::into_inner) = current_clients(sessions);
    }
    monitor.abort();
    Ok((records, warnings, probes.load(Ordering::Relaxed)))
}

/// Runs one task on its model's session.
async fn run_task(s: &mut ModelSession, task: &Task, input_seed: u64) -> Result<Done, String> {
    let net = s.session.model().net();
    let is_image = task.input.as_deref().is_some_and(|p| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
    });
    let outcome = match &task.input {
        Some(path) if is_image => {
            let file = read_image_file(path, net).map_err(|e| error_line(e.as_ref()))?;
            s.session.infer_image(file).await
        }
        input => {
            let tensor: Result<HostTensor> = match input {
                Some(path) => read_input(None, Some(path), net).context(
                    "the task's input must be a float32 .npy file or a JPEG or PNG image (a relative path starts at the tasks file's directory)",
                ),
                None => seeded_input(net, input_seed),
            };
            s.session.infer(tensor.map_err(|e| error_line(e.as_ref()))?).await
        }
    }
    .map_err(|e| error_line(&e))?;
    let done = Done {
        cut: cut_json(&outcome),
        cut_summary: cut_summary(&outcome),
        predicted_ms: outcome.predicted.total_ms,
        measured_ms: outcome.measured.total_ms,
        cut_changed: s.started && outcome.switched,
        fallback: outcome.fallback,
    };
    s.started = true;
    Ok(done)
}

/// The transport clients of the sessions that have connected at least once.
fn current_clients(sessions: &[ModelSession]) -> Vec<Arc<Client>> {
    sessions.iter().filter_map(|s| s.session.client()).collect()
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

/// Reads a tasks file: `MODEL [INPUT.npy]` per line, `#` comments, blank lines skipped.
fn read_tasks(path: &Path) -> Result<Vec<Task>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read tasks file {}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut tasks = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            [] => {}
            [model] => tasks.push(Task {
                model: model.to_string(),
                input: None,
            }),
            [model, input] => tasks.push(Task {
                model: model.to_string(),
                input: Some(dir.join(input)),
            }),
            _ => bail!(
                "{}:{}: `{}` has {} words; a task is `MODEL [INPUT.npy]`",
                path.display(),
                n + 1,
                line.trim(),
                words.len()
            ),
        }
    }
    if tasks.is_empty() {
        bail!(
            "{} holds no tasks; write one per line as `MODEL [INPUT.npy]`",
            path.display()
        );
    }
    Ok(tasks)
}

/// `n` tasks, each a model drawn from `models` with seeded inputs.
fn random_tasks(n: usize, models: &[String], seed: u64) -> Result<Vec<Task>> {
    let models: Vec<&str> = models
        .iter()
        .map(|m| m.trim())
        .filter(|m| !m.is_empty())
        .collect();
    if n == 0 {
        bail!("--random 0 gives no tasks; give at least 1");
    }
    if models.is_empty() {
        bail!("--models is empty; name the models to draw from, e.g. --models alexnet,resnet18");
    }
    let mut rng = SplitMix::new(seed);
    Ok((0..n)
        .map(|_| Task {
            model: models[rng.below(models.len())].to_string(),
            input: None,
        })
        .collect())
}

/// The network named `name`: a --model-spec network, or else a zoo model.
fn resolve(name: &str, specs: &[Net]) -> Result<Net> {
    if let Some(net) = specs.iter().find(|n| n.name() == name) {
        return Ok(net.clone());
    }
    zoo::build(name).with_context(|| {
        format!("task model `{name}` is neither a zoo model nor the name of a --model-spec network")
    })
}

/// A task's line of text.
fn record_line(record: &Record) -> String {
    let head = format!("{:>4}  {:<14}", record.index, record.model);
    match &record.result {
        Err(message) => format!("{head}  error: {message}"),
        Ok(done) => {
            let mut line = format!(
                "{head}  {:<36}  {:>12.2}  {:>11.2}",
                done.cut_summary, done.predicted_ms, done.measured_ms
            );
            if done.cut_changed {
                line += "  (cut changed)";
            }
            if let Some(reason) = &done.fallback {
                line += &format!("  fallback: {reason}");
            }
            line
        }
    }
}

/// A task's record as JSON.
fn record_json(record: &Record) -> Value {
    let mut value = json!({
        "index": record.index,
        "model": record.model,
        "input": record.input.as_ref().map(|p| p.display().to_string()),
    });
    match &record.result {
        Err(message) => value["error"] = json!(message),
        Ok(done) => {
            value["cut"] = done.cut.clone();
            value["predicted_ms"] = json!(done.predicted_ms);
            value["measured_ms"] = json!(done.measured_ms);
            value["cut_changed"] = json!(done.cut_changed);
            value["fallback"] = json!(done.fallback);
        }
    }
    value
}

/// The `p`-th percentile (nearest rank) of sorted values.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// Counts and latency statistics over the records.
fn summarise(records: &[Record], probes: u64) -> Value {
    let done: Vec<&Done> = records
        .iter()
        .filter_map(|r| r.result.as_ref().ok())
        .collect();
    let mut latencies: Vec<f64> = done.iter().map(|d| d.measured_ms).collect();
    latencies.sort_by(f64::total_cmp);
    let mean =
        (!latencies.is_empty()).then(|| latencies.iter().sum::<f64>() / latencies.len() as f64);
    json!({
        "tasks": records.len(),
        "completed": done.len(),
        "failed": records.len() - done.len(),
        "fallbacks": done.iter().filter(|d| d.fallback.is_some()).count(),
        "cut_changes": done.iter().filter(|d| d.cut_changed).count(),
        "latency_ms": {
            "mean": mean,
            "p50": percentile(&latencies, 50.0),
            "p95": percentile(&latencies, 95.0),
        },
        "monitor_probes": probes,
    })
}

/// The summary as text.
fn render_summary(summary: &Value) -> String {
    let count = |key: &str| summary[key].as_u64().unwrap_or_default();
    let latency = &summary["latency_ms"];
    let ms = |key: &str| {
        latency[key]
            .as_f64()
            .map_or_else(|| "-".to_string(), |v| format!("{v:.2}"))
    };
    format!(
        "\nsummary: {} tasks, {} completed, {} failed; {} fallbacks; {} cut changes; {} link probes by the monitor\nlatency (measured, ms): mean {}, p50 {}, p95 {}\n",
        count("tasks"),
        count("completed"),
        count("failed"),
        count("fallbacks"),
        count("cut_changes"),
        count("monitor_probes"),
        ms("mean"),
        ms("p50"),
        ms("p95"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(10.0));
        assert_eq!(percentile(&v, 95.0), Some(19.0));
        assert_eq!(percentile(&[3.0], 95.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn tasks_files_take_a_model_and_an_optional_input() {
        let dir = std::env::temp_dir().join(format!("edge-cli-tasks-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("queue.txt");
        std::fs::write(&path, "# queue\nlenet\n\nresnet18 x.npy  # with input\n").expect("write");
        let tasks = read_tasks(&path).expect("parses");
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0].model, "lenet");
        assert_eq!(tasks[0].input, None);
        assert_eq!(tasks[1].input, Some(dir.join("x.npy")));
        std::fs::write(&path, "lenet a.npy b.npy\n").expect("write");
        let err = read_tasks(&path).err().expect("three words").to_string();
        assert!(
            err.contains(":1:") && err.contains("MODEL [INPUT.npy]"),
            "{err}"
        );
        std::fs::write(&path, "# nothing\n").expect("write");
        assert!(read_tasks(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn random_tasks_repeat_for_a_seed() {
        let models = vec!["lenet".to_string(), "alexnet".to_string()];
        let names = |seed| -> Vec<String> {
            random_tasks(30, &models, seed)
                .expect("tasks")
                .into_iter()
                .map(|t| t.model)
                .collect()
        };
        assert_eq!(names(4), names(4));
        assert!(names(4).iter().any(|m| m == "lenet") && names(4).iter().any(|m| m == "alexnet"));
        assert!(random_tasks(0, &models, 1).is_err());
        assert!(random_tasks(3, &[" ".to_string()], 1).is_err());
    }
}
