//! `find_reservations`: the container index, then the holders' ledgers.

use crate::client::Op;
use crate::codec;
use crate::{cluster, RedisRepository};
use sched_core::validate::validate_release;
use sched_core::{RepoError, ReservationRecord};

/// Two round trips: every index key, then every ledger entry found.
pub(crate) async fn find_reservations(
    repo: &RedisRepository,
    container_ids: &[String],
) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
    validate_release(container_ids)?;
    if container_ids.is_empty() {
        return Ok(Vec::new());
    }
    let ops = container_ids
        .iter()
        .map(|c| Op::cmd("GET", vec![repo.keys.index(c)]))
        .collect();
    let mut asks = Vec::new(); // (position, holder)
    for (i, v) in repo.run(ops, false).await?.iter().enumerate() {
        if let Some(v) = codec::opt_string(v)? {
            asks.push((i, cluster::holder_of(&v).to_owned()));
        }
    }
    let mut out = vec![None; container_ids.len()];
    if asks.is_empty() {
        return Ok(out);
    }
    let ops = asks
        .iter()
        .map(|(i, w)| Op::cmd("HGET", vec![repo.keys.ledger(w), container_ids[*i].clone()]))
        .collect();
    for ((i, w), v) in asks.iter().zip(repo.run(ops, false).await?) {
        if let Some(held) = codec::opt_string(&v)? {
            out[*i] = Some(codec::record(w, container_ids[*i].clone(), &held)?);
        }
    }
    Ok(out)
}
