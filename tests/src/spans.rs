//! [`SpanRecorder`]: captures the fields of the `sched.repo` spans that the
//! [`Traced`](sched_core::layers::Traced) layer opens, so a backend's tests can assert what it
//! reports per call (its round trips above all).
//!
//! ```
//! # async fn demo() {
//! use sched_core::layers::Traced;
//! use sched_core::WorkerRepository;
//! let (spans, _guard) = sched_tests::spans::SpanRecorder::install();
//! let repo = Traced::new(sched_memory::MemoryRepository::new());
//! repo.list_workers(None).await.unwrap();
//! let list = spans.only("list_workers");
//! assert_eq!(list.get("round_trips").map(String::as_str), Some("1"));
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// One span's fields, by name, as text (`Debug` for numbers).
pub type Fields = BTreeMap<String, String>;

/// Collects the fields of every closed `sched.repo` span, in closing order. Cheap to clone.
#[derive(Clone, Default)]
pub struct SpanRecorder {
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

impl<S: tracing::Subscriber> Layer<S> for SpanRecorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        if attrs.metadata().name() == "sched.repo" {
            let mut fields = Fields::new();
            attrs.record(&mut Collect(&mut fields));
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            open.insert(id.into_u64(), fields);
        }
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(fields) = open.get_mut(&id.into_u64()) {
            values.record(&mut Collect(fields));
        }
    }
    fn on_close(&self, id: Id, _: Context<'_, S>) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(fields) = open.remove(&id.into_u64()) {
            let mut closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
            closed.push(fields);
        }
    }
}

impl SpanRecorder {
    /// A recorder installed as this thread's default subscriber until the guard drops (use a
    /// current-thread runtime, so the calls run on this thread).
    pub fn install() -> (SpanRecorder, tracing::subscriber::DefaultGuard) {
        let spans = SpanRecorder::default();
        let guard = tracing_subscriber::registry()
            .with(spans.clone())
            .set_default();
        (spans, guard)
    }

    /// Takes the spans closed so far, in closing order.
    pub fn take(&self) -> Vec<Fields> {
        let mut closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *closed)
    }

    /// Takes the spans closed so far and returns the one whose `op` is `op`.
    ///
    /// # Panics
    /// Unless exactly one span of that operation closed (a test helper).
    pub fn only(&self, op: &str) -> Fields {
        let mut found: Vec<Fields> = (self.take().into_iter())
            .filter(|s| s.get("op").map(String::as_str) == Some(op))
            .collect();
        assert_eq!(found.len(), 1, "one {op} span expected: {found:#?}");
        found.remove(0)
    }
}

/// The field `name` of `span`, or `"<unset>"`.
pub fn field<'a>(span: &'a Fields, name: &str) -> &'a str {
    span.get(name).map_or("<unset>", String::as_str)
}
