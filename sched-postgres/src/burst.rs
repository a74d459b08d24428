//! `reserve_batch`'s statement: the burst sent as typed arrays to `sched_reserve_burst`
//! (migration 0005), so the server parses no JSON on the way in (binary arrays, one round trip,
//! a statement sqlx prepares once per connection and caches). The answer is still the JSON
//! array of `WorkerResult`, decoded by serde.

use crate::repo::{same_len, PostgresRepository};
use sched_core::{CapacityReservation, CommitMode, RepoError, WorkerResult};

/// The statement. `$2` goes as text so that any `u64` expected version arrives exactly.
const SQL: &str = "SELECT sched_reserve_burst($1, $2::text[]::numeric[], $3, $4, $5, $6, $7, \
                   $8, $9, $10, $11)";

/// A burst laid out as the columns `sched_reserve_burst` takes: one entry per part (worker),
/// and one per reservation, parts in input order, reservations in request order.
struct Columns<'a> {
    wids: Vec<&'a str>,
    evs: Vec<Option<String>>,
    /// The 1-based part of each reservation.
    rw: Vec<i32>,
    /// The 1-based position of each reservation within its part.
    rk: Vec<i32>,
    cids: Vec<&'a str>,
    cpu: Vec<i64>,
    mem: Vec<i64>,
    gpu: Vec<i64>,
    gpu_type: Vec<Option<&'a str>>,
    lease: Vec<Option<i64>>,
}

/// A value the SQL side stores as `bigint` or `integer`. Validated input always fits
/// (amounts are at most `MAX_AMOUNT`, leases are bounded, a burst is at most `MAX_BATCH`).
fn fits<T: TryFrom<U>, U: Copy + std::fmt::Display>(what: &str, v: U) -> Result<T, RepoError> {
    T::try_from(v).map_err(|_| RepoError::Backend(format!("{what} {v} out of range").into()))
}

impl<'a> Columns<'a> {
    fn of(batch: &'a [CapacityReservation]) -> Result<Self, RepoError> {
        let n: usize = batch.iter().map(|c| c.reservations.len()).sum();
        let mut c = Columns {
            wids: Vec::with_capacity(batch.len()),
            evs: Vec::with_capacity(batch.len()),
            rw: Vec::with_capacity(n),
            rk: Vec::with_capacity(n),
            cids: Vec::with_capacity(n),
            cpu: Vec::with_capacity(n),
            mem: Vec::with_capacity(n),
            gpu: Vec::with_capacity(n),
            gpu_type: Vec::with_capacity(n),
            lease: Vec::with_capacity(n),
        };
        for (i, part) in batch.iter().enumerate() {
            c.wids.push(&part.worker_id);
            c.evs.push(part.expected_version.map(|v| v.to_string()));
            let w = fits("part", i + 1)?;
            for (j, r) in part.reservations.iter().enumerate() {
                c.rw.push(w);
                c.rk.push(fits("position", j + 1)?);
                c.cids.push(&r.container_id);
                c.cpu
                    .push(fits("cpu_millicores", r.resources.cpu_millicores)?);
                c.mem.push(fits("memory_mib", r.resources.memory_mib)?);
                c.gpu.push(fits("gpu_count", r.resources.gpu_count)?);
                c.gpu_type.push(r.gpu_type.as_deref());
                c.lease
                    .push(r.lease_ms.map(|l| fits("lease_ms", l)).transpose()?);
            }
        }
        Ok(c)
    }
}

impl PostgresRepository {
    /// One `reserve_batch` (validated, not empty): one statement, answers in input order.
    pub(crate) async fn reserve_burst(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        let c = Columns::of(batch)?;
        let partial = mode == CommitMode::Partial;
        let out = self.call(false, SQL, |q| {
            q.bind(&c.wids[..])
                .bind(&c.evs[..])
                .bind(&c.rw[..])
                .bind(&c.rk[..])
                .bind(&c.cids[..])
                .bind(&c.cpu[..])
                .bind(&c.mem[..])
                .bind(&c.gpu[..])
                .bind(&c.gpu_type[..])
                .bind(&c.lease[..])
                .bind(partial)
        });
        same_len(out.await?, batch.len(), "reserve_batch")
    }
}
