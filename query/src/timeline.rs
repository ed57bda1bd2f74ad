//! The calls of a trace as per-thread timelines: what `tracer export` and `tracer view`
//! draw ([`QuerySession::timeline`]).
//!
//! Each call becomes a [`Span`] with one interval, nested inside its caller's:
//!
//! * **Exact calls** span their measured time: `[call ts, call ts + duration_ns]`.
//! * **Sampled calls** span their lower bound, the time they were certainly running:
//!   `[call ts, call ts + duration_ns]`, from the sample that first saw them for
//!   `duration_ns` (last sighting less first, 0 for a call seen once). The upper bound
//!   (`duration_max_ns`, from the sample before the first sighting to the first sample
//!   without the call) stays on the span as a number: drawn, it would overlap the next
//!   call at the same depth.
//! * **Unfinished calls** end at their last-seen time (their `unfinished` row's
//!   duration). A call with no end row at all (a killed recording whose last second
//!   was lost) ends at the latest end of the calls under it, else where it started.
//! * **Generators and coroutines** (exact mode): each stretch from a `call` or
//!   `resume` to its `yield` (or end) is a span of its own.
//! * **Calls into untraced code** (`gap` rows) stand for many calls and are not one
//!   interval: they stay on their caller as [`UntracedCalls`] with their summed lower
//!   bound.
//!
//! Spans are nested by time and stack depth, so a `--module` filter that drops a
//! caller keeps its callees inside the nearest kept caller. Intervals that would
//! break the nesting (a callee said to end after its caller) are clamped into it.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};

use crate::error::Result;
use crate::questions::{Filters, RunScope};
use crate::session::QuerySession;

/// How a call ended, from its end row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A `return` row.
    Returned,
    /// An `exception` row: the call ended by an exception.
    Raised,
    /// An `unfinished` row: still running when recording stopped.
    Unfinished,
    /// A `yield` row (exact mode): a generator or coroutine suspended; its `resume`
    /// is a span of its own.
    Yielded,
    /// No end row: the recording was killed before writing it.
    NoEnd,
}

impl Outcome {
    /// The word the trace and the exports use: `return`, `exception`, `unfinished`,
    /// `yield`, `no_end`.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Returned => "return",
            Outcome::Raised => "exception",
            Outcome::Unfinished => "unfinished",
            Outcome::Yielded => "yield",
            Outcome::NoEnd => "no_end",
        }
    }
}

/// Calls from one traced call into code that was not traced (one `gap` row).
#[derive(Debug, Clone, PartialEq)]
pub struct UntracedCalls {
    pub module: String,
    pub function: String,
    /// How many distinct calls the row stands for.
    pub calls: u64,
    /// Their summed lower bound, in nanoseconds.
    pub duration_ns: i64,
    /// Their summed upper bound, when known.
    pub duration_max_ns: Option<i64>,
}

/// One call as drawn: its interval (see the module doc) and what the trace says of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub call_id: u64,
    pub parent_id: Option<u64>,
    /// Stack depth in the trace (0 at the thread's root).
    pub depth: i32,
    /// Nesting level in this timeline: 0 for a span with no enclosing span kept.
    pub level: usize,
    pub module: String,
    pub function: String,
    pub file: Option<String>,
    pub line: Option<i32>,
    /// Call rows' JSON object of argument name to repr.
    pub args: Option<String>,
    /// `sampled` or `exact`.
    pub source: String,
    /// Start, nanoseconds since the epoch.
    pub start_ns: i64,
    /// End, nanoseconds since the epoch (`>= start_ns`).
    pub end_ns: i64,
    pub outcome: Outcome,
    /// The return or yielded value's repr, or the exception's message.
    pub value: Option<String>,
    /// The exception's qualified type.
    pub exception: Option<String>,
    /// The end row's duration: exact, or the sampled lower bound.
    pub duration_ns: Option<i64>,
    /// Sampled: the upper bound of the duration, when known.
    pub duration_max_ns: Option<i64>,
    /// Calls this call made into untraced code.
    pub untraced: Vec<UntracedCalls>,
}

impl Span {
    /// `module.function`, the name every export shows.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.module, self.function)
    }
}

/// The spans of one thread of one process of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadTimeline {
    pub run_id: String,
    pub pid: i32,
    pub tid: i64,
    /// The thread's Python name, as last seen.
    pub thread_name: Option<String>,
    /// In pre-order: each span after the span enclosing it, siblings by start.
    pub spans: Vec<Span>,
    /// Untraced calls whose caller was filtered out.
    pub untraced: Vec<UntracedCalls>,
}

impl ThreadTimeline {
    /// `MainThread (tid 1234)`, or `tid 1234` for a thread whose name is unknown.
    pub fn label(&self) -> String {
        match &self.thread_name {
            Some(name) => format!("{name} (tid {})", self.tid),
            None => format!("tid {}", self.tid),
        }
    }
}

/// The timelines of a trace path (or of the runs and threads the filters keep).
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Ordered by run, process, then the thread's first span.
    pub threads: Vec<ThreadTimeline>,
    /// The time the exports count from: the earliest start of a run read, else the
    /// earliest span.
    pub origin_ns: i64,
    /// True when `--limit` cut the rows read.
    pub truncated: bool,
    /// The SQL that read the rows.
    pub sql: String,
    /// Facts the reader should know (a run that did not finish).
    pub notes: Vec<String>,
}

impl Timeline {
    /// How many spans all threads hold.
    pub fn span_count(&self) -> usize {
        self.threads.iter().map(|t| t.spans.len()).sum()
    }

    /// The latest end of any span (the origin when there is none).
    pub fn end_ns(&self) -> i64 {
        self.threads
            .iter()
            .flat_map(|t| t.spans.iter().map(|s| s.end_ns))
            .max()
            .unwrap_or(self.origin_ns)
    }
}

/// One row of the timeline query, before nesting.
struct Row {
    run_id: String,
    pid: i32,
    tid: i64,
    thread_name: Option<String>,
    gap: bool,
    count: u64,
    span: Span,
    /// The end is unknown until the calls under it are placed.
    open_ended: bool,
}

impl QuerySession {
    /// Every call of the trace path (of the runs, threads, modules and times the
    /// filters keep; at most `filters.limit` call and gap rows, in the trace's order) as
    /// per-thread timelines.
    pub fn timeline(&self, filters: &Filters) -> Result<Timeline> {
        let scope = self.scope(filters.run.as_deref())?;
        let limit = filters.limit.map(|n| n.min(crate::session::MAX_ROWS));
        let sql = timeline_sql(filters, &scope, limit)?;
        let probe = match limit {
            Some(limit) => timeline_sql(filters, &scope, Some(limit.saturating_add(1)))?,
            None => sql.clone(),
        };
        let (_, batches) = self.execute(&probe, None)?;
        let mut rows = Vec::new();
        for batch in &batches {
            read_rows(batch, &mut rows);
        }
        let truncated = limit.is_some_and(|limit| rows.len() > limit);
        if let Some(limit) = limit {
            rows.truncate(limit);
        }
        let starts = scope.runs.iter().filter_map(|(_, started)| *started).min();
        let first_span = rows.iter().map(|r| r.span.start_ns).min();
        let origin_ns = match (starts, first_span) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(0),
        };
        Ok(Timeline {
            threads: nest(rows),
            origin_ns,
            truncated,
            sql,
            notes: self.notes(),
        })
    }
}

/// Call, resume and gap rows with their end rows, in the trace's order.
fn timeline_sql(filters: &Filters, scope: &RunScope, limit: Option<usize>) -> Result<String> {
    let mut conditions = vec!["kind IN ('call', 'resume', 'gap')".to_string()];
    conditions.extend(filters.conditions("", scope, true)?);
    let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
    let started = format!(
        "SELECT run_id, seq, pid, tid, thread_name, kind, call_id, parent_id, depth, \
                module, function, file, line, args, source, count, ts, \
                duration_ns, duration_max_ns \
         FROM events WHERE {} ORDER BY run_id, seq{limit}",
        conditions.join(" AND ")
    );
    Ok(format!(
        "WITH started AS ({started}) \
         SELECT c.run_id, c.pid, c.tid, COALESCE(e.thread_name, c.thread_name) AS thread_name, \
                c.kind, c.call_id, c.parent_id, c.depth, c.module, c.function, c.file, \
                c.line, c.args, c.source, CAST(c.count AS BIGINT) AS count, \
                CAST(c.ts AS BIGINT) AS start_ns, \
                e.kind AS outcome, e.value, e.exception, \
                COALESCE(e.duration_ns, c.duration_ns) AS duration_ns, \
                COALESCE(e.duration_max_ns, c.duration_max_ns) AS duration_max_ns \
         FROM started c LEFT JOIN events e \
           ON c.kind <> 'gap' AND e.run_id = c.run_id AND e.call_id = c.call_id \
              AND e.kind IN ('return', 'exception', 'unfinished', 'yield') \
         ORDER BY c.run_id, c.seq"
    ))
}

/// The cells of column `name` as integers (nulls and a missing column as `None`).
fn int_cells(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let Some(column) = batch.column_by_name(name) else {
        return vec![None; batch.num_rows()];
    };
    let Ok(values) = cast(column, &DataType::Int64) else {
        return vec![None; batch.num_rows()];
    };
    let values = values.as_primitive::<Int64Type>();
    (0..values.len())
        .map(|i| values.is_valid(i).then(|| values.value(i)))
        .collect()
}

/// The cells of column `name` as text (nulls and a missing column as `None`).
fn text_cells(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let Some(column) = batch.column_by_name(name) else {
        return vec![None; batch.num_rows()];
    };
    let Ok(values) = cast(column, &DataType::Utf8) else {
        return vec![None; batch.num_rows()];
    };
    let values = values.as_string::<i32>();
    (0..values.len())
        .map(|i| values.is_valid(i).then(|| values.value(i).to_string()))
        .collect()
}

fn read_rows(batch: &RecordBatch, rows: &mut Vec<Row>) {
    let texts = |name| text_cells(batch, name);
    let ints = |name| int_cells(batch, name);
    let (run_id, thread_name, kind, module, function, file, args, source) = (
        texts("run_id"),
        texts("thread_name"),
        texts("kind"),
        texts("module"),
        texts("function"),
        texts("file"),
        texts("args"),
        texts("source"),
    );
    let (outcome, value, exception) = (texts("outcome"), texts("value"), texts("exception"));
    let (pid, tid, call_id, parent_id, depth, line, count, start, duration, duration_max) = (
        ints("pid"),
        ints("tid"),
        ints("call_id"),
        ints("parent_id"),
        ints("depth"),
        ints("line"),
        ints("count"),
        ints("start_ns"),
        ints("duration_ns"),
        ints("duration_max_ns"),
    );
    for i in 0..batch.num_rows() {
        let start_ns = start[i].unwrap_or(0);
        let gap = kind[i].as_deref() == Some("gap");
        let outcome = match outcome[i].as_deref() {
            Some("return") => Outcome::Returned,
            Some("exception") => Outcome::Raised,
            Some("unfinished") => Outcome::Unfinished,
            Some("yield") => Outcome::Yielded,
            _ => Outcome::NoEnd,
        };
        let open_ended = !gap && outcome == Outcome::NoEnd;
        let lower = duration[i].unwrap_or(0).max(0);
        rows.push(Row {
            run_id: run_id[i].clone().unwrap_or_default(),
            pid: pid[i].unwrap_or(0) as i32,
            tid: tid[i].unwrap_or(0),
            thread_name: thread_name[i].clone(),
            gap,
            count: count[i].unwrap_or(1).max(0) as u64,
            span: Span {
                call_id: call_id[i].unwrap_or(0) as u64,
                parent_id: parent_id[i].map(|p| p as u64),
                depth: depth[i].unwrap_or(0) as i32,
                level: 0,
                module: module[i].clone().unwrap_or_default(),
                function: function[i].clone().unwrap_or_default(),
                file: file[i].clone(),
                line: line[i].map(|l| l as i32),
                args: args[i].clone(),
                source: source[i].clone().unwrap_or_default(),
                start_ns,
                end_ns: start_ns.saturating_add(lower),
                outcome,
                value: value[i].clone(),
                exception: exception[i].clone(),
                duration_ns: duration[i],
                duration_max_ns: duration_max[i],
                untraced: Vec::new(),
            },
            open_ended,
        });
    }
}

/// Groups rows by thread and nests each thread's spans (see the module doc).
fn nest(rows: Vec<Row>) -> Vec<ThreadTimeline> {
    let mut threads: Vec<ThreadTimeline> = Vec::new();
    let mut index_of: HashMap<(String, i32, i64), usize> = HashMap::new();
    let mut open_ended: Vec<Vec<bool>> = Vec::new();
    let mut gaps: Vec<Vec<(Option<u64>, UntracedCalls)>> = Vec::new();
    for row in rows {
        let key = (row.run_id.clone(), row.pid, row.tid);
        let index = *index_of.entry(key).or_insert_with(|| {
            threads.push(ThreadTimeline {
                run_id: row.run_id.clone(),
                pid: row.pid,
                tid: row.tid,
                thread_name: None,
                spans: Vec::new(),
                untraced: Vec::new(),
            });
            open_ended.push(Vec::new());
            gaps.push(Vec::new());
            threads.len() - 1
        });
        let thread = &mut threads[index];
        if row.thread_name.is_some() {
            thread.thread_name = row.thread_name;
        }
        if row.gap {
            gaps[index].push((
                row.span.parent_id,
                UntracedCalls {
                    module: row.span.module,
                    function: row.span.function,
                    calls: row.count,
                    duration_ns: row.span.duration_ns.unwrap_or(0).max(0),
                    duration_max_ns: row.span.duration_max_ns,
                },
            ));
        } else {
            thread.spans.push(row.span);
            open_ended[index].push(row.open_ended);
        }
    }
    for ((thread, open), thread_gaps) in threads.iter_mut().zip(open_ended).zip(gaps) {
        place(&mut thread.spans, open);
        let position: HashMap<u64, usize> = thread
            .spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.call_id, i))
            .collect();
        for (parent, untraced) in thread_gaps {
            match parent.and_then(|p| position.get(&p)) {
                Some(&i) => thread.spans[i].untraced.push(untraced),
                None => thread.untraced.push(untraced),
            }
        }
    }
    threads.sort_by_key(|t| {
        (
            t.run_id.clone(),
            t.pid,
            t.spans.first().map_or(i64::MAX, |s| s.start_ns),
            t.tid,
        )
    });
    threads
}

/// Orders one thread's spans in pre-order, sets each span's level, ends open-ended
/// spans after the spans under them, and clamps intervals so that every span lies
/// inside its enclosing span and after its previous sibling.
fn place(spans: &mut Vec<Span>, ends_unknown: Vec<bool>) {
    let mut order: Vec<(Span, bool)> = std::mem::take(spans)
        .into_iter()
        .zip(ends_unknown)
        .collect();
    order.sort_by_key(|(s, _)| (s.start_ns, s.depth));
    // Enclosing spans: index into `placed`, and the latest end under each.
    let mut stack: Vec<(usize, i64)> = Vec::new();
    let mut placed: Vec<Span> = Vec::with_capacity(order.len());
    let mut open_ended: Vec<bool> = Vec::with_capacity(order.len());
    // The latest time already drawn: no span starts before it.
    let mut cursor = i64::MIN;
    let close = |placed: &mut Vec<Span>, open_ended: &[bool], stack: &mut Vec<(usize, i64)>| {
        if let Some((index, latest_under)) = stack.pop() {
            if open_ended[index] {
                placed[index].end_ns = placed[index].end_ns.max(latest_under);
            }
            let end = placed[index].end_ns;
            if let Some(parent) = stack.last_mut() {
                parent.1 = parent.1.max(end);
            }
            end
        } else {
            i64::MIN
        }
    };
    for (mut span, end_unknown) in order {
        while let Some(&(top, _)) = stack.last() {
            let parent = &placed[top];
            let inside =
                parent.depth < span.depth && (open_ended[top] || span.start_ns <= parent.end_ns);
            if inside {
                break;
            }
            cursor = cursor.max(close(&mut placed, &open_ended, &mut stack));
        }
        span.start_ns = span.start_ns.max(cursor);
        if let Some(&(top, _)) = stack.last() {
            if !open_ended[top] {
                span.start_ns = span.start_ns.min(placed[top].end_ns);
                span.end_ns = span.end_ns.min(placed[top].end_ns);
            }
        }
        span.end_ns = span.end_ns.max(span.start_ns);
        span.level = stack.len();
        cursor = cursor.max(span.start_ns);
        placed.push(span);
        open_ended.push(end_unknown);
        stack.push((placed.len() - 1, i64::MIN));
    }
    while !stack.is_empty() {
        close(&mut placed, &open_ended, &mut stack);
    }
    *spans = placed;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(call_id: u64, depth: i32, start: i64, end: i64) -> Span {
        Span {
            call_id,
            parent_id: None,
            depth,
            level: 0,
            module: "m".into(),
            function: format!("f{call_id}"),
            file: None,
            line: None,
            args: None,
            source: "sampled".into(),
            start_ns: start,
            end_ns: end,
            outcome: Outcome::Returned,
            value: None,
            exception: None,
            duration_ns: Some(end - start),
            duration_max_ns: None,
            untraced: Vec::new(),
        }
    }

    fn placed(spans: Vec<Span>, open: Vec<bool>) -> Vec<(u64, usize, i64, i64)> {
        let mut spans = spans;
        place(&mut spans, open);
        spans
            .iter()
            .map(|s| (s.call_id, s.level, s.start_ns, s.end_ns))
            .collect()
    }

    #[test]
    fn callees_nest_under_callers_and_siblings_follow_each_other() {
        let spans = vec![
            span(1, 0, 0, 100),
            span(3, 1, 50, 90),
            span(2, 1, 10, 40),
            span(4, 2, 60, 70),
        ];
        assert_eq!(
            placed(spans, vec![false; 4]),
            vec![
                (1, 0, 0, 100),
                (2, 1, 10, 40),
                (3, 1, 50, 90),
                (4, 2, 60, 70)
            ]
        );
    }

    #[test]
    fn a_span_with_no_end_ends_with_the_last_span_under_it() {
        let mut root = span(1, 0, 0, 0);
        root.outcome = Outcome::NoEnd;
        let spans = vec![root, span(2, 1, 10, 40), span(3, 1, 50, 90)];
        assert_eq!(
            placed(spans, vec![true, false, false]),
            vec![(1, 0, 0, 90), (2, 1, 10, 40), (3, 1, 50, 90)]
        );
    }

    #[test]
    fn a_kept_callee_whose_caller_was_filtered_out_nests_by_depth() {
        // f1 at depth 0 called something filtered out (depth 1) that called f2.
        let spans = vec![span(1, 0, 0, 100), span(2, 2, 20, 30), span(3, 0, 100, 120)];
        assert_eq!(
            placed(spans, vec![false; 3]),
            vec![(1, 0, 0, 100), (2, 1, 20, 30), (3, 0, 100, 120)]
        );
    }

    #[test]
    fn overlapping_intervals_are_clamped_into_a_nesting() {
        // A callee said to outlive its caller, and a sibling starting before the
        // previous one ended.
        let spans = vec![span(1, 0, 0, 50), span(2, 1, 10, 80), span(3, 0, 40, 60)];
        assert_eq!(
            placed(spans, vec![false; 3]),
            vec![(1, 0, 0, 50), (2, 1, 10, 50), (3, 0, 50, 60)]
        );
    }
}
