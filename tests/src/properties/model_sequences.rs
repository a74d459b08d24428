//! [`model_sequences`] and [`lifecycle_sequences`]: random sequences of operations, each
//! applied to the repository and to the reference [`Model`] and compared.

use super::model::{MRes, MWorker, Model};
use super::model_ops::{
    gen_op, gen_prelude, Expect, Liveness, ModelPart, Op, MODEL_CONTAINERS, MODEL_POOLS,
    MODEL_WORKERS,
};
use super::support::{remove_all, GPU_TYPES};
use super::{run, PropConfig, StoreClock};
use crate::ns::Ns;
use proptest::collection::vec;
use sched_core::{
    CapacityReservation, CommitMode, RepoError, ResourceKind, ResourceReservation, Resources,
    WorkerRepository, WorkerSpec, WorkerStatus,
};
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use tokio::runtime::Handle;

pub(super) fn is_invalid<T: Debug>(r: &Result<T, RepoError>) -> bool {
    matches!(r, Err(RepoError::InvalidInput(_)))
}

pub(super) struct ModelRun<'a> {
    pub(super) repo: &'a dyn WorkerRepository,
    pub(super) model: Model,
    pub(super) workers: Vec<String>,
    pub(super) containers: Vec<String>,
    pub(super) pools: Vec<String>,
    /// The store's clock when the test moves it (the model then predicts every answer).
    pub(super) clock: Option<Arc<dyn StoreClock>>,
    /// Whether the lifecycle contract is under test (registration must then report its
    /// heartbeat); without it, the model takes whatever heartbeat a registration reports.
    pub(super) lifecycle: bool,
}

impl ModelRun<'_> {
    pub(super) async fn apply(&mut self, op: &Op) {
        if let Some(c) = &self.clock {
            self.model.now = c.now_ms();
        }
        match op {
            Op::Register {
                w,
                total,
                gpu,
                status,
                pool,
                liveness,
            } => {
                self.register(*w, *total, *gpu, *status, *pool, *liveness)
                    .await
            }
            Op::Reregister { w, shrink, status } => {
                let id = self.worker_id(*w);
                let spec = match self.model.workers.get(&id) {
                    Some(m) => {
                        let t = m.spec.total;
                        let total = t.saturating_sub(&Resources::new(
                            shrink.0 * 250,
                            shrink.1 * 256,
                            shrink.2,
                        ));
                        WorkerSpec {
                            total,
                            status: *status,
                            ..m.spec.clone()
                        }
                    }
                    None => WorkerSpec::new(id.clone(), Resources::new(4000, 4096, 0))
                        .with_pool(self.pools[0].clone())
                        .with_status(*status)
                        .requiring_pool_selector(),
                };
                self.register_spec(spec).await;
            }
            Op::Reserve { mode, parts } => self.reserve(*mode, parts).await,
            Op::Release(cs) => self.release(cs).await,
            Op::Remove(w) => {
                let id = self.worker_id(*w);
                let got = self.repo.remove_worker(&id).await.expect("remove_worker");
                assert_eq!(
                    got,
                    self.model.workers.remove(&id).is_some(),
                    "remove_worker({id:?}) says whether it existed"
                );
            }
            Op::Reconcile(w) => {
                let id = self.worker_id(*w);
                let got = self.repo.reconcile(&id).await;
                if self.model.workers.contains_key(&id) {
                    let report = got.expect("reconcile");
                    assert!(report.is_consistent(), "reconcile found drift: {report:?}");
                    assert_eq!(report.reserved, self.model.reserved(&id));
                } else {
                    assert!(
                        matches!(got, Err(RepoError::UnknownWorker(_))),
                        "reconcile of unknown worker: {got:?}"
                    );
                }
            }
            Op::Renew { w, cs, lease_ms } => self.renew(*w, cs, *lease_ms).await,
            Op::Sweep(Some(w)) => self.sweep(*w).await,
            Op::Sweep(None) => {
                for w in 0..self.workers.len() {
                    self.sweep(w).await;
                }
            }
            Op::Heartbeat(w) => self.heartbeat(*w).await,
            Op::SetStatus(w, status) => self.set_status(*w, *status).await,
            Op::ReleaseWorker(w) => self.release_worker(*w).await,
            Op::Advance(ms) => match &self.clock {
                Some(c) => c.advance_ms(*ms),
                // A real clock: let the time pass (leases run out, heartbeats age).
                None => tokio::time::sleep(std::time::Duration::from_millis(*ms)).await,
            },
        }
    }

    /// A container id for an index; one past the end is a container never reserved.
    pub(super) fn container_id(&self, c: usize) -> String {
        self.containers
            .get(c)
            .cloned()
            .unwrap_or_else(|| format!("{}never", self.containers[0]))
    }

    /// The worker id for an index; one past the end is a worker that never exists.
    pub(super) fn worker_id(&self, w: usize) -> String {
        self.workers
            .get(w)
            .cloned()
            .unwrap_or_else(|| format!("{}ghost", self.workers[0]))
    }

    async fn register(
        &mut self,
        w: usize,
        total: Resources,
        gpu: Option<usize>,
        status: WorkerStatus,
        pool: usize,
        liveness: Liveness,
    ) {
        let id = self.workers[w].clone();
        let mut spec = WorkerSpec::new(id.clone(), total)
            .with_pool(self.pools[pool].clone())
            .with_status(status)
            .requiring_pool_selector();
        spec.gpu_type = gpu.map(|g| GPU_TYPES[g].to_owned());
        if let Some((timeout, policy)) = liveness {
            spec.heartbeat_timeout_ms = Some(timeout);
            spec.on_stale = policy;
        }
        self.register_spec(spec).await;
    }

    async fn register_spec(&mut self, spec: WorkerSpec) {
        let id = spec.id.clone();
        let total = spec.total;
        let got = self.repo.register_worker(&spec).await;
        let reserved = self.model.reserved(&id);
        let short: Vec<ResourceKind> = ResourceKind::ALL
            .into_iter()
            .filter(|k| total.get(*k) < reserved.get(*k))
            .collect();
        if !short.is_empty() {
            match got {
                Err(RepoError::TotalBelowReserved { resource, total: t, reserved: r }) => {
                    assert!(short.contains(&resource), "TotalBelowReserved names {resource}, short: {short:?}");
                    assert_eq!((t, r), (total.get(resource), reserved.get(resource)));
                }
                other => panic!("re-registration below reserved {reserved}: expected TotalBelowReserved, got {other:?}"),
            }
            return;
        }
        let got = got.expect("register_worker");
        if let Some(&last) = self.model.versions.get(&id) {
            assert!(
                got.resource_version > last,
                "registration must bump the version past {last}: {got:?}"
            );
        }
        // Registration counts as a heartbeat, at the store's time.
        if self.lifecycle {
            let at = self.observed_time(got.last_heartbeat_ms, "registration's heartbeat");
            self.model.now = self.model.now.max(at);
        }
        let ledger = self
            .model
            .workers
            .remove(&id)
            .map(|m| m.ledger)
            .unwrap_or_default();
        self.model.workers.insert(
            id.clone(),
            MWorker {
                spec,
                ledger,
                last_heartbeat: got.last_heartbeat_ms,
            },
        );
        self.model.versions.insert(id.clone(), got.resource_version);
        assert_eq!(
            Some(got),
            self.model.expected_worker(&id),
            "register_worker's answer"
        );
    }

    async fn reserve(&mut self, mode: CommitMode, parts: &[ModelPart]) {
        let batch: Vec<CapacityReservation> = parts
            .iter()
            .map(|(w, e, rs)| {
                let id = self.worker_id(*w);
                let v = self.model.versions.get(&id).copied().unwrap_or(1);
                let expected_version = match e {
                    Expect::No => None,
                    Expect::Current => Some(v),
                    Expect::Off(d) => Some(v.checked_add_signed(i64::from(*d)).unwrap_or(v + 1)),
                };
                CapacityReservation {
                    worker_id: id,
                    expected_version,
                    reservations: rs
                        .iter()
                        .map(|(c, r, t, l)| ResourceReservation {
                            container_id: self.containers[*c].clone(),
                            resources: *r,
                            gpu_type: t.map(|g| GPU_TYPES[g].to_owned()),
                            lease_ms: *l,
                        })
                        .collect(),
                }
            })
            .collect();
        let got = self.repo.reserve_batch(&batch, mode).await;
        let mut ws = HashSet::new();
        let mut cs = HashSet::new();
        let invalid = batch.iter().any(|b| {
            !ws.insert(&b.worker_id)
                || b.reservations.iter().any(|r| {
                    !cs.insert(&r.container_id) || r.resources.is_zero() || r.lease_ms == Some(0)
                })
        });
        if invalid {
            assert!(is_invalid(&got), "a batch with a repeated worker or container or a zero reservation must be InvalidInput, got {got:?}");
            return;
        }
        let got = got.expect("reserve_batch");
        assert_eq!(got.len(), batch.len(), "one result per worker");
        let before = self.model.now;
        let mut leased = Vec::new();
        for (b, r) in batch.iter().zip(got) {
            assert_eq!(r.worker_id, b.worker_id, "results in input order");
            // The part ran at some instant of the store's clock; the answer must be the model's
            // at one of them (only a heartbeat's age depends on it).
            let mut misses = Vec::new();
            let mut new = None;
            for t in self.model.instants() {
                match self.check_part(b, mode, t, &r) {
                    Ok(n) => {
                        new = Some((t, n));
                        break;
                    }
                    Err(e) => misses.push(format!("at {t}: {e}")),
                }
            }
            let Some((t, new)) = new else {
                panic!(
                    "{}: {r:?} matches no instant:\n{}",
                    b.worker_id,
                    misses.join("\n")
                );
            };
            if let Some(m) = self.model.workers.get_mut(&b.worker_id) {
                for r in new {
                    let lease = r.lease_ms.map(|l| t + l);
                    if r.lease_ms.is_some() {
                        leased.push((b.worker_id.clone(), r.container_id.clone(), r.lease_ms));
                    }
                    let res = MRes {
                        resources: r.resources,
                        gpu_type: r.gpu_type,
                        lease,
                    };
                    m.ledger.insert(r.container_id, res);
                }
            }
        }
        if self.model.exact {
            return;
        }
        // A real clock: the deadlines of the new leases say when the store committed them.
        for (w, c, l) in leased {
            let got = self
                .repo
                .list_reservations(&w)
                .await
                .expect("list_reservations");
            let d = got
                .iter()
                .find(|r| r.container_id == c)
                .and_then(|r| r.lease_expires_at_ms)
                .unwrap_or_else(|| panic!("{c:?} was reserved with a lease: {got:?}"));
            let l = l.unwrap_or(0);
            assert!(
                d >= before.saturating_add(l),
                "{c:?}: deadline {d} is before the clock ({before}) + its lease ({l})"
            );
            self.model.now = self.model.now.max(d - l);
            if let Some(r) = self
                .model
                .workers
                .get_mut(&w)
                .and_then(|m| m.ledger.get_mut(&c))
            {
                r.lease = Some(d);
            }
        }
    }

    async fn release(&mut self, cs: &[usize]) {
        let ids: Vec<String> = cs.iter().map(|&c| self.container_id(c)).collect();
        let got = self.repo.release_batch(&ids).await;
        if ids.iter().collect::<HashSet<_>>().len() != ids.len() {
            assert!(
                is_invalid(&got),
                "a release with a repeated id must be InvalidInput, got {got:?}"
            );
            return;
        }
        let got = got.expect("release_batch");
        assert_eq!(got.len(), ids.len());
        let mut newest: HashMap<String, u64> = HashMap::new();
        for (id, o) in ids.iter().zip(got) {
            assert_eq!(&o.container_id, id, "outcomes in input order");
            let holder = self.model.holder(id).map(str::to_owned);
            match (holder, o.released) {
                (None, None) => {}
                (Some(w), Some(rel)) => {
                    let res = self
                        .model
                        .workers
                        .get_mut(&w)
                        .and_then(|m| m.ledger.remove(id))
                        .expect("model holder")
                        .resources;
                    assert_eq!(
                        (rel.worker_id.as_str(), rel.resources),
                        (w.as_str(), res),
                        "Released for {id:?}"
                    );
                    assert!(
                        rel.new_version > self.model.versions[&w],
                        "a release must bump the version"
                    );
                    let e = newest.entry(w).or_insert(0);
                    *e = (*e).max(rel.new_version);
                }
                (want, got) => panic!("release of {id:?}: model holder {want:?}, got {got:?}"),
            }
        }
        self.model.versions.extend(newest);
    }
}

/// Random sequences of register, reserve (both modes, with and without `expected_version`),
/// release, remove, re-register and reconcile; after each operation the repository's answers
/// and its whole state equal a reference model's.
pub fn model_sequences(handle: &Handle, repo: Arc<dyn WorkerRepository>, cfg: &PropConfig) {
    sequences("model_sequences", handle, repo, None, false, cfg);
}

/// [`model_sequences`] with the lifecycle in the histories: reservations sometimes leased,
/// workers sometimes registered with a heartbeat timeout and a stale policy, and renewals (of
/// held and unheld ids), sweeps, heartbeats, status changes, bulk releases and time passing.
///
/// The store's clock is real here, so the model follows the store where time decides: every
/// answer must be the model's at some instant at or after the last time the store reported
/// (a sweep's expired set is exactly what the model says is due at its `swept_at_ms`, a
/// renewal's `Renewed` names the instant it ran and must be the model's answer then for every
/// id, ...), and the model then takes that instant as its clock. The invariants are those of
/// [`model_sequences`]: the ledger is the truth (free + Σ ledger = total, audit drift 0), one
/// holder, versions only grow (a status change bumps, a renewal or heartbeat does not), and a
/// container swept or released in bulk comes back once and is found by no later release.
pub fn lifecycle_sequences(handle: &Handle, repo: Arc<dyn WorkerRepository>, cfg: &PropConfig) {
    sequences("lifecycle_sequences", handle, repo, None, true, cfg);
}

/// [`lifecycle_sequences`] on a store whose clock the test moves ([`StoreClock`], e.g. the
/// memory store's manual clock): the model predicts every answer exactly, and passing time is a
/// step of the history.
pub fn lifecycle_sequences_exact(
    handle: &Handle,
    repo: Arc<dyn WorkerRepository>,
    clock: Arc<dyn StoreClock>,
    cfg: &PropConfig,
) {
    sequences(
        "lifecycle_sequences_exact",
        handle,
        repo,
        Some(clock),
        true,
        cfg,
    );
}

fn sequences(
    name: &str,
    handle: &Handle,
    repo: Arc<dyn WorkerRepository>,
    clock: Option<Arc<dyn StoreClock>>,
    lifecycle: bool,
    cfg: &PropConfig,
) {
    let strategy = (gen_prelude(lifecycle), vec(gen_op(lifecycle), 1..40));
    run(name, cfg, strategy, |(prelude, ops)| {
        handle.block_on(async {
            let ns = Ns::awkward("prop-model");
            let mut run = ModelRun {
                repo: &*repo,
                model: Model {
                    exact: clock.is_some(),
                    ..Model::default()
                },
                workers: (0..MODEL_WORKERS)
                    .map(|i| ns.worker(&format!("{i}")))
                    .collect(),
                containers: (0..MODEL_CONTAINERS)
                    .map(|i| ns.container(&format!("{i}")))
                    .collect(),
                pools: (0..MODEL_POOLS).map(|i| ns.pool(&format!("{i}"))).collect(),
                clock: clock.clone(),
                lifecycle,
            };
            for op in &prelude {
                run.apply(op).await;
            }
            run.compare("the prelude").await;
            for (i, op) in ops.iter().enumerate() {
                run.apply(op).await;
                run.compare(&format!("op {i} {op:?}")).await;
            }
            let workers = run.workers.clone();
            remove_all(&*repo, &workers).await;
        });
    });
}
