//! TLS overhead of a burst: the p50 latency of a 100-container `reserve_batch` (20 workers × 5,
//! one statement) over plain TCP (`DATABASE_URL`) and over TLS (`DATABASE_TLS_URL`, with
//! `sslmode=require` unless the URL sets one), 200 bursts per run after a warm-up, runs of the
//! two interleaved; prints min and median of the runs' p50s and `/proc/loadavg`.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//! DATABASE_TLS_URL=postgres://postgres@127.0.0.1:5433/test \
//!   cargo run --release -p sched-postgres --example pg_tls_burst [RUNS]
//! ```
//!
//! The two URLs are usually two server instances: same machine and version, but not the same
//! process or configuration, so the difference is TLS plus whatever else differs between them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sched_core::{
    CapacityReservation, CommitMode, ResourceReservation, Resources, WorkerRepository, WorkerSpec,
};
use sched_postgres::{PostgresConfig, PostgresRepository};
use std::time::{Duration, Instant};

const WORKERS: usize = 20;
const PER_WORKER: usize = 5;
const ROUNDS: usize = 200;
const WARM_UP: usize = 20;

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One run: a fresh schema, 20 workers, warm-up, then `ROUNDS` bursts (each released after).
/// Returns the p50 of `reserve_batch` and of `ping`.
async fn run(url: &str, tag: &str) -> Result<(Duration, Duration), Box<dyn std::error::Error>> {
    let schema = format!("sched_tlsburst_{tag}_{}", std::process::id());
    let config = PostgresConfig::from_url(url)?
        .with_schema(&schema)?
        .with_max_connections(1);
    let repo = PostgresRepository::connect(config).await?;
    repo.migrate().await?;
    let workers: Vec<String> = (0..WORKERS).map(|i| format!("worker-{i:02}")).collect();
    for w in &workers {
        let spec = WorkerSpec::new(w.clone(), Resources::cpu_mem(64_000, 262_144));
        repo.register_worker(&spec).await?;
    }
    let burst = |round: usize| -> Vec<CapacityReservation> {
        let part = |(i, w): (usize, &String)| {
            let items = (0..PER_WORKER)
                .map(|j| {
                    let id = format!("r{round}-c{i}-{j}");
                    ResourceReservation::new(id, Resources::cpu_mem(100, 128))
                })
                .collect();
            CapacityReservation::new(w.clone(), items)
        };
        workers.iter().enumerate().map(part).collect()
    };
    let (mut reserve, mut ping) = (Vec::new(), Vec::new());
    for round in 0..WARM_UP + ROUNDS {
        let b = burst(round);
        let t = Instant::now();
        let out = repo.reserve_batch(&b, CommitMode::AllOrNothing).await?;
        let took = t.elapsed();
        assert!(out.iter().all(|r| r.outcome.is_ok()));
        let ids: Vec<String> = b
            .iter()
            .flat_map(|c| c.reservations.iter().map(|r| r.container_id.clone()))
            .collect();
        repo.release_batch(&ids).await?;
        let p = repo.ping().await?;
        if round >= WARM_UP {
            reserve.push(took);
            ping.push(p);
        }
    }
    repo.drop_schema().await?;
    Ok((median(reserve), median(ping)))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = std::env::args().nth(1).map_or(Ok(3), |a| a.parse())?;
    let plain = std::env::var("DATABASE_URL")?;
    let mut tls = url::Url::parse(&std::env::var("DATABASE_TLS_URL")?)?;
    if !tls.query_pairs().any(|(k, _)| k == "sslmode") {
        tls.query_pairs_mut().append_pair("sslmode", "require");
    }
    let targets = [("plain", plain), ("tls", tls.to_string())];
    println!("loadavg before: {}", loadavg());
    let mut p50s: Vec<Vec<(Duration, Duration)>> = vec![Vec::new(); targets.len()];
    for i in 0..runs {
        for (k, (tag, url)) in targets.iter().enumerate() {
            let (r, p) = run(url, tag).await?;
            println!(
                "run {i} {tag:<5} reserve_batch p50 {:>8.1} µs   ping p50 {:>6.1} µs",
                us(r),
                us(p)
            );
            p50s[k].push((r, p));
        }
    }
    println!("loadavg after: {}", loadavg());
    let mut medians = Vec::new();
    for ((tag, _), v) in targets.iter().zip(p50s) {
        let r: Vec<Duration> = v.iter().map(|x| x.0).collect();
        let p: Vec<Duration> = v.iter().map(|x| x.1).collect();
        let (rmin, rmed) = (*r.iter().min().unwrap(), median(r));
        let (pmin, pmed) = (*p.iter().min().unwrap(), median(p));
        println!(
            "{tag:<5} reserve_batch {}×{PER_WORKER} p50 over {runs} runs: min {:>8.1} µs, median {:>8.1} µs; ping p50 min {:>6.1} µs, median {:>6.1} µs",
            WORKERS,
            us(rmin),
            us(rmed),
            us(pmin),
            us(pmed)
        );
        medians.push((rmin, rmed));
    }
    let (plain, tls) = (medians[0], medians[1]);
    println!(
        "TLS - plain: min {:+.1} µs, median {:+.1} µs",
        us(tls.0) - us(plain.0),
        us(tls.1) - us(plain.1)
    );
    Ok(())
}
