//! Prints the median forward latency of zoo models on one backend, batch 1, default input size.
//!
//! `cargo run -p models --example latency -- [--backend flex|ndarray|wgpu] [--runs N] [MODEL...]`

use std::process::ExitCode;

use models::{Backend, HostTensor, Model, ModelError, zoo};

fn run() -> Result<(), ModelError> {
    let mut backend = Backend::default();
    let mut runs = 10;
    let mut names = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--backend" => backend = args.next().unwrap_or_default().parse()?,
            "--runs" => {
                runs = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| ModelError::BadParameter {
                        node: "(flags)".into(),
                        field: "--runs",
                        reason: "needs a positive number".into(),
                    })?
            }
            name => names.push(name.to_string()),
        }
    }
    if names.is_empty() {
        names = zoo::MODELS.iter().map(|s| s.to_string()).collect();
    }
    let device = backend.device()?;
    println!("model,backend,median_ms,gflops");
    for name in names {
        let net = zoo::build(&name)?;
        let gflops = net.flops() as f64 / 1e9;
        let mut shape = vec![1];
        shape.extend_from_slice(net.input_shape());
        let n = shape.iter().product();
        let x = HostTensor::new(shape, vec![0.5; n])?;
        let model = Model::seeded(net, 0, &device)?;
        let ms = model.time_forward(&x, 2, runs)?;
        println!("{name},{backend},{ms:.2},{gflops:.3}");
    }
    Ok(())
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
