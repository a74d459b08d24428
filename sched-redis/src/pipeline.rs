//! Every request goes through here: one counted round trip per pipeline, `NOSCRIPT` handled in
//! one place, `NOPERM` made `Unauthorized`, reads retried on a transient failure.

use crate::client::{is_noperm, noperm_error, Op, Reply};
use crate::codec::{bad, decode_owned};
use crate::RedisRepository;
use redis::FromRedisValue;
use sched_core::RepoError;
use std::time::Duration;

impl RedisRepository {
    /// One pipeline, one counted round trip; exactly one reply per op.
    pub(crate) async fn round_trip(
        &self,
        ops: &[Op],
        write: bool,
    ) -> Result<Vec<Reply>, RepoError> {
        self.counters.round_trips(self.name, 1);
        #[cfg(feature = "testing")]
        let replies = match self.faulty(ops, write).await {
            Some(r) => r?,
            None => self.client.pipeline(ops, write).await?,
        };
        #[cfg(not(feature = "testing"))]
        let replies = self.client.pipeline(ops, write).await?;
        if replies.len() != ops.len() {
            return Err(bad(format!(
                "{} commands, {} replies",
                ops.len(),
                replies.len()
            )));
        }
        // A command the ACL user may not run was refused before it ran (ARCHITECTURE.md, "The
        // pipeline"): the call fails as `Unauthorized`, not transient.
        let mut errors = replies.iter().filter_map(|r| r.as_ref().err());
        if let Some(e) = errors.find(|e| is_noperm(e)) {
            return Err(noperm_error(&self.config, e));
        }
        Ok(replies)
    }

    /// Sends `ops` in one pipeline and returns one reply per op, in order; `NOSCRIPT` scripts
    /// are sent again as `EVAL`, failed reads are retried (ARCHITECTURE.md, "The pipeline").
    pub(crate) async fn run(&self, ops: Vec<Op>, write: bool) -> Result<Vec<Reply>, RepoError> {
        if ops.is_empty() {
            return Ok(Vec::new()); // nothing to send: no round trip
        }
        let mut replies = self.round_trip(&ops, write).await;
        for delay_ms in [5, 20, 80, 320] {
            match &replies {
                Err(e) if !write && e.is_transient() => {
                    tracing::debug!(error = %e, delay_ms, "read failed; retrying");
                }
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            replies = self.round_trip(&ops, false).await;
        }
        let mut replies = replies?;
        let noscript = |r: &Reply| r.as_ref().is_err_and(|e| e.starts_with("NOSCRIPT"));
        let missing: Vec<usize> = (0..ops.len()).filter(|&i| noscript(&replies[i])).collect();
        if !missing.is_empty() {
            tracing::debug!(
                n = missing.len(),
                "NOSCRIPT: sending those scripts again as EVAL"
            );
            let eval = |&i: &usize| Op {
                name: "EVAL",
                ..ops[i].clone()
            };
            let retry: Vec<Op> = missing.iter().map(eval).collect();
            for (i, r) in missing
                .into_iter()
                .zip(self.round_trip(&retry, write).await?)
            {
                replies[i] = r;
            }
        }
        Ok(replies)
    }

    /// [`run`](Self::run), every reply decoded as `T`.
    pub(crate) async fn run_as<T: FromRedisValue>(
        &self,
        ops: Vec<Op>,
        write: bool,
    ) -> Result<Vec<T>, RepoError> {
        let replies = self.run(ops, write).await?;
        replies.into_iter().map(decode_owned).collect()
    }

    /// [`run`](Self::run) of one op, its reply decoded as `T`.
    pub(crate) async fn run_one<T: FromRedisValue>(&self, op: Op, w: bool) -> Result<T, RepoError> {
        let mut replies = self.run_as(vec![op], w).await?;
        replies.pop().ok_or_else(|| bad("no reply"))
    }
}
