//! Every request goes through here: one counted round trip per pipeline, `NOSCRIPT` handled in
//! one place, reads retried on a transient failure.

use crate::client::{Op, Reply};
use crate::codec::{bad, decode};
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
        self.counters.round_trips(self.client.name(), 1);
        let replies = self.client.pipeline(ops, write).await?;
        if replies.len() != ops.len() {
            return Err(bad(format!(
                "{} commands, {} replies",
                ops.len(),
                replies.len()
            )));
        }
        Ok(replies)
    }

    /// Sends `ops` in one pipeline and returns one reply per op, in order.
    ///
    /// * `NOSCRIPT` (after `SCRIPT FLUSH`, a restart or a failover): an `EVALSHA` the server did
    ///   not know did not run, so those are sent again, once, as `EVAL` in a second round trip
    ///   (`EVAL` caches the script on the node that runs it; on a cluster `SCRIPT LOAD` would
    ///   reach one node only).
    /// * A read that failed on a broken or reconnecting connection changed nothing: it is
    ///   retried a few times instead of spending the caller's attempts.
    pub(crate) async fn run(&self, ops: Vec<Op>, write: bool) -> Result<Vec<Reply>, RepoError> {
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

    /// [`run`](Self::run) of one op, its reply decoded as `T`.
    pub(crate) async fn run_one<T: FromRedisValue>(&self, op: Op, w: bool) -> Result<T, RepoError> {
        let replies = self.run(vec![op], w).await?;
        decode(replies.first().ok_or_else(|| bad("no reply"))?)
    }
}
