//! The commands: each takes the open store and returns a [`Report`] (text, JSON, exit code).

mod audit;
pub mod demo;
mod leases;
mod ledger;
mod release;
mod status;
mod workers;

use crate::cli::Command;
use crate::error::{exit, CtlError};
use crate::open::{Migrated, Store};
use serde::Serialize;

/// What a command prints, and how the process exits.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Human-readable output (ends with a newline).
    pub text: String,
    /// The same result for `--json`.
    pub json: serde_json::Value,
    /// Exit code (0 unless the command reports a finding: not found, drift).
    pub code: u8,
}

impl Report {
    /// A successful report.
    pub fn ok(text: String, json: impl Serialize) -> Result<Report, CtlError> {
        Self::with_code(text, json, exit::OK)
    }

    /// A report with an exit code.
    pub fn with_code(text: String, json: impl Serialize, code: u8) -> Result<Report, CtlError> {
        let json = serde_json::to_value(json).map_err(|e| CtlError::Output(e.to_string()))?;
        Ok(Report { text, json, code })
    }
}

/// Runs one command (everything but `demo`, which drives this). `quiet` hides progress bars.
pub async fn run(store: &Store, cmd: &Command, quiet: bool) -> Result<Report, CtlError> {
    use sched_core::WorkerStatus::{Available, Disabled, Draining};
    match cmd {
        Command::Workers(p) => workers::workers(store, p.pool.as_deref()).await,
        Command::Reservations(w) => ledger::reservations(store, &w.worker).await,
        Command::Find(c) => ledger::find(store, &c.container).await,
        Command::Drain(w) => status::set_status(store, &w.worker, Draining).await,
        Command::Disable(w) => status::set_status(store, &w.worker, Disabled).await,
        Command::Enable(w) => status::set_status(store, &w.worker, Available).await,
        Command::Heartbeat(w) => status::heartbeat(store, &w.worker).await,
        Command::Release(a) => release::release(store, &a.container, a.yes).await,
        Command::ReleaseWorker(a) => release::release_worker(store, &a.worker, a.yes).await,
        Command::Renew(a) => leases::renew(store, a).await,
        Command::Sweep(p) => leases::sweep(store, p.pool.as_deref()).await,
        Command::Audit(p) => audit::audit(store, p.pool.as_deref(), quiet).await,
        Command::Reconcile(a) => audit::reconcile(store, a.pool.as_deref(), a.yes, quiet).await,
        Command::Migrate => migrate(store).await,
        Command::Demo => Err(CtlError::Usage(
            "`demo` cannot run inside another command".into(),
        )),
    }
}

/// JSON of `migrate`.
#[derive(Debug, Serialize)]
struct MigrateJson<'a> {
    backend: &'a str,
    migrated: bool,
    schema: Option<String>,
}

async fn migrate(store: &Store) -> Result<Report, CtlError> {
    let backend = store.ctx.backend;
    let (text, schema) = match store.migrate().await? {
        Migrated::Schema(s) => (format!("schema {s:?} is up to date\n"), Some(s)),
        Migrated::NothingToDo => (
            format!("nothing to migrate on the {backend} backend (it has no schema)\n"),
            None,
        ),
    };
    Report::ok(
        text,
        MigrateJson {
            backend,
            migrated: schema.is_some(),
            schema,
        },
    )
}

/// Reads a worker, or fails with [`CtlError::UnknownWorker`].
async fn get_worker(store: &Store, id: &str) -> Result<sched_core::Worker, CtlError> {
    sched_core::validate::validate_id("worker", id)
        .map_err(|e| CtlError::Usage(format!("invalid input: {e}")))?;
    store
        .repo
        .get_worker(id)
        .await
        .map_err(|e| store.err(e))?
        .ok_or_else(|| CtlError::UnknownWorker(id.to_owned()))
}
