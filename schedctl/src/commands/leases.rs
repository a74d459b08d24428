//! `renew` (bulk lease renewal on one worker) and `sweep` (expiry on every worker).

use super::Report;
use crate::cli::RenewArgs;
use crate::error::CtlError;
use crate::open::Store;
use crate::output::{count, res, timestamp, Table};
use sched_core::lifecycle::{duration_ms, sweep_all};
use sched_core::{LeaseRenewal, LeaseSweep, RenewOutcome, Resources};
use serde::Serialize;

/// `renew --json`.
#[derive(Debug, Serialize)]
struct RenewJson<'a> {
    worker_id: &'a str,
    lease_ms: u64,
    renewals: Vec<LeaseRenewal>,
}

/// `sweep --json`.
#[derive(Debug, Serialize)]
struct SweepJson {
    workers_swept: usize,
    expired: usize,
    returned: Resources,
    sweeps: Vec<LeaseSweep>,
}

/// Renews leases on one worker, one call.
pub async fn renew(store: &Store, a: &RenewArgs) -> Result<Report, CtlError> {
    if a.lease.is_zero() {
        return Err(CtlError::Usage("--lease must be longer than 0".into()));
    }
    let lease_ms = duration_ms(a.lease);
    sched_core::validate::validate_renewal(&a.worker, &a.containers, lease_ms)
        .map_err(|e| CtlError::Usage(format!("invalid input: {e}")))?;
    let renewals = store
        .repo
        .renew_leases(&a.worker, &a.containers, lease_ms)
        .await
        .map_err(|e| store.err(e))?;
    let mut t = Table::new(["CONTAINER", "OUTCOME", "EXPIRES"]);
    let mut renewed = 0;
    for r in &renewals {
        let (outcome, expires) = match r.outcome {
            RenewOutcome::Renewed { expires_at_ms } => {
                renewed += 1;
                ("renewed".to_owned(), timestamp(expires_at_ms))
            }
            RenewOutcome::Expired { reason } => {
                (format!("too late: {}", reason.as_str()), "-".into())
            }
            RenewOutcome::NoLease => ("no lease (held until released)".into(), "-".into()),
            RenewOutcome::NotHeld => (format!("not held on {}", a.worker), "-".into()),
        };
        t.row([r.container_id.clone(), outcome, expires]);
    }
    let text = format!(
        "{}renewed {renewed} of {} leases on {} for {}\n",
        t.render(),
        renewals.len(),
        a.worker,
        humantime::format_duration(a.lease)
    );
    Report::ok(
        text,
        RenewJson {
            worker_id: &a.worker,
            lease_ms,
            renewals,
        },
    )
}

/// Sweeps every worker (of `pool`) and reports what expired: who, when, how much, why.
pub async fn sweep(store: &Store, pool: Option<&str>) -> Result<Report, CtlError> {
    let sweeps = sweep_all(&*store.repo, pool)
        .await
        .map_err(|e| store.err(e))?;
    let mut t = Table::new([
        "WORKER",
        "CONTAINER",
        "RESOURCES",
        "LEASE EXPIRED",
        "REASON",
        "SWEPT AT",
    ]);
    let mut returned = Resources::ZERO;
    let mut expired = 0;
    for s in &sweeps {
        returned = sched_core::rules::ledger_sum([&returned, &s.returned()]);
        for e in &s.expired {
            expired += 1;
            t.row([
                s.worker_id.clone(),
                e.record.container_id.clone(),
                res(&e.record.resources),
                e.record
                    .lease_expires_at_ms
                    .map_or_else(|| "-".to_owned(), timestamp),
                e.reason.as_str().to_owned(),
                timestamp(s.swept_at_ms),
            ]);
        }
    }
    let text = if expired == 0 {
        format!("swept {}: nothing expired\n", count(sweeps.len(), "worker"))
    } else {
        format!(
            "{}swept {}: {} expired, {} returned\n",
            t.render(),
            count(sweeps.len(), "worker"),
            count(expired, "reservation"),
            res(&returned)
        )
    };
    Report::ok(
        text,
        SweepJson {
            workers_swept: sweeps.len(),
            expired,
            returned,
            sweeps,
        },
    )
}
