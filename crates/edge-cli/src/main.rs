//! `cutpoint-edge`: the edge side of cutpoint. This file only wires flags to the library.

mod plan;
mod table;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The edge side of cutpoint: decide where to split a DNN between this device and a cloud server.
#[derive(Parser)]
#[command(name = "cutpoint-edge", version, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Plan(plan::PlanArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let result = match cli.command {
        Command::Plan(args) => plan::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints help and version as clap renders them, and any other parse error on one line.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind::{
        DisplayHelp, DisplayHelpOnMissingArgumentOrSubcommand, DisplayVersion,
    };
    if matches!(
        e.kind(),
        DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        // Writing help to a closed pipe is not worth an error.
        let _ = e.print();
        return if e.kind() == DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    // Clap spreads one error over several lines (the message, the missing arguments, a tip,
    // the usage). Keep everything before the usage, on one line.
    let text = e.render().to_string();
    let message: Vec<&str> = text
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    eprintln!(
        "{} (see --help)",
        message.join(" ").replace(" tip:", "; tip:")
    );
    ExitCode::from(2)
}
