//! Reports: one [`Output`] per run, printed as readable text or as JSON (`--json`).

use crate::scenario::burst::{CompareReport, Ratios, StrategyReport, SweepPoint};
use crate::scenario::churn::ChurnReport;
use crate::scenario::contention::ContentionReport;
use crate::scenario::scale::ScalePoint;
use crate::scenario::sustained::SustainedReport;
use crate::strategy::{CallMode, StrategyKind};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Everything one invocation measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "scenario", rename_all = "snake_case")]
pub enum Output {
    /// One strategy's bursts.
    Burst {
        /// The report.
        report: Box<StrategyReport>,
    },
    /// `--compare`.
    Compare {
        /// The reports and ratios.
        compare: CompareReport,
    },
    /// `--sweep`.
    Sweep {
        /// One point per worker count.
        points: Vec<SweepPoint>,
    },
    /// `sustained`.
    Sustained {
        /// One report per strategy.
        reports: Vec<SustainedReport>,
    },
    /// `scale`.
    Scale {
        /// Per strategy, its grid.
        points: Vec<ScalePoint>,
    },
    /// `contention`.
    Contention {
        /// One report per strategy.
        reports: Vec<ContentionReport>,
    },
    /// `churn`.
    Churn {
        /// The report.
        report: Box<ChurnReport>,
    },
}

impl Output {
    /// Audit violations plus unplaced containers over everything in the output (for `churn`:
    /// leaked containers, audit violations and live containers lost, see
    /// [`ChurnReport::problems`]). A non-zero value makes the binary exit with status 2.
    pub fn problems(&self) -> u64 {
        let burst =
            |r: &StrategyReport| r.audit.violations() + r.requested.saturating_sub(r.placed);
        match self {
            Output::Burst { report } => burst(report),
            Output::Compare { compare } => {
                compare.runs.iter().map(burst).sum::<u64>()
                    + compare.affinity.iter().map(|a| a.violations).sum::<u64>()
            }
            Output::Sweep { points } => points.iter().flat_map(|p| &p.runs).map(burst).sum(),
            Output::Sustained { reports } => reports.iter().map(SustainedReport::problems).sum(),
            Output::Scale { points } => points.iter().map(|p| burst(&p.report)).sum(),
            Output::Contention { reports } => reports
                .iter()
                .map(|r| r.audit.violations() + r.requested.saturating_sub(r.placed))
                .sum(),
            Output::Churn { report } => report.problems(),
        }
    }

    /// Readable text.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        match self {
            Output::Burst { report } => strategy_text(&mut s, report),
            Output::Compare { compare } => compare_text(&mut s, compare),
            Output::Sweep { points } => sweep_text(&mut s, points),
            Output::Sustained { reports } => sustained_text(&mut s, reports),
            Output::Scale { points } => scale_text(&mut s, points),
            Output::Contention { reports } => contention_text(&mut s, reports),
            Output::Churn { report } => s.push_str(&report.to_text()),
        }
        s
    }
}

fn strategy_text(s: &mut String, r: &StrategyReport) {
    let _ = writeln!(
        s,
        "== {} on {} ({} containers onto {} workers, {}, rtt {} ms, affinity {:?}) ==",
        r.strategy,
        r.backend,
        r.containers,
        r.workers,
        match r.calls {
            CallMode::Batch if r.strategy == StrategyKind::Sched =>
                "one schedule_batch call".to_owned(),
            _ => format!("{} concurrent callers", r.concurrency),
        },
        r.rtt_ms,
        r.affinity
    );
    let bt = &r.burst_time;
    let _ = writeln!(
        s,
        "time taken      p50 {:.3} ms   p99 {:.3} ms   over {} bursts (cold first burst, not counted: {:.3} ms)",
        bt.p50_ms, bt.p99_ms, r.bursts, r.first_burst_ms
    );
    let _ = writeln!(
        s,
        "round trip      bare (PING / SELECT 1) p50 {:.3} ms -> burst p50 = {:.1} round trips",
        r.round_trip.p50_ms, r.burst_p50_over_round_trip
    );
    if let Some(raw) = &r.raw_commit {
        let _ = writeln!(
            s,
            "raw commit      same commit, one bare pipeline p50 {:.3} ms (min {:.3}) -> burst / floor x{:.2}",
            raw.p50_ms, raw.min_ms, r.burst_p50_over_floor
        );
    }
    if let (Some(peer), Some(x)) = (&r.peer, r.burst_p50_over_peer) {
        let _ = writeln!(
            s,
            "peer            beta9 (script per worker, pipelined) p50 {:.3} ms (min {:.3}) -> burst / peer x{:.2}",
            peer.p50_ms, peer.min_ms, x
        );
    }
    if let (Some(c), Some(x)) = (&r.callers, r.burst_p50_over_floor_and_callers) {
        let _ = writeln!(
            s,
            "callers         {} tasks spawned and joined, no work p50 {:.3} ms -> burst / (floor + callers) x{:.2}",
            r.containers, c.p50_ms, x
        );
    }
    for n in &r.notes {
        let _ = writeln!(s, "note            {n}");
    }
    let _ = writeln!(
        s,
        "placements      {}/{} per burst (worst burst), {}/{} total",
        r.min_placed_per_burst, r.containers, r.placed, r.requested
    );
    let p = &r.per_burst;
    let _ = writeln!(
        s,
        "per burst       reserve_batch calls {:.1}   per-worker atomic sections {:.1}   round trips {:.1}{}",
        p.reserve_calls,
        p.atomic_sections,
        p.round_trips,
        p.backend_round_trips
            .map(|b| format!(" (backend counted {b:.1})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "                reads {:.1}   lock calls {:.1}   unlock calls {:.1}",
        p.reads, p.lock_calls, p.unlock_calls
    );
    let _ = writeln!(
        s,
        "contention      conflicts/placement {:.3}   retries/placement {:.3}   failed locks/placement {:.3}",
        r.conflicts_per_placement, r.retries_per_placement, r.lock_failures_per_placement
    );
    let _ = writeln!(s, "cache hit rate  {:.1} %", r.cache_hit_rate * 100.0);
    let _ = writeln!(
        s,
        "per worker      {:?}   max/mean {:.2}",
        r.placements_per_worker, r.max_over_mean
    );
    let a = &r.audit;
    let _ = writeln!(
        s,
        "audit           double-bookings {}   misplaced {}   missing {}   orphaned {}   drifting workers {}   ({} workers x {} bursts audited) {}",
        a.double_bookings,
        a.misplaced,
        a.missing,
        a.orphaned,
        a.drift_workers,
        r.workers,
        r.bursts + 1,
        if a.is_clean() { "OK" } else { "FAILED" }
    );
    for f in &r.failures {
        let _ = writeln!(s, "failure         {f}");
    }
}

fn ratio_line(s: &mut String, name: &str, r: &Option<Ratios>) {
    if let Some(r) = r {
        let _ = writeln!(
            s,
            "{name:<14} burst p50 x{:.1}   p99 x{:.1}   round trips x{:.1}   atomic sections x{:.1}",
            r.burst_p50, r.burst_p99, r.round_trips, r.atomic_sections
        );
    }
}

fn compare_text(s: &mut String, c: &CompareReport) {
    let _ = writeln!(s, "== ratios (higher = sched is better) ==");
    ratio_line(s, "naive / sched", &c.naive_over_sched);
    ratio_line(s, "seed / sched", &c.seed_over_sched);
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<6} {:>10} {:>10} {:>8} {:>7} {:>10} {:>9} {:>9} {:>10} {:>8} {:>9} {:>6}",
        "",
        "p50 ms",
        "p99 ms",
        "x floor",
        "x peer",
        "round trp",
        "sections",
        "confl/pl",
        "retries/pl",
        "cache %",
        "max/mean",
        "audit"
    );
    for r in &c.runs {
        let _ = writeln!(
            s,
            "{:<6} {:>10.3} {:>10.3} {:>8.1} {:>7} {:>10.1} {:>9.1} {:>9.3} {:>10.3} {:>8.1} {:>9.2} {:>6}",
            r.strategy.as_str(),
            r.burst_time.p50_ms,
            r.burst_time.p99_ms,
            r.burst_p50_over_floor,
            r.burst_p50_over_peer
                .map_or_else(|| "-".to_owned(), |x| format!("{x:.1}")),
            r.per_burst.round_trips,
            r.per_burst.atomic_sections,
            r.conflicts_per_placement,
            r.retries_per_placement,
            r.cache_hit_rate * 100.0,
            r.max_over_mean,
            if r.audit.is_clean() && r.placed == r.requested { "OK" } else { "FAIL" }
        );
    }
    if !c.affinity.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "== sched affinity variants: max/mean placements per worker =="
        );
        for a in &c.affinity {
            let _ = writeln!(
                s,
                "{:<11} max/mean {:.2}   burst p50 {:.3} ms   violations {}",
                format!("{:?}", a.affinity).to_lowercase(),
                a.max_over_mean,
                a.burst_p50_ms,
                a.violations
            );
        }
    }
    for r in &c.runs {
        let _ = writeln!(s);
        strategy_text(s, r);
    }
}

fn sweep_text(s: &mut String, points: &[SweepPoint]) {
    let _ = writeln!(
        s,
        "== burst sweep: p50 / p99 ms, round trips per burst, max/mean =="
    );
    for p in points {
        let mut line = format!("workers {:>5}", p.workers);
        for r in &p.runs {
            let _ = write!(
                line,
                "   {}: {:.3}/{:.3} ms rt {:.0} mm {:.2}{}",
                r.strategy,
                r.burst_time.p50_ms,
                r.burst_time.p99_ms,
                r.per_burst.round_trips,
                r.max_over_mean,
                if r.audit.is_clean() && r.placed == r.requested {
                    ""
                } else {
                    " FAIL"
                }
            );
        }
        let _ = writeln!(s, "{line}");
    }
}

fn sustained_text(s: &mut String, reports: &[SustainedReport]) {
    for r in reports {
        let _ = writeln!(
            s,
            "== sustained {} on {}: {} schedulers, bursts of {} ({}), rtt {} ms, {:.1} s, demand {} of {} slots ==",
            r.strategy,
            r.backend,
            r.schedulers,
            r.burst_size,
            match r.calls {
                CallMode::Batch if r.strategy == StrategyKind::Sched => "one schedule_batch call each",
                _ => "a call per container",
            },
            r.rtt_ms,
            r.seconds,
            r.demand_slots,
            r.capacity_slots
        );
        let _ = writeln!(
            s,
            "placements/s {:.0}   placed {}   rejected for capacity {} (at capacity) + {} (below capacity)   errors {}",
            r.placements_per_sec, r.placed, r.rejected_at_capacity, r.rejected_below_capacity, r.errors
        );
        let _ = writeln!(
            s,
            "burst p50 {:.3} ms p99 {:.3} ms   round trips/placement {:.2}   conflicts/placement {:.3}   retries/placement {:.3}",
            r.burst_latency.p50_ms,
            r.burst_latency.p99_ms,
            r.round_trips_per_placement,
            r.conflicts_per_placement,
            r.retries_per_placement
        );
        let _ = writeln!(
            s,
            "final audit: ledger entries {} (want 0), duplicates {}, violations {}   {}",
            r.audit.ledger_entries,
            r.duplicate_placements,
            r.audit.violations(),
            if r.is_ok() { "OK" } else { "FAILED" }
        );
        for f in &r.failures {
            let _ = writeln!(s, "failure      {f}");
        }
    }
    if reports.len() > 1 {
        let _ = writeln!(s, "\n== sustained sweep ==");
        let _ = writeln!(
            s,
            "{:<6} {:>10} {:>12} {:>8} {:>9} {:>7} {:>12} {:>6}",
            "", "schedulers", "placements/s", "placed", "rejected", "errors", "burst p50 ms", "ok"
        );
        for r in reports {
            let _ = writeln!(
                s,
                "{:<6} {:>10} {:>12.0} {:>8} {:>9} {:>7} {:>12.3} {:>6}",
                r.strategy.as_str(),
                r.schedulers,
                r.placements_per_sec,
                r.placed,
                r.rejected_at_capacity + r.rejected_below_capacity,
                r.errors,
                r.burst_latency.p50_ms,
                if r.is_ok() { "OK" } else { "FAIL" }
            );
        }
    }
}

fn scale_text(s: &mut String, points: &[ScalePoint]) {
    let _ = writeln!(
        s,
        "{:<6} {:>8} {:>10} {:>12} {:>12} {:>12} {:>9} {:>6}",
        "",
        "workers",
        "containers",
        "burst p50 ms",
        "us/placement",
        "rt/placement",
        "max/mean",
        "audit"
    );
    for p in points {
        let r = &p.report;
        let _ = writeln!(
            s,
            "{:<6} {:>8} {:>10} {:>12.3} {:>12.3} {:>12.4} {:>9.2} {:>6}",
            r.strategy.as_str(),
            p.workers,
            p.containers,
            r.burst_time.p50_ms,
            p.us_per_placement,
            p.round_trips_per_placement,
            r.max_over_mean,
            if r.audit.is_clean() && r.placed == r.requested {
                "OK"
            } else {
                "FAIL"
            }
        );
    }
}

fn contention_text(s: &mut String, reports: &[ContentionReport]) {
    for r in reports {
        let _ = writeln!(
            s,
            "== contention {} on {}: {} instances as {:?}, {} containers per round, rtt {} ms ==",
            r.strategy, r.backend, r.instances, r.mode, r.containers, r.rtt_ms
        );
        let _ = writeln!(
            s,
            "round p50 {:.3} ms p99 {:.3} ms   placed {}/{}   conflicts/placement {:.3}   retries/placement {:.3}",
            r.round_time.p50_ms, r.round_time.p99_ms, r.placed, r.requested, r.conflicts_per_placement, r.retries_per_placement
        );
        let _ = writeln!(
            s,
            "round trips/round {:.1}   atomic sections/round {:.1}   max/mean {:.2}   audit {}",
            r.round_trips_per_round,
            r.atomic_sections_per_round,
            r.max_over_mean,
            if r.audit.is_clean() { "OK" } else { "FAILED" }
        );
        let a = &r.audit;
        let _ = writeln!(
            s,
            "audit           double-bookings {}   misplaced {}   missing {}   orphaned {}   drifting workers {}   ledger entries {}",
            a.double_bookings, a.misplaced, a.missing, a.orphaned, a.drift_workers, a.ledger_entries
        );
        if r.shared_ids > 0 || r.crashed_instances > 0 {
            let _ = writeln!(
                s,
                "races/crashes   shared id pool {}   instances killed {}   reservations handed off by killed instances {}",
                r.shared_ids, r.crashed_instances, r.crash_handoffs
            );
        }
    }
}
