//! Heartbeats, staleness and its policy, and status changes (drain, disable, enable).

use super::fixture::Fixture;
use super::leases::{renew, sweep};
use super::support::{
    assert_consistent, assert_invalid, committed, cr, get, ledger, rejected, res, reserve1, rr,
};
use sched_core::{
    CapacityReservation, CommitMode, ExpiryReason, Rejection, RenewOutcome, RepoError, StalePolicy,
    WorkerRepository, WorkerStatus,
};
use std::time::Duration;

/// This topic's checks, in run order (see `__for_each_check!` in `mod.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks_liveness {
    ($($list:tt)*) => {
        $crate::__conformance_chain! { $($list)*
            check_registration_counts_as_a_heartbeat
            check_stale_worker_is_refused_and_kept
            check_stale_worker_is_released_by_policy
            check_status_changes_keep_capacity_and_bump_the_version
        }
    };
}

/// A stale-policy worker's heartbeat timeout, short enough for a check to wait out.
const TIMEOUT: Duration = Duration::from_millis(1000);
/// Comfortably past [`TIMEOUT`], even on a loaded machine.
const PAST_TIMEOUT: Duration = Duration::from_millis(2500);

/// Reserves `c` on its stale-policy worker while it is fresh: a heartbeat right before the
/// reserve, again after a `HeartbeatExpired` refusal (a loaded machine can take longer than
/// [`TIMEOUT`] between two calls), at most 5 times.
async fn reserve_while_fresh(repo: &dyn WorkerRepository, c: CapacityReservation) {
    for _ in 0..5 {
        heartbeat(repo, &c.worker_id).await;
        match reserve1(repo, c.clone(), CommitMode::AllOrNothing).await {
            Err(Rejection::HeartbeatExpired { .. }) => continue,
            other => {
                committed(other, "reserve while fresh");
                return;
            }
        }
    }
    panic!(
        "reserve while fresh: refused HeartbeatExpired 5 times in a row, right after heartbeats"
    );
}

async fn heartbeat(repo: &dyn WorkerRepository, w: &str) -> sched_core::Heartbeat {
    repo.heartbeat(w)
        .await
        .unwrap_or_else(|e| panic!("heartbeat({w:?}) failed: {e}"))
}

/// Registration stores the timeout and policy and counts as a heartbeat; a heartbeat moves the
/// last-seen time forward without a version bump; a worker without a timeout is never stale.
pub async fn check_registration_counts_as_a_heartbeat(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "live-register");
    let ns = fx.ns();
    let (w, plain) = (ns.worker("a"), ns.worker("plain"));
    let spec = fx
        .spec("a", res(1000, 1000, 0))
        .with_heartbeat_timeout(Duration::from_secs(60))
        .with_stale_policy(StalePolicy::Release);
    let reg = fx.register(&spec).await;
    assert_eq!(reg.heartbeat_timeout_ms, Some(60_000));
    assert_eq!(reg.on_stale, StalePolicy::Release);
    let got = get(repo, &w).await;
    assert_eq!(
        (got.heartbeat_timeout_ms, got.on_stale, got.stale),
        (Some(60_000), StalePolicy::Release, false),
        "get_worker reports the timeout, the policy and staleness"
    );
    let first = got
        .last_heartbeat_ms
        .unwrap_or_else(|| panic!("registration must record a heartbeat"));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let hb = heartbeat(repo, &w).await;
    assert!(!hb.was_stale, "a fresh worker was not stale");
    assert!(
        hb.at_ms >= first,
        "heartbeats move forward ({first} -> {})",
        hb.at_ms
    );
    let after = get(repo, &w).await;
    assert_eq!(
        after.last_heartbeat_ms,
        Some(hb.at_ms),
        "get_worker shows the heartbeat"
    );
    assert_eq!(
        after.resource_version, got.resource_version,
        "a heartbeat changes no version (it would conflict every scheduler's commit)"
    );
    fx.worker("plain", res(10, 10, 0)).await;
    let p = get(repo, &plain).await;
    assert!(!p.stale && p.heartbeat_timeout_ms.is_none() && p.is_available());
    assert!(
        !heartbeat(repo, &plain).await.was_stale,
        "no timeout: never stale"
    );
    match repo.heartbeat(&ns.worker("nobody")).await {
        Err(RepoError::UnknownWorker(_)) => {}
        other => panic!("heartbeat of an unknown worker: expected UnknownWorker, got {other:?}"),
    }
    let mut bad = fx.spec("bad", res(1, 1, 0));
    bad.heartbeat_timeout_ms = Some(0);
    assert_invalid(
        repo.register_worker(&bad).await,
        "a heartbeat timeout of 0 ms",
    );
    assert!(
        matches!(repo.get_worker(&bad.id).await, Ok(None)),
        "a refused registration registers nothing"
    );
    fx.finish().await;
}

/// Past its timeout a worker reads as stale (not available), `reserve_batch` refuses it with
/// `HeartbeatExpired` charging nothing, and with `StalePolicy::Keep` the sweep keeps its
/// reservations. A heartbeat brings it back.
pub async fn check_stale_worker_is_refused_and_kept(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "live-keep");
    let ns = fx.ns();
    let w = ns.worker("a");
    let spec = fx
        .spec("a", res(1000, 1000, 0))
        .with_heartbeat_timeout(TIMEOUT);
    fx.register(&spec).await;
    let held = ns.container("held");
    reserve_while_fresh(repo, cr(&w, vec![rr(&held, res(100, 100, 0))])).await;
    tokio::time::sleep(PAST_TIMEOUT).await;
    let stale = get(repo, &w).await;
    assert!(
        stale.stale && !stale.is_available(),
        "past its timeout the worker is stale: {stale:?}"
    );
    let listed = repo
        .list_workers(Some(&ns.pool("p")))
        .await
        .unwrap_or_else(|e| panic!("list_workers failed: {e}"));
    assert!(
        listed.iter().any(|x| x.id == w && x.stale),
        "list_workers reports staleness too"
    );
    let rej = rejected(
        reserve1(
            repo,
            cr(&w, vec![rr(&ns.container("new"), res(1, 1, 0))]),
            CommitMode::Partial,
        )
        .await,
        "reserve on a stale worker",
    );
    assert!(
        matches!(
            rej,
            Rejection::HeartbeatExpired {
                timeout_ms: 1000,
                last_heartbeat_ms: Some(_)
            }
        ),
        "a stale worker is refused with HeartbeatExpired naming its timeout: {rej:?}"
    );
    assert_eq!(
        get(repo, &w).await.free,
        stale.free,
        "a refused reserve charges nothing"
    );
    let s = sweep(repo, &w).await;
    assert!(
        s.expired.is_empty(),
        "StalePolicy::Keep keeps a stale worker's reservations: {s:?}"
    );
    let hb = heartbeat(repo, &w).await;
    assert!(hb.was_stale, "the heartbeat reports the worker was stale");
    // A heartbeat makes the worker fresh again and a reserve lands. On a loaded machine the
    // 1 s timeout can pass again between the calls, so beat again (three tries at most); a
    // heartbeat that did not refresh the worker fails every try.
    let mut landed = None;
    for _ in 0..3 {
        if !get(repo, &w).await.stale {
            let c = cr(&w, vec![rr(&ns.container("new"), res(1, 1, 0))]);
            match reserve1(repo, c, CommitMode::Partial).await {
                Ok(c) => {
                    landed = Some(c);
                    break;
                }
                Err(Rejection::HeartbeatExpired { .. }) => {}
                Err(r) => panic!("reserve after the heartbeat: {r:?}"),
            }
        }
        heartbeat(repo, &w).await;
    }
    assert!(
        landed.is_some_and(|c| c.accepted == 1),
        "a heartbeat makes the worker fresh again and a reserve lands"
    );
    assert_eq!(ledger(repo, &w).await.len(), 2);
    assert_consistent(repo, &w, "after staleness").await;
    fx.finish().await;
}

/// With `StalePolicy::Release`, a stale worker's reservations cannot be renewed and the sweep
/// releases all of them, leased or not, reported as `WorkerStale`.
pub async fn check_stale_worker_is_released_by_policy(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "live-release");
    let ns = fx.ns();
    let w = ns.worker("a");
    let total = res(1000, 1000, 0);
    let spec = fx
        .spec("a", total)
        .with_heartbeat_timeout(TIMEOUT)
        .with_stale_policy(StalePolicy::Release);
    fx.register(&spec).await;
    let (a, b) = (ns.container("a"), ns.container("b"));
    let part = cr(
        &w,
        vec![
            rr(&a, res(100, 100, 0)).with_lease(Duration::from_secs(60)),
            rr(&b, res(200, 200, 0)),
        ],
    );
    reserve_while_fresh(repo, part).await;
    tokio::time::sleep(PAST_TIMEOUT).await;
    let r = renew(repo, &w, std::slice::from_ref(&a), 60_000).await;
    assert_eq!(
        r[0].outcome,
        RenewOutcome::Expired {
            reason: ExpiryReason::WorkerStale
        },
        "a stale Release worker's leases cannot be renewed"
    );
    let s = sweep(repo, &w).await;
    let mut got: Vec<(&str, ExpiryReason)> = s
        .expired
        .iter()
        .map(|e| (e.record.container_id.as_str(), e.reason))
        .collect();
    got.sort();
    let mut want = vec![
        (a.as_str(), ExpiryReason::WorkerStale),
        (b.as_str(), ExpiryReason::WorkerStale),
    ];
    want.sort();
    assert_eq!(
        got, want,
        "the sweep releases every reservation of a stale Release worker"
    );
    assert_eq!(s.free, total);
    assert_consistent(repo, &w, "after the stale sweep").await;
    fx.finish().await;
}

/// `set_worker_status` keeps capacity and ledger, always bumps the version (an old
/// `expected_version` then conflicts), and the status gates new reservations.
pub async fn check_status_changes_keep_capacity_and_bump_the_version(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "live-status");
    let ns = fx.ns();
    let w = ns.worker("a");
    fx.worker("a", res(1000, 1000, 0)).await;
    let held = ns.container("held");
    committed(
        reserve1(
            repo,
            cr(&w, vec![rr(&held, res(100, 100, 0))]),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve",
    );
    let before = get(repo, &w).await;
    let ledger_before = ledger(repo, &w).await;
    let mut version = before.resource_version;
    for status in [
        WorkerStatus::Draining,
        WorkerStatus::Draining,
        WorkerStatus::Disabled,
        WorkerStatus::Available,
    ] {
        let after = repo
            .set_worker_status(&w, status)
            .await
            .unwrap_or_else(|e| panic!("set_worker_status({status}) failed: {e}"));
        assert_eq!(after.status, status);
        assert_eq!(
            after.resource_version,
            version + 1,
            "set_worker_status bumps the version once, even to the same status"
        );
        version = after.resource_version;
        let got = get(repo, &w).await;
        assert_eq!(
            (got.status, got.free, got.total, got.resource_version),
            (status, before.free, before.total, version),
            "set_worker_status keeps capacity and reports the stored worker"
        );
        assert_eq!(
            ledger(repo, &w).await,
            ledger_before,
            "set_worker_status keeps the ledger"
        );
        if status != WorkerStatus::Available {
            let rej = rejected(
                reserve1(
                    repo,
                    cr(&w, vec![rr(&ns.container("x"), res(1, 1, 0))]),
                    CommitMode::Partial,
                )
                .await,
                "reserve on a non-available worker",
            );
            assert_eq!(rej, Rejection::WorkerUnavailable { status });
        }
    }
    let stale = rejected(
        reserve1(
            repo,
            cr(&w, vec![rr(&ns.container("y"), res(1, 1, 0))]).expecting(before.resource_version),
            CommitMode::Partial,
        )
        .await,
        "a reserve expecting the version before the status changes",
    );
    assert!(
        matches!(stale, Rejection::VersionConflict { .. }),
        "{stale:?}"
    );
    committed(
        reserve1(
            repo,
            cr(&w, vec![rr(&ns.container("y"), res(1, 1, 0))]).expecting(version),
            CommitMode::Partial,
        )
        .await,
        "enabled again",
    );
    match repo
        .set_worker_status(&ns.worker("nobody"), WorkerStatus::Draining)
        .await
    {
        Err(RepoError::UnknownWorker(_)) => {}
        other => {
            panic!("set_worker_status of an unknown worker: expected UnknownWorker, got {other:?}")
        }
    }
    assert_consistent(repo, &w, "after status changes").await;
    fx.finish().await;
}
