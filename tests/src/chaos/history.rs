//! A chaos history as data: workers, schedulers and rounds of concurrent actions with the faults
//! that fire during each round. [`interpret`](super::interpret) applies it; proptest generates
//! and shrinks it ([`history`]), and `sched-sim chaos` draws long ones from a seed.

use proptest::collection::vec;
use proptest::prelude::*;
use sched_core::layers::Op;
use sched_core::{CommitMode, Resources, SchedulerConfig};
use std::time::Duration;

/// How big a generated history is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Workers registered at the start (at least 1).
    pub workers: usize,
    /// Container ids drawn from `0..ids` (shared by every action, so ids repeat and race).
    pub ids: u16,
    /// Rounds per history (at least 1).
    pub rounds: usize,
    /// Concurrent actions per round (at least 1).
    pub actions: usize,
    /// Containers per burst (at least 1).
    pub burst: usize,
    /// One unit of demand; a request asks 1-3 units, a worker holds `worker_units` of them.
    pub unit: Resources,
    /// Worker sizes, in units (low, high).
    pub worker_units: (u64, u64),
    /// Faulty rules per round (0 turns the layer off).
    pub faults: usize,
}

impl Sizes {
    /// Small histories for proptest: few workers, few ids (so capacity runs out and ids collide).
    pub const SMALL: Sizes = Sizes {
        workers: 4,
        ids: 24,
        rounds: 5,
        actions: 4,
        burst: 8,
        unit: Resources::cpu_mem(250, 256),
        worker_units: (2, 12),
        faults: 2,
    };
}

/// One generated worker: its size in units and its pool (0 or 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenWorker {
    /// Total, in units.
    pub units: u64,
    /// Pool index.
    pub pool: u8,
}

/// One scheduler's configuration variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenScheduler(pub u8);

impl GenScheduler {
    /// The variants: batching on/off, both commit modes, version checks, no cache.
    pub const VARIANTS: u8 = 6;

    /// The [`SchedulerConfig`] of this variant (short backoffs, so faults cost little time).
    pub fn config(self) -> SchedulerConfig {
        let mut c = SchedulerConfig::default()
            .with_max_attempts(5)
            .with_backoff_base(Duration::from_millis(1))
            .with_backoff_max(Duration::from_millis(10));
        match self.0 % Self::VARIANTS {
            0 => {}
            1 => c.batching = false,
            2 => c.commit_mode = CommitMode::AllOrNothing,
            3 => {
                c.version_checks = true;
                c.cache_ttl = Duration::ZERO;
            }
            4 => {
                c.batching = false;
                c.commit_mode = CommitMode::AllOrNothing;
                c.cache_ttl = Duration::ZERO;
            }
            _ => c.best_fit = true,
        }
        c
    }
}

/// One container request: id index, size in units (1-3), pool index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Req {
    /// Container id index (into `0..Sizes::ids`).
    pub id: u16,
    /// Units asked.
    pub units: u8,
    /// Pool index.
    pub pool: u8,
}

/// The kind of an injected [`Faulty`](sched_core::layers::Faulty) fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `Fault::Fail`.
    Fail,
    /// `Fault::Conflict`.
    Conflict,
    /// `Fault::LoseReply`.
    LoseReply,
    /// `Fault::Delay` of this many milliseconds.
    Delay(u8),
}

impl FaultKind {
    /// Name, for counts.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Fail => "fail",
            FaultKind::Conflict => "conflict",
            FaultKind::LoseReply => "lose-reply",
            FaultKind::Delay(_) => "delay",
        }
    }
}

/// A `Faulty` rule added at the start of a round: `kind` on the next `n` calls of `op`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenFault {
    /// Which method (every one, lookups and reads included).
    pub op: Op,
    /// Which fault.
    pub kind: FaultKind,
    /// How many calls.
    pub n: u8,
}

/// A real fault during a round: kind index (into the target's kinds), node, and how long into
/// the round it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenReal {
    /// Index into [`RealFaults::kinds`](super::RealFaults::kinds) (modulo their number).
    pub kind: u8,
    /// Node index (modulo the number of nodes).
    pub node: u8,
    /// Milliseconds into the round.
    pub after_ms: u8,
}

/// One action of a round; the actions of a round run concurrently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A burst through scheduler `sched`: one `schedule_batch`, or (`singles`) one concurrent
    /// `schedule` call per request; cancelled (the future dropped) after `cancel_ms` if set.
    Schedule {
        /// Scheduler index.
        sched: u8,
        /// The requests (ids may repeat).
        reqs: Vec<Req>,
        /// Concurrent `schedule` calls instead of one `schedule_batch`.
        singles: bool,
        /// Drop the call after this many milliseconds.
        cancel_ms: Option<u8>,
    },
    /// A direct `reserve_batch` (duplicate workers and ids dropped before the call).
    Reserve {
        /// (worker index, requests) per part.
        parts: Vec<(u8, Vec<Req>)>,
        /// `CommitMode::Partial` instead of `AllOrNothing`.
        partial: bool,
    },
    /// A release: direct `release_batch`, or `Scheduler::release` of scheduler `via`.
    Release {
        /// Container id indexes.
        ids: Vec<u16>,
        /// Through this scheduler, else directly.
        via: Option<u8>,
    },
    /// A re-registration of worker `worker` with a new size and pool.
    Register {
        /// Worker index.
        worker: u8,
        /// New total, in units.
        units: u64,
        /// New pool index.
        pool: u8,
    },
}

/// One round: faults armed at its start, a real fault during it, its concurrent actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    /// `Faulty` rules armed for this round (cleared at its end).
    pub faults: Vec<GenFault>,
    /// A real fault during the round (ignored when the target has none).
    pub real: Option<GenReal>,
    /// The actions, run concurrently.
    pub actions: Vec<Action>,
}

/// A whole history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The workers registered at the start.
    pub workers: Vec<GenWorker>,
    /// The schedulers.
    pub schedulers: Vec<GenScheduler>,
    /// The rounds, in order.
    pub rounds: Vec<Round>,
}

impl History {
    /// Requests of schedule actions, for counting.
    pub fn requests(&self) -> usize {
        self.rounds
            .iter()
            .flat_map(|r| &r.actions)
            .map(|a| match a {
                Action::Schedule { reqs, .. } => reqs.len(),
                Action::Reserve { parts, .. } => parts.iter().map(|p| p.1.len()).sum(),
                _ => 0,
            })
            .sum()
    }
}

fn gen_req(s: Sizes) -> impl Strategy<Value = Req> {
    (
        0..s.ids.max(1),
        1u8..=3,
        prop_oneof![4 => Just(0u8), 1 => Just(1u8)],
    )
        .prop_map(|(id, units, pool)| Req { id, units, pool })
}

fn gen_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Reserve),
        2 => Just(Op::Find),
        2 => Just(Op::Release),
        2 => Just(Op::ListWorkers),
        1 => Just(Op::GetWorker),
        1 => Just(Op::Register),
        1 => Just(Op::ListReservations),
        1 => Just(Op::Audit),
        1 => Just(Op::Remove),
    ]
}

fn gen_fault() -> impl Strategy<Value = GenFault> {
    let kind = prop_oneof![
        1 => Just(FaultKind::Fail),
        1 => Just(FaultKind::Conflict),
        2 => Just(FaultKind::LoseReply),
        1 => (1u8..30).prop_map(FaultKind::Delay),
    ];
    (gen_op(), kind, 1u8..=3).prop_map(|(op, kind, n)| GenFault { op, kind, n })
}

fn gen_action(s: Sizes, schedulers: u8) -> impl Strategy<Value = Action> {
    let workers = s.workers.max(1) as u8;
    let burst = 1..=s.burst.max(1);
    let schedule = (
        0..schedulers,
        vec(gen_req(s), burst.clone()),
        prop::bool::weighted(0.3),
        prop::option::weighted(0.1, 0u8..20),
    )
        .prop_map(|(sched, reqs, singles, cancel_ms)| Action::Schedule {
            sched,
            reqs,
            singles,
            cancel_ms,
        });
    let part = (0..workers, vec(gen_req(s), 1..=s.burst.max(1).div_ceil(2)));
    let reserve = (vec(part, 1..=2), any::<bool>())
        .prop_map(|(parts, partial)| Action::Reserve { parts, partial });
    let release = (
        vec(0..s.ids.max(1), 1..=s.burst.max(1)),
        prop::option::of(0..schedulers),
    )
        .prop_map(|(ids, via)| Action::Release { ids, via });
    let (lo, hi) = s.worker_units;
    let register =
        (0..workers, lo..=hi.max(lo), 0u8..2).prop_map(|(worker, units, pool)| Action::Register {
            worker,
            units,
            pool,
        });
    prop_oneof![6 => schedule, 2 => reserve, 3 => release, 1 => register]
}

fn gen_round(s: Sizes, schedulers: u8, real: bool) -> impl Strategy<Value = Round> {
    let real = if real {
        prop::option::weighted(0.5, (any::<u8>(), any::<u8>(), 0u8..15))
            .prop_map(|r| {
                r.map(|(kind, node, after_ms)| GenReal {
                    kind,
                    node,
                    after_ms,
                })
            })
            .boxed()
    } else {
        Just(None).boxed()
    };
    (
        vec(gen_fault(), 0..=s.faults),
        real,
        vec(gen_action(s, schedulers), 1..=s.actions.max(1)),
    )
        .prop_map(|(faults, real, actions)| Round {
            faults,
            real,
            actions,
        })
}

/// Histories of `sizes`, with 1-3 schedulers of random variants; `real` adds real faults.
pub fn history(sizes: Sizes, real: bool) -> impl Strategy<Value = History> {
    let (lo, hi) = sizes.worker_units;
    let workers = vec(
        (lo..=hi.max(lo), prop_oneof![3 => Just(0u8), 1 => Just(1u8)])
            .prop_map(|(units, pool)| GenWorker { units, pool }),
        sizes.workers.max(1),
    );
    let schedulers = vec((0..GenScheduler::VARIANTS).prop_map(GenScheduler), 1..=3);
    (workers, schedulers).prop_flat_map(move |(workers, schedulers)| {
        let n = schedulers.len() as u8;
        vec(gen_round(sizes, n, real), 1..=sizes.rounds.max(1)).prop_map(move |rounds| History {
            workers: workers.clone(),
            schedulers: schedulers.clone(),
            rounds,
        })
    })
}
