//! Helpers shared by the answer tests (issue 10, cases 6-9).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sched_core::{
    ContainerRequest, Placement, Resources, ScheduleError, SchedulerConfig, WorkerRepository,
};
use sched_memory::MemoryRepository;
use std::time::Duration;

pub const WORKER: Resources = Resources::cpu_mem(8_000, 32_768);
pub const SMALL: Resources = Resources::cpu_mem(250, 512);
pub const LARGE: Resources = Resources::cpu_mem(500, 1024);

pub async fn repo(workers: usize, total: Resources) -> MemoryRepository {
    MemoryRepository::builder()
        .cpu_workers(workers, total)
        .build()
        .await
}

pub fn req(id: &str, r: Resources) -> ContainerRequest {
    ContainerRequest::new(id, r)
}

pub fn quick() -> SchedulerConfig {
    SchedulerConfig::default()
        .with_backoff_base(Duration::from_millis(1))
        .with_backoff_max(Duration::from_millis(4))
}

/// Every worker free of drift.
pub async fn assert_no_drift(repo: &MemoryRepository) {
    for w in repo.list_workers(None).await.unwrap() {
        let a = repo.audit(&w.id).await.unwrap();
        assert!(a.is_consistent(), "drift on {}: {:?}", w.id, a.drift);
    }
}

/// The answer agrees with the store: `Ok` is held there with exactly the requested resources;
/// an `Err` that does not say "may be held" is not held.
pub async fn assert_agrees(
    repo: &MemoryRepository,
    r: &ContainerRequest,
    answer: &Result<Placement, ScheduleError>,
) {
    let held = repo.find_reservation(&r.id).await.unwrap();
    match answer {
        Ok(p) => {
            let h = held.unwrap_or_else(|| panic!("{} answered Ok but not held", r.id));
            assert_eq!(h.worker_id, p.worker_id, "{} held elsewhere", r.id);
            assert_eq!(
                h.resources, r.resources,
                "{} held with other resources",
                r.id
            );
        }
        Err(e) if e.may_be_held() => {}
        Err(ScheduleError::HeldDifferently { held: h, .. }) => {
            assert_eq!(
                held.as_ref(),
                Some(&**h),
                "HeldDifferently names the holder"
            );
        }
        Err(e) => assert!(held.is_none(), "{} answered {e} but held: {held:?}", r.id),
    }
}

/// Polls `cond` for up to two seconds.
pub async fn eventually(mut cond: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..200 {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
