//! THE reference rule: what one worker's atomic section does on register, reserve, release and
//! audit, written once as pure functions over plain data ([`WorkerState`]).
//!
//! `sched-memory` calls these functions under its mutex. The other backends cannot call Rust
//! inside their atomic section, so they mirror this module: the Lua scripts of `sched-redis`
//! (`sched-redis/lua/*.lua`) and the SQL of `sched-postgres` (`sched-postgres/migrations`). When
//! a rule changes, it changes here first, then there; the shared conformance suite
//! (`sched-tests`) checks that every backend agrees. The proptest model in
//! `tests/src/properties/model.rs` is deliberately written separately, as a second opinion, and must
//! not be rebuilt on this module.
//!
//! The rejection and outcome constructors ([`version_conflict`], [`insufficient`],
//! [`committed`], ...) are plain functions so that a backend decoding a reply of raw numbers
//! builds exactly the values this module builds.
//!
//! ```
//! use sched_core::rules::{self, WorkerState};
//! use sched_core::{CapacityReservation, CommitMode, ResourceReservation, Resources, Worker, WorkerSpec};
//!
//! let mut w = WorkerState::new(Worker::from_spec(&WorkerSpec::new("w", Resources::cpu_mem(1000, 1000)), 1));
//! let part = CapacityReservation::new("w", vec![ResourceReservation::new("c", Resources::cpu_mem(300, 300))]);
//! let reserved = rules::reserve(Some(&w), &part, CommitMode::AllOrNothing, |_| None, 0).unwrap();
//! let committed = w.commit(reserved);
//! assert_eq!((committed.new_version, committed.free), (2, Resources::cpu_mem(700, 700)));
//! assert!(w.audit().is_consistent());
//! ```

use crate::{
    AuditMode, AuditReport, CapacityReservation, CommitMode, Committed, Rejection, Released,
    RepoError, ReservationRecord, ResourceKind, ResourceReservation, Resources, Worker, WorkerSpec,
    WorkerStatus,
};
use std::collections::BTreeMap;

mod lifecycle;
pub use lifecycle::expiry;

/// A container held in a worker's ledger: what it was charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Resources charged.
    pub resources: Resources,
    /// GPU type it asked for, if any.
    pub gpu_type: Option<String>,
    /// Lease deadline (store clock, ms since the epoch), if leased.
    pub lease_expires_at_ms: Option<u64>,
}

impl Held {
    /// What `reserve` stores for a reservation committed at `now_ms`: a leased one expires at
    /// `now_ms + lease_ms`.
    pub fn of(r: &ResourceReservation, now_ms: u64) -> Self {
        Held {
            resources: r.resources,
            gpu_type: r.gpu_type.clone(),
            lease_expires_at_ms: r.lease_ms.map(|l| now_ms.saturating_add(l)),
        }
    }

    /// The public record of this entry.
    pub fn record(&self, worker_id: &str, container_id: &str) -> ReservationRecord {
        ReservationRecord {
            worker_id: worker_id.to_owned(),
            container_id: container_id.to_owned(),
            resources: self.resources,
            gpu_type: self.gpu_type.clone(),
            lease_expires_at_ms: self.lease_expires_at_ms,
        }
    }
}

/// One worker as its atomic section sees it: the stored worker and its ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerState {
    /// The stored worker, including its free capacity and version.
    pub worker: Worker,
    /// Container id → what it holds, ordered by container id.
    pub ledger: BTreeMap<String, Held>,
}

/// A committed worker part, before it is written: the [`Committed`] to report and the ledger
/// entries to add (one per accepted reservation: a container held anywhere is never accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    /// What the caller is told; its `free` and `new_version` are what to store.
    pub committed: Committed,
    /// New ledger entries, in request order.
    pub charged: Vec<(String, Held)>,
}

/// What [`check_reservation`] decided for one reservation that may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Fits the running free capacity: accepted and charged.
    Fits,
}

// ------------------------------------------------------------------------------------------------
// Rejections and outcomes from plain values
// ------------------------------------------------------------------------------------------------

/// [`Rejection::VersionConflict`].
pub fn version_conflict(expected: u64, current: u64) -> Rejection {
    Rejection::VersionConflict { expected, current }
}

/// [`Rejection::WorkerUnavailable`].
pub fn worker_unavailable(status: WorkerStatus) -> Rejection {
    Rejection::WorkerUnavailable { status }
}

/// [`Rejection::AlreadyReserved`]: `container_id` is held on `worker_id`.
pub fn already_reserved(container_id: &str, worker_id: &str) -> Rejection {
    Rejection::AlreadyReserved {
        container_id: container_id.to_owned(),
        worker_id: worker_id.to_owned(),
    }
}

/// [`Rejection::GpuTypeMismatch`]: the container asks for `requested`, the worker has `actual`.
pub fn gpu_type_mismatch(container_id: &str, requested: &str, actual: Option<&str>) -> Rejection {
    Rejection::GpuTypeMismatch {
        container_id: container_id.to_owned(),
        requested: requested.to_owned(),
        actual: actual.map(str::to_owned),
    }
}

/// [`Rejection::InsufficientCapacity`] for one resource.
pub fn insufficient(
    container_id: &str,
    resource: ResourceKind,
    requested: u64,
    available: u64,
) -> Rejection {
    Rejection::InsufficientCapacity {
        container_id: container_id.to_owned(),
        resource,
        requested,
        available,
    }
}

/// The rejection for the first resource (cpu, memory, gpu) in which `requested` exceeds `free`,
/// or `None` when it fits.
pub fn shortfall(container_id: &str, requested: &Resources, free: &Resources) -> Option<Rejection> {
    let kind = free.first_shortfall(requested)?;
    Some(insufficient(
        container_id,
        kind,
        requested.get(kind),
        free.get(kind),
    ))
}

/// [`Committed`] from its parts.
pub fn committed(
    new_version: u64,
    free: Resources,
    accepted: usize,
    remainder: Option<Rejection>,
) -> Committed {
    Committed {
        new_version,
        free,
        accepted,
        remainder,
    }
}

/// [`RepoError::TotalBelowReserved`] for the first resource in which `total` is below
/// `reserved`, or `None` when the new total covers what is reserved.
pub fn total_below_reserved(total: &Resources, reserved: &Resources) -> Option<RepoError> {
    let kind = total.first_shortfall(reserved)?;
    Some(RepoError::TotalBelowReserved {
        resource: kind,
        total: total.get(kind),
        reserved: reserved.get(kind),
    })
}

// ------------------------------------------------------------------------------------------------
// The rules
// ------------------------------------------------------------------------------------------------

/// The sum of a ledger's amounts. Amounts are bounded by
/// [`MAX_AMOUNT`](crate::validate::MAX_AMOUNT), so this cannot overflow in practice; it
/// saturates at `u64::MAX` rather than fail if it ever did.
pub fn ledger_sum<'a>(amounts: impl IntoIterator<Item = &'a Resources>) -> Resources {
    amounts.into_iter().fold(Resources::ZERO, |acc, r| {
        acc.checked_add(r)
            .unwrap_or(Resources::new(u64::MAX, u64::MAX, u64::MAX))
    })
}

/// Free capacity after `resources` come back to a worker with `free` of `total`: the sum,
/// capped at `total` per resource, so a release never lifts free above total.
pub fn release_credit(free: &Resources, total: &Resources, resources: &Resources) -> Resources {
    let sum = free.checked_add(resources).unwrap_or(*total);
    Resources::new(
        sum.cpu_millicores.min(total.cpu_millicores),
        sum.memory_mib.min(total.memory_mib),
        sum.gpu_count.min(total.gpu_count),
    )
}

/// Registration (or re-registration) of `spec` at `now_ms` of the store's clock.
///
/// A new worker starts entirely free at version `tombstone + 1` (`tombstone` is the last version
/// of a removed worker of that id, 0 if none, so versions never repeat). An existing one keeps its
/// ledger: `free = new total − reserved`, version + 1, or [`RepoError::TotalBelowReserved`] when
/// the new total is below what is reserved (nothing changes). Registering counts as a heartbeat.
pub fn register(
    current: Option<&WorkerState>,
    spec: &WorkerSpec,
    tombstone: u64,
    now_ms: u64,
) -> Result<Worker, RepoError> {
    let Some(state) = current else {
        let mut w = Worker::from_spec(spec, tombstone.saturating_add(1));
        w.last_heartbeat_ms = Some(now_ms);
        return Ok(w);
    };
    let reserved = state.reserved();
    if let Some(e) = total_below_reserved(&spec.total, &reserved) {
        return Err(e);
    }
    let version = state
        .worker
        .resource_version
        .max(tombstone)
        .saturating_add(1);
    let mut w = Worker::from_spec(spec, version);
    w.free = spec.total.saturating_sub(&reserved);
    w.last_heartbeat_ms = Some(now_ms);
    Ok(w)
}

/// The worker-level checks of a reserve at `now_ms`, in order: `expected_version` (when set)
/// must equal the stored version, then the status must be `Available`
/// (`WorkerUnavailable`), then the heartbeat must be fresh (`HeartbeatExpired`).
pub fn check_worker(
    worker: &Worker,
    expected_version: Option<u64>,
    now_ms: u64,
) -> Result<(), Rejection> {
    if let Some(expected) = expected_version {
        if expected != worker.resource_version {
            return Err(version_conflict(expected, worker.resource_version));
        }
    }
    if worker.status != WorkerStatus::Available {
        return Err(worker_unavailable(worker.status));
    }
    if let (true, Some(timeout_ms)) = (worker.is_stale_at(now_ms), worker.heartbeat_timeout_ms) {
        return Err(Rejection::HeartbeatExpired {
            last_heartbeat_ms: worker.last_heartbeat_ms,
            timeout_ms,
        });
    }
    Ok(())
}

/// The checks of one reservation, in order, against the running `free` capacity of the worker's
/// part: held anywhere, this worker included (`holder` is where the container is held, if
/// anywhere) → `AlreadyReserved` naming the holder; GPU type differs → `GpuTypeMismatch`; does
/// not fit → `InsufficientCapacity`; otherwise [`Check::Fits`]. A repeated reservation is never
/// accepted again: the caller looks the holder up and compares what it holds.
pub fn check_reservation(
    worker: &Worker,
    free: &Resources,
    r: &ResourceReservation,
    holder: Option<&str>,
) -> Result<Check, Rejection> {
    if let Some(holder) = holder {
        return Err(already_reserved(&r.container_id, holder));
    }
    if let Some(t) = &r.gpu_type {
        if worker.gpu_type.as_deref() != Some(t.as_str()) {
            return Err(gpu_type_mismatch(
                &r.container_id,
                t,
                worker.gpu_type.as_deref(),
            ));
        }
    }
    match shortfall(&r.container_id, &r.resources, free) {
        Some(rej) => Err(rej),
        None => Ok(Check::Fits),
    }
}

/// One worker's part of `reserve_batch`: unknown worker (`state` is `None`) →
/// `UnknownWorker`; then [`check_worker`]; then [`check_reservation`] for each reservation in
/// order. With [`CommitMode::AllOrNothing`] the first rejection rejects the part; with
/// [`CommitMode::Partial`] the prefix before it commits, unless that prefix is empty. A committed
/// part always charged something, so the version goes up by one.
///
/// `holder` says on which worker a container is held, if anywhere; `now_ms` is the store's clock
/// (for the heartbeat check and lease deadlines). Nothing is written: apply the result with
/// [`WorkerState::commit`] (and index its `charged` containers).
pub fn reserve<'h>(
    state: Option<&WorkerState>,
    part: &CapacityReservation,
    mode: CommitMode,
    holder: impl Fn(&str) -> Option<&'h str>,
    now_ms: u64,
) -> Result<Reserved, Rejection> {
    let w = &state.ok_or(Rejection::UnknownWorker)?.worker;
    check_worker(w, part.expected_version, now_ms)?;
    let mut free = w.free;
    let mut charged = Vec::new();
    let mut accepted = 0;
    let mut remainder = None;
    for r in &part.reservations {
        match check_reservation(w, &free, r, holder(&r.container_id)) {
            Ok(Check::Fits) => {
                free = free.saturating_sub(&r.resources);
                charged.push((r.container_id.clone(), Held::of(r, now_ms)));
            }
            Err(rej) if mode == CommitMode::AllOrNothing || accepted == 0 => return Err(rej),
            Err(rej) => {
                remainder = Some(rej);
                break;
            }
        }
        accepted += 1;
    }
    Ok(Reserved {
        committed: committed(
            w.resource_version.saturating_add(1),
            free,
            accepted,
            remainder,
        ),
        charged,
    })
}

impl WorkerState {
    /// A worker with an empty ledger.
    pub fn new(worker: Worker) -> Self {
        WorkerState {
            worker,
            ledger: BTreeMap::new(),
        }
    }

    /// The sum of the ledger.
    pub fn reserved(&self) -> Resources {
        ledger_sum(self.ledger.values().map(|h| &h.resources))
    }

    /// The ledger as records, ordered by container id.
    pub fn records(&self) -> Vec<ReservationRecord> {
        self.ledger
            .iter()
            .map(|(cid, h)| h.record(&self.worker.id, cid))
            .collect()
    }

    /// Writes a committed part ([`reserve`]'s result): free, version and the new ledger entries.
    /// Returns what the caller is told.
    pub fn commit(&mut self, reserved: Reserved) -> Committed {
        self.worker.free = reserved.committed.free;
        self.worker.resource_version = reserved.committed.new_version;
        self.ledger.extend(reserved.charged);
        reserved.committed
    }

    /// Releases one container if this worker holds it: removes it from the ledger, credits its
    /// resources back ([`release_credit`]) and bumps the version. `None` (and no change) when it
    /// is not held here.
    pub fn release(&mut self, container_id: &str) -> Option<Released> {
        let held = self.ledger.remove(container_id)?;
        let w = &mut self.worker;
        w.free = release_credit(&w.free, &w.total, &held.resources);
        w.resource_version = w.resource_version.saturating_add(1);
        Some(Released {
            worker_id: w.id.clone(),
            resources: held.resources,
            new_version: w.resource_version,
        })
    }

    /// The audit of this worker: stored free capacity against `total − Σ ledger`.
    pub fn audit(&self) -> AuditReport {
        AuditReport::new(
            self.worker.id.clone(),
            self.worker.total,
            self.worker.free,
            self.reserved(),
            self.ledger.len(),
            self.worker.resource_version,
        )
    }

    /// [`audit`](Self::audit), then with [`AuditMode::Repair`] and drift, sets
    /// `free = total − Σ ledger` and bumps the version. Returns the audit taken before any repair.
    pub fn audit_with(&mut self, mode: AuditMode) -> AuditReport {
        let report = self.audit();
        if mode == AuditMode::Repair && !report.is_consistent() {
            self.worker.free = self.worker.total.saturating_sub(&report.reserved);
            self.worker.resource_version = self.worker.resource_version.saturating_add(1);
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const T: Resources = Resources::new(1000, 1000, 2);

    fn state(id: &str) -> WorkerState {
        WorkerState::new(Worker::from_spec(
            &WorkerSpec::new(id, T).with_gpu_type("a100"),
            1,
        ))
    }

    fn res(c: &str, cpu: u64) -> ResourceReservation {
        ResourceReservation::new(c, Resources::cpu_mem(cpu, cpu))
    }

    fn part(w: &str, rs: Vec<ResourceReservation>) -> CapacityReservation {
        CapacityReservation::new(w, rs)
    }

    fn nowhere(_: &str) -> Option<&'static str> {
        None
    }

    #[test]
    fn reserve_checks_in_reference_order() {
        let p = part("w", vec![res("a", 1)]);
        assert_eq!(
            reserve(None, &p, CommitMode::Partial, nowhere, 0),
            Err(Rejection::UnknownWorker)
        );
        let mut s = state("w");
        s.worker.status = WorkerStatus::Draining;
        // The version is checked before the status.
        assert_eq!(
            reserve(
                Some(&s),
                &p.clone().expecting(9),
                CommitMode::Partial,
                nowhere,
                0
            ),
            Err(version_conflict(9, 1))
        );
        assert_eq!(
            reserve(
                Some(&s),
                &p.clone().expecting(1),
                CommitMode::Partial,
                nowhere,
                0
            ),
            Err(worker_unavailable(WorkerStatus::Draining))
        );
        let s = state("w");
        let held = HashMap::from([("a", "other"), ("h", "w")]);
        let at = |c: &str| held.get(c).copied();
        // Held elsewhere is found before the GPU type and the capacity.
        let p = part("w", vec![res("a", 5000).with_gpu_type("h100")]);
        assert_eq!(
            reserve(Some(&s), &p, CommitMode::Partial, at, 0),
            Err(already_reserved("a", "other"))
        );
        let p = part("w", vec![res("b", 5000).with_gpu_type("h100")]);
        assert_eq!(
            reserve(Some(&s), &p, CommitMode::Partial, at, 0),
            Err(gpu_type_mismatch("b", "h100", Some("a100")))
        );
        let p = part(
            "w",
            vec![ResourceReservation::new("b", Resources::new(1, 1, 3))],
        );
        assert_eq!(
            reserve(Some(&s), &p, CommitMode::Partial, at, 0),
            Err(insufficient("b", ResourceKind::Gpu, 3, 2))
        );
        // Held on this very worker: rejected too, naming this worker, before GPU and capacity.
        let p = part("w", vec![res("h", 5000).with_gpu_type("h100")]);
        for mode in [CommitMode::AllOrNothing, CommitMode::Partial] {
            assert_eq!(
                reserve(Some(&s), &p, mode, at, 0),
                Err(already_reserved("h", "w"))
            );
        }
        // In Partial mode the prefix before it commits, and it is the remainder.
        let p = part("w", vec![res("n", 100), res("h", 100)]);
        let r = reserve(Some(&s), &p, CommitMode::Partial, at, 0).unwrap();
        assert_eq!(
            r.committed,
            committed(
                2,
                Resources::new(900, 900, 2),
                1,
                Some(already_reserved("h", "w"))
            )
        );
    }

    #[test]
    fn partial_commits_the_prefix_and_all_or_nothing_nothing() {
        let s = state("w");
        let p = part(
            "w",
            vec![res("a", 400), res("b", 400), res("c", 400), res("d", 1)],
        );
        let rej = insufficient("c", ResourceKind::Cpu, 400, 200);
        assert_eq!(
            reserve(Some(&s), &p, CommitMode::AllOrNothing, nowhere, 0),
            Err(rej.clone())
        );
        let r = reserve(Some(&s), &p, CommitMode::Partial, nowhere, 0).unwrap();
        assert_eq!(
            r.committed,
            committed(2, Resources::new(200, 200, 2), 2, Some(rej))
        );
        assert_eq!(
            r.charged.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        // An empty prefix rejects the worker even in Partial mode.
        let p = part("w", vec![res("big", 2000), res("a", 1)]);
        assert!(reserve(Some(&s), &p, CommitMode::Partial, nowhere, 0).is_err());
    }

    #[test]
    fn commit_release_and_audit_keep_the_ledger_true() {
        let mut s = state("w");
        let p = part("w", vec![res("a", 300), res("b", 200)]);
        let c = s.commit(reserve(Some(&s), &p, CommitMode::AllOrNothing, nowhere, 0).unwrap());
        assert_eq!((c.new_version, c.accepted), (2, 2));
        assert_eq!(s.worker.free, Resources::new(500, 500, 2));
        assert_eq!(s.reserved(), Resources::cpu_mem(500, 500));
        assert_eq!(
            s.records()
                .iter()
                .map(|r| r.container_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(s.audit().is_consistent());
        let r = s.release("a").unwrap();
        assert_eq!((r.worker_id.as_str(), r.new_version), ("w", 3));
        assert_eq!(r.resources, Resources::cpu_mem(300, 300));
        assert_eq!(s.release("a"), None, "released once");
        assert_eq!(s.worker.resource_version, 3);
        // Drift: a release never lifts free above total; repair restores the ledger's truth.
        s.worker.free = T;
        let a = s.audit_with(AuditMode::Check);
        assert_eq!(
            (a.drift.cpu_millicores, s.worker.resource_version),
            (200, 3)
        );
        assert_eq!(s.release("b").unwrap().new_version, 4);
        assert_eq!(s.worker.free, T, "capped at total");
        s.worker.free = Resources::ZERO;
        let a = s.audit_with(AuditMode::Repair);
        assert_eq!(a.drift.cpu_millicores, -1000, "the audit before the repair");
        assert_eq!((s.worker.free, s.worker.resource_version), (T, 5));
        assert_eq!(
            s.audit_with(AuditMode::Repair).resource_version,
            5,
            "no drift, no bump"
        );
    }

    #[test]
    fn release_credit_is_capped_and_never_overflows() {
        let total = Resources::new(10, 10, 1);
        assert_eq!(
            release_credit(&Resources::new(8, 2, 1), &total, &Resources::new(5, 5, 0)),
            Resources::new(10, 7, 1)
        );
        let huge = Resources::new(u64::MAX, 0, 0);
        assert_eq!(
            release_credit(&Resources::new(1, 0, 0), &total, &huge),
            total
        );
        assert_eq!(
            ledger_sum([&huge, &huge]),
            Resources::new(u64::MAX, u64::MAX, u64::MAX)
        );
    }

    #[test]
    fn register_keeps_what_is_reserved_and_never_repeats_a_version() {
        let spec = WorkerSpec::new("w", T);
        assert_eq!(register(None, &spec, 0, 0).unwrap().resource_version, 1);
        assert_eq!(register(None, &spec, 41, 0).unwrap().resource_version, 42);
        let mut s = state("w");
        let p = part("w", vec![res("a", 600)]);
        s.commit(reserve(Some(&s), &p, CommitMode::AllOrNothing, nowhere, 0).unwrap());
        let w = register(
            Some(&s),
            &WorkerSpec::new("w", Resources::cpu_mem(800, 900)),
            0,
            0,
        )
        .unwrap();
        assert_eq!(
            (w.free, w.resource_version),
            (Resources::cpu_mem(200, 300), 3)
        );
        let e = register(
            Some(&s),
            &WorkerSpec::new("w", Resources::cpu_mem(500, 900)),
            0,
            0,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                RepoError::TotalBelowReserved {
                    resource: ResourceKind::Cpu,
                    total: 500,
                    reserved: 600
                }
            ),
            "{e:?}"
        );
        assert!(total_below_reserved(&T, &Resources::cpu_mem(1000, 1000)).is_none());
    }

    #[test]
    fn constructors_build_the_public_types() {
        assert_eq!(
            shortfall("c", &Resources::cpu_mem(5, 50), &Resources::cpu_mem(5, 10)),
            Some(insufficient("c", ResourceKind::Memory, 50, 10))
        );
        assert_eq!(
            shortfall("c", &Resources::cpu_mem(5, 5), &Resources::cpu_mem(5, 5)),
            None
        );
        assert_eq!(
            gpu_type_mismatch("c", "h100", None),
            Rejection::GpuTypeMismatch {
                container_id: "c".into(),
                requested: "h100".into(),
                actual: None
            }
        );
        let h = Held::of(&res("c", 1).with_gpu_type("a100"), 0);
        let r = h.record("w", "c");
        assert_eq!(
            (r.worker_id.as_str(), r.gpu_type.as_deref()),
            ("w", Some("a100"))
        );
    }
}
