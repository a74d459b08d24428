//! Applies a [`History`] to a repository: each round arms its `Faulty` rules, fires its real
//! fault, runs its actions concurrently, clears the faults, and turns every answer into a
//! [`Claim`] about the store that [`check`](super::check) compares with it.

use super::check::{self, Claim, Expect};
use super::history::{Action, FaultKind, GenFault, History, Req, Round};
use super::real::{Injected, RealFaults};
use super::report::ChaosReport;
use super::Target;
use crate::ns::Ns;
use futures::future::join_all;
use sched_core::layers::{Fault, Faulty, Select};
use sched_core::{
    CapacityReservation, CommitMode, ContainerRequest, Placement, ResourceReservation, Resources,
    ScheduleError, Scheduler, WorkerRepository, WorkerSpec,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// How long one action may take before it counts as hung (and is dropped).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The repository every scheduler and direct caller goes through.
pub(super) type FaultyRepo = Arc<Faulty<Arc<dyn WorkerRepository>>>;

/// Whether a schedule error may leave the container held: only
/// [`ScheduleError::Ambiguous`] ("look it up"); every other error leaves the id as it was.
pub fn may_be_held(e: &ScheduleError) -> bool {
    e.may_be_held()
}

/// One case: its namespace, workers, schedulers and the last request made for every id.
pub(super) struct Case<'t> {
    pub(super) target: &'t Target,
    pub(super) ns: Ns,
    pub(super) unit: Resources,
    pub(super) faulty: FaultyRepo,
    pub(super) scheds: Vec<Scheduler<FaultyRepo>>,
    pub(super) workers: Vec<String>,
    /// The last resources asked for each id (for the after-faults retry).
    pub(super) asked: BTreeMap<String, Resources>,
    /// Ids that got an error or no answer at some point.
    pub(super) failed: HashSet<String>,
    /// Ids of cancelled calls (their commit may still land later: issue 10 case 7).
    pub(super) cancelled: HashSet<String>,
}

impl<'t> Case<'t> {
    /// Registers the history's workers (on the raw repository) and builds its schedulers.
    pub(super) async fn new(target: &'t Target, h: &History, report: &mut ChaosReport) -> Self {
        let ns = Ns::new(&target.tag);
        let faulty: FaultyRepo = Arc::new(Faulty::new(Arc::clone(&target.repo)));
        let mut case = Case {
            target,
            unit: target.sizes.unit,
            scheds: h
                .schedulers
                .iter()
                .map(|g| Scheduler::new(Arc::clone(&faulty), g.config()))
                .collect(),
            faulty,
            workers: Vec::new(),
            asked: BTreeMap::new(),
            failed: HashSet::new(),
            cancelled: HashSet::new(),
            ns,
        };
        for (i, g) in h.workers.iter().enumerate() {
            let spec = case.spec(i, g.units, g.pool);
            case.workers.push(spec.id.clone());
            if let Err(e) = check::retry(|| target.repo.register_worker(&spec)).await {
                report.violation(format!("setup: register_worker({:?}): {e}", spec.id));
            }
        }
        case
    }

    pub(super) fn pool(&self, p: u8) -> String {
        self.ns.pool(&(p % 2).to_string())
    }

    pub(super) fn spec(&self, worker: usize, units: u64, pool: u8) -> WorkerSpec {
        let u = self.unit;
        WorkerSpec::new(
            self.ns.worker(&worker.to_string()),
            Resources::new(u.cpu_millicores * units, u.memory_mib * units, 0),
        )
        .with_pool(self.pool(pool))
        .requiring_pool_selector()
    }

    pub(super) fn id(&self, i: u16) -> String {
        self.ns.container(&i.to_string())
    }

    fn res(&self, r: &Req) -> Resources {
        let n = u64::from(r.units.clamp(1, 3));
        Resources::new(self.unit.cpu_millicores * n, self.unit.memory_mib * n, 0)
    }

    fn arm(&self, f: &GenFault, report: &mut ChaosReport) {
        let fault = match f.kind {
            FaultKind::Fail => Fault::Fail,
            FaultKind::Conflict => Fault::Conflict,
            FaultKind::LoseReply => Fault::LoseReply,
            FaultKind::Delay(ms) => Fault::Delay(Duration::from_millis(u64::from(ms))),
        };
        self.faulty
            .faults()
            .on(Select::op(f.op), fault, usize::from(f.n));
        report.fault(&format!("armed:{}:{}", f.kind.name(), f.op));
    }

    /// Runs one round and checks its answers against the store.
    pub(super) async fn round(&mut self, r: usize, round: &Round, report: &mut ChaosReport) {
        let touched = self.touched(round);
        self.note_asked(round);
        let before = check::lookup(&*self.target.repo, &touched, report).await;
        let fired_before = self.faulty.faults().fired();
        for f in &round.faults {
            self.arm(f, report);
        }
        let real = self.start_real(round);
        let this = &*self;
        let answers = join_all(round.actions.iter().enumerate().map(|(a, act)| async move {
            match tokio::time::timeout(CALL_TIMEOUT, this.action(a, act)).await {
                Ok(answer) => answer,
                Err(_) => {
                    let claims = this
                        .action_ids(act)
                        .iter()
                        .map(|id| Claim::new(a, id, Expect::Any, "cancelled: hung", true))
                        .collect();
                    (claims, (0, 0, 0))
                }
            }
        }))
        .await;
        for (a, (claims, _)) in answers.iter().enumerate() {
            if claims.first().is_some_and(|c| c.what == "cancelled: hung") {
                report.violation_of(
                    "hung-call",
                    format!(
                        "round {r} action {a}: no answer within {CALL_TIMEOUT:?}: {:?}",
                        round.actions[a]
                    ),
                );
            }
        }
        if let Some((task, real, name)) = real {
            match task.await {
                Ok(Injected::Yes) => report.fault(&format!("real:{name}")),
                Ok(Injected::Refused(why)) => {
                    *report.refused.entry(format!("{name}: {why}")).or_default() += 1;
                }
                Err(e) => report.violation(format!("round {r}: real fault task: {e}")),
            }
            real.restore().await;
        }
        self.faulty.faults().clear();
        let fired = self.faulty.faults().fired() - fired_before;
        *report.faults.entry("faulty:fired".into()).or_default() += fired;
        if answers
            .iter()
            .any(|(cs, _)| cs.iter().any(|c| c.what == "cancelled schedule"))
        {
            // A cancelled call's batch runs on in its own task: let it land (and be undone, if
            // the scheduler does that) before the store is read and the next round starts.
            tokio::time::sleep(self.settle()).await;
        }
        let after = check::lookup(&*self.target.repo, &touched, report).await;
        let mut claims: Vec<Claim> = Vec::new();
        for (a, (cs, counts)) in answers.into_iter().enumerate() {
            report.placements += counts.0;
            report.already_held += counts.1;
            report.errors += counts.2;
            for c in &cs {
                if !matches!(c.expect, Expect::HeldOn(..)) && c.from_schedule {
                    self.failed.insert(c.id.clone());
                }
            }
            check::same_answers(r, a, &cs, report);
            claims.extend(cs);
        }
        check::claims(r, &claims, &self.cancelled, &before, &after, report);
        for c in claims.iter().filter(|c| c.what.starts_with("cancelled")) {
            self.cancelled.insert(c.id.clone());
        }
        report.rounds += 1;
    }

    fn note_asked(&mut self, round: &Round) {
        for a in &round.actions {
            let reqs: Vec<&Req> = match a {
                Action::Schedule { reqs, .. } => reqs.iter().collect(),
                Action::Reserve { parts, .. } => parts.iter().flat_map(|p| &p.1).collect(),
                _ => Vec::new(),
            };
            for q in reqs {
                let (id, res) = (self.id(q.id), self.res(q));
                self.asked.insert(id, res);
            }
        }
    }

    /// How long a cancelled call's batch is given to land: longer when real faults that hold
    /// a server up (`client-pause`, `debug-sleep`: 800 ms) may delay it.
    pub(super) fn settle(&self) -> Duration {
        let pauses = self.target.real.as_ref().is_some_and(|r| {
            r.kinds()
                .iter()
                .any(|k| matches!(*k, "client-pause" | "debug-sleep"))
        });
        Duration::from_millis(if pauses { 1500 } else { 300 })
    }

    /// The container ids one action names.
    fn action_ids(&self, a: &Action) -> Vec<String> {
        let ids: Vec<u16> = match a {
            Action::Schedule { reqs, .. } => reqs.iter().map(|q| q.id).collect(),
            Action::Reserve { parts, .. } => {
                parts.iter().flat_map(|p| &p.1).map(|q| q.id).collect()
            }
            Action::Release { ids, .. } => ids.clone(),
            Action::Register { .. } => Vec::new(),
        };
        ids.into_iter().map(|i| self.id(i)).collect()
    }

    fn touched(&self, round: &Round) -> Vec<String> {
        let mut ids: Vec<String> = round
            .actions
            .iter()
            .flat_map(|a| self.action_ids(a))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    #[allow(clippy::type_complexity)]
    fn start_real(
        &self,
        round: &Round,
    ) -> Option<(
        tokio::task::JoinHandle<Injected>,
        Arc<dyn RealFaults>,
        &'static str,
    )> {
        let (g, real) = (round.real?, self.target.real.clone()?);
        let kinds = real.kinds();
        if kinds.is_empty() {
            return None;
        }
        let kind = usize::from(g.kind) % kinds.len();
        let node = usize::from(g.node) % real.nodes().max(1);
        let r = Arc::clone(&real);
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(u64::from(g.after_ms))).await;
            r.inject(kind, node).await
        });
        Some((task, real, kinds[kind]))
    }

    /// Runs one action; returns its claims and (placed, already held, errors).
    async fn action(&self, a: usize, act: &Action) -> (Vec<Claim>, (u64, u64, u64)) {
        match act {
            Action::Schedule {
                sched,
                reqs,
                singles,
                cancel_ms,
            } => self.schedule(a, *sched, reqs, *singles, *cancel_ms).await,
            Action::Reserve { parts, partial } => {
                (self.reserve(a, parts, *partial).await, (0, 0, 0))
            }
            Action::Release { ids, via } => (self.release(a, ids, *via).await, (0, 0, 0)),
            Action::Register {
                worker,
                units,
                pool,
            } => {
                let w = usize::from(*worker) % self.workers.len().max(1);
                let spec = self.spec(w, *units, *pool);
                // Any outcome is allowed (TotalBelowReserved, injected failures): the
                // invariants at the end of the case cover what it did.
                let _ = self.faulty.register_worker(&spec).await;
                (Vec::new(), (0, 0, 0))
            }
        }
    }

    async fn schedule(
        &self,
        a: usize,
        sched: u8,
        reqs: &[Req],
        singles: bool,
        cancel_ms: Option<u8>,
    ) -> (Vec<Claim>, (u64, u64, u64)) {
        let s = &self.scheds[usize::from(sched) % self.scheds.len()];
        let requests: Vec<(ContainerRequest, Resources)> = reqs
            .iter()
            .map(|q| {
                let res = self.res(q);
                (
                    ContainerRequest::new(self.id(q.id), res).with_pool(self.pool(q.pool)),
                    res,
                )
            })
            .collect();
        let batch: Vec<ContainerRequest> = requests.iter().map(|r| r.0.clone()).collect();
        let call = async {
            if singles {
                join_all(batch.into_iter().map(|q| s.schedule(q))).await
            } else {
                s.schedule_batch(batch).await
            }
        };
        let out: Option<Vec<Result<Placement, ScheduleError>>> = match cancel_ms {
            Some(ms) => tokio::time::timeout(Duration::from_millis(u64::from(ms)), call)
                .await
                .ok(),
            None => Some(call.await),
        };
        let mut counts = (0, 0, 0);
        let Some(out) = out else {
            // Cancelled: no answer, so nothing to compare; the end-of-case checks still apply.
            let claims = requests
                .iter()
                .map(|(q, _)| Claim::new(a, &q.id, Expect::Any, "cancelled schedule", true))
                .collect();
            return (claims, counts);
        };
        let mut claims = Vec::new();
        let via = if singles {
            "concurrent schedule()"
        } else {
            "schedule_batch"
        };
        if out.len() != requests.len() {
            claims.push(Claim::new(
                a,
                "",
                Expect::Violation(format!(
                    "{} answers for {} requests",
                    out.len(),
                    requests.len()
                )),
                "schedule",
                true,
            ));
        }
        for ((q, res), r) in requests.iter().zip(out) {
            let c = match r {
                Ok(p) if p.container_id != q.id => Claim::new(
                    a,
                    &q.id,
                    Expect::Violation(format!("answer for {:?} in its place", p.container_id)),
                    "schedule",
                    true,
                ),
                Ok(p) => {
                    if p.already_held {
                        counts.1 += 1;
                    } else {
                        counts.0 += 1;
                    }
                    let what = format!("Ok(on {}, already_held {})", p.worker_id, p.already_held);
                    Claim::new(a, &q.id, Expect::HeldOn(p.worker_id, *res), &what, true)
                }
                Err(e) => {
                    counts.2 += 1;
                    let expect = if may_be_held(&e) {
                        Expect::Any
                    } else {
                        Expect::Unchanged
                    };
                    Claim::new(a, &q.id, expect, &format!("Err({e})"), true)
                }
            };
            let mut c = c.asking(*res, q.pool_selector.as_deref().unwrap_or(""));
            c.what = format!("{} via {}", c.what, via);
            claims.push(c);
        }
        (claims, counts)
    }

    async fn reserve(&self, a: usize, parts: &[(u8, Vec<Req>)], partial: bool) -> Vec<Claim> {
        let (mut seen_w, mut seen_c) = (HashSet::new(), HashSet::new());
        let mut batch = Vec::new();
        for (w, reqs) in parts {
            let w = usize::from(*w) % self.workers.len().max(1);
            if !seen_w.insert(w) {
                continue;
            }
            let rs: Vec<ResourceReservation> = reqs
                .iter()
                .filter(|q| seen_c.insert(q.id))
                .map(|q| ResourceReservation::new(self.id(q.id), self.res(q)))
                .collect();
            if !rs.is_empty() {
                batch.push(CapacityReservation::new(self.workers[w].clone(), rs));
            }
        }
        if batch.is_empty() {
            return Vec::new();
        }
        let mode = if partial {
            CommitMode::Partial
        } else {
            CommitMode::AllOrNothing
        };
        let every = |expect: Expect, what: &str| -> Vec<Claim> {
            batch
                .iter()
                .flat_map(|p| &p.reservations)
                .map(|r| Claim::new(a, &r.container_id, expect.clone(), what, false))
                .collect()
        };
        match self.faulty.reserve_batch(&batch, mode).await {
            Err(e) if e.is_ambiguous() => every(Expect::Any, "reserve_batch Ambiguous"),
            Err(e) => every(Expect::Unchanged, &format!("reserve_batch Err({e})")),
            Ok(out) if out.len() != batch.len() => {
                let mut c = every(Expect::Any, "reserve_batch");
                c.push(Claim::new(
                    a,
                    "",
                    Expect::Violation(format!("{} results for {} parts", out.len(), batch.len())),
                    "reserve_batch",
                    false,
                ));
                c
            }
            Ok(out) => {
                let mut claims = Vec::new();
                for (part, res) in batch.iter().zip(out) {
                    let accepted = match &res.outcome {
                        Ok(c) => c.accepted,
                        Err(_) => 0,
                    };
                    for (k, r) in part.reservations.iter().enumerate() {
                        let (expect, what) = if k < accepted {
                            (
                                Expect::HeldOn(part.worker_id.clone(), r.resources),
                                format!("reserve_batch accepted on {}", part.worker_id),
                            )
                        } else {
                            (
                                Expect::Unchanged,
                                format!("reserve_batch {:?}", res.outcome),
                            )
                        };
                        claims.push(Claim::new(a, &r.container_id, expect, &what, false));
                    }
                }
                claims
            }
        }
    }

    async fn release(&self, a: usize, ids: &[u16], via: Option<u8>) -> Vec<Claim> {
        let mut seen = HashSet::new();
        let ids: Vec<String> = ids
            .iter()
            .filter(|i| seen.insert(**i))
            .map(|i| self.id(*i))
            .collect();
        let out = match via {
            Some(s) => {
                self.scheds[usize::from(s) % self.scheds.len()]
                    .release(&ids)
                    .await
            }
            None => self.faulty.release_batch(&ids).await,
        };
        let (expect, what) = match out {
            Err(e) if e.is_ambiguous() => (Expect::Any, "release Ambiguous".to_owned()),
            Err(e) => (Expect::Unchanged, format!("release Err({e})")),
            Ok(o) if o.len() != ids.len() => (
                Expect::Violation(format!("{} outcomes for {} ids", o.len(), ids.len())),
                "release".to_owned(),
            ),
            Ok(_) => (Expect::NotHeld, "released".to_owned()),
        };
        ids.iter()
            .map(|c| Claim::new(a, c, expect.clone(), &what, false))
            .collect()
    }
}
