//! The shared property suite (`sched_tests::properties`) against PostgreSQL: random bursts from
//! concurrent callers and schedulers, and random operation sequences checked against a model.
//! Needs `DATABASE_URL`; each property works in its own fresh schema. `PROPTEST_CASES` sets the
//! number of cases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use sched_core::WorkerRepository;
use sched_tests::properties::{self, PropConfig};
use std::sync::Arc;
use tokio::runtime::Handle;

fn with_db(test: &str, property: fn(&Handle, Arc<dyn WorkerRepository>, &PropConfig)) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(db) = rt.block_on(common::setup(test)) else {
        return;
    };
    let repo: Arc<dyn WorkerRepository> = Arc::new(db);
    property(rt.handle(), Arc::clone(&repo), &PropConfig::from_env());
    let left = rt.block_on(repo.list_workers(None)).unwrap();
    assert!(
        left.is_empty(),
        "properties clean up after themselves: {left:?}"
    );
    drop(repo);
}

#[test]
fn model_sequences() {
    with_db("model_sequences", properties::model_sequences);
}

#[test]
fn concurrent_callers() {
    with_db("concurrent_callers", properties::concurrent_callers);
}

#[test]
fn concurrent_schedulers() {
    with_db("concurrent_schedulers", properties::concurrent_schedulers);
}

#[test]
fn scheduler_answers() {
    with_db("scheduler_answers", properties::scheduler_answers);
}

#[test]
fn lifecycle_sequences() {
    with_db("lifecycle_sequences", properties::lifecycle_sequences);
}

#[test]
fn renewals_race_sweeps() {
    with_db("renewals_race_sweeps", properties::renewals_race_sweeps);
}
