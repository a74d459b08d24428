//! Quickstart on the in-memory backend: register 4 workers, place a burst of 20 containers with
//! the `Scheduler`, release them, check every worker's capacity is back, drain and remove the
//! workers. Exits non-zero on any failure. The same scenario runs against Redis and Postgres in
//! `sched-redis/examples/redis_quickstart.rs` and `sched-postgres/examples/pg_quickstart.rs`.
//!
//! ```text
//! cargo run -p sched-memory --example memory_quickstart
//! ```
#![allow(clippy::print_stdout)]

use sched_core::layers::Traced;
use sched_core::{
    AuditMode, ContainerRequest, Resources, Scheduler, SchedulerConfig, WorkerRepository,
    WorkerSpec, WorkerStatus,
};
use sched_memory::MemoryRepository;
use std::collections::BTreeMap;
use std::error::Error;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const WORKERS: [&str; 4] = ["node-a", "node-b", "node-c", "node-d"];
const BURST: usize = 20;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Res<()> {
    // `RUST_LOG=info` shows one `sched.repo` span per store call (backend, workers, round trips).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .init();
    let repo = Traced::new(MemoryRepository::new());
    let total = Resources::cpu_mem(8_000, 32_768);
    for id in WORKERS {
        repo.register_worker(&WorkerSpec::new(id, total)).await?;
    }

    let sched = Scheduler::new(repo.get_ref().clone(), SchedulerConfig::default());
    let burst = (0..BURST)
        .map(|i| ContainerRequest::new(format!("job-{i}"), Resources::cpu_mem(1_000, 2_048)))
        .collect();
    let mut placed = Vec::new();
    let mut per_worker: BTreeMap<String, usize> = BTreeMap::new();
    for result in sched.schedule_batch(burst).await {
        let p = result.map_err(|e| format!("not placed: {e}"))?;
        *per_worker.entry(p.worker_id).or_default() += 1;
        placed.push(p.container_id);
    }
    let mut held = 0;
    for id in WORKERS {
        held += repo.list_reservations(id).await?.len();
    }
    if placed.len() != BURST || held != BURST {
        return Err(format!("{} placed, {held} held, of {BURST}", placed.len()).into());
    }

    let released = sched.release(&placed).await?;
    if released.len() != BURST || released.iter().any(|r| r.released.is_none()) {
        return Err(format!("released {released:?}").into());
    }
    for id in WORKERS {
        let audit = repo.audit_worker(id, AuditMode::Check).await?;
        let worker = repo.get_worker(id).await?.ok_or(format!("{id} is gone"))?;
        if audit.reservations != 0 || !audit.drift.is_zero() || worker.free != worker.total {
            return Err(format!("{id} not back to total: {audit:?}").into());
        }
        repo.set_worker_status(id, WorkerStatus::Draining).await?;
        if !repo.remove_worker(id).await? {
            return Err(format!("{id} was not removed").into());
        }
    }
    let commits = repo.get_ref().counters().snapshot();
    println!(
        "placed {BURST} containers on {} workers ({per_worker:?}) in {} reserve call(s), released them all, capacity back to total; drained and removed the workers",
        WORKERS.len(),
        commits.reserve_calls
    );
    Ok(())
}
