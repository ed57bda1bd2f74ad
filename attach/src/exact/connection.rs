//! One hooked process: its code and thread tables, and the calls open on each of its
//! threads, rebuilt into events as its records arrive.
//!
//! Each thread keeps a stack of open calls. A `call` or `resume` record opens one (a
//! new `call_id`; its parent is the innermost call open on that thread, which is the
//! real caller: on one thread frames nest, whatever asyncio interleaves between
//! them). A `return`, `yield` or `exception` record closes the innermost open call of
//! the same code object. Calls above it, whose end the hook never sent (events
//! dropped), are closed as `unfinished` then; an end whose start was never seen (it
//! started before the hook, or its record was dropped) is skipped and counted.

use std::collections::HashMap;

use ahash::AHashMap;
use std::sync::Arc;

use crate::event::{Event, EventKind, EventSink, SinkError, Source};
use crate::redact::{is_secret_name, looks_secret, REDACTED};
use crate::repr::ReprOptions;

use super::value::render_into;
use super::wire::{Anchor, ArgValues, EventClock, EventHead, Hello, Record, WireError};

/// A code object the hook described.
#[derive(Debug)]
struct Code {
    /// The code object it names, for matching ends (3.8–3.10 method names are
    /// separate codes of one base).
    base: u32,
    function: Arc<str>,
    module: Arc<str>,
    file: Arc<str>,
    /// `module.function`, the `caller` of its callees.
    qualified: Arc<str>,
    first_line: i32,
    /// Per argument: its name as a JSON object key with the colon (`"name":`), and
    /// whether the name is a secret one (its value is redacted).
    arg_keys: Vec<(String, bool)>,
}

#[derive(Debug)]
struct Callee {
    function: Arc<str>,
    module: Arc<str>,
    file: Arc<str>,
    first_line: i32,
}

/// A call that started and has not ended.
#[derive(Debug)]
struct Open {
    call_id: u64,
    code: u32,
    base: u32,
    parent_id: Option<u64>,
    caller: Option<Arc<str>>,
    depth: i32,
    start_ns: i64,
    line: i32,
}

#[derive(Debug, Default)]
struct Thread {
    tid: i64,
    name: Option<Arc<str>>,
    stack: Vec<Open>,
}

/// Numbers every connection of a session draws from.
#[derive(Debug, Default)]
pub struct Counters {
    pub next_seq: u64,
    pub next_call_id: u64,
}

/// What one process sent, for the session's statistics.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    pub events: u64,
    pub dropped: u64,
    /// Ends whose start was never seen.
    pub unmatched: u64,
    /// (code id) to calls counted but not recorded.
    pub limited: HashMap<u32, u64>,
}

/// The state of one connection after its handshake.
#[derive(Debug)]
pub struct Connection {
    pub hello: Hello,
    pid: i32,
    // Looked up several times per event.
    codes: ById<Code>,
    callees: ById<Callee>,
    threads: AHashMap<u32, Thread>,
    /// The last event's wall-clock time: the end of calls left open.
    last_ts: i64,
    /// With events stamped in ticks, the anchors around the current batch's events:
    /// the one before them and the batch's own.
    anchors: Option<(Anchor, Anchor)>,
    pub counts: ConnectionCounts,
    /// The row handed to the sink, filled anew for each event. Sinks borrow it and
    /// keep nothing, so its names are replaced only when they change: on call-heavy
    /// code most rows name the same function, module, file, caller and thread as the
    /// row before, and building a fresh `Event` for each cost two atomic reference
    /// count changes per name and a drop of the whole row.
    row: Event,
    /// Strings of rows already written (`args`, `value`), kept for the next values
    /// to be rendered into: a call-heavy trace with values renders two a call.
    spare_text: Vec<String>,
}

impl Connection {
    pub fn new(hello: Hello) -> Connection {
        Connection {
            pid: i32::try_from(hello.pid).unwrap_or(i32::MAX),
            last_ts: hello.wall_ns,
            anchors: match hello.clock {
                EventClock::PerfCounter => None,
                EventClock::Ticks(anchor) => Some((anchor, anchor)),
            },
            hello,
            codes: ById::default(),
            callees: ById::default(),
            threads: AHashMap::new(),
            counts: ConnectionCounts::default(),
            row: empty_row(),
            spare_text: Vec::new(),
        }
    }

    /// `module.function` of a code the process described (for reports).
    pub fn code_name(&self, code: u32) -> Option<(Arc<str>, Arc<str>)> {
        self.codes
            .get(code)
            .map(|c| (c.module.clone(), c.function.clone()))
    }

    /// The wall-clock time of an event stamped `ts`.
    fn wall(&self, ts: i64) -> i64 {
        let perf_ns = match self.anchors {
            None => ts,
            Some((before, after)) => ticks_to_perf_ns(ts, before, after),
        };
        self.hello
            .wall_ns
            .saturating_add(perf_ns.saturating_sub(self.hello.perf_ns))
    }

    /// Turns one record into events.
    pub fn record(
        &mut self,
        record: Record<'_>,
        opts: &ReprOptions,
        counters: &mut Counters,
        sink: &mut dyn EventSink,
    ) -> Result<(), RecordError> {
        match record {
            Record::Code {
                id,
                base,
                function,
                module,
                file,
                first_line,
                arg_names,
            } => {
                let qualified: Arc<str> = format!("{module}.{function}").into();
                let arg_keys = arg_names
                    .iter()
                    .map(|name| {
                        let key = format!("{}:", serde_json::Value::from(name.as_str()));
                        (key, is_secret_name(name, &opts.redact_names))
                    })
                    .collect();
                self.codes.insert(
                    id,
                    Code {
                        base,
                        function: function.into(),
                        module: module.into(),
                        file: file.into(),
                        qualified,
                        first_line,
                        arg_keys,
                    },
                );
            }
            Record::Thread { id, tid, name } => {
                let thread = self.threads.entry(id).or_default();
                thread.tid = tid;
                thread.name = (!name.is_empty()).then(|| name.into());
            }
            Record::Callee {
                id,
                function,
                module,
                file,
                first_line,
            } => {
                self.callees.insert(
                    id,
                    Callee {
                        function: function.into(),
                        module: module.into(),
                        file: file.into(),
                        first_line,
                    },
                );
            }
            Record::Call { head, args } => {
                let args = match args {
                    None => None,
                    Some(values) => Some(self.args_json(head.code, values, opts)?),
                };
                self.recycle_text();
                self.open(head, EventKind::Call, args, counters, sink)?;
            }
            Record::Resume { head } => self.open(head, EventKind::Resume, None, counters, sink)?,
            Record::Return { head, value } => {
                self.recycle_text();
                let value = value.map(|v| self.render(v, opts)).transpose()?;
                self.close(head, EventKind::Return, value, None, counters, sink)?;
            }
            Record::Yield { head, value } => {
                self.recycle_text();
                let value = value.map(|v| self.render(v, opts)).transpose()?;
                self.close(head, EventKind::Yield, value, None, counters, sink)?;
            }
            Record::Exception {
                head,
                exception,
                message,
            } => {
                let message = if looks_secret(&message) {
                    REDACTED.to_string()
                } else {
                    message
                };
                let exception = (!exception.is_empty()).then_some(exception);
                self.close(
                    head,
                    EventKind::Exception,
                    Some(message),
                    exception,
                    counters,
                    sink,
                )?;
            }
            Record::Gap {
                head,
                callee,
                count,
            } => self.gap(head, callee, count, counters, sink)?,
            Record::Limited { code, count } => {
                *self.counts.limited.entry(code).or_default() += u64::from(count);
            }
            Record::Anchor(anchor) => {
                if let Some((_, after)) = self.anchors {
                    self.anchors = Some((after, anchor));
                }
            }
        }
        Ok(())
    }

    /// Keeps the strings of the row last written for the next values to be rendered
    /// into (the row's fields are filled anew for each row).
    #[inline]
    fn recycle_text(&mut self) {
        // Without values (`--no-args`) both are always `None`: two tests and done.
        if let Some(text) = self.row.args.take() {
            self.keep_spare(text);
        }
        if let Some(text) = self.row.value.take() {
            self.keep_spare(text);
        }
    }

    fn keep_spare(&mut self, text: String) {
        if self.spare_text.len() < 4 {
            self.spare_text.push(text);
        }
    }

    /// The repr of an encoded value, in a spare string's memory.
    fn render(&mut self, bytes: &[u8], opts: &ReprOptions) -> Result<String, WireError> {
        let text = self.spare_text.pop().unwrap_or_default();
        render_into(bytes, opts, text)
    }

    /// The `args` column of a call: a JSON object of argument name to repr, in the
    /// order of the code's arguments, written straight into one string.
    fn args_json(
        &mut self,
        code: u32,
        values: ArgValues<'_>,
        opts: &ReprOptions,
    ) -> Result<String, RecordError> {
        let code = self.codes.get(code).ok_or(RecordError::UnknownCode(code))?;
        let mut json = self.spare_text.pop().unwrap_or_default();
        json.clear();
        let mut rendered = self.spare_text.pop().unwrap_or_default();
        json.push('{');
        for (n, value) in values.iter().enumerate() {
            let (index, bytes) = value?;
            let (key, secret) = code
                .arg_keys
                .get(usize::from(index))
                .ok_or_else(|| WireError(format!("argument {index} of a code without it")))?;
            if n > 0 {
                json.push(',');
            }
            json.push_str(key);
            // A secret name's value is not printed at all (the hook sent it already
            // redacted, or checked as a value when the record was parsed).
            let text = if *secret {
                REDACTED
            } else {
                rendered = render_into(bytes, opts, rendered)?;
                rendered.as_str()
            };
            push_json_string(&mut json, text);
        }
        json.push('}');
        self.spare_text.push(rendered);
        Ok(json)
    }

    fn open(
        &mut self,
        head: EventHead,
        kind: EventKind,
        args: Option<String>,
        counters: &mut Counters,
        sink: &mut dyn EventSink,
    ) -> Result<(), RecordError> {
        let ts = self.wall(head.ts);
        self.last_ts = self.last_ts.max(ts);
        let code = self
            .codes
            .get(head.code)
            .ok_or(RecordError::UnknownCode(head.code))?;
        let thread = self.threads.entry(head.thread).or_default();
        let parent = thread.stack.last();
        let parent_id = parent.map(|p| p.call_id);
        let caller = parent
            .and_then(|p| self.codes.get(p.code))
            .map(|c| c.qualified.clone());
        let depth = i32::try_from(thread.stack.len()).unwrap_or(i32::MAX);
        let call_id = counters.next_call_id;
        counters.next_call_id += 1;
        let (line, caller_line) = match kind {
            EventKind::Call => (
                code.first_line,
                (head.line >= 0 && parent.is_some()).then_some(head.line),
            ),
            _ => (head.line, None),
        };
        let row = &mut self.row;
        row.pid = self.pid;
        row.tid = thread.tid;
        set_option_name(&mut row.thread_name, thread.name.as_ref());
        row.ts_ns = ts;
        row.kind = kind;
        row.source = Source::Exact;
        row.call_id = call_id;
        row.parent_id = parent_id;
        row.depth = depth;
        set_names(row, &code.function, &code.module, &code.file);
        row.line = line;
        set_option_name(&mut row.caller, caller.as_ref());
        row.caller_line = caller_line;
        set_texts_and_counts(row, args, None, 1);
        thread.stack.push(Open {
            call_id,
            code: head.code,
            base: code.base,
            parent_id,
            caller,
            depth,
            start_ns: ts,
            line,
        });
        Ok(emit(&mut self.row, counters, &mut self.counts, sink)?)
    }

    fn close(
        &mut self,
        head: EventHead,
        kind: EventKind,
        value: Option<String>,
        exception: Option<String>,
        counters: &mut Counters,
        sink: &mut dyn EventSink,
    ) -> Result<(), RecordError> {
        let ts = self.wall(head.ts);
        self.last_ts = self.last_ts.max(ts);
        let base = self
            .codes
            .get(head.code)
            .ok_or(RecordError::UnknownCode(head.code))?
            .base;
        let thread = self.threads.entry(head.thread).or_default();
        let Some(position) = thread.stack.iter().rposition(|o| o.base == base) else {
            self.counts.unmatched += 1;
            return Ok(());
        };
        let above = thread.stack.split_off(position + 1);
        let Some(open) = thread.stack.pop() else {
            return Ok(());
        };
        let (tid, name) = (thread.tid, thread.name.clone());
        for lost in above.into_iter().rev() {
            self.end_row(&lost, tid, &name, EventKind::Unfinished, ts, lost.line);
            emit(&mut self.row, counters, &mut self.counts, sink)?;
        }
        self.end_row(&open, tid, &name, kind, ts, head.line);
        self.row.value = value;
        self.row.exception = exception;
        Ok(emit(&mut self.row, counters, &mut self.counts, sink)?)
    }

    /// Fills the row that ends `open` at `ts` (without a value or exception).
    fn end_row(
        &mut self,
        open: &Open,
        tid: i64,
        thread_name: &Option<Arc<str>>,
        kind: EventKind,
        ts: i64,
        line: i32,
    ) {
        let row = &mut self.row;
        match self.codes.get(open.code) {
            Some(code) => set_names(row, &code.function, &code.module, &code.file),
            None => {
                let unknown: Arc<str> = Arc::from("");
                row.function = unknown.clone();
                row.module = unknown.clone();
                row.file = unknown;
            }
        }
        row.pid = self.pid;
        row.tid = tid;
        set_option_name(&mut row.thread_name, thread_name.as_ref());
        row.ts_ns = ts;
        row.kind = kind;
        row.source = Source::Exact;
        row.call_id = open.call_id;
        row.parent_id = open.parent_id;
        row.depth = open.depth;
        row.line = line;
        set_option_name(&mut row.caller, open.caller.as_ref());
        row.caller_line = None;
        set_texts_and_counts(row, None, Some(ts.saturating_sub(open.start_ns).max(0)), 1);
    }

    fn gap(
        &mut self,
        head: EventHead,
        callee: u32,
        count: u32,
        counters: &mut Counters,
        sink: &mut dyn EventSink,
    ) -> Result<(), RecordError> {
        let ts = self.wall(head.ts);
        let code = self
            .codes
            .get(head.code)
            .ok_or(RecordError::UnknownCode(head.code))?;
        let target = self
            .callees
            .get(callee)
            .ok_or(RecordError::UnknownCallee(callee))?;
        let thread = self.threads.entry(head.thread).or_default();
        let parent = thread.stack.iter().rev().find(|o| o.base == code.base);
        let caller = parent
            .and_then(|p| self.codes.get(p.code))
            .map_or_else(|| code.qualified.clone(), |c| c.qualified.clone());
        let call_id = counters.next_call_id;
        counters.next_call_id += 1;
        let row = &mut self.row;
        row.pid = self.pid;
        row.tid = thread.tid;
        set_option_name(&mut row.thread_name, thread.name.as_ref());
        row.ts_ns = ts;
        row.kind = EventKind::Gap;
        row.source = Source::Exact;
        row.call_id = call_id;
        row.parent_id = parent.map(|p| p.call_id);
        row.depth = parent.map_or(0, |p| p.depth + 1);
        set_names(row, &target.function, &target.module, &target.file);
        row.line = target.first_line;
        set_option_name(&mut row.caller, Some(&caller));
        row.caller_line = (head.line >= 0).then_some(head.line);
        set_texts_and_counts(row, None, None, count);
        Ok(emit(&mut self.row, counters, &mut self.counts, sink)?)
    }

    /// Ends every call still open (the process ended or recording stopped) with an
    /// `unfinished` row now: a call is known to have run until the connection
    /// ended (a `time.sleep(5)` stopped by `--timeout 1` ran 1 s, not until the last
    /// record the process sent before it), so that its duration is what it ran so
    /// far. The connection ends when its process exits, is killed or is detached
    /// from, and is read to its end within milliseconds of it.
    pub fn finish(
        &mut self,
        counters: &mut Counters,
        sink: &mut dyn EventSink,
    ) -> Result<(), SinkError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let ts = self.last_ts.max(now);
        let mut ids: Vec<u32> = self.threads.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(thread) = self.threads.get_mut(&id) else {
                continue;
            };
            let stack = std::mem::take(&mut thread.stack);
            let (tid, name) = (thread.tid, thread.name.clone());
            for open in stack.into_iter().rev() {
                self.end_row(&open, tid, &name, EventKind::Unfinished, ts, open.line);
                emit(&mut self.row, counters, &mut self.counts, sink)?;
            }
        }
        Ok(())
    }
}

fn emit(
    event: &mut Event,
    counters: &mut Counters,
    counts: &mut ConnectionCounts,
    sink: &mut dyn EventSink,
) -> Result<(), SinkError> {
    event.seq = counters.next_seq;
    counters.next_seq += 1;
    counts.events += 1;
    sink.event(event)
}

/// The hook's codes or callees by id. The hook numbers them from 0 up, so ids below
/// [`DENSE_IDS`] index a vector (looked up two or three times per event, where a
/// hash map hashed the id each time: 2-3% of a call-heavy recording's CPU); any
/// larger id (a process that made millions of code objects) goes to a map.
#[derive(Debug)]
struct ById<T> {
    dense: Vec<Option<T>>,
    sparse: AHashMap<u32, T>,
}

/// Ids kept in [`ById`]'s vector.
const DENSE_IDS: u32 = 1 << 20;

impl<T> Default for ById<T> {
    fn default() -> ById<T> {
        ById {
            dense: Vec::new(),
            sparse: AHashMap::new(),
        }
    }
}

impl<T> ById<T> {
    #[inline]
    fn get(&self, id: u32) -> Option<&T> {
        if id < DENSE_IDS {
            self.dense.get(id as usize)?.as_ref()
        } else {
            self.sparse.get(&id)
        }
    }

    fn insert(&mut self, id: u32, value: T) {
        if id < DENSE_IDS {
            let index = id as usize;
            if index >= self.dense.len() {
                self.dense.resize_with(index + 1, || None);
            }
            self.dense[index] = Some(value);
        } else {
            self.sparse.insert(id, value);
        }
    }
}

/// `perf_counter_ns` at `ticks` of the time-stamp counter, on the line through the
/// two anchors around it (the counter runs at a constant rate, which the pair
/// measures over the batch). Events of one batch keep their order, and a batch's
/// times meet the next one's at their shared anchor. Without a span to measure (no
/// batch yet) every time is the anchor's.
fn ticks_to_perf_ns(ticks: i64, before: Anchor, after: Anchor) -> i64 {
    let span_ticks = i128::from(after.ticks) - i128::from(before.ticks);
    if span_ticks <= 0 {
        return before.perf_ns;
    }
    let span_ns = i128::from(after.perf_ns) - i128::from(before.perf_ns);
    let elapsed = i128::from(ticks) - i128::from(before.ticks);
    let perf_ns = i128::from(before.perf_ns) + elapsed * span_ns / span_ticks;
    i64::try_from(perf_ns).unwrap_or(if perf_ns < 0 { i64::MIN } else { i64::MAX })
}

/// A row with every field empty, filled before each use.
fn empty_row() -> Event {
    let empty: Arc<str> = Arc::from("");
    Event {
        pid: 0,
        tid: 0,
        thread_name: None,
        seq: 0,
        ts_ns: 0,
        kind: EventKind::Call,
        source: Source::Exact,
        call_id: 0,
        parent_id: None,
        depth: 0,
        function: empty.clone(),
        module: empty.clone(),
        file: empty,
        line: 0,
        caller: None,
        caller_line: None,
        args: None,
        value: None,
        exception: None,
        duration_ns: None,
        duration_max_ns: None,
        count: 1,
    }
}

/// Appends `text` to `json` as a JSON string. Most reprs (numbers, names, short
/// strs) need no escape and are copied whole; the others go through serde_json.
fn push_json_string(json: &mut String, text: &str) {
    let plain = text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if plain {
        json.push('"');
        json.push_str(text);
        json.push('"');
    } else {
        json.push_str(&serde_json::Value::from(text).to_string());
    }
}

/// Points a row at the names of a code.
fn set_names(row: &mut Event, function: &Arc<str>, module: &Arc<str>, file: &Arc<str>) {
    set_name(&mut row.function, function);
    set_name(&mut row.module, module);
    set_name(&mut row.file, file);
}

/// Sets a row's `args` and `duration_ns`, its `count`, and clears the rest that only
/// some rows have (`value` and `exception` are set after, on the rows that have them).
fn set_texts_and_counts(
    row: &mut Event,
    args: Option<String>,
    duration_ns: Option<i64>,
    count: u32,
) {
    row.args = args;
    row.value = None;
    row.exception = None;
    row.duration_ns = duration_ns;
    row.duration_max_ns = None;
    row.count = count;
}

/// Points `slot` at `name`, cloning the `Arc` only when it names another string.
fn set_name(slot: &mut Arc<str>, name: &Arc<str>) {
    if !Arc::ptr_eq(slot, name) {
        *slot = name.clone();
    }
}

fn set_option_name(slot: &mut Option<Arc<str>>, name: Option<&Arc<str>>) {
    match (slot.as_ref(), name) {
        (Some(old), Some(new)) if Arc::ptr_eq(old, new) => {}
        _ => *slot = name.cloned(),
    }
}

/// Why a record could not be turned into events.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("an event names code {0}, which the hook never described")]
    UnknownCode(u32),
    #[error("a gap names callee {0}, which the hook never described")]
    UnknownCallee(u32),
    #[error(transparent)]
    Sink(SinkError),
}

impl From<SinkError> for RecordError {
    fn from(e: SinkError) -> RecordError {
        RecordError::Sink(e)
    }
}

#[cfg(test)]
mod tests {
    use super::{push_json_string, ticks_to_perf_ns, Anchor};

    #[test]
    fn ticks_become_nanoseconds_on_the_line_between_the_anchors() {
        // 3 ticks a nanosecond, from 1000 ns at tick 5000 to 2000 ns at tick 8000.
        let before = Anchor {
            ticks: 5_000,
            perf_ns: 1_000,
        };
        let after = Anchor {
            ticks: 8_000,
            perf_ns: 2_000,
        };
        let at = |ticks| ticks_to_perf_ns(ticks, before, after);
        assert_eq!(at(5_000), 1_000);
        assert_eq!(at(6_500), 1_500);
        assert_eq!(at(8_000), 2_000);
        // A tick read a little before the anchor (another CPU's counter) stays close.
        assert_eq!(at(4_997), 999);
        // Without a span, the anchor's time.
        assert_eq!(ticks_to_perf_ns(9_999, before, before), 1_000);
        // Counters of real machines: 2.5 GHz for an hour, no overflow.
        let start = Anchor {
            ticks: 1 << 60,
            perf_ns: 1 << 50,
        };
        let hour = Anchor {
            ticks: start.ticks + 9_000_000_000_000,
            perf_ns: start.perf_ns + 3_600_000_000_000,
        };
        assert_eq!(
            ticks_to_perf_ns(start.ticks + 2_500_000_000, start, hour),
            start.perf_ns + 1_000_000_000
        );
    }

    #[test]
    fn a_json_string_is_what_serde_json_writes() {
        for text in [
            "",
            "27",
            "'a b'",
            "<repr failed: ValueError>",
            "\"quoted\"",
            "back\\slash",
            "tab\there",
            "line\nbreak",
            "\u{7f}del",
            "é – ✓ 𝄞",
            "\u{1}",
        ] {
            let mut json = String::from("{");
            push_json_string(&mut json, text);
            let expected = format!("{{{}", serde_json::Value::from(text));
            assert_eq!(json, expected, "{text:?}");
            let back: String = serde_json::from_str(&json[1..]).expect("valid JSON");
            assert_eq!(back, text);
        }
    }
}
