//! Connection faults from the server's side: while a stream of bursts runs through a
//! [`Scheduler`](sched_core::Scheduler) on a `RedisRepository` (redis-rs always, fred with the
//! `fred` feature), a separate admin connection kills the repository's connections with
//! `CLIENT KILL`, sometimes as the burst starts and mostly a few random milliseconds into it
//! (while its `reserve_batch` pipeline, the worker-list read or the lost-reply resolution is on
//! the wire).
//!
//! **Targeting.** Neither client can name its connections on Redis 7.0 (redis-rs 1.8 only sends
//! `CLIENT SETINFO LIB-NAME`, which 7.0 ignores; fred names them with a random id it picks
//! itself). So each test creates its own ACL user (`ACL SETUSER sched-kill-<random> on >pw ~* &*
//! +@all`), connects the repository as that user, and kills with `CLIENT KILL USER <that user>`:
//! only this test's connections are hit, never the admin connection nor other tests or
//! processes sharing the server (the tests of this file run in parallel with each other, and other
//! crates' suites may run against the same Redis). The user is deleted when the test ends.
//! This needs an admin connection allowed to run `ACL SETUSER` and `CLIENT KILL` (the default
//! user of a stock `redis-server`).
//!
//! **Checks**, per client: every container of every burst is placed, or, if it ended in an
//! error (`RetriesExhausted`), it is held nowhere (`find_reservation` is `None`); the
//! invariants of [`sched_tests::faults::verify`] are clean (no container held twice, no
//! overcommit, every placement held where the scheduler said); `find_reservation` agrees with
//! the ledgers for every container ever sent; audit drift is zero on every worker; and the
//! kills did fire (connections killed > 0, some while a `reserve_batch` was in flight).
//!
//! Needs `REDIS_URL` (skips with a message when unset, fails under `CI=true`). Run with
//! `REDIS_URL=redis://127.0.0.1:6379 cargo test -p sched-redis --features fred --test client_kill
//! -- --nocapture` to see the counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[allow(unused_macros)]
mod common;

use common::Kind;
use sched_core::WorkerRepository;
use sched_redis::{RedisConfig, RedisRepository};
use sched_tests::kill::{run_kill_mid_stream, BURSTS, PER_BURST};
use std::sync::Arc;

/// This test's ACL user and key prefix; deletes both when dropped (even on panic).
struct KillTarget {
    admin_url: String,
    user: String,
    /// The test's configuration without the test user's credentials (for clean-up).
    base: RedisConfig,
    kind: Kind,
}

impl KillTarget {
    async fn create(kind: Kind, test: &str) -> Option<(KillTarget, RedisConfig)> {
        let admin_url = sched_tests::env::require_url("REDIS_URL", test)?;
        let base = common::config(common::Topology::Single, test)?;
        let user = format!("sched-kill-{}", sched_tests::ns::random_hex());
        let password = sched_tests::ns::random_hex();
        let mut admin = admin(&admin_url).await;
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&user)
            .arg("on")
            .arg(format!(">{password}"))
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .query_async(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("{test}: ACL SETUSER on REDIS_URL failed: {e}"));
        let cfg = base.clone().with_credentials(&user, password);
        Some((
            KillTarget {
                admin_url,
                user,
                base,
                kind,
            },
            cfg,
        ))
    }
}

impl Drop for KillTarget {
    fn drop(&mut self) {
        let (url, user, base, kind) = (
            self.admin_url.clone(),
            self.user.clone(),
            self.base.clone(),
            self.kind,
        );
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut a = admin(&url).await;
                let _: i64 = redis::cmd("ACL")
                    .arg("DELUSER")
                    .arg(&user)
                    .query_async(&mut a)
                    .await
                    .expect("ACL DELUSER");
                let repo = common::connect(kind, &base).await.expect("connect");
                repo.delete_all_keys().await.expect("delete test keys");
            });
        })
        .join();
        if done.is_err() && !std::thread::panicking() {
            panic!("clean-up of ACL user {} failed", self.user);
        }
    }
}

async fn admin(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("REDIS_URL parses")
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection to REDIS_URL")
}

async fn kill_mid_stream(kind: Kind, test: &str) {
    let Some((target, cfg)) = KillTarget::create(kind, test).await else {
        return;
    };
    let repo: RedisRepository = common::connect(kind, &cfg)
        .await
        .expect("connect as the test user");
    let repo: Arc<dyn WorkerRepository> = Arc::new(repo);
    let admin_conn = admin(&target.admin_url).await;
    // One burst in four as it starts, the others a random 1-4 ms into it.
    let k = run_kill_mid_stream(repo, test, 4, {
        let user = target.user.clone();
        move || {
            let (user, mut admin) = (user.clone(), admin_conn.clone());
            async move {
                let n: u64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("USER")
                    .arg(&user)
                    .query_async(&mut admin)
                    .await
                    .expect("CLIENT KILL USER");
                n
            }
        }
    })
    .await;
    eprintln!(
        "{test}: {BURSTS} bursts x {PER_BURST} containers; CLIENT KILL commands {}, connections \
         killed {}, kills while a reserve_batch was in flight {}; {k}",
        k.commands, k.killed, k.while_reserving,
    );
    assert!(k.run.faults > 0, "the kills fired: {:?}", k.run);
    k.assert_consistent();
    // The repository was dropped inside the run: now delete the user and the keys.
    drop(target);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_mid_stream_redis_rs() {
    kill_mid_stream(Kind::RedisRs, "client_kill_mid_stream_redis_rs").await;
}

#[cfg(feature = "fred")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_mid_stream_fred() {
    kill_mid_stream(Kind::Fred, "client_kill_mid_stream_fred").await;
}
