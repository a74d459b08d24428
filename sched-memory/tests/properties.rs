//! The scheduler-answers property (`sched_tests::properties::scheduler_answers`) on the
//! in-memory backend, with the default case count (`PROPTEST_CASES` overrides it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sched_core::WorkerRepository;
use sched_memory::MemoryRepository;
use sched_tests::properties::{self, PropConfig};
use std::sync::Arc;

#[test]
fn scheduler_answers_agree_with_the_store() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let repo: Arc<dyn WorkerRepository> = Arc::new(MemoryRepository::new());
    properties::scheduler_answers(rt.handle(), Arc::clone(&repo), &PropConfig::from_env());
    let left = rt.block_on(repo.list_workers(None)).unwrap();
    assert!(left.is_empty(), "the property cleans up");
}
