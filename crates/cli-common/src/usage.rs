//! How a command-line parse error, or a command's error, reaches the user.

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
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    eprintln!(
        "{} (see --help)",
        message.join(" ").replace(" tip:", "; tip:")
    );
    ExitCode::from(2)
}

/// The error and its causes on one line, leaving out a cause whose text its parent already
/// shows (many library errors print their source themselves).
pub fn error_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}
