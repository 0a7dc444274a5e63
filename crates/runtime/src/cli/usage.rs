//! How a command-line parse error reaches the user.

use std::process::ExitCode;

/// Prints help and version as clap renders them (exit 0), and any other parse error on one
/// line ending in `(see --help)` (exit 2), so that scripts and people both read it easily.
pub fn usage_error(e: clap::Error) -> ExitCode {
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
