//! The chaos property test on Postgres (`DATABASE_URL`), in a fresh schema: the `Faulty` layer
//! plus `pg_terminate_backend` of our own connections and a reply dropped by the TCP proxy.
//! `CHAOS_CASES` raises the case count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod chaos_common;

use sched_tests::chaos;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_postgres() {
    let Some((target, _schema)) = chaos_common::postgres("chaos_postgres").await else {
        return;
    };
    let report = chaos::chaos_async(target, chaos::cases_from_env(6)).await;
    println!("chaos_postgres: {report}");
}
