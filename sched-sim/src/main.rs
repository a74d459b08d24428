//! `sched-sim`: see the crate docs and `sched-sim --help`.

use clap::Parser;
use sched_sim::cli::{Cli, Command, Common};
use sched_sim::plot::{line_chart, AxisScale, Scales, Series};
use sched_sim::report::Output;
use sched_sim::scenario::{burst, churn, contention, scale, sustained};
use sched_sim::strategy::StrategyKind;
use sched_sim::SimError;
use std::process::ExitCode;

/// mimalloc: glibc malloc's arena locks were a tenth of a sustained run's profile (one tokio
/// task per container, answers and plans allocated on both cores).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // The chaos soak injects faults on purpose: only errors by default.
                let chaos = matches!(cli.command, Some(Command::Chaos(_)));
                tracing_subscriber::EnvFilter::new(if chaos { "error" } else { "warn" })
            }),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal, and never with NO_COLOR set: no escape codes in files or
        // pipes.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sched-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Chaos(a)) = &cli.command {
        return rt.block_on(sched_sim::chaos::main(&cli.common, a));
    }
    if let Some(Command::Worker(w)) = &cli.command {
        let job = contention::WorkerJob {
            namespace: w.namespace.clone(),
            instance: w.instance,
            round: w.round,
            start_at_unix_ms: w.start_at_unix_ms,
            shared_ids: w.shared_ids,
        };
        let cfg = cli.common.run_config(1);
        let reply = rt.block_on(contention::run_worker(&cfg, cli.common.strategy, &job));
        return match reply.and_then(|r| Ok(serde_json::to_string(&r)?)) {
            Ok(j) => {
                println!("{j}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sched-sim worker: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match rt.block_on(run(&cli)) {
        Ok(out) => {
            if cli.common.json {
                match serde_json::to_string_pretty(&out) {
                    Ok(j) => println!("{j}"),
                    Err(e) => {
                        eprintln!("sched-sim: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", out.to_text());
            }
            if out.problems() > 0 {
                eprintln!(
                    "sched-sim: {} problems (unplaced containers, audit violations, or for churn leaked capacity and lost live containers)",
                    out.problems()
                );
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sched-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<Output, SimError> {
    let c = &cli.common;
    if !c.compare && c.strategy == StrategyKind::Peer {
        return Err(sched_sim::strategy::peer_alone());
    }
    if let Some(path) = &c.plot {
        sched_sim::plot::check(path)?;
    }
    match &cli.command {
        None | Some(Command::Burst) => run_burst(c).await,
        Some(Command::Sustained(a)) => {
            let cfg = c.run_config(1);
            let mut reports = Vec::new();
            for &n in &a.schedulers {
                for k in c.strategies() {
                    reports.push(sustained::run(&cfg, &a.config(n), k).await?);
                }
            }
            Ok(Output::Sustained { reports })
        }
        Some(Command::Scale(a)) => {
            let cfg = c.run_config(3);
            let mut points = Vec::new();
            for k in c.strategies() {
                let max_c = a.max_containers.unwrap_or(match k {
                    StrategyKind::Naive => 1_000,
                    StrategyKind::Seed => 10_000,
                    StrategyKind::Sched | StrategyKind::Peer => 100_000,
                });
                points.extend(scale::run(&cfg, k, &scale::grid(a.max_workers, max_c)).await?);
            }
            if let Some(path) = &c.plot {
                let series: Vec<Series> = c
                    .strategies()
                    .into_iter()
                    .map(|k| Series {
                        name: k.to_string(),
                        points: points
                            .iter()
                            .filter(|p| p.report.strategy == k)
                            .map(|p| (p.workers as f64, p.us_per_placement))
                            .collect(),
                    })
                    .collect();
                line_chart(
                    path,
                    "sched-sim scale: cost per placement (10 containers per worker)",
                    "workers",
                    "µs per placement (burst p50)",
                    &series,
                    Scales {
                        x: AxisScale::Log,
                        y: AxisScale::Auto,
                    },
                )?;
            }
            Ok(Output::Scale { points })
        }
        Some(Command::Contention(a)) => {
            let cfg = c.run_config(10);
            let mut reports = Vec::new();
            for k in c.strategies() {
                reports.push(if a.processes {
                    let exe = std::env::current_exe()?;
                    let faults = contention::ProcessFaults {
                        shared_ids: a.shared_ids,
                        kill_one: a.kill_one,
                    };
                    contention::run_processes(&cfg, k, a.instances, &exe, faults).await?
                } else {
                    contention::run_tasks(&cfg, k, a.instances).await?
                });
            }
            Ok(Output::Contention { reports })
        }
        Some(Command::Churn(a)) => {
            let cfg = c.run_config(1);
            Ok(Output::Churn {
                report: Box::new(churn::run(&cfg, &a.config()).await?),
            })
        }
        Some(Command::Worker(_) | Command::Chaos(_)) => Err(SimError::Config(
            "the worker and chaos subcommands are handled before run()".into(),
        )),
    }
}

async fn run_burst(c: &Common) -> Result<Output, SimError> {
    let cfg = c.run_config(20);
    if c.sweep {
        let step = c.sweep_step.max(1);
        let points = burst::sweep(
            &cfg,
            &c.strategies(),
            (c.sweep_min.max(1)..=c.sweep_max).step_by(step),
        )
        .await?;
        if let Some(path) = &c.plot {
            let series: Vec<Series> = c
                .strategies()
                .into_iter()
                .map(|k| Series {
                    name: format!("{k} p50"),
                    points: points
                        .iter()
                        .filter_map(|p| {
                            p.runs
                                .iter()
                                .find(|r| r.strategy == k)
                                .map(|r| (p.workers as f64, r.burst_time.p50_ms))
                        })
                        .collect(),
                })
                .collect();
            line_chart(
                path,
                &format!(
                    "sched-sim burst: {} containers, rtt {} ms",
                    cfg.containers, c.rtt_ms
                ),
                "workers",
                "burst time p50 (ms)",
                &series,
                Scales::default(),
            )?;
        }
        return Ok(Output::Sweep { points });
    }
    if c.plot.is_some() {
        tracing::warn!("--plot draws sweeps only (burst --sweep, scale); ignored");
    }
    if c.compare {
        return Ok(Output::Compare {
            compare: burst::compare(&cfg).await?,
        });
    }
    Ok(Output::Burst {
        report: Box::new(burst::run_strategy(&cfg, c.strategy).await?),
    })
}
