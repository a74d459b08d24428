//! The README's example of using the in-memory backend in a dependent crate's unit test, kept
//! here verbatim so that it cannot rot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sched_core::{ContainerRequest, Resources, Scheduler, SchedulerConfig, WorkerRepository};
use sched_memory::{Fault, MemoryRepository};

#[tokio::test]
async fn my_service_survives_a_lost_reply() {
    let repo = MemoryRepository::builder()
        .cpu_workers(4, Resources::cpu_mem(8_000, 32_768))
        .build()
        .await;
    repo.faults().push(Fault::LoseReply, 1); // commit, then drop the reply
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let placed = sched
        .schedule(ContainerRequest::new("c-1", Resources::cpu_mem(500, 512)))
        .await
        .unwrap();
    // The scheduler resolved the doubt with find_reservation: placed once, not twice.
    assert_eq!(
        repo.find_reservation("c-1")
            .await
            .unwrap()
            .unwrap()
            .worker_id,
        placed.worker_id
    );
}
