//! The fenced Redis Cluster protocol of `reserve_batch` (ARCHITECTURE.md, "The fenced claim
//! protocol"): claim, run the worker scripts (again with a moved claim when an epoch fenced them),
//! resolve contested claims, resolve the parts whose outcome is unknown, drop unused claims.

use crate::client::{Op, Reply};
use crate::codec::{bad, decode, get, Fields};
use crate::fence::{holder_of, new_token, Fenced};
use crate::reserve::{outcome, reserve_script};
use crate::{scripts, RedisRepository};
use redis::Value;
use sched_core::{CapacityReservation, CommitMode, RepoError, WorkerResult};
use std::sync::Arc;

mod contested;

/// How often a part refused for its epoch is run again with the epoch it was told.
const EPOCH_ROUNDS: usize = 2;

/// Where one worker part stands.
enum State {
    /// To run (first time, or again after a `fenced` reply with the new epoch).
    Pending,
    /// Its script answered: the result and the positions it charged (by this call).
    Done(WorkerResult, Vec<usize>),
    /// Its outcome is unknown (script error, lost reply, claim not movable, fenced too often):
    /// resolved by fencing each of its claims.
    Lost,
}

struct Part {
    token: String,
    epoch: u64,
    state: State,
}

/// One reservation of the batch and its claim.
struct Item<'a> {
    /// Its part's index in the batch, and its position in the part.
    part: usize,
    pos: usize,
    container: &'a str,
    /// True when this call made the claim.
    own: bool,
    /// The claim value: this call's (`own`) or the other call's found in the key.
    value: String,
    /// Another call's claim: whether its worker's ledger holds the container.
    committed: bool,
}

struct Call<'a> {
    repo: &'a RedisRepository,
    batch: &'a [CapacityReservation],
    parts: Vec<Part>,
    items: Vec<Item<'a>>,
    /// The scripts were refused by the ACL (`Unauthorized`): the error of a call that charged
    /// nothing.
    refused: Option<RepoError>,
}

/// One cluster `reserve_batch` call.
pub(crate) async fn reserve(
    repo: &RedisRepository,
    batch: &[CapacityReservation],
    mode: CommitMode,
) -> Result<Vec<WorkerResult>, RepoError> {
    let mut call = Call::new(repo, batch);
    call.read_unknown_epochs().await;
    call.claim().await?;
    for round in 0..=EPOCH_ROUNDS {
        if round > 0 {
            call.move_claims().await;
        }
        call.run_scripts(mode).await;
        if !call.parts.iter().any(|p| matches!(p.state, State::Pending)) {
            break;
        }
    }
    for p in &mut call.parts {
        if matches!(p.state, State::Pending) {
            p.state = State::Lost;
        }
    }
    call.finish().await
}

fn claim_op(repo: &RedisRepository, container: &str, value: &str, old: Option<&str>) -> Op {
    let args = [Some(value), old].into_iter().flatten().map(str::to_owned);
    Op::script(
        &scripts::CLAIM,
        vec![repo.keys.index(container)],
        args.collect(),
    )
}

/// Whether a ledger look-up found the reservation.
fn found(lookup: &Reply) -> bool {
    !matches!(lookup, Ok(Value::Nil) | Err(_))
}

impl<'a> Call<'a> {
    fn new(repo: &'a RedisRepository, batch: &'a [CapacityReservation]) -> Self {
        let parts = (batch.iter())
            .map(|cr| Part {
                token: new_token(),
                epoch: repo.epoch(&cr.worker_id),
                state: State::Pending,
            })
            .collect();
        let mut items = Vec::new();
        for (part, cr) in batch.iter().enumerate() {
            for (pos, r) in cr.reservations.iter().enumerate() {
                items.push(Item {
                    part,
                    pos,
                    container: &r.container_id,
                    own: true,
                    value: String::new(),
                    committed: false,
                });
            }
        }
        let mut call = Call {
            repo,
            batch,
            parts,
            items,
            refused: None,
        };
        for i in 0..call.items.len() {
            call.items[i].value = call.own_value(call.items[i].part);
        }
        call
    }

    /// Reads the fence epoch of workers this repository has not seen yet (a cold cache), before
    /// claiming: one read instead of a `fenced` round (moving the claims, running again). A
    /// failed read leaves the epoch at 0 (the scripts then say which epoch to use).
    async fn read_unknown_epochs(&mut self) {
        let unknown: Vec<usize> = (0..self.parts.len())
            .filter(|&p| self.parts[p].epoch == 0)
            .collect();
        let k = &self.repo.keys;
        let ops = (unknown.iter()).map(|&p| {
            Op::cmd(
                "HGET",
                vec![k.state(&self.batch[p].worker_id), "f".to_owned()],
            )
        });
        let Ok(epochs) = self.repo.run_as::<Option<u64>>(ops.collect(), false).await else {
            return;
        };
        for (&p, f) in unknown.iter().zip(epochs) {
            if let Some(f) = f {
                self.repo.learn(&self.batch[p].worker_id, f);
                self.parts[p].epoch = f;
            }
        }
    }

    fn own_value(&self, part: usize) -> String {
        let worker = &self.batch[part].worker_id;
        format!("{worker}\n{}", self.parts[part].token)
    }

    /// Phase 1: claims every container (set-if-absent). A lost or failed claim is resolved by
    /// reading the key; one that stays unknown fails the call with `Unavailable` (`Unauthorized`
    /// when the ACL refused a claim or its read) after this call's claims are dropped (no script
    /// was sent: nothing can charge).
    async fn claim(&mut self) -> Result<(), RepoError> {
        let ops = (self.items.iter())
            .map(|it| claim_op(self.repo, it.container, &it.value, None))
            .collect();
        // Refused by the ACL (`Unauthorized`): the error the call fails with, once the claims
        // that did run are read back and dropped.
        let mut refused = None;
        let replies: Vec<Option<Reply>> = match self.repo.run(ops, true).await {
            Ok(r) => r.into_iter().map(Some).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "claim round trip failed; reading the claims back");
                refused = Some(e).filter(RepoError::needs_operator);
                self.items.iter().map(|_| None).collect()
            }
        };
        let mut unknown = Vec::new();
        for (i, reply) in replies.into_iter().enumerate() {
            match reply.map(|r| decode::<String>(&r)) {
                Some(Ok(s)) if s.is_empty() || s == self.items[i].value => {}
                Some(Ok(s)) if s != "-" => self.items[i].set_other(s),
                _ => unknown.push(i),
            }
        }
        if unknown.is_empty() {
            return Ok(());
        }
        let gets = (unknown.iter())
            .map(|&i| Op::cmd("GET", vec![self.repo.keys.index(self.items[i].container)]));
        let mut failure = None;
        match self
            .repo
            .run_as::<Option<String>>(gets.collect(), false)
            .await
        {
            Ok(values) => {
                for (&i, v) in unknown.iter().zip(values) {
                    match v {
                        Some(v) if v == self.items[i].value => {}
                        Some(v) => self.items[i].set_other(v),
                        None => {
                            failure.get_or_insert_with(|| bad("a claim was refused"));
                        }
                    }
                }
            }
            Err(e) => failure = Some(e),
        }
        let Some(e) = failure else { return Ok(()) };
        let own: Vec<_> = (self.items.iter().filter(|it| it.own))
            .map(|it| (it.container.to_owned(), it.value.clone()))
            .collect();
        self.repo
            .drop_dead_claims(&own, "drop the claims of a call whose claims failed")
            .await;
        Err(match refused {
            Some(refused) => refused,
            None if e.needs_operator() => e,
            None => RepoError::Unavailable(Box::new(e)),
        })
    }

    /// Moves the claims of the parts refused for their epoch to a new token (claim.lua
    /// compare-and-set): the re-run then carries an epoch read before its claim, as every
    /// script must. A part whose claims cannot all be moved is resolved as `Lost`.
    async fn move_claims(&mut self) {
        let pending: Vec<usize> = (0..self.parts.len())
            .filter(|&p| matches!(self.parts[p].state, State::Pending))
            .collect();
        let mut moves = Vec::new(); // (item, new value)
        for &p in &pending {
            self.parts[p].token = new_token();
            let value = self.own_value(p);
            let own = self.items.iter().enumerate();
            moves.extend(
                own.filter(|(_, it)| it.own && it.part == p)
                    .map(|(i, _)| (i, value.clone())),
            );
        }
        let ops = (moves.iter())
            .map(|(i, v)| {
                claim_op(
                    self.repo,
                    self.items[*i].container,
                    v,
                    Some(&self.items[*i].value),
                )
            })
            .collect();
        let replies = self.repo.run(ops, true).await;
        for (n, (i, v)) in moves.into_iter().enumerate() {
            let moved = match &replies {
                Ok(r) => matches!(decode::<String>(&r[n]).as_deref(), Ok("")),
                Err(_) => false,
            };
            if moved {
                self.items[i].value = v;
            } else {
                self.parts[self.items[i].part].state = State::Lost;
            }
        }
    }

    /// Phase 2: the scripts of the pending parts, and for every claim of another call whether its
    /// worker's ledger holds the container, in one round trip.
    async fn run_scripts(&mut self, mode: CommitMode) {
        let run: Vec<usize> = (0..self.parts.len())
            .filter(|&p| matches!(self.parts[p].state, State::Pending))
            .collect();
        if run.is_empty() {
            return;
        }
        let mut ops = Vec::new();
        for &p in &run {
            let holders: Vec<String> = (self.items.iter().filter(|it| it.part == p))
                .map(|it| {
                    if it.own {
                        String::new()
                    } else {
                        holder_of(&it.value).to_owned()
                    }
                })
                .collect();
            let part = &self.parts[p];
            let fence = (part.epoch, part.token.as_str());
            ops.push(reserve_script(
                self.repo,
                &self.batch[p],
                mode,
                Some((&holders, fence)),
            ));
        }
        let contested: Vec<usize> = (0..self.items.len())
            .filter(|&i| !self.items[i].own && run.contains(&self.items[i].part))
            .collect();
        let k = &self.repo.keys;
        ops.extend(contested.iter().map(|&i| {
            let it = &self.items[i];
            Op::cmd(
                "HGET",
                vec![k.ledger(holder_of(&it.value)), it.container.to_owned()],
            )
        }));
        let replies = match self.repo.run(ops, true).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "script round trip failed; fencing its parts");
                if e.needs_operator() {
                    self.refused = Some(e);
                }
                run.iter().for_each(|&p| self.parts[p].state = State::Lost);
                return;
            }
        };
        for (&i, r) in contested.iter().zip(&replies[run.len()..]) {
            self.items[i].committed = found(r);
        }
        for (&p, reply) in run.iter().zip(&replies) {
            self.parts[p].state = self.decode_part(p, reply);
        }
    }

    fn decode_part(&mut self, p: usize, reply: &Reply) -> State {
        let worker = &self.batch[p].worker_id;
        let a = match decode::<Vec<Value>>(reply) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, worker, "reserve script failed; fencing its claims");
                return State::Lost;
            }
        };
        if a.field::<String>(0).is_ok_and(|k| k == "fenced") {
            return match a.field::<u64>(1) {
                Ok(f) => {
                    self.repo.learn(worker, f);
                    self.parts[p].epoch = f;
                    State::Pending
                }
                Err(_) => State::Lost,
            };
        }
        if let Some(f) = a.get(7).and_then(|v| get::<u64>(v).ok()) {
            self.repo.learn(worker, f);
        }
        match outcome(&self.batch[p], a) {
            Ok((r, charged)) => State::Done(r, charged),
            Err(e) => {
                tracing::warn!(error = %e, worker, "bad reserve reply; fencing its claims");
                State::Lost
            }
        }
    }

    /// Phases 3-5: contested claims with nothing committed behind them are polled, then fenced;
    /// the claims of lost parts are fenced; unused claims are dropped. Returns the results, or
    /// `Ambiguous` when a part's outcome stays unknown to the caller.
    async fn finish(mut self) -> Result<Vec<WorkerResult>, RepoError> {
        let stale = self.await_contested().await;
        // Fence every uncommitted contested claim and every claim of a lost part, in one trip.
        let mut fence: Vec<(String, String)> = stale.iter().map(|&i| self.claim_of(i)).collect();
        let lost: Vec<usize> = (0..self.items.len())
            .filter(|&i| {
                self.items[i].own && matches!(self.parts[self.items[i].part].state, State::Lost)
            })
            .collect();
        fence.extend(lost.iter().map(|&i| self.claim_of(i)));
        let refs: Vec<(&str, &str)> = fence
            .iter()
            .map(|(c, v)| (c.as_str(), v.as_str()))
            .collect();
        let found: Vec<Option<Fenced>> = if refs.is_empty() {
            Vec::new()
        } else {
            match self.repo.fence(&refs).await {
                Ok(f) => f.into_iter().map(Result::ok).collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "could not fence claims; they stay until the next call needing them");
                    vec![None; refs.len()]
                }
            }
        };
        let mut drop: Vec<(String, String)> = Vec::new();
        let (stale_found, lost_found) = found.split_at(stale.len().min(found.len()));
        let mut held_stale = Vec::new();
        for (&i, f) in stale.iter().zip(stale_found) {
            match f {
                Some(Fenced::Held(_)) => held_stale.push(i),
                Some(_) => drop.push(self.claim_of(i)),
                None => {}
            }
        }
        let mut unresolved = false;
        let mut charged_any = false;
        for (&i, f) in lost.iter().zip(lost_found) {
            match f {
                Some(Fenced::Held(_)) => charged_any = true,
                Some(_) => drop.push(self.claim_of(i)),
                None => unresolved = true,
            }
        }
        let mut results = Vec::new();
        let mut held = Vec::new();
        let mut lost_parts = false;
        for p in 0..self.parts.len() {
            let State::Done(mut r, charged) =
                std::mem::replace(&mut self.parts[p].state, State::Lost)
            else {
                lost_parts = true;
                continue;
            };
            charged_any |= !charged.is_empty();
            for it in self.items.iter().filter(|it| it.part == p && it.own) {
                if charged.contains(&it.pos) {
                    held.push((it.container.to_owned(), Arc::from(it.value.as_str())));
                } else {
                    drop.push((it.container.to_owned(), it.value.clone()));
                }
            }
            self.settle_contested(p, &mut r, &held_stale);
            results.push(r);
        }
        self.repo.hint_holders(held);
        self.repo
            .drop_dead_claims(&drop, "drop the unused claims of reserve_batch")
            .await;
        if !lost_parts {
            return Ok(results);
        }
        if !unresolved && !charged_any {
            if let Some(refused) = self.refused.take() {
                return Err(refused);
            }
            return Err(RepoError::Unavailable(
                "a worker script failed; its claims are revoked and nothing was charged".into(),
            ));
        }
        Err(RepoError::Ambiguous(
            "a worker script failed or lost its reply; look the containers up (their claims are fenced)"
                .into(),
        ))
    }

    fn claim_of(&self, i: usize) -> (String, String) {
        (
            self.items[i].container.to_owned(),
            self.items[i].value.clone(),
        )
    }
}

impl Item<'_> {
    fn set_other(&mut self, value: String) {
        self.own = false;
        self.value = value;
    }
}
