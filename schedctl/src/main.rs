//! `schedctl`: the admin command-line tool for sched. See `schedctl --help` and the README's
//! "Lifecycle" section.
//!
//! Exit codes: 0 done; 1 the store failed or could not be reached; 2 bad input; 3 unknown
//! worker or container not held; 4 refused without `--yes` (nothing changed); 5 drift found.

mod cli;
mod commands;
mod demo_state;
mod error;
mod open;
mod output;

use clap::Parser;
use cli::{BackendKind, Cli, Command};
use commands::Report;
use error::{redact, CtlError};
use open::Store;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal, and never with NO_COLOR set: no escape codes in files or
        // pipes.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let secrets = open::secrets(&cli.store);
    let result = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(execute(&cli)),
        Err(e) => Err(CtlError::Output(format!("cannot start the runtime: {e}"))),
    };
    let result = result.and_then(|r| print(&r, cli.json).map(|()| r.code));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("schedctl: error: {}", redact(&e.to_string(), &secrets));
            ExitCode::from(e.exit_code())
        }
    }
}

/// Opens the store and runs the command.
async fn execute(cli: &Cli) -> Result<Report, CtlError> {
    if let Command::Demo = cli.command {
        if cli.store.backend != BackendKind::Memory {
            return Err(CtlError::Usage(
                "demo runs on its own in-memory store: use --backend memory".into(),
            ));
        }
        return commands::demo::demo().await;
    }
    let store = Store::open(&cli.store).await?;
    let out = commands::run(&store, &cli.command, cli.json).await;
    store.close().await;
    out
}

/// Writes the report to stdout, as text or JSON.
fn print(r: &Report, json: bool) -> Result<(), CtlError> {
    let mut out = std::io::stdout().lock();
    let written = if json {
        serde_json::to_writer_pretty(&mut out, &r.json)
            .map_err(|e| e.to_string())
            .and_then(|()| writeln!(out).map_err(|e| e.to_string()))
    } else {
        out.write_all(r.text.as_bytes()).map_err(|e| e.to_string())
    };
    written
        .and_then(|()| out.flush().map_err(|e| e.to_string()))
        .map_err(CtlError::Output)
}
