//! The lifecycle calls (leases, heartbeats, status, bulk release): one statement each, calling
//! the plpgsql functions of `migrations/0003_lifecycle.sql`, which lock the worker's row and
//! judge time by the server's clock. Every call here is a write (`run` with `read = false`), so a
//! connection lost mid-statement is `Ambiguous`, never `Unavailable`.

use crate::repo::{same_len, PostgresRepository};
use sched_core::validate::{validate_id, validate_renewal};
use sched_core::{
    Heartbeat, LeaseRenewal, LeaseSweep, RepoError, Worker, WorkerRelease, WorkerStatus,
};
use serde::de::DeserializeOwned;

/// A function's answer is JSON `null` for an unknown worker.
fn known<T>(out: Option<T>, worker_id: &str) -> Result<T, RepoError> {
    out.ok_or_else(|| RepoError::UnknownWorker(worker_id.to_owned()))
}

/// `SELECT coalesce(<function>($1), 'null')` for a function of the worker id alone.
async fn per_worker<T: DeserializeOwned + Send + Unpin + 'static>(
    repo: &PostgresRepository,
    worker_id: &str,
    sql: &'static str,
) -> Result<T, RepoError> {
    validate_id("worker", worker_id)?;
    let out: Option<T> = repo.call(false, sql, |q| q.bind(worker_id)).await?;
    known(out, worker_id)
}

/// [`WorkerRepository::renew_leases`](sched_core::WorkerRepository::renew_leases).
pub(crate) async fn renew_leases(
    repo: &PostgresRepository,
    worker_id: &str,
    container_ids: &[String],
    lease_ms: u64,
) -> Result<Vec<LeaseRenewal>, RepoError> {
    validate_renewal(worker_id, container_ids, lease_ms)?;
    // Validated: at most MAX_LEASE_MS, far below i64::MAX.
    let lease = i64::try_from(lease_ms).unwrap_or(i64::MAX);
    let sql = "SELECT coalesce(sched_renew_leases($1, $2, $3), 'null')";
    let out: Option<Vec<LeaseRenewal>> = repo
        .call(false, sql, |q| {
            q.bind(worker_id).bind(container_ids).bind(lease)
        })
        .await?;
    same_len(known(out, worker_id)?, container_ids.len(), "renew_leases")
}

/// [`WorkerRepository::expire_leases`](sched_core::WorkerRepository::expire_leases).
pub(crate) async fn expire_leases(
    repo: &PostgresRepository,
    worker_id: &str,
) -> Result<LeaseSweep, RepoError> {
    let sql = "SELECT coalesce(sched_expire_leases($1), 'null')";
    let sweep: LeaseSweep = per_worker(repo, worker_id, sql).await?;
    if !sweep.expired.is_empty() {
        tracing::debug!(
            worker = worker_id,
            expired = sweep.expired.len(),
            "expired reservations"
        );
    }
    Ok(sweep)
}

/// [`WorkerRepository::heartbeat`](sched_core::WorkerRepository::heartbeat).
pub(crate) async fn heartbeat(
    repo: &PostgresRepository,
    worker_id: &str,
) -> Result<Heartbeat, RepoError> {
    let sql = "SELECT coalesce(sched_heartbeat($1), 'null')";
    per_worker(repo, worker_id, sql).await
}

/// [`WorkerRepository::set_worker_status`](sched_core::WorkerRepository::set_worker_status).
pub(crate) async fn set_worker_status(
    repo: &PostgresRepository,
    worker_id: &str,
    status: WorkerStatus,
) -> Result<Worker, RepoError> {
    validate_id("worker", worker_id)?;
    let sql = "SELECT coalesce(sched_set_worker_status($1, $2), 'null')";
    let out: Option<Worker> = repo
        .call(false, sql, |q| q.bind(worker_id).bind(status.as_str()))
        .await?;
    known(out, worker_id)
}

/// [`WorkerRepository::release_worker`](sched_core::WorkerRepository::release_worker).
pub(crate) async fn release_worker(
    repo: &PostgresRepository,
    worker_id: &str,
) -> Result<WorkerRelease, RepoError> {
    let sql = "SELECT coalesce(sched_release_worker($1), 'null')";
    per_worker(repo, worker_id, sql).await
}
