//! The planner (`sched_core::bench_support::plan`) on a 10,000-worker snapshot with bursts of 100
//! and 1,000 CPU-only containers, for each spreading mode.
//!
//! `cargo bench -p sched-core --bench plan -- --warm-up-time 1 --measurement-time 2`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sched_core::affinity::AffinityMode;
use sched_core::bench_support::{plan, PlanConfig};
use sched_core::{ContainerRequest, Resources, Worker, WorkerSpec};
use std::hint::black_box;
use std::sync::Arc;

fn bench(c: &mut Criterion) {
    let workers: Vec<Arc<Worker>> = (0..10_000)
        .map(|i| {
            let spec = WorkerSpec::new(format!("worker-{i:05}"), Resources::cpu_mem(4000, 8192))
                .with_priority(i32::from(i % 10 == 0));
            Arc::new(Worker::from_spec(&spec, 1))
        })
        .collect();
    let mut g = c.benchmark_group("plan_10k_workers");
    for n in [100usize, 1000] {
        let reqs: Vec<ContainerRequest> = (0..n)
            .map(|i| ContainerRequest::new(format!("c-{i}"), Resources::cpu_mem(250, 256)))
            .collect();
        let refs: Vec<&ContainerRequest> = reqs.iter().collect();
        g.throughput(Throughput::Elements(n as u64));
        for (name, cfg) in [
            ("rotate", PlanConfig::default()),
            (
                "rendezvous",
                PlanConfig {
                    affinity: AffinityMode::Rendezvous,
                    ..PlanConfig::default()
                },
            ),
            (
                "off",
                PlanConfig {
                    affinity: AffinityMode::Off,
                    ..PlanConfig::default()
                },
            ),
            (
                "best_fit",
                PlanConfig {
                    best_fit: true,
                    ..PlanConfig::default()
                },
            ),
        ] {
            g.bench_with_input(BenchmarkId::new(name, n), &refs, |b, refs| {
                b.iter(|| black_box(plan(&workers, refs, &cfg)))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
