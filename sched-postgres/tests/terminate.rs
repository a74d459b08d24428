//! Connection faults from the server's side: while a stream of bursts runs through a
//! [`Scheduler`](sched_core::Scheduler) on a `PostgresRepository`, a separate admin connection
//! terminates the repository's backends with `pg_terminate_backend`, sometimes as the burst
//! starts and mostly a few random milliseconds into it (while its `reserve_batch` call, the
//! worker-list read or the lost-reply resolution is running on the server).
//!
//! **Targeting.** The repository's connections carry a unique `application_name`
//! (`sched-terminate-<random>`, set with [`PostgresConfig::with_application_name`]), and the
//! admin connection terminates only those:
//! `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid
//! <> pg_backend_pid()`. Other tests and processes sharing the server are never hit. Needs a role
//! allowed to signal those backends (the same role, a member of `pg_signal_backend`, or a
//! superuser: the `DATABASE_URL` user is the same role as the repository's, so this always holds).
//!
//! **Checks**: every container of every burst is placed, or, if it ended in an error
//! (`RetriesExhausted`), it is held nowhere (`find_reservation` is `None`); the invariants of
//! [`sched_tests::faults::verify`] are clean (no container held twice, no overcommit, every
//! placement held where the scheduler said); `find_reservation` agrees with the ledgers for every
//! container ever sent; audit drift is zero on every worker; and the terminations did fire
//! (backends terminated > 0, some while a `reserve_batch` was in flight).
//!
//! Needs `DATABASE_URL` (skips with a message when unset, fails under `CI=true`); works in its own
//! fresh schema. `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo test -p
//! sched-postgres --test terminate -- --nocapture` shows the counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use sched_core::WorkerRepository;
use sched_postgres::PostgresConfig;
use sched_tests::kill::{run_kill_mid_stream, BURSTS, PER_BURST};
use std::sync::Arc;

const TERMINATE: &str = "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) AS ok \
     FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()) t WHERE ok";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_terminate_backend_mid_stream() {
    let test = "pg_terminate_backend_mid_stream";
    let app = format!("sched-terminate-{}", sched_tests::ns::random_hex());
    let Some(db) =
        common::setup_with(test, |c: PostgresConfig| c.with_application_name(&app)).await
    else {
        return;
    };
    assert_eq!(db.repo.config().application_name(), Some(app.as_str()));
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(db.url())
        .await
        .expect("admin connection to DATABASE_URL");
    let repo: Arc<dyn WorkerRepository> = Arc::new(db);
    // One burst in four as it starts, the others a random 1-8 ms into it.
    let k = run_kill_mid_stream(repo, test, 8, {
        let (app, admin) = (app.clone(), admin.clone());
        move || {
            let (app, admin) = (app.clone(), admin.clone());
            async move {
                let n: i64 = sqlx::query_scalar(TERMINATE)
                    .bind(&app)
                    .fetch_one(&admin)
                    .await
                    .expect("pg_terminate_backend");
                u64::try_from(n).unwrap_or(0)
            }
        }
    })
    .await;
    eprintln!(
        "{test}: {BURSTS} bursts x {PER_BURST} containers; pg_terminate_backend calls {}, \
         backends terminated {}, terminations while a reserve_batch was in flight {}; {k}",
        k.commands, k.killed, k.while_reserving,
    );
    assert!(k.run.faults > 0, "the terminations fired: {:?}", k.run);
    k.assert_consistent();
    admin.close().await;
}
