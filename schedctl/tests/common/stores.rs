//! A Redis prefix or a Postgres schema of its own per test, set up through the library, and
//! the `schedctl` arguments that point at it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures::FutureExt;
use sched_core::{
    CapacityReservation, CommitMode, ResourceReservation, Resources, WorkerRepository, WorkerSpec,
};
use sched_postgres::{PostgresConfig, PostgresRepository};
use sched_redis::{RedisConfig, RedisRepository};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// The awkward worker id of the fixture (spaces, braces, a colon, a quote).
pub const ODD: &str = "w 2:{x}'q";

/// A store as the library sees it, and how schedctl reaches it.
pub struct Lib {
    pub kind: Kind,
    /// `--backend … --redis-url … --prefix …` or `--backend postgres --database-url … --schema …`.
    pub args: Vec<String>,
}

/// The concrete repository.
pub enum Kind {
    Redis(RedisRepository),
    Postgres(PostgresRepository),
}

impl Lib {
    /// A fresh prefix on Redis (`backend` is `redis` or `redis-fred`; the library side uses
    /// redis-rs either way).
    pub async fn redis(url: &str, backend: &str) -> Lib {
        let prefix = super::fresh_name("redis");
        let repo =
            RedisRepository::connect(&RedisConfig::from_url(url).with_prefix(prefix.clone()))
                .await
                .expect("redis connects");
        Lib {
            kind: Kind::Redis(repo),
            args: [
                "--backend",
                backend,
                "--redis-url",
                url,
                "--prefix",
                &prefix,
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    /// A fresh prefix on a Redis Cluster (`urls` comma-separated seeds).
    pub async fn redis_cluster(urls: &str, backend: &str) -> Lib {
        let prefix = super::fresh_name("cluster");
        let config = RedisConfig::cluster(urls.split(',')).with_prefix(prefix.clone());
        let repo = RedisRepository::connect(&config)
            .await
            .expect("the cluster connects");
        Lib {
            kind: Kind::Redis(repo),
            args: [
                "--backend",
                backend,
                "--redis-cluster-urls",
                urls,
                "--prefix",
                &prefix,
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    /// A fresh schema on Postgres; migrated when `migrate`.
    pub async fn postgres(url: &str, migrate: bool) -> Lib {
        let schema = super::fresh_name("pg");
        let config = PostgresConfig::from_url(url)
            .unwrap()
            .with_schema(&schema)
            .unwrap()
            .with_max_connections(4);
        let repo = PostgresRepository::connect(config)
            .await
            .expect("postgres connects");
        if migrate {
            repo.migrate().await.unwrap();
        }
        Lib {
            kind: Kind::Postgres(repo),
            args: [
                "--backend",
                "postgres",
                "--database-url",
                url,
                "--schema",
                &schema,
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    /// The repository.
    pub fn repo(&self) -> &dyn WorkerRepository {
        match &self.kind {
            Kind::Redis(r) => r,
            Kind::Postgres(p) => p,
        }
    }

    /// The schema (Postgres) or prefix (Redis).
    pub fn namespace(&self) -> &str {
        &self.args[5]
    }

    /// Runs `schedctl` against this store.
    pub fn run(&self, args: &[&str]) -> super::Run {
        let mut all: Vec<&str> = self.args.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        super::schedctl(&all)
    }

    /// Overwrites a worker's stored free capacity (drift).
    pub async fn corrupt_free(&self, worker: &str, free: Resources) {
        let done = match &self.kind {
            Kind::Redis(r) => r.corrupt_free(worker, free).await,
            Kind::Postgres(p) => p.corrupt_free(worker, free).await,
        };
        assert!(done.unwrap(), "no worker {worker}");
    }

    /// Registers `w-1` (8000m 16384Mi, heartbeat timeout 1h) and [`ODD`] (4000m 8192Mi), and
    /// reserves `c-1` (leased 1h) and `c-2` on `w-1`, `c-3` on `ODD`.
    pub async fn seed(&self) {
        let repo = self.repo();
        repo.register_worker(
            &WorkerSpec::new("w-1", Resources::cpu_mem(8000, 16384))
                .with_heartbeat_timeout(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
        repo.register_worker(&WorkerSpec::new(ODD, Resources::cpu_mem(4000, 8192)))
            .await
            .unwrap();
        let r = |id: &str| ResourceReservation::new(id, Resources::cpu_mem(500, 512));
        let out = repo
            .reserve_batch(
                &[
                    CapacityReservation::new(
                        "w-1",
                        vec![r("c-1").with_lease(Duration::from_secs(3600)), r("c-2")],
                    ),
                    CapacityReservation::new(ODD, vec![r("c-3")]),
                ],
                CommitMode::AllOrNothing,
            )
            .await
            .unwrap();
        assert!(out.iter().all(|w| w.outcome.is_ok()), "{out:?}");
    }

    /// Everything the store holds for this test: workers and their ledgers.
    pub async fn snapshot(&self) -> Vec<(sched_core::Worker, Vec<sched_core::ReservationRecord>)> {
        let mut out = Vec::new();
        for w in self.repo().list_workers(None).await.unwrap() {
            let ledger = self.repo().list_reservations(&w.id).await.unwrap();
            out.push((w, ledger));
        }
        out
    }

    /// Removes everything the test wrote, then re-raises the test's panic, if any.
    pub async fn finish(self, result: std::thread::Result<()>) {
        match &self.kind {
            Kind::Redis(r) => {
                r.delete_all_keys().await.unwrap();
            }
            Kind::Postgres(p) => {
                p.drop_schema().await.unwrap();
                p.close().await;
            }
        }
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Runs a scenario, catching its panic for [`Lib::finish`].
pub async fn catch(body: impl Future<Output = ()>) -> std::thread::Result<()> {
    AssertUnwindSafe(body).catch_unwind().await
}
