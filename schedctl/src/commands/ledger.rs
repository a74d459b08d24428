//! `reservations` (a worker's ledger) and `find` (where a container is held).

use super::{get_worker, Report};
use crate::error::{exit, CtlError};
use crate::open::Store;
use crate::output::{count, relative, res, timestamp, Table};
use sched_core::ReservationRecord;
use serde::Serialize;

/// `reservations --json`.
#[derive(Debug, Serialize)]
struct LedgerJson<'a> {
    worker_id: &'a str,
    now_ms: u64,
    reservations: &'a [ReservationRecord],
}

/// `find --json`.
#[derive(Debug, Serialize)]
struct FindJson<'a> {
    container_id: &'a str,
    held: bool,
    reservation: Option<&'a ReservationRecord>,
}

/// The lease column: `-`, or the deadline and how far it is.
pub fn lease(r: &ReservationRecord, now_ms: u64) -> String {
    match r.lease_expires_at_ms {
        None => "-".to_owned(),
        Some(d) if d <= now_ms => format!("{} (expired {})", timestamp(d), relative(d, now_ms)),
        Some(d) => format!("{} ({})", timestamp(d), relative(d, now_ms)),
    }
}

/// Lists a worker's reservations.
pub async fn reservations(store: &Store, worker: &str) -> Result<Report, CtlError> {
    let w = get_worker(store, worker).await?;
    let ledger = store
        .repo
        .list_reservations(worker)
        .await
        .map_err(|e| store.err(e))?;
    let now = store.now_ms();
    let mut t = Table::new(["CONTAINER", "RESOURCES", "GPU TYPE", "LEASE EXPIRES"]);
    for r in &ledger {
        t.row([
            r.container_id.clone(),
            res(&r.resources),
            r.gpu_type.clone().unwrap_or_else(|| "-".into()),
            lease(r, now),
        ]);
    }
    let reserved = sched_core::rules::ledger_sum(ledger.iter().map(|r| &r.resources));
    let text = if ledger.is_empty() {
        format!("{worker} holds no reservations (free {})\n", res(&w.free))
    } else {
        format!(
            "{}{} on {worker}: {} reserved, {} free\n",
            t.render(),
            count(ledger.len(), "reservation"),
            res(&reserved),
            res(&w.free)
        )
    };
    Report::ok(
        text,
        LedgerJson {
            worker_id: worker,
            now_ms: now,
            reservations: &ledger,
        },
    )
}

/// Finds where a container is held; exits [`exit::NOT_FOUND`] when it is not.
pub async fn find(store: &Store, container: &str) -> Result<Report, CtlError> {
    sched_core::validate::validate_id("container", container)
        .map_err(|e| CtlError::Usage(format!("invalid input: {e}")))?;
    let found = store
        .repo
        .find_reservation(container)
        .await
        .map_err(|e| store.err(e))?;
    let now = store.now_ms();
    let (text, code) = match &found {
        Some(r) => (
            format!(
                "{container} is held on {}: {}{}, lease {}\n",
                r.worker_id,
                res(&r.resources),
                r.gpu_type
                    .as_deref()
                    .map(|g| format!(" ({g})"))
                    .unwrap_or_default(),
                match r.lease_expires_at_ms {
                    None => "none".to_owned(),
                    Some(_) => lease(r, now),
                }
            ),
            exit::OK,
        ),
        None => (format!("{container} is not held\n"), exit::NOT_FOUND),
    };
    Report::with_code(
        text,
        FindJson {
            container_id: container,
            held: found.is_some(),
            reservation: found.as_ref(),
        },
        code,
    )
}
