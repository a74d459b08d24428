//! Turning script and command replies back into sched types.

use crate::client::Val;
use sched_core::{
    Rejection, RepoError, ReservationRecord, ResourceKind, Resources, Worker, WorkerStatus,
};
use std::collections::HashMap;

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
        v => {
            let s = string(v)?;
            s.parse().map_err(|_| bad(format!("not a number: {s:?}")))
        }
    }
}

pub(crate) fn array(v: Val) -> Result<Vec<Val>, RepoError> {
    match ok(v)? {
        Val::Array(a) => Ok(a),
        other => Err(bad(format!("expected an array, got {other:?}"))),
    }
}

/// A flat `[field, value, ...]` reply (HGETALL) as a map.
pub(crate) fn hash(v: Val) -> Result<HashMap<String, String>, RepoError> {
    let a = array(v)?;
    let mut m = HashMap::with_capacity(a.len() / 2);
    for pair in a.chunks(2) {
        if let [k, v] = pair {
            m.insert(string(k)?, string(v)?);
        }
    }
    Ok(m)
}

fn field<'a>(m: &'a HashMap<String, String>, f: &str) -> Result<&'a str, RepoError> {
    m.get(f)
        .map(String::as_str)
        .ok_or_else(|| bad(format!("worker hash lacks field {f:?}")))
}

fn field_num(m: &HashMap<String, String>, f: &str) -> Result<u64, RepoError> {
    let s = field(m, f)?;
    s.parse()
        .map_err(|_| bad(format!("worker field {f:?} is not a number: {s:?}")))
}

/// A worker state hash as a [`Worker`].
pub(crate) fn worker(m: &HashMap<String, String>) -> Result<Worker, RepoError> {
    let status = field(m, "status")?;
    Ok(Worker {
        id: field(m, "id")?.to_owned(),
        pool: field(m, "pool")?.to_owned(),
        status: WorkerStatus::parse(status)
            .ok_or_else(|| bad(format!("unknown worker status {status:?}")))?,
        priority: field(m, "prio")?
            .parse()
            .map_err(|_| bad("worker priority is not a number"))?,
        gpu_type: m.get("gpu").cloned(),
        requires_pool_selector: field(m, "rps")? == "1",
        preemptable: field(m, "pre")? == "1",
        total: Resources::new(
            field_num(m, "tc")?,
            field_num(m, "tm")?,
            field_num(m, "tg")?,
        ),
        free: Resources::new(
            field_num(m, "fc")?,
            field_num(m, "fm")?,
            field_num(m, "fg")?,
        ),
        resource_version: field_num(m, "v")?,
    })
}

/// A ledger value `"cpu mem gpu[ gpu_type]"`.
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

/// The ledger value stored for a reservation (as reserve.lua writes it).
#[cfg(test)]
pub(crate) fn ledger_value(r: &Resources, gpu_type: Option<&str>) -> String {
    match gpu_type {
        Some(t) => format!("{} {} {} {t}", r.cpu_millicores, r.memory_mib, r.gpu_count),
        None => format!("{} {} {}", r.cpu_millicores, r.memory_mib, r.gpu_count),
    }
}

/// A ledger hash as records ordered by container id.
pub(crate) fn ledger(
    worker_id: &str,
    m: HashMap<String, String>,
) -> Result<Vec<ReservationRecord>, RepoError> {
    let mut out = m
        .into_iter()
        .map(|(cid, v)| {
            let (resources, gpu_type) = held(&v)?;
            Ok(ReservationRecord {
                worker_id: worker_id.to_owned(),
                container_id: cid,
                resources,
                gpu_type,
            })
        })
        .collect::<Result<Vec<_>, RepoError>>()?;
    out.sort_by(|a, b| a.container_id.cmp(&b.container_id));
    Ok(out)
}

fn kind(s: &str) -> Result<ResourceKind, RepoError> {
    ResourceKind::parse(s).ok_or_else(|| bad(format!("unknown resource kind {s:?}")))
}

/// `[kind, fields...]` from reserve.lua as a [`Rejection`].
pub(crate) fn rejection(a: &[Val]) -> Result<Rejection, RepoError> {
    let arg = |i: usize| a.get(i).ok_or_else(|| bad("short rejection reply"));
    let kind_name = string(arg(0)?)?;
    Ok(match kind_name.as_str() {
        "unknown" => Rejection::UnknownWorker,
        "version" => Rejection::VersionConflict {
            expected: num(arg(1)?)?,
            current: num(arg(2)?)?,
        },
        "unavailable" => {
            let s = string(arg(1)?)?;
            Rejection::WorkerUnavailable {
                status: WorkerStatus::parse(&s)
                    .ok_or_else(|| bad(format!("unknown worker status {s:?}")))?,
            }
        }
        "already" => Rejection::AlreadyReserved {
            container_id: string(arg(1)?)?,
            worker_id: string(arg(2)?)?,
        },
        "gpu" => Rejection::GpuTypeMismatch {
            container_id: string(arg(1)?)?,
            requested: string(arg(2)?)?,
            actual: if num(arg(3)?)? == 1 {
                Some(string(arg(4)?)?)
            } else {
                None
            },
        },
        "insufficient" => Rejection::InsufficientCapacity {
            container_id: string(arg(1)?)?,
            resource: kind(&string(arg(2)?)?)?,
            requested: num(arg(3)?)?,
            available: num(arg(4)?)?,
        },
        other => return Err(bad(format!("unknown rejection {other:?}"))),
    })
}

/// A `kind` name from register.lua.
pub(crate) fn resource_kind(v: &Val) -> Result<ResourceKind, RepoError> {
    kind(&string(v)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
