//! [`Faulty`]: injects failures, lost replies, forced conflicts and latency around any
//! repository, as a [`FaultPlan`] says.

use super::fault_plan::{Args, Draw, Fault, FaultPlan, Op};
use crate::validate::{
    validate_batch, validate_id, validate_release, validate_renewal, validate_spec,
};
use crate::{
    AuditMode, AuditReport, CapacityReservation, CommitMode, Heartbeat, LeaseRenewal, LeaseSweep,
    ReleaseOutcome, RepoError, RepositoryLayer, ReservationRecord, Worker, WorkerRelease,
    WorkerRepository, WorkerResult, WorkerSpec, WorkerStatus,
};
use async_trait::async_trait;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Injects the faults and latency of a shared [`FaultPlan`] into the repository it wraps: fail
/// before applying, apply and lose the reply, reject a batch with version conflicts, delay; on any
/// method, selected by count or by predicate. Works around any backend.
///
/// Input the contract refuses (see [`validate`](crate::validate)) is refused first, as the
/// backend would, so it draws no fault and no latency.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use sched_core::layers::{Fault, Faulty, Op, Select};
/// use sched_core::{RepoError, WorkerRepository};
/// # use sched_core::*;
/// # struct Empty;
/// # #[async_trait::async_trait]
/// # impl WorkerRepository for Empty {
/// #   async fn register_worker(&self, s: &WorkerSpec) -> Result<Worker, RepoError> { Ok(Worker::from_spec(s, 1)) }
/// #   async fn remove_worker(&self, _: &str) -> Result<bool, RepoError> { Ok(false) }
/// #   async fn get_worker(&self, _: &str) -> Result<Option<Worker>, RepoError> { Ok(None) }
/// #   async fn list_workers(&self, _: Option<&str>) -> Result<Vec<Worker>, RepoError> { Ok(vec![]) }
/// #   async fn reserve_batch(&self, _: &[CapacityReservation], _: CommitMode) -> Result<Vec<WorkerResult>, RepoError> { Ok(vec![]) }
/// #   async fn release_batch(&self, _: &[String]) -> Result<Vec<ReleaseOutcome>, RepoError> { Ok(vec![]) }
/// #   async fn find_reservations(&self, ids: &[String]) -> Result<Vec<Option<ReservationRecord>>, RepoError> { Ok(vec![None; ids.len()]) }
/// #   async fn list_reservations(&self, _: &str) -> Result<Vec<ReservationRecord>, RepoError> { Ok(vec![]) }
/// #   async fn audit_worker(&self, w: &str, _: AuditMode) -> Result<AuditReport, RepoError> { Err(RepoError::UnknownWorker(w.into())) }
/// # }
/// # let backend = Empty;
/// let repo = Faulty::new(backend);
/// // The second lookup from now fails.
/// repo.faults().on(Select::nth(Op::Find, 2), Fault::Fail, 1);
/// assert!(repo.find_reservation("c").await.is_ok());
/// assert!(matches!(repo.find_reservation("c").await, Err(RepoError::Unavailable(_))));
/// assert_eq!(repo.faults().fired(), 1);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Faulty<R> {
    inner: R,
    plan: Arc<FaultPlan>,
}

impl<R> Faulty<R> {
    /// Wraps `inner` with an empty plan.
    pub fn new(inner: R) -> Self {
        Self::with_plan(inner, Arc::default())
    }

    /// Wraps `inner`, following `plan` (which may be shared with other layers).
    pub fn with_plan(inner: R, plan: Arc<FaultPlan>) -> Self {
        Faulty { inner, plan }
    }

    /// The plan: push faults and set latency here.
    pub fn faults(&self) -> &FaultPlan {
        &self.plan
    }

    /// The plan, shared.
    pub fn plan(&self) -> Arc<FaultPlan> {
        Arc::clone(&self.plan)
    }

    /// The wrapped repository.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Unwraps the layer.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

async fn sleep(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

fn injected_failure(op: Op) -> RepoError {
    RepoError::Unavailable(format!("injected failure ({op})").into())
}

/// Latency before, the fault, the call (unless the fault stops it), latency after.
async fn run_drawn<T, F>(draw: Draw, op: Op, call: F) -> Result<T, RepoError>
where
    F: Future<Output = Result<T, RepoError>>,
{
    sleep(draw.before).await;
    let out = match draw.fault {
        Some(Fault::Fail | Fault::Conflict) => Err(injected_failure(op)),
        Some(Fault::Delay(d)) => {
            sleep(d).await;
            call.await
        }
        Some(Fault::LoseReply) => match call.await {
            Ok(_) => Err(RepoError::Ambiguous(
                format!("injected lost reply ({op} was applied)").into(),
            )),
            Err(e) => Err(e),
        },
        None => call.await,
    };
    sleep(draw.after).await;
    out
}

impl<R: WorkerRepository> Faulty<R> {
    /// Runs one call under the plan.
    async fn run<T, F>(&self, args: Args<'_>, call: F) -> Result<T, RepoError>
    where
        F: Future<Output = Result<T, RepoError>>,
    {
        let draw = self.plan.draw(args);
        run_drawn(draw, args.op(), call).await
    }

    /// [`Fault::Conflict`] on `reserve_batch`: every part rejected, nothing applied.
    async fn conflicts(
        &self,
        batch: &[CapacityReservation],
    ) -> Result<Vec<WorkerResult>, RepoError> {
        let workers = self.inner.list_workers(None).await?;
        Ok(batch
            .iter()
            .map(|part| {
                let current = workers.iter().find(|w| w.id == part.worker_id);
                WorkerResult {
                    worker_id: part.worker_id.clone(),
                    outcome: Err(match current {
                        None => crate::Rejection::UnknownWorker,
                        Some(w) => crate::rules::version_conflict(
                            part.expected_version.unwrap_or(0),
                            w.resource_version,
                        ),
                    }),
                }
            })
            .collect())
    }
}

#[async_trait]
impl<R: WorkerRepository> RepositoryLayer for Faulty<R> {
    type Inner = R;

    fn inner(&self) -> &R {
        &self.inner
    }

    async fn register_worker(&self, spec: &WorkerSpec) -> Result<Worker, RepoError> {
        validate_spec(spec)?;
        self.run(Args::Register(spec), self.inner.register_worker(spec))
            .await
    }

    async fn remove_worker(&self, worker_id: &str) -> Result<bool, RepoError> {
        validate_id("worker", worker_id)?;
        self.run(Args::Remove(worker_id), self.inner.remove_worker(worker_id))
            .await
    }

    async fn get_worker(&self, worker_id: &str) -> Result<Option<Worker>, RepoError> {
        validate_id("worker", worker_id)?;
        self.run(Args::GetWorker(worker_id), self.inner.get_worker(worker_id))
            .await
    }

    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        if let Some(p) = pool {
            validate_id("pool", p)?;
        }
        self.run(Args::ListWorkers(pool), self.inner.list_workers(pool))
            .await
    }

    async fn reserve_batch(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        validate_batch(batch)?;
        let draw = self.plan.draw(Args::Reserve(batch, mode));
        if draw.fault != Some(Fault::Conflict) {
            return run_drawn(draw, Op::Reserve, self.inner.reserve_batch(batch, mode)).await;
        }
        sleep(draw.before).await;
        let out = self.conflicts(batch).await;
        sleep(draw.after).await;
        out
    }

    async fn release_batch(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<ReleaseOutcome>, RepoError> {
        validate_release(container_ids)?;
        self.run(
            Args::Release(container_ids),
            self.inner.release_batch(container_ids),
        )
        .await
    }

    async fn find_reservations(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
        validate_release(container_ids)?;
        self.run(
            Args::Find(container_ids),
            self.inner.find_reservations(container_ids),
        )
        .await
    }

    async fn list_reservations(
        &self,
        worker_id: &str,
    ) -> Result<Vec<ReservationRecord>, RepoError> {
        validate_id("worker", worker_id)?;
        self.run(
            Args::ListReservations(worker_id),
            self.inner.list_reservations(worker_id),
        )
        .await
    }

    async fn audit_worker(
        &self,
        worker_id: &str,
        mode: AuditMode,
    ) -> Result<AuditReport, RepoError> {
        validate_id("worker", worker_id)?;
        self.run(
            Args::Audit(worker_id, mode),
            self.inner.audit_worker(worker_id, mode),
        )
        .await
    }

    async fn renew_leases(
        &self,
        worker_id: &str,
        container_ids: &[String],
        lease_ms: u64,
    ) -> Result<Vec<LeaseRenewal>, RepoError> {
        validate_renewal(worker_id, container_ids, lease_ms)?;
        self.run(
            Args::Renew(worker_id, container_ids, lease_ms),
            self.inner.renew_leases(worker_id, container_ids, lease_ms),
        )
        .await
    }

    async fn expire_leases(&self, worker_id: &str) -> Result<LeaseSweep, RepoError> {
        validate_id("worker", worker_id)?;
        self.run(Args::Expire(worker_id), self.inner.expire_leases(worker_id))
            .await
    }

    async fn heartbeat(&self, worker_id: &str) -> Result<Heartbeat, RepoError> {
        validate_id("worker", worker_id)?;
        self.run(Args::Heartbeat(worker_id), self.inner.heartbeat(worker_id))
            .await
    }

    async fn set_worker_status(
        &self,
        worker_id: &str,
        status: WorkerStatus,
    ) -> Result<Worker, RepoError> {
        validate_id("worker", worker_id)?;
        self.run(
            Args::SetStatus(worker_id, status),
            self.inner.set_worker_status(worker_id, status),
        )
        .await
    }

    async fn release_worker(&self, worker_id: &str) -> Result<WorkerRelease, RepoError> {
        validate_id("worker", worker_id)?;
        self.run(
            Args::ReleaseWorker(worker_id),
            self.inner.release_worker(worker_id),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::Faulty;
    use crate::layers::{Fault, Op, Select};
    use crate::{
        AuditMode, AuditReport, CapacityReservation, CommitMode, Committed, ReleaseOutcome,
        RepoError, ReservationRecord, ResourceReservation, Resources, Worker, WorkerRepository,
        WorkerResult, WorkerSpec,
    };
    use async_trait::async_trait;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::time::Instant;

    /// Records which calls reached it, and when; answers trivially.
    #[derive(Default)]
    struct Fake {
        applied: Mutex<Vec<(Op, Instant)>>,
    }

    impl Fake {
        fn note(&self, op: Op) {
            self.applied.lock().unwrap().push((op, Instant::now()));
        }
        fn applied(&self) -> Vec<Op> {
            self.applied.lock().unwrap().iter().map(|a| a.0).collect()
        }
    }

    fn worker(id: &str) -> Worker {
        Worker::from_spec(&WorkerSpec::new(id, Resources::cpu_mem(10, 10)), 7)
    }

    #[async_trait]
    impl WorkerRepository for Fake {
        async fn register_worker(&self, spec: &WorkerSpec) -> Result<Worker, RepoError> {
            self.note(Op::Register);
            Ok(Worker::from_spec(spec, 1))
        }
        async fn remove_worker(&self, _: &str) -> Result<bool, RepoError> {
            self.note(Op::Remove);
            Ok(true)
        }
        async fn get_worker(&self, id: &str) -> Result<Option<Worker>, RepoError> {
            self.note(Op::GetWorker);
            Ok(Some(worker(id)))
        }
        async fn list_workers(&self, _: Option<&str>) -> Result<Vec<Worker>, RepoError> {
            self.note(Op::ListWorkers);
            Ok(vec![worker("w1"), worker("w2")])
        }
        async fn reserve_batch(
            &self,
            batch: &[CapacityReservation],
            _: CommitMode,
        ) -> Result<Vec<WorkerResult>, RepoError> {
            self.note(Op::Reserve);
            Ok(batch
                .iter()
                .map(|p| WorkerResult {
                    worker_id: p.worker_id.clone(),
                    outcome: Ok(Committed {
                        new_version: 8,
                        free: Resources::ZERO,
                        accepted: p.reservations.len(),
                        remainder: None,
                    }),
                })
                .collect())
        }
        async fn release_batch(&self, ids: &[String]) -> Result<Vec<ReleaseOutcome>, RepoError> {
            self.note(Op::Release);
            Ok(ids
                .iter()
                .map(|c| ReleaseOutcome {
                    container_id: c.clone(),
                    released: None,
                })
                .collect())
        }
        async fn find_reservations(
            &self,
            ids: &[String],
        ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
            self.note(Op::Find);
            Ok(vec![None; ids.len()])
        }
        async fn list_reservations(&self, _: &str) -> Result<Vec<ReservationRecord>, RepoError> {
            self.note(Op::ListReservations);
            Ok(Vec::new())
        }
        async fn audit_worker(&self, id: &str, _: AuditMode) -> Result<AuditReport, RepoError> {
            self.note(Op::Audit);
            let t = Resources::cpu_mem(10, 10);
            Ok(AuditReport::new(id, t, t, Resources::ZERO, 0, 7))
        }
    }

    fn part(w: &str, c: &str) -> CapacityReservation {
        CapacityReservation::new(
            w,
            vec![ResourceReservation::new(c, Resources::cpu_mem(1, 1))],
        )
    }

    fn ids(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| (*s).to_owned()).collect()
    }

    fn repo() -> Faulty<Fake> {
        Faulty::new(Fake::default())
    }

    #[tokio::test]
    async fn push_targets_the_next_batches_in_order_and_reads_do_not_consume() {
        let r = repo();
        r.faults().push(Fault::Fail, 1);
        r.faults().push(Fault::LoseReply, 1);
        assert_eq!(r.faults().pending(), 2);
        r.get_worker("w1").await.unwrap();
        r.list_workers(None).await.unwrap();
        r.find_reservation("c").await.unwrap();
        r.audit("w1").await.unwrap();
        assert_eq!(
            r.faults().pending(),
            2,
            "reads do not consume pushed faults"
        );
        let e = r
            .reserve_batch(&[part("w1", "c")], CommitMode::AllOrNothing)
            .await
            .unwrap_err();
        assert!(matches!(e, RepoError::Unavailable(_)), "{e:?}");
        assert!(
            !r.get_ref().applied().contains(&Op::Reserve),
            "Fail applies nothing"
        );
        let e = r.release_batch(&ids(&["c"])).await.unwrap_err();
        assert!(e.is_ambiguous(), "{e:?}");
        assert!(
            r.get_ref().applied().contains(&Op::Release),
            "LoseReply applies"
        );
        assert_eq!((r.faults().pending(), r.faults().fired()), (0, 2));
        r.release_batch(&ids(&["c"])).await.unwrap();
        assert_eq!(r.faults().fired(), 2);
    }

    #[tokio::test]
    async fn conflict_rejects_every_part_without_applying_and_fails_a_release() {
        let r = repo();
        r.faults().push(Fault::Conflict, 2);
        let batch = [
            part("w1", "a"),
            part("w2", "b").expecting(3),
            part("ghost", "g"),
        ];
        let out = r.reserve_batch(&batch, CommitMode::Partial).await.unwrap();
        assert_eq!(
            out.iter().map(|o| o.outcome.clone()).collect::<Vec<_>>(),
            [
                Err(crate::rules::version_conflict(0, 7)),
                Err(crate::rules::version_conflict(3, 7)),
                Err(crate::Rejection::UnknownWorker),
            ]
        );
        assert_eq!(r.get_ref().applied(), [Op::ListWorkers], "nothing applied");
        let e = r.release_batch(&ids(&["a"])).await.unwrap_err();
        assert!(matches!(e, RepoError::Unavailable(_)), "{e:?}");
        assert!(!r.get_ref().applied().contains(&Op::Release));
    }

    #[tokio::test]
    async fn predicates_select_calls_by_their_arguments() {
        let r = repo();
        r.faults().on(
            Select::when(|c| c.op() == Op::Reserve && c.touches_worker("w2")),
            Fault::Fail,
            usize::MAX,
        );
        r.faults().on(
            Select::when(|c| c.touches_container("x")),
            Fault::LoseReply,
            1,
        );
        for _ in 0..3 {
            r.reserve_batch(&[part("w1", "a")], CommitMode::AllOrNothing)
                .await
                .unwrap();
            assert!(r
                .reserve_batch(&[part("w1", "b"), part("w2", "c")], CommitMode::Partial)
                .await
                .is_err());
        }
        assert_eq!(r.faults().fired(), 3);
        // Lookups and releases of container x: the first such call loses its reply.
        r.find_reservation("y").await.unwrap();
        assert!(r
            .release_batch(&ids(&["y", "x"]))
            .await
            .unwrap_err()
            .is_ambiguous());
        r.find_reservation("x").await.unwrap();
        assert_eq!(r.faults().fired(), 4);
    }

    #[tokio::test]
    async fn nth_selects_one_call_counted_from_now_even_through_the_conveniences() {
        let r = repo();
        r.find_reservation("a").await.unwrap();
        assert_eq!(r.faults().calls(Op::Find), 1);
        r.faults().on(Select::nth(Op::Find, 3), Fault::Fail, 1);
        r.find_reservation("a").await.unwrap();
        r.find_reservations(&ids(&["a", "b"])).await.unwrap();
        r.get_worker("w1").await.unwrap();
        assert!(matches!(
            r.find_reservation("a").await,
            Err(RepoError::Unavailable(_))
        ));
        r.find_reservation("a").await.unwrap();
        assert_eq!((r.faults().fired(), r.faults().pending()), (1, 0));
        // An nth rule whose call is taken by an earlier rule is dropped, not kept forever.
        r.faults().on(Op::Find, Fault::LoseReply, 1);
        r.faults().on(Select::nth(Op::Find, 1), Fault::Fail, 1);
        assert!(r.find_reservation("a").await.unwrap_err().is_ambiguous());
        assert_eq!(r.faults().pending(), 0);
        r.faults()
            .on(Select::nth(Op::Find, 0), Fault::Delay(Duration::ZERO), 5);
        assert_eq!(r.faults().pending(), 1, "an nth rule fires at most once");
        r.find_reservation("a").await.unwrap();
        assert_eq!((r.faults().fired(), r.faults().pending()), (3, 0));
    }

    #[tokio::test]
    async fn faults_reach_every_method() {
        let r = repo();
        r.faults().on(Select::any(), Fault::Fail, 14);
        let spec = WorkerSpec::new("w1", Resources::cpu_mem(1, 1));
        assert!(r.register_worker(&spec).await.is_err());
        assert!(r.remove_worker("w1").await.is_err());
        assert!(r.get_worker("w1").await.is_err());
        assert!(r.list_workers(Some("p")).await.is_err());
        assert!(r
            .reserve_batch(&[part("w1", "a")], CommitMode::Partial)
            .await
            .is_err());
        assert!(r.release_batch(&ids(&["a"])).await.is_err());
        assert!(r.find_reservation("a").await.is_err());
        assert!(r.list_reservations("w1").await.is_err());
        assert!(r.reconcile("w1").await.is_err());
        assert!(r.renew_leases("w1", &ids(&["a"]), 10).await.is_err());
        assert!(r.expire_leases("w1").await.is_err());
        assert!(r.heartbeat("w1").await.is_err());
        assert!(r
            .set_worker_status("w1", crate::WorkerStatus::Draining)
            .await
            .is_err());
        assert!(r.release_worker("w1").await.is_err());
        assert!(r.get_ref().applied().is_empty());
        assert_eq!(r.faults().fired(), 14);
        for op in Op::ALL {
            assert_eq!(r.faults().calls(op), 1, "{op}");
        }
        r.faults().on(Op::Register, Fault::LoseReply, 1);
        assert!(r.register_worker(&spec).await.unwrap_err().is_ambiguous());
        assert_eq!(r.get_ref().applied(), [Op::Register]);
    }

    #[tokio::test]
    async fn bad_input_is_refused_before_any_fault_or_latency() {
        let r = repo();
        r.faults().push(Fault::Fail, 1);
        r.faults().set_latency(Duration::from_secs(3600));
        let e = r
            .reserve_batch(
                &[CapacityReservation::new("w1", vec![])],
                CommitMode::Partial,
            )
            .await
            .unwrap_err();
        assert!(matches!(e, RepoError::InvalidInput(_)), "{e:?}");
        assert!(matches!(
            r.find_reservation("").await,
            Err(RepoError::InvalidInput(_))
        ));
        assert_eq!(
            (r.faults().pending(), r.faults().calls(Op::Reserve)),
            (1, 0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn latency_and_delays_apply_to_every_call() {
        let r = repo();
        let ms = Duration::from_millis;
        r.faults().set_latency_split(ms(10), ms(30));
        assert_eq!(r.faults().latency(), (ms(10), ms(30)));
        let t = Instant::now();
        r.find_reservation("a").await.unwrap();
        assert_eq!(t.elapsed(), ms(40));
        let reached = r.get_ref().applied.lock().unwrap()[0].1;
        assert_eq!(
            reached - t,
            ms(10),
            "the call reaches the store after `before`"
        );
        // A failed call costs its latency too.
        r.faults().on(Op::Release, Fault::Fail, 1);
        let t = Instant::now();
        assert!(r.release_batch(&ids(&["a"])).await.is_err());
        assert_eq!(t.elapsed(), ms(40));
        r.faults().set_latency(ms(5));
        assert_eq!(r.faults().latency(), (ms(5), Duration::ZERO));
        r.faults().on(
            Select::nth(Op::ListReservations, 2),
            Fault::Delay(ms(100)),
            1,
        );
        let t = Instant::now();
        r.list_reservations("w1").await.unwrap();
        r.list_reservations("w1").await.unwrap();
        assert_eq!(t.elapsed(), ms(110));
        r.faults().push(Fault::Fail, 3);
        r.faults().clear();
        assert_eq!(r.faults().pending(), 0);
        let t = Instant::now();
        r.audit("w1").await.unwrap();
        assert_eq!(t.elapsed(), Duration::ZERO, "clear removes latency");
    }
}
