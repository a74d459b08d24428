//! `list_reservations` and `audit_worker`: `lua/snapshot.lua` (a consistent read of one
//! worker) and `lua/reconcile.lua` (the same snapshot, then repair).

use crate::client::Op;
use crate::codec::{record, worker};
use crate::{scripts, RedisRepository};
use sched_core::validate::validate_id;
use sched_core::{AuditMode, AuditReport, RepoError, ReservationRecord, Resources, Worker};
use std::collections::HashMap;

/// The worker and its ledger (ordered by container), read atomically; in `Repair` mode,
/// repaired afterwards (reconcile.lua).
pub(crate) async fn snapshot(
    repo: &RedisRepository,
    id: &str,
    mode: AuditMode,
) -> Result<(Worker, Vec<ReservationRecord>), RepoError> {
    validate_id("worker", id)?;
    let (script, write) = match mode {
        AuditMode::Check => (&scripts::SNAPSHOT, false),
        AuditMode::Repair => (&scripts::RECONCILE, true),
    };
    let op = Op::script(
        script,
        vec![repo.keys.state(id), repo.keys.ledger(id)],
        Vec::new(),
    );
    type Hash = HashMap<String, String>;
    let Some((state, ledger)) = repo.run_one::<Option<(Hash, Hash)>>(op, write).await? else {
        return Err(RepoError::UnknownWorker(id.to_owned()));
    };
    let ledger = ledger.into_iter().map(|(c, v)| record(id, c, &v));
    let mut ledger = ledger.collect::<Result<Vec<_>, _>>()?;
    ledger.sort_by(|a, b| a.container_id.cmp(&b.container_id));
    Ok((worker(&state)?, ledger))
}

pub(crate) async fn audit(
    repo: &RedisRepository,
    id: &str,
    mode: AuditMode,
) -> Result<AuditReport, RepoError> {
    let (w, ledger) = snapshot(repo, id, mode).await?;
    let max = Resources::new(u64::MAX, u64::MAX, u64::MAX);
    let reserved = ledger.iter().fold(Resources::ZERO, |acc, r| {
        acc.checked_add(&r.resources).unwrap_or(max)
    });
    let report = AuditReport::new(
        w.id,
        w.total,
        w.free,
        reserved,
        ledger.len(),
        w.resource_version,
    );
    if mode == AuditMode::Repair && !report.is_consistent() {
        tracing::warn!(worker = id, drift = ?report.drift, "reconciled drift");
    }
    Ok(report)
}
