//! Prints the median forward latency of zoo models on one backend, default input size, batch 1
//! or the batch given, with the time per sample and the share of a pass its linear layers take
//! (timed inside whole passes).
//!
//! `cargo run -p models --example latency -- [--backend flex|ndarray|wgpu] [--runs N] [--batch N] [MODEL...]`

use std::process::ExitCode;

use models::{Backend, HostTensor, Model, ModelError, zoo};

fn run() -> Result<(), ModelError> {
    let mut backend = Backend::default();
    let mut runs = 10;
    let mut batch = 1;
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--backend" => backend = args.next().unwrap_or_default().parse()?,
            "--runs" => runs = positive(args.next(), "--runs")?,
            "--batch" => batch = positive(args.next(), "--batch")?,
            name => names.push(name.to_string()),
        }
    }
    if names.is_empty() {
        names = zoo::MODELS.iter().map(|s| s.to_string()).collect();
    }
    let device = backend.device()?;
    println!("model,backend,batch,median_ms,ms_per_sample,linear_share,gflops");
    for name in names {
        let net = zoo::build(&name)?;
        let gflops = net.flops() as f64 / 1e9;
        let mut shape = vec![batch];
        shape.extend_from_slice(net.input_shape());
        let n = shape.iter().product();
        let x = HostTensor::new(shape, vec![0.5; n])?;
        let model = Model::seeded(net, 0, &device)?;
        let ms = model.time_forward(&x, 2, runs)?;
        let per_sample = ms / batch as f64;
        let layers = model.time_in_pass(x, 1, runs)?;
        let all: f64 = layers.iter().map(|l| l.median_ms).sum();
        let linear: f64 = layers
            .iter()
            .filter(|l| l.kind == "linear")
            .map(|l| l.median_ms)
            .sum();
        let share = linear / all.max(f64::MIN_POSITIVE);
        println!("{name},{backend},{batch},{ms:.2},{per_sample:.2},{share:.3},{gflops:.3}");
    }
    Ok(())
}

/// The value of `field`, which must be a positive number.
fn positive(value: Option<String>, field: &'static str) -> Result<usize, ModelError> {
    value
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| ModelError::BadParameter {
            node: "(flags)".into(),
            field,
            reason: "needs a positive number".into(),
        })
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
