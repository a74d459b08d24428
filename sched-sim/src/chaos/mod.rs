//! `sched-sim chaos`: the soak mode of the chaos suite (`sched_tests::chaos`). It runs the
//! suite's random histories, drawn from `--seed`, on the chosen backend until `--placements`
//! containers are placed: several schedulers (batching on and off, both commit modes, version
//! checks) and direct callers burst concurrently, release to recycle capacity and re-register
//! workers, while the `Faulty` layer injects every fault kind on every method (and, with
//! `--real-faults`, the backend's real faults). Every round's answers are checked against the
//! store, every history ends with the invariants and the after-faults retry. It prints the
//! counts and exits non-zero on any disagreement, duplicate, drift or blocked container.

mod backends;

use crate::cli::Common;
use clap::Args;
use sched_core::Resources;
use sched_tests::chaos::{run_seeded, ChaosReport, Sizes};
use std::process::ExitCode;
use std::time::Instant;

/// `chaos` options (the backend, URLs, `--seed`, `--workers`, `--containers` (burst size) and
/// the container size are the global options).
#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// Stop once this many containers were placed.
    #[arg(long, default_value_t = 10_000)]
    pub placements: u64,
    /// Also inject the backend's real faults: a reply dropped by a TCP proxy and cut
    /// connections (single-node Redis, Postgres), `pg_terminate_backend` (Postgres), one node
    /// out of memory / paused / asleep / our connections killed (Redis Cluster; only on a
    /// cluster you own).
    #[arg(long)]
    pub real_faults: bool,
    /// Concurrent actions (bursts, direct calls, releases, re-registrations) per round.
    #[arg(long, default_value_t = 4)]
    pub actions: usize,
    /// Rounds per history (each history starts on fresh workers).
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// `Faulty` rules armed per round (0: none).
    #[arg(long, default_value_t = 2)]
    pub faults: usize,
    /// Largest worker, in containers of one unit (--container-cpu / --container-mem); workers
    /// are drawn between half of it and it.
    #[arg(long, default_value_t = 400)]
    pub worker_units: u64,
    /// Print progress to stderr every this many histories (0: never).
    #[arg(long, default_value_t = 10)]
    pub progress_every: u64,
}

/// The history sizes of a run.
pub fn sizes(common: &Common, args: &ChaosArgs) -> Sizes {
    let burst = common.containers.max(1);
    let actions = args.actions.max(1);
    Sizes {
        workers: common.workers.max(1),
        ids: u16::try_from(burst.saturating_mul(actions).saturating_mul(8)).unwrap_or(u16::MAX),
        rounds: args.rounds.max(1),
        actions,
        burst,
        unit: Resources::cpu_mem(common.container_cpu.max(1), common.container_mem.max(1)),
        worker_units: ((args.worker_units / 2).max(1), args.worker_units.max(1)),
        faults: args.faults,
    }
}

/// Runs the soak and prints its report; the exit code says whether it was clean.
pub async fn main(common: &Common, args: &ChaosArgs) -> ExitCode {
    match run(common, args).await {
        Ok(report) => {
            print!("{report}");
            if report.clean() {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "sched-sim chaos: {} problems (disagreements, duplicates, drift, blocked)",
                    report.violation_count
                );
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("sched-sim chaos: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the soak; returns the summed report.
pub async fn run(common: &Common, args: &ChaosArgs) -> Result<ChaosReport, crate::SimError> {
    let sizes = sizes(common, args);
    let opened = backends::open(common, args, sizes).await?;
    println!(
        "sched-sim chaos: {} placements on {}, seed {}, {} workers, bursts of up to {}, {} \
         actions x {} rounds per history",
        args.placements,
        opened.description,
        common.seed,
        sizes.workers,
        sizes.burst,
        sizes.actions,
        sizes.rounds
    );
    let t = Instant::now();
    let every = args.progress_every;
    let report = run_seeded(&opened.target, common.seed, args.placements, |r| {
        if every > 0 && r.cases % every == 0 {
            eprintln!(
                "  {:>6.1}s  histories {}  placements {}  answers checked {}  faults {}  \
                 violations {}",
                t.elapsed().as_secs_f64(),
                r.cases,
                r.placements,
                r.answers_checked,
                r.faults_total(),
                r.violation_count
            );
        }
    })
    .await;
    println!("elapsed {:.1}s", t.elapsed().as_secs_f64());
    opened.cleanup().await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_soak_on_memory_places_checks_and_injects() {
        let cli = Cli::parse_from([
            "sched-sim",
            "chaos",
            "--placements",
            "500",
            "--workers",
            "4",
            "--containers",
            "20",
            "--rounds",
            "6",
            "--progress-every",
            "0",
        ]);
        let Some(crate::cli::Command::Chaos(args)) = &cli.command else {
            panic!("parsed {:?}", cli.command);
        };
        assert_eq!(sizes(&cli.common, args).ids, 20 * 4 * 8);
        let report = run(&cli.common, args).await.expect("soak runs");
        assert!(report.placements >= 500, "{report}");
        assert!(report.answers_checked >= report.placements, "{report}");
        assert!(
            report.faults.get("faulty:fired").is_some_and(|n| *n > 0),
            "{report}"
        );
        assert!(
            (report.cases..=report.cases * 6).contains(&report.rounds),
            "1 to 6 rounds per history: {report}"
        );
    }
}
