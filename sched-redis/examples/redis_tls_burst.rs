//! TLS overhead of a burst: `reserve_batch` of 100 containers onto 20 workers, 200 rounds
//! (each released again, untimed), on plain TCP (`REDIS_URL`, default `redis://127.0.0.1:6379`)
//! and over TLS (`REDIS_TLS_URL`, default `rediss://127.0.0.1:6390`, trusting
//! `$SCHED_TLS_DIR/ca.pem`); prints min / p50 / p90 of each. `-- fred` uses fred.
//!
//! ```text
//! cargo run --release -p sched-redis --features testing,fred --example redis_tls_burst [-- fred]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use sched_core::{
    CapacityReservation, CommitMode, ResourceReservation, Resources, WorkerRepository, WorkerSpec,
};
use sched_redis::{RedisConfig, RedisRepository, RedisTls};
use std::time::{Duration, Instant};

const ROUNDS: usize = 200;

fn burst(tag: &str) -> Vec<CapacityReservation> {
    (0..20)
        .map(|w| {
            let rs = (0..5)
                .map(|c| {
                    ResourceReservation::new(format!("{tag}{w}-{c}"), Resources::cpu_mem(100, 100))
                })
                .collect();
            CapacityReservation::new(format!("w{w}"), rs)
        })
        .collect()
}

async fn connect(cfg: &RedisConfig, fred: bool) -> RedisRepository {
    if fred {
        #[cfg(feature = "fred")]
        return RedisRepository::connect_fred(cfg).await.expect("connect");
    }
    RedisRepository::connect(cfg).await.expect("connect")
}

/// min, p50 and p90 of `ROUNDS` bursts on `cfg`.
async fn run(cfg: RedisConfig, fred: bool) -> [Duration; 3] {
    let repo = connect(&cfg, fred).await;
    for w in 0..20 {
        let spec = WorkerSpec::new(format!("w{w}"), Resources::cpu_mem(1 << 30, 1 << 30));
        repo.register_worker(&spec).await.expect("register");
    }
    repo.reserve_batch(&burst("warm"), CommitMode::AllOrNothing)
        .await
        .expect("warm-up");
    let mut took = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let batch = burst(&format!("r{round}-"));
        let t = Instant::now();
        let out = repo
            .reserve_batch(&batch, CommitMode::AllOrNothing)
            .await
            .expect("burst");
        took.push(t.elapsed());
        assert!(out.iter().all(|r| r.outcome.is_ok()), "{out:?}");
        let ids: Vec<String> = (batch.iter())
            .flat_map(|cr| cr.reservations.iter().map(|r| r.container_id.clone()))
            .collect();
        repo.release_batch(&ids).await.expect("release");
    }
    repo.delete_all_keys().await.expect("clean up");
    took.sort();
    [took[0], took[ROUNDS / 2], took[ROUNDS * 9 / 10]]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let fred = std::env::args().any(|a| a == "fred");
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let dir = env("SCHED_TLS_DIR", "/tmp/sched-tls");
    let prefix = || format!("sched-tls-burst-{:08x}", rand::random::<u32>());
    let plain =
        RedisConfig::from_url(env("REDIS_URL", "redis://127.0.0.1:6379")).with_prefix(prefix());
    let tls = RedisConfig::from_url(env("REDIS_TLS_URL", "rediss://127.0.0.1:6390"))
        .with_prefix(prefix())
        .with_tls(RedisTls::new().with_ca_file(format!("{dir}/ca.pem")));
    for (name, cfg) in [("tcp", plain), ("tls", tls)] {
        let [min, p50, p90] = run(cfg, fred).await;
        println!(
            "{} {name}: burst of 100 containers onto 20 workers, {ROUNDS} rounds: min {min:?} p50 {p50:?} p90 {p90:?}",
            if fred { "fred" } else { "redis-rs" }
        );
    }
}
