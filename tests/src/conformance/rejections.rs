//! Worker-level answers: empty batches, unknown workers, versions, availability and the order of
//! rejections.

use super::fixture::Fixture;
use super::support::{
    assert_consistent, committed, cr, find, get, held_on, rejected, release, res, reserve1, rr,
    BOTH_MODES,
};
use crate::ns::Ns;
use sched_core::{CommitMode, Rejection, RepoError, WorkerRepository, WorkerStatus};

/// This topic's checks, in run order: appends their names to the list being built (see
/// `__for_each_check!` in `mod.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks_rejections {
    ($($list:tt)*) => {
        $crate::__conformance_chain! { $($list)*
            check_empty_batches
            check_unknown_worker
            check_version_conflict
            check_worker_unavailable
            check_rejection_order
        }
    };
}

/// Empty batches are fine: `reserve_batch(&[])` and `release_batch(&[])` return `Ok(vec![])`.
pub async fn check_empty_batches(repo: &dyn WorkerRepository) {
    for mode in BOTH_MODES {
        let out = repo.reserve_batch(&[], mode).await;
        assert!(
            matches!(out, Ok(ref v) if v.is_empty()),
            "empty reserve_batch ({mode:?}) must be Ok(empty), got {out:?}"
        );
    }
    let out = repo.release_batch(&[]).await;
    assert!(
        matches!(out, Ok(ref v) if v.is_empty()),
        "empty release_batch must be Ok(empty), got {out:?}"
    );
}

/// Unknown workers: reserving is rejected with `UnknownWorker` (even with an expected version),
/// ledger reads fail with `RepoError::UnknownWorker`, removing returns false.
pub async fn check_unknown_worker(repo: &dyn WorkerRepository) {
    let ns = Ns::new("unknown");
    let ghost = ns.worker("ghost");
    let c = ns.container("c");
    for mode in BOTH_MODES {
        for expect in [None, Some(1), Some(0)] {
            let mut b = cr(&ghost, vec![rr(&c, res(1, 1, 0))]);
            b.expected_version = expect;
            assert_eq!(
                rejected(reserve1(repo, b, mode).await, "ghost"),
                Rejection::UnknownWorker,
                "({mode:?}, {expect:?})"
            );
        }
    }
    assert_eq!(
        find(repo, &c).await,
        None,
        "nothing may be held after UnknownWorker"
    );
    assert!(
        matches!(
            repo.list_reservations(&ghost).await,
            Err(RepoError::UnknownWorker(_))
        ),
        "list_reservations of an unknown worker"
    );
    assert!(
        matches!(repo.audit(&ghost).await, Err(RepoError::UnknownWorker(_))),
        "audit of an unknown worker"
    );
    assert!(
        matches!(
            repo.reconcile(&ghost).await,
            Err(RepoError::UnknownWorker(_))
        ),
        "reconcile of an unknown worker"
    );
    assert_eq!(
        repo.remove_worker(&ghost).await.ok(),
        Some(false),
        "remove_worker of an unknown worker"
    );
    assert_eq!(
        repo.get_worker(&ghost).await.ok(),
        Some(None),
        "get_worker of an unknown worker"
    );
    assert_eq!(
        repo.get_worker(&ghost).await.ok(),
        Some(None),
        "reads must not create the worker"
    );
}

/// `expected_version`: a mismatch is rejected with `VersionConflict { expected, current }` and
/// changes nothing; a match commits and bumps the version.
pub async fn check_version_conflict(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "version");
    let ns = fx.ns();
    let id = ns.worker("a");
    let w0 = fx.worker("a", res(1000, 1000, 0)).await;
    let v0 = w0.resource_version;
    let (c1, c2) = (ns.container("c1"), ns.container("c2"));
    let mut wrong = vec![v0 + 1, v0 + 1000, u64::MAX];
    if v0 > 0 {
        wrong.push(v0 - 1);
    }
    for mode in BOTH_MODES {
        for &e in &wrong {
            let r = rejected(
                reserve1(
                    repo,
                    cr(&id, vec![rr(&c1, res(1, 1, 0))]).expecting(e),
                    mode,
                )
                .await,
                "wrong version",
            );
            assert_eq!(
                r,
                Rejection::VersionConflict {
                    expected: e,
                    current: v0
                },
                "({mode:?})"
            );
        }
    }
    assert_eq!(
        get(repo, &id).await,
        w0,
        "a version conflict must change nothing"
    );
    let c = committed(
        reserve1(
            repo,
            cr(&id, vec![rr(&c1, res(1, 1, 0))]).expecting(v0),
            CommitMode::AllOrNothing,
        )
        .await,
        "right version",
    );
    let v1 = c.new_version;
    assert!(v1 > v0, "a commit must bump the version");
    let r = rejected(
        reserve1(
            repo,
            cr(&id, vec![rr(&c2, res(1, 1, 0))]).expecting(v0),
            CommitMode::Partial,
        )
        .await,
        "old version",
    );
    assert_eq!(
        r,
        Rejection::VersionConflict {
            expected: v0,
            current: v1
        },
        "the old version is stale now"
    );
    // A re-reserve at the current version passes the version check and is rejected as held
    // here; the version is unchanged.
    let r = rejected(
        reserve1(
            repo,
            cr(&id, vec![rr(&c1, res(1, 1, 0))]).expecting(v1),
            CommitMode::AllOrNothing,
        )
        .await,
        "re-reserve",
    );
    assert_eq!(
        r,
        Rejection::AlreadyReserved {
            container_id: c1.clone(),
            worker_id: id.clone()
        },
        "a re-reserve is rejected, naming this worker"
    );
    assert_eq!(
        get(repo, &id).await.resource_version,
        v1,
        "a rejected re-reserve must not bump the version"
    );
    assert_consistent(repo, &id, "after version checks").await;
    fx.finish().await;
}

/// Draining and disabled workers take no new reservations (`WorkerUnavailable`), keep their
/// reservations, and still release them.
pub async fn check_worker_unavailable(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "unavailable");
    let ns = fx.ns();
    let id = ns.worker("a");
    let spec = fx.spec("a", res(1000, 1000, 0));
    fx.register(&spec).await;
    let (c1, c2, c3) = (ns.container("c1"), ns.container("c2"), ns.container("c3"));
    committed(
        reserve1(
            repo,
            cr(
                &id,
                vec![rr(&c1, res(100, 100, 0)), rr(&c3, res(100, 100, 0))],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve while available",
    );
    for status in [WorkerStatus::Draining, WorkerStatus::Disabled] {
        let w = fx.register(&spec.clone().with_status(status)).await;
        assert_eq!(
            w.free,
            res(800, 800, 0),
            "a status change keeps reservations"
        );
        for mode in BOTH_MODES {
            let r = rejected(
                reserve1(repo, cr(&id, vec![rr(&c2, res(1, 1, 0))]), mode).await,
                "new on unavailable",
            );
            assert_eq!(r, Rejection::WorkerUnavailable { status }, "({mode:?})");
            // The availability check precedes the per-reservation checks, even for a held one.
            let r = rejected(
                reserve1(repo, cr(&id, vec![rr(&c1, res(100, 100, 0))]), mode).await,
                "held on unavailable",
            );
            assert_eq!(
                r,
                Rejection::WorkerUnavailable { status },
                "re-reserve on {status} ({mode:?})"
            );
        }
        assert_eq!(
            get(repo, &id).await,
            w,
            "rejections on a {status} worker change nothing"
        );
        assert_eq!(
            held_on(repo, &c1).await,
            Some(id.clone()),
            "reservations stay on a {status} worker"
        );
    }
    let out = release(repo, std::slice::from_ref(&c1)).await;
    assert!(
        out[0].released.is_some(),
        "a disabled worker's reservation can be released"
    );
    assert_eq!(get(repo, &id).await.free, res(900, 900, 0));
    fx.register(&spec).await;
    committed(
        reserve1(
            repo,
            cr(&id, vec![rr(&c2, res(1, 1, 0))]),
            CommitMode::AllOrNothing,
        )
        .await,
        "available again",
    );
    assert_consistent(repo, &id, "after status changes").await;
    fx.finish().await;
}

/// The documented order of checks: unknown worker, then version, then availability, then per
/// reservation: held elsewhere, GPU type, capacity.
pub async fn check_rejection_order(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "order");
    let ns = fx.ns();
    let a = ns.worker("a");
    let b = ns.worker("b");
    let wa = fx
        .register(&fx.spec("a", res(1000, 1000, 1)).with_gpu_type("a100"))
        .await;
    let c = ns.container("c");
    committed(
        reserve1(
            repo,
            cr(&a, vec![rr(&c, res(1, 1, 0))]),
            CommitMode::AllOrNothing,
        )
        .await,
        "hold c on a",
    );
    let wb = fx
        .register(
            &fx.spec("b", res(1000, 1000, 1))
                .with_gpu_type("a100")
                .with_status(WorkerStatus::Draining),
        )
        .await;
    // version before availability
    let r = rejected(
        reserve1(
            repo,
            cr(&b, vec![rr(&ns.container("x"), res(1, 1, 0))]).expecting(wb.resource_version + 1),
            CommitMode::AllOrNothing,
        )
        .await,
        "draining+stale",
    );
    assert!(
        matches!(r, Rejection::VersionConflict { .. }),
        "a version conflict is reported before unavailability, got {r:?}"
    );
    fx.register(&fx.spec("b", res(1000, 1000, 1)).with_gpu_type("a100"))
        .await;
    // held elsewhere before GPU type and capacity
    let r = rejected(
        reserve1(
            repo,
            cr(&b, vec![rr(&c, res(5000, 1, 3)).with_gpu_type("h100")]),
            CommitMode::AllOrNothing,
        )
        .await,
        "held+mismatch+big",
    );
    assert_eq!(
        r,
        Rejection::AlreadyReserved {
            container_id: c.clone(),
            worker_id: a.clone()
        },
        "AlreadyReserved comes first"
    );
    // GPU type before capacity
    let x = ns.container("x");
    let r = rejected(
        reserve1(
            repo,
            cr(&b, vec![rr(&x, res(5000, 1, 3)).with_gpu_type("h100")]),
            CommitMode::AllOrNothing,
        )
        .await,
        "mismatch+big",
    );
    assert!(
        matches!(r, Rejection::GpuTypeMismatch { .. }),
        "GpuTypeMismatch comes before capacity, got {r:?}"
    );
    let _ = wa;
    for id in [&a, &b] {
        assert_consistent(repo, id, "after order checks").await;
    }
    fx.finish().await;
}
