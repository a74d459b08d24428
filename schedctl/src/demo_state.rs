//! The memory backend's demo state: the same small store in every run, on a manual clock, so
//! that every command has something to show and the output is reproducible.
//!
//! At 11:50 UTC on 2026-01-01 four workers register and take reservations; at 11:59:55
//! `node-a` heartbeats; the clock then stands at 12:00:00 for the rest of the run:
//!
//! | worker  | pool | status   | heartbeat                    | reservations |
//! |---------|------|----------|------------------------------|--------------|
//! | node-a  | cpu  | available| timeout 1m, fresh (5 s ago)  | `web-1` (lease, 20 m left), `web-2` (lease ran out 5 m ago), `db-1` (no lease) |
//! | node-b  | cpu  | draining | not tracked                  | `batch-1` (lease, 50 m left), `batch-2` (no lease) |
//! | node-c  | cpu  | available| timeout 2m, stale (10 m ago), policy `release` | `cache-1` (no lease), `cache-2` (lease, 50 m left) |
//! | gpu-a   | gpu  | available| not tracked                  | `train-1` (2 GPUs, lease, 50 m left) |

use sched_core::{
    CapacityReservation, CommitMode, ResourceReservation, Resources, StalePolicy, WorkerRepository,
    WorkerSpec, WorkerStatus,
};
use sched_memory::{Clock, ManualClock, MemoryRepository};
use std::time::Duration;

/// The demo clock: 2026-01-01T12:00:00Z.
pub const DEMO_NOW_MS: u64 = 1_767_268_800_000;

const MIN: Duration = Duration::from_secs(60);

/// The demo's workers.
fn workers() -> Vec<WorkerSpec> {
    vec![
        WorkerSpec::new("node-a", Resources::cpu_mem(8000, 16384))
            .with_pool("cpu")
            .with_heartbeat_timeout(MIN),
        WorkerSpec::new("node-b", Resources::cpu_mem(8000, 16384)).with_pool("cpu"),
        WorkerSpec::new("node-c", Resources::cpu_mem(4000, 8192))
            .with_pool("cpu")
            .with_heartbeat_timeout(2 * MIN)
            .with_stale_policy(StalePolicy::Release),
        WorkerSpec::new("gpu-a", Resources::new(16000, 65536, 4))
            .with_pool("gpu")
            .with_gpu_type("a100"),
    ]
}

/// `(worker, container, resources, lease)` of the demo's reservations.
fn reservations() -> Vec<CapacityReservation> {
    let r = |id: &str, cpu, mem, lease: Option<Duration>| {
        let r = ResourceReservation::new(id, Resources::cpu_mem(cpu, mem));
        match lease {
            Some(l) => r.with_lease(l),
            None => r,
        }
    };
    vec![
        CapacityReservation::new(
            "node-a",
            vec![
                r("web-1", 500, 512, Some(30 * MIN)),
                r("web-2", 500, 512, Some(5 * MIN)),
                r("db-1", 2000, 4096, None),
            ],
        ),
        CapacityReservation::new(
            "node-b",
            vec![
                r("batch-1", 1000, 2048, Some(60 * MIN)),
                r("batch-2", 1000, 2048, None),
            ],
        ),
        CapacityReservation::new(
            "node-c",
            vec![
                r("cache-1", 1000, 1024, None),
                r("cache-2", 500, 512, Some(60 * MIN)),
            ],
        ),
        CapacityReservation::new(
            "gpu-a",
            vec![
                ResourceReservation::new("train-1", Resources::new(8000, 32768, 2))
                    .with_gpu_type("a100")
                    .with_lease(60 * MIN),
            ],
        ),
    ]
}

/// Builds the demo store; with `drift`, `gpu-a`'s stored free capacity is 1000 mCPU and 1 GPU
/// short (as a lost release would leave it; see [`corrupt`]). Seeding a fresh memory store with valid input
/// cannot fail; a failure would only be logged.
pub async fn seed(drift: bool) -> (MemoryRepository, ManualClock) {
    let clock = ManualClock::new(DEMO_NOW_MS - 10 * 60_000);
    let repo = MemoryRepository::with_clock(Clock::Manual(clock.clone()));
    for spec in workers() {
        if let Err(e) = repo.register_worker(&spec).await {
            tracing::warn!(worker = %spec.id, error = %e, "demo state: register failed");
        }
    }
    if let Err(e) = repo
        .reserve_batch(&reservations(), CommitMode::AllOrNothing)
        .await
    {
        tracing::warn!(error = %e, "demo state: reserve failed");
    }
    if let Err(e) = repo
        .set_worker_status("node-b", WorkerStatus::Draining)
        .await
    {
        tracing::warn!(error = %e, "demo state: drain failed");
    }
    clock.set(DEMO_NOW_MS - 5_000);
    if let Err(e) = repo.heartbeat("node-a").await {
        tracing::warn!(error = %e, "demo state: heartbeat failed");
    }
    clock.set(DEMO_NOW_MS);
    if drift {
        corrupt(&repo).await;
    }
    (repo, clock)
}

/// Simulates drift on `gpu-a`: its stored free capacity 1000 mCPU and 1 GPU short of what its
/// ledger says (leaked). Returns false when `gpu-a` is gone.
pub async fn corrupt(repo: &MemoryRepository) -> bool {
    match repo.get_worker("gpu-a").await {
        Ok(Some(w)) => {
            repo.corrupt_free("gpu-a", w.free.saturating_sub(&Resources::new(1000, 0, 1)))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn the_demo_state_is_as_documented() {
        let (repo, clock) = seed(false).await;
        assert_eq!(clock.now_ms(), DEMO_NOW_MS);
        let ws = repo.list_workers(None).await.unwrap();
        let ids: Vec<_> = ws.iter().map(|w| w.id.as_str()).collect();
        assert_eq!(ids, ["gpu-a", "node-a", "node-b", "node-c"]);
        let by = |id: &str| ws.iter().find(|w| w.id == id).unwrap().clone();
        assert!(!by("node-a").stale);
        assert!(by("node-c").stale);
        assert_eq!(by("node-b").status, WorkerStatus::Draining);
        let ledger = repo.list_reservations("node-a").await.unwrap();
        assert_eq!(ledger.len(), 3);
        for id in ["gpu-a", "node-a", "node-b", "node-c"] {
            assert!(repo.audit(id).await.unwrap().is_consistent());
        }
        let (drifted, _) = seed(true).await;
        assert!(!drifted.audit("gpu-a").await.unwrap().is_consistent());
    }
}
