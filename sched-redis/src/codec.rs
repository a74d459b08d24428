//! Encoding script arguments and decoding replies into sched types.

use crate::client::Reply;
use redis::{FromRedisValue, Value};
use sched_core::rules;
use sched_core::{
    Rejection, RepoError, ReservationRecord, ResourceKind, Resources, StalePolicy, Worker,
    WorkerStatus,
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

/// An owned reply as `T`, without copying it; a server error reply is [`RepoError::Backend`].
pub(crate) fn decode_owned<T: FromRedisValue>(reply: Reply) -> Result<T, RepoError> {
    let v = reply.map_err(|e| bad(format!("redis error: {e}")))?;
    redis::from_redis_value(v).map_err(|e| bad(format!("unexpected reply: {e}")))
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

/// A worker state hash as a [`Worker`], with `stale` judged at `now_ms` of the server's clock
/// when given (`false` otherwise). A hash from before the lifecycle fields decodes as "liveness
/// not tracked", [`StalePolicy::Keep`], no heartbeat.
pub(crate) fn worker(
    m: &HashMap<String, String>,
    now_ms: Option<u64>,
) -> Result<Worker, RepoError> {
    let f = |k: &str| {
        m.get(k)
            .map(String::as_str)
            .ok_or_else(|| bad(format!("no field {k:?}")))
    };
    let n = |k: &str| f(k).and_then(|s| parse::<u64>(s, k));
    let opt = |k: &str| m.get(k).map(|s| parse::<u64>(s, k)).transpose();
    let on_stale = match m.get("os") {
        None => StalePolicy::Keep,
        Some(s) => {
            StalePolicy::parse(s).ok_or_else(|| bad(format!("unknown stale policy {s:?}")))?
        }
    };
    let mut w = Worker {
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
        heartbeat_timeout_ms: opt("hbt")?,
        on_stale,
        last_heartbeat_ms: opt("hb")?,
        stale: false,
    };
    w.stale = now_ms.is_some_and(|now| w.is_stale_at(now));
    Ok(w)
}

/// A ledger entry, `container_id` → `"cpu mem gpu[@deadline][ gpu_type]"` (no `@deadline`:
/// not leased, and every entry from before leases), as a record.
pub(crate) fn record(
    worker: &str,
    container: String,
    entry: &str,
) -> Result<ReservationRecord, RepoError> {
    let mut it = entry.splitn(4, ' ');
    let bad_entry = || bad(format!("bad ledger entry {entry:?}"));
    let n = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok()).ok_or_else(bad_entry);
    let (cpu, mem) = (n(it.next())?, n(it.next())?);
    let third = it.next().ok_or_else(bad_entry)?;
    let (gpu, lease) = match third.split_once('@') {
        Some((g, d)) => (n(Some(g))?, Some(n(Some(d))?)),
        None => (n(Some(third))?, None),
    };
    let resources = Resources::new(cpu, mem, gpu);
    let (worker_id, gpu_type) = (worker.to_owned(), it.next().map(str::to_owned));
    Ok(ReservationRecord {
        worker_id,
        container_id: container,
        resources,
        gpu_type,
        lease_expires_at_ms: lease,
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
        "heartbeat" => Rejection::HeartbeatExpired {
            last_heartbeat_ms: match s(1)?.as_str() {
                "" => None,
                last => Some(parse(last, "last heartbeat")?),
            },
            timeout_ms: a.field(2)?,
        },
        "contended" => Rejection::Contended {
            container_id: s(1)?,
        },
        "insufficient" => rules::insufficient(&s(1)?, kind(&s(2)?)?, a.field(3)?, a.field(4)?),
        other => return Err(bad(format!("unknown rejection {other:?}"))),
    })
}

/// Every text in a reply (a string, or the strings inside arrays and maps' values), in order:
/// `INFO` answers one text per node.
#[cfg(feature = "testing")]
pub(crate) fn texts(v: &Value) -> Vec<String> {
    match v {
        Value::BulkString(b) => vec![String::from_utf8_lossy(b).into_owned()],
        Value::SimpleString(s) => vec![s.clone()],
        Value::VerbatimString { text, .. } => vec![text.clone()],
        Value::Array(a) | Value::Set(a) => a.iter().flat_map(texts).collect(),
        Value::Map(m) => m.iter().flat_map(|(_, v)| texts(v)).collect(),
        _ => Vec::new(),
    }
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
        assert!(record("w", "c".into(), "1 2 3@").is_err());
        // With a lease deadline, as reserve.lua and renew.lua write it.
        for (entry, gpu) in [("1 2 3@1700000000123", None), ("1 2 3@5 a b", Some("a b"))] {
            let rec = record("w", "c".into(), entry).unwrap();
            assert_eq!(rec.resources, r);
            assert_eq!(rec.gpu_type.as_deref(), gpu);
            assert!(rec.lease_expires_at_ms.is_some());
        }
        assert_eq!(
            record("w", "c".into(), "1 2 3 L4")
                .unwrap()
                .lease_expires_at_ms,
            None
        );
    }

    #[test]
    fn old_state_hashes_decode() {
        let mut m: HashMap<String, String> = [
            ("id", "w"),
            ("pool", "p"),
            ("status", "available"),
            ("prio", "0"),
            ("rps", "0"),
            ("pre", "0"),
            ("tc", "1"),
            ("tm", "1"),
            ("tg", "0"),
            ("fc", "1"),
            ("fm", "1"),
            ("fg", "0"),
            ("v", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let w = worker(&m, Some(10)).unwrap();
        assert_eq!(
            (
                w.heartbeat_timeout_ms,
                w.on_stale,
                w.last_heartbeat_ms,
                w.stale
            ),
            (None, StalePolicy::Keep, None, false)
        );
        m.insert("hbt".into(), "5".into());
        m.insert("hb".into(), "4".into());
        m.insert("os".into(), "release".into());
        let w = worker(&m, Some(10)).unwrap();
        assert_eq!(
            (
                w.heartbeat_timeout_ms,
                w.on_stale,
                w.last_heartbeat_ms,
                w.stale
            ),
            (Some(5), StalePolicy::Release, Some(4), true)
        );
        assert!(!worker(&m, Some(9)).unwrap().stale);
    }
}
