//! The shared conformance suite (`sched_tests::conformance`) against PostgreSQL.
//! Needs `DATABASE_URL`; each test works in its own fresh schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use sched_core::WorkerRepository;
use sched_tests::conformance;

/// One `#[tokio::test]` per check, each in a fresh schema.
mod each_check {
    sched_tests::conformance_tests!(crate::common::setup(module_path!()));
}

/// Every check, one after another, in one schema that already holds other workers.
#[tokio::test]
async fn run_all_on_a_non_empty_store() {
    let Some(db) = common::setup("run_all_on_a_non_empty_store").await else {
        return;
    };
    for i in 0..3 {
        db.register_worker(&sched_core::WorkerSpec::new(
            format!("bystander-{i}"),
            sched_core::Resources::cpu_mem(1000, 1000),
        ))
        .await
        .unwrap();
    }
    conformance::run_all(&db).await;
    assert_eq!(
        db.list_workers(None).await.unwrap().len(),
        3,
        "checks clean up after themselves"
    );
}

/// Every check at once, from two tasks on one schema: interleaved traffic on one pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_concurrently_on_a_shared_schema() {
    let Some(db) = common::setup("run_all_concurrently_on_a_shared_schema").await else {
        return;
    };
    let db = std::sync::Arc::new(db);
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { conformance::run_all_concurrently(&*db).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        db.list_workers(None).await.unwrap().is_empty(),
        "checks clean up after themselves"
    );
}
