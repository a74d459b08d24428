//! From a plan to `reserve_batch` calls: one part per worker (split past [`MAX_BATCH`]
//! reservations), parts grouped into calls of at most [`MAX_BATCH`] reservations, never one
//! worker twice in a call.

use crate::validate::MAX_BATCH;
use crate::{CapacityReservation, ContainerRequest, ResourceReservation, Worker};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// One worker's part of a call, with the burst indices of its reservations, in order.
pub(super) type Part = (CapacityReservation, Vec<usize>);

/// The parts for `assignments` (worker index into `workers` → indices into `pending`, which
/// holds indices into `requests`), in worker-id order. With `version_checks`, each part expects
/// the worker's version in `workers`.
pub(super) fn worker_parts(
    workers: &[Arc<Worker>],
    assignments: HashMap<usize, Vec<usize>>,
    pending: &[usize],
    requests: &[ContainerRequest],
    version_checks: bool,
) -> Vec<Part> {
    // Group by worker, in worker-id order.
    let mut by_worker: Vec<(usize, Vec<usize>)> = assignments
        .into_iter()
        .map(|(wi, ks)| (wi, ks.into_iter().map(|k| pending[k]).collect()))
        .collect();
    by_worker.sort_by(|a, b| workers[a.0].id.cmp(&workers[b.0].id));
    let mut parts = Vec::new();
    for (wi, idxs) in by_worker {
        let w = &workers[wi];
        for piece in idxs.chunks(MAX_BATCH) {
            parts.push((
                CapacityReservation {
                    worker_id: w.id.clone(),
                    expected_version: version_checks.then_some(w.resource_version),
                    reservations: piece
                        .iter()
                        .map(|&i| {
                            let r = &requests[i];
                            ResourceReservation {
                                container_id: r.id.clone(),
                                resources: r.resources,
                                gpu_type: (r.resources.gpu_count > 0)
                                    .then(|| w.gpu_type.clone())
                                    .flatten(),
                                lease_ms: r.lease_ms,
                            }
                        })
                        .collect(),
                },
                piece.to_vec(),
            ));
        }
    }
    parts
}

/// Splits worker parts into `reserve_batch` calls of at most [`MAX_BATCH`] reservations.
pub(super) fn chunk_calls(parts: Vec<Part>) -> Vec<Vec<Part>> {
    let mut calls = Vec::new();
    let mut cur: Vec<Part> = Vec::new();
    let mut cur_len = 0;
    let mut workers_in_cur = HashSet::new();
    for part in parts {
        let n = part.0.reservations.len();
        if !cur.is_empty()
            && (cur_len + n > MAX_BATCH || workers_in_cur.contains(&part.0.worker_id))
        {
            calls.push(std::mem::take(&mut cur));
            cur_len = 0;
            workers_in_cur.clear();
        }
        workers_in_cur.insert(part.0.worker_id.clone());
        cur_len += n;
        cur.push(part);
    }
    if !cur.is_empty() {
        calls.push(cur);
    }
    calls
}
