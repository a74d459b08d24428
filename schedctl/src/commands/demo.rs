//! `demo`: a scripted session through the main commands, on the memory demo state, in one
//! process (one store). Each step says which exit code it expects; the demo fails when one
//! differs.

use super::{run, Report};
use crate::cli::Cli;
use crate::demo_state;
use crate::error::{exit, CtlError};
use crate::open::Store;
use crate::output::timestamp;
use clap::Parser;
use serde::Serialize;
use std::time::Duration;

/// One step of the script.
enum Step {
    /// A command line (after `schedctl`) and the exit code it should end with.
    Run(&'static str, u8),
    /// Time passes on the store's clock.
    Advance(Duration, &'static str),
    /// Simulated drift on `gpu-a` (a lost release).
    Drift(&'static str),
}

const SCRIPT: &[Step] = &[
    Step::Run("workers", exit::OK),
    Step::Run("reservations node-a", exit::OK),
    Step::Run("find web-2", exit::OK),
    Step::Run("renew node-a web-1 web-2 db-1 --lease 10m", exit::OK),
    Step::Run("sweep", exit::OK),
    Step::Run("heartbeat node-c", exit::OK),
    Step::Run("drain node-a", exit::OK),
    Step::Run("release web-1", exit::REFUSED),
    Step::Run("release web-1 --yes", exit::OK),
    Step::Run("release-worker node-b --yes", exit::OK),
    Step::Run("enable node-a", exit::OK),
    Step::Advance(
        Duration::from_secs(3600),
        "an hour passes; node-a and node-c send no heartbeat",
    ),
    Step::Run("workers", exit::OK),
    Step::Run("sweep", exit::OK),
    Step::Drift("gpu-a loses 1000m and 1 GPU of free capacity (a lost release)"),
    Step::Run("audit", exit::DRIFT),
    Step::Run("reconcile --yes", exit::OK),
    Step::Run("audit", exit::OK),
];

/// A step in `demo --json`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum StepJson {
    /// A command.
    Command {
        command: String,
        exit_code: u8,
        output: Option<serde_json::Value>,
        error: Option<String>,
    },
    /// Something that happened between commands.
    Note { note: String },
}

/// `demo --json`.
#[derive(Debug, Serialize)]
struct DemoJson {
    started_at_ms: u64,
    steps: Vec<StepJson>,
    deviations: usize,
}

/// Runs the script on a fresh memory store.
pub async fn demo() -> Result<Report, CtlError> {
    let store = Store::memory(false).await;
    let (repo, clock) = store
        .memory_parts()
        .ok_or_else(|| CtlError::Store("the demo store is not a memory store".into()))?;
    let started = clock.now_ms();
    let mut text = format!(
        "# schedctl demo: one in-memory store, its clock standing at {}\n",
        timestamp(started)
    );
    let mut steps = Vec::new();
    let mut deviations = 0;
    for step in SCRIPT {
        match step {
            Step::Run(line, expected) => {
                let argv = std::iter::once("schedctl").chain(line.split_whitespace());
                let cli = Cli::try_parse_from(argv)
                    .map_err(|e| CtlError::Usage(format!("demo step {line:?}: {e}")))?;
                let (code, output, error) = match run(&store, &cli.command, true).await {
                    Ok(r) => {
                        text.push_str(&format!("\n$ schedctl {line}\n{}", r.text));
                        (r.code, Some(r.json), None)
                    }
                    Err(e) => {
                        text.push_str(&format!("\n$ schedctl {line}\nschedctl: error: {e}\n"));
                        (e.exit_code(), None, Some(e.to_string()))
                    }
                };
                if code != exit::OK {
                    text.push_str(&format!("(exit {code})\n"));
                }
                if code != *expected {
                    deviations += 1;
                    text.push_str(&format!("!! expected exit {expected}\n"));
                }
                steps.push(StepJson::Command {
                    command: format!("schedctl {line}"),
                    exit_code: code,
                    output,
                    error,
                });
            }
            Step::Advance(d, note) => {
                clock.advance(*d);
                text.push_str(&format!(
                    "\n# {note} (clock: {})\n",
                    timestamp(clock.now_ms())
                ));
                steps.push(StepJson::Note {
                    note: (*note).to_owned(),
                });
            }
            Step::Drift(note) => {
                if !demo_state::corrupt(repo).await {
                    deviations += 1;
                }
                text.push_str(&format!("\n# {note}\n"));
                steps.push(StepJson::Note {
                    note: (*note).to_owned(),
                });
            }
        }
    }
    let code = if deviations == 0 {
        exit::OK
    } else {
        text.push_str(&format!("\n{deviations} steps did not end as expected\n"));
        exit::FAILURE
    };
    Report::with_code(
        text,
        DemoJson {
            started_at_ms: started,
            steps,
            deviations,
        },
        code,
    )
}
