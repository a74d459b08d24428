//! Input limits and validation shared by every backend, so that bad input is rejected the same way
//! everywhere and before anything changes.

use crate::{
    CapacityReservation, ContainerRequest, InvalidInput, ResourceKind, ResourceReservation,
    Resources, WorkerSpec,
};
// foldhash: these sets see every id of every call (SipHash showed in profiles); seeded per process.
use foldhash::{HashSet, HashSetExt};

/// Longest id (worker, container, pool, GPU type) accepted, in bytes.
pub const MAX_ID_BYTES: usize = 512;
/// Largest amount of any one resource (2^40). Keeps every sum exact in a Lua double and in a
/// Postgres `BIGINT`.
pub const MAX_AMOUNT: u64 = 1 << 40;
/// Most reservations one `reserve_batch` or container ids one `release_batch` accepts.
/// The scheduler splits larger bursts.
pub const MAX_BATCH: usize = 10_000;

/// Checks one id.
pub fn validate_id(what: &'static str, id: &str) -> Result<(), InvalidInput> {
    if id.is_empty() {
        return Err(InvalidInput::EmptyId { what });
    }
    if id.len() > MAX_ID_BYTES {
        return Err(InvalidInput::IdTooLong {
            what,
            len: id.len(),
            max: MAX_ID_BYTES,
        });
    }
    if id.chars().any(char::is_control) {
        return Err(InvalidInput::ControlCharacter { what });
    }
    Ok(())
}

/// Checks that no amount exceeds [`MAX_AMOUNT`].
pub fn validate_amounts(r: &Resources) -> Result<(), InvalidInput> {
    for k in ResourceKind::ALL {
        let v = r.get(k);
        if v > MAX_AMOUNT {
            return Err(InvalidInput::TooLarge {
                resource: k,
                value: v,
                max: MAX_AMOUNT,
            });
        }
    }
    Ok(())
}

/// Checks a worker registration.
pub fn validate_spec(spec: &WorkerSpec) -> Result<(), InvalidInput> {
    validate_id("worker", &spec.id)?;
    validate_id("pool", &spec.pool)?;
    if let Some(g) = &spec.gpu_type {
        validate_id("gpu type", g)?;
    }
    if let Some(t) = spec.heartbeat_timeout_ms {
        validate_duration_ms("heartbeat timeout", t)?;
    }
    validate_amounts(&spec.total)
}

/// Checks a lease or heartbeat timeout: at least 1 ms, at most
/// [`MAX_LEASE_MS`](crate::lifecycle::MAX_LEASE_MS).
pub fn validate_duration_ms(what: &'static str, ms: u64) -> Result<(), InvalidInput> {
    let max = crate::lifecycle::MAX_LEASE_MS;
    if ms == 0 || ms > max {
        return Err(InvalidInput::Other(format!(
            "{what} of {ms} ms is outside 1..={max} ms"
        )));
    }
    Ok(())
}

/// Checks a [`renew_leases`](crate::WorkerRepository::renew_leases) call: the worker id, the
/// container ids as for a release, and the lease.
pub fn validate_renewal(
    worker_id: &str,
    container_ids: &[String],
    lease_ms: u64,
) -> Result<(), InvalidInput> {
    validate_id("worker", worker_id)?;
    validate_release(container_ids)?;
    validate_duration_ms("lease", lease_ms)
}

/// Checks one reservation.
fn validate_reservation(r: &ResourceReservation) -> Result<(), InvalidInput> {
    validate_id("container", &r.container_id)?;
    if r.resources.is_zero() {
        return Err(InvalidInput::ZeroResources {
            container_id: r.container_id.clone(),
        });
    }
    validate_amounts(&r.resources)?;
    if let Some(g) = &r.gpu_type {
        validate_id("gpu type", g)?;
    }
    if let Some(l) = r.lease_ms {
        validate_duration_ms("lease", l)?;
    }
    Ok(())
}

/// Checks one container request before the scheduler plans it: id, non-zero amounts within
/// [`MAX_AMOUNT`], GPU types and pool selector.
pub(crate) fn validate_request(r: &ContainerRequest) -> Result<(), InvalidInput> {
    validate_id("container", &r.id)?;
    if r.resources.is_zero() {
        return Err(InvalidInput::ZeroResources {
            container_id: r.id.clone(),
        });
    }
    validate_amounts(&r.resources)?;
    for g in &r.gpu_types {
        validate_id("gpu type", g)?;
    }
    if let Some(p) = &r.pool_selector {
        validate_id("pool", p)?;
    }
    if let Some(l) = r.lease_ms {
        validate_duration_ms("lease", l)?;
    }
    Ok(())
}

/// Checks a whole `reserve_batch` input: ids, amounts, no worker or container twice, size limit.
/// Backends call this first, so a bad batch changes nothing.
pub fn validate_batch(batch: &[CapacityReservation]) -> Result<(), InvalidInput> {
    let len: usize = batch.iter().map(|c| c.reservations.len()).sum();
    if len > MAX_BATCH {
        return Err(InvalidInput::BatchTooLarge {
            len,
            max: MAX_BATCH,
        });
    }
    let mut workers = HashSet::with_capacity(batch.len());
    let mut containers = HashSet::with_capacity(len);
    for cr in batch {
        validate_id("worker", &cr.worker_id)?;
        if !workers.insert(cr.worker_id.as_str()) {
            return Err(InvalidInput::DuplicateWorker {
                worker_id: cr.worker_id.clone(),
            });
        }
        if cr.reservations.is_empty() {
            return Err(InvalidInput::EmptyReservation {
                worker_id: cr.worker_id.clone(),
            });
        }
        for r in &cr.reservations {
            validate_reservation(r)?;
            if !containers.insert(r.container_id.as_str()) {
                return Err(InvalidInput::DuplicateContainer {
                    container_id: r.container_id.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Checks a `release_batch` input: ids, no container twice, size limit.
pub fn validate_release(container_ids: &[String]) -> Result<(), InvalidInput> {
    if container_ids.len() > MAX_BATCH {
        return Err(InvalidInput::BatchTooLarge {
            len: container_ids.len(),
            max: MAX_BATCH,
        });
    }
    let mut seen = HashSet::with_capacity(container_ids.len());
    for id in container_ids {
        validate_id("container", id)?;
        if !seen.insert(id.as_str()) {
            return Err(InvalidInput::DuplicateContainer {
                container_id: id.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(id: &str) -> ResourceReservation {
        ResourceReservation::new(id, Resources::cpu_mem(100, 100))
    }

    #[test]
    fn rejects_bad_ids() {
        assert!(matches!(
            validate_id("worker", ""),
            Err(InvalidInput::EmptyId { .. })
        ));
        let long = "x".repeat(10 * 1024);
        assert!(matches!(
            validate_id("worker", &long),
            Err(InvalidInput::IdTooLong { .. })
        ));
        assert!(matches!(
            validate_id("worker", "a\0b"),
            Err(InvalidInput::ControlCharacter { .. })
        ));
        assert!(validate_id("worker", "{w}:1 'x\"; DROP TABLE--é").is_ok());
    }

    #[test]
    fn rejects_duplicates_and_zero() {
        let b = vec![CapacityReservation::new("w", vec![res("c"), res("c")])];
        assert!(matches!(
            validate_batch(&b),
            Err(InvalidInput::DuplicateContainer { .. })
        ));
        let b = vec![
            CapacityReservation::new("w", vec![res("a")]),
            CapacityReservation::new("w", vec![res("b")]),
        ];
        assert!(matches!(
            validate_batch(&b),
            Err(InvalidInput::DuplicateWorker { .. })
        ));
        let b = vec![CapacityReservation::new(
            "w",
            vec![ResourceReservation::new("z", Resources::ZERO)],
        )];
        assert!(matches!(
            validate_batch(&b),
            Err(InvalidInput::ZeroResources { .. })
        ));
        let b = vec![CapacityReservation::new(
            "w",
            vec![ResourceReservation::new(
                "z",
                Resources::new(u64::MAX, 1, 0),
            )],
        )];
        assert!(matches!(
            validate_batch(&b),
            Err(InvalidInput::TooLarge { .. })
        ));
    }

    #[test]
    fn rejects_oversized_batch() {
        let rs = (0..=MAX_BATCH).map(|i| res(&i.to_string())).collect();
        let b = vec![CapacityReservation::new("w", rs)];
        assert!(matches!(
            validate_batch(&b),
            Err(InvalidInput::BatchTooLarge { .. })
        ));
    }
}
