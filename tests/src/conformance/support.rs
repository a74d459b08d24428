//! Helpers shared by the checks: short constructors, calls that assert the shape of their
//! answer, and the assertions most checks end with.

use sched_core::{
    CapacityReservation, CommitMode, Committed, Rejection, ReleaseOutcome, RepoError,
    ReservationRecord, ResourceKind, ResourceReservation, Resources, Worker, WorkerOutcome,
    WorkerRepository, WorkerResult, WorkerSpec,
};
use std::fmt::Debug;

/// `Resources::new(cpu, mem, gpu)`.
pub(super) fn res(cpu: u64, mem: u64, gpu: u64) -> Resources {
    Resources::new(cpu, mem, gpu)
}

/// One container's reservation.
pub(super) fn rr(id: &str, r: Resources) -> ResourceReservation {
    ResourceReservation::new(id, r)
}

/// One worker's part of a batch.
pub(super) fn cr(worker: &str, rs: Vec<ResourceReservation>) -> CapacityReservation {
    CapacityReservation::new(worker, rs)
}

/// Both commit modes, for rules that hold in each.
pub(super) const BOTH_MODES: [CommitMode; 2] = [CommitMode::AllOrNothing, CommitMode::Partial];

/// `register_worker`, asserting it succeeds. Checks register through
/// [`Fixture`](super::fixture::Fixture), which calls this and remembers the worker.
pub(super) async fn register(repo: &dyn WorkerRepository, spec: &WorkerSpec) -> Worker {
    match repo.register_worker(spec).await {
        Ok(w) => w,
        Err(e) => panic!("register_worker({:?}) failed: {e}", spec.id),
    }
}

/// `get_worker`, asserting the worker exists.
pub(super) async fn get(repo: &dyn WorkerRepository, id: &str) -> Worker {
    match repo.get_worker(id).await {
        Ok(Some(w)) => w,
        Ok(None) => panic!("get_worker({id:?}) returned None for a registered worker"),
        Err(e) => panic!("get_worker({id:?}) failed: {e}"),
    }
}

/// `reserve_batch`, asserting the call succeeds and returns one result per worker, in order.
pub(super) async fn reserve(
    repo: &dyn WorkerRepository,
    batch: &[CapacityReservation],
    mode: CommitMode,
) -> Vec<WorkerResult> {
    let out = match repo.reserve_batch(batch, mode).await {
        Ok(o) => o,
        Err(e) => panic!("reserve_batch ({mode:?}) failed as a whole: {e}"),
    };
    let sent: Vec<&str> = batch.iter().map(|c| c.worker_id.as_str()).collect();
    let got: Vec<&str> = out.iter().map(|r| r.worker_id.as_str()).collect();
    assert_eq!(
        got, sent,
        "reserve_batch must return one result per worker, in input order"
    );
    out
}

/// [`reserve`] of one worker's part: its outcome.
pub(super) async fn reserve1(
    repo: &dyn WorkerRepository,
    c: CapacityReservation,
    mode: CommitMode,
) -> WorkerOutcome {
    let mut out = reserve(repo, std::slice::from_ref(&c), mode).await;
    out.remove(0).outcome
}

/// `release_batch`, asserting one outcome per id, in input order.
pub(super) async fn release(repo: &dyn WorkerRepository, ids: &[String]) -> Vec<ReleaseOutcome> {
    let out = match repo.release_batch(ids).await {
        Ok(o) => o,
        Err(e) => panic!("release_batch({ids:?}) failed as a whole: {e}"),
    };
    let got: Vec<&String> = out.iter().map(|o| &o.container_id).collect();
    let sent: Vec<&String> = ids.iter().collect();
    assert_eq!(
        got, sent,
        "release_batch must return one outcome per id, in input order"
    );
    out
}

/// The commit in `o`, or a panic naming `ctx` and the rejection.
pub(super) fn committed(o: WorkerOutcome, ctx: &str) -> Committed {
    match o {
        Ok(c) => c,
        Err(r) => panic!("{ctx}: expected a commit, got rejection {r:?}"),
    }
}

/// The rejection in `o`, or a panic naming `ctx` and the commit.
pub(super) fn rejected(o: WorkerOutcome, ctx: &str) -> Rejection {
    match o {
        Err(r) => r,
        Ok(c) => panic!("{ctx}: expected a rejection, got commit {c:?}"),
    }
}

/// `list_reservations`, asserting it succeeds.
pub(super) async fn ledger(repo: &dyn WorkerRepository, id: &str) -> Vec<ReservationRecord> {
    match repo.list_reservations(id).await {
        Ok(l) => l,
        Err(e) => panic!("list_reservations({id:?}) failed: {e}"),
    }
}

/// `find_reservation`, asserting it succeeds.
pub(super) async fn find(repo: &dyn WorkerRepository, cid: &str) -> Option<ReservationRecord> {
    match repo.find_reservation(cid).await {
        Ok(r) => r,
        Err(e) => panic!("find_reservation({cid:?}) failed: {e}"),
    }
}

/// The worker holding `cid`, if any.
pub(super) async fn held_on(repo: &dyn WorkerRepository, cid: &str) -> Option<String> {
    find(repo, cid).await.map(|r| r.worker_id)
}

/// The ledger rule and the audit: `free + Σ ledger = total`, drift zero, and the audit agrees
/// with `get_worker` and `list_reservations`.
pub(super) async fn assert_consistent(repo: &dyn WorkerRepository, id: &str, ctx: &str) {
    let w = get(repo, id).await;
    let l = ledger(repo, id).await;
    let a = match repo.audit(id).await {
        Ok(a) => a,
        Err(e) => panic!("{ctx}: audit({id:?}) failed: {e}"),
    };
    assert!(
        a.drift.is_zero(),
        "{ctx}: audit drift must be zero, got {a:?}"
    );
    let sum = Resources::checked_sum(l.iter().map(|r| &r.resources))
        .unwrap_or_else(|e| panic!("{ctx}: ledger sum overflowed: {e}"));
    assert_eq!(
        w.free.checked_add(&sum).ok(),
        Some(w.total),
        "{ctx}: free {} + reserved {sum} must equal total {} on {id:?}",
        w.free,
        w.total
    );
    assert_eq!(
        a.reserved, sum,
        "{ctx}: audit.reserved must be the ledger sum"
    );
    assert_eq!(
        a.reservations,
        l.len(),
        "{ctx}: audit.reservations must count the ledger"
    );
    assert_eq!(
        (a.total, a.free),
        (w.total, w.free),
        "{ctx}: audit must agree with get_worker"
    );
    assert_eq!(a.worker_id, id, "{ctx}: audit names the wrong worker");
    for r in &l {
        assert_eq!(
            r.worker_id, id,
            "{ctx}: ledger record names the wrong worker"
        );
    }
}

/// Everything observable about some workers and containers, to prove a call changed nothing.
#[derive(Debug, PartialEq)]
pub(super) struct Snapshot {
    workers: Vec<(Option<Worker>, Vec<ReservationRecord>)>,
    containers: Vec<Option<ReservationRecord>>,
}

/// A [`Snapshot`] of `workers` (and their ledgers) and `containers`.
pub(super) async fn snapshot(
    repo: &dyn WorkerRepository,
    workers: &[String],
    containers: &[String],
) -> Snapshot {
    let mut s = Snapshot {
        workers: Vec::new(),
        containers: Vec::new(),
    };
    for w in workers {
        let got = match repo.get_worker(w).await {
            Ok(g) => g,
            Err(e) => panic!("get_worker({w:?}) failed: {e}"),
        };
        let l = if got.is_some() {
            ledger(repo, w).await
        } else {
            Vec::new()
        };
        s.workers.push((got, l));
    }
    for c in containers {
        s.containers.push(find(repo, c).await);
    }
    s
}

/// Asserts that `r` is `RepoError::InvalidInput`.
#[track_caller]
pub(super) fn assert_invalid<T: Debug>(r: Result<T, RepoError>, what: &str) {
    match r {
        Err(RepoError::InvalidInput(_)) => {}
        other => panic!("{what}: expected RepoError::InvalidInput, got {other:?}"),
    }
}

/// Asserts that `rej` is `InsufficientCapacity` with exactly these fields.
pub(super) fn assert_insufficient(
    rej: &Rejection,
    container: &str,
    kind: ResourceKind,
    requested: u64,
    available: u64,
    ctx: &str,
) {
    assert_eq!(
        rej,
        &Rejection::InsufficientCapacity {
            container_id: container.to_owned(),
            resource: kind,
            requested,
            available,
        },
        "{ctx}: the rejection must name the container, the short resource, the amount requested \
         and the amount available at that point of the batch"
    );
}
