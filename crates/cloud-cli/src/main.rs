//! `cutpoint-cloud`: the cloud side of cutpoint. This file only wires flags to the library.

mod check;
#[cfg(test)]
mod manifests;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cli_common::{ProfileArgs, TrainArgs, error_line, usage_error};
use predictor::Role;

/// The cloud side of cutpoint: runs the cloud part of split DNN inference for edge devices.
///
/// `serve` runs the cloud part for authenticated edges; `check` tells whether a server is
/// ready (a pool's readiness probe). `profile`, then `train`, measure what each layer costs
/// here, so that the edge's planner knows.
#[derive(Parser)]
#[command(name = "cutpoint-cloud", version, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    // Boxed: its flags make it much larger than the other commands.
    Serve(Box<serve::ServeArgs>),
    Check(check::CheckArgs),
    Profile(ProfileArgs),
    Train(TrainArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    // Before any parallel work: the pool's workers each on a CPU of their own.
    models::pin_global_pool();
    let result = match &cli.command {
        Command::Serve(args) => serve::serve(args).map_err(|e| error_line(e.as_ref())),
        Command::Check(args) => check::check(args).map_err(|e| error_line(e.as_ref())),
        Command::Profile(args) => {
            cli_common::profile(args, Role::Cloud).map_err(|e| error_line(&e))
        }
        Command::Train(args) => cli_common::train(args, Role::Cloud).map_err(|e| error_line(&e)),
    };
    match result {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
