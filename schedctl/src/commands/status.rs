//! `drain`, `disable`, `enable` (set_worker_status) and `heartbeat`.

use super::{get_worker, Report};
use crate::error::CtlError;
use crate::open::Store;
use crate::output::{timestamp, yes_no};
use sched_core::{Worker, WorkerStatus};
use serde::Serialize;

/// `drain|disable|enable --json`.
#[derive(Debug, Serialize)]
struct StatusJson {
    previous_status: WorkerStatus,
    worker: Worker,
}

/// `heartbeat --json`.
#[derive(Debug, Serialize)]
struct HeartbeatJson<'a> {
    worker_id: &'a str,
    at_ms: u64,
    was_stale: bool,
}

/// Sets a worker's status (one atomic call; capacity and ledger stay).
pub async fn set_status(
    store: &Store,
    worker: &str,
    status: WorkerStatus,
) -> Result<Report, CtlError> {
    let before = get_worker(store, worker).await?;
    let after = store
        .repo
        .set_worker_status(worker, status)
        .await
        .map_err(|e| store.err(e))?;
    let note = match status {
        WorkerStatus::Available => "it takes new reservations",
        WorkerStatus::Draining | WorkerStatus::Disabled => {
            "it keeps its reservations and takes no new ones"
        }
    };
    let text = format!(
        "{worker}: {} -> {} (version {} -> {}); {note}\n",
        before.status, after.status, before.resource_version, after.resource_version
    );
    Report::ok(
        text,
        StatusJson {
            previous_status: before.status,
            worker: after,
        },
    )
}

/// Records a heartbeat.
pub async fn heartbeat(store: &Store, worker: &str) -> Result<Report, CtlError> {
    sched_core::validate::validate_id("worker", worker)
        .map_err(|e| CtlError::Usage(format!("invalid input: {e}")))?;
    let hb = store
        .repo
        .heartbeat(worker)
        .await
        .map_err(|e| store.err(e))?;
    let text = format!(
        "{worker}: heartbeat at {} (was stale: {})\n",
        timestamp(hb.at_ms),
        yes_no(hb.was_stale)
    );
    Report::ok(
        text,
        HeartbeatJson {
            worker_id: worker,
            at_ms: hb.at_ms,
            was_stale: hb.was_stale,
        },
    )
}
