//! The small interface over the two Redis clients (redis-rs and fred): one pipelined round trip
//! of plain commands. The key layout, the scripts and all semantics live above it, written once.

use crate::scripts::Script;
use async_trait::async_trait;
use sched_core::{BoxError, RepoError};

/// One command of a pipeline: `name [script] args...`.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    /// `EVALSHA`, `EVAL`, `GET`, ...
    pub(crate) name: &'static str,
    /// The script of an `EVALSHA` (sent as its SHA1) or `EVAL` (sent as its body).
    pub(crate) script: Option<&'static Script>,
    /// The arguments after the script (`numkeys keys... argv...`); otherwise the key first.
    pub(crate) args: Vec<String>,
}

impl Op {
    /// `name args...`; the first argument, if any, is the key.
    pub(crate) fn cmd(name: &'static str, args: Vec<String>) -> Self {
        let script = None;
        Op { name, script, args }
    }

    /// `EVALSHA sha numkeys keys... argv...`.
    pub(crate) fn script(script: &'static Script, keys: Vec<String>, argv: Vec<String>) -> Self {
        let mut args = Vec::with_capacity(1 + keys.len() + argv.len());
        args.push(keys.len().to_string());
        args.extend(keys);
        args.extend(argv);
        let (name, script) = ("EVALSHA", Some(script));
        Op { name, script, args }
    }

    /// The same script as `EVAL`: runs it without the script cache and caches it on the node
    /// that runs it (the `NOSCRIPT` fallback; on a cluster `SCRIPT LOAD` would reach one node).
    pub(crate) fn as_eval(&self) -> Self {
        let mut op = self.clone();
        if op.script.is_some() {
            op.name = "EVAL";
        }
        op
    }

    /// Everything after the command name, as sent.
    pub(crate) fn wire_args(&self) -> impl Iterator<Item = &str> {
        let head = match self.script {
            Some(s) if self.name == "EVAL" => Some(s.body),
            Some(s) => Some(s.sha.as_str()),
            None => None,
        };
        head.into_iter().chain(self.args.iter().map(String::as_str))
    }

    /// The key a cluster routes this command by (a script's first key; none: any node).
    #[cfg(feature = "fred")]
    pub(crate) fn route_key(&self) -> Option<&str> {
        match self.script {
            Some(_) if self.args.first().is_some_and(|n| n == "0") => None,
            Some(_) => self.args.get(1).map(String::as_str),
            None => self.args.first().map(String::as_str),
        }
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

    /// Every key matching `pattern`, on every node (`SCAN`, or `KEYS` on a cluster).
    #[cfg(feature = "testing")]
    async fn keys_matching(&self, pattern: &str) -> Result<Vec<String>, ClientError>;

    /// True when connected to a Redis Cluster.
    fn is_cluster(&self) -> bool;

    /// Name for `backend_name` and the counters.
    fn name(&self) -> &'static str;
}
