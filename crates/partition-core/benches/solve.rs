//! Solve time of the partition solvers.
//!
//! Targets on the 2-core reference machine: `chain` on 200 layers ≤ 10 µs, `mincut` on a
//! 1 000-node DAG ≤ 1 ms. The stream objective's DAG search (about 3n candidate sets and 40
//! minimum cuts) is timed beside the latency min-cut. Run with `cargo bench -p partition-core`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use partition_core::synthetic::{chain, random_dag};
use partition_core::{Link, Objective, Scenario, Solver};

fn scenario() -> Scenario {
    Scenario::latency(Link::new(5.85, 5.85, 20.0).expect("valid link"))
}

fn chains(c: &mut Criterion) {
    let s = scenario();
    let mut group = c.benchmark_group("chain");
    for layers in [20, 200, 2000] {
        let g = chain(layers, 1);
        for (name, solver) in [
            ("chain", Solver::Chain),
            ("mincut", Solver::MinCut),
            (
                "dp",
                Solver::Dp {
                    allow_return: false,
                },
            ),
        ] {
            group.bench_with_input(BenchmarkId::new(name, layers), &g, |b, g| {
                b.iter(|| solver.solve(black_box(g), &s))
            });
        }
    }
    group.finish();
}

fn dags(c: &mut Criterion) {
    let s = scenario();
    let stream = Scenario::new(*s.link(), Objective::Stream, 1.0).expect("valid scenario");
    let mut group = c.benchmark_group("random_dag");
    group.sample_size(20);
    for nodes in [100, 1000, 10_000] {
        let g = random_dag(nodes, 1);
        group.bench_with_input(BenchmarkId::new("mincut", nodes), &g, |b, g| {
            b.iter(|| Solver::MinCut.solve(black_box(g), &s))
        });
        group.bench_with_input(BenchmarkId::new("stream", nodes), &g, |b, g| {
            b.iter(|| Solver::MinCut.solve(black_box(g), &stream))
        });
    }
    group.finish();
}

criterion_group!(benches, chains, dags);
criterion_main!(benches);
