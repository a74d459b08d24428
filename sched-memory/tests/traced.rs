//! The `Traced` layer: one `sched.repo` span per repository call, with the backend, the workers,
//! the containers and the round trips of that call; and the scheduler traces every call it makes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sched_core::layers::{Fault, Op, Select, Traced};
use sched_core::{
    CapacityReservation, CommitMode, ContainerRequest, ResourceReservation, Resources, Scheduler,
    SchedulerConfig, WorkerRepository,
};
use sched_memory::MemoryRepository;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

type Fields = BTreeMap<String, String>;

/// Collects the fields of every closed span named `sched.repo`.
#[derive(Clone, Default)]
struct Spans {
    open: Arc<Mutex<BTreeMap<u64, Fields>>>,
    closed: Arc<Mutex<Vec<Fields>>>,
}

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        if attrs.metadata().name() == "sched.repo" {
            let mut fields = Fields::new();
            attrs.record(&mut Collect(&mut fields));
            self.open.lock().unwrap().insert(id.into_u64(), fields);
        }
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(fields) = self.open.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Collect(fields));
        }
    }
    fn on_close(&self, id: Id, _: Context<'_, S>) {
        if let Some(fields) = self.open.lock().unwrap().remove(&id.into_u64()) {
            self.closed.lock().unwrap().push(fields);
        }
    }
}

impl Spans {
    /// Takes the closed spans, in closing order.
    fn take(&self) -> Vec<Fields> {
        std::mem::take(&mut *self.closed.lock().unwrap())
    }
}

fn field<'a>(span: &'a Fields, name: &str) -> &'a str {
    span.get(name).map_or("<unset>", String::as_str)
}

fn only<'a>(spans: &'a [Fields], op: &str) -> &'a Fields {
    let found: Vec<_> = spans.iter().filter(|s| field(s, "op") == op).collect();
    assert_eq!(found.len(), 1, "one {op} span in {spans:#?}");
    found[0]
}

fn subscriber() -> (Spans, tracing::subscriber::DefaultGuard) {
    let spans = Spans::default();
    let guard = tracing_subscriber::registry()
        .with(spans.clone())
        .set_default();
    (spans, guard)
}

async fn four_workers() -> MemoryRepository {
    MemoryRepository::builder()
        .cpu_workers(4, Resources::cpu_mem(10_000, 10_000))
        .build()
        .await
}

#[tokio::test(flavor = "current_thread")]
async fn the_scheduler_traces_every_call_with_its_round_trips() {
    let repo = four_workers().await;
    let (spans, _guard) = subscriber();
    let sched = Scheduler::new(repo.clone(), SchedulerConfig::default());
    let burst = (0..20)
        .map(|i| ContainerRequest::new(format!("c{i}"), Resources::cpu_mem(100, 100)))
        .collect();
    let placed: Vec<_> = sched.schedule_batch(burst).await;
    assert!(placed.iter().all(Result::is_ok), "{placed:?}");

    let spans = spans.take();
    let list = only(&spans, "list_workers");
    assert_eq!(field(list, "backend"), "memory");
    assert_eq!(field(list, "workers"), "4");
    assert_eq!(field(list, "round_trips"), "1");
    let reserve = only(&spans, "reserve_batch");
    assert_eq!(field(reserve, "workers"), "4", "balanced: every worker");
    assert_eq!(field(reserve, "containers"), "20");
    assert_eq!(field(reserve, "round_trips"), "1");
    assert_eq!(field(reserve, "error"), "<unset>");
    assert_eq!(spans.len(), 2, "a warm-up read and one commit: {spans:#?}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_wrapped_repository_traces_direct_calls_and_failures() {
    let repo = four_workers().await;
    let traced = Traced::new(repo.clone());
    let (spans, _guard) = subscriber();

    let batch: Vec<_> = (0..3)
        .map(|w| {
            let rs = (0..2)
                .map(|c| ResourceReservation::new(format!("c{w}-{c}"), Resources::cpu_mem(1, 1)))
                .collect();
            CapacityReservation::new(format!("worker-{w}"), rs)
        })
        .collect();
    let ids: Vec<String> = (0..3)
        .flat_map(|w| (0..2).map(move |c| format!("c{w}-{c}")))
        .collect();
    let held = traced
        .reserve_batch(&batch, CommitMode::AllOrNothing)
        .await
        .unwrap();
    assert!(held.iter().all(|r| r.outcome.is_ok()), "{held:?}");
    let out = traced.release_batch(&ids).await.unwrap();
    assert_eq!(out.len(), 6);
    let spans_now = spans.take();
    let release = only(&spans_now, "release_batch");
    assert_eq!(field(release, "containers"), "6");
    assert_eq!(field(release, "workers"), "3", "the distinct holders freed");
    assert_eq!(field(release, "round_trips"), "1");

    // Bad input: refused before the store is asked, so no round trip, and the kind is named.
    let bad = [CapacityReservation::new("", vec![])];
    let err = traced
        .reserve_batch(&bad, CommitMode::Partial)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_input");
    // A store failure (injected) is named by its kind too.
    repo.faults().on(Select::op(Op::GetWorker), Fault::Fail, 1);
    let err = traced.get_worker("worker-0").await.unwrap_err();
    let spans_now = spans.take();
    let failed = only(&spans_now, "reserve_batch");
    assert_eq!(field(failed, "error"), "invalid_input");
    assert_eq!(field(failed, "round_trips"), "0");
    let down = only(&spans_now, "get_worker");
    assert_eq!(field(down, "error"), err.kind());
    assert_eq!(field(down, "error"), "unavailable");
    assert_eq!(
        field(down, "round_trips"),
        "0",
        "an injected fault sends nothing"
    );
}
