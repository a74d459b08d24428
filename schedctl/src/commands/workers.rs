//! `workers`: the worker table.

use super::Report;
use crate::error::CtlError;
use crate::open::Store;
use crate::output::{relative, res, span, yes_no, Table, UsedPct};
use sched_core::Worker;
use serde::Serialize;

/// One worker in `workers --json`: the store's worker plus what the table derives.
#[derive(Debug, Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    worker: &'a Worker,
    /// `(total − free) / total` per resource, percent.
    used_pct: UsedPct,
    /// `now_ms − last_heartbeat_ms`.
    heartbeat_age_ms: Option<u64>,
}

/// `workers --json`.
#[derive(Debug, Serialize)]
struct Json<'a> {
    /// The clock the ages are measured with.
    now_ms: u64,
    workers: Vec<Row<'a>>,
}

/// Lists the workers (of `pool`) as a table.
pub async fn workers(store: &Store, pool: Option<&str>) -> Result<Report, CtlError> {
    let ws = store
        .repo
        .list_workers(pool)
        .await
        .map_err(|e| store.err(e))?;
    let now = store.now_ms();
    let mut t = Table::new([
        "WORKER",
        "POOL",
        "STATUS",
        "TOTAL",
        "FREE",
        "USED",
        "VERSION",
        "LAST HEARTBEAT",
        "TIMEOUT",
        "STALE",
    ]);
    let mut rows = Vec::with_capacity(ws.len());
    for w in &ws {
        let used = UsedPct::of(&w.total, &w.free);
        let age = w.last_heartbeat_ms.map(|h| now.saturating_sub(h));
        t.row([
            w.id.clone(),
            w.pool.clone(),
            w.status.to_string(),
            res(&w.total),
            res(&w.free),
            format!("{:.0}%", used.max()),
            w.resource_version.to_string(),
            w.last_heartbeat_ms
                .map_or_else(|| "never".to_owned(), |h| relative(h, now)),
            w.heartbeat_timeout_ms.map_or_else(|| "-".to_owned(), span),
            match w.heartbeat_timeout_ms {
                None => "-".to_owned(),
                Some(_) if w.stale => format!("yes ({})", w.on_stale),
                Some(_) => yes_no(false).to_owned(),
            },
        ]);
        rows.push(Row {
            worker: w,
            used_pct: used,
            heartbeat_age_ms: age,
        });
    }
    let text = if ws.is_empty() {
        match pool {
            Some(p) => format!("no workers in pool {p:?}\n"),
            None => "no workers\n".to_owned(),
        }
    } else {
        t.render()
    };
    Report::ok(
        text,
        Json {
            now_ms: now,
            workers: rows,
        },
    )
}
