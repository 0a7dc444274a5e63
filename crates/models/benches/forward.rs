//! Forward latency of every zoo model on every backend this build includes, with the fast and
//! the plain kernels, batch 1, at the model's default input size.
//! `cargo bench -p models --bench forward [-- FILTER]` (e.g. `-- resnet18/flex`); add
//! `--features ndarray,wgpu` to compare backends.

use criterion::{Criterion, criterion_group, criterion_main};
use models::{Backend, HostTensor, Kernels, Model, Weights, zoo};

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward");
    group.sample_size(10);
    for backend in Backend::available() {
        let Ok(device) = backend.device() else {
            continue;
        };
        for (name, kernels) in zoo::MODELS
            .iter()
            .flat_map(|name| Kernels::ALL.map(|k| (name, k)))
        {
            let id = format!("{name}/{backend}/{kernels}");
            // Build the model only when the filter selects it: VGG-16 alone holds 550 MB.
            group.bench_function(&id, |b| {
                let net = zoo::build(name).expect("zoo model");
                let mut shape = vec![1];
                shape.extend_from_slice(net.input_shape());
                let n = shape.iter().product();
                let x = HostTensor::new(shape, vec![0.5; n]).expect("input");
                let weights = Weights::seeded(&net, 0);
                let model = Model::with_kernels(net, weights, &device, kernels).expect("model");
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
