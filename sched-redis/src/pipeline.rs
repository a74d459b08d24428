//! Every request goes through here: one counted round trip per pipeline, `NOSCRIPT` handled
//! once, reads retried on a transient failure.

use crate::client::{Op, Val};
use crate::codec::{self, bad};
use crate::RedisRepository;
use sched_core::RepoError;
use std::time::Duration;

impl RedisRepository {
    /// One pipeline, one counted round trip; exactly one reply per op.
    pub(crate) async fn round_trip(&self, ops: &[Op], write: bool) -> Result<Vec<Val>, RepoError> {
        self.counters.round_trips(self.client.name(), 1);
        let replies = self
            .client
            .pipeline(ops)
            .await
            .map_err(|e| e.into_repo(write))?;
        if replies.len() != ops.len() {
            let (n, m) = (ops.len(), replies.len());
            return Err(bad(format!("pipeline of {n} commands got {m} replies")));
        }
        Ok(replies)
    }

    /// Sends `ops` in one pipeline (one round trip) and returns one reply per op, in order;
    /// server errors stay per-op values ([`codec::ok`] turns one into an error).
    ///
    /// * `NOSCRIPT` (after `SCRIPT FLUSH`, a restart or a failover): the `EVALSHA`s the server
    ///   did not know did not run, so they are sent again, once, as `EVAL` (which caches the
    ///   script on the node that runs it) in a second round trip.
    /// * A read (`write == false`) that failed on a broken or reconnecting connection changed
    ///   nothing: it is retried a few times instead of spending the caller's attempts.
    pub(crate) async fn run(&self, ops: Vec<Op>, write: bool) -> Result<Vec<Val>, RepoError> {
        let mut replies = match self.round_trip(&ops, write).await {
            Err(e) if !write && e.is_transient() => self.retry_read(&ops, e).await?,
            r => r?,
        };
        let noscript = |v: &Val| matches!(v, Val::Err(e) if e.starts_with("NOSCRIPT"));
        let missing: Vec<usize> = (0..ops.len()).filter(|&i| noscript(&replies[i])).collect();
        if !missing.is_empty() {
            tracing::debug!(
                n = missing.len(),
                "NOSCRIPT: sending those scripts again as EVAL"
            );
            let retry: Vec<Op> = missing.iter().map(|&i| ops[i].as_eval()).collect();
            for (i, v) in missing
                .into_iter()
                .zip(self.round_trip(&retry, write).await?)
            {
                replies[i] = v;
            }
        }
        Ok(replies)
    }

    /// [`run`](Self::run) of one op; a server error reply becomes [`RepoError::Backend`].
    pub(crate) async fn run_one(&self, op: Op, write: bool) -> Result<Val, RepoError> {
        let reply = self.run(vec![op], write).await?.pop();
        codec::ok(reply.ok_or_else(|| bad("no reply"))?)
    }

    async fn retry_read(&self, ops: &[Op], first: RepoError) -> Result<Vec<Val>, RepoError> {
        let mut last = first;
        for delay_ms in [5u64, 20, 80, 320] {
            tracing::debug!(error = %last, delay_ms, "read failed; retrying");
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            match self.round_trip(ops, false).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}
