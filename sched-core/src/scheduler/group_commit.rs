//! Group commit: concurrent callers queue their item; whoever gets the commit turn takes the
//! whole queue as one batch and runs it in its own task, which answers every caller through its
//! oneshot channel.
//!
//! A caller is registered when its item is queued ([`GroupCommit::enqueue`]), which happens
//! when the call is made, before its future is first polled: callers created together (a burst
//! of tasks, each with its call) are all in the queue before any of them takes the commit turn,
//! so they form one commit whatever order the runtime polls them in. [`GroupCommit::wait`] then
//! waits for the answer, taking the commit turn when it comes.
//!
//! The caller's [`Ticket`] (its receiver) is its drop guard: a caller that is cancelled (its
//! future dropped, a timeout) closes it, so the batch sees `is_closed()` and can skip the item,
//! and a send that fails tells the batch nobody received the answer.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{oneshot, Mutex as AsyncMutex};

/// Yields before a zero-window batch closes, at the least.
const MIN_YIELDS: usize = 4;
/// Yields in a row that found no new caller, after which the batch closes.
const QUIET_YIELDS: usize = 16;
/// Yields before a zero-window batch closes, at the most (callers still arriving then wait for
/// the next batch).
const MAX_YIELDS: usize = 512;

/// One queued item and the channel its answer goes to.
pub(super) type Queued<T, A> = (T, oneshot::Sender<A>);

/// A queued item's claim on its answer (see [`GroupCommit::enqueue`]).
pub(super) struct Ticket<A>(oneshot::Receiver<A>);

/// A queue of items waiting for the commit turn, each with the channel its answer goes to.
pub(super) struct GroupCommit<T, A> {
    queue: Mutex<Vec<Queued<T, A>>>,
    turn: AsyncMutex<()>,
}

impl<T: Send + 'static, A: Send + 'static> GroupCommit<T, A> {
    /// An empty queue.
    pub(super) fn new() -> Self {
        GroupCommit {
            queue: Mutex::new(Vec::new()),
            turn: AsyncMutex::new(()),
        }
    }

    fn queued(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Yields to runnable tasks while the queue keeps growing: at least [`MIN_YIELDS`] times,
    /// then until [`QUIET_YIELDS`] yields in a row added nothing while the runtime's global
    /// queue was empty, at most [`MAX_YIELDS`]. Callers that arrive together (a burst of tasks
    /// woken at once) join one batch; a lone caller pays a few yields (well under a microsecond
    /// each), never a timer.
    async fn gather(&self) {
        let metrics = tokio::runtime::Handle::try_current()
            .ok()
            .map(|h| h.metrics());
        let mut seen = self.queued();
        let mut quiet = 0;
        for k in 0..MAX_YIELDS {
            tokio::task::yield_now().await;
            let now = self.queued();
            let waiting = metrics.as_ref().is_some_and(|m| m.global_queue_depth() > 0);
            if now > seen || waiting {
                seen = now;
                quiet = 0;
            } else {
                quiet += 1;
            }
            if k + 1 >= MIN_YIELDS && quiet >= QUIET_YIELDS {
                break;
            }
        }
    }

    fn take_queue(&self) -> Vec<Queued<T, A>> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Queues `item` now (the caller is registered: the next batch to close carries it) and
    /// returns the ticket to [`wait`](Self::wait) on. Dropping the ticket withdraws the item if
    /// its batch has not started.
    pub(super) fn enqueue(&self, item: T) -> Ticket<A> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((item, tx));
        Ticket(rx)
    }

    /// Waits for the answer to a queued item. While one batch commits, later callers queue;
    /// the next caller to get the commit turn waits `window` (zero: yields to runnable tasks
    /// while the queue keeps growing, see [`Self::gather`]), takes the whole queue and `run`s
    /// it as one batch in a spawned task. `run` must answer every item whose caller is still
    /// there through its sender (and may skip items whose sender `is_closed()`). `None` when the
    /// batch carrying the item ended without answering.
    pub(super) async fn wait<F, Fut>(
        &self,
        ticket: Ticket<A>,
        window: Duration,
        run: F,
    ) -> Option<A>
    where
        F: Fn(Vec<Queued<T, A>>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Ticket(mut rx) = ticket;
        loop {
            // Either our answer arrives (someone else's batch carried it), or we get the commit
            // turn. Waiting on both means finished callers never queue on the lock just to
            // collect their answer.
            let turn = tokio::select! {
                biased;
                r = &mut rx => return r.ok(),
                turn = self.turn.lock() => turn,
            };
            match rx.try_recv() {
                Ok(r) => return Some(r),
                Err(oneshot::error::TryRecvError::Closed) => return None,
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            // Let callers that are already running join this batch before we close it.
            if window.is_zero() {
                self.gather().await;
            } else {
                tokio::time::sleep(window).await;
            }
            let queued = self.take_queue();
            if queued.is_empty() {
                // Our item is inside a batch that another caller is committing; wait for it.
                drop(turn);
                return rx.await.ok();
            }
            metrics::histogram!("sched_group_commit_size").record(queued.len() as f64);
            // Run the batch in its own task so that cancelling this caller cannot strand the
            // other callers' items halfway through a commit.
            let task = tokio::spawn(run(queued));
            let _ = task.await;
            drop(turn);
        }
    }
}
