//! The small internal interface over the two Redis clients (redis-rs and fred). The key layout,
//! the Lua scripts and all semantics live above it, written once.

use crate::scripts::Script;
use async_trait::async_trait;
use sched_core::{BoxError, RepoError};

/// One command of a pipeline.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// `EVALSHA sha numkeys keys... args...`
    EvalSha {
        script: &'static Script,
        keys: Vec<String>,
        args: Vec<String>,
    },
    /// `EVAL body numkeys keys... args...` (NOSCRIPT fallback in cluster mode).
    Eval {
        script: &'static Script,
        keys: Vec<String>,
        args: Vec<String>,
    },
    /// `SCRIPT LOAD body` (standalone NOSCRIPT fallback).
    ScriptLoad(&'static Script),
    /// `GET key`
    Get(String),
    /// `HGET key field`
    HGet(String, String),
    /// `HGETALL key`
    HGetAll(String),
    /// `HKEYS key`
    HKeys(String),
    /// `SADD key member`
    SAdd(String, String),
    /// `SMEMBERS key`
    SMembers(String),
    /// `UNLINK key`
    Unlink(String),
    /// `PING`
    Ping,
}

impl Op {
    /// The EVALSHA of `script`.
    pub(crate) fn script(script: &'static Script, keys: Vec<String>, args: Vec<String>) -> Self {
        Op::EvalSha { script, keys, args }
    }
}

/// A reply, independent of the client library. Server errors are values, so one failed command
/// does not hide the replies of the others in its pipeline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Nil,
    Int(i64),
    Bytes(Vec<u8>),
    Array(Vec<Val>),
    /// An error reply for this one command (e.g. `NOSCRIPT ...`).
    Err(String),
}

impl Val {
    pub(crate) fn is_noscript(&self) -> bool {
        matches!(self, Val::Err(e) if e.starts_with("NOSCRIPT"))
    }
}

/// What went wrong with a whole request, classified for [`RepoError`].
#[derive(Debug)]
pub(crate) enum ClientError {
    /// Certainly not sent (connect failure, refused, not connected).
    NotSent(BoxError),
    /// Sent, but the reply was lost (timeout, dropped connection).
    Lost(BoxError),
    /// Anything else (protocol surprises, unexpected replies).
    Other(BoxError),
}

impl ClientError {
    /// Maps to [`RepoError`]: a lost reply to a write is ambiguous; to a read, just unavailable.
    pub(crate) fn into_repo(self, write: bool) -> RepoError {
        match self {
            ClientError::NotSent(e) => RepoError::Unavailable(e),
            ClientError::Lost(e) if write => RepoError::Ambiguous(e),
            ClientError::Lost(e) => RepoError::Unavailable(e),
            ClientError::Other(e) => RepoError::Backend(e),
        }
    }
}

/// One pipelined round trip to Redis.
#[async_trait]
pub(crate) trait Client: Send + Sync + 'static {
    /// Sends `ops` in one pipeline and returns one reply per op, in order.
    async fn pipeline(&self, ops: &[Op]) -> Result<Vec<Val>, ClientError>;

    /// Every key matching `pattern`, on every node (`SCAN`, or `KEYS` on a cluster). For
    /// tests and tear-down only.
    async fn keys_matching(&self, pattern: &str) -> Result<Vec<String>, ClientError>;

    /// True when connected to a Redis Cluster.
    fn is_cluster(&self) -> bool;

    /// Name for `backend_name` and the counters.
    fn name(&self) -> &'static str;
}
