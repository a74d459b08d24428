//! Log lines written to a pipe carry no colour escape codes (issue 13): the simulator at debug
//! level logs through tracing to stderr, which a test harness captures through a pipe. The chaos
//! scenario injects faults, so the scheduler logs warnings (failed reads) and debug lines.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn logs_into_a_pipe_have_no_escape_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_sched-sim"))
        .args(["chaos", "--placements", "300", "--progress-every", "0"])
        .env("RUST_LOG", "debug")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" DEBUG "))
            .count()
            > 0,
        "nothing was logged at debug level:\n{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "escape codes in piped logs:\n{stderr}"
    );
}
