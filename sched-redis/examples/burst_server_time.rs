//! Prints the server time of a burst of 100 containers onto 20 workers through `reserve_batch`
//! on one Redis node: `INFO commandstats` usec of `evalsha` around each burst (released after
//! each, so the ledgers stay small), min / median / p90 of 200 bursts. Not a check of speed.
//! The counters are server-wide: run it alone on a private server, e.g.
//!
//! ```text
//! redis-server --port 6395 --save "" --appendonly no --daemonize yes
//! REDIS_URL=redis://127.0.0.1:6395 cargo run --release -p sched-redis --features testing \
//!     --example burst_server_time
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use sched_core::{
    CapacityReservation, CommitMode, ResourceReservation, Resources, WorkerRepository, WorkerSpec,
};
use sched_redis::{RedisConfig, RedisRepository};

const ROUNDS: usize = 200;

fn burst(workers: usize, per: usize, tag: &str) -> Vec<CapacityReservation> {
    (0..workers)
        .map(|w| {
            let rs = (0..per)
                .map(|c| {
                    ResourceReservation::new(format!("{tag}{w}-{c}"), Resources::cpu_mem(100, 100))
                })
                .collect();
            CapacityReservation::new(format!("w{w}"), rs)
        })
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let prefix = format!("sched-server-time-{:08x}", rand::random::<u32>());
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let repo = RedisRepository::connect(&RedisConfig::from_url(url).with_prefix(prefix))
        .await
        .expect("connect");
    for w in 0..20 {
        let spec = WorkerSpec::new(format!("w{w}"), Resources::cpu_mem(1 << 30, 1 << 30));
        repo.register_worker(&spec).await.expect("register");
    }
    repo.reserve_batch(&burst(20, 1, "warm"), CommitMode::AllOrNothing)
        .await
        .expect("warm-up burst");
    let mut usec = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let batch = burst(20, 5, &format!("r{round}-"));
        let before = repo.command_usec().await.expect("commandstats");
        let out = repo
            .reserve_batch(&batch, CommitMode::AllOrNothing)
            .await
            .expect("burst");
        let after = repo.command_usec().await.expect("commandstats");
        assert!(out.iter().all(|r| r.outcome.is_ok()), "{out:?}");
        let (a, b) = (after.get("evalsha"), before.get("evalsha"));
        usec.push(a.map_or(0, |a| a.1).saturating_sub(b.map_or(0, |b| b.1)));
        let ids: Vec<String> = (batch.iter())
            .flat_map(|cr| cr.reservations.iter().map(|r| r.container_id.clone()))
            .collect();
        repo.release_batch(&ids).await.expect("release");
    }
    repo.delete_all_keys().await.expect("clean up");
    usec.sort_unstable();
    println!(
        "evalsha usec per burst of 100 containers onto 20 workers: min {} median {} p90 {}",
        usec[0],
        usec[ROUNDS / 2],
        usec[ROUNDS * 9 / 10]
    );
}
