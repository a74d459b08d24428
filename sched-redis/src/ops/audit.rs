//! `list_reservations` and `audit_worker`: `lua/snapshot.lua` (a consistent read of one
//! worker) and `lua/reconcile.lua` (the same, then repair).

use crate::client::Op;
use crate::codec::{self, bad};
use crate::scripts::{self, Script};
use crate::RedisRepository;
use sched_core::validate::validate_id;
use sched_core::{AuditMode, AuditReport, RepoError, ReservationRecord, Resources, Worker};

/// Runs snapshot.lua or reconcile.lua: the worker and its ledger (before any repair).
async fn snapshot(
    repo: &RedisRepository,
    script: &'static Script,
    worker_id: &str,
    write: bool,
) -> Result<(Worker, Vec<ReservationRecord>), RepoError> {
    validate_id("worker", worker_id)?;
    let keys = vec![repo.keys.state(worker_id), repo.keys.ledger(worker_id)];
    let reply = repo
        .run_one(Op::script(script, keys, Vec::new()), write)
        .await?;
    if reply == crate::client::Val::Nil {
        return Err(RepoError::UnknownWorker(worker_id.to_owned()));
    }
    let mut a = codec::array(reply)?.into_iter();
    let state = codec::hash(a.next().ok_or_else(|| bad("short snapshot"))?)?;
    let ledger = codec::hash(a.next().ok_or_else(|| bad("short snapshot"))?)?;
    Ok((codec::worker(&state)?, codec::ledger(worker_id, ledger)?))
}

pub(crate) async fn list_reservations(
    repo: &RedisRepository,
    worker_id: &str,
) -> Result<Vec<ReservationRecord>, RepoError> {
    Ok(snapshot(repo, &scripts::SNAPSHOT, worker_id, false)
        .await?
        .1)
}

pub(crate) async fn audit_worker(
    repo: &RedisRepository,
    worker_id: &str,
    mode: AuditMode,
) -> Result<AuditReport, RepoError> {
    let (script, repair) = match mode {
        AuditMode::Check => (&scripts::SNAPSHOT, false),
        AuditMode::Repair => (&scripts::RECONCILE, true),
    };
    let (w, ledger) = snapshot(repo, script, worker_id, repair).await?;
    let reserved = ledger.iter().fold(Resources::ZERO, |acc, r| {
        acc.checked_add(&r.resources)
            .unwrap_or(Resources::new(u64::MAX, u64::MAX, u64::MAX))
    });
    let report = AuditReport::new(
        w.id,
        w.total,
        w.free,
        reserved,
        ledger.len(),
        w.resource_version,
    );
    if repair && !report.is_consistent() {
        tracing::warn!(worker = worker_id, drift = ?report.drift, "reconciled drift");
    }
    Ok(report)
}
