//! The worker-state cache's read paths against the design it replaces (an `RwLock<HashMap<String,
//! Worker>>` cloned on every read): `WorkerStateCache::peek` and the `snapshot` hit path, which
//! clone the snapshot's `Arc`, and the same through a per-thread `CacheReader`, which does not.
//! Measured on one thread while `threads - 1` other threads run the same read in a loop (each
//! thread with its own reader).
//!
//! `cargo bench -p sched-core --bench cache -- --warm-up-time 1 --measurement-time 2`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sched_core::{
    AuditMode, AuditReport, CacheConfig, CapacityReservation, CommitMode, ReleaseOutcome,
    RepoError, ReservationRecord, Resources, Worker, WorkerRepository, WorkerResult, WorkerSpec,
    WorkerStateCache,
};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

const WORKERS: usize = 200;

fn workers() -> Vec<Worker> {
    (0..WORKERS)
        .map(|i| {
            Worker::from_spec(
                &WorkerSpec::new(format!("worker-{i:05}"), Resources::cpu_mem(4000, 8192)),
                1,
            )
        })
        .collect()
}

/// Answers reads only; the cache never writes.
struct ListOnly(Vec<Worker>);

fn unsupported() -> RepoError {
    RepoError::backend("not used by this bench")
}

#[async_trait]
impl WorkerRepository for ListOnly {
    fn backend_name(&self) -> &str {
        "bench"
    }
    async fn register_worker(&self, _: &WorkerSpec) -> Result<Worker, RepoError> {
        Err(unsupported())
    }
    async fn remove_worker(&self, _: &str) -> Result<bool, RepoError> {
        Err(unsupported())
    }
    async fn get_worker(&self, id: &str) -> Result<Option<Worker>, RepoError> {
        Ok(self.0.iter().find(|w| w.id == id).cloned())
    }
    async fn list_workers(&self, _: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        Ok(self.0.clone())
    }
    async fn reserve_batch(
        &self,
        _: &[CapacityReservation],
        _: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        Err(unsupported())
    }
    async fn release_batch(&self, _: &[String]) -> Result<Vec<ReleaseOutcome>, RepoError> {
        Err(unsupported())
    }
    async fn find_reservations(
        &self,
        _: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
        Err(unsupported())
    }
    async fn list_reservations(&self, _: &str) -> Result<Vec<ReservationRecord>, RepoError> {
        Err(unsupported())
    }
    async fn audit_worker(&self, _: &str, _: AuditMode) -> Result<AuditReport, RepoError> {
        Err(unsupported())
    }
}

/// Makes one thread's read operation (a reader is per thread).
type MakeOp = Arc<dyn Fn() -> Box<dyn FnMut()> + Send + Sync>;

/// Runs an op from `make` on each of `n` background threads until the guard is dropped.
struct Contention {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Contention {
    fn start(n: usize, make: &MakeOp) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let (stop, make) = (Arc::clone(&stop), Arc::clone(make));
                std::thread::spawn(move || {
                    let mut op = make();
                    while !stop.load(Ordering::Relaxed) {
                        op();
                    }
                })
            })
            .collect();
        Contention { stop, threads }
    }
}

impl Drop for Contention {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn bench(c: &mut Criterion) {
    // Leaked so that readers (which borrow the cache) can live on background threads.
    let repo: &'static ListOnly = Box::leak(Box::new(ListOnly(workers())));
    let cache: &'static WorkerStateCache = Box::leak(Box::new(WorkerStateCache::new(
        CacheConfig::with_ttl(Duration::from_secs(3600)),
    )));
    futures::executor::block_on(cache.snapshot(repo)).expect("fill the cache");
    let map: Arc<RwLock<HashMap<String, Worker>>> = Arc::new(RwLock::new(
        workers().into_iter().map(|w| (w.id.clone(), w)).collect(),
    ));

    let shared = |op: fn(&'static WorkerStateCache, &'static ListOnly)| -> MakeOp {
        Arc::new(move || Box::new(move || op(cache, repo)))
    };
    let peek = shared(|cache, _| {
        let s = cache.peek().expect("filled");
        black_box(s.get("worker-00100").map(|w| w.free));
    });
    let snapshot_hit = shared(|cache, repo| {
        let s = futures::executor::block_on(cache.snapshot(repo)).expect("hit");
        black_box(s.workers().len());
    });
    let reader_peek: MakeOp = Arc::new(move || {
        let mut r = cache.reader();
        Box::new(move || {
            let s = r.peek().expect("filled");
            black_box(s.get("worker-00100").map(|w| w.free));
        })
    });
    let reader_snapshot_hit: MakeOp = Arc::new(move || {
        let mut r = cache.reader();
        Box::new(move || {
            let s = futures::executor::block_on(r.snapshot(repo)).expect("hit");
            black_box(s.workers().len());
        })
    });
    let rwlock_clone: MakeOp = Arc::new(move || {
        let map = Arc::clone(&map);
        Box::new(move || {
            let copy = map.read().expect("not poisoned").clone();
            black_box(copy.len());
        })
    });

    let mut g = c.benchmark_group("cache_read");
    for threads in [1usize, 2, 4] {
        for (name, make) in [
            ("arcswap_peek", &peek),
            ("arcswap_snapshot_hit", &snapshot_hit),
            ("reader_peek", &reader_peek),
            ("reader_snapshot_hit", &reader_snapshot_hit),
            ("rwlock_hashmap_clone", &rwlock_clone),
        ] {
            let _bg = Contention::start(threads - 1, make);
            let mut op = make();
            g.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, _| {
                b.iter(&mut op)
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
