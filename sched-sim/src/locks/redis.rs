//! [`RedisLocks`]: per-worker locks on Redis (`SET NX PX`, released by a compare-and-delete
//! script), on the simulator's own redis-rs connection.
//!
//! Both Redis backends of the simulator (`redis`, through redis-rs, and `redis-fred`, through
//! fred) use these locks: the lock traffic goes through redis-rs either way, while the
//! repository calls go through the backend's own client. The lock of worker `W` under key
//! prefix `P` is the key `{P:w:W}:lock` (in the worker's hash tag, like its other keys), so
//! `RedisRepository::delete_all_keys` removes leftover locks with the rest of the prefix.

use super::{LockToken, WorkerLocks};
use crate::tls::TlsFiles;
use crate::SimError;
use async_trait::async_trait;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, IntoConnectionInfo, RedisError, ServerErrorKind};
use sched_core::validate::validate_id;
use sched_core::{BackendCounters, RepoError};
use sched_redis::RedisConfig;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// Compare-and-delete: `KEYS[1]` the lock, `ARGV[1]` the holder's token. Returns 1 when it
/// deleted the lock, 0 when the lock expired or belongs to someone else.
const COMPARE_AND_DELETE: &str = "\
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// SHA1 of [`COMPARE_AND_DELETE`], for `EVALSHA`.
static CAD_SHA: LazyLock<String> =
    LazyLock::new(|| redis::Script::new(COMPARE_AND_DELETE).get_hash().to_owned());

/// The bytes sched-redis leaves unencoded in its key names: `[A-Za-z0-9._-]`.
const ID: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// Percent-encodes an id as sched-redis does in its key names.
fn encode(id: &str) -> String {
    utf8_percent_encode(id, ID).to_string()
}

/// `{P:w:W}:lock` for the encoded prefix `P` and worker `W`: in the worker's hash tag, like
/// sched-redis's keys of that worker.
fn lock_key(encoded_prefix: &str, worker_id: &str) -> String {
    format!("{{{encoded_prefix}:w:{}}}:lock", encode(worker_id))
}

/// Per-worker locks on a standalone Redis, for the lock-based baselines.
///
/// A lock is `SET {P:w:W}:lock <random token> NX PX <ttl>`, so Redis expires it after the TTL;
/// [`unlock`](WorkerLocks::unlock) deletes it only if it still holds the caller's token. Each
/// call is one round trip (two when the server lost the script and it is loaded again), counted
/// in the repository's counters.
#[derive(Clone)]
pub struct RedisLocks {
    conn: ConnectionManager,
    prefix: String,
    counters: Arc<BackendCounters>,
    backend: String,
}

impl fmt::Debug for RedisLocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLocks")
            .field("prefix", &self.prefix)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// What a failed request means for the caller. Lock calls write, so a reply lost after the
/// request went out is ambiguous (the lock may be taken or released).
fn classify(e: RedisError) -> RepoError {
    if e.is_connection_refusal() {
        RepoError::Unavailable(Box::new(e))
    } else if e.is_timeout() || e.is_connection_dropped() || e.is_io_error() {
        RepoError::Ambiguous(Box::new(e))
    } else {
        RepoError::Backend(Box::new(e))
    }
}

impl RedisLocks {
    /// Connects to the server of `config` (standalone only) with its credentials and timeouts,
    /// for the key prefix of `config`, over TLS with the files of `tls` (a `rediss://` URL;
    /// `config.tls` is not read: pass the same files the repository got). Round trips are
    /// counted in `counters` under `backend` (pass the repository's counters and name).
    pub async fn connect(
        config: &RedisConfig,
        tls: &TlsFiles,
        counters: Arc<BackendCounters>,
        backend: &str,
    ) -> Result<Self, RepoError> {
        if config.cluster {
            return Err(RepoError::Backend(
                "the simulator's Redis locks support a standalone server only".into(),
            ));
        }
        let unavailable = |e: RedisError| RepoError::Unavailable(Box::new(e));
        let url = config.urls.first().map(String::as_str).unwrap_or_default();
        let mut info = url.into_connection_info().map_err(unavailable)?;
        let mut settings = info.redis_settings().clone();
        if let Some(u) = &config.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &config.password {
            settings = settings.set_password(p);
        }
        info = info.set_redis_settings(settings);
        // A bad TLS file is a configuration problem, not the server being out of reach.
        let client = tls.redis_client(info).map_err(|e| match e {
            SimError::Tls { .. } | SimError::Config(_) => RepoError::Misconfigured {
                endpoint: config.endpoint(),
                reason: e.to_string(),
            },
            e => RepoError::Unavailable(e.to_string().into()),
        })?;
        let mcfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_number_of_retries(config.reconnect_retries);
        let conn = ConnectionManager::new_with_config(client, mcfg)
            .await
            .map_err(unavailable)?;
        Ok(RedisLocks {
            conn,
            prefix: encode(&config.key_prefix),
            counters,
            backend: backend.to_owned(),
        })
    }

    /// The lock key of `worker_id`.
    fn key(&self, worker_id: &str) -> String {
        lock_key(&self.prefix, worker_id)
    }

    fn round_trip(&self) {
        self.counters.round_trips(&self.backend, 1);
    }
}

#[async_trait]
impl WorkerLocks for RedisLocks {
    async fn try_lock(
        &self,
        worker_id: &str,
        ttl: Duration,
    ) -> Result<Option<LockToken>, RepoError> {
        validate_id("worker", worker_id)?;
        let token = format!("{:032x}", rand::random::<u128>());
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.round_trip();
        let reply: Option<String> = redis::cmd("SET")
            .arg(self.key(worker_id))
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(classify)?;
        Ok(reply.map(|_| LockToken {
            worker_id: worker_id.to_owned(),
            token,
        }))
    }

    async fn unlock(&self, token: LockToken) -> Result<(), RepoError> {
        validate_id("worker", &token.worker_id)?;
        let key = self.key(&token.worker_id);
        let mut conn = self.conn.clone();
        self.round_trip();
        let first: Result<i64, RedisError> = redis::cmd("EVALSHA")
            .arg(CAD_SHA.as_str())
            .arg(1)
            .arg(&key)
            .arg(&token.token)
            .query_async(&mut conn)
            .await;
        match first {
            Ok(_) => Ok(()),
            // The server does not know the script (first use, SCRIPT FLUSH, failover): an
            // EVALSHA answered with NOSCRIPT did not run, so load it and run it again.
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.round_trip();
                let _: (i64,) = redis::pipe()
                    .cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(COMPARE_AND_DELETE)
                    .ignore()
                    .cmd("EVALSHA")
                    .arg(CAD_SHA.as_str())
                    .arg(1)
                    .arg(&key)
                    .arg(&token.token)
                    .query_async(&mut conn)
                    .await
                    .map_err(classify)?;
                Ok(())
            }
            Err(e) => Err(classify(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_sched_redis_layout() {
        assert_eq!(encode("worker-1_a.b"), "worker-1_a.b");
        assert_eq!(encode("{w}:1 %'\"é"), "%7Bw%7D%3A1%20%25%27%22%C3%A9");
        // The same hash tag as sched-redis's `{p%7Bx%7D:w:%7Ba%7D}:state` of that worker.
        assert_eq!(
            lock_key(&encode("p{x}"), "{a}"),
            "{p%7Bx%7D:w:%7Ba%7D}:lock"
        );
    }
}
