//! Command-line options (clap derive). Options are global, so they work before or after the
//! scenario name; `burst` is the default scenario.

use crate::backend::{BackendKind, BackendOptions};
use crate::scenario::churn::ChurnConfig;
use crate::scenario::RunConfig;
use crate::strategy::{CallMode, StrategyKind, StrategyOptions};
use crate::tls::TlsFiles;
use clap::{Args, Parser, Subcommand, ValueEnum};
use sched_core::affinity::AffinityMode;
use sched_core::{Resources, StalePolicy};
use std::path::PathBuf;
use std::time::Duration;

/// Simulator and benchmark for sched.
#[derive(Debug, Parser)]
#[command(name = "sched-sim", version, about, long_about = None)]
pub struct Cli {
    /// Options shared by every scenario.
    #[command(flatten)]
    pub common: Common,
    /// The scenario (default: burst).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Affinity variant for `sched`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AffinityArg {
    /// No spreading.
    Off,
    /// sha256 rotation within a priority tier.
    Rotate,
    /// Rendezvous hashing within a priority tier.
    Rendezvous,
    /// Two choices (rotation's first, or a hash-started least-loaded one), judged against the
    /// burst's plan.
    Balanced,
}

impl From<AffinityArg> for AffinityMode {
    fn from(a: AffinityArg) -> Self {
        match a {
            AffinityArg::Off => AffinityMode::Off,
            AffinityArg::Rotate => AffinityMode::Rotate,
            AffinityArg::Rendezvous => AffinityMode::Rendezvous,
            AffinityArg::Balanced => AffinityMode::Balanced,
        }
    }
}

/// Options shared by every scenario.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Store to run against.
    #[arg(long, value_enum, default_value_t = BackendKind::Memory, global = true)]
    pub backend: BackendKind,
    /// Redis URL (redis, redis-fred backends).
    #[arg(long, env = "REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// PostgreSQL URL (postgres backend).
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Redis Cluster seed URLs, comma-separated (redis-cluster, redis-fred-cluster backends).
    #[arg(long, env = "REDIS_CLUSTER_URLS", value_delimiter = ',', global = true)]
    pub redis_cluster_urls: Vec<String>,
    /// TLS: trust this CA bundle (PEM) for the server's certificate: Redis over `rediss://`,
    /// PostgreSQL as `sslrootcert` (set `sslmode=verify-full` in the URL). Every connection
    /// the simulator opens uses it, its own (floor, peer, locks) included.
    #[arg(long, global = true, value_name = "PEM_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// TLS: present this client certificate (PEM; with --tls-client-key).
    #[arg(
        long,
        global = true,
        value_name = "PEM_FILE",
        requires = "tls_client_key"
    )]
    pub tls_client_cert: Option<PathBuf>,
    /// TLS: the client certificate's private key (PEM; with --tls-client-cert).
    #[arg(
        long,
        global = true,
        value_name = "PEM_FILE",
        requires = "tls_client_cert"
    )]
    pub tls_client_key: Option<PathBuf>,
    /// Strategy to run.
    #[arg(long, value_enum, default_value_t = StrategyKind::Sched, global = true)]
    pub strategy: StrategyKind,
    /// Run naive, seed and sched side by side and print ratios.
    #[arg(long, global = true)]
    pub compare: bool,
    /// Affinity variant for sched.
    #[arg(long, value_enum, default_value_t = AffinityArg::Balanced, global = true)]
    pub affinity: AffinityArg,
    /// How a burst reaches sched: `each` container by its own `schedule()` call from its own
    /// task (the original scenario), or the whole burst as one `schedule_batch()` call.
    #[arg(long, value_enum, default_value_t = CallMode::Each, global = true)]
    pub calls: CallMode,
    /// Containers per burst.
    #[arg(long, default_value_t = 100, global = true)]
    pub containers: usize,
    /// Workers.
    #[arg(long, default_value_t = 20, global = true)]
    pub workers: usize,
    /// Concurrent callers per burst (0: one task per container, all at once).
    #[arg(long, default_value_t = 0, global = true)]
    pub concurrency: usize,
    /// Seed for container ids (affinity depends on them).
    #[arg(long, default_value_t = 42, global = true)]
    pub seed: u64,
    /// Worker CPU, millicores.
    #[arg(long, default_value_t = 4000, global = true)]
    pub worker_cpu: u64,
    /// Worker memory, MiB.
    #[arg(long, default_value_t = 8192, global = true)]
    pub worker_mem: u64,
    /// Container CPU, millicores.
    #[arg(long, default_value_t = 250, global = true)]
    pub container_cpu: u64,
    /// Container memory, MiB.
    #[arg(long, default_value_t = 256, global = true)]
    pub container_mem: u64,
    /// Latency added to every backend call (one call = one round trip), milliseconds.
    #[arg(long, default_value_t = 0.0, global = true)]
    pub rtt_ms: f64,
    /// Bursts (rounds) per strategy; default 20 (burst), 3 (scale), 10 (contention).
    #[arg(long, global = true)]
    pub repeat: Option<u32>,
    /// Read-cache TTL for seed and sched, milliseconds (0: no cache).
    #[arg(long, default_value_t = 500, global = true)]
    pub cache_ttl_ms: u64,
    /// Print the report as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Write a plot of the sweep (burst --sweep, scale): FILE.svg (vector, no font needed) or
    /// FILE.png (needs a TrueType font: $SCHED_SIM_FONT, else a well-known path such as
    /// /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf). An axis goes logarithmic by itself
    /// when its values span more than 1.5 orders of magnitude; the legend sits right of the
    /// plot.
    #[arg(long, value_name = "FILE.svg|FILE.png", global = true)]
    pub plot: Option<PathBuf>,
    /// burst: sweep the number of workers from --sweep-min to --sweep-max.
    #[arg(long, global = true)]
    pub sweep: bool,
    /// First worker count of --sweep.
    #[arg(long, default_value_t = 10, global = true)]
    pub sweep_min: usize,
    /// Last worker count of --sweep.
    #[arg(long, default_value_t = 40, global = true)]
    pub sweep_max: usize,
    /// Step of --sweep.
    #[arg(long, default_value_t = 5, global = true)]
    pub sweep_step: usize,
}

/// Scenarios.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Bursts of containers onto a fresh worker set (default).
    Burst,
    /// Placements per second with concurrent schedulers, releasing as containers finish.
    Sustained(SustainedArgs),
    /// Cost per placement from 10 to 10,000 workers and 100 to 100,000 containers.
    Scale(ScaleArgs),
    /// Several scheduler instances on one backend, as tasks or as OS processes.
    Contention(ContentionArgs),
    /// Internal: one contention instance in a child process.
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// Soak: the chaos suite's random histories (several schedulers and direct callers,
    /// releases, re-registrations, injected faults) until `--placements` containers are placed,
    /// checking every answer against the store; exits non-zero on any problem.
    Chaos(crate::chaos::ChaosArgs),
    /// The reservation lifecycle under churn: leased containers with random lifetimes (a share
    /// dying without release), agents heartbeating and renewing in bulk, drains, one agent
    /// crashing and coming back, a periodic sweep; exits non-zero if any capacity leaks, any
    /// worker drifts or a live container is lost.
    Churn(ChurnArgs),
}

/// Stale policy of the workers (`churn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StaleArg {
    /// Keep a stale worker's reservations; their leases expire on their own deadlines.
    Keep,
    /// The sweep releases every reservation of a stale worker (reason `worker_stale`).
    Release,
}

impl From<StaleArg> for StalePolicy {
    fn from(a: StaleArg) -> Self {
        match a {
            StaleArg::Keep => StalePolicy::Keep,
            StaleArg::Release => StalePolicy::Release,
        }
    }
}

/// `churn` options (workers, sizes, backend, seed: the global options).
#[derive(Debug, Clone, Args)]
pub struct ChurnArgs {
    /// How long to place containers, seconds (then one lease more to settle, and the checks).
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Lease of every placement, milliseconds.
    #[arg(long, default_value_t = 500)]
    pub lease_ms: u64,
    /// Heartbeat timeout of every worker, milliseconds.
    #[arg(long, default_value_t = 400)]
    pub heartbeat_timeout_ms: u64,
    /// What the sweep does with a stale worker's reservations.
    #[arg(long, value_enum, default_value_t = StaleArg::Release)]
    pub on_stale: StaleArg,
    /// Each agent's round (one heartbeat, one release, one renew_leases), milliseconds.
    #[arg(long, default_value_t = 100)]
    pub agent_period_ms: u64,
    /// How often the sweeper runs sweep_all, milliseconds.
    #[arg(long, default_value_t = 100)]
    pub sweep_period_ms: u64,
    /// Containers per placement burst.
    #[arg(long, default_value_t = 10)]
    pub burst_size: usize,
    /// Time between placement bursts, milliseconds.
    #[arg(long, default_value_t = 40)]
    pub burst_interval_ms: u64,
    /// Shortest container lifetime, milliseconds.
    #[arg(long, default_value_t = 200)]
    pub lifetime_min_ms: u64,
    /// Longest container lifetime, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub lifetime_max_ms: u64,
    /// Share of containers that die without a release (their agent stops renewing them).
    #[arg(long, default_value_t = 0.3)]
    pub die_share: f64,
    /// Time between drains of a random worker, milliseconds.
    #[arg(long, default_value_t = 500)]
    pub drain_period_ms: u64,
    /// How long a drained worker stays drained, milliseconds (0: no drains).
    #[arg(long, default_value_t = 300)]
    pub drain_for_ms: u64,
    /// When one agent crashes, milliseconds after the start (default: 30 % of --duration).
    #[arg(long)]
    pub crash_at_ms: Option<u64>,
    /// How long it stays down, milliseconds (default: 30 % of --duration; 0: no crash).
    #[arg(long)]
    pub crash_for_ms: Option<u64>,
}

impl ChurnArgs {
    /// The churn settings.
    pub fn config(&self) -> ChurnConfig {
        let duration = Duration::from_secs_f64(self.duration.max(0.0));
        let ms = Duration::from_millis;
        ChurnConfig {
            duration,
            lease_ms: self.lease_ms,
            heartbeat_timeout_ms: self.heartbeat_timeout_ms,
            on_stale: self.on_stale.into(),
            agent_period: ms(self.agent_period_ms),
            sweep_period: ms(self.sweep_period_ms),
            burst_size: self.burst_size,
            burst_interval: ms(self.burst_interval_ms),
            lifetime_min: ms(self.lifetime_min_ms),
            lifetime_max: ms(self.lifetime_max_ms),
            die_share: self.die_share,
            drain_period: ms(self.drain_period_ms),
            drain_for: ms(self.drain_for_ms),
            crash_at: self.crash_at_ms.map_or(duration.mul_f64(0.3), ms),
            crash_for: self.crash_for_ms.map_or(duration.mul_f64(0.3), ms),
        }
    }
}

/// `sustained` options.
#[derive(Debug, Clone, Args)]
pub struct SustainedArgs {
    /// How long to keep placing, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub duration_secs: f64,
    /// Concurrent scheduler instances; a comma-separated list sweeps them (`1,2,4,8`: one
    /// row per count).
    #[arg(long, value_delimiter = ',', default_value = "4")]
    pub schedulers: Vec<usize>,
    /// Containers per burst.
    #[arg(long, default_value_t = 10)]
    pub burst_size: usize,
    /// Container lifetime before release, milliseconds.
    #[arg(long, default_value_t = 20)]
    pub lifetime_ms: u64,
    /// Demand as a share of the workers' capacity: the instances together hold at most this
    /// share (above 1.0 they ask for more than there is, and rejections are expected).
    #[arg(long, default_value_t = 0.8)]
    pub load: f64,
}

impl SustainedArgs {
    /// The settings for `schedulers` instances.
    pub fn config(&self, schedulers: usize) -> crate::scenario::sustained::SustainedConfig {
        crate::scenario::sustained::SustainedConfig {
            duration: Duration::from_secs_f64(self.duration_secs.max(0.0)),
            schedulers,
            burst_size: self.burst_size,
            lifetime: Duration::from_millis(self.lifetime_ms),
            load: self.load,
        }
    }
}

/// `scale` options.
#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// Largest worker count of the grid.
    #[arg(long, default_value_t = 10_000)]
    pub max_workers: usize,
    /// Largest container count of the grid (default 100,000 for sched, 10,000 for seed,
    /// 1,000 for naive).
    #[arg(long)]
    pub max_containers: Option<usize>,
}

/// `contention` options.
#[derive(Debug, Clone, Args)]
pub struct ContentionArgs {
    /// Scheduler instances.
    #[arg(long, default_value_t = 4)]
    pub instances: usize,
    /// Run the instances as separate OS processes (needs a shared backend).
    #[arg(long)]
    pub processes: bool,
    /// With --processes: every instance places the SAME pool of this many container ids (each
    /// in its own order), so the instances race for every container. 0 = disjoint shares.
    #[arg(long, default_value_t = 0)]
    pub shared_ids: usize,
    /// With --processes: kill one instance (SIGKILL) at a random moment of every round, to show
    /// that a crashed scheduler leaks nothing: what it committed is in the workers' ledgers
    /// (their inboxes), the rest never happened.
    #[arg(long)]
    pub kill_one: bool,
}

/// Hidden `worker` options: which share of which round to place, in which namespace.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Backend namespace (key prefix / schema) created by the parent.
    #[arg(long)]
    pub namespace: String,
    /// Instance number.
    #[arg(long)]
    pub instance: usize,
    /// Round number.
    #[arg(long)]
    pub round: u32,
    /// Start placing at this wall-clock time (Unix ms).
    #[arg(long, default_value_t = 0)]
    pub start_at_unix_ms: u64,
    /// Draw the containers from a shared pool of this many ids (0 = this instance's own ids).
    #[arg(long, default_value_t = 0)]
    pub shared_ids: usize,
}

impl Common {
    /// Backend options.
    pub fn backend_options(&self) -> BackendOptions {
        BackendOptions {
            kind: self.backend,
            redis_url: self.redis_url.clone(),
            database_url: self.database_url.clone(),
            redis_cluster_urls: self.redis_cluster_urls.clone(),
            tls: TlsFiles::new(
                self.tls_ca_file.clone(),
                self.tls_client_cert.clone(),
                self.tls_client_key.clone(),
            ),
            rtt: Duration::from_secs_f64(self.rtt_ms.max(0.0) / 1000.0),
        }
    }

    /// The run configuration, with `default_repeat` unless `--repeat` was given.
    pub fn run_config(&self, default_repeat: u32) -> RunConfig {
        RunConfig {
            backend: self.backend_options(),
            workers: self.workers,
            worker_capacity: Resources::cpu_mem(self.worker_cpu, self.worker_mem),
            containers: self.containers,
            container_size: Resources::cpu_mem(self.container_cpu, self.container_mem),
            concurrency: self.concurrency,
            repeat: self.repeat.unwrap_or(default_repeat).max(1),
            seed: self.seed,
            strategy: StrategyOptions {
                affinity: self.affinity.into(),
                calls: self.calls,
                cache_ttl: Duration::from_millis(self.cache_ttl_ms),
                ..StrategyOptions::default()
            },
            quiet: self.json,
            yardsticks: true,
        }
    }

    /// The strategies to run: all three with `--compare`, else `--strategy`.
    pub fn strategies(&self) -> Vec<StrategyKind> {
        if self.compare {
            StrategyKind::ALL.to_vec()
        } else {
            vec![self.strategy]
        }
    }
}
