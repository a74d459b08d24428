//! Behaviour of the simulator: every strategy places everything with a clean audit, sched
//! commits far fewer times than it has containers, `--rtt-ms` adds latency, and the CLI parses.
//! Backend runs use REDIS_URL / DATABASE_URL (skipped with a message when unset, outside CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use sched_core::{
    AttemptError, RepoError, Resources, ScheduleError, Unplaceable, WorkerRepository,
};
use sched_sim::backend::{BackendKind, BackendOptions, Env, WorkerSetup};
use sched_sim::cli::{Cli, Command};
use sched_sim::metered::Metered;
use sched_sim::report::Output;
use sched_sim::scenario::burst::{self, StrategyReport};
use sched_sim::scenario::{contention, requests, scale, sustained, RunConfig};
use sched_sim::strategy::StrategyOptions;
use sched_sim::strategy::{self, CallMode, PlaceError, PlaceErrorKind, StrategyKind};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn cfg(repeat: u32) -> RunConfig {
    RunConfig {
        repeat,
        ..RunConfig::default()
    }
}

fn assert_clean(r: &StrategyReport) {
    assert_eq!(r.placed, r.requested, "{}: {:?}", r.strategy, r.failures);
    assert_eq!(r.min_placed_per_burst, r.containers as u64);
    assert!(r.audit.is_clean(), "{}: {:?}", r.strategy, r.audit);
    assert_eq!(r.audit.double_bookings, 0);
    assert_eq!(
        r.audit.workers_audited,
        (r.workers as u64) * u64::from(r.bursts + 1)
    );
    assert_eq!(
        r.audit.ledger_entries, r.placed,
        "every placement is in a ledger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_burst_places_all_with_few_commits() {
    let r = burst::run_strategy(&cfg(5), StrategyKind::Sched)
        .await
        .unwrap();
    assert_clean(&r);
    assert_eq!((r.containers, r.workers), (100, 20));
    assert!(
        r.per_burst.reserve_calls * 4.0 < r.containers as f64,
        "group commit: {} reserve_batch calls per burst",
        r.per_burst.reserve_calls
    );
    assert_eq!(r.per_burst.lock_calls, 0.0, "sched takes no locks");
    assert_eq!(r.placements_per_worker.iter().sum::<u64>(), 100);
    assert!(
        r.max_over_mean >= 1.0 && r.max_over_mean < 3.2,
        "affinity spreads"
    );
    assert_eq!(
        Output::Burst {
            report: Box::new(r)
        }
        .problems(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_places_all_without_double_booking() {
    let r = burst::run_strategy(&cfg(2), StrategyKind::Naive)
        .await
        .unwrap();
    assert_clean(&r);
    // One write per container, under a lock taken for it.
    assert_eq!(r.per_burst.reserve_calls, 100.0);
    assert!(r.per_burst.unlock_calls >= 100.0);
    // First fit without affinity piles onto the first workers: 16 fit on each.
    assert_eq!(&r.placements_per_worker[..6], &[16; 6]);
    assert_eq!(r.placements_per_worker[6], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_places_all_with_one_lock_per_worker() {
    let r = burst::run_strategy(&cfg(3), StrategyKind::Seed)
        .await
        .unwrap();
    assert_clean(&r);
    assert!(r.per_burst.lock_calls <= 20.0 + r.lock_failures_per_placement * 100.0);
    assert!(r.per_burst.reserve_calls <= 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_reports_ratios_and_affinity_variants() {
    let mut c = cfg(2);
    c.backend.rtt = Duration::from_millis(2);
    let out = burst::compare(&c).await.unwrap();
    assert!(out.all_clean());
    let ns = out.naive_over_sched.unwrap();
    assert!(ns.round_trips > 1.0 && ns.atomic_sections > 1.0, "{ns:?}");
    assert!(out.seed_over_sched.unwrap().round_trips > 1.0);
    assert_eq!(out.affinity.len(), 4);
    let off = out.affinity[0].max_over_mean;
    assert!(
        out.affinity[1..].iter().all(|a| a.max_over_mean < off),
        "{:?}",
        out.affinity
    );
}

#[tokio::test]
async fn rtt_adds_latency_per_call() {
    let repo = sched_memory::MemoryRepository::builder()
        .cpu_workers(1, Resources::cpu_mem(1000, 1000))
        .build()
        .await;
    let rtt = Duration::from_millis(20);
    let m = Metered::new(repo, rtt);
    let t = Instant::now();
    m.get_worker("worker-0").await.unwrap();
    m.list_workers(None).await.unwrap();
    assert!(t.elapsed() >= rtt * 2, "{:?}", t.elapsed());
    let calls = m.counters().snapshot();
    assert_eq!((calls.round_trips, calls.reads), (2, 2));

    // And through a whole environment: the floor is at least the injected round trip.
    let env = Env::open(
        &BackendOptions {
            rtt,
            ..BackendOptions::default()
        },
        &WorkerSetup {
            count: 2,
            capacity: Resources::cpu_mem(1000, 1000),
        },
    )
    .await
    .unwrap();
    assert!(env.floor(3).await.unwrap().min_ms >= 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_releases_everything() {
    let s = sustained::SustainedConfig {
        duration: Duration::from_millis(300),
        schedulers: 2,
        burst_size: 10,
        lifetime: Duration::from_millis(20),
        load: 0.8,
    };
    // A burst as 10 calls from 10 tasks, and as one schedule_batch call.
    for calls in [CallMode::Each, CallMode::Batch] {
        let mut c = cfg(1);
        c.strategy.calls = calls;
        let r = sustained::run(&c, &s, StrategyKind::Sched).await.unwrap();
        assert!(r.placed > 0, "{calls:?}");
        assert_eq!(r.calls, calls);
        assert_eq!(r.duplicate_placements, 0);
        assert!(r.audit.is_clean());
        assert_eq!(r.audit.ledger_entries, 0, "every container was released");
        // Within capacity: everything placeable was placed, nothing rejected, OK.
        assert_eq!(r.capacity_slots, 20 * 16);
        assert!(r.demand_slots <= r.capacity_slots);
        assert_eq!(
            (r.rejected_at_capacity, r.rejected_below_capacity, r.errors),
            (0, 0, 0),
            "{calls:?}: {:?}",
            r.failures
        );
        assert!(r.ok && r.is_ok());
        assert_eq!(Output::Sustained { reports: vec![r] }.problems(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_over_capacity_rejects_only_at_capacity() {
    // Three times more demand than capacity, lifetimes most of the run: the workers fill up
    // within the first bursts and stay full, and the rejections come while they are full,
    // which is OK. (With lifetimes of a third of the run, a loaded machine could release
    // before the next burst came, and see no rejection at all.)
    let mut c = cfg(1);
    c.workers = 2;
    let s = sustained::SustainedConfig {
        duration: Duration::from_millis(400),
        schedulers: 2,
        burst_size: 8,
        lifetime: Duration::from_millis(300),
        load: 3.0,
    };
    let r = sustained::run(&c, &s, StrategyKind::Sched).await.unwrap();
    assert_eq!(r.capacity_slots, 32);
    assert!(r.demand_slots > r.capacity_slots);
    assert!(r.rejected_at_capacity > 0, "{r:?}");
    assert_eq!(
        (r.rejected_below_capacity, r.errors),
        (0, 0),
        "{:?}",
        r.failures
    );
    assert!(r.is_ok(), "{r:?}");
    // The same run with one error, or one rejection while capacity remained, is not OK.
    let mut bad = r.clone();
    bad.errors = 1;
    assert!(!bad.is_ok());
    assert_eq!(Output::Sustained { reports: vec![bad] }.problems(), 1);
    let mut early = r;
    early.rejected_below_capacity = 1;
    assert!(!early.is_ok());
    // The run tells the two apart by the typed kind, not the message.
    let full = PlaceError::from(ScheduleError::NoCapacity {
        container_id: "c1".into(),
        cause: Unplaceable::NoCapacity,
    });
    assert_eq!(full.kind(), PlaceErrorKind::Capacity);
    let down = PlaceError::from(ScheduleError::RetriesExhausted {
        container_id: "c1".into(),
        attempts: 5,
        last: AttemptError::ReadWorkers(Arc::new(RepoError::Unavailable(
            "connection refused".into(),
        ))),
    });
    assert_eq!(down.kind(), PlaceErrorKind::Other);
}

/// Every strategy marks the containers it had no room for as capacity failures, at the source:
/// 2 workers × 4 slots, a burst of 12 places 8 and fails 4, all `Capacity`, with the same
/// message text as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_capacity_bursts_fail_as_capacity_in_every_strategy() {
    for kind in StrategyKind::ALL {
        let env = Env::open(
            &BackendOptions::default(),
            &WorkerSetup {
                count: 2,
                capacity: Resources::cpu_mem(1000, 1024),
            },
        )
        .await
        .unwrap();
        let strat = strategy::build(
            kind,
            env.repo.clone(),
            env.locks.clone(),
            StrategyOptions::default(),
        )
        .unwrap();
        let reqs = requests(&format!("cap-{kind}"), 0, 12, Resources::cpu_mem(250, 256));
        let out = strat.place_burst(reqs, 12).await;
        let failed: Vec<PlaceError> = out.into_iter().filter_map(Result::err).collect();
        assert_eq!(failed.len(), 4, "{kind}: {failed:?}");
        for e in &failed {
            assert_eq!(e.kind(), PlaceErrorKind::Capacity, "{kind}: {e}");
            let text = e.to_string();
            assert!(
                text.contains("no eligible worker has room") || text.contains("insufficient"),
                "{kind}: {text}"
            );
        }
        env.cleanup().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contention_tasks_and_scale_are_clean() {
    let r = contention::run_tasks(&cfg(3), StrategyKind::Sched, 3)
        .await
        .unwrap();
    assert_eq!(r.placed, r.requested);
    assert!(r.audit.is_clean());
    let pts = scale::run(&cfg(1), StrategyKind::Sched, &scale::grid(100, 1_000))
        .await
        .unwrap();
    assert_eq!(pts.len(), 2);
    for p in &pts {
        assert_clean(&p.report);
    }
}

#[test]
fn cli_defaults_and_flags() {
    let cli = Cli::try_parse_from(["sched-sim"]).unwrap();
    assert!(cli.command.is_none());
    let c = cli.common.run_config(20);
    assert_eq!((c.containers, c.workers, c.repeat), (100, 20, 20));
    assert_eq!(c.strategy.calls, CallMode::Each);
    let cli = Cli::try_parse_from(["sched-sim", "--calls", "batch"]).unwrap();
    assert_eq!(cli.common.run_config(20).strategy.calls, CallMode::Batch);
    assert!(Cli::try_parse_from(["sched-sim", "--calls", "some"]).is_err());
    let cli = Cli::try_parse_from([
        "sched-sim",
        "--compare",
        "--rtt-ms",
        "5",
        "--backend",
        "redis-fred",
        "--redis-url",
        "redis://x",
        "scale",
        "--max-workers",
        "100",
    ])
    .unwrap();
    assert!(cli.common.compare);
    assert_eq!(cli.common.backend, BackendKind::RedisFred);
    assert_eq!(cli.common.backend_options().rtt, Duration::from_millis(5));
    assert!(matches!(cli.command, Some(Command::Scale(ref s)) if s.max_workers == 100));
    assert_eq!(cli.common.strategies().len(), 3);
    let cli = Cli::try_parse_from([
        "sched-sim",
        "--backend",
        "redis-fred-cluster",
        "--redis-cluster-urls",
        "redis://a:1,redis://b:2",
        "sustained",
        "--schedulers",
        "1,2,4,8",
    ])
    .unwrap();
    assert!(cli.common.backend.is_cluster() && cli.common.backend.is_fred());
    assert_eq!(cli.common.backend_options().redis_cluster_urls.len(), 2);
    assert!(matches!(cli.command, Some(Command::Sustained(ref s)) if s.schedulers == [1, 2, 4, 8]));
}

async fn backend_burst(kind: BackendKind, redis: Option<String>, pg: Option<String>) {
    let mut c = cfg(2);
    c.backend = BackendOptions {
        kind,
        redis_url: redis,
        database_url: pg,
        rtt: Duration::ZERO,
        ..BackendOptions::default()
    };
    for k in StrategyKind::ALL {
        let r = burst::run_strategy(&c, k).await.unwrap();
        assert_clean(&r);
        assert!(r.per_burst.backend_round_trips.unwrap_or(0.0) > 0.0);
        assert_yardsticks(&r);
    }
}

/// Single-node Redis measures the raw commit (the floor) and the peer beside the burst;
/// the other backends say why not and fall back to the round trip.
fn assert_yardsticks(r: &StrategyReport) {
    assert!(r.round_trip.count > 0 && r.round_trip.p50_ms > 0.0);
    match r.backend.as_str() {
        "redis" | "redis-fred" => {
            let raw = r.raw_commit.expect("raw commit measured on redis");
            assert!(raw.count >= 3 && raw.p50_ms > 0.0);
            assert_eq!(r.floor_kind, "raw_commit");
            assert_eq!(r.floor, raw);
            let peer = r.peer.expect("peer measured on redis");
            assert!(peer.count >= 3 && peer.p50_ms > 0.0);
            let x = r.burst_p50_over_peer.unwrap();
            assert!((x - r.burst_time.p50_ms / peer.p50_ms).abs() < 1e-9);
            assert!(r.notes.is_empty(), "{:?}", r.notes);
        }
        _ => {
            assert!(r.raw_commit.is_none() && r.peer.is_none());
            assert_eq!(r.floor_kind, "round_trip");
            assert!(!r.notes.is_empty());
        }
    }
    assert!((r.burst_p50_over_floor - r.burst_time.p50_ms / r.floor.p50_ms).abs() < 1e-9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_burst_notes_its_floor() {
    let r = burst::run_strategy(&cfg(2), StrategyKind::Sched)
        .await
        .unwrap();
    assert_clean(&r);
    assert_yardsticks(&r);
    assert_eq!(r.calls, CallMode::Each);
    let callers = r.callers.expect("callers measured with --calls each");
    assert!(callers.count >= 3 && callers.p50_ms > 0.0);
    let x = r.burst_p50_over_floor_and_callers.unwrap();
    assert!((x - r.burst_time.p50_ms / (r.floor.p50_ms + callers.p50_ms)).abs() < 1e-9);
    let text = Output::Burst {
        report: Box::new(r),
    }
    .to_text();
    assert!(
        text.contains("round trip") && text.contains("note") && text.contains("callers"),
        "{text}"
    );
    assert!(text.contains("100 concurrent callers"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_calls_place_each_burst_in_one_call() {
    let mut c = cfg(3);
    c.strategy.calls = CallMode::Batch;
    let r = burst::run_strategy(&c, StrategyKind::Sched).await.unwrap();
    assert_clean(&r);
    assert_eq!(r.calls, CallMode::Batch);
    // One schedule_batch of 100 onto 20 with room everywhere: one reserve_batch call.
    assert_eq!(r.per_burst.reserve_calls, 1.0);
    assert_eq!(r.per_burst.atomic_sections, 20.0);
    // No caller tasks to measure.
    assert!(r.callers.is_none() && r.burst_p50_over_floor_and_callers.is_none());
    let text = Output::Burst {
        report: Box::new(r),
    }
    .to_text();
    assert!(text.contains("one schedule_batch call"), "{text}");
    assert!(!text.contains("callers   "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_bursts_and_sustained_are_clean() {
    let Some(urls) = sched_tests::env::require_url(
        "REDIS_CLUSTER_URLS",
        "redis_cluster_bursts_and_sustained_are_clean",
    ) else {
        return;
    };
    let urls: Vec<String> = urls.split(',').map(str::to_owned).collect();
    for kind in [BackendKind::RedisCluster, BackendKind::RedisFredCluster] {
        let mut c = cfg(2);
        c.backend = BackendOptions {
            kind,
            redis_cluster_urls: urls.clone(),
            ..BackendOptions::default()
        };
        let r = burst::run_strategy(&c, StrategyKind::Sched).await.unwrap();
        assert_clean(&r);
        assert!(r.per_burst.backend_round_trips.unwrap_or(0.0) > 0.0);
        assert_yardsticks(&r);
        let s = sustained::SustainedConfig {
            duration: Duration::from_millis(300),
            schedulers: 2,
            ..sustained::SustainedConfig::default()
        };
        let r = sustained::run(&c, &s, StrategyKind::Sched).await.unwrap();
        assert!(r.is_ok(), "{r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_bursts_are_clean() {
    let Some(url) = sched_tests::env::require_url("REDIS_URL", "redis_bursts_are_clean") else {
        return;
    };
    backend_burst(BackendKind::Redis, Some(url.clone()), None).await;
    backend_burst(BackendKind::RedisFred, Some(url), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bursts_are_clean() {
    let Some(url) = sched_tests::env::require_url("DATABASE_URL", "postgres_bursts_are_clean")
    else {
        return;
    };
    backend_burst(BackendKind::Postgres, None, Some(url)).await;
}

#[test]
fn metered_repo_is_object_safe() {
    let repo: Arc<dyn WorkerRepository> = Arc::new(sched_memory::MemoryRepository::new());
    let m: Arc<dyn WorkerRepository> = Arc::new(Metered::new(repo, Duration::ZERO));
    assert_eq!(m.backend_name(), "memory");
}
