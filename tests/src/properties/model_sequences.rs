//! [`model_sequences`]: random sequences of operations, each applied to the repository and to
//! the reference [`Model`] and compared.

use super::model::{MWorker, Model, PartExpect};
use super::model_ops::{
    gen_op, gen_prelude, Expect, ModelPart, Op, MODEL_CONTAINERS, MODEL_POOLS, MODEL_WORKERS,
};
use super::support::{remove_all, GPU_TYPES};
use super::{run, PropConfig};
use crate::ns::Ns;
use proptest::collection::vec;
use sched_core::{
    CapacityReservation, CommitMode, RepoError, ResourceKind, ResourceReservation, Resources,
    Worker, WorkerRepository, WorkerSpec, WorkerStatus,
};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use tokio::runtime::Handle;

fn is_invalid<T: Debug>(r: &Result<T, RepoError>) -> bool {
    matches!(r, Err(RepoError::InvalidInput(_)))
}

struct ModelRun<'a> {
    repo: &'a dyn WorkerRepository,
    model: Model,
    workers: Vec<String>,
    containers: Vec<String>,
    pools: Vec<String>,
}

impl ModelRun<'_> {
    async fn apply(&mut self, op: &Op) {
        match op {
            Op::Register {
                w,
                total,
                gpu,
                status,
                pool,
            } => self.register(*w, *total, *gpu, *status, *pool).await,
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
        }
    }

    /// The worker id for an index; one past the end is a worker that never exists.
    fn worker_id(&self, w: usize) -> String {
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
    ) {
        let id = self.workers[w].clone();
        let mut spec = WorkerSpec::new(id.clone(), total)
            .with_pool(self.pools[pool].clone())
            .with_status(status)
            .requiring_pool_selector();
        spec.gpu_type = gpu.map(|g| GPU_TYPES[g].to_owned());
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
        let ledger = self
            .model
            .workers
            .remove(&id)
            .map(|m| m.ledger)
            .unwrap_or_default();
        self.model
            .workers
            .insert(id.clone(), MWorker { spec, ledger });
        self.model.versions.insert(id.clone(), got.resource_version);
        assert_eq!(
            Some(untimed(got)),
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
                        .map(|(c, r, t)| ResourceReservation {
                            container_id: self.containers[*c].clone(),
                            resources: *r,
                            gpu_type: t.map(|g| GPU_TYPES[g].to_owned()),
                            lease_ms: None,
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
                || b.reservations
                    .iter()
                    .any(|r| !cs.insert(&r.container_id) || r.resources.is_zero())
        });
        if invalid {
            assert!(is_invalid(&got), "a batch with a repeated worker or container or a zero reservation must be InvalidInput, got {got:?}");
            return;
        }
        let got = got.expect("reserve_batch");
        assert_eq!(got.len(), batch.len(), "one result per worker");
        for (b, r) in batch.iter().zip(got) {
            assert_eq!(r.worker_id, b.worker_id, "results in input order");
            match (self.model.part(b, mode), r.outcome) {
                (PartExpect::Rejected(alts), Err(rej)) => {
                    assert!(
                        alts.contains(&rej),
                        "{}: rejection {rej:?} is not one of {alts:?}",
                        b.worker_id
                    );
                }
                (
                    PartExpect::Committed {
                        accepted,
                        free,
                        remainder,
                        new,
                    },
                    Ok(c),
                ) => {
                    assert_eq!(
                        (c.accepted, c.free),
                        (accepted, free),
                        "{}: accepted / free",
                        b.worker_id
                    );
                    match (&remainder, &c.remainder) {
                        (None, None) => {}
                        (Some(alts), Some(rej)) => assert!(
                            alts.contains(rej),
                            "remainder {rej:?} is not one of {alts:?}"
                        ),
                        (want, got) => panic!(
                            "{}: remainder {got:?}, expected one of {want:?}",
                            b.worker_id
                        ),
                    }
                    let old = self.model.versions[&b.worker_id];
                    if new.is_empty() {
                        assert_eq!(
                            c.new_version, old,
                            "nothing new charged: the version must not change"
                        );
                    } else {
                        assert!(c.new_version > old, "a charge must bump the version");
                    }
                    self.model
                        .versions
                        .insert(b.worker_id.clone(), c.new_version);
                    if let Some(m) = self.model.workers.get_mut(&b.worker_id) {
                        for r in new {
                            m.ledger.insert(r.container_id, (r.resources, r.gpu_type));
                        }
                    }
                }
                (want, got) => panic!("{}: expected {want:?}, got {got:?}", b.worker_id),
            }
        }
    }

    async fn release(&mut self, cs: &[usize]) {
        let ids: Vec<String> = cs
            .iter()
            .map(|&c| {
                self.containers
                    .get(c)
                    .cloned()
                    .unwrap_or_else(|| format!("{}never", self.containers[0]))
            })
            .collect();
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
                    let (res, _) = self
                        .model
                        .workers
                        .get_mut(&w)
                        .and_then(|m| m.ledger.remove(id))
                        .expect("model holder");
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

    /// The repo's state equals the model's.
    async fn compare(&self, after: &str) {
        for id in &self.workers {
            let got = self.repo.get_worker(id).await.expect("get_worker");
            let got = got.map(untimed);
            assert_eq!(
                got,
                self.model.expected_worker(id),
                "after {after}: get_worker({id:?})"
            );
            if got.is_some() {
                let l = self
                    .repo
                    .list_reservations(id)
                    .await
                    .expect("list_reservations");
                assert_eq!(
                    l,
                    self.model.records(id),
                    "after {after}: list_reservations({id:?})"
                );
                let a = self.repo.audit(id).await.expect("audit");
                assert!(a.is_consistent(), "after {after}: audit {a:?}");
            }
        }
        for c in &self.containers {
            let got = self
                .repo
                .find_reservation(c)
                .await
                .expect("find_reservation");
            let want = self.model.holder(c).map(|w| w.to_owned());
            assert_eq!(
                got.map(|r| r.worker_id),
                want,
                "after {after}: find_reservation({c:?})"
            );
        }
        for p in &self.pools {
            let got = self.repo.list_workers(Some(p)).await.expect("list_workers");
            let got: Vec<Worker> = got.into_iter().map(untimed).collect();
            let want: Vec<Worker> = self
                .workers
                .iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter_map(|id| self.model.expected_worker(id))
                .filter(|w| &w.pool == p)
                .collect();
            assert_eq!(got, want, "after {after}: list_workers({p:?})");
        }
    }
}

/// Random sequences of register, reserve (both modes, with and without `expected_version`),
/// release, remove, re-register and reconcile; after each operation the repository's answers
/// and its whole state equal a reference model's.
pub fn model_sequences(handle: &Handle, repo: Arc<dyn WorkerRepository>, cfg: &PropConfig) {
    let strategy = (gen_prelude(), vec(gen_op(), 1..40));
    run("model_sequences", cfg, strategy, |(prelude, ops)| {
        handle.block_on(async {
            let ns = Ns::awkward("prop-model");
            let mut run = ModelRun {
                repo: &*repo,
                model: Model::default(),
                workers: (0..MODEL_WORKERS)
                    .map(|i| ns.worker(&format!("{i}")))
                    .collect(),
                containers: (0..MODEL_CONTAINERS)
                    .map(|i| ns.container(&format!("{i}")))
                    .collect(),
                pools: (0..MODEL_POOLS).map(|i| ns.pool(&format!("{i}"))).collect(),
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

/// A worker without its last heartbeat: the store's clock at registration, which the model
/// cannot know.
fn untimed(w: Worker) -> Worker {
    Worker {
        last_heartbeat_ms: None,
        ..w
    }
}
