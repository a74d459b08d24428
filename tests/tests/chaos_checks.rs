//! The chaos checks themselves: a plain history passes on the in-memory backend, and backends
//! that lie (an error for an applied reserve, a release that releases nothing) are caught with
//! the right violation class.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use async_trait::async_trait;
use sched_core::layers::Op;
use sched_core::{
    CapacityReservation, CommitMode, ReleaseOutcome, RepoError, RepositoryLayer, WorkerRepository,
    WorkerResult,
};
use sched_memory::MemoryRepository;
use sched_tests::chaos::{
    run_case, Action, FaultKind, GenFault, GenScheduler, GenWorker, History, Req, Round, Target,
};
use std::sync::Arc;

fn reqs(ids: std::ops::Range<u16>) -> Vec<Req> {
    ids.map(|id| Req {
        id,
        units: 1,
        pool: 0,
    })
    .collect()
}

fn round(faults: Vec<GenFault>, actions: Vec<Action>) -> Round {
    Round {
        faults,
        real: None,
        actions,
    }
}

/// Place, release, place through a lost reply, reserve directly, re-register: nothing wrong.
fn plain_history() -> History {
    let schedule = |ids| Action::Schedule {
        sched: 0,
        reqs: reqs(ids),
        singles: false,
        cancel_ms: None,
    };
    History {
        workers: vec![GenWorker { units: 10, pool: 0 }; 3],
        schedulers: vec![GenScheduler(0), GenScheduler(1)],
        rounds: vec![
            round(vec![], vec![schedule(0..5)]),
            round(
                vec![],
                vec![Action::Release {
                    ids: vec![0, 1],
                    via: None,
                }],
            ),
            round(
                vec![GenFault {
                    op: Op::Reserve,
                    kind: FaultKind::LoseReply,
                    n: 1,
                }],
                vec![schedule(10..15)],
            ),
            round(
                vec![],
                vec![
                    Action::Reserve {
                        parts: vec![(2, reqs(20..23))],
                        partial: false,
                    },
                    Action::Register {
                        worker: 1,
                        units: 12,
                        pool: 0,
                    },
                ],
            ),
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_history_passes_on_memory() {
    let target = Target::new(Arc::new(MemoryRepository::new()), "chaos-plain");
    let report = run_case(&target, &plain_history()).await;
    assert!(report.clean(), "{report}");
    assert_eq!(report.placements, 10, "{report}");
    assert!(report.answers_checked >= 15, "{report}");
    assert_eq!(report.faults.get("faulty:fired"), Some(&1), "{report}");
}

/// Applies `reserve_batch`, then answers `Unavailable` ("certainly not applied").
struct AppliedButUnavailable(MemoryRepository);

#[async_trait]
impl RepositoryLayer for AppliedButUnavailable {
    type Inner = MemoryRepository;
    fn inner(&self) -> &MemoryRepository {
        &self.0
    }
    async fn reserve_batch(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        WorkerRepository::reserve_batch(&self.0, batch, mode).await?;
        Err(RepoError::Unavailable("lying".into()))
    }
}

/// Answers every release as done, releasing nothing.
struct ReleasesNothing(MemoryRepository);

#[async_trait]
impl RepositoryLayer for ReleasesNothing {
    type Inner = MemoryRepository;
    fn inner(&self) -> &MemoryRepository {
        &self.0
    }
    async fn release_batch(&self, ids: &[String]) -> Result<Vec<ReleaseOutcome>, RepoError> {
        Ok(ids
            .iter()
            .map(|c| ReleaseOutcome {
                container_id: c.clone(),
                released: None,
            })
            .collect())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_for_an_applied_reserve_is_caught() {
    let repo = Arc::new(AppliedButUnavailable(MemoryRepository::new()));
    let target = Target::new(repo, "chaos-lie-reserve");
    let h = History {
        rounds: vec![round(
            vec![],
            vec![Action::Reserve {
                parts: vec![(0, reqs(0..2))],
                partial: true,
            }],
        )],
        ..plain_history()
    };
    let report = run_case(&target, &h).await;
    assert_eq!(
        report.classes.get("reserve_batch:err-but-changed"),
        Some(&2),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_releases_nothing_is_caught() {
    let repo = Arc::new(ReleasesNothing(MemoryRepository::new()));
    let target = Target::new(repo, "chaos-lie-release");
    let h = History {
        rounds: plain_history().rounds[..2].to_vec(),
        ..plain_history()
    };
    let report = run_case(&target, &h).await;
    assert_eq!(
        report.classes.get("release:released-but-held"),
        Some(&2),
        "{report}"
    );
    assert!(!report.clean());
}
