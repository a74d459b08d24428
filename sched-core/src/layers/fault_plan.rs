//! [`FaultPlan`]: which faults a [`Faulty`](super::Faulty) layer injects into which calls, and
//! the latency it adds; [`Op`], [`Args`] and [`Call`] describe a call to select on.

use crate::{AuditMode, CapacityReservation, CommitMode, WorkerSpec, WorkerStatus};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Fail before applying anything, with [`RepoError::Unavailable`](crate::RepoError::Unavailable).
    Fail,
    /// On `reserve_batch`: reject every worker part with a version conflict (an unknown worker
    /// with `UnknownWorker`), applying nothing. On any other call it fails like [`Fault::Fail`].
    Conflict,
    /// Apply the call, then lose the reply: the caller gets [`RepoError::Ambiguous`](crate::RepoError::Ambiguous) although the
    /// change is committed. (If the call itself fails, its own error is returned.)
    LoseReply,
    /// Wait this long, then make the call normally.
    Delay(Duration),
}

/// The operations of [`WorkerRepository`](crate::WorkerRepository), one per required method. The conveniences map to
/// the method they call: `find_reservation` is [`Op::Find`], `audit` and `reconcile` are
/// [`Op::Audit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `register_worker`.
    Register,
    /// `remove_worker`.
    Remove,
    /// `get_worker`.
    GetWorker,
    /// `list_workers`.
    ListWorkers,
    /// `reserve_batch`.
    Reserve,
    /// `release_batch`.
    Release,
    /// `find_reservations` (and so `find_reservation`).
    Find,
    /// `list_reservations`.
    ListReservations,
    /// `audit_worker` (and so `audit`, `reconcile`).
    Audit,
    /// `renew_leases`.
    Renew,
    /// `expire_leases`.
    Expire,
    /// `heartbeat`.
    Heartbeat,
    /// `set_worker_status`.
    SetStatus,
    /// `release_worker`.
    ReleaseWorker,
}

impl Op {
    /// Every operation.
    pub const ALL: [Op; 14] = [
        Op::Register,
        Op::Remove,
        Op::GetWorker,
        Op::ListWorkers,
        Op::Reserve,
        Op::Release,
        Op::Find,
        Op::ListReservations,
        Op::Audit,
        Op::Renew,
        Op::Expire,
        Op::Heartbeat,
        Op::SetStatus,
        Op::ReleaseWorker,
    ];

    /// The method's name (`reserve_batch`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Op::Register => "register_worker",
            Op::Remove => "remove_worker",
            Op::GetWorker => "get_worker",
            Op::ListWorkers => "list_workers",
            Op::Reserve => "reserve_batch",
            Op::Release => "release_batch",
            Op::Find => "find_reservations",
            Op::ListReservations => "list_reservations",
            Op::Audit => "audit_worker",
            Op::Renew => "renew_leases",
            Op::Expire => "expire_leases",
            Op::Heartbeat => "heartbeat",
            Op::SetStatus => "set_worker_status",
            Op::ReleaseWorker => "release_worker",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The arguments of one call, for predicates.
#[derive(Debug, Clone, Copy)]
pub enum Args<'a> {
    /// `register_worker(spec)`.
    Register(&'a WorkerSpec),
    /// `remove_worker(worker_id)`.
    Remove(&'a str),
    /// `get_worker(worker_id)`.
    GetWorker(&'a str),
    /// `list_workers(pool)`.
    ListWorkers(Option<&'a str>),
    /// `reserve_batch(batch, mode)`.
    Reserve(&'a [CapacityReservation], CommitMode),
    /// `release_batch(container_ids)`.
    Release(&'a [String]),
    /// `find_reservations(container_ids)`.
    Find(&'a [String]),
    /// `list_reservations(worker_id)`.
    ListReservations(&'a str),
    /// `audit_worker(worker_id, mode)`.
    Audit(&'a str, AuditMode),
    /// `renew_leases(worker_id, container_ids, lease_ms)`.
    Renew(&'a str, &'a [String], u64),
    /// `expire_leases(worker_id)`.
    Expire(&'a str),
    /// `heartbeat(worker_id)`.
    Heartbeat(&'a str),
    /// `set_worker_status(worker_id, status)`.
    SetStatus(&'a str, WorkerStatus),
    /// `release_worker(worker_id)`.
    ReleaseWorker(&'a str),
}

impl Args<'_> {
    /// The operation.
    pub fn op(&self) -> Op {
        match self {
            Args::Register(_) => Op::Register,
            Args::Remove(_) => Op::Remove,
            Args::GetWorker(_) => Op::GetWorker,
            Args::ListWorkers(_) => Op::ListWorkers,
            Args::Reserve(..) => Op::Reserve,
            Args::Release(_) => Op::Release,
            Args::Find(_) => Op::Find,
            Args::ListReservations(_) => Op::ListReservations,
            Args::Audit(..) => Op::Audit,
            Args::Renew(..) => Op::Renew,
            Args::Expire(_) => Op::Expire,
            Args::Heartbeat(_) => Op::Heartbeat,
            Args::SetStatus(..) => Op::SetStatus,
            Args::ReleaseWorker(_) => Op::ReleaseWorker,
        }
    }
}

/// One call through a [`Faulty`](super::Faulty) layer, as a [`Select::when`] predicate sees it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// Which call of its operation this is through the plan, counting from 1 (this call
    /// included) since the plan was created. Calls refused as bad input are not counted.
    pub nth: u64,
    /// The arguments.
    pub args: Args<'a>,
}

impl Call<'_> {
    /// The operation.
    pub fn op(&self) -> Op {
        self.args.op()
    }

    /// True when the call names worker `id` (its spec, its id, or a part of its batch).
    /// `release_batch` and `find_reservations` name containers only.
    pub fn touches_worker(&self, id: &str) -> bool {
        match self.args {
            Args::Register(spec) => spec.id == id,
            Args::Remove(w)
            | Args::GetWorker(w)
            | Args::ListReservations(w)
            | Args::Audit(w, _)
            | Args::Renew(w, _, _)
            | Args::Expire(w)
            | Args::Heartbeat(w)
            | Args::SetStatus(w, _)
            | Args::ReleaseWorker(w) => w == id,
            Args::Reserve(batch, _) => batch.iter().any(|p| p.worker_id == id),
            Args::ListWorkers(_) | Args::Release(_) | Args::Find(_) => false,
        }
    }

    /// True when the call names container `id` (in a reserve, release or lookup).
    pub fn touches_container(&self, id: &str) -> bool {
        match self.args {
            Args::Reserve(batch, _) => batch
                .iter()
                .any(|p| p.reservations.iter().any(|r| r.container_id == id)),
            Args::Release(ids) | Args::Find(ids) | Args::Renew(_, ids, _) => {
                ids.iter().any(|c| c == id)
            }
            _ => false,
        }
    }
}

/// How many operations there are.
const OPS: usize = Op::ALL.len();

type Predicate = Arc<dyn Fn(&Call<'_>) -> bool + Send + Sync>;

#[derive(Clone)]
enum Sel {
    Batches,
    Any,
    Op(Op),
    /// The k-th call of an operation from the moment the rule is added.
    Nth(Op, u64),
    When(Predicate),
}

/// Which calls a fault rule applies to. `Op` converts into it: `plan.on(Op::Find, ...)`.
#[derive(Clone)]
pub struct Select(Sel);

impl Select {
    /// `reserve_batch` and `release_batch` calls: the calls [`FaultPlan::push`] targets.
    pub fn batches() -> Self {
        Select(Sel::Batches)
    }

    /// Every call.
    pub fn any() -> Self {
        Select(Sel::Any)
    }

    /// Calls of one operation.
    pub fn op(op: Op) -> Self {
        Select(Sel::Op(op))
    }

    /// The `k`-th call of `op` counting from when the rule is added with [`FaultPlan::on`]
    /// (`k = 1`, or 0: the next one). Fires at most once, whatever `n` says; dropped once that
    /// call has passed.
    pub fn nth(op: Op, k: u64) -> Self {
        Select(Sel::Nth(op, k))
    }

    /// Calls for which `predicate` holds, e.g. `|c| c.op() == Op::Reserve &&
    /// c.touches_worker("w")`. It runs under the plan's lock: it must not call the plan.
    pub fn when(predicate: impl Fn(&Call<'_>) -> bool + Send + Sync + 'static) -> Self {
        Select(Sel::When(Arc::new(predicate)))
    }
}

impl From<Op> for Select {
    fn from(op: Op) -> Self {
        Select::op(op)
    }
}

impl fmt::Debug for Select {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Sel::Batches => f.write_str("Batches"),
            Sel::Any => f.write_str("Any"),
            Sel::Op(op) => write!(f, "Op({op})"),
            Sel::Nth(op, k) => write!(f, "Nth({op}, {k})"),
            Sel::When(_) => f.write_str("When(..)"),
        }
    }
}

#[derive(Debug)]
struct Rule {
    select: Select,
    fault: Fault,
    left: usize,
}

impl Rule {
    fn matches(&self, call: &Call<'_>) -> bool {
        match &self.select.0 {
            Sel::Batches => matches!(call.op(), Op::Reserve | Op::Release),
            Sel::Any => true,
            Sel::Op(op) => call.op() == *op,
            Sel::Nth(op, at) => call.op() == *op && call.nth == *at,
            Sel::When(p) => p(call),
        }
    }

    /// An `nth` rule whose call went by without it.
    fn expired(&self, calls: &[u64; OPS]) -> bool {
        matches!(self.select.0, Sel::Nth(op, at) if calls[op.index()] >= at)
    }
}

#[derive(Debug, Default)]
struct PlanState {
    rules: Vec<Rule>,
    calls: [u64; OPS],
    before: Duration,
    after: Duration,
}

/// Faults and latency for a [`Faulty`](super::Faulty) layer. Shared (`Arc`) and changeable at any time.
///
/// Faults are rules: "this fault, for the next `n` calls that match this selector". On each call
/// the first rule (in the order added) that matches fires and uses up one of its `n`; at most one
/// fault fires per call. Latency applies to every call on top of any fault.
#[derive(Debug, Default)]
pub struct FaultPlan {
    state: Mutex<PlanState>,
    fired: AtomicU64,
}

/// What one call draws from the plan.
pub(super) struct Draw {
    pub(super) fault: Option<Fault>,
    pub(super) before: Duration,
    pub(super) after: Duration,
}

impl FaultPlan {
    /// An empty plan: no faults, no latency.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, PlanState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `fault` for the next `n` `reserve_batch` / `release_batch` calls (after any faults
    /// queued before it). Reads, lookups and the other calls do not consume it.
    pub fn push(&self, fault: Fault, n: usize) {
        self.on(Select::batches(), fault, n);
    }

    /// Queues `fault` for the next `n` calls that `select` matches (an [`Op`], or a
    /// [`Select`]), after any rules added before it.
    pub fn on(&self, select: impl Into<Select>, fault: Fault, n: usize) {
        let mut st = self.lock();
        let mut select = select.into();
        let mut n = n;
        if let Sel::Nth(op, k) = select.0 {
            select = Select(Sel::Nth(op, st.calls[op.index()].saturating_add(k.max(1))));
            n = n.min(1);
        }
        if n > 0 {
            st.rules.push(Rule {
                select,
                fault,
                left: n,
            });
        }
    }

    /// Sets latency added before every call (zero to stop); removes any latency after calls.
    pub fn set_latency(&self, d: Duration) {
        self.set_latency_split(d, Duration::ZERO);
    }

    /// Sets latency added before every call (the request's way) and after it (the reply's way).
    pub fn set_latency_split(&self, before: Duration, after: Duration) {
        let mut st = self.lock();
        st.before = before;
        st.after = after;
    }

    /// The latency added (before, after) every call.
    pub fn latency(&self) -> (Duration, Duration) {
        let st = self.lock();
        (st.before, st.after)
    }

    /// Removes every queued fault and the latency. Counts (calls, [`fired`](Self::fired)) stay.
    pub fn clear(&self) {
        let mut st = self.lock();
        st.rules.clear();
        st.before = Duration::ZERO;
        st.after = Duration::ZERO;
    }

    /// Faults still queued (the sum of what each rule has left).
    pub fn pending(&self) -> usize {
        self.lock()
            .rules
            .iter()
            .fold(0usize, |n, r| n.saturating_add(r.left))
    }

    /// Faults that fired so far.
    pub fn fired(&self) -> u64 {
        self.fired.load(Ordering::Relaxed)
    }

    /// Calls of `op` seen so far (refused bad input excluded).
    pub fn calls(&self, op: Op) -> u64 {
        self.lock().calls[op.index()]
    }

    pub(super) fn draw(&self, args: Args<'_>) -> Draw {
        let mut st = self.lock();
        let mut call = Call { nth: 0, args };
        let i = call.op().index();
        st.calls[i] = st.calls[i].saturating_add(1);
        call.nth = st.calls[i];
        let mut fault = None;
        if let Some(rule) = st.rules.iter_mut().find(|r| r.matches(&call)) {
            rule.left -= 1;
            fault = Some(rule.fault.clone());
            self.fired.fetch_add(1, Ordering::Relaxed);
        }
        let calls = st.calls;
        st.rules.retain(|r| r.left > 0 && !r.expired(&calls));
        Draw {
            fault,
            before: st.before,
            after: st.after,
        }
    }
}
