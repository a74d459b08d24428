//! `audit` (drift of every worker; exits 5 on drift) and `reconcile` (repair; needs `--yes`),
//! with a progress bar on a terminal when there are many workers.

use super::Report;
use crate::error::{exit, CtlError};
use crate::open::Store;
use crate::output::{count, res, Table};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sched_core::{AuditMode, AuditReport, Drift, RepoError};
use serde::Serialize;
use std::io::IsTerminal;

/// Workers from which on a progress bar is drawn.
const PROGRESS_MIN: usize = 50;
/// Audits in flight at once.
const CONCURRENCY: usize = 16;

/// `audit --json` and `reconcile --json`.
#[derive(Debug, Serialize)]
struct AuditJson {
    workers_audited: usize,
    drift_workers: usize,
    /// `reconcile` only: whether the drift was repaired.
    repaired: bool,
    /// Every worker's report (taken before any repair).
    reports: Vec<AuditReport>,
}

/// `+1000m -512Mi +1gpu`: the non-zero parts of a drift.
fn drift(d: &Drift) -> String {
    let parts = [
        (d.cpu_millicores, "m"),
        (d.memory_mib, "Mi"),
        (d.gpu_count, "gpu"),
    ];
    parts
        .iter()
        .filter(|(v, _)| *v != 0)
        .map(|(v, unit)| format!("{v:+}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Audits (or repairs) every worker of `pool`, in id order. Workers removed meanwhile are
/// skipped.
async fn audit_all(
    store: &Store,
    pool: Option<&str>,
    mode: AuditMode,
    quiet: bool,
) -> Result<Vec<AuditReport>, CtlError> {
    let ws = store
        .repo
        .list_workers(pool)
        .await
        .map_err(|e| store.err(e))?;
    let bar = ProgressBar::with_draw_target(
        Some(ws.len() as u64),
        if !quiet && ws.len() >= PROGRESS_MIN && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(match mode {
        AuditMode::Check => "auditing",
        AuditMode::Repair => "reconciling",
    });
    let repo = &store.repo;
    let results: Vec<Result<AuditReport, RepoError>> = futures::stream::iter(ws.iter())
        .map(|w| {
            let bar = bar.clone();
            async move {
                let r = repo.audit_worker(&w.id, mode).await;
                bar.inc(1);
                r
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    bar.finish_and_clear();
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(a) => out.push(a),
            Err(RepoError::UnknownWorker(_)) => {}
            Err(e) => return Err(store.err(e)),
        }
    }
    Ok(out)
}

/// The drift table of the drifted reports.
fn drift_table(reports: &[&AuditReport]) -> String {
    let mut t = Table::new([
        "WORKER",
        "TOTAL",
        "FREE (STORED)",
        "RESERVED (LEDGER)",
        "RESERVATIONS",
        "DRIFT",
    ]);
    for a in reports {
        t.row([
            a.worker_id.clone(),
            res(&a.total),
            res(&a.free),
            res(&a.reserved),
            a.reservations.to_string(),
            drift(&a.drift),
        ]);
    }
    t.render()
}

/// Audits every worker; exits [`exit::DRIFT`] when any drifted.
pub async fn audit(store: &Store, pool: Option<&str>, quiet: bool) -> Result<Report, CtlError> {
    let reports = audit_all(store, pool, AuditMode::Check, quiet).await?;
    let drifted: Vec<&AuditReport> = reports.iter().filter(|a| !a.is_consistent()).collect();
    let entries: usize = reports.iter().map(|a| a.reservations).sum();
    let (text, code) = if drifted.is_empty() {
        (
            format!(
                "audited {}, {}: no drift\n",
                count(reports.len(), "worker"),
                count(entries, "reservation")
            ),
            exit::OK,
        )
    } else {
        (
            format!(
                "{}audited {}, {}: {} with drift \
                 (repair with `schedctl reconcile --yes`)\n",
                drift_table(&drifted),
                count(reports.len(), "worker"),
                count(entries, "reservation"),
                drifted.len()
            ),
            exit::DRIFT,
        )
    };
    let drift_workers = drifted.len();
    Report::with_code(
        text,
        AuditJson {
            workers_audited: reports.len(),
            drift_workers,
            repaired: false,
            reports,
        },
        code,
    )
}

/// Repairs drift on every worker; without `--yes`, audits and refuses.
pub async fn reconcile(
    store: &Store,
    pool: Option<&str>,
    yes: bool,
    quiet: bool,
) -> Result<Report, CtlError> {
    let mode = if yes {
        AuditMode::Repair
    } else {
        AuditMode::Check
    };
    let reports = audit_all(store, pool, mode, quiet).await?;
    let drifted: Vec<&AuditReport> = reports.iter().filter(|a| !a.is_consistent()).collect();
    if !yes {
        return Err(CtlError::Refused(format!(
            "refusing to reconcile without --yes ({} of {} workers have drift)",
            drifted.len(),
            reports.len()
        )));
    }
    let text = if drifted.is_empty() {
        format!("reconciled {}: no drift\n", count(reports.len(), "worker"))
    } else {
        format!(
            "{}reconciled {}: repaired {} (free set to total - ledger)\n",
            drift_table(&drifted),
            count(reports.len(), "worker"),
            drifted.len()
        )
    };
    let drift_workers = drifted.len();
    Report::ok(
        text,
        AuditJson {
            workers_audited: reports.len(),
            drift_workers,
            repaired: drift_workers > 0,
            reports,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_shows_signed_nonzero_parts() {
        let d = Drift {
            cpu_millicores: 1000,
            memory_mib: 0,
            gpu_count: -1,
        };
        assert_eq!(drift(&d), "+1000m -1gpu");
    }
}
