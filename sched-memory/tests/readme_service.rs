//! The README's service example ("A service, end to end"), run here on the in-memory backend;
//! `readme_shows_this_example` keeps the README's copy identical to this file's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

// README-BEGIN
use sched_core::{
    ContainerRequest, Resources, Scheduler, SchedulerConfig, WorkerRepository, WorkerSpec,
    WorkerStatus,
};

async fn service<R: WorkerRepository + Clone + 'static>(
    repo: R,
) -> Result<(), sched_core::RepoError> {
    // 1. Each node's agent registers its worker (again after a restart: idempotent).
    for node in ["node-a", "node-b", "node-c"] {
        repo.register_worker(&WorkerSpec::new(node, Resources::cpu_mem(8_000, 32_768)))
            .await?;
    }

    // 2. Place a burst: one plan, one atomic commit per worker, about one round trip.
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let burst = (0..12)
        .map(|i| ContainerRequest::new(format!("job-{i}"), Resources::cpu_mem(1_000, 2_048)))
        .collect();
    let mut placed = Vec::new();
    for result in sched.schedule_batch(burst).await {
        match result {
            Ok(p) => placed.push(p.container_id),
            // The store is down or misconfigured: answer 503, retry later.
            Err(e) if e.is_store_unavailable() => eprintln!("store unavailable: {e}"),
            // Other schedulers took the room first: answer 409, or retry.
            Err(e) if e.is_contention() => eprintln!("contended: {e}"),
            // Ambiguous (look it up before placing it elsewhere), NoCapacity, InvalidRequest, ...
            Err(e) => eprintln!("not placed: {e}"),
        }
    }
    assert_eq!(placed.len(), 12);

    // 3. Containers finish: release them (exactly once, even if a reply is lost and retried).
    let done = &placed[..4];
    let released = sched.release(done).await?;
    assert_eq!(released.len(), 4);

    // 4. Drain a node for maintenance: it keeps what it holds and takes nothing new.
    repo.set_worker_status("node-a", WorkerStatus::Draining)
        .await?;
    let later = sched
        .schedule(ContainerRequest::new(
            "job-late",
            Resources::cpu_mem(1_000, 2_048),
        ))
        .await
        .expect("room on node-b or node-c");
    assert_ne!(later.worker_id, "node-a");
    Ok(())
}
// README-END

#[tokio::test]
async fn the_service_example_runs_on_memory() {
    service(sched_memory::MemoryRepository::new())
        .await
        .unwrap();
}

/// The README shows exactly the code between the markers above.
#[test]
fn readme_shows_this_example() {
    let me = include_str!("readme_service.rs");
    let start = me.find("// README-BEGIN\n").unwrap() + "// README-BEGIN\n".len();
    let end = me.find("// README-END").unwrap();
    let code = &me[start..end];
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
    match readme {
        Ok(readme) => assert!(
            readme.contains(code),
            "README.md's service example differs from tests/readme_service.rs"
        ),
        // Outside the workspace (a packaged crate) there is no README to compare.
        Err(e) => eprintln!("skipped: no workspace README ({e})"),
    }
}
