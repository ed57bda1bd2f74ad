//! The event: the seam between what produces a trace (the sampler, the exact-mode
//! decoder) and what consumes it (the Parquet writer, the run report, a test's `Vec`).

use std::sync::Arc;

/// What a row says happened (DESIGN.md, "The events table").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Call,
    Return,
    Exception,
    Unfinished,
    Gap,
    Yield,
    Resume,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Call => "call",
            EventKind::Return => "return",
            EventKind::Exception => "exception",
            EventKind::Unfinished => "unfinished",
            EventKind::Gap => "gap",
            EventKind::Yield => "yield",
            EventKind::Resume => "resume",
        }
    }
}

/// Which mode produced a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Sampled,
    Exact,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Sampled => "sampled",
            Source::Exact => "exact",
        }
    }
}

/// One row of the events table, without the run id (the writer adds it).
///
/// Strings that repeat on every row of a function (`function`, `module`, `file`,
/// `caller`, `thread_name`) are `Arc<str>` so producers hand out cached names without
/// copying them.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub pid: i32,
    pub tid: i64,
    pub thread_name: Option<Arc<str>>,
    pub seq: u64,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    pub kind: EventKind,
    pub source: Source,
    pub call_id: u64,
    pub parent_id: Option<u64>,
    pub depth: i32,
    pub function: Arc<str>,
    pub module: Arc<str>,
    pub file: Arc<str>,
    pub line: i32,
    pub caller: Option<Arc<str>>,
    pub caller_line: Option<i32>,
    /// Call rows: a JSON object of argument name to repr.
    pub args: Option<String>,
    /// Return rows: the repr of the value; exception rows: the exception's text.
    pub value: Option<String>,
    /// Exception rows: the qualified exception type.
    pub exception: Option<String>,
    pub duration_ns: Option<i64>,
    pub duration_max_ns: Option<i64>,
    /// Gap rows: how many calls the row stands for; 1 elsewhere.
    pub count: u32,
}

/// The error a sink may return (a full disk, a closed pipe).
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Whoever consumes events.
///
/// An event is lent rather than given: the trace writer copies its fields into
/// column builders and keeps nothing of it, and an `Event` is about 260 bytes, which
/// moving through every layer between the producer and the writer copied several
/// times per event (on an exact trace of call-heavy code, 6% of the run's CPU). It is
/// lent mutably so that a sink in between can renumber it (`seq`, call ids of one
/// process among several) before passing it on, without copying it.
pub trait EventSink {
    fn event(&mut self, event: &mut Event) -> Result<(), SinkError>;

    /// Called by producers now and then, events or not, so a sink that buffers can
    /// write out what is due (the trace writer completes a segment every second).
    fn tick(&mut self, _now: std::time::Instant) -> Result<(), SinkError> {
        Ok(())
    }

    /// Called when a traced process says which Python it runs (exact mode: its
    /// hook's greeting), before its events: a sink that writes the run down as it
    /// goes can have it from then on, not only when the run ends.
    fn python_identified(&mut self, _pid: u32, _python_version: &str) {}
}

impl EventSink for Vec<Event> {
    fn event(&mut self, event: &mut Event) -> Result<(), SinkError> {
        self.push(event.clone());
        Ok(())
    }
}
