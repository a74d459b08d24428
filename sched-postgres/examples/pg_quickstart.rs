//! Quick start: configure from the environment, migrate, register 4 workers, place a burst of
//! 20 containers with sched-core's `Scheduler`, release them, check that every worker's
//! capacity is back, remove the workers. It works in a schema of its own
//! (`quickstart_<pid>`), dropped at the end, and exits non-zero on any failure.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run -p sched-postgres --example pg_quickstart
//! ```
//!
//! The other `SCHED_PG_*` variables of `PostgresConfig::from_env` apply too (the schema is
//! always this run's own).

use sched_core::{
    ContainerRequest, Resources, Scheduler, SchedulerConfig, WorkerRepository, WorkerSpec,
};
use sched_postgres::{PostgresConfig, PostgresRepository};
use sqlx::Connection;
use std::error::Error;
use std::time::Instant;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const WORKERS: usize = 4;
const CONTAINERS: usize = 20;

/// Fails the run with `msg` unless `ok`.
fn check(ok: bool, msg: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(msg().into())
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match quickstart().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn quickstart() -> Result<()> {
    let schema = format!("quickstart_{}", std::process::id());
    let config = PostgresConfig::from_env()?.with_schema(&schema)?;
    println!(
        "PostgreSQL at {}:{} as {:?}, schema {schema}",
        config.host(),
        config.port(),
        config.user()
    );
    let repo = PostgresRepository::connect(config).await?;
    repo.migrate().await?;
    let outcome = run(&repo).await;
    repo.close().await;
    // Drop this run's schema whatever happened (the library has no public call for it: a
    // destructive operation, kept to its `testing` hooks).
    let dropped = drop_schema(&schema).await;
    outcome?;
    dropped?;
    println!("ok: schema {schema} dropped");
    Ok(())
}

async fn run(repo: &PostgresRepository) -> Result<()> {
    let total = Resources::cpu_mem(8_000, 16_384);
    let workers: Vec<String> = (0..WORKERS).map(|i| format!("worker-{i}")).collect();
    for w in &workers {
        repo.register_worker(&WorkerSpec::new(w.as_str(), total))
            .await?;
    }

    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let burst = (0..CONTAINERS)
        .map(|i| ContainerRequest::new(format!("job-{i:02}"), Resources::cpu_mem(1_000, 2_048)))
        .collect();
    let start = Instant::now();
    let mut placed = Vec::new();
    for result in sched.schedule_batch(burst).await {
        placed.push(result?);
    }
    let took = start.elapsed();
    check(placed.len() == CONTAINERS, || {
        format!("{} of {CONTAINERS} placed", placed.len())
    })?;
    for w in &workers {
        let n = placed.iter().filter(|p| &p.worker_id == w).count();
        println!("  {w}: {n} containers");
    }
    println!("placed {CONTAINERS} containers on {WORKERS} workers in {took:?}");

    let ids: Vec<String> = placed.iter().map(|p| p.container_id.clone()).collect();
    let released = sched.release(&ids).await?;
    let freed = released.iter().filter(|r| r.released.is_some()).count();
    check(freed == CONTAINERS, || {
        format!("{freed} of {CONTAINERS} released")
    })?;

    for w in &workers {
        let worker = repo
            .get_worker(w)
            .await?
            .ok_or_else(|| format!("{w} is gone"))?;
        check(worker.free == total, || {
            format!("{w}: free {:?}, expected {total:?}", worker.free)
        })?;
        let audit = repo.audit(w).await?;
        check(audit.is_consistent() && audit.reservations == 0, || {
            format!("{w}: audit {audit:?}")
        })?;
    }
    println!("released {freed}; every worker is back to its total capacity");

    for w in &workers {
        check(repo.remove_worker(w).await?, || {
            format!("{w} was not there")
        })?;
    }
    let left = repo.list_workers(None).await?;
    check(left.is_empty(), || format!("{} workers left", left.len()))?;
    println!("removed {WORKERS} workers");
    Ok(())
}

/// `DROP SCHEMA … CASCADE` on a plain connection to `DATABASE_URL`.
async fn drop_schema(schema: &str) -> Result<()> {
    let url = std::env::var("DATABASE_URL")?;
    let mut conn = sqlx::PgConnection::connect(&url).await?;
    // `schema` is a validated identifier (`with_schema` accepted it).
    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}
