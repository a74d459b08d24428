//! Bulk release by worker (decommission): everything at once, exactly once.

use super::fixture::Fixture;
use super::support::{assert_consistent, committed, cr, find, get, release, res, reserve1, rr};
use sched_core::{CommitMode, RepoError, WorkerRepository};

/// This topic's checks, in run order (see `__for_each_check!` in `mod.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks_decommission {
    ($($list:tt)*) => {
        $crate::__conformance_chain! { $($list)*
            check_release_worker_releases_everything_once
        }
    };
}

/// `release_worker` releases every reservation of one worker atomically (reported in container
/// order), returns all its capacity, bumps the version once, leaves other workers alone, and
/// is idempotent; the worker stays registered and the ids are free again.
pub async fn check_release_worker_releases_everything_once(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "decommission");
    let ns = fx.ns();
    let (w, v) = (ns.worker("a"), ns.worker("b"));
    let total = res(1000, 1000, 2);
    fx.register(&fx.spec("a", total).with_gpu_type("l4")).await;
    fx.worker("b", res(1000, 1000, 0)).await;
    let ids: Vec<String> = ["c", "a", "b"].iter().map(|n| ns.container(n)).collect();
    let keep = ns.container("keep");
    committed(
        reserve1(
            repo,
            cr(
                &w,
                vec![
                    rr(&ids[0], res(100, 100, 1)).with_gpu_type("l4"),
                    rr(&ids[1], res(200, 200, 0)).with_lease(std::time::Duration::from_secs(60)),
                    rr(&ids[2], res(300, 300, 0)),
                ],
            ),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve on a",
    );
    committed(
        reserve1(
            repo,
            cr(&v, vec![rr(&keep, res(10, 10, 0))]),
            CommitMode::AllOrNothing,
        )
        .await,
        "reserve on b",
    );
    let before = get(repo, &w).await;
    let out = repo
        .release_worker(&w)
        .await
        .unwrap_or_else(|e| panic!("release_worker failed: {e}"));
    assert_eq!(out.worker_id, w);
    let mut sorted = ids.clone();
    sorted.sort();
    let got: Vec<&str> = out
        .released
        .iter()
        .map(|r| r.container_id.as_str())
        .collect();
    assert_eq!(
        got,
        sorted.iter().map(String::as_str).collect::<Vec<_>>(),
        "every reservation, in container order"
    );
    assert!(out.released.iter().all(|r| r.worker_id == w));
    assert_eq!(
        (out.free, out.resource_version),
        (total, before.resource_version + 1),
        "all capacity back, one version bump"
    );
    let after = get(repo, &w).await;
    assert_eq!(
        (after.free, after.resource_version),
        (total, out.resource_version)
    );
    for c in &ids {
        assert!(
            find(repo, c).await.is_none(),
            "{c}: released by release_worker"
        );
    }
    assert!(
        find(repo, &keep).await.is_some(),
        "another worker's reservation stays"
    );
    // Exactly once: a later release finds nothing, a second bulk release is empty.
    assert!(release(repo, &ids)
        .await
        .iter()
        .all(|o| o.released.is_none()));
    let again = repo
        .release_worker(&w)
        .await
        .unwrap_or_else(|e| panic!("second release_worker failed: {e}"));
    assert!(again.released.is_empty());
    assert_eq!(
        again.resource_version, out.resource_version,
        "nothing released: no bump"
    );
    committed(
        reserve1(
            repo,
            cr(&v, vec![rr(&ids[2], res(1, 1, 0))]),
            CommitMode::AllOrNothing,
        )
        .await,
        "a bulk-released id can be reserved elsewhere",
    );
    match repo.release_worker(&ns.worker("nobody")).await {
        Err(RepoError::UnknownWorker(_)) => {}
        other => {
            panic!("release_worker of an unknown worker: expected UnknownWorker, got {other:?}")
        }
    }
    assert_consistent(repo, &w, "after release_worker").await;
    assert_consistent(repo, &v, "the other worker").await;
    fx.finish().await;
}
