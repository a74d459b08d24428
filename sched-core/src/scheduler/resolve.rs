//! Where containers are held: `find_reservations` in chunks, retried with backoff where it
//! fails, for a burst that lost a commit's reply, was told a container is held already, or is
//! about to answer a container with an error.

use super::config::SchedulerConfig;
use crate::validate::MAX_BATCH;
use crate::{ContainerRequest, RepoError, ReservationRecord, WorkerRepository};
use std::sync::Arc;

/// One container's lookup: where it is held (`None`: nowhere), or the error that left it unknown.
pub(super) type Found = Result<Option<ReservationRecord>, Arc<RepoError>>;

/// Lookups of one container in [`lookup_retrying`] (the first and its retries) before it is left
/// unknown.
pub(super) const LOOKUP_ATTEMPTS: u32 = 3;

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

/// [`lookup`], then the ids whose lookup failed again, with the scheduler's backoff, up to
/// [`LOOKUP_ATTEMPTS`] lookups each. An id still unknown keeps its last error.
pub(super) async fn lookup_retrying<R: WorkerRepository + ?Sized>(
    repo: &R,
    container_ids: &[String],
    config: &SchedulerConfig,
) -> Vec<Found> {
    let mut out = lookup(repo, container_ids).await;
    for attempt in 2..=LOOKUP_ATTEMPTS {
        let failed: Vec<usize> = (0..out.len()).filter(|&k| out[k].is_err()).collect();
        if failed.is_empty() {
            break;
        }
        tokio::time::sleep(config.backoff(attempt)).await;
        let ids: Vec<String> = failed.iter().map(|&k| container_ids[k].clone()).collect();
        for (k, found) in failed.into_iter().zip(lookup(repo, &ids).await) {
            out[k] = found;
        }
    }
    out
}

/// True when `held` is what `request` asks for: the same resources and, for GPUs, a GPU type the
/// request accepts (a CPU-only request holds no GPU type).
pub(super) fn holds_request(held: &ReservationRecord, request: &ContainerRequest) -> bool {
    held.resources == request.resources
        && match held.gpu_type.as_deref() {
            None => request.resources.gpu_count == 0,
            Some(t) => request.resources.gpu_count > 0 && request.accepts_gpu(Some(t)),
        }
}
