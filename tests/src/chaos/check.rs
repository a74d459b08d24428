//! What the chaos suite checks: every answer against the store after its round ([`claims`],
//! [`same_answers`]), and at the end of a case the store's invariants and that no container
//! stays blocked once the faults stop ([`finish`]).

use super::interpret::Case;
use super::report::ChaosReport;
use sched_core::validate::MAX_BATCH;
use sched_core::{
    ContainerRequest, RepoError, ReservationRecord, Resources, Scheduler, SchedulerConfig,
    WorkerRepository,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// What an answer says about one container, to be compared with the store after the round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Expect {
    /// Held on this worker with exactly these resources.
    HeldOn(String, Resources),
    /// As it was before the round (an error that applied nothing).
    Unchanged,
    /// Not held (released).
    NotHeld,
    /// Anything (an ambiguous outcome, a cancelled call).
    Any,
    /// The answer itself is wrong (wrong count, wrong order).
    Violation(String),
}

/// One answer's claim about one container.
#[derive(Debug, Clone)]
pub(super) struct Claim {
    pub(super) action: usize,
    pub(super) id: String,
    pub(super) expect: Expect,
    pub(super) what: String,
    pub(super) from_schedule: bool,
    /// What a schedule request asked, resources and pool (copies of an id asking the same
    /// must get the same answer).
    pub(super) asked: Option<String>,
}

impl Claim {
    pub(super) fn new(action: usize, id: &str, expect: Expect, what: &str, sched: bool) -> Self {
        Claim {
            action,
            id: id.to_owned(),
            expect,
            what: what.to_owned(),
            from_schedule: sched,
            asked: None,
        }
    }

    /// The claim of a schedule request that asked `res` in `pool`.
    pub(super) fn asking(mut self, res: Resources, pool: &str) -> Self {
        self.asked = Some(format!("{res} in {pool}"));
        self
    }
}

/// Retries a read or a clean-up call while the store recovers from a fault (each attempt
/// given 5 s, for about 20 s in all).
pub(super) async fn retry<T, F, Fut>(f: F) -> Result<T, RepoError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, RepoError>>,
{
    let mut last = None;
    let start = std::time::Instant::now();
    for i in 0..40u64 {
        if start.elapsed() > Duration::from_secs(20) {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(5), f()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e @ RepoError::InvalidInput(_))) => return Err(e),
            Ok(Err(e)) => last = Some(e),
            Err(_) => last = Some(RepoError::backend("no answer within 5 s")),
        }
        tokio::time::sleep(Duration::from_millis(25 * (i + 1).min(10))).await;
    }
    Err(last.unwrap_or_else(|| RepoError::backend("retry: no attempt")))
}

/// Where each of `ids` is held, read from the store (unfaulted), or `None` if it stays
/// unreadable (a violation).
pub(super) async fn lookup(
    repo: &dyn WorkerRepository,
    ids: &[String],
    report: &mut ChaosReport,
) -> Option<HashMap<String, Option<ReservationRecord>>> {
    let mut out = HashMap::new();
    for chunk in ids.chunks(MAX_BATCH) {
        match retry(|| repo.find_reservations(chunk)).await {
            Ok(found) if found.len() == chunk.len() => out.extend(chunk.iter().cloned().zip(found)),
            Ok(found) => {
                report.violation(format!(
                    "find_reservations: {} answers for {}",
                    found.len(),
                    chunk.len()
                ));
                return None;
            }
            Err(e) => {
                report.violation(format!("store unreadable after the faults: {e}"));
                return None;
            }
        }
    }
    Some(out)
}

fn short(r: &Option<ReservationRecord>) -> String {
    match r {
        Some(r) => format!("held on {} with {}", r.worker_id, r.resources),
        None => "not held".into(),
    }
}

/// Every schedule answer for the same id asking the same resources within one call must be the
/// same (case 8). (A copy asking other resources or another pool is another request: it may
/// be refused.)
pub(super) fn same_answers(
    round: usize,
    action: usize,
    claims: &[Claim],
    report: &mut ChaosReport,
) {
    let mut by_id: BTreeMap<(&str, Option<&str>), Vec<&Claim>> = BTreeMap::new();
    for c in claims
        .iter()
        .filter(|c| c.from_schedule && !c.id.is_empty())
    {
        by_id
            .entry((&c.id, c.asked.as_deref()))
            .or_default()
            .push(c);
    }
    for ((id, _), cs) in by_id {
        if cs.len() < 2 || cs.iter().any(|c| c.what.starts_with("cancelled")) {
            continue;
        }
        let key = |c: &Claim| match &c.expect {
            Expect::HeldOn(w, _) => Some(w.clone()),
            _ => None,
        };
        if cs.iter().any(|c| key(c) != key(cs[0])) {
            report.inconsistent_answers += 1;
            let answers: Vec<&str> = cs.iter().map(|c| c.what.as_str()).collect();
            report.violation_of(
                "same-id-two-answers",
                format!(
                "round {round} action {action}: {id:?} asked {} times in one call got different \
                 answers: {answers:?}",
                cs.len()
            ),
            );
        }
    }
}

/// Compares every claim about an id that only one action of the round touched with the store.
pub(super) fn claims(
    round: usize,
    claims: &[Claim],
    cancelled: &HashSet<String>,
    before: &Option<HashMap<String, Option<ReservationRecord>>>,
    after: &Option<HashMap<String, Option<ReservationRecord>>>,
    report: &mut ChaosReport,
) {
    let (Some(before), Some(after)) = (before, after) else {
        return;
    };
    let mut actions: HashMap<&str, Vec<usize>> = HashMap::new();
    for c in claims {
        let v = actions.entry(&c.id).or_default();
        if !v.contains(&c.action) {
            v.push(c.action);
        }
    }
    let mut in_call: HashMap<(usize, &str), usize> = HashMap::new();
    for c in claims {
        *in_call.entry((c.action, c.id.as_str())).or_default() += 1;
    }
    for c in claims {
        if let Expect::Violation(msg) = &c.expect {
            report.disagreements += 1;
            report.violation_of(
                "malformed-answer",
                format!("round {round} action {}: {}: {msg}", c.action, c.what),
            );
            continue;
        }
        if c.expect == Expect::Any || actions.get(c.id.as_str()).is_some_and(|a| a.len() > 1) {
            continue;
        }
        // An error for a copy of an id whose other copy in the same call was placed: that
        // placement changed the store, not this copy (the copies' answers are compared by
        // `same_answers`).
        if c.expect == Expect::Unchanged
            && claims.iter().any(|o| {
                o.action == c.action && o.id == c.id && matches!(o.expect, Expect::HeldOn(..))
            })
        {
            continue;
        }
        let (b, a) = (
            before.get(&c.id).cloned().flatten(),
            after.get(&c.id).cloned().flatten(),
        );
        report.answers_checked += 1;
        let agrees = match &c.expect {
            Expect::HeldOn(w, res) => a
                .as_ref()
                .is_some_and(|r| &r.worker_id == w && &r.resources == res),
            Expect::Unchanged => {
                b.as_ref().map(|r| (&r.worker_id, r.resources))
                    == a.as_ref().map(|r| (&r.worker_id, r.resources))
            }
            Expect::NotHeld => a.is_none(),
            Expect::Any | Expect::Violation(_) => true,
        };
        if !agrees {
            report.disagreements += 1;
            let wanted = match &c.expect {
                Expect::HeldOn(w, res) => format!("held on {w} with {res}"),
                Expect::Unchanged => "unchanged".into(),
                _ => "not held".into(),
            };
            let src = if c.from_schedule {
                "schedule"
            } else if c.what.starts_with("release") {
                "release"
            } else {
                "reserve_batch"
            };
            let class = match &c.expect {
                Expect::HeldOn(w, _) if a.as_ref().is_some_and(|r| &r.worker_id == w) => {
                    "ok-but-held-with-other-resources"
                }
                Expect::HeldOn(..) => "ok-but-not-held-there",
                Expect::Unchanged => "err-but-changed",
                _ => "released-but-held",
            };
            let dup = if in_call
                .get(&(c.action, c.id.as_str()))
                .is_some_and(|n| *n > 1)
            {
                " (id repeated in the call)"
            } else if cancelled.contains(&c.id) {
                " (id of an earlier cancelled call)"
            } else {
                ""
            };
            report.violation_of(
                &format!("{src}:{class}{dup}"),
                format!(
                "round {round} action {}: {:?} answered {} (so {wanted}), but the store has it \
                 {} (before the round: {})",
                c.action,
                c.id,
                c.what,
                short(&a),
                short(&b)
            ),
            );
        }
    }
}

/// The store's invariants over the case's workers and ids: `free + Σ ledger = total`, zero
/// audit drift, one holder per container, lookups agree with the ledgers.
pub(super) async fn invariants(case: &Case<'_>, when: &str, report: &mut ChaosReport) {
    let repo = &*case.target.repo;
    let mut holder: HashMap<String, String> = HashMap::new();
    for w in &case.workers {
        let got = retry(|| repo.get_worker(w)).await;
        let ledger = retry(|| repo.list_reservations(w)).await;
        let audit = retry(|| repo.audit(w)).await;
        let (Ok(Some(got)), Ok(ledger), Ok(audit)) = (got, ledger, audit) else {
            report.violation(format!("{when}: worker {w:?} unreadable or gone"));
            continue;
        };
        let sum = Resources::checked_sum(ledger.iter().map(|r| &r.resources)).ok();
        if sum.and_then(|s| got.free.checked_add(&s).ok()) != Some(got.total) {
            report.drift += 1;
            report.violation_of(
                "ledger-sum",
                format!(
                    "{when}: {w:?}: free {} + ledger {sum:?} != total {}",
                    got.free, got.total
                ),
            );
        }
        if !audit.is_consistent() {
            report.drift += 1;
            report.violation_of(
                "audit-drift",
                format!("{when}: {w:?}: audit drift {:?}", audit.drift),
            );
        }
        for r in ledger {
            if let Some(other) = holder.insert(r.container_id.clone(), w.clone()) {
                report.duplicates += 1;
                report.violation_of(
                    "duplicate",
                    format!("{when}: {:?} held on {other:?} and {w:?}", r.container_id),
                );
            }
        }
    }
    let ids: Vec<String> = case.asked.keys().cloned().collect();
    if let Some(found) = lookup(repo, &ids, report).await {
        for id in &ids {
            let f = found.get(id).cloned().flatten().map(|r| r.worker_id);
            if f.as_ref() != holder.get(id) {
                report.disagreements += 1;
                report.violation_of(
                    "lookup-vs-ledger",
                    format!(
                        "{when}: find_reservation({id:?}) = {f:?} but the ledgers say {:?}",
                        holder.get(id)
                    ),
                );
            }
        }
    }
}

/// After the faults stop: every container that failed is scheduled again on roomy workers, and
/// must be placed or found held exactly once (else it is blocked).
async fn blocked(case: &Case<'_>, report: &mut ChaosReport) {
    let repo = &case.target.repo;
    let ids: Vec<String> = case.asked.keys().cloned().collect();
    let Some(found) = lookup(&**repo, &ids, report).await else {
        return;
    };
    let release: Vec<String> = ids
        .iter()
        .filter(|id| !case.failed.contains(*id) && found.get(*id).is_some_and(Option::is_some))
        .cloned()
        .collect();
    if !release.is_empty() {
        if let Err(e) = retry(|| repo.release_batch(&release)).await {
            report.violation(format!("after the faults: release failed: {e}"));
        }
    }
    let units = 4 * case.failed.len() as u64 + 4;
    for w in 0..case.workers.len() {
        let spec = case.spec(w, units, 0);
        if let Err(e) = retry(|| repo.register_worker(&spec)).await {
            report.violation(format!("after the faults: re-register {:?}: {e}", spec.id));
        }
    }
    let mut failed: Vec<&String> = case.failed.iter().collect();
    failed.sort();
    let reqs: Vec<ContainerRequest> = failed
        .iter()
        .filter_map(|id| {
            let res = *case.asked.get(*id)?;
            Some(ContainerRequest::new((*id).clone(), res).with_pool(case.pool(0)))
        })
        .collect();
    if reqs.is_empty() {
        return;
    }
    let cfg = SchedulerConfig::default().with_cache_ttl(Duration::ZERO);
    let sched = Scheduler::new(Arc::clone(repo), cfg);
    let ids: Vec<String> = reqs.iter().map(|r| r.id.clone()).collect();
    let out = sched.schedule_batch(reqs).await;
    let Some(found) = lookup(&**repo, &ids, report).await else {
        return;
    };
    for (id, r) in ids.iter().zip(out) {
        let held = found.get(id).cloned().flatten();
        match r {
            Ok(p) if held.as_ref().is_some_and(|h| h.worker_id == p.worker_id) => {}
            Ok(p) => {
                report.disagreements += 1;
                report.violation_of(
                    "retry-ok-but-not-held",
                    format!(
                        "after the faults: {id:?} placed on {} but the store has it {}",
                        p.worker_id,
                        short(&held)
                    ),
                );
            }
            Err(_) if held.is_some() => {}
            Err(e) => {
                report.blocked += 1;
                report.violation_of(
                    "blocked",
                    format!("after the faults: {id:?} still fails: {e}"),
                );
            }
        }
    }
}

/// Ends a case: undoes the faults, checks the invariants, the blocked containers, the
/// invariants again, and removes the case's workers.
pub(super) async fn finish(case: Case<'_>, report: &mut ChaosReport) {
    case.faulty.faults().clear();
    if let Some(real) = &case.target.real {
        real.restore().await;
    }
    if !case.cancelled.is_empty() {
        // A cancelled call's batch may still be committing in its own task: let it land, so
        // the checks below read a store at rest (what it did is judged, not hidden).
        tokio::time::sleep(case.settle()).await;
    }
    invariants(&case, "after the rounds", report).await;
    blocked(&case, report).await;
    invariants(&case, "after the retry", report).await;
    for w in &case.workers {
        if let Err(e) = retry(|| case.target.repo.remove_worker(w)).await {
            report.violation(format!("clean-up: remove_worker({w:?}): {e}"));
        }
    }
}
