//! `find_reservations`: the container index, then the holders' ledgers.

use crate::client::Op;
use crate::codec::{decode, record};
use crate::{cluster::holder_of, RedisRepository};
use sched_core::{validate::validate_release, RepoError, ReservationRecord};

/// Two round trips: every index key, then every ledger entry found.
pub(crate) async fn find(
    repo: &RedisRepository,
    ids: &[String],
) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
    validate_release(ids)?;
    let mut out = vec![None; ids.len()];
    if ids.is_empty() {
        return Ok(out);
    }
    let ops = ids
        .iter()
        .map(|c| Op::cmd("GET", vec![repo.keys.index(c)]))
        .collect();
    let mut asks = Vec::new(); // (position, holding worker)
    for (i, v) in repo.run(ops, false).await?.iter().enumerate() {
        if let Some(v) = decode::<Option<String>>(v)? {
            asks.push((i, holder_of(&v).to_owned()));
        }
    }
    if asks.is_empty() {
        return Ok(out);
    }
    let hget =
        |(i, w): &(usize, String)| Op::cmd("HGET", vec![repo.keys.ledger(w), ids[*i].clone()]);
    for ((i, w), v) in asks
        .iter()
        .zip(repo.run(asks.iter().map(hget).collect(), false).await?)
    {
        if let Some(entry) = decode::<Option<String>>(&v)? {
            out[*i] = Some(record(w, ids[*i].clone(), &entry)?);
        }
    }
    Ok(out)
}
