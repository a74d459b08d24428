//! Times one `reserve_batch` of 100 containers onto 20 workers against one `PING`-sized round
//! trip, on `REDIS_URL` (default `redis://127.0.0.1:6379`) or on a cluster when
//! `REDIS_CLUSTER_URLS` is set. Uses its own random key prefix and deletes it afterwards.
//!
//! ```text
//! cargo run --release -p sched-redis --example redis_burst [--features fred] [-- fred]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use sched_core::{
    CapacityReservation, CommitMode, ResourceReservation, Resources, WorkerRepository, WorkerSpec,
};
use sched_redis::{RedisConfig, RedisRepository};
use std::time::{Duration, Instant};

const ROUNDS: usize = 200;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let prefix = format!("sched-burst-{:08x}", rand::random::<u32>());
    let cfg = match std::env::var("REDIS_CLUSTER_URLS") {
        Ok(urls) if !urls.is_empty() => RedisConfig::cluster(urls.split(',').map(str::to_owned)),
        _ => RedisConfig::from_url(
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
        ),
    }
    .with_prefix(prefix);
    let use_fred = std::env::args().any(|a| a == "fred");
    let repo = if use_fred {
        #[cfg(feature = "fred")]
        {
            RedisRepository::connect_fred(&cfg).await.expect("connect")
        }
        #[cfg(not(feature = "fred"))]
        {
            eprintln!("the fred client needs: --features fred");
            std::process::exit(2)
        }
    } else {
        RedisRepository::connect(&cfg).await.expect("connect")
    };
    for w in 0..20 {
        repo.register_worker(&WorkerSpec::new(
            format!("w{w}"),
            Resources::cpu_mem(1_000_000, 1_000_000),
        ))
        .await
        .expect("register");
    }
    let mut ping = Vec::with_capacity(ROUNDS);
    let mut reserve = Vec::with_capacity(ROUNDS);
    let mut release = Vec::with_capacity(ROUNDS);
    let before = repo.counters().snapshot();
    for round in 0..ROUNDS {
        let t = Instant::now();
        repo.ping().await.expect("ping");
        ping.push(t.elapsed());
        let batch: Vec<_> = (0..20)
            .map(|w| {
                CapacityReservation::new(
                    format!("w{w}"),
                    (0..5)
                        .map(|c| {
                            ResourceReservation::new(
                                format!("r{round}-c{w}-{c}"),
                                Resources::cpu_mem(10, 10),
                            )
                        })
                        .collect(),
                )
            })
            .collect();
        let t = Instant::now();
        let out = repo
            .reserve_batch(&batch, CommitMode::AllOrNothing)
            .await
            .expect("reserve");
        reserve.push(t.elapsed());
        assert!(out.iter().all(|r| r.outcome.is_ok()));
        let ids: Vec<String> = batch
            .iter()
            .flat_map(|c| c.reservations.iter().map(|r| r.container_id.clone()))
            .collect();
        let t = Instant::now();
        repo.release_batch(&ids).await.expect("release");
        release.push(t.elapsed());
    }
    let d = repo.counters().snapshot().since(&before);
    println!(
        "client={} cluster={} rounds={ROUNDS}",
        repo.backend_name(),
        repo.is_cluster()
    );
    println!(
        "ping (1 round trip)                     median {:?}",
        median(ping)
    );
    println!(
        "reserve_batch 100 containers/20 workers median {:?}",
        median(reserve)
    );
    println!(
        "release_batch 100 containers            median {:?}",
        median(release)
    );
    println!(
        "round trips per round (ping + reserve + release): {:.2}",
        d.round_trips as f64 / ROUNDS as f64
    );
    repo.delete_all_keys().await.expect("clean up");
}
