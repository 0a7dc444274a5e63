//! `cutpoint-edge load`: many edge sessions against one cloud server at once, a load
//! generator. The engine is [`lab::run_load`]; this file holds the flags and the output.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use cli_common::BackendArg;
use lab::{LoadConfig, run_load};
use runtime::async_runtime;

use crate::connect_args::ConnectArgs;
use crate::model_args::{ModelArgs, WeightsArgs};
use crate::run::{CostArgs, SplitArgs, load, session};

/// Load a cloud server (or a pool: --connect a,b,...) with many edges at once, and check every
/// answer.
///
/// It runs --clients edge sessions in this process, each with its own connections, each sending
/// --requests requests one after another (after one unmeasured warm-up) with --split. It prints
/// the throughput, the p50/p95/p99 latency, the busy answers and fallbacks, and the lost and
/// wrong results: every output is compared with a local run of the same input. The run stops
/// after --timeout-s whatever is left. Send it only to a server you run.
#[derive(Args)]
#[command(after_help = "Examples:
  cutpoint-edge load --connect 127.0.0.1:4433 --token-file token --model lenet \\
      --clients 64 --requests 100 --split cloud
  cutpoint-edge load --connect 127.0.0.1:4433 --model resnet18 --clients 16 --json
  cutpoint-edge load --connect 127.0.0.1:4433,127.0.0.1:4434 --model lenet --clients 64")]
pub struct LoadArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    weights: WeightsArgs,
    /// Concurrent edge sessions, each with its own connection (at most 1024).
    #[arg(long, value_name = "N", default_value_t = 8)]
    clients: usize,
    /// Requests each session sends, one after another.
    #[arg(long, value_name = "N", default_value_t = 100)]
    requests: usize,
    /// Seconds the whole run may take; requests still running then count as lost, and those
    /// not yet sent as not sent.
    #[arg(long, value_name = "SECS", default_value_t = lab::DEFAULT_LOAD_TIMEOUT.as_secs())]
    timeout_s: u64,
    #[command(flatten)]
    planning: SplitArgs,
    #[command(flatten)]
    costs: CostArgs,
    #[command(flatten)]
    backend: BackendArg,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub fn run(args: &LoadArgs) -> Result<()> {
    let client = args.connect.client_config()?;
    let runtime = async_runtime()?;
    let net = args.model.build()?;
    let costs = args
        .costs
        .load(std::slice::from_ref(&net), args.backend.backend)?;
    let model = load(net, &args.weights.source(), args.backend.backend)?;
    let config = LoadConfig {
        clients: args.clients,
        requests: args.requests,
        timeout: Duration::from_secs(args.timeout_s),
        ..LoadConfig::default()
    };
    // The first session is made here, so that a refusal names its flag.
    let (planning, _) = args.planning.config()?;
    let (first, _) = session(&costs, model.clone(), planning.clone())?;
    let mut first = Some(first);
    let make_session = || match first.take() {
        Some(session) => Ok(session),
        None => Ok(costs.session(model.clone(), planning.clone())?.0),
    };
    let report = runtime.block_on(run_load(make_session, &client, &config))?;
    crate::emit(args.json, &report, lab::LoadReport::render)?;
    if report.lost > 0 || report.wrong > 0 {
        bail!(
            "{} request(s) lost and {} wrong of {} sent",
            report.lost,
            report.wrong,
            report.sent
        );
    }
    Ok(())
}
