//! [`SimError`]: what a simulation run can fail with.

use sched_core::RepoError;

/// A run could not be completed (as opposed to a placement that failed, which is reported).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A repository or lock call failed outside the strategies' own retry loops.
    #[error("backend: {0}")]
    Repo(#[from] RepoError),
    /// The options do not make sense together.
    #[error("configuration: {0}")]
    Config(String),
    /// The backend is not available in this build or could not be reached.
    #[error("backend {0} unavailable: {1}")]
    BackendUnavailable(String, String),
    /// A `--tls-*` file cannot be read or does not hold what it should (checked before
    /// anything connects).
    #[error("TLS: the {flag} file {}: {reason}", path.display())]
    Tls {
        /// The flag that named the file.
        flag: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it (never its content).
        reason: String,
    },
    /// Writing output failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// JSON encoding or decoding failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// Drawing the plot failed.
    #[error("plot: {0}")]
    Plot(String),
    /// A `worker` child process failed.
    #[error("worker process: {0}")]
    Process(String),
}
