//! Encoding script arguments and decoding replies into sched types.

use crate::client::Val;
use sched_core::{
    Rejection, RepoError, ReservationRecord, ResourceKind, Resources, Worker, WorkerStatus,
};
use std::collections::HashMap;

/// An unexpected reply: [`RepoError::Backend`].
pub(crate) fn bad(what: impl Into<String>) -> RepoError {
    RepoError::Backend(what.into().into())
}

/// A server error reply becomes [`RepoError::Backend`].
pub(crate) fn ok(v: Val) -> Result<Val, RepoError> {
    match v {
        Val::Err(e) => Err(bad(format!("redis error: {e}"))),
        v => Ok(v),
    }
}

pub(crate) fn string(v: &Val) -> Result<String, RepoError> {
    match v {
        Val::Bytes(b) => String::from_utf8(b.clone()).map_err(|_| bad("reply is not UTF-8")),
        Val::Int(i) => Ok(i.to_string()),
        Val::Err(e) => Err(bad(format!("redis error: {e}"))),
        other => Err(bad(format!("expected a string, got {other:?}"))),
    }
}

pub(crate) fn opt_string(v: &Val) -> Result<Option<String>, RepoError> {
    match v {
        Val::Nil => Ok(None),
        v => string(v).map(Some),
    }
}

pub(crate) fn num(v: &Val) -> Result<u64, RepoError> {
    match v {
        Val::Int(i) => u64::try_from(*i).map_err(|_| bad(format!("negative number {i}"))),
        v => parse(&string(v)?, "number"),
    }
}

fn parse<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, RepoError> {
    s.parse().map_err(|_| bad(format!("not a {what}: {s:?}")))
}

pub(crate) fn array(v: Val) -> Result<Vec<Val>, RepoError> {
    match ok(v)? {
        Val::Array(a) => Ok(a),
        other => Err(bad(format!("expected an array, got {other:?}"))),
    }
}

/// Positional access to a script's reply array.
pub(crate) trait Fields {
    /// Element `i`.
    fn at(&self, i: usize) -> Result<&Val, RepoError>;
    /// Element `i` as a number.
    fn num(&self, i: usize) -> Result<u64, RepoError> {
        num(self.at(i)?)
    }
    /// Element `i` as a string.
    fn text(&self, i: usize) -> Result<String, RepoError> {
        string(self.at(i)?)
    }
    /// Elements `i..i+3` as cpu, memory, gpu.
    fn resources(&self, i: usize) -> Result<Resources, RepoError> {
        Ok(Resources::new(
            self.num(i)?,
            self.num(i + 1)?,
            self.num(i + 2)?,
        ))
    }
}

impl Fields for [Val] {
    fn at(&self, i: usize) -> Result<&Val, RepoError> {
        self.get(i)
            .ok_or_else(|| bad(format!("short reply: {} elements", self.len())))
    }
}

/// `[cpu, memory, gpu]` as script arguments.
pub(crate) fn resource_args(r: &Resources) -> [String; 3] {
    [r.cpu_millicores, r.memory_mib, r.gpu_count].map(|n| n.to_string())
}

/// A flat `[field, value, ...]` reply (HGETALL) as a map.
pub(crate) fn hash(v: Val) -> Result<HashMap<String, String>, RepoError> {
    let a = array(v)?;
    a.chunks_exact(2)
        .map(|kv| Ok((string(&kv[0])?, string(&kv[1])?)))
        .collect()
}

/// A worker state hash as a [`Worker`].
pub(crate) fn worker(m: &HashMap<String, String>) -> Result<Worker, RepoError> {
    let field = |f: &str| {
        m.get(f)
            .map(String::as_str)
            .ok_or_else(|| bad(format!("worker hash lacks field {f:?}")))
    };
    let n = |f: &str| field(f).and_then(|s| parse::<u64>(s, f));
    let status = field("status")?;
    Ok(Worker {
        id: field("id")?.to_owned(),
        pool: field("pool")?.to_owned(),
        status: WorkerStatus::parse(status)
            .ok_or_else(|| bad(format!("unknown worker status {status:?}")))?,
        priority: parse(field("prio")?, "priority")?,
        gpu_type: m.get("gpu").cloned(),
        requires_pool_selector: field("rps")? == "1",
        preemptable: field("pre")? == "1",
        total: Resources::new(n("tc")?, n("tm")?, n("tg")?),
        free: Resources::new(n("fc")?, n("fm")?, n("fg")?),
        resource_version: n("v")?,
    })
}

/// A ledger value `"cpu mem gpu[ gpu_type]"` (as reserve.lua writes it).
pub(crate) fn held(value: &str) -> Result<(Resources, Option<String>), RepoError> {
    let mut it = value.splitn(4, ' ');
    let mut n = || -> Result<u64, RepoError> {
        it.next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad ledger entry {value:?}")))
    };
    let r = Resources::new(n()?, n()?, n()?);
    Ok((r, it.next().map(str::to_owned)))
}

/// The record of `container_id` held on `worker_id` with ledger value `value`.
pub(crate) fn record(
    worker_id: &str,
    container_id: String,
    value: &str,
) -> Result<ReservationRecord, RepoError> {
    let (resources, gpu_type) = held(value)?;
    let worker_id = worker_id.to_owned();
    Ok(ReservationRecord {
        worker_id,
        container_id,
        resources,
        gpu_type,
    })
}

/// A ledger hash as records ordered by container id.
pub(crate) fn ledger(
    worker_id: &str,
    m: HashMap<String, String>,
) -> Result<Vec<ReservationRecord>, RepoError> {
    let mut out = m
        .into_iter()
        .map(|(c, v)| record(worker_id, c, &v))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| a.container_id.cmp(&b.container_id));
    Ok(out)
}

pub(crate) fn kind(v: &Val) -> Result<ResourceKind, RepoError> {
    let s = string(v)?;
    ResourceKind::parse(&s).ok_or_else(|| bad(format!("unknown resource kind {s:?}")))
}

/// `[kind, fields...]` from reserve.lua as a [`Rejection`].
pub(crate) fn rejection(a: &[Val]) -> Result<Rejection, RepoError> {
    Ok(match a.text(0)?.as_str() {
        "unknown" => Rejection::UnknownWorker,
        "version" => Rejection::VersionConflict {
            expected: a.num(1)?,
            current: a.num(2)?,
        },
        "unavailable" => {
            let s = a.text(1)?;
            Rejection::WorkerUnavailable {
                status: WorkerStatus::parse(&s)
                    .ok_or_else(|| bad(format!("unknown worker status {s:?}")))?,
            }
        }
        "already" => Rejection::AlreadyReserved {
            container_id: a.text(1)?,
            worker_id: a.text(2)?,
        },
        "gpu" => Rejection::GpuTypeMismatch {
            container_id: a.text(1)?,
            requested: a.text(2)?,
            actual: if a.num(3)? == 1 {
                Some(a.text(4)?)
            } else {
                None
            },
        },
        "insufficient" => Rejection::InsufficientCapacity {
            container_id: a.text(1)?,
            resource: kind(a.at(2)?)?,
            requested: a.num(3)?,
            available: a.num(4)?,
        },
        other => return Err(bad(format!("unknown rejection {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The ledger value stored for a reservation (as reserve.lua writes it).
    fn ledger_value(r: &Resources, gpu_type: Option<&str>) -> String {
        let [c, m, g] = resource_args(r);
        match gpu_type {
            Some(t) => format!("{c} {m} {g} {t}"),
            None => format!("{c} {m} {g}"),
        }
    }

    #[test]
    fn ledger_values_round_trip() {
        let r = Resources::new(1, 2, 3);
        for t in [None, Some("a b"), Some(" x"), Some("é{}:")] {
            assert_eq!(
                held(&ledger_value(&r, t)).unwrap(),
                (r, t.map(str::to_owned))
            );
        }
        assert!(held("1 2").is_err());
    }
}
