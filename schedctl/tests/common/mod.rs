//! Running the built `schedctl` as a process.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

/// What one run printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as JSON (the run must have used `--json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Asserts the exit code, showing the whole run when it differs.
    #[track_caller]
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        self
    }
}

/// Runs `schedctl args...` with the store variables removed from the environment (each test
/// passes the store it means explicitly).
pub fn schedctl(args: &[&str]) -> Run {
    schedctl_logging(args, None)
}

/// [`schedctl`] with `RUST_LOG` set to `filter` (its log lines go to stderr), or removed.
pub fn schedctl_logging(args: &[&str], filter: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_schedctl"));
    cmd.args(args)
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL");
    match filter {
        Some(f) => cmd.env("RUST_LOG", f),
        None => cmd.env_remove("RUST_LOG"),
    };
    let out = cmd.output().expect("schedctl runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `schedctl --backend memory args...`.
pub fn memory(args: &[&str]) -> Run {
    let mut all = vec!["--backend", "memory"];
    all.extend_from_slice(args);
    schedctl(&all)
}

/// A fresh lower-case name for a Redis prefix or a Postgres schema.
pub fn fresh_name(tag: &str) -> String {
    format!("schedctl_{tag}_{}", sched_tests::ns::random_hex())
}

pub mod scenarios;
pub mod stores;
