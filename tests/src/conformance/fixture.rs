//! [`Fixture`]: a check's random namespace and the workers it registered, removed at the end.

use super::support::register;
use crate::ns::Ns;
use sched_core::{Resources, Worker, WorkerRepository, WorkerSpec};
use std::sync::Mutex;

/// One check's store and [`Ns`]: registers the check's workers and removes every one of them
/// when the check is done.
///
/// A check starts with [`Fixture::new`] (or [`Fixture::awkward`]), registers its workers through
/// [`worker`](Fixture::worker) or [`register`](Fixture::register), which remember every worker
/// id, and ends with `fx.finish().await`.
///
/// # Clean-up
///
/// `Drop` cannot await, and a check only borrows its store (`&dyn WorkerRepository`), so nothing
/// owning it can be spawned to outlive the check, and blocking on a removal inside `Drop` would
/// panic or hang on a current-thread runtime. So the clean-up is the explicit, awaited
/// [`finish`](Fixture::finish), and `Drop` is only a guard:
///
/// * [`finish`](Fixture::finish) removes every worker the fixture registered, in registration
///   order, and panics if a removal fails (as the manual clean-ups it replaces did). A worker
///   the check already removed itself is fine: `remove_worker` then answers `false`.
/// * Dropped without `finish` while the thread is panicking (a failed assertion, which unwinds
///   through the check), the fixture removes nothing and does not panic again, so the test
///   reports the first panic. The failed check's workers stay in its random namespace, where no
///   other check looks and (requiring a pool selector) no scheduler places anything.
/// * Dropped without `finish` otherwise (a check that forgot it or returned early, or a caller
///   that cancelled the check's future), the fixture panics naming its namespace, so leftovers
///   are a test failure instead of silent. A cancelled check is one that did not pass anyway;
///   tokio catches a panic raised while it drops a task (say, the sibling tasks of a failed
///   test at runtime shutdown), so there it only adds a message to a failing test's output.
///
/// Every passing check thus removes all of its workers, and nothing ever blocks.
#[must_use = "end the check with `fx.finish().await`, which removes its workers"]
pub(super) struct Fixture<'r> {
    repo: &'r dyn WorkerRepository,
    ns: Ns,
    /// Every worker id registered through the fixture, once each, in registration order.
    /// A `Mutex` (never held across an await) so that `register` takes `&self`: concurrent
    /// parts of one check can register, and check futures stay `Send`.
    workers: Mutex<Vec<String>>,
    finished: bool,
}

impl<'r> Fixture<'r> {
    /// A fixture in a plain namespace ([`Ns::new`]).
    pub(super) fn new(repo: &'r dyn WorkerRepository, tag: &str) -> Self {
        Self::with_ns(repo, Ns::new(tag))
    }

    /// A fixture whose namespace holds awkward characters ([`Ns::awkward`]).
    pub(super) fn awkward(repo: &'r dyn WorkerRepository, tag: &str) -> Self {
        Self::with_ns(repo, Ns::awkward(tag))
    }

    fn with_ns(repo: &'r dyn WorkerRepository, ns: Ns) -> Self {
        Fixture {
            repo,
            ns,
            workers: Mutex::new(Vec::new()),
            finished: false,
        }
    }

    /// The check's store.
    pub(super) fn repo(&self) -> &'r dyn WorkerRepository {
        self.repo
    }

    /// The check's namespace: derive every id from it.
    pub(super) fn ns(&self) -> &Ns {
        &self.ns
    }

    /// The spec of the usual worker: id `ns.worker(name)`, in pool `ns.pool("p")`, requiring a
    /// pool selector (so a scheduler running elsewhere on the store never places on it).
    pub(super) fn spec(&self, name: &str, total: Resources) -> WorkerSpec {
        WorkerSpec::new(self.ns.worker(name), total)
            .with_pool(self.ns.pool("p"))
            .requiring_pool_selector()
    }

    /// Registers [`spec`](Fixture::spec)`(name, total)`.
    pub(super) async fn worker(&self, name: &str, total: Resources) -> Worker {
        self.register(&self.spec(name, total)).await
    }

    /// Registers (or re-registers) `spec`, asserting it succeeds, and remembers its id for
    /// [`finish`](Fixture::finish).
    pub(super) async fn register(&self, spec: &WorkerSpec) -> Worker {
        {
            let mut ws = self.workers.lock().unwrap_or_else(|e| e.into_inner());
            if !ws.contains(&spec.id) {
                ws.push(spec.id.clone());
            }
        }
        register(self.repo, spec).await
    }

    /// Removes every worker registered through the fixture (tolerating ones already removed),
    /// panicking if a removal fails.
    pub(super) async fn finish(mut self) {
        self.finished = true;
        let ids = std::mem::take(self.workers.get_mut().unwrap_or_else(|e| e.into_inner()));
        for id in &ids {
            if let Err(e) = self.repo.remove_worker(id).await {
                panic!("cleanup: remove_worker({id:?}) failed: {e}");
            }
        }
    }
}

impl Drop for Fixture<'_> {
    fn drop(&mut self) {
        if self.finished || std::thread::panicking() {
            return;
        }
        let left = self.workers.get_mut().map_or(0, |ws| ws.len());
        panic!(
            "conformance fixture {:?} dropped without `finish().await` (a check that forgot it \
             or returned early, or a check cancelled mid-way): its {left} worker(s) are left in \
             the store",
            self.ns.prefix()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use sched_memory::MemoryRepository;
    use std::panic::AssertUnwindSafe;

    fn message(p: Box<dyn std::any::Any + Send>) -> String {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    }

    async fn ids(repo: &MemoryRepository) -> Vec<String> {
        let ws = repo.list_workers(None).await.unwrap();
        ws.into_iter().map(|w| w.id).collect()
    }

    #[tokio::test]
    async fn finish_removes_every_registered_worker_even_one_already_gone() {
        let repo = MemoryRepository::new();
        repo.register_worker(&WorkerSpec::new("bystander", Resources::cpu_mem(1, 1)))
            .await
            .unwrap();
        let fx = Fixture::new(&repo, "fx");
        let a = fx.worker("a", Resources::cpu_mem(1, 1)).await;
        assert_eq!(a.spec(), fx.spec("a", Resources::cpu_mem(1, 1)));
        fx.worker("b", Resources::cpu_mem(1, 1)).await;
        fx.worker("a", Resources::cpu_mem(2, 2)).await;
        assert_eq!(fx.workers.lock().unwrap().len(), 2, "remembered once each");
        assert!(repo.remove_worker(&fx.ns().worker("b")).await.unwrap());
        fx.finish().await;
        assert_eq!(ids(&repo).await, ["bystander"]);
    }

    #[tokio::test]
    async fn dropped_without_finish_it_panics() {
        let repo = MemoryRepository::new();
        let r = AssertUnwindSafe(async {
            let fx = Fixture::new(&repo, "fx");
            fx.worker("a", Resources::cpu_mem(1, 1)).await;
        })
        .catch_unwind()
        .await;
        let msg = message(r.expect_err("a fixture dropped without finish must panic"));
        assert!(msg.contains("without `finish().await`"), "{msg}");
    }

    #[tokio::test]
    async fn dropped_while_panicking_it_keeps_the_first_panic_and_removes_nothing() {
        let repo = MemoryRepository::new();
        let r = AssertUnwindSafe(async {
            let fx = Fixture::new(&repo, "fx");
            fx.worker("a", Resources::cpu_mem(1, 1)).await;
            panic!("the check failed");
        })
        .catch_unwind()
        .await;
        let msg = message(r.expect_err("the check panicked"));
        assert_eq!(msg, "the check failed");
        assert_eq!(ids(&repo).await.len(), 1, "a failed check's worker stays");
    }
}
