//! Deterministic fault injection in the pipeline (feature `testing`; compiled out otherwise).
//!
//! A test arms a [`Fault`] with [`RedisRepository::inject`]; the next round trip that carries a
//! matching op (a script by file name, or a command by name, optionally on one worker's or one
//! container's key) suffers it, after `skip` matching round trips went through untouched.

use crate::client::{Op, Reply};
use crate::RedisRepository;
use sched_core::RepoError;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// What happens to the round trip.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Not sent at all: `Unavailable`, nothing applied.
    Refuse,
    /// Sent and applied, the reply lost: `Ambiguous`.
    LoseReply,
    /// Sent twice (a client re-send after a dropped reply); the second copy's replies count.
    SendTwice,
    /// The matching ops are not sent and answer a plain server error (`ERR injected`, as an OOM
    /// or BUSY node would); the rest of the pipeline goes out normally.
    ErrorReply,
    /// Before sending: signals `reached`, then waits for `resume` (a delayed request).
    Stall {
        /// Notified when the round trip is held.
        reached: Arc<Notify>,
        /// The round trip goes out once this is notified.
        resume: Arc<Notify>,
    },
}

/// Which ops a fault is aimed at.
#[derive(Clone, Debug)]
pub struct Target {
    /// A script's file name without `.lua` (`reserve`, `claim`, `fence`, `unclaim`, `release`,
    /// `remove`, ...) or a command name (`GET`, `HGET`, ...).
    pub op: &'static str,
    /// Only ops on this worker's keys (`Some(("w", id))`) or this container's index key
    /// (`Some(("c", id))`).
    pub on: Option<(&'static str, String)>,
    /// Matching round trips to let through first.
    pub skip: u32,
}

impl Target {
    /// Every op of that script or command.
    pub fn op(op: &'static str) -> Self {
        Target {
            op,
            on: None,
            skip: 0,
        }
    }

    /// Only ops on worker `id`'s keys.
    pub fn worker(mut self, id: &str) -> Self {
        self.on = Some(("w", id.to_owned()));
        self
    }

    /// Only ops on container `id`'s index key.
    pub fn container(mut self, id: &str) -> Self {
        self.on = Some(("c", id.to_owned()));
        self
    }

    /// Lets the first `n` matching round trips through.
    pub fn skip(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }
}

/// The armed faults of one repository (shared by its clones).
#[derive(Default)]
pub(crate) struct Faults(Mutex<Vec<(Target, Fault)>>);

impl RedisRepository {
    /// Arms `fault` for the next round trip carrying an op that matches `target`.
    pub fn inject(&self, target: Target, fault: Fault) {
        let mut f = self
            .faults
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f.push((target, fault));
    }

    fn matches(&self, t: &Target, op: &Op) -> bool {
        let name = op.script.map_or(op.name, |s| s.name);
        let key = match &t.on {
            None => return name.eq_ignore_ascii_case(t.op),
            Some(("w", id)) => self.keys.state(id),
            Some((_, id)) => self.keys.index(id),
        };
        name.eq_ignore_ascii_case(t.op) && op.args.iter().any(|a| a == key.as_bytes())
    }

    /// The fault armed for this round trip, if any (consumed).
    fn take_fault(&self, ops: &[Op]) -> Option<(Target, Fault)> {
        let mut armed = self
            .faults
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let i = armed
            .iter_mut()
            .position(|(t, _)| ops.iter().any(|op| self.matches(t, op)))?;
        if armed[i].0.skip > 0 {
            armed[i].0.skip -= 1;
            return None;
        }
        Some(armed.remove(i))
    }

    /// A round trip with the armed fault applied, or `None` when no fault matches.
    pub(crate) async fn faulty(
        &self,
        ops: &[Op],
        write: bool,
    ) -> Option<Result<Vec<Reply>, RepoError>> {
        let (target, fault) = self.take_fault(ops)?;
        tracing::debug!(?target, ?fault, "injecting a fault");
        Some(match fault {
            Fault::Refuse => Err(RepoError::Unavailable("injected: not sent".into())),
            Fault::LoseReply => match self.client.pipeline(ops, write).await {
                Ok(_) => Err(RepoError::Ambiguous("injected: reply lost".into())),
                Err(e) => Err(e),
            },
            Fault::SendTwice => match self.client.pipeline(ops, write).await {
                Ok(_) => self.client.pipeline(ops, write).await,
                Err(e) => Err(e),
            },
            Fault::ErrorReply => {
                let hit: Vec<bool> = ops.iter().map(|op| self.matches(&target, op)).collect();
                let rest: Vec<Op> = (ops.iter().zip(&hit))
                    .filter(|(_, h)| !**h)
                    .map(|(op, _)| op.clone())
                    .collect();
                let mut replies = match self.client.pipeline(&rest, write).await {
                    Ok(r) => r.into_iter(),
                    Err(e) => return Some(Err(e)),
                };
                let err = || Err("ERR injected".to_owned());
                Ok(hit
                    .iter()
                    .map(|h| {
                        if *h {
                            err()
                        } else {
                            replies.next().unwrap_or_else(err)
                        }
                    })
                    .collect())
            }
            Fault::Stall { reached, resume } => {
                reached.notify_one();
                resume.notified().await;
                self.client.pipeline(ops, write).await
            }
        })
    }
}
