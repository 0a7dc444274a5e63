//! `cutpoint-cloud`: the cloud side of cutpoint.
//!
//! It has no commands yet: `serve` arrives with the runtime (see the tracker). Until then it
//! only answers `--help` and `--version`, and says so instead of pretending to serve.

use clap::Parser;

/// The cloud side of cutpoint: runs the cloud part of split DNN inference for edge devices.
///
/// `cutpoint-cloud serve` is not built yet. To choose a cut today, run `cutpoint-edge plan`.
#[derive(Parser)]
#[command(name = "cutpoint-cloud", version)]
struct Cli {}

fn main() {
    Cli::parse();
    eprintln!(
        "cutpoint-cloud has no commands yet: `serve` arrives with the runtime.\n\
         To choose a cut today, run `cutpoint-edge plan --help`."
    );
    std::process::exit(2);
}
