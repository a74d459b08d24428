//! Registration: a new worker stores every field, reads back, and is removed.

use super::fixture::Fixture;
use super::support::{assert_consistent, get, res};
use sched_core::{WorkerRepository, WorkerSpec, WorkerStatus};

/// This topic's checks, in run order: appends their names to the list being built (see
/// `__for_each_check!` in `mod.rs`).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_checks_registration {
    ($($list:tt)*) => {
        $crate::__conformance_chain! { $($list)*
            check_register_and_get
        }
    };
}

/// Registration stores every field; a new worker is entirely free; `get_worker` reads it back;
/// `remove_worker` reports whether it existed; removed workers read as `None`.
pub async fn check_register_and_get(repo: &dyn WorkerRepository) {
    let fx = Fixture::new(repo, "register");
    let ns = fx.ns();
    let spec = WorkerSpec::new(ns.worker("a"), res(4000, 8192, 2))
        .with_pool(ns.pool("p"))
        .requiring_pool_selector()
        .with_priority(-7)
        .with_gpu_type("a100")
        .requiring_pool_selector()
        .preemptable();
    let w = fx.register(&spec).await;
    assert_eq!(
        w.spec(),
        spec,
        "register_worker must return the registered spec"
    );
    assert_eq!(w.free, spec.total, "a new worker must be entirely free");
    assert_eq!(
        get(repo, &spec.id).await,
        w,
        "get_worker must return what register_worker returned"
    );
    assert_consistent(repo, &spec.id, "after register").await;

    for status in [
        WorkerStatus::Draining,
        WorkerStatus::Disabled,
        WorkerStatus::Available,
    ] {
        let s = WorkerSpec::new(ns.worker(status.as_str()), res(1, 1, 0))
            .with_pool(ns.pool("p"))
            .requiring_pool_selector()
            .with_status(status)
            .with_priority(i32::MAX);
        let w = fx.register(&s).await;
        assert_eq!(w.spec(), s, "status {status} and priority must round-trip");
        assert_eq!(
            get(repo, &s.id).await.spec(),
            s,
            "status {status} must be stored"
        );
    }

    let ghost = ns.worker("ghost");
    assert_eq!(
        repo.get_worker(&ghost).await.ok(),
        Some(None),
        "an unknown worker must read as None"
    );
    assert_eq!(
        repo.remove_worker(&spec.id).await.ok(),
        Some(true),
        "removing a worker must return true"
    );
    assert_eq!(
        repo.remove_worker(&spec.id).await.ok(),
        Some(false),
        "removing it again must return false"
    );
    assert_eq!(
        repo.get_worker(&spec.id).await.ok(),
        Some(None),
        "a removed worker must read as None"
    );
    fx.finish().await;
}
