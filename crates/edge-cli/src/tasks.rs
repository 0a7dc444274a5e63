//! `cutpoint-edge tasks`: Neurosurgeon's multi-task mode. A queue of inference tasks runs
//! against one cloud, one session per model, while a background monitor keeps each
//! connection's bandwidth estimate fresh; one line per task, then latency statistics. The
//! queue is [`runtime::tasks::TaskQueue`]; this file holds the flags and the output.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use cli_common::BackendArg;
use models::Net;
use runtime::tasks::{
    QueueConfig, QueueModel, TaskQueue, TaskRecord, TaskReport, random_tasks, read_tasks,
    task_networks,
};
use runtime::{DEFAULT_SEED, ObjectiveChoice, ObjectiveReport, WeightsSource, async_runtime};
use serde::Serialize;

use crate::connect_args::ConnectArgs;
use crate::model_args::build_net;
use crate::run::{CostArgs, SplitArgs, load, session};

/// Run a queue of inference tasks against a cloud server (Neurosurgeon's multi-task mode).
///
/// Each distinct model gets its own session, connected before the first task. While the tasks
/// run, a background monitor probes every connection whose bandwidth estimate has gone stale,
/// so each plan uses a fresh estimate. It prints one line per task (the cut, the predicted and
/// the measured latency, and whether it had to finish locally), then the mean, p50 and p95
/// latency, the cut changes, the fallbacks and the throughput. With --pipeline N the stages
/// overlap: the edge computes task k+1 while task k uploads and the cloud runs task k−1, N
/// tasks in flight, and the planner minimises the time per frame (the slowest stage) unless
/// --objective says otherwise. A task that fails is reported on its line and counted, and the
/// command then exits with an error.
#[derive(Args)]
#[command(after_help = "Examples:
  cutpoint-edge tasks --connect 10.0.0.5:4433 --token-file token --random 50 \\
      --models alexnet,resnet18,mobilenet_v2
  cutpoint-edge tasks --connect 10.0.0.5:4433 --tasks queue.txt --json
  cutpoint-edge tasks --connect 10.0.0.5:4433 --random 100 --models resnet18 --pipeline 3
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
    /// Wait this long between tasks, as if they arrived one by one (pipelined: task i arrives
    /// i intervals after the first).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    interval_ms: u64,
    /// Tasks in flight at once, 1 to 16: 1 runs them one by one; N overlaps the edge, the
    /// uplink and the cloud over N tasks, each model with N connections, and plans for the
    /// stream objective unless --objective is given.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pipeline: usize,
    #[command(flatten)]
    planning: SplitArgs,
    #[command(flatten)]
    costs: CostArgs,
    #[command(flatten)]
    backend: BackendArg,
    /// Print the task records and the summary as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// What `tasks --json` prints.
#[derive(Serialize)]
struct TasksJson<'a> {
    server: &'a str,
    split: String,
    objective: ObjectiveReport,
    models: Vec<QueueModel>,
    connect_warnings: &'a [String],
    /// `tasks` (the records) and `summary`.
    #[serde(flatten)]
    report: &'a TaskReport,
}

/// Runs the command.
pub fn run(args: &TasksArgs) -> Result<()> {
    let client = args.connect.client_config()?;
    // Made first so that the queue, whose sessions hold the connections, is dropped before it.
    let runtime = async_runtime()?;
    let specs: Vec<Net> = args
        .model_spec
        .iter()
        .map(|path| build_net(None, Some(path)))
        .collect::<Result<_>>()?;
    let tasks = match (&args.tasks, args.random) {
        (Some(path), _) => read_tasks(path)?,
        (None, Some(n)) => random_tasks(n, &args.models, args.seed)
            .with_context(|| if n == 0 { "--random" } else { "--models" })?,
        (None, None) => bail!("give the tasks with --tasks FILE or --random N"),
    };
    let nets = task_networks(&tasks, &specs).context("--model-spec")?;
    let default_objective = if args.pipeline > 1 {
        ObjectiveChoice::Stream
    } else {
        ObjectiveChoice::Latency
    };
    let (config, objective) = args.planning.config_or(default_objective)?;
    let costs = args.costs.load(&nets, args.backend.backend)?;
    let mut queue = TaskQueue::new(QueueConfig {
        seed: args.seed,
        interval: Duration::from_millis(args.interval_ms),
        pipeline: args.pipeline,
    });
    for net in nets {
        let model = load(
            net,
            &WeightsSource::Seeded(args.weights_seed),
            args.backend.backend,
        )?;
        let (session, origin) = session(&costs, model, config.clone())?;
        queue.add(session, origin)?;
    }

    let (warnings, report) = runtime.block_on(async {
        let warnings = queue.connect(client).await?;
        for warning in &warnings {
            eprintln!("warning: {warning}");
        }
        if !args.json {
            println!(
                "queue of {} task(s) against {}, split {}",
                tasks.len(),
                args.connect.server(),
                args.planning.split_name()
            );
            println!("{}", objective.report().line());
            for m in queue.models() {
                println!("  {}: costs from {}", m.model, m.costs);
            }
            println!("{}", TaskRecord::table_header());
        }
        let report = queue
            .run(&tasks, |record| {
                if !args.json {
                    println!("{record}");
                }
            })
            .await?;
        anyhow::Ok((warnings, report))
    })?;
    if args.json {
        let json = TasksJson {
            server: args.connect.server(),
            split: args.planning.split_name(),
            objective: objective.report(),
            models: queue.models(),
            connect_warnings: &warnings,
            report: &report,
        };
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("\n{}\n", report.summary);
    }
    let summary = &report.summary;
    if summary.failed > 0 {
        bail!(
            "{} of {} tasks failed; their lines say why",
            summary.failed,
            summary.tasks
        );
    }
    Ok(())
}
