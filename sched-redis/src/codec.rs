//! Encoding script arguments and decoding replies into sched types.

use crate::client::Reply;
use redis::{FromRedisValue, Value};
use sched_core::rules;
use sched_core::{
    Rejection, RepoError, ReservationRecord, ResourceKind, Resources, Worker, WorkerStatus,
};
use std::collections::HashMap;

/// An unexpected reply: [`RepoError::Backend`].
pub(crate) fn bad(what: impl Into<String>) -> RepoError {
    RepoError::Backend(what.into().into())
}

/// A value as `T` (redis-rs conversions: `Nil` is `None` or empty, numbers parse from strings).
pub(crate) fn get<T: FromRedisValue>(v: &Value) -> Result<T, RepoError> {
    redis::from_redis_value_ref(v).map_err(|e| bad(format!("unexpected reply: {e}")))
}

/// A reply as `T`; a server error reply is [`RepoError::Backend`].
pub(crate) fn decode<T: FromRedisValue>(reply: &Reply) -> Result<T, RepoError> {
    get(reply
        .as_ref()
        .map_err(|e| bad(format!("redis error: {e}")))?)
}

/// Positional access to a script's reply array.
pub(crate) trait Fields {
    fn field<T: FromRedisValue>(&self, i: usize) -> Result<T, RepoError>;

    /// Elements `i..i + 3` as cpu, memory, gpu.
    fn resources(&self, i: usize) -> Result<Resources, RepoError> {
        Ok(Resources::new(
            self.field(i)?,
            self.field(i + 1)?,
            self.field(i + 2)?,
        ))
    }
}

impl Fields for [Value] {
    fn field<T: FromRedisValue>(&self, i: usize) -> Result<T, RepoError> {
        get(self
            .get(i)
            .ok_or_else(|| bad(format!("short reply: {} elements", self.len())))?)
    }
}

/// `[cpu, memory, gpu]` as script arguments.
pub(crate) fn resource_args(r: &Resources) -> [String; 3] {
    [r.cpu_millicores, r.memory_mib, r.gpu_count].map(|n| n.to_string())
}

fn parse<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, RepoError> {
    s.parse().map_err(|_| bad(format!("bad {what}: {s:?}")))
}

fn status(s: &str) -> Result<WorkerStatus, RepoError> {
    WorkerStatus::parse(s).ok_or_else(|| bad(format!("unknown worker status {s:?}")))
}

/// A worker state hash as a [`Worker`].
pub(crate) fn worker(m: &HashMap<String, String>) -> Result<Worker, RepoError> {
    let f = |k: &str| {
        m.get(k)
            .map(String::as_str)
            .ok_or_else(|| bad(format!("no field {k:?}")))
    };
    let n = |k: &str| f(k).and_then(|s| parse::<u64>(s, k));
    Ok(Worker {
        id: f("id")?.to_owned(),
        pool: f("pool")?.to_owned(),
        status: status(f("status")?)?,
        priority: parse(f("prio")?, "priority")?,
        gpu_type: m.get("gpu").cloned(),
        requires_pool_selector: f("rps")? == "1",
        preemptable: f("pre")? == "1",
        total: Resources::new(n("tc")?, n("tm")?, n("tg")?),
        free: Resources::new(n("fc")?, n("fm")?, n("fg")?),
        resource_version: n("v")?,
        heartbeat_timeout_ms: None,
        on_stale: sched_core::StalePolicy::Keep,
        last_heartbeat_ms: None,
        stale: false,
    })
}

/// A ledger entry, `container_id` → `"cpu mem gpu[ gpu_type]"`, as a record.
pub(crate) fn record(
    worker: &str,
    container: String,
    entry: &str,
) -> Result<ReservationRecord, RepoError> {
    let mut it = entry.splitn(4, ' ');
    let mut n = || {
        it.next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad ledger entry {entry:?}")))
    };
    let resources = Resources::new(n()?, n()?, n()?);
    let (worker_id, gpu_type) = (worker.to_owned(), it.next().map(str::to_owned));
    Ok(ReservationRecord {
        worker_id,
        container_id: container,
        resources,
        gpu_type,
        lease_expires_at_ms: None,
    })
}

pub(crate) fn kind(s: &str) -> Result<ResourceKind, RepoError> {
    ResourceKind::parse(s).ok_or_else(|| bad(format!("unknown resource kind {s:?}")))
}

/// `[kind, fields...]` from reserve.lua as a [`Rejection`], built by sched-core's
/// [`rules`](sched_core::rules) constructors, exactly as the reference rule builds it.
pub(crate) fn rejection(a: &[Value]) -> Result<Rejection, RepoError> {
    let s = |i: usize| a.field::<String>(i);
    Ok(match s(0)?.as_str() {
        "unknown" => Rejection::UnknownWorker,
        "version" => rules::version_conflict(a.field(1)?, a.field(2)?),
        "unavailable" => rules::worker_unavailable(status(&s(1)?)?),
        "already" => rules::already_reserved(&s(1)?, &s(2)?),
        "gpu" => {
            let actual = if a.field::<u64>(3)? == 1 {
                Some(s(4)?)
            } else {
                None
            };
            rules::gpu_type_mismatch(&s(1)?, &s(2)?, actual.as_deref())
        }
        "contended" => Rejection::Contended {
            container_id: s(1)?,
        },
        "insufficient" => rules::insufficient(&s(1)?, kind(&s(2)?)?, a.field(3)?, a.field(4)?),
        other => return Err(bad(format!("unknown rejection {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ledger_values_round_trip() {
        let r = Resources::new(1, 2, 3);
        for t in [None, Some("a b"), Some(" x"), Some("é{}:")] {
            // As reserve.lua writes it.
            let [c, m, g] = resource_args(&r);
            let entry = [Some(c), Some(m), Some(g), t.map(str::to_owned)]
                .into_iter()
                .flatten();
            let rec = record("w", "c".into(), &entry.collect::<Vec<_>>().join(" ")).unwrap();
            assert_eq!((rec.resources, rec.gpu_type), (r, t.map(str::to_owned)));
        }
        assert!(record("w", "c".into(), "1 2").is_err());
    }
}
