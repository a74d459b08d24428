//! The chaos property test on the in-memory backend: every `Faulty` fault kind on every method
//! (no real faults: there is no server). `CHAOS_CASES` raises the case count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use sched_memory::MemoryRepository;
use sched_tests::chaos::{self, Target};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_memory() {
    let target = Target::new(Arc::new(MemoryRepository::new()), "chaos-mem");
    let report = chaos::chaos_async(target, chaos::cases_from_env(32)).await;
    println!("{report}");
    assert!(report.faults_total() > 0, "faults fired: {report}");
}
