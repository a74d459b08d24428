//! The shared suites against `sched_memory::MemoryRepository`, plus tests of its fault injection
//! and builder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use sched_core::{
    CapacityReservation, CommitMode, Rejection, RepoError, ResourceReservation, Resources,
    WorkerRepository, WorkerSpec,
};
use sched_memory::{Fault, MemoryRepository};
use sched_tests::conformance;
use std::time::{Duration, Instant};

/// One `#[tokio::test]` per check, each on a fresh store.
mod each_check {
    sched_tests::conformance_tests!(async { Some(sched_memory::MemoryRepository::new()) });
}

/// Every check, one after another, on one store already holding other workers.
#[tokio::test]
async fn run_all_on_a_non_empty_store() {
    let repo = MemoryRepository::builder()
        .cpu_workers(3, Resources::cpu_mem(1000, 1000))
        .build()
        .await;
    conformance::run_all(&repo).await;
    assert_eq!(
        repo.list_workers(None).await.unwrap().len(),
        3,
        "checks clean up after themselves"
    );
}

/// Every check at once on one shared store, from several tasks: namespaces keep them apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_concurrently_on_a_shared_store() {
    let repo = MemoryRepository::new();
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let repo = repo.clone();
            tokio::spawn(async move { conformance::run_all_concurrently(&repo).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        repo.list_workers(None).await.unwrap().is_empty(),
        "checks clean up after themselves"
    );
}

#[test]
fn check_names_are_listed() {
    assert!(conformance::CHECKS.len() >= 40);
    assert!(conformance::CHECKS.iter().all(|c| c.starts_with("check_")));
}

// ---------------------------------------------------------------------------------------------
// Fault injection
// ---------------------------------------------------------------------------------------------

fn one(worker: &str, container: &str) -> Vec<CapacityReservation> {
    vec![CapacityReservation::new(
        worker,
        vec![ResourceReservation::new(
            container,
            Resources::cpu_mem(100, 100),
        )],
    )]
}

async fn seeded() -> MemoryRepository {
    MemoryRepository::builder()
        .cpu_workers(2, Resources::cpu_mem(1000, 1000))
        .build()
        .await
}

#[tokio::test]
async fn fault_fail_applies_nothing() {
    let repo = seeded().await;
    repo.faults().push(Fault::Fail, 1);
    assert_eq!(repo.faults().pending(), 1);
    let err = repo
        .reserve_batch(&one("worker-0", "c"), CommitMode::AllOrNothing)
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
    assert!(err.is_transient() && !err.is_ambiguous());
    assert_eq!(repo.faults().pending(), 0, "the fault is consumed");
    assert_eq!(
        repo.find_reservation("c").await.unwrap(),
        None,
        "Fail applies nothing"
    );
    // The next call goes through.
    let out = repo
        .reserve_batch(&one("worker-0", "c"), CommitMode::AllOrNothing)
        .await
        .unwrap();
    assert!(out[0].outcome.is_ok());
    repo.faults().push(Fault::Fail, 1);
    let err = repo.release_batch(&["c".to_owned()]).await.unwrap_err();
    assert!(matches!(err, RepoError::Unavailable(_)), "{err:?}");
    assert!(
        repo.find_reservation("c").await.unwrap().is_some(),
        "a failed release applies nothing"
    );
}

#[tokio::test]
async fn fault_conflict_rejects_every_worker() {
    let repo = seeded().await;
    let v = repo
        .get_worker("worker-1")
        .await
        .unwrap()
        .unwrap()
        .resource_version;
    repo.faults().push(Fault::Conflict, 1);
    let mut batch = one("worker-0", "a");
    batch.extend(one("worker-1", "b"));
    batch.extend(one("ghost", "g"));
    batch[1].expected_version = Some(v);
    let out = repo
        .reserve_batch(&batch, CommitMode::Partial)
        .await
        .unwrap();
    assert!(matches!(
        out[0].outcome,
        Err(Rejection::VersionConflict { expected: 0, .. })
    ));
    assert_eq!(
        out[1].outcome,
        Err(Rejection::VersionConflict {
            expected: v,
            current: v
        })
    );
    assert_eq!(out[2].outcome, Err(Rejection::UnknownWorker));
    for c in ["a", "b"] {
        assert_eq!(
            repo.find_reservation(c).await.unwrap(),
            None,
            "Conflict applies nothing"
        );
    }
    let out = repo
        .reserve_batch(&batch, CommitMode::Partial)
        .await
        .unwrap();
    assert!(out[0].outcome.is_ok() && out[1].outcome.is_ok(), "{out:?}");
}

#[tokio::test]
async fn fault_lose_reply_applies_then_reports_ambiguous() {
    let repo = seeded().await;
    repo.faults().push(Fault::LoseReply, 2);
    let err = repo
        .reserve_batch(&one("worker-0", "c"), CommitMode::AllOrNothing)
        .await
        .unwrap_err();
    assert!(err.is_ambiguous(), "{err:?}");
    let rec = repo
        .find_reservation("c")
        .await
        .unwrap()
        .expect("LoseReply applies the reservation");
    assert_eq!(rec.worker_id, "worker-0");
    assert_eq!(
        repo.get_worker("worker-0").await.unwrap().unwrap().free,
        Resources::cpu_mem(900, 900)
    );
    // Resolving the doubt by retrying is idempotent.
    let err = repo.release_batch(&["c".to_owned()]).await.unwrap_err();
    assert!(matches!(err, RepoError::Ambiguous(_)), "{err:?}");
    assert_eq!(
        repo.find_reservation("c").await.unwrap(),
        None,
        "LoseReply applies the release"
    );
    assert_eq!(
        repo.get_worker("worker-0").await.unwrap().unwrap().free,
        Resources::cpu_mem(1000, 1000)
    );
    let out = repo.release_batch(&["c".to_owned()]).await.unwrap();
    assert_eq!(out[0].released, None, "the retried release is a no-op");
    assert!(repo.audit("worker-0").await.unwrap().is_consistent());
}

#[tokio::test]
async fn faults_queue_in_order_and_clear() {
    let repo = seeded().await;
    repo.faults().push(Fault::Fail, 2);
    repo.faults().push(Fault::LoseReply, 1);
    assert_eq!(repo.faults().pending(), 3);
    for _ in 0..2 {
        let e = repo
            .reserve_batch(&one("worker-0", "c"), CommitMode::AllOrNothing)
            .await
            .unwrap_err();
        assert!(matches!(e, RepoError::Unavailable(_)));
    }
    let e = repo
        .reserve_batch(&one("worker-0", "c"), CommitMode::AllOrNothing)
        .await
        .unwrap_err();
    assert!(e.is_ambiguous());
    repo.faults().push(Fault::Fail, 5);
    repo.faults().clear();
    assert_eq!(repo.faults().pending(), 0);
    // Reads never consume faults.
    repo.faults().push(Fault::Fail, 1);
    repo.get_worker("worker-0").await.unwrap();
    repo.list_workers(None).await.unwrap();
    repo.find_reservation("c").await.unwrap();
    assert_eq!(repo.faults().pending(), 1, "reads do not consume faults");
    repo.faults().clear();
}

#[tokio::test]
async fn fault_latency_delays_calls() {
    let repo = seeded().await;
    repo.faults().set_latency(Duration::from_millis(40));
    let t = Instant::now();
    repo.get_worker("worker-0").await.unwrap();
    repo.reserve_batch(&one("worker-0", "c"), CommitMode::AllOrNothing)
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(80),
        "two calls of 40 ms took {:?}",
        t.elapsed()
    );
    repo.faults().clear();
    let t = Instant::now();
    for _ in 0..10 {
        repo.get_worker("worker-0").await.unwrap();
    }
    assert!(
        t.elapsed() < Duration::from_millis(40),
        "clear() removes latency: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn counters_count_round_trips() {
    let repo = seeded().await;
    let before = repo.counters().snapshot();
    repo.reserve_batch(&one("worker-0", "c"), CommitMode::AllOrNothing)
        .await
        .unwrap();
    repo.release_batch(&["c".to_owned()]).await.unwrap();
    repo.get_worker("worker-0").await.unwrap();
    let d = repo.counters().snapshot().since(&before);
    assert_eq!(
        (
            d.round_trips,
            d.reserve_calls,
            d.release_calls,
            d.read_calls
        ),
        (3, 1, 1, 1),
        "{d:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Builder
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn builder_seeds_workers() {
    let total = Resources::new(4000, 8192, 0);
    let gtotal = Resources::new(8000, 16384, 4);
    let repo = MemoryRepository::builder()
        .cpu_workers(2, total)
        .gpu_workers(2, "a100", gtotal)
        .worker(
            WorkerSpec::new("custom", total)
                .with_pool("batch")
                .with_priority(5),
        )
        .build()
        .await;
    let ids: Vec<String> = repo
        .list_workers(None)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(
        ids,
        [
            "custom",
            "gpu-worker-0",
            "gpu-worker-1",
            "worker-0",
            "worker-1"
        ]
    );
    let g = repo.get_worker("gpu-worker-1").await.unwrap().unwrap();
    assert_eq!(
        (g.gpu_type.as_deref(), g.total, g.free),
        (Some("a100"), gtotal, gtotal)
    );
    let c = repo.get_worker("custom").await.unwrap().unwrap();
    assert_eq!((c.pool.as_str(), c.priority), ("batch", 5));
    assert_eq!(repo.list_workers(Some("batch")).await.unwrap().len(), 1);
    assert_eq!(repo.list_workers(Some("default")).await.unwrap().len(), 4);
    for id in ids {
        assert!(repo.audit(&id).await.unwrap().is_consistent());
    }
}

#[tokio::test]
async fn builder_cpu_workers_twice_adds_distinct_workers() {
    let repo = MemoryRepository::builder()
        .cpu_workers(2, Resources::cpu_mem(1, 1))
        .cpu_workers(2, Resources::cpu_mem(2, 2))
        .build()
        .await;
    assert_eq!(repo.list_workers(None).await.unwrap().len(), 4);
}

#[tokio::test]
async fn builder_skips_invalid_specs() {
    let repo = MemoryRepository::builder()
        .worker(WorkerSpec::new("", Resources::cpu_mem(1, 1)))
        .worker(WorkerSpec::new("ok", Resources::cpu_mem(1, 1)))
        .worker(WorkerSpec::new("huge", Resources::cpu_mem(u64::MAX, 1)))
        .build()
        .await;
    let ids: Vec<String> = repo
        .list_workers(None)
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(ids, ["ok"]);
}

#[tokio::test]
async fn clones_share_one_store() {
    let a = MemoryRepository::new();
    let b = a.clone();
    a.register_worker(&WorkerSpec::new("w", Resources::cpu_mem(1, 1)))
        .await
        .unwrap();
    assert!(b.get_worker("w").await.unwrap().is_some());
    assert_eq!(a.backend_name(), "memory");
}

#[tokio::test]
async fn reconcile_repairs_injected_drift() {
    let repo = seeded().await;
    repo.reserve_batch(&one("worker-0", "c"), CommitMode::AllOrNothing)
        .await
        .unwrap();
    let v = repo
        .get_worker("worker-0")
        .await
        .unwrap()
        .unwrap()
        .resource_version;
    assert!(repo.corrupt_free("worker-0", Resources::cpu_mem(1000, 1000)));
    let a = repo.audit("worker-0").await.unwrap();
    assert_eq!((a.drift.cpu_millicores, a.drift.memory_mib), (100, 100));
    let r = repo.reconcile("worker-0").await.unwrap();
    assert_eq!(r, a, "reconcile returns the audit taken before the repair");
    let w = repo.get_worker("worker-0").await.unwrap().unwrap();
    assert_eq!(w.free, Resources::cpu_mem(900, 900));
    assert!(w.resource_version > v, "a repair bumps the version");
    assert!(repo.audit("worker-0").await.unwrap().is_consistent());
    assert!(!repo.corrupt_free("ghost", Resources::ZERO));
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

mod properties {
    use sched_core::WorkerRepository;
    use sched_memory::MemoryRepository;
    use sched_tests::properties::{self, PropConfig};
    use std::sync::Arc;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// A store that already holds unrelated workers: properties must not care.
    fn shared(rt: &tokio::runtime::Runtime) -> Arc<dyn WorkerRepository> {
        let repo = rt.block_on(
            MemoryRepository::builder()
                .cpu_workers(3, sched_core::Resources::cpu_mem(1000, 1000))
                .build(),
        );
        Arc::new(repo)
    }

    #[test]
    fn model_sequences() {
        let rt = rt();
        properties::model_sequences(rt.handle(), shared(&rt), &PropConfig::from_env());
    }

    #[test]
    fn concurrent_callers() {
        let rt = rt();
        properties::concurrent_callers(rt.handle(), shared(&rt), &PropConfig::from_env());
    }

    #[test]
    fn concurrent_schedulers() {
        let rt = rt();
        properties::concurrent_schedulers(rt.handle(), shared(&rt), &PropConfig::from_env());
    }

    /// The lifecycle sequences by the system clock (as Redis and Postgres run them).
    #[test]
    fn lifecycle_sequences() {
        let rt = rt();
        properties::lifecycle_sequences(rt.handle(), shared(&rt), &PropConfig::from_env());
    }

    /// The memory store's manual clock, moved by the property.
    struct Manual(sched_memory::ManualClock);

    impl properties::StoreClock for Manual {
        fn now_ms(&self) -> u64 {
            self.0.now_ms()
        }
        fn advance_ms(&self, ms: u64) {
            self.0.advance(std::time::Duration::from_millis(ms));
        }
    }

    /// The lifecycle sequences on a manual clock: every answer predicted exactly. Cheap (no
    /// sleeps, no I/O), so four times the cases.
    #[test]
    fn lifecycle_sequences_exact() {
        let rt = rt();
        let clock = sched_memory::ManualClock::new(1_000_000);
        let repo: Arc<dyn WorkerRepository> = Arc::new(MemoryRepository::with_clock(
            sched_memory::Clock::Manual(clock.clone()),
        ));
        let cfg = PropConfig::from_env();
        let cfg = cfg.with_cases(cfg.cases * 4);
        properties::lifecycle_sequences_exact(rt.handle(), repo, Arc::new(Manual(clock)), &cfg);
    }

    #[test]
    fn renewals_race_sweeps() {
        let rt = rt();
        properties::renewals_race_sweeps(rt.handle(), shared(&rt), &PropConfig::from_env());
    }

    /// The async entry point, as backends use it, on one shared store; a few cases suffice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_all_async_on_a_shared_store() {
        let repo: Arc<dyn WorkerRepository> = Arc::new(MemoryRepository::new());
        properties::run_all_async(Arc::clone(&repo), PropConfig::from_env().with_cases(4)).await;
        properties::run_lifecycle_async(Arc::clone(&repo), PropConfig::from_env().with_cases(4))
            .await;
        assert!(
            repo.list_workers(None).await.unwrap().is_empty(),
            "properties clean up"
        );
    }
}
