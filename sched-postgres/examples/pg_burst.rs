//! Times one `reserve_batch` of 100 containers onto 20 workers (one statement) against one
//! `SELECT 1`, on a throw-away schema.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run --release -p sched-postgres --example pg_burst
//! ```
//!
//! With `track_functions = 'pl'` set for the database, it also prints the server time per call
//! of the burst and release functions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sched_core::{
    CapacityReservation, CommitMode, ResourceReservation, Resources, WorkerRepository, WorkerSpec,
};
use sched_postgres::{PostgresConfig, PostgresRepository};
use std::time::{Duration, Instant};

const WORKERS: usize = 20;
const PER_WORKER: usize = 5;
const ROUNDS: usize = 200;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn line(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "{name:<44} p50 {:>8.1} µs   p90 {:>8.1} µs   p99 {:>8.1} µs   (n={})",
        pct(&v, 0.5).as_secs_f64() * 1e6,
        pct(&v, 0.9).as_secs_f64() * 1e6,
        pct(&v, 0.99).as_secs_f64() * 1e6,
        v.len()
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("sched_burst_{}", std::process::id());
    let config = PostgresConfig::from_url(&url)?
        .with_schema(&schema)?
        .with_max_connections(1);
    let repo = PostgresRepository::connect(config).await?;
    repo.migrate().await?;

    let workers: Vec<String> = (0..WORKERS).map(|i| format!("worker-{i:02}")).collect();
    for w in &workers {
        repo.register_worker(&WorkerSpec::new(
            w.clone(),
            Resources::cpu_mem(64_000, 262_144),
        ))
        .await?;
    }
    let burst = |round: usize| -> Vec<CapacityReservation> {
        workers
            .iter()
            .enumerate()
            .map(|(i, w)| {
                CapacityReservation::new(
                    w.clone(),
                    (0..PER_WORKER)
                        .map(|j| {
                            ResourceReservation::new(
                                format!("r{round}-c{i}-{j}"),
                                Resources::cpu_mem(100, 128),
                            )
                        })
                        .collect(),
                )
            })
            .collect()
    };

    let mut select1 = Vec::with_capacity(ROUNDS);
    let mut reserve = Vec::with_capacity(ROUNDS);
    let mut release = Vec::with_capacity(ROUNDS);
    let counters = repo.counters();
    // warm-up: prepare statements on the connection, fill caches
    for round in 0..20 {
        let b = burst(1_000_000 + round);
        repo.reserve_batch(&b, CommitMode::AllOrNothing).await?;
        let ids: Vec<String> = b
            .iter()
            .flat_map(|c| c.reservations.iter().map(|r| r.container_id.clone()))
            .collect();
        repo.release_batch(&ids).await?;
        repo.ping().await?;
    }
    let before = counters.snapshot();
    for round in 0..ROUNDS {
        select1.push(repo.ping().await?);
        let b = burst(round);
        let t = Instant::now();
        let out = repo.reserve_batch(&b, CommitMode::AllOrNothing).await?;
        reserve.push(t.elapsed());
        assert!(out.iter().all(|r| r.outcome.is_ok()));
        let ids: Vec<String> = b
            .iter()
            .flat_map(|c| c.reservations.iter().map(|r| r.container_id.clone()))
            .collect();
        let t = Instant::now();
        repo.release_batch(&ids).await?;
        release.push(t.elapsed());
    }
    let d = counters.snapshot().since(&before);
    println!("sched-postgres burst timing, schema {schema}, one pooled connection");
    line("SELECT 1", select1.clone());
    line(
        &format!(
            "reserve_batch {} containers / {WORKERS} workers",
            WORKERS * PER_WORKER
        ),
        reserve.clone(),
    );
    line(
        &format!("release_batch {} containers", WORKERS * PER_WORKER),
        release,
    );
    select1.sort();
    reserve.sort();
    println!(
        "reserve_batch / SELECT 1 (p50): {:.1}x; round trips per reserve+release+ping: {:.2}",
        pct(&reserve, 0.5).as_secs_f64() / pct(&select1, 0.5).as_secs_f64(),
        d.round_trips as f64 / ROUNDS as f64
    );
    // Server time inside the burst and release functions, when the server tracks PL functions
    // (`ALTER DATABASE <db> SET track_functions = 'pl'` before the run; stats of a backend are
    // published when it goes idle, within about a second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (name, (calls, ms)) in repo.function_usec().await? {
        if calls > 0 && (name.contains("reserve") || name.contains("release")) {
            println!(
                "server time {name:<28} {calls:>5} calls, {:>8.1} µs per call",
                ms * 1000.0 / calls as f64
            );
        }
    }
    repo.drop_schema().await?;
    Ok(())
}
