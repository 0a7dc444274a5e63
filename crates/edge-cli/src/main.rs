//! `cutpoint-edge`: the edge side of cutpoint. This file only wires flags to the library.

mod connect_args;
mod demo;
mod fidelity;
mod graph;
mod layers;
mod load;
mod local;
mod model_args;
mod objective_args;
mod plan;
mod run;
mod sweep;
mod tasks;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cli_common::{error_line, usage_error};
use predictor::Role;

/// The edge side of cutpoint: split a DNN between this device and a cloud server, and run it.
///
/// Start with `cutpoint-edge demo`: it runs everything on this machine, with nothing to set up.
#[derive(Parser)]
#[command(name = "cutpoint-edge", version, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Demo(demo::DemoArgs),
    Run(run::RunArgs),
    Tasks(tasks::TasksArgs),
    Load(load::LoadArgs),
    Fidelity(fidelity::FidelityArgs),
    Sweep(sweep::SweepArgs),
    Plan(plan::PlanArgs),
    Graph(graph::GraphArgs),
    Local(local::LocalArgs),
    Layers(layers::LayersArgs),
    Profile(cli_common::ProfileArgs),
    Train(cli_common::TrainArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    // Before any parallel work: the pool's workers each on a CPU of their own.
    models::pin_global_pool();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Sweep(args) => sweep::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Graph(args) => graph::run(&args),
        Command::Local(args) => local::run(&args),
        Command::Layers(args) => layers::run(&args),
        Command::Profile(args) => print_report(cli_common::profile(&args, Role::Edge)),
        Command::Train(args) => print_report(cli_common::train(&args, Role::Edge)),
        Command::Run(args) => run::run(&args),
        Command::Tasks(args) => tasks::run(&args),
        Command::Load(args) => load::run(&args),
        Command::Fidelity(args) => fidelity::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_line(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Prints `report` as pretty JSON with `--json`, else as the text `render` writes.
fn emit<R: serde::Serialize>(
    json: bool,
    report: &R,
    render: impl FnOnce(&R) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", render(report));
    }
    Ok(())
}

/// Prints a report that a shared command returned.
fn print_report<E>(report: Result<String, E>) -> anyhow::Result<()>
where
    anyhow::Error: From<E>,
{
    print!("{}", report?);
    Ok(())
}
