//! Leases: deadlines by the store's clock, renewal, the expiry sweep, and a renewal racing the
//! sweep (it wins fully or loses fully).
//!
//! Backends' clocks cannot be set from here, so these checks use deadlines that are either far
//! away (60 s: never due during a check) or already past (a few ms, then a sleep of 50+ ms); the
//! race check compares the two calls' answers with each other, not with a client clock.

use super::fixture::Fixture;
use super::support::{
    assert_consistent, assert_invalid, committed, cr, find, get, ledger, release, res, reserve1,
    rr, snapshot,
};
use sched_core::{
    CommitMode, ExpiryReason, LeaseRenewal, LeaseSweep, Rejection, RenewOutcome, RepoError,
    ResourceReservation, Resources, WorkerRepository,
};
use std::time::Duration;

/// This topic's checks, in run order (see `__for_each_check!` in `mod.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks_leases {
    ($($list:tt)*) => {
        $crate::__conformance_chain! { $($list)*
            check_lease_deadlines_are_stored
            check_renew_outcomes
            check_sweep_takes_only_due_leases
            check_renewal_racing_the_sweep_is_all_or_nothing
            check_lease_bad_input_changes_nothing
        }
    };
}

const FAR: Duration = Duration::from_secs(60);
const ONE: Resources = Resources::new(100, 64, 0);

fn leased(id: &str, lease: Duration) -> ResourceReservation {
    rr(id, ONE).with_lease(lease)
}

pub(super) async fn renew(
    repo: &dyn WorkerRepository,
    worker: &str,
    ids: &[String],
    lease_ms: u64,
) -> Vec<LeaseRenewal> {
    let out = match repo.renew_leases(worker, ids, lease_ms).await {
        Ok(o) => o,
        Err(e) => panic!("renew_leases({worker:?}, {ids:?}) failed: {e}"),
    };
    let got: Vec<&String> = out.iter().map(|r| &r.container_id).collect();
    assert_eq!(
        got,
        ids.iter().collect::<Vec<_>>(),
        "renew_leases must answer once per id, in input order"
    );
    out
}

pub(super) async fn sweep(repo: &dyn WorkerRepository, worker: &str) -> LeaseSweep {
    match repo.expire_leases(worker).await {
        Ok(s) => {
            assert_eq!(s.worker_id, worker, "LeaseSweep names its worker");
            s
        }
        Err(e) => panic!("expire_leases({worker:?}) failed: {e}"),
    }
}

/// A leased reservation carries its deadline (commit time + lease by the store's clock) in every
/// read; an unleased one has none. Two leases committed in one part share one `now`, so their
/// deadlines differ by exactly the difference of their leases.
pub async fn check_lease_deadlines_are_stored(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "lease-stored");
    let ns = fx.ns();
    let w = ns.worker("a");
    fx.worker("a", res(1000, 1000, 0)).await;
    let (a, b, c) = (ns.container("a"), ns.container("b"), ns.container("c"));
    committed(
        reserve1(
            repo,
            cr(&w, vec![leased(&a, FAR), leased(&b, FAR * 2), rr(&c, ONE)]),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve leased and unleased",
    );
    let l = ledger(repo, &w).await;
    let deadline = |id: &str| {
        l.iter()
            .find(|r| r.container_id == id)
            .unwrap_or_else(|| panic!("{id} missing from the ledger"))
            .lease_expires_at_ms
    };
    let (da, db) = (deadline(&a), deadline(&b));
    let (Some(da), Some(db)) = (da, db) else {
        panic!("a leased reservation must report its deadline, got {da:?} and {db:?}");
    };
    assert_eq!(
        db - da,
        60_000,
        "two leases committed together are timed from the same store clock reading"
    );
    assert_eq!(
        deadline(&c),
        None,
        "an unleased reservation has no deadline"
    );
    assert_eq!(
        find(repo, &a).await.and_then(|r| r.lease_expires_at_ms),
        Some(da),
        "find_reservation reports the same deadline as the ledger"
    );
    assert_consistent(repo, &w, "after leased reserves").await;
    fx.finish().await;
}

/// Renewal answers per id, in order: `Renewed` with the new deadline (which the ledger then
/// shows), `NoLease`, `NotHeld` (unknown here, or held on another worker). It changes no capacity
/// and no version. An unknown worker is an error.
pub async fn check_renew_outcomes(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "lease-renew");
    let ns = fx.ns();
    let (w, v) = (ns.worker("a"), ns.worker("b"));
    fx.worker("a", res(1000, 1000, 0)).await;
    fx.worker("b", res(1000, 1000, 0)).await;
    let (a, b, other, ghost) = (
        ns.container("a"),
        ns.container("b"),
        ns.container("other"),
        ns.container("ghost"),
    );
    committed(
        reserve1(
            repo,
            cr(&w, vec![leased(&a, FAR), rr(&b, ONE)]),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve on a",
    );
    committed(
        reserve1(
            repo,
            cr(&v, vec![leased(&other, FAR)]),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve on b",
    );
    let before = get(repo, &w).await;
    let old = find(repo, &a).await.and_then(|r| r.lease_expires_at_ms);
    let other_deadline = find(repo, &other).await.and_then(|r| r.lease_expires_at_ms);
    let ids = vec![ghost.clone(), a.clone(), b.clone(), other.clone()];
    let out = renew(repo, &w, &ids, 120_000).await;
    assert_eq!(out[0].outcome, RenewOutcome::NotHeld, "an id held nowhere");
    let RenewOutcome::Renewed { expires_at_ms } = out[1].outcome else {
        panic!(
            "a held, leased, unexpired reservation must renew: {:?}",
            out[1]
        );
    };
    assert!(
        old.is_some_and(|o| expires_at_ms > o),
        "a renewal of 120 s must move a 60 s deadline later ({old:?} -> {expires_at_ms})"
    );
    assert_eq!(
        out[2].outcome,
        RenewOutcome::NoLease,
        "an unleased reservation"
    );
    assert_eq!(
        out[3].outcome,
        RenewOutcome::NotHeld,
        "a container held on another worker is not held on this one"
    );
    assert_eq!(
        find(repo, &a).await.and_then(|r| r.lease_expires_at_ms),
        Some(expires_at_ms),
        "the ledger shows the renewed deadline"
    );
    assert_eq!(
        find(repo, &other).await.and_then(|r| r.lease_expires_at_ms),
        other_deadline,
        "renewing on one worker never touches a lease held on another"
    );
    let after = get(repo, &w).await;
    assert_eq!(
        (after.free, after.resource_version),
        (before.free, before.resource_version),
        "a renewal changes no capacity and no version"
    );
    match repo
        .renew_leases(&ns.worker("nobody"), std::slice::from_ref(&a), 1000)
        .await
    {
        Err(RepoError::UnknownWorker(_)) => {}
        other => panic!("renew_leases on an unknown worker: expected UnknownWorker, got {other:?}"),
    }
    assert_consistent(repo, &w, "after renewals").await;
    fx.finish().await;
}

/// The sweep takes exactly the reservations whose deadline has passed: reported with who, when
/// and how much; capacity back once; the version bumped once; the id free again. A due lease is
/// still held (and blocks its id) until the sweep, and can no longer be renewed.
pub async fn check_sweep_takes_only_due_leases(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "lease-sweep");
    let ns = fx.ns();
    let w = ns.worker("a");
    let total = res(1000, 1000, 0);
    fx.worker("a", total).await;
    let (short, long, plain) = (
        ns.container("short"),
        ns.container("long"),
        ns.container("plain"),
    );
    let short_res = res(300, 200, 0);
    committed(
        reserve1(
            repo,
            cr(
                &w,
                vec![
                    rr(&short, short_res).with_lease(Duration::from_millis(5)),
                    leased(&long, FAR),
                    rr(&plain, ONE),
                ],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve",
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    let r = renew(repo, &w, std::slice::from_ref(&short), 60_000).await;
    assert_eq!(
        r[0].outcome,
        RenewOutcome::Expired {
            reason: ExpiryReason::LeaseExpired
        },
        "a lease past its deadline cannot be renewed"
    );
    assert!(
        find(repo, &short).await.is_some(),
        "a due lease is held until the sweep"
    );
    let again = reserve1(
        repo,
        cr(&w, vec![rr(&short, ONE)]),
        CommitMode::AllOrNothing,
    )
    .await;
    assert!(
        matches!(again, Err(Rejection::AlreadyReserved { .. })),
        "a due but unswept lease still holds its id: {again:?}"
    );
    let before = get(repo, &w).await;
    let s = sweep(repo, &w).await;
    assert_eq!(s.expired.len(), 1, "exactly the due lease expires: {s:?}");
    let e = &s.expired[0];
    assert_eq!(
        (
            e.record.container_id.as_str(),
            e.record.worker_id.as_str(),
            e.record.resources
        ),
        (short.as_str(), w.as_str(), short_res),
        "the report names who held what"
    );
    assert_eq!(e.reason, ExpiryReason::LeaseExpired);
    let deadline = e
        .record
        .lease_expires_at_ms
        .unwrap_or_else(|| panic!("an expired lease reports its deadline"));
    assert!(
        deadline <= s.swept_at_ms,
        "expired at {deadline}, swept at {}: the sweep took a lease before its deadline",
        s.swept_at_ms
    );
    assert_eq!(s.returned(), short_res);
    assert_eq!(
        s.resource_version,
        before.resource_version + 1,
        "a sweep that expired something bumps the version once"
    );
    let after = get(repo, &w).await;
    assert_eq!(
        (after.free, after.resource_version),
        (
            before.free.checked_add(&short_res).unwrap_or(total),
            s.resource_version
        ),
        "the sweep returns the capacity and reports the state after"
    );
    assert_eq!(s.free, after.free);
    assert!(
        find(repo, &short).await.is_none(),
        "an expired lease is no longer held"
    );
    assert!(find(repo, &long).await.is_some() && find(repo, &plain).await.is_some());
    assert_consistent(repo, &w, "after the sweep").await;
    // Idempotent, and the capacity came back exactly once.
    let s2 = sweep(repo, &w).await;
    assert!(
        s2.expired.is_empty(),
        "a second sweep finds nothing: {s2:?}"
    );
    assert_eq!(
        s2.resource_version, s.resource_version,
        "an empty sweep bumps nothing"
    );
    assert!(release(repo, std::slice::from_ref(&short)).await[0]
        .released
        .is_none());
    assert_eq!(
        renew(repo, &w, std::slice::from_ref(&short), 1000).await[0].outcome,
        RenewOutcome::NotHeld
    );
    committed(
        reserve1(
            repo,
            cr(&w, vec![rr(&short, ONE)]),
            CommitMode::AllOrNothing,
        )
        .await,
        "an expired id can be reserved again",
    );
    match repo.expire_leases(&ns.worker("nobody")).await {
        Err(RepoError::UnknownWorker(_)) => {}
        other => {
            panic!("expire_leases on an unknown worker: expected UnknownWorker, got {other:?}")
        }
    }
    assert_consistent(repo, &w, "after re-reserving").await;
    fx.finish().await;
}

/// A renewal and the sweep racing on one worker near the deadline: the containers of one part
/// share one deadline, so either every renewal wins (all `Renewed`, none swept, all held) or
/// every one loses (all `Expired`, all swept, capacity back once) — never a mix, never a
/// container renewed and swept, and the ledger stays true.
pub async fn check_renewal_racing_the_sweep_is_all_or_nothing(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "lease-race");
    let ns = fx.ns();
    let total = res(10_000, 10_000, 0);
    let w = ns.worker("a");
    fx.worker("a", total).await;
    let (mut won, mut lost) = (0, 0);
    for round in 0..8u64 {
        let ids: Vec<String> = (0..6)
            .map(|i| ns.container(&format!("r{round}-{i}")))
            .collect();
        let lease = Duration::from_millis(40 + 5 * round);
        committed(
            reserve1(
                repo,
                cr(
                    &w,
                    ids.iter().map(|c| rr(c, ONE).with_lease(lease)).collect(),
                ),
                CommitMode::AllOrNothing,
            )
            .await,
            "reserve the round",
        );
        tokio::time::sleep(lease.saturating_sub(Duration::from_millis(3))).await;
        let (r, s) = futures::join!(repo.renew_leases(&w, &ids, 60_000), repo.expire_leases(&w));
        let r = r.unwrap_or_else(|e| panic!("renew_leases failed: {e}"));
        let s = s.unwrap_or_else(|e| panic!("expire_leases failed: {e}"));
        let swept: Vec<&str> = s
            .expired
            .iter()
            .map(|e| e.record.container_id.as_str())
            .filter(|c| ids.iter().any(|i| i == c))
            .collect();
        let renewed = r
            .iter()
            .filter(|x| matches!(x.outcome, RenewOutcome::Renewed { .. }))
            .count();
        for x in &r {
            let was_swept = swept.contains(&x.container_id.as_str());
            match x.outcome {
                RenewOutcome::Renewed { .. } => assert!(
                    !was_swept,
                    "{}: renewed and swept by the same race",
                    x.container_id
                ),
                RenewOutcome::Expired { .. } | RenewOutcome::NotHeld => {}
                RenewOutcome::NoLease => panic!("{}: leased, yet NoLease", x.container_id),
            }
        }
        if renewed == ids.len() {
            assert!(
                swept.is_empty(),
                "round {round}: all renewed, yet swept {swept:?}"
            );
            won += 1;
        } else {
            assert_eq!(
                renewed, 0,
                "round {round}: the renewal won for some and lost for others: {r:?}"
            );
            // Lost: the sweep took them now, or (the renewal ran first and found them due)
            // takes them at the next sweep.
            let rest = sweep(repo, &w).await;
            let all: usize = swept.len()
                + rest
                    .expired
                    .iter()
                    .filter(|e| ids.contains(&e.record.container_id))
                    .count();
            assert_eq!(
                all,
                ids.len(),
                "round {round}: every lost renewal is swept once"
            );
            lost += 1;
        }
        for c in &ids {
            let held = find(repo, c).await.is_some();
            assert_eq!(
                held,
                renewed == ids.len(),
                "{c}: held must match the race's answer"
            );
        }
        assert_consistent(repo, &w, "after a renew/sweep race").await;
        let _ = release(repo, &ids).await;
    }
    assert_eq!(won + lost, 8);
    assert_consistent(repo, &w, "after all races").await;
    assert_eq!(get(repo, &w).await.free, total, "every lease came back");
    fx.finish().await;
}

/// A lease of 0 ms or beyond the maximum, a renewal of one id twice: `InvalidInput`, and nothing
/// changes.
pub async fn check_lease_bad_input_changes_nothing(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "lease-bad");
    let ns = fx.ns();
    let w = ns.worker("a");
    fx.worker("a", res(1000, 1000, 0)).await;
    let a = ns.container("a");
    committed(
        reserve1(
            repo,
            cr(&w, vec![leased(&a, FAR)]),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve",
    );
    let before = snapshot(repo, std::slice::from_ref(&w), std::slice::from_ref(&a)).await;
    let mut zero = rr(&ns.container("z"), ONE);
    zero.lease_ms = Some(0);
    assert_invalid(
        repo.reserve_batch(&[cr(&w, vec![zero])], CommitMode::AllOrNothing)
            .await,
        "a lease of 0 ms",
    );
    let mut huge = rr(&ns.container("h"), ONE);
    huge.lease_ms = Some(sched_core::lifecycle::MAX_LEASE_MS + 1);
    assert_invalid(
        repo.reserve_batch(&[cr(&w, vec![huge])], CommitMode::AllOrNothing)
            .await,
        "a lease beyond the maximum",
    );
    assert_invalid(
        repo.renew_leases(&w, std::slice::from_ref(&a), 0).await,
        "renewing for 0 ms",
    );
    assert_invalid(
        repo.renew_leases(&w, &[a.clone(), a.clone()], 1000).await,
        "renewing one id twice",
    );
    assert_invalid(
        repo.renew_leases("", std::slice::from_ref(&a), 1000).await,
        "an empty worker id",
    );
    assert_eq!(
        snapshot(repo, std::slice::from_ref(&w), std::slice::from_ref(&a)).await,
        before,
        "bad input must change nothing"
    );
    fx.finish().await;
}
