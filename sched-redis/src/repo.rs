//! [`RedisRepository`]: the [`WorkerRepository`] on Redis, written once over [`Client`].

use crate::client::{Client, ClientError, Op, Val};
use crate::config::RedisConfig;
use crate::keys::Keys;
use crate::parse::{self, bad};
use crate::scripts::{self, Script};
use async_trait::async_trait;
use sched_core::validate::{validate_batch, validate_id, validate_release, validate_spec};
use sched_core::{
    AuditMode, AuditReport, BackendCounters, CapacityReservation, CommitMode, Committed, Rejection,
    ReleaseOutcome, Released, RepoError, ReservationRecord, Resources, Worker, WorkerRepository,
    WorkerResult, WorkerSpec,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often `remove_worker` re-reads a ledger that changed under it (standalone mode).
const REMOVE_ATTEMPTS: usize = 8;

/// Cluster mode: how often a contested, not yet committed claim is re-read.
const CONTESTED_POLLS: u64 = 10;

/// A [`WorkerRepository`] on Redis or Redis Cluster.
///
/// Each worker's part of `reserve_batch` / `release_batch` is one Lua script; all the scripts
/// of a call go out as one pipeline of `EVALSHA`s. No locks. See `ARCHITECTURE-redis.md` for
/// the key layout. Cheap to clone: clones share the connection and the counters.
#[derive(Clone)]
pub struct RedisRepository {
    client: Arc<dyn Client>,
    keys: Keys,
    counters: Arc<BackendCounters>,
    claim_grace: Duration,
}

impl fmt::Debug for RedisRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRepository")
            .field("client", &self.client.name())
            .field("cluster", &self.client.is_cluster())
            .field("keys", &self.keys)
            .finish()
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The worker id named by an index value (`<worker id>` or, in cluster mode,
/// `<worker id>\n<token>\n<ms>`). Ids never hold control characters, so `\n` is a safe separator.
fn holder_of(value: &str) -> &str {
    value.split('\n').next().unwrap_or(value)
}

/// Cluster mode: an `AlreadyReserved` whose claim has no committed reservation behind it (the
/// claiming call is still in flight, or died) must not be reported as "held there" -- callers
/// treat that as placed. It becomes `Rejection::Contended`: "retry". Such claims are noted so
/// that abandoned ones can be dropped.
fn uncommitted_claim_is_contended(
    r: &mut WorkerResult,
    committed: &HashSet<String>,
    stale: &mut Vec<String>,
) {
    let slot = match &mut r.outcome {
        Err(rej) => rej,
        Ok(c) => match &mut c.remainder {
            Some(rej) => rej,
            None => return,
        },
    };
    if let Rejection::AlreadyReserved { container_id, .. } = slot {
        if !committed.contains(container_id) {
            stale.push(container_id.clone());
            *slot = Rejection::Contended {
                container_id: container_id.clone(),
            };
        }
    }
}

fn claim_age_ms(value: &str) -> Option<u128> {
    let ms: u128 = value.split('\n').nth(2)?.parse().ok()?;
    Some(now_ms().saturating_sub(ms))
}

impl RedisRepository {
    /// Connects with redis-rs (`ConnectionManager`, or the async cluster client when
    /// [`RedisConfig::cluster`] is set). A server that cannot be reached gives
    /// [`RepoError::Unavailable`].
    pub async fn connect(config: &RedisConfig) -> Result<Self, RepoError> {
        let client = crate::client_redis::RedisRsClient::connect(config)
            .await
            .map_err(|e| e.into_repo(false))?;
        Ok(Self::with_client(Arc::new(client), config))
    }

    /// Connects with fred (same behaviour as [`connect`](Self::connect)).
    #[cfg(feature = "fred")]
    pub async fn connect_fred(config: &RedisConfig) -> Result<Self, RepoError> {
        let client = crate::client_fred::FredClient::connect(config)
            .await
            .map_err(|e| e.into_repo(false))?;
        Ok(Self::with_client(Arc::new(client), config))
    }

    fn with_client(client: Arc<dyn Client>, config: &RedisConfig) -> Self {
        RedisRepository {
            client,
            keys: Keys::new(&config.key_prefix),
            counters: Arc::new(BackendCounters::default()),
            claim_grace: config.claim_grace,
        }
    }

    /// Traffic counters: round trips (a pipeline counts once), calls, atomic sections.
    pub fn counters(&self) -> Arc<BackendCounters> {
        Arc::clone(&self.counters)
    }

    /// True when connected to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.client.is_cluster()
    }

    /// `SCAN MATCH` pattern that covers every key this repository writes (for clean-up and
    /// inspection with `redis-cli --scan --pattern`).
    pub fn key_pattern(&self) -> String {
        self.keys.pattern()
    }

    /// One round trip with a plain `PING`, for latency comparisons.
    pub async fn ping(&self) -> Result<(), RepoError> {
        self.round_trip(&[Op::Ping], false).await.map(|_| ())
    }

    fn name(&self) -> &'static str {
        self.client.name()
    }

    fn mode(&self) -> &'static str {
        if self.client.is_cluster() {
            "c"
        } else {
            "s"
        }
    }

    async fn round_trip(&self, ops: &[Op], write: bool) -> Result<Vec<Val>, RepoError> {
        self.counters.round_trips(self.name(), 1);
        self.client
            .pipeline(ops)
            .await
            .map_err(|e: ClientError| e.into_repo(write))
    }

    /// Sends `ops` in one pipeline. Scripts the server does not know (`NOSCRIPT`, e.g. after
    /// `SCRIPT FLUSH` or a failover) are loaded and those commands retried once, in a second
    /// round trip: an `EVALSHA` answered with `NOSCRIPT` did not run, so the retry is safe.
    async fn retry_read(&self, ops: &[Op], first: RepoError) -> Result<Vec<Val>, RepoError> {
        let mut last = first;
        for delay_ms in [5u64, 20, 80, 320] {
            tracing::debug!(error = %last, delay_ms, "read failed; retrying");
            tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
            match self.round_trip(ops, false).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    async fn run(&self, ops: Vec<Op>, write: bool) -> Result<Vec<Val>, RepoError> {
        let mut replies = match self.round_trip(&ops, write).await {
            // A read that failed on a broken or reconnecting connection changed nothing:
            // retry it a few times instead of spending the caller's attempts.
            Err(e) if !write && e.is_transient() => self.retry_read(&ops, e).await?,
            r => r?,
        };
        let missing: Vec<usize> = replies
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_noscript())
            .map(|(i, _)| i)
            .collect();
        if missing.is_empty() {
            return Ok(replies);
        }
        tracing::debug!(n = missing.len(), "NOSCRIPT: loading scripts and retrying");
        let cluster = self.client.is_cluster();
        let mut retry = Vec::with_capacity(missing.len() + 2);
        let mut loaded: Vec<&'static str> = Vec::new();
        if !cluster {
            for &i in &missing {
                if let Some(Op::EvalSha { script, .. }) = ops.get(i) {
                    if !loaded.contains(&script.name) {
                        loaded.push(script.name);
                        retry.push(Op::ScriptLoad(script));
                    }
                }
            }
        }
        for &i in &missing {
            match ops.get(i) {
                // In a cluster, SCRIPT LOAD would reach one node only; EVAL runs the script on
                // the right node and caches it there.
                Some(Op::EvalSha { script, keys, args }) if cluster => retry.push(Op::Eval {
                    script,
                    keys: keys.clone(),
                    args: args.clone(),
                }),
                Some(op) => retry.push(op.clone()),
                None => return Err(bad("NOSCRIPT reply without a command")),
            }
        }
        let again = self.round_trip(&retry, write).await?;
        let skip = retry.len() - missing.len();
        for (k, &i) in missing.iter().enumerate() {
            if let (Some(slot), Some(v)) = (replies.get_mut(i), again.get(skip + k)) {
                *slot = v.clone();
            }
        }
        Ok(replies)
    }

    fn reserve_op(
        &self,
        cr: &CapacityReservation,
        mode: CommitMode,
        holders: Option<&[String]>,
    ) -> Op {
        let wid = &cr.worker_id;
        let mut keys = vec![self.keys.state(wid), self.keys.ledger(wid)];
        if holders.is_none() {
            keys.extend(
                cr.reservations
                    .iter()
                    .map(|r| self.keys.index(&r.container_id)),
            );
        }
        let mut args = Vec::with_capacity(5 + 6 * cr.reservations.len());
        args.push(wid.clone());
        args.push(
            cr.expected_version
                .map(|v| v.to_string())
                .unwrap_or_default(),
        );
        args.push(match mode {
            CommitMode::AllOrNothing => "all".to_owned(),
            CommitMode::Partial => "partial".to_owned(),
        });
        args.push(if holders.is_some() { "c" } else { "s" }.to_owned());
        args.push(cr.reservations.len().to_string());
        for (i, r) in cr.reservations.iter().enumerate() {
            args.push(r.container_id.clone());
            args.push(r.resources.cpu_millicores.to_string());
            args.push(r.resources.memory_mib.to_string());
            args.push(r.resources.gpu_count.to_string());
            args.push(r.gpu_type.clone().unwrap_or_default());
            args.push(holders.and_then(|h| h.get(i)).cloned().unwrap_or_default());
        }
        Op::script(&scripts::RESERVE, keys, args)
    }

    /// Parses reserve.lua's reply; also returns the 0-based indexes of charged reservations.
    fn reserve_result(
        cr: &CapacityReservation,
        reply: Val,
    ) -> Result<(WorkerResult, Vec<usize>, Option<u64>), RepoError> {
        let a = parse::array(reply)?;
        let tag = parse::string(a.first().ok_or_else(|| bad("empty reserve reply"))?)?;
        // The worker's version, carried by an 'already' rejection.
        let already_v = |r: &[Val]| -> Option<u64> {
            match r.first() {
                Some(Val::Bytes(k)) if k.as_slice() == b"already" => {
                    r.get(3).and_then(|v| parse::num(v).ok())
                }
                _ => None,
            }
        };
        let mut version = None;
        let (outcome, charged) = match tag.as_str() {
            "rej" => {
                version = already_v(&a[1..]);
                (Err(parse::rejection(&a[1..])?), Vec::new())
            }
            "ok" => {
                let get = |i: usize| a.get(i).ok_or_else(|| bad("short reserve reply"));
                let charged = match get(6)? {
                    Val::Array(c) => c
                        .iter()
                        .map(|v| parse::num(v).map(|n| (n as usize).saturating_sub(1)))
                        .collect::<Result<Vec<_>, _>>()?,
                    Val::Nil => Vec::new(),
                    other => return Err(bad(format!("bad charged list {other:?}"))),
                };
                let remainder = match a.get(7) {
                    Some(Val::Array(r)) => {
                        version = already_v(r);
                        Some(parse::rejection(r)?)
                    }
                    _ => None,
                };
                (
                    Ok(Committed {
                        new_version: parse::num(get(1)?)?,
                        free: Resources::new(
                            parse::num(get(2)?)?,
                            parse::num(get(3)?)?,
                            parse::num(get(4)?)?,
                        ),
                        accepted: parse::num(get(5)?)? as usize,
                        remainder,
                    }),
                    charged,
                )
            }
            other => return Err(bad(format!("unknown reserve reply {other:?}"))),
        };
        Ok((
            WorkerResult {
                worker_id: cr.worker_id.clone(),
                outcome,
            },
            charged,
            version,
        ))
    }

    async fn reserve_standalone(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        let ops = batch
            .iter()
            .map(|cr| self.reserve_op(cr, mode, None))
            .collect();
        let replies = self.run(ops, true).await?;
        batch
            .iter()
            .zip(replies)
            .map(|(cr, v)| Self::reserve_result(cr, v).map(|(r, _, _)| r))
            .collect()
    }

    /// Cluster mode: claim every container in its own slot first (round trip 1), then run the
    /// worker scripts with the claim outcome (round trip 2), then drop the claims this call
    /// made but did not commit (round trip 3, only when something was rejected).
    async fn reserve_cluster(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        let token = format!("{:016x}", rand::random::<u64>());
        let ms = now_ms();
        let mut claim_ops = Vec::new();
        let mut values = Vec::with_capacity(batch.len());
        for cr in batch {
            let v = format!("{}\n{token}\n{ms}", cr.worker_id);
            for r in &cr.reservations {
                claim_ops.push(Op::script(
                    &scripts::CLAIM,
                    vec![self.keys.index(&r.container_id)],
                    vec![v.clone()],
                ));
            }
            values.push(v);
        }
        let claims = self.run(claim_ops, true).await?;
        let mut claims = claims.into_iter();
        let mut holders: Vec<Vec<String>> = Vec::with_capacity(batch.len());
        let mut mine: Vec<Vec<bool>> = Vec::with_capacity(batch.len());
        let mut failure = None;
        let mut raw_claims: HashMap<(usize, usize), String> = HashMap::new();
        for cr in batch {
            let mut h = Vec::with_capacity(cr.reservations.len());
            let mut m = Vec::with_capacity(cr.reservations.len());
            for _ in &cr.reservations {
                let reply = claims.next().unwrap_or(Val::Nil);
                match parse::ok(reply).and_then(|v| parse::string(&v)) {
                    Ok(s) if s.is_empty() => {
                        h.push(String::new());
                        m.push(true);
                    }
                    Ok(s) => {
                        h.push(holder_of(&s).to_owned());
                        m.push(false);
                        raw_claims.insert((holders.len(), h.len() - 1), s);
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                        // Not claimed: make the worker script reject it rather than take it.
                        h.push("\u{1}unclaimed".to_owned());
                        m.push(false);
                    }
                }
            }
            holders.push(h);
            mine.push(m);
        }
        // Claims held by other calls: is the reservation behind them committed? Asked in the
        // same round trip as the worker scripts, from the holder's ledger.
        let mut contested: Vec<(String, String)> = Vec::new();
        for (i, cr) in batch.iter().enumerate() {
            for (j, r) in cr.reservations.iter().enumerate() {
                if !mine[i][j] && !holders[i][j].starts_with('\u{1}') {
                    contested.push((r.container_id.clone(), holders[i][j].clone()));
                }
            }
        }
        let mut stale_claims = Vec::new();
        let results = match failure {
            Some(e) => Err(e),
            None => {
                let mut ops: Vec<Op> = batch
                    .iter()
                    .zip(&holders)
                    .map(|(cr, h)| self.reserve_op(cr, mode, Some(h)))
                    .collect();
                ops.extend(
                    contested
                        .iter()
                        .map(|(c, w)| Op::HGet(self.keys.ledger(w), c.clone())),
                );
                match self.run(ops, true).await {
                    // The worker scripts may have run: keep the claims (they are the one-holder
                    // guarantee for whatever committed) and report the doubt.
                    Err(e) if e.is_ambiguous() => return Err(e),
                    Err(e) => Err(e),
                    Ok(mut replies) => {
                        let lookups = replies.split_off(batch.len().min(replies.len()));
                        let mut committed: HashSet<String> = HashSet::new();
                        for ((c, _), v) in contested.iter().zip(lookups) {
                            if !matches!(v, Val::Nil | Val::Err(_)) {
                                committed.insert(c.clone());
                            }
                        }
                        let parsed = batch
                            .iter()
                            .zip(replies)
                            .map(|(cr, v)| Self::reserve_result(cr, v))
                            .collect::<Result<Vec<_>, RepoError>>();
                        match parsed {
                            Err(e) => Err(e),
                            Ok(parsed) => {
                                let committed = self
                                    .await_contested(&parsed, committed, &raw_claims, batch)
                                    .await?;
                                Ok(parsed
                                    .into_iter()
                                    .map(|(mut r, charged, _version)| {
                                        uncommitted_claim_is_contended(
                                            &mut r,
                                            &committed,
                                            &mut stale_claims,
                                        );
                                        (r, charged)
                                    })
                                    .collect::<Vec<_>>())
                            }
                        }
                    }
                }
            }
        };
        // Drop our claims that did not commit, and abandoned claims of dead calls.
        let mut cleanup = Vec::new();
        for (i, cr) in batch.iter().enumerate() {
            for (j, r) in cr.reservations.iter().enumerate() {
                if stale_claims.contains(&r.container_id) {
                    if let Some(raw) = raw_claims.get(&(i, j)) {
                        if claim_age_ms(raw).is_some_and(|age| age > self.claim_grace.as_millis()) {
                            cleanup.push(Op::script(
                                &scripts::CAD,
                                vec![self.keys.index(&r.container_id)],
                                vec![raw.clone()],
                            ));
                        }
                    }
                }
            }
        }
        for (i, cr) in batch.iter().enumerate() {
            let charged: HashSet<usize> = match &results {
                Ok(r) => r
                    .get(i)
                    .map(|(_, c)| c.iter().copied().collect())
                    .unwrap_or_default(),
                Err(_) => HashSet::new(),
            };
            for (j, r) in cr.reservations.iter().enumerate() {
                if mine[i][j] && !charged.contains(&j) {
                    cleanup.push(Op::script(
                        &scripts::CAD,
                        vec![self.keys.index(&r.container_id)],
                        vec![values[i].clone()],
                    ));
                }
            }
        }
        if !cleanup.is_empty() {
            if let Err(e) = self.run(cleanup, true).await {
                tracing::warn!(error = %e, "could not drop unused claims; release_batch clears them after claim_grace");
            }
        }
        Ok(results?.into_iter().map(|(r, _)| r).collect())
    }

    /// Cluster mode, under contention only: a container rejected because another call's claim
    /// holds it, with no committed reservation behind that claim yet. Usually that call's
    /// worker script is just about to commit; wait a little (a few short round trips) for the
    /// commit, the claim's removal, or give up. Returns the containers found committed.
    async fn await_contested(
        &self,
        parsed: &[(WorkerResult, Vec<usize>, Option<u64>)],
        mut committed: HashSet<String>,
        raw_claims: &HashMap<(usize, usize), String>,
        batch: &[CapacityReservation],
    ) -> Result<HashSet<String>, RepoError> {
        let mut pending: Vec<(String, String, String)> = Vec::new();
        for (i, (r, _, _)) in parsed.iter().enumerate() {
            let rej = match &r.outcome {
                Err(rej) => Some(rej),
                Ok(c) => c.remainder.as_ref(),
            };
            if let Some(Rejection::AlreadyReserved {
                container_id,
                worker_id,
            }) = rej
            {
                if committed.contains(container_id) {
                    continue;
                }
                let j = batch
                    .get(i)
                    .and_then(|cr| {
                        cr.reservations
                            .iter()
                            .position(|x| &x.container_id == container_id)
                    })
                    .unwrap_or(usize::MAX);
                if let Some(raw) = raw_claims.get(&(i, j)) {
                    pending.push((container_id.clone(), worker_id.clone(), raw.clone()));
                }
            }
        }
        for attempt in 0..CONTESTED_POLLS {
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1 + attempt)).await;
            let mut ops = Vec::with_capacity(2 * pending.len());
            for (c, w, _) in &pending {
                ops.push(Op::Get(self.keys.index(c)));
                ops.push(Op::HGet(self.keys.ledger(w), c.clone()));
            }
            let replies = self.run(ops, false).await?;
            let mut still = Vec::new();
            for ((c, w, raw), pair) in pending.into_iter().zip(replies.chunks(2)) {
                let claim = pair.first().map(parse::opt_string).transpose()?.flatten();
                let held = !matches!(pair.get(1), Some(Val::Nil | Val::Err(_)) | None);
                if held {
                    committed.insert(c);
                } else if claim.as_deref() == Some(raw.as_str()) {
                    still.push((c, w, raw));
                }
                // else: the claim went away or changed hands: report a conflict (retry).
            }
            pending = still;
        }
        Ok(committed)
    }

    fn snapshot_ops(&self, script: &'static Script, worker_id: &str) -> Vec<Op> {
        vec![Op::script(
            script,
            vec![self.keys.state(worker_id), self.keys.ledger(worker_id)],
            vec![],
        )]
    }

    /// Runs snapshot.lua or reconcile.lua and builds the audit from its (pre-repair) snapshot.
    async fn audit_with(
        &self,
        script: &'static Script,
        worker_id: &str,
        write: bool,
    ) -> Result<(Worker, Vec<ReservationRecord>), RepoError> {
        validate_id("worker", worker_id)?;
        let reply = self
            .run(self.snapshot_ops(script, worker_id), write)
            .await?
            .pop()
            .ok_or_else(|| bad("no reply"))?;
        let reply = parse::ok(reply)?;
        if reply == Val::Nil {
            return Err(RepoError::UnknownWorker(worker_id.to_owned()));
        }
        let mut a = parse::array(reply)?.into_iter();
        let state = parse::hash(a.next().ok_or_else(|| bad("short snapshot"))?)?;
        let ledger = parse::hash(a.next().ok_or_else(|| bad("short snapshot"))?)?;
        Ok((parse::worker(&state)?, parse::ledger(worker_id, ledger)?))
    }

    fn report(w: &Worker, ledger: &[ReservationRecord]) -> AuditReport {
        let reserved = ledger.iter().fold(Resources::ZERO, |acc, r| {
            acc.checked_add(&r.resources)
                .unwrap_or(Resources::new(u64::MAX, u64::MAX, u64::MAX))
        });
        AuditReport::new(
            w.id.clone(),
            w.total,
            w.free,
            reserved,
            ledger.len(),
            w.resource_version,
        )
    }
}

#[async_trait]
impl WorkerRepository for RedisRepository {
    fn backend_name(&self) -> &str {
        self.name()
    }

    async fn register_worker(&self, spec: &WorkerSpec) -> Result<Worker, RepoError> {
        validate_spec(spec)?;
        let id = &spec.id;
        let args = vec![
            id.clone(),
            spec.pool.clone(),
            spec.status.as_str().to_owned(),
            spec.priority.to_string(),
            spec.gpu_type.clone().unwrap_or_default(),
            u8::from(spec.requires_pool_selector).to_string(),
            u8::from(spec.preemptable).to_string(),
            spec.total.cpu_millicores.to_string(),
            spec.total.memory_mib.to_string(),
            spec.total.gpu_count.to_string(),
        ];
        // The id goes into the set first (same pipeline): list_workers never misses a
        // registered worker. The set is never shrunk, so it doubles as the tombstone index.
        let ops = vec![
            Op::SAdd(self.keys.workers(), id.clone()),
            Op::script(
                &scripts::REGISTER,
                vec![
                    self.keys.state(id),
                    self.keys.ledger(id),
                    self.keys.tomb(id),
                ],
                args,
            ),
        ];
        let mut replies = self.run(ops, true).await?.into_iter();
        parse::ok(replies.next().ok_or_else(|| bad("no reply"))?)?;
        let a = parse::array(replies.next().ok_or_else(|| bad("no reply"))?)?;
        let get = |i: usize| a.get(i).ok_or_else(|| bad("short register reply"));
        match parse::string(get(0)?)?.as_str() {
            "ok" => {
                let mut w = Worker::from_spec(spec, parse::num(get(1)?)?);
                w.free = Resources::new(
                    parse::num(get(2)?)?,
                    parse::num(get(3)?)?,
                    parse::num(get(4)?)?,
                );
                Ok(w)
            }
            "below" => Err(RepoError::TotalBelowReserved {
                resource: parse::resource_kind(get(1)?)?,
                total: parse::num(get(2)?)?,
                reserved: parse::num(get(3)?)?,
            }),
            other => Err(bad(format!("unknown register reply {other:?}"))),
        }
    }

    async fn remove_worker(&self, worker_id: &str) -> Result<bool, RepoError> {
        validate_id("worker", worker_id)?;
        let base = vec![
            self.keys.state(worker_id),
            self.keys.ledger(worker_id),
            self.keys.tomb(worker_id),
        ];
        let cluster = self.client.is_cluster();
        for _ in 0..REMOVE_ATTEMPTS {
            let mut keys = base.clone();
            let mut args = vec![worker_id.to_owned(), self.mode().to_owned()];
            if !cluster {
                // The script must declare the index keys it deletes: read the ledger first.
                let cids = self
                    .run(vec![Op::HKeys(self.keys.ledger(worker_id))], false)
                    .await?
                    .pop()
                    .ok_or_else(|| bad("no reply"))?;
                for c in parse::array(cids)? {
                    let c = parse::string(&c)?;
                    keys.push(self.keys.index(&c));
                    args.push(c);
                }
            }
            let reply = self
                .run(vec![Op::script(&scripts::REMOVE, keys, args)], true)
                .await?
                .pop()
                .ok_or_else(|| bad("no reply"))?;
            let a = parse::array(reply)?;
            let tag = parse::string(a.first().ok_or_else(|| bad("empty remove reply"))?)?;
            match tag.as_str() {
                "absent" => return Ok(false),
                "retry" => continue,
                "ok" => {
                    if cluster && a.len() > 1 {
                        let ops = a[1..]
                            .iter()
                            .map(|c| {
                                parse::string(c).map(|c| {
                                    Op::script(
                                        &scripts::UNCLAIM,
                                        vec![self.keys.index(&c)],
                                        vec![worker_id.to_owned()],
                                    )
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        self.run(ops, true).await?;
                    }
                    return Ok(true);
                }
                other => return Err(bad(format!("unknown remove reply {other:?}"))),
            }
        }
        Err(bad(format!(
            "worker {worker_id:?}: ledger kept changing during remove_worker"
        )))
    }

    async fn get_worker(&self, worker_id: &str) -> Result<Option<Worker>, RepoError> {
        validate_id("worker", worker_id)?;
        let reply = self
            .run(vec![Op::HGetAll(self.keys.state(worker_id))], false)
            .await?
            .pop()
            .ok_or_else(|| bad("no reply"))?;
        let m = parse::hash(reply)?;
        if m.is_empty() {
            return Ok(None);
        }
        parse::worker(&m).map(Some)
    }

    async fn list_workers(&self, pool: Option<&str>) -> Result<Vec<Worker>, RepoError> {
        if let Some(p) = pool {
            validate_id("pool", p)?;
        }
        let ids = self
            .run(vec![Op::SMembers(self.keys.workers())], false)
            .await?
            .pop()
            .ok_or_else(|| bad("no reply"))?;
        let ids = parse::array(ids)?
            .iter()
            .map(parse::string)
            .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ops = ids
            .iter()
            .map(|id| Op::HGetAll(self.keys.state(id)))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for reply in self.run(ops, false).await? {
            let m = parse::hash(reply)?;
            if m.is_empty() {
                continue; // removed (the id stays in the set as a tombstone)
            }
            let w = parse::worker(&m)?;
            if pool.is_none_or(|p| w.pool == p) {
                out.push(w);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn reserve_batch(
        &self,
        batch: &[CapacityReservation],
        mode: CommitMode,
    ) -> Result<Vec<WorkerResult>, RepoError> {
        validate_batch(batch)?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let out = if self.client.is_cluster() {
            self.reserve_cluster(batch, mode).await
        } else {
            self.reserve_standalone(batch, mode).await
        };
        out
    }

    async fn release_batch(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<ReleaseOutcome>, RepoError> {
        validate_release(container_ids)?;
        if container_ids.is_empty() {
            return Ok(Vec::new());
        }
        let cluster = self.client.is_cluster();
        // Round trip 1: where is each container held?
        let ops = container_ids
            .iter()
            .map(|c| Op::Get(self.keys.index(c)))
            .collect();
        let index = self
            .run(ops, false)
            .await?
            .iter()
            .map(parse::opt_string)
            .collect::<Result<Vec<_>, _>>()?;
        // Group by worker, keeping the input order inside each group.
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, v) in index.iter().enumerate() {
            if let Some(v) = v {
                groups.entry(holder_of(v)).or_default().push(i);
            }
        }
        let mut out: Vec<ReleaseOutcome> = container_ids
            .iter()
            .map(|c| ReleaseOutcome {
                container_id: c.clone(),
                released: None,
            })
            .collect();
        if groups.is_empty() {
            return Ok(out);
        }
        // Round trip 2: one release script per worker.
        let ops = groups
            .iter()
            .map(|(wid, idx)| {
                let mut keys = vec![self.keys.state(wid), self.keys.ledger(wid)];
                let mut args = vec![(*wid).to_owned(), self.mode().to_owned()];
                for &i in idx {
                    if !cluster {
                        keys.push(self.keys.index(&container_ids[i]));
                    }
                    args.push(container_ids[i].clone());
                }
                Op::script(&scripts::RELEASE, keys, args)
            })
            .collect();
        let replies = self.run(ops, true).await?;
        let mut cleanup = Vec::new();
        for ((wid, idx), reply) in groups.iter().zip(replies) {
            let a = parse::array(reply)?;
            for (&i, entry) in idx.iter().zip(a) {
                let released = match entry {
                    Val::Array(e) => {
                        let get = |k: usize| e.get(k).ok_or_else(|| bad("short release reply"));
                        Some(Released {
                            worker_id: (*wid).to_owned(),
                            resources: Resources::new(
                                parse::num(get(0)?)?,
                                parse::num(get(1)?)?,
                                parse::num(get(2)?)?,
                            ),
                            new_version: parse::num(get(3)?)?,
                        })
                    }
                    _ => None,
                };
                if cluster {
                    // Drop the claim when we released it, or when it is an abandoned claim
                    // (no ledger entry behind it for longer than claim_grace).
                    if let Some(v) = &index[i] {
                        let abandoned = released.is_none()
                            && claim_age_ms(v).is_none_or(|age| age > self.claim_grace.as_millis());
                        if released.is_some() || abandoned {
                            cleanup.push(Op::script(
                                &scripts::CAD,
                                vec![self.keys.index(&container_ids[i])],
                                vec![v.clone()],
                            ));
                        }
                    }
                }
                if let Some(o) = out.get_mut(i) {
                    o.released = released;
                }
            }
        }
        if !cleanup.is_empty() {
            // Round trip 3 (cluster only).
            self.run(cleanup, true).await?;
        }
        Ok(out)
    }

    async fn find_reservations(
        &self,
        container_ids: &[String],
    ) -> Result<Vec<Option<ReservationRecord>>, RepoError> {
        sched_core::validate::validate_release(container_ids)?;
        if container_ids.is_empty() {
            return Ok(Vec::new());
        }
        // Round trip 1: every index key. Round trip 2: every ledger entry found.
        let idx = self
            .run(
                container_ids
                    .iter()
                    .map(|c| Op::Get(self.keys.index(c)))
                    .collect(),
                false,
            )
            .await?;
        if idx.len() != container_ids.len() {
            return Err(bad("wrong number of replies"));
        }
        let mut holders: Vec<Option<String>> = Vec::with_capacity(idx.len());
        for v in &idx {
            holders.push(parse::opt_string(v)?.map(|v| holder_of(&v).to_owned()));
        }
        let asks: Vec<(usize, Op)> = holders
            .iter()
            .zip(container_ids)
            .enumerate()
            .filter_map(|(i, (h, c))| {
                h.as_ref()
                    .map(|w| (i, Op::HGet(self.keys.ledger(w), c.clone())))
            })
            .collect();
        let mut out: Vec<Option<ReservationRecord>> = vec![None; container_ids.len()];
        if asks.is_empty() {
            return Ok(out);
        }
        let (which, ops): (Vec<usize>, Vec<Op>) = asks.into_iter().unzip();
        let held = self.run(ops, false).await?;
        if held.len() != which.len() {
            return Err(bad("wrong number of replies"));
        }
        for (i, v) in which.into_iter().zip(held) {
            if let (Some(held), Some(wid)) = (parse::opt_string(&v)?, holders[i].as_ref()) {
                let (resources, gpu_type) = parse::held(&held)?;
                out[i] = Some(ReservationRecord {
                    worker_id: wid.clone(),
                    container_id: container_ids[i].clone(),
                    resources,
                    gpu_type,
                });
            }
        }
        Ok(out)
    }

    async fn list_reservations(
        &self,
        worker_id: &str,
    ) -> Result<Vec<ReservationRecord>, RepoError> {
        self.audit_with(&scripts::SNAPSHOT, worker_id, false)
            .await
            .map(|(_, l)| l)
    }

    async fn audit_worker(
        &self,
        worker_id: &str,
        mode: AuditMode,
    ) -> Result<AuditReport, RepoError> {
        let (script, repair) = match mode {
            AuditMode::Check => (&scripts::SNAPSHOT, false),
            AuditMode::Repair => (&scripts::RECONCILE, true),
        };
        let (w, l) = self.audit_with(script, worker_id, repair).await?;
        let report = Self::report(&w, &l);
        if repair && !report.is_consistent() {
            tracing::warn!(worker = worker_id, drift = ?report.drift, "reconciled drift");
        }
        Ok(report)
    }
}

impl RedisRepository {
    /// Test hook: overwrites a worker's stored free capacity without touching the ledger, to
    /// simulate drift (for testing `audit` and `reconcile`). Returns false for an unknown worker.
    pub async fn corrupt_free(&self, worker_id: &str, free: Resources) -> Result<bool, RepoError> {
        validate_id("worker", worker_id)?;
        let exists = self.get_worker(worker_id).await?.is_some();
        if !exists {
            return Ok(false);
        }
        let ops = vec![Op::Eval {
            script: &scripts::CORRUPT,
            keys: vec![self.keys.state(worker_id)],
            args: vec![
                free.cpu_millicores.to_string(),
                free.memory_mib.to_string(),
                free.gpu_count.to_string(),
            ],
        }];
        let reply = self
            .run(ops, true)
            .await?
            .pop()
            .ok_or_else(|| bad("no reply"))?;
        parse::ok(reply).map(|_| true)
    }

    /// Deletes every key of this repository's prefix (`SCAN MATCH prefix* ` + `UNLINK`), on
    /// every node. For tests and tear-down; not atomic.
    pub async fn delete_all_keys(&self) -> Result<u64, RepoError> {
        let keys = self
            .client
            .keys_matching(&self.keys.pattern())
            .await
            .map_err(|e| e.into_repo(false))?;
        let n = keys.len() as u64;
        for chunk in keys.chunks(500) {
            let ops: Vec<Op> = chunk.iter().map(|k| Op::Unlink(k.clone())).collect();
            for v in self.round_trip(&ops, true).await? {
                parse::ok(v)?;
            }
        }
        Ok(n)
    }
}
