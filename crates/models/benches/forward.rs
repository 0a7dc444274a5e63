//! Forward latency of every zoo model on every backend this build includes, batch 1, at the
//! model's default input size. `cargo bench -p models --bench forward [-- FILTER]`; add
//! `--features ndarray,wgpu` to compare backends.

use criterion::{Criterion, criterion_group, criterion_main};
use models::{Backend, HostTensor, Model, zoo};

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward");
    group.sample_size(10);
    for backend in Backend::available() {
        let Ok(device) = backend.device() else {
            continue;
        };
        for name in zoo::MODELS {
            let id = format!("{name}/{backend}");
            // Build the model only when the filter selects it: VGG-16 alone holds 550 MB.
            group.bench_function(&id, |b| {
                let net = zoo::build(name).expect("zoo model");
                let mut shape = vec![1];
                shape.extend_from_slice(net.input_shape());
                let n = shape.iter().product();
                let x = HostTensor::new(shape, vec![0.5; n]).expect("input");
                let model = Model::seeded(net, 0, &device).expect("model");
                b.iter(|| {
                    let value = model.upload(x.clone()).expect("upload");
                    model
                        .forward(value)
                        .expect("forward")
                        .to_host()
                        .expect("read back")
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
