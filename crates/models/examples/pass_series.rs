//! Runs whole forward passes of one model, one after another, and prints each pass as it ends:
//! its time in ms and the wall-clock time it ended (seconds since the Unix epoch), one pass a
//! line. `scripts/take_turns.py` runs it beside ONNX Runtime, the two taking turns on the same
//! CPUs, to compare them in the same moments of a machine whose speed changes.
//!
//! `cargo run --release -p models --example pass_series -- (MODEL | SPEC.json) [PASSES]`
//!
//! MODEL is a zoo model; SPEC.json a model spec as `cutpoint-edge graph --spec` writes it.
//! PASSES defaults to 100. Seeded weights, batch 1, the fast kernels, a constant input, on
//! `RAYON_NUM_THREADS` threads (every CPU by default), pinned as `cutpoint-edge` pins them.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use models::{Backend, HostTensor, Model, ModelError, Net, zoo};

fn run() -> Result<(), ModelError> {
    models::pin_global_pool();
    let mut args = std::env::args().skip(1);
    let Some(model) = args.next() else {
        return Err(bad_flag("needs a zoo model or a model spec file"));
    };
    let passes = match args.next() {
        None => 100,
        Some(n) => n
            .parse()
            .ok()
            .filter(|&n: &usize| n > 0)
            .ok_or_else(|| bad_flag("PASSES needs a positive number"))?,
    };
    let net = if model.ends_with(".json") {
        Net::from_spec_file(Path::new(&model))?
    } else {
        zoo::build(&model)?
    };
    let mut shape = vec![1];
    shape.extend_from_slice(net.input_shape());
    let input = HostTensor::new(shape.clone(), vec![0.5; shape.iter().product()])?;
    let model = Model::seeded(net, 0, &Backend::default().device()?)?;
    let mut out = std::io::stdout().lock();
    for _ in 0..passes {
        let x = model.upload(input.clone())?;
        let start = Instant::now();
        model.forward(x)?.to_host()?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        // A reader that stops reading (a closed pipe) ends the run.
        if writeln!(out, "{ms:.4} {now:.4}")
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
    }
    Ok(())
}

/// An error about the command line.
fn bad_flag(reason: &str) -> ModelError {
    ModelError::BadParameter {
        node: "(arguments)".into(),
        field: "pass_series",
        reason: reason.into(),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
