//! Re-registration: it keeps the capacity in use, refuses totals below it, and starts afresh after
//! a removal.

use super::fixture::Fixture;
use super::support::{
    assert_consistent, committed, cr, find, get, ledger, release, res, reserve1, rr, snapshot,
};
use sched_core::{CommitMode, RepoError, ResourceKind, Resources, WorkerRepository, WorkerSpec};

/// This topic's checks, in run order: appends their names to the list being built (see
/// `__for_each_check!` in `mod.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks_reregistration {
    ($($list:tt)*) => {
        $crate::__conformance_chain! { $($list)*
            check_reregister_keeps_used_capacity
            check_reregister_below_reserved
            check_remove_then_reregister_late_release
        }
    };
}

/// Re-registration keeps the capacity in use (`free = new total − reserved`), keeps the ledger,
/// updates the other fields and bumps the version, every time.
pub async fn check_reregister_keeps_used_capacity(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "reregister");
    let ns = fx.ns();
    let id = ns.worker("a");
    let spec = fx.spec("a", res(4000, 8192, 2)).with_gpu_type("a100");
    fx.register(&spec).await;
    let (c1, c2) = (ns.container("c1"), ns.container("c2"));
    let c = committed(
        reserve1(
            repo,
            cr(
                &id,
                vec![
                    rr(&c1, res(1000, 1024, 1)).with_gpu_type("a100"),
                    rr(&c2, res(500, 512, 0)),
                ],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve",
    );
    let led = ledger(repo, &id).await;
    let spec2 = WorkerSpec::new(id.clone(), res(8000, 4096, 1))
        .with_pool(ns.pool("q"))
        .requiring_pool_selector()
        .with_gpu_type("a100")
        .with_priority(3)
        .preemptable();
    let w2 = fx.register(&spec2).await;
    assert_eq!(w2.spec(), spec2, "re-registration must store the new spec");
    assert_eq!(
        w2.free,
        res(8000 - 1500, 4096 - 1536, 0),
        "free = new total − reserved"
    );
    assert!(
        w2.resource_version > c.new_version,
        "re-registration must bump the version"
    );
    assert_eq!(get(repo, &id).await, w2);
    assert_eq!(
        ledger(repo, &id).await,
        led,
        "re-registration must keep the ledger"
    );
    let w3 = fx.register(&spec2).await;
    assert!(
        w3.resource_version > w2.resource_version,
        "even an identical re-registration bumps the version"
    );
    assert_eq!(w3.free, w2.free);
    let exact = WorkerSpec {
        total: res(1500, 1536, 1),
        ..spec2.clone()
    };
    let w4 = fx.register(&exact).await;
    assert_eq!(
        w4.free,
        Resources::ZERO,
        "a total exactly equal to what is reserved is allowed"
    );
    let pools = repo
        .list_workers(Some(&ns.pool("q")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        pools.iter().map(|w| &w.id).collect::<Vec<_>>(),
        vec![&id],
        "the worker moved to pool q"
    );
    let old = repo
        .list_workers(Some(&ns.pool("p")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(old.is_empty(), "the worker must have left pool p: {old:?}");
    assert_consistent(repo, &id, "after re-registration").await;
    fx.finish().await;
}

/// Re-registration with a total below what is reserved fails with `TotalBelowReserved` naming
/// the resource, and changes nothing.
pub async fn check_reregister_below_reserved(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "below-reserved");
    let ns = fx.ns();
    let id = ns.worker("a");
    let spec = fx.spec("a", res(4000, 8192, 2)).with_gpu_type("a100");
    fx.register(&spec).await;
    committed(
        reserve1(
            repo,
            cr(
                &id,
                vec![
                    rr(&ns.container("c1"), res(1000, 1024, 1)).with_gpu_type("a100"),
                    rr(&ns.container("c2"), res(500, 512, 0)),
                ],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve",
    );
    let before = snapshot(
        repo,
        std::slice::from_ref(&id),
        &[ns.container("c1"), ns.container("c2")],
    )
    .await;
    let cases = [
        (res(1000, 8192, 2), ResourceKind::Cpu, 1000, 1500),
        (res(4000, 1000, 2), ResourceKind::Memory, 1000, 1536),
        (res(4000, 8192, 0), ResourceKind::Gpu, 0, 1),
    ];
    for (total, kind, t, r) in cases {
        let bad = WorkerSpec {
            total,
            pool: ns.pool("elsewhere"),
            priority: 9,
            ..spec.clone()
        };
        match repo.register_worker(&bad).await {
            Err(RepoError::TotalBelowReserved {
                resource,
                total,
                reserved,
            }) => {
                assert_eq!(
                    (resource, total, reserved),
                    (kind, t, r),
                    "TotalBelowReserved must name the resource and amounts"
                );
            }
            other => panic!(
                "new total {total} below reserved: expected TotalBelowReserved, got {other:?}"
            ),
        }
        assert_eq!(
            snapshot(
                repo,
                std::slice::from_ref(&id),
                &[ns.container("c1"), ns.container("c2")]
            )
            .await,
            before,
            "a failed re-registration must change nothing"
        );
    }
    assert_consistent(repo, &id, "after failed re-registrations").await;
    fx.finish().await;
}

/// Remove then re-register: the old containers are gone, a late release of one is a no-op that
/// does not over-credit the new worker, and the new version is greater than any before removal.
pub async fn check_remove_then_reregister_late_release(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "remove");
    let ns = fx.ns();
    let id = ns.worker("a");
    let total = res(1000, 1000, 1);
    let spec = fx.spec("a", total).with_gpu_type("a100");
    fx.register(&spec).await;
    let (c1, c2, c3) = (ns.container("c1"), ns.container("c2"), ns.container("c3"));
    committed(
        reserve1(
            repo,
            cr(
                &id,
                vec![
                    rr(&c1, res(400, 400, 1)).with_gpu_type("a100"),
                    rr(&c2, res(100, 100, 0)),
                ],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve",
    );
    release(repo, std::slice::from_ref(&c2)).await;
    let last = get(repo, &id).await.resource_version;
    assert_eq!(repo.remove_worker(&id).await.ok(), Some(true));
    assert_eq!(
        find(repo, &c1).await,
        None,
        "a removed worker's containers are held nowhere"
    );
    let w = fx.register(&spec).await;
    assert!(
        w.resource_version > last,
        "versions never repeat: {} after removal must exceed {last}",
        w.resource_version
    );
    assert_eq!(w.free, total, "a re-registered worker starts empty");
    assert!(ledger(repo, &id).await.is_empty(), "the old ledger is gone");
    let out = release(repo, std::slice::from_ref(&c1)).await;
    assert_eq!(
        out[0].released, None,
        "a late release of a removed worker's container is a no-op"
    );
    let w2 = get(repo, &id).await;
    assert_eq!(w2.free, total, "a late release must not over-credit");
    assert_eq!(
        w2.resource_version, w.resource_version,
        "a no-op release must not bump the version"
    );
    // The old container id is free to use again.
    committed(
        reserve1(
            repo,
            cr(
                &id,
                vec![
                    rr(&c1, res(400, 400, 1)).with_gpu_type("a100"),
                    rr(&c3, res(1, 1, 0)),
                ],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "reuse",
    );
    assert_consistent(repo, &id, "after remove and re-register").await;
    fx.finish().await;
    assert_eq!(find(repo, &c1).await, None);
}
