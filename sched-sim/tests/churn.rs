//! The `churn` scenario (issue 11): leased containers with random lifetimes, a share dying
//! without release, agents renewing in bulk, drains, one agent crashing and coming back, a
//! periodic sweep. After the final sweep nothing dead may be held (leaked capacity 0), every
//! worker's drift is 0, every live container is held where it was placed. Memory always; Redis
//! and Postgres through REDIS_URL / DATABASE_URL (skipped with a message when unset, outside CI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use clap::Parser;
use sched_core::StalePolicy;
use sched_sim::backend::{BackendKind, BackendOptions};
use sched_sim::cli::{Cli, Command};
use sched_sim::report::Output;
use sched_sim::scenario::churn::{self, ChurnConfig, ChurnReport};
use sched_sim::scenario::RunConfig;
use sched_sim::SimError;
use std::time::Duration;

/// A short run: 1.5 s of placing onto 10 workers, the crash at 0.4 s for 0.7 s (well past the
/// heartbeat timeout), drains every 300 ms.
fn short(on_stale: StalePolicy) -> ChurnConfig {
    ChurnConfig {
        duration: Duration::from_millis(1500),
        on_stale,
        drain_period: Duration::from_millis(300),
        drain_for: Duration::from_millis(200),
        crash_at: Duration::from_millis(400),
        crash_for: Duration::from_millis(700),
        ..ChurnConfig::default()
    }
}

fn run_config(backend: BackendOptions) -> RunConfig {
    RunConfig {
        backend,
        workers: 10,
        repeat: 1,
        ..RunConfig::default()
    }
}

/// What every churn run must show: it churned (placements, releases, deaths, renewals,
/// expiries of dead containers, a drain, the crash), and nothing leaked or drifted.
fn assert_churned_clean(r: &ChurnReport) {
    let text = r.to_text();
    assert_eq!(r.leaked.containers, 0, "leaked capacity\n{text}");
    assert_eq!(r.drift_workers(), 0, "drift\n{text}");
    assert!(r.audit.is_clean(), "{:?}\n{text}", r.audit);
    assert_eq!(r.ends.live_lost, 0, "live containers lost\n{text}");
    assert!(r.after_release.is_clean());
    assert_eq!(r.after_release.ledger_entries, 0, "{text}");
    assert_eq!(r.problems(), 0, "{text}");
    assert_eq!(
        Output::Churn {
            report: Box::new(r.clone())
        }
        .problems(),
        0
    );

    assert!(r.placements.placed > 50, "{text}");
    assert!(r.ends.released > 0 && r.ends.died > 0, "{text}");
    assert!(r.renewals.calls > 0 && r.renewals.renewed > 0, "{text}");
    assert_eq!(
        (r.renewals.expired, r.renewals.not_held, r.renewals.no_lease),
        (0, 0, 0),
        "a live container's renewal failed\n{text}"
    );
    assert!(r.heartbeats > 0 && r.drains > 0, "{text}");
    // Every expiry was of a dead container, and every container that died was swept.
    assert_eq!(r.expiries.of_live + r.expiries.of_unknown, 0, "{text}");
    assert_eq!(r.expiries.of_dead, r.expiries.total, "{text}");
    // (An ambiguous placement is dead if it was committed, absent otherwise.)
    let dead = r.ends.died + r.ends.lost_in_crash + r.ends.placed_on_crashed;
    assert!(
        (dead..=dead + r.placements.ambiguous).contains(&r.expiries.total),
        "every dead container was expired exactly once\n{text}"
    );
    assert!(r.crash.worker.is_some(), "{text}");
    assert_eq!(r.crash.came_back_stale, Some(true), "{text}");
    // Conservation: every placement ended in exactly one way.
    assert_eq!(
        r.placements.placed,
        r.ends.released
            + r.ends.died
            + r.ends.lost_in_crash
            + r.ends.placed_on_crashed
            + r.ends.live_at_end
            + r.ends.live_lost,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_on_memory_leaks_nothing_with_stale_release() {
    let r = churn::run(
        &run_config(BackendOptions::default()),
        &short(StalePolicy::Release),
    )
    .await
    .unwrap();
    assert_churned_clean(&r);
    assert_eq!(r.settings.on_stale, StalePolicy::Release);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_on_memory_leaks_nothing_with_stale_keep() {
    let r = churn::run(
        &run_config(BackendOptions::default()),
        &short(StalePolicy::Keep),
    )
    .await
    .unwrap();
    assert_churned_clean(&r);
    assert_eq!(
        r.expiries.worker_stale,
        0,
        "keep: only leases expire\n{}",
        r.to_text()
    );
}

#[test]
fn churn_cli_flags_and_bad_settings() {
    let cli = Cli::try_parse_from([
        "sched-sim",
        "churn",
        "--duration",
        "2",
        "--lease-ms",
        "300",
        "--die-share",
        "0.5",
        "--on-stale",
        "keep",
    ])
    .unwrap();
    let Some(Command::Churn(a)) = cli.command else {
        panic!("not churn");
    };
    let c = a.config();
    assert_eq!((c.lease_ms, c.die_share), (300, 0.5));
    assert_eq!(c.on_stale, StalePolicy::Keep);
    assert_eq!(c.crash_at, Duration::from_millis(600), "30 % of --duration");
    assert!(c.validate().is_ok());
    let bad = ChurnConfig {
        die_share: 1.5,
        ..ChurnConfig::default()
    };
    assert!(matches!(bad.validate(), Err(SimError::Config(_))));
    let bad = ChurnConfig {
        agent_period: Duration::from_millis(600),
        ..ChurnConfig::default()
    };
    assert!(bad.validate().is_err(), "agents slower than the lease");
}

async fn backend_churn(kind: BackendKind, redis_url: Option<String>, database_url: Option<String>) {
    let opts = BackendOptions {
        kind,
        redis_url,
        database_url,
        rtt: Duration::ZERO,
        ..BackendOptions::default()
    };
    match churn::run(&run_config(opts), &short(StalePolicy::Release)).await {
        Ok(r) => {
            assert_eq!(r.backend, kind.as_str());
            assert_churned_clean(&r);
        }
        // Until the backend implements the lifecycle calls (issue 11, landing per backend).
        Err(SimError::Repo(sched_core::RepoError::Unsupported { operation })) => {
            eprintln!(
                "skipping churn on {}: {operation} unsupported",
                kind.as_str()
            );
        }
        Err(e) => panic!("churn on {}: {e}", kind.as_str()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_on_redis_leaks_nothing() {
    let Some(url) = sched_tests::env::require_url("REDIS_URL", "churn_on_redis_leaks_nothing")
    else {
        return;
    };
    backend_churn(BackendKind::Redis, Some(url.clone()), None).await;
    backend_churn(BackendKind::RedisFred, Some(url), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_on_postgres_leaks_nothing() {
    let Some(url) =
        sched_tests::env::require_url("DATABASE_URL", "churn_on_postgres_leaks_nothing")
    else {
        return;
    };
    backend_churn(BackendKind::Postgres, None, Some(url)).await;
}
