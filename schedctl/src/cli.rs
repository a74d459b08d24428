//! Command-line options (clap derive). The store options are global, so they work before or
//! after the command, with the same names and defaults as `sched-sim`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::time::Duration;

/// Admin tool for sched: inspect and operate the workers and reservations of one store.
#[derive(Debug, Parser)]
#[command(
    name = "schedctl",
    version,
    about,
    long_about = None,
    after_help = "Exit codes: 0 done; 1 the store failed or is out of reach; 2 bad input; \
                  3 unknown worker, or container not held; 4 refused without --yes (nothing \
                  changed); 5 audit found drift."
)]
pub struct Cli {
    /// Which store, and how to reach it.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print the result as JSON on stdout (errors stay text on stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Which store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// An in-process store, seeded with demo state in every run (default).
    Memory,
    /// Redis through redis-rs.
    Redis,
    /// Redis through fred.
    RedisFred,
    /// PostgreSQL through sqlx.
    Postgres,
}

impl BackendKind {
    /// Name as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Memory => "memory",
            BackendKind::Redis => "redis",
            BackendKind::RedisFred => "redis-fred",
            BackendKind::Postgres => "postgres",
        }
    }
}

/// Store options shared by every command.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Store to work on. `memory` is a fresh in-process store with demo state in every run.
    #[arg(long, value_enum, default_value_t = BackendKind::Memory, global = true)]
    pub backend: BackendKind,
    /// Redis URL (redis, redis-fred backends).
    #[arg(long, env = "REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// Redis Cluster seed URLs, comma-separated (with --backend redis or redis-fred); used
    /// instead of --redis-url.
    #[arg(long, value_delimiter = ',', global = true)]
    pub redis_cluster_urls: Vec<String>,
    /// Key prefix of the deployment on Redis.
    #[arg(long, default_value = "sched", global = true)]
    pub prefix: String,
    /// PostgreSQL URL (postgres backend).
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Schema of the deployment on PostgreSQL.
    #[arg(long, default_value = sched_postgres::DEFAULT_SCHEMA, global = true)]
    pub schema: String,
    /// TLS: trust this CA bundle (PEM) for the server's certificate: Redis over `rediss://`,
    /// PostgreSQL as `sslrootcert` (set `sslmode=verify-full` in the URL).
    #[arg(long, global = true, value_name = "PEM_FILE")]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// TLS: present this client certificate (PEM; with --tls-client-key).
    #[arg(
        long,
        global = true,
        value_name = "PEM_FILE",
        requires = "tls_client_key"
    )]
    pub tls_client_cert: Option<std::path::PathBuf>,
    /// TLS: the client certificate's private key (PEM; with --tls-client-cert).
    #[arg(
        long,
        global = true,
        value_name = "PEM_FILE",
        requires = "tls_client_cert"
    )]
    pub tls_client_key: Option<std::path::PathBuf>,
    /// Memory backend only: seed the demo state with free-capacity drift on one worker (to
    /// try `audit` and `reconcile`).
    #[arg(long, global = true, hide = true)]
    pub demo_drift: bool,
}

/// The commands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// List workers: capacity, use, version, status and heartbeat.
    Workers(PoolArg),
    /// Show a worker's reservations (its ledger).
    Reservations(WorkerArg),
    /// Find where a container is held.
    Find(ContainerArg),
    /// Drain a worker: it keeps its reservations but takes no new ones.
    Drain(WorkerArg),
    /// Disable a worker: it keeps its reservations but takes no new ones.
    Disable(WorkerArg),
    /// Make a worker available again.
    Enable(WorkerArg),
    /// Release one container, returning its capacity (needs --yes).
    Release(ReleaseArgs),
    /// Release every reservation of a worker (decommission; needs --yes).
    ReleaseWorker(ReleaseWorkerArgs),
    /// Renew the leases of containers held on one worker.
    Renew(RenewArgs),
    /// Expire due leases (and the reservations of stale workers whose policy is `release`) on
    /// every worker, and report what went.
    Sweep(PoolArg),
    /// Record a heartbeat for a worker (what its agent does).
    Heartbeat(WorkerArg),
    /// Audit every worker's free capacity against its ledger; exits 5 on drift.
    Audit(PoolArg),
    /// Repair drift: set every drifted worker's free capacity from its ledger (needs --yes).
    Reconcile(ReconcileArgs),
    /// Create or update the PostgreSQL schema (nothing to do on memory and Redis).
    Migrate,
    /// A scripted session through the main commands on the memory demo state.
    Demo,
}

/// A worker id.
#[derive(Debug, Clone, Args)]
pub struct WorkerArg {
    /// The worker.
    pub worker: String,
}

/// A container id.
#[derive(Debug, Clone, Args)]
pub struct ContainerArg {
    /// The container.
    pub container: String,
}

/// An optional pool filter.
#[derive(Debug, Clone, Default, Args)]
pub struct PoolArg {
    /// Only the workers of this pool.
    #[arg(long)]
    pub pool: Option<String>,
}

/// `release` options.
#[derive(Debug, Clone, Args)]
pub struct ReleaseArgs {
    /// The container.
    pub container: String,
    /// Really release it.
    #[arg(long)]
    pub yes: bool,
}

/// `release-worker` options.
#[derive(Debug, Clone, Args)]
pub struct ReleaseWorkerArgs {
    /// The worker.
    pub worker: String,
    /// Really release everything it holds.
    #[arg(long)]
    pub yes: bool,
}

/// `renew` options.
#[derive(Debug, Clone, Args)]
pub struct RenewArgs {
    /// The worker holding the containers.
    pub worker: String,
    /// The containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// The new lease, from now by the store's clock (`30s`, `5m`, `1h`, `1h 30m`, `500ms`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lease: Duration,
}

/// `reconcile` options.
#[derive(Debug, Clone, Default, Args)]
pub struct ReconcileArgs {
    /// Only the workers of this pool.
    #[arg(long)]
    pub pool: Option<String>,
    /// Really repair.
    #[arg(long)]
    pub yes: bool,
}
