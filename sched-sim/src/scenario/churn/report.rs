//! The churn report: what happened (placements, ends, renewals, expiries, drains, the crash)
//! and what the store showed at the end (leaked capacity, the audits).

use super::fleet::{get, lock, Shared};
use super::tasks::CrashOutcome;
use super::ChurnConfig;
use crate::audit::AuditSummary;
use crate::backend::Env;
use crate::hist::Summary;
use sched_core::{Resources, StalePolicy};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Placements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementCounts {
    /// Containers asked for.
    pub requested: u64,
    /// Placed (committed by the scheduler).
    pub placed: u64,
    /// Not placed (no capacity at that moment, or retries exhausted).
    pub unplaced: u64,
    /// Ambiguous answers (perhaps held; treated as dead containers).
    pub ambiguous: u64,
}

/// How containers ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndCounts {
    /// Released by their agent at the end of their lifetime.
    pub released: u64,
    /// Died without a release (their agent stopped renewing them).
    pub died: u64,
    /// Running on the crashed agent when it crashed.
    pub lost_in_crash: u64,
    /// Placed on the crashed agent's worker while it was down (before it went stale).
    pub placed_on_crashed: u64,
    /// Live containers the store expired or stopped holding (must be 0).
    pub live_lost: u64,
    /// Still running at the end (checked held where placed, then released).
    pub live_at_end: u64,
}

/// `renew_leases` answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RenewalCounts {
    /// Calls (one per agent per round with anything to renew).
    pub calls: u64,
    /// `Renewed`.
    pub renewed: u64,
    /// `Expired` (too late; live containers only, so 0 expected).
    pub expired: u64,
    /// `NotHeld` (0 expected).
    pub not_held: u64,
    /// `NoLease` (0 expected: every placement is leased).
    pub no_lease: u64,
    /// Latency of one call.
    pub latency: Summary,
}

/// What the sweeps took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ExpiryCounts {
    /// Reservations expired.
    pub total: u64,
    /// Because their lease ran out.
    pub lease_expired: u64,
    /// Because their worker was stale with `on_stale = release`.
    pub worker_stale: u64,
    /// Of containers that were dead (the point of the sweep).
    pub of_dead: u64,
    /// Of containers that were live (must be 0).
    pub of_live: u64,
    /// Of containers the simulator did not know as dead or live (0 expected).
    pub of_unknown: u64,
    /// Capacity the sweeps gave back.
    pub returned: Resources,
    /// `sweep_all` rounds (the final one included).
    pub sweep_rounds: u64,
    /// Latency of one `sweep_all` over every worker.
    pub sweep_latency: Summary,
    /// Store clock: how long after its deadline each expired lease was swept.
    pub swept_after_deadline: Summary,
}

/// The crashed agent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CrashReport {
    /// Its worker (`None`: no crash).
    pub worker: Option<String>,
    /// Seconds after the start.
    pub crashed_at_s: Option<f64>,
    /// Seconds after the start.
    pub back_at_s: Option<f64>,
    /// The heartbeat that brought it back found the worker stale.
    pub came_back_stale: Option<bool>,
}

/// Capacity held by dead containers after the final sweep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leak {
    /// Dead containers still held (must be 0).
    pub containers: u64,
    /// What they hold.
    pub capacity: Resources,
}

/// The settings of a churn run, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnSettings {
    /// Lease of every placement.
    pub lease_ms: u64,
    /// Heartbeat timeout of every worker.
    pub heartbeat_timeout_ms: u64,
    /// Stale policy of every worker.
    pub on_stale: StalePolicy,
    /// Agent round period.
    pub agent_period_ms: u64,
    /// Sweep period.
    pub sweep_period_ms: u64,
    /// Containers per burst.
    pub burst_size: usize,
    /// Time between bursts.
    pub burst_interval_ms: u64,
    /// Lifetime range.
    pub lifetime_ms: (u64, u64),
    /// Share dying without a release.
    pub die_share: f64,
}

/// What a churn run did and found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnReport {
    /// Which backend.
    pub backend: String,
    /// Workers.
    pub workers: usize,
    /// Injected round-trip time.
    pub rtt_ms: f64,
    /// Settings.
    pub settings: ChurnSettings,
    /// Wall-clock seconds of the whole run (placing, the final phase, the checks).
    pub seconds: f64,
    /// Placements.
    pub placements: PlacementCounts,
    /// Latency of one placement burst.
    pub burst_latency: Summary,
    /// How containers ended.
    pub ends: EndCounts,
    /// Heartbeats sent.
    pub heartbeats: u64,
    /// Latency of one heartbeat.
    pub heartbeat_latency: Summary,
    /// Renewals.
    pub renewals: RenewalCounts,
    /// Expiries.
    pub expiries: ExpiryCounts,
    /// Drains (each brought back).
    pub drains: u64,
    /// The crash.
    pub crash: CrashReport,
    /// Capacity leaked after the final sweep (must be 0).
    pub leaked: Leak,
    /// Audit after the final sweep against the live containers: drift, double bookings, live
    /// containers missing or misplaced, ledger entries nobody runs (must all be 0).
    pub audit: AuditSummary,
    /// Audit after releasing the live containers (must be clean with 0 ledger entries).
    pub after_release: AuditSummary,
}

impl ChurnReport {
    /// Everything that must be zero, summed: leaked containers, audit violations (drift
    /// included), live containers lost, and what the ledgers still hold after the last release.
    pub fn problems(&self) -> u64 {
        self.leaked.containers
            + self.audit.violations()
            + self.ends.live_lost
            + self.after_release.violations()
            + self.after_release.ledger_entries
    }

    /// Drifting workers over both audits.
    pub fn drift_workers(&self) -> u64 {
        self.audit.drift_workers + self.after_release.drift_workers
    }

    /// Readable text.
    pub fn to_text(&self) -> String {
        super::text::render(self)
    }
}

/// What the checks at the end found, for [`build`].
pub(super) struct Findings {
    /// When the run started.
    pub started: Instant,
    /// Index of the crashing agent's worker.
    pub crash_idx: usize,
    /// What the crash did.
    pub crashed: CrashOutcome,
    /// Dead containers still held.
    pub leaked: Leak,
    /// Audit against the live containers.
    pub audit: AuditSummary,
    /// Audit after releasing them.
    pub after_release: AuditSummary,
    /// Live containers at the end.
    pub live_at_end: usize,
}

/// The report of a run.
pub(super) fn build(env: &Env, churn: &ChurnConfig, sh: &Shared, f: Findings) -> ChurnReport {
    let Findings {
        started,
        crash_idx,
        crashed,
        leaked,
        audit,
        after_release,
        live_at_end,
    } = f;
    let t = &sh.tally;
    let lat = lock(&sh.lat);
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let live_lost = lock(&sh.book).live_lost.len() as u64;
    ChurnReport {
        backend: env.kind.as_str().into(),
        workers: env.worker_ids.len(),
        rtt_ms: env.rtt.as_secs_f64() * 1000.0,
        settings: ChurnSettings {
            lease_ms: churn.lease_ms,
            heartbeat_timeout_ms: churn.heartbeat_timeout_ms,
            on_stale: churn.on_stale,
            agent_period_ms: ms(churn.agent_period),
            sweep_period_ms: ms(churn.sweep_period),
            burst_size: churn.burst_size,
            burst_interval_ms: ms(churn.burst_interval),
            lifetime_ms: (ms(churn.lifetime_min), ms(churn.lifetime_max)),
            die_share: churn.die_share,
        },
        seconds: started.elapsed().as_secs_f64(),
        placements: PlacementCounts {
            requested: get(&t.requested),
            placed: get(&t.placed),
            unplaced: get(&t.unplaced),
            ambiguous: get(&t.ambiguous),
        },
        burst_latency: lat.place_burst.summary(),
        ends: EndCounts {
            released: get(&t.released),
            died: get(&t.died),
            lost_in_crash: get(&t.lost_in_crash),
            placed_on_crashed: get(&t.placed_on_crashed),
            live_lost,
            live_at_end: live_at_end as u64,
        },
        heartbeats: get(&t.heartbeats),
        heartbeat_latency: lat.heartbeat.summary(),
        renewals: RenewalCounts {
            calls: get(&t.renew_calls),
            renewed: get(&t.renewed),
            expired: get(&t.renew_expired),
            not_held: get(&t.renew_not_held),
            no_lease: get(&t.renew_no_lease),
            latency: lat.renew.summary(),
        },
        expiries: ExpiryCounts {
            total: get(&t.expired_lease) + get(&t.expired_stale),
            lease_expired: get(&t.expired_lease),
            worker_stale: get(&t.expired_stale),
            of_dead: get(&t.expired_dead),
            of_live: get(&t.expired_live),
            of_unknown: get(&t.expired_other),
            returned: Resources::new(
                get(&t.returned_cpu),
                get(&t.returned_mem),
                get(&t.returned_gpu),
            ),
            sweep_rounds: get(&t.sweep_rounds),
            sweep_latency: lat.sweep_round.summary(),
            swept_after_deadline: lat.swept_after_deadline.summary(),
        },
        drains: get(&t.drains),
        crash: CrashReport {
            worker: crashed
                .crashed_at
                .and_then(|_| sh.workers.get(crash_idx).cloned()),
            crashed_at_s: crashed.crashed_at,
            back_at_s: crashed.back_at,
            came_back_stale: crashed.came_back_stale,
        },
        leaked,
        audit,
        after_release,
    }
}
