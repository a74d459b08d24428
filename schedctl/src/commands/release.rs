//! `release` (one container) and `release-worker` (everything a worker holds). Both refuse
//! without `--yes`, after saying what they would release.

use super::{get_worker, Report};
use crate::error::CtlError;
use crate::open::Store;
use crate::output::{count, res, Table};
use sched_core::{ReleaseOutcome, WorkerRelease};

/// Releases one container.
pub async fn release(store: &Store, container: &str, yes: bool) -> Result<Report, CtlError> {
    sched_core::validate::validate_id("container", container)
        .map_err(|e| CtlError::Usage(format!("invalid input: {e}")))?;
    let held = store
        .repo
        .find_reservation(container)
        .await
        .map_err(|e| store.err(e))?;
    if let (Some(r), false) = (&held, yes) {
        return Err(CtlError::Refused(format!(
            "refusing to release {container} (held on {}: {}) without --yes",
            r.worker_id,
            res(&r.resources)
        )));
    }
    let out: ReleaseOutcome = match held {
        // Not held: nothing to release, nothing to confirm.
        None => ReleaseOutcome {
            container_id: container.to_owned(),
            released: None,
        },
        Some(_) => store
            .repo
            .release_batch(&[container.to_owned()])
            .await
            .map_err(|e| store.err(e))?
            .pop()
            .ok_or_else(|| CtlError::Store("release_batch returned no outcome".into()))?,
    };
    let text = match &out.released {
        Some(r) => format!(
            "released {container}: {} back to {} (version {})\n",
            res(&r.resources),
            r.worker_id,
            r.new_version
        ),
        None => format!("{container} is not held; nothing to release\n"),
    };
    Report::ok(text, out)
}

/// Releases every reservation of a worker (it stays registered).
pub async fn release_worker(store: &Store, worker: &str, yes: bool) -> Result<Report, CtlError> {
    let w = get_worker(store, worker).await?;
    if !yes {
        let ledger = store
            .repo
            .list_reservations(worker)
            .await
            .map_err(|e| store.err(e))?;
        let sum = sched_core::rules::ledger_sum(ledger.iter().map(|r| &r.resources));
        return Err(CtlError::Refused(format!(
            "refusing to release all {} of {worker} ({}) without --yes",
            count(ledger.len(), "reservation"),
            res(&sum)
        )));
    }
    let out: WorkerRelease = store
        .repo
        .release_worker(worker)
        .await
        .map_err(|e| store.err(e))?;
    let text = if out.released.is_empty() {
        format!("{worker} held nothing; nothing released\n")
    } else {
        let mut t = Table::new(["CONTAINER", "RESOURCES"]);
        for r in &out.released {
            t.row([r.container_id.clone(), res(&r.resources)]);
        }
        format!(
            "{}released {} of {worker}; free {} of {} (version {} -> {})\n",
            t.render(),
            count(out.released.len(), "reservation"),
            res(&out.free),
            res(&w.total),
            w.resource_version,
            out.resource_version
        )
    };
    Report::ok(text, out)
}
