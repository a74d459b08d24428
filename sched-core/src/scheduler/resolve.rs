//! Where containers are held: `find_reservations` in chunks, for a burst that lost a reply or
//! saw another scheduler holding one of its containers.

use crate::validate::MAX_BATCH;
use crate::{RepoError, ReservationRecord, WorkerRepository};
use std::sync::Arc;

/// One container's lookup: where it is held (`None`: nowhere), or the error that left it unknown.
pub(super) type Found = Result<Option<ReservationRecord>, Arc<RepoError>>;

/// `find_reservations` for `container_ids`, in chunks of [`MAX_BATCH`]; one answer per id, in
/// order. A failed chunk (or one answered with the wrong count) yields its error for each of
/// its containers.
pub(super) async fn lookup<R: WorkerRepository + ?Sized>(
    repo: &R,
    container_ids: &[String],
) -> Vec<Found> {
    let mut out = Vec::with_capacity(container_ids.len());
    for chunk in container_ids.chunks(MAX_BATCH) {
        match repo.find_reservations(chunk).await {
            Ok(found) if found.len() == chunk.len() => out.extend(found.into_iter().map(Ok)),
            Ok(_) => {
                let e = Arc::new(RepoError::backend(
                    "find_reservations returned the wrong count",
                ));
                out.extend(chunk.iter().map(|_| Err(Arc::clone(&e))));
            }
            Err(e) => {
                let e = Arc::new(e);
                out.extend(chunk.iter().map(|_| Err(Arc::clone(&e))));
            }
        }
    }
    out
}
