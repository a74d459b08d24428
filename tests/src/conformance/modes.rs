//! Commit modes: all-or-nothing, the longest prefix of `Partial`, and containers held already
//! (on the same worker or elsewhere: `AlreadyReserved` naming the holder either way).

use super::fixture::Fixture;
use super::support::{
    assert_consistent, assert_insufficient, committed, cr, find, get, held_on, ledger, rejected,
    res, reserve1, rr, BOTH_MODES,
};
use sched_core::{CommitMode, Rejection, ResourceKind, WorkerRepository};

/// This topic's checks, in run order: appends their names to the list being built (see
/// `__for_each_check!` in `mod.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks_modes {
    ($($list:tt)*) => {
        $crate::__conformance_chain! { $($list)*
            check_all_or_nothing
            check_partial_longest_prefix
            check_partial_first_rejected_rejects_worker
            check_reserve_held_here_is_rejected
            check_already_reserved_elsewhere
        }
    };
}

/// `AllOrNothing`: one reservation that does not fit rejects the worker's whole part.
pub async fn check_all_or_nothing(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "aon");
    let ns = fx.ns();
    let id = ns.worker("a");
    let w = fx.worker("a", res(1000, 1000, 0)).await;
    let names = ["a", "b", "c", "d"];
    let amounts = [300, 300, 600, 100];
    let rs: Vec<_> = names
        .iter()
        .zip(amounts)
        .map(|(n, a)| rr(&ns.container(n), res(a, 10, 0)))
        .collect();
    let r = rejected(
        reserve1(repo, cr(&id, rs), CommitMode::AllOrNothing).await,
        "third does not fit",
    );
    assert_insufficient(
        &r,
        &ns.container("c"),
        ResourceKind::Cpu,
        600,
        400,
        "all-or-nothing",
    );
    assert_eq!(
        get(repo, &id).await,
        w,
        "all-or-nothing: nothing may change"
    );
    for n in names {
        assert_eq!(
            find(repo, &ns.container(n)).await,
            None,
            "all-or-nothing: {n} must not be held"
        );
    }
    assert_consistent(repo, &id, "after all-or-nothing").await;
    fx.finish().await;
}

/// `Partial`: the longest fitting prefix commits; `accepted` counts it and `remainder` says why
/// the rest did not. Later reservations do not commit even if they would fit.
pub async fn check_partial_longest_prefix(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "partial");
    let ns = fx.ns();
    let id = ns.worker("a");
    let w = fx.worker("a", res(1000, 1000, 0)).await;
    let names = ["a", "b", "c", "d"];
    let amounts = [300, 300, 600, 100];
    let rs: Vec<_> = names
        .iter()
        .zip(amounts)
        .map(|(n, a)| rr(&ns.container(n), res(a, 10, 0)))
        .collect();
    let c = committed(
        reserve1(repo, cr(&id, rs), CommitMode::Partial).await,
        "prefix of two",
    );
    assert_eq!(
        c.accepted, 2,
        "accepted must be the length of the fitting prefix"
    );
    let rem = c
        .remainder
        .unwrap_or_else(|| panic!("remainder must say why c did not commit"));
    assert_insufficient(
        &rem,
        &ns.container("c"),
        ResourceKind::Cpu,
        600,
        400,
        "partial remainder",
    );
    assert_eq!(c.free, res(400, 980, 0), "Committed.free after the prefix");
    assert!(
        c.new_version > w.resource_version,
        "the prefix commit bumps the version"
    );
    for (n, held) in [("a", true), ("b", true), ("c", false), ("d", false)] {
        assert_eq!(
            held_on(repo, &ns.container(n)).await.is_some(),
            held,
            "partial: is {n} held?"
        );
    }
    // All fit: everything commits and nothing remains.
    let rs = vec![
        rr(&ns.container("e"), res(100, 10, 0)),
        rr(&ns.container("f"), res(100, 10, 0)),
    ];
    let c = committed(
        reserve1(repo, cr(&id, rs), CommitMode::Partial).await,
        "all fit",
    );
    assert_eq!((c.accepted, c.remainder), (2, None));
    // A container held on this very worker, first in the part: rejected (the prefix is empty),
    // naming this worker; nothing charged, version unchanged.
    let before = get(repo, &id).await;
    let rs = vec![
        rr(&ns.container("a"), res(300, 10, 0)),
        rr(&ns.container("g"), res(1, 1, 0)),
    ];
    let r = rejected(
        reserve1(repo, cr(&id, rs), CommitMode::Partial).await,
        "held first",
    );
    assert_eq!(
        r,
        Rejection::AlreadyReserved {
            container_id: ns.container("a"),
            worker_id: id.clone(),
        },
        "a container held here is rejected, naming this worker"
    );
    assert_eq!(
        get(repo, &id).await,
        before,
        "nothing charged, version unchanged"
    );
    assert_eq!(find(repo, &ns.container("g")).await, None);
    assert_consistent(repo, &id, "after partial commits").await;
    fx.finish().await;
}

/// `Partial`: when the very first reservation is rejected, the worker is rejected.
pub async fn check_partial_first_rejected_rejects_worker(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "partial-first");
    let ns = fx.ns();
    let id = ns.worker("a");
    let w = fx.worker("a", res(1000, 1000, 0)).await;
    let (big, small) = (ns.container("big"), ns.container("small"));
    let r = rejected(
        reserve1(
            repo,
            cr(
                &id,
                vec![rr(&big, res(2000, 1, 0)), rr(&small, res(1, 1, 0))],
            ),
            CommitMode::Partial,
        )
        .await,
        "empty prefix",
    );
    assert_insufficient(&r, &big, ResourceKind::Cpu, 2000, 1000, "empty prefix");
    assert_eq!(
        get(repo, &id).await,
        w,
        "an empty prefix must change nothing"
    );
    assert_eq!(
        find(repo, &small).await,
        None,
        "reservations after the rejected one never commit"
    );
    fx.finish().await;
}

/// Reserving a container again on the worker that holds it is rejected with `AlreadyReserved`
/// naming this worker, in both modes, with nothing charged and the version unchanged (the caller
/// looks the holder up). In `Partial` mode the prefix before it commits; in `AllOrNothing` the
/// whole part is rejected.
pub async fn check_reserve_held_here_is_rejected(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "held-here");
    let ns = fx.ns();
    let id = ns.worker("a");
    fx.worker("a", res(1000, 1000, 0)).await;
    let (c1, c2) = (ns.container("c1"), ns.container("c2"));
    committed(
        reserve1(
            repo,
            cr(&id, vec![rr(&c1, res(300, 300, 0))]),
            CommitMode::AllOrNothing,
        )
        .await,
        "first",
    );
    let held = Rejection::AlreadyReserved {
        container_id: c1.clone(),
        worker_id: id.clone(),
    };
    let w = get(repo, &id).await;
    for mode in BOTH_MODES {
        // The same resources, and other ones: rejected alike.
        for amount in [res(300, 300, 0), res(100, 100, 0)] {
            let r = rejected(
                reserve1(repo, cr(&id, vec![rr(&c1, amount)]), mode).await,
                "again",
            );
            assert_eq!(
                r, held,
                "a re-reserve names this worker as the holder ({mode:?})"
            );
        }
        assert_eq!(
            get(repo, &id).await,
            w,
            "a rejected re-reserve charges nothing and keeps the version ({mode:?})"
        );
    }
    let mixed = vec![rr(&c1, res(300, 300, 0)), rr(&c2, res(200, 200, 0))];
    let r = rejected(
        reserve1(repo, cr(&id, mixed), CommitMode::AllOrNothing).await,
        "mixed, all or nothing",
    );
    assert_eq!(r, held);
    assert_eq!(get(repo, &id).await, w, "all-or-nothing: nothing charged");
    assert_eq!(find(repo, &c2).await, None);
    let p = committed(
        reserve1(
            repo,
            cr(
                &id,
                vec![rr(&c2, res(200, 200, 0)), rr(&c1, res(300, 300, 0))],
            ),
            CommitMode::Partial,
        )
        .await,
        "new then held, partial",
    );
    assert_eq!(
        (p.accepted, p.remainder, p.free),
        (1, Some(held), res(500, 500, 0)),
        "partial: the new one is charged, the held one is the remainder"
    );
    assert!(p.new_version > w.resource_version);
    let l = ledger(repo, &id).await;
    assert_eq!(l.len(), 2, "the ledger holds each container once");
    assert_eq!(
        l.iter().find(|r| r.container_id == c1).map(|r| r.resources),
        Some(res(300, 300, 0)),
        "the first charge is kept"
    );
    assert_consistent(repo, &id, "after re-reserves").await;
    fx.finish().await;
}

/// A container held on worker A cannot be reserved on worker B: `AlreadyReserved` names A.
pub async fn check_already_reserved_elsewhere(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "elsewhere");
    let ns = fx.ns();
    let (a, b) = (ns.worker("a"), ns.worker("b"));
    for name in ["a", "b"] {
        fx.worker(name, res(1000, 1000, 0)).await;
    }
    let c = ns.container("c");
    committed(
        reserve1(
            repo,
            cr(&a, vec![rr(&c, res(100, 100, 0))]),
            CommitMode::AllOrNothing,
        )
        .await,
        "on a",
    );
    let wb = get(repo, &b).await;
    let want = Rejection::AlreadyReserved {
        container_id: c.clone(),
        worker_id: a.clone(),
    };
    for mode in BOTH_MODES {
        let r = rejected(
            reserve1(repo, cr(&b, vec![rr(&c, res(100, 100, 0))]), mode).await,
            "on b",
        );
        assert_eq!(r, want, "AlreadyReserved must name the holder ({mode:?})");
    }
    assert_eq!(get(repo, &b).await, wb, "b must be unchanged");
    let (n1, n2) = (ns.container("n1"), ns.container("n2"));
    let p = committed(
        reserve1(
            repo,
            cr(
                &b,
                vec![
                    rr(&n1, res(1, 1, 0)),
                    rr(&c, res(100, 100, 0)),
                    rr(&n2, res(1, 1, 0)),
                ],
            ),
            CommitMode::Partial,
        )
        .await,
        "partial around c",
    );
    assert_eq!(
        (p.accepted, p.remainder),
        (1, Some(want)),
        "partial stops at the container held elsewhere"
    );
    assert_eq!(held_on(repo, &n1).await, Some(b.clone()));
    assert_eq!(held_on(repo, &n2).await, None);
    assert_eq!(held_on(repo, &c).await, Some(a.clone()), "c stays on a");
    assert!(
        ledger(repo, &b).await.iter().all(|r| r.container_id != c),
        "c must not be in b's ledger"
    );
    for id in [&a, &b] {
        assert_consistent(repo, id, "after cross-worker attempts").await;
    }
    fx.finish().await;
}
