//! `cutpoint-cloud`: the cloud side of cutpoint. This file only wires flags to the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use predictor::Role;
use runtime::cli::{ProfileArgs, TrainArgs, usage_error};

/// The cloud side of cutpoint: runs the cloud part of split DNN inference for edge devices.
///
/// Today it profiles this server (`profile`, then `train`), so that the edge's planner knows
/// what each layer costs here. `serve` arrives with the runtime.
#[derive(Parser)]
#[command(name = "cutpoint-cloud", version, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Profile(ProfileArgs),
    Train(TrainArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match &cli.command {
        Command::Profile(args) => runtime::cli::profile(args, Role::Cloud),
        Command::Train(args) => runtime::cli::train(args, Role::Cloud),
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
