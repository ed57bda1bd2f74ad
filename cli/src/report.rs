//! The run report printed on stderr when recording ends: key figures, the call tree
//! when it is small (the most called functions when it is not), the calls into code
//! that was not traced with the `--include` that would trace them, and the exact
//! `tracer query` commands to dig in.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use ahash::AHashMap;

use attach::{Event, EventKind, EventSink};
use query::arrow::array::{Array, ArrayRef, AsArray};
use query::arrow::compute::cast;
use query::arrow::datatypes::{DataType, Int64Type};
use query::{Answer, QueryError, QuerySession, OUTERMOST};
use storage::run::{Mode, RunInfo};

use crate::output::human_duration;

/// Calls kept for the tree; a run with more shows its most called functions instead.
const TREE_CALLS: usize = 60;

/// A longest interval between samples of more than this many periods is reported.
const HELD_OFF_PERIODS: i64 = 10;

/// Counts and a small call tree, gathered from the events as they are written.
#[derive(Debug, Default)]
pub struct Summary {
    pub events: u64,
    pub calls: u64,
    pub returns: u64,
    pub exceptions: u64,
    pub unfinished: u64,
    pub gap_rows: u64,
    /// `(module, function)` to (calls, total lower-bound nanoseconds of the calls
    /// that ended).
    functions: FunctionTotals,
    /// The first calls: label, depth, call id, and the duration bounds once known.
    tree: Vec<TreeNode>,
    tree_index: AHashMap<u64, usize>,
    /// The highest call id in `tree_index`: most ends need no lookup.
    tree_max_call_id: u64,
    /// `(callee module, callee function, caller)` to calls, and whether the callee
    /// is a C function (no Python source: `--include` cannot trace it).
    gaps: HashMap<(String, String, String), (u64, bool)>,
}

/// Calls and time per `(module, function)`, updated on every call and end while
/// recording. An event's names are `Arc`s shared by all events of the same code, so
/// they are found by address first (no hashing or comparing of text per event); every
/// `Arc` seen is held, so an address cannot come to name another string.
#[derive(Debug, Default)]
struct FunctionTotals {
    rows: Vec<(FunctionName, Totals)>,
    by_text: AHashMap<FunctionName, usize>,
    by_address: AHashMap<(usize, usize), usize>,
    held: Vec<FunctionName>,
    /// The last function found, by address, and its row: a call and its return,
    /// recursion and loops name the same function event after event.
    last: Option<((usize, usize), usize)>,
}

/// `(module, function)`.
type FunctionName = (Arc<str>, Arc<str>);

/// Calls, and total lower-bound nanoseconds of the calls that ended: `None` while
/// none has (a killed run's calls still running have no end row, and their time is
/// unknown, not 0), as `tracer query --top` leaves such a total empty.
type Totals = (u64, Option<i64>);

impl FunctionTotals {
    fn address(module: &Arc<str>, function: &Arc<str>) -> (usize, usize) {
        (
            Arc::as_ptr(module).cast::<u8>() as usize,
            Arc::as_ptr(function).cast::<u8>() as usize,
        )
    }

    /// The row of a function, if it has one, remembering these `Arc`s' addresses.
    fn find(&mut self, module: &Arc<str>, function: &Arc<str>) -> Option<usize> {
        let address = FunctionTotals::address(module, function);
        if let Some((last, row)) = self.last {
            if last == address {
                return Some(row);
            }
        }
        let row = match self.by_address.get(&address) {
            Some(&row) => row,
            None => {
                let key = (module.clone(), function.clone());
                let row = *self.by_text.get(&key)?;
                self.held.push(key);
                self.by_address.insert(address, row);
                row
            }
        };
        self.last = Some((address, row));
        Some(row)
    }

    fn entry(&mut self, module: &Arc<str>, function: &Arc<str>) -> &mut Totals {
        let row = match self.find(module, function) {
            Some(row) => row,
            None => {
                let row = self.rows.len();
                let key = (module.clone(), function.clone());
                self.rows.push((key.clone(), (0, None)));
                self.by_text.insert(key, row);
                self.by_address
                    .insert(FunctionTotals::address(module, function), row);
                row
            }
        };
        &mut self.rows[row].1
    }

    fn get_mut(&mut self, module: &Arc<str>, function: &Arc<str>) -> Option<&mut Totals> {
        let row = self.find(module, function)?;
        Some(&mut self.rows[row].1)
    }

    fn iter(&self) -> impl Iterator<Item = (&FunctionName, &Totals)> {
        self.rows.iter().map(|(key, totals)| (key, totals))
    }
}

#[derive(Debug)]
struct TreeNode {
    label: String,
    /// The process and thread of the call, whose calls are shown together.
    pid: i32,
    tid: i64,
    thread_name: Option<String>,
    call_id: u64,
    parent_id: Option<u64>,
    duration: Option<(i64, Option<i64>)>,
    how: &'static str,
}

/// The tree's calls in the order they are printed, each with its indent level, and
/// a heading before the calls of each thread when they come from several: the calls
/// are kept in the order they were made, in which the threads' calls interleave, so
/// each thread's calls are laid out from the parent links.
fn tree_lines(tree: &[TreeNode]) -> Vec<(usize, String, &TreeNode)> {
    let mut threads: Vec<(i32, i64)> = Vec::new();
    for node in tree {
        if !threads.contains(&(node.pid, node.tid)) {
            threads.push((node.pid, node.tid));
        }
    }
    let several_processes = threads.iter().any(|t| t.0 != threads[0].0);
    let mut lines = Vec::with_capacity(tree.len());
    for &(pid, tid) in &threads {
        let calls: Vec<&TreeNode> = tree
            .iter()
            .filter(|n| n.pid == pid && n.tid == tid)
            .collect();
        let heading = if threads.len() > 1 {
            let name = calls
                .iter()
                .find_map(|n| n.thread_name.as_deref())
                .map(|name| format!("thread {name} (tid {tid})"))
                .unwrap_or_else(|| format!("thread {tid}"));
            if several_processes {
                format!("pid {pid}, {name}:")
            } else {
                format!("{name}:")
            }
        } else {
            String::new()
        };
        let has_parent = |n: &TreeNode| {
            n.parent_id
                .is_some_and(|p| calls.iter().any(|c| c.call_id == p))
        };
        let base = usize::from(threads.len() > 1);
        let mut pending: Vec<(usize, &TreeNode)> = calls
            .iter()
            .rev()
            .filter(|n| !has_parent(n))
            .map(|n| (base, *n))
            .collect();
        let mut heading = Some(heading);
        while let Some((level, node)) = pending.pop() {
            lines.push((level, heading.take().unwrap_or_default(), node));
            pending.extend(
                calls
                    .iter()
                    .rev()
                    .filter(|c| c.parent_id == Some(node.call_id))
                    .map(|c| (level + 1, *c)),
            );
        }
    }
    lines
}

impl Summary {
    pub fn add(&mut self, e: &Event) {
        self.events += 1;
        match e.kind {
            EventKind::Call => {
                self.calls += 1;
                self.functions.entry(&e.module, &e.function).0 += 1;
                if self.tree.len() < TREE_CALLS {
                    self.tree_index.insert(e.call_id, self.tree.len());
                    self.tree_max_call_id = self.tree_max_call_id.max(e.call_id);
                    self.tree.push(TreeNode {
                        label: call_label(&e.function, e.args.as_deref()),
                        pid: e.pid,
                        tid: e.tid,
                        thread_name: e.thread_name.as_deref().map(str::to_string),
                        call_id: e.call_id,
                        parent_id: e.parent_id,
                        duration: None,
                        how: "",
                    });
                }
            }
            // A yield ends a stretch of a generator or coroutine (exact mode): its
            // time is the function's, as the later stretches' are.
            EventKind::Return | EventKind::Exception | EventKind::Unfinished | EventKind::Yield => {
                match e.kind {
                    EventKind::Return => self.returns += 1,
                    EventKind::Exception => self.exceptions += 1,
                    EventKind::Unfinished => self.unfinished += 1,
                    _ => {}
                }
                let ns = e.duration_ns.unwrap_or(0);
                if !called_by_itself(e) {
                    if let Some(f) = self.functions.get_mut(&e.module, &e.function) {
                        f.1 = Some(f.1.unwrap_or(0) + ns);
                    }
                }
                let in_tree = if e.call_id <= self.tree_max_call_id {
                    self.tree_index.get(&e.call_id).copied()
                } else {
                    None
                };
                if let Some(i) = in_tree {
                    self.tree[i].duration = Some((ns, e.duration_max_ns));
                    self.tree[i].how = end_note(e.kind.as_str());
                }
            }
            EventKind::Gap => {
                self.gap_rows += 1;
                let gap = self
                    .gaps
                    .entry((
                        e.module.to_string(),
                        e.function.to_string(),
                        e.caller.as_deref().unwrap_or("?").to_string(),
                    ))
                    .or_insert((0, true));
                gap.0 += u64::from(e.count);
                gap.1 &= e.file.is_empty();
            }
            EventKind::Resume => {}
        }
    }
}

/// Whether the call a row ends was made by the same function (recursion): its time
/// is inside its caller's, and a function's total counts a recursion once, as
/// `tracer query --slow` does.
fn called_by_itself(e: &Event) -> bool {
    let Some(caller) = e.caller.as_deref() else {
        return false;
    };
    caller.len() == e.module.len() + 1 + e.function.len()
        && caller.starts_with(&*e.module)
        && caller.ends_with(&*e.function)
        && caller.as_bytes()[e.module.len()] == b'.'
}

/// What the tree says after a call's duration: how it ended, when not by returning.
fn end_note(kind: &str) -> &'static str {
    match kind {
        "exception" => " raised",
        "unfinished" => " unfinished",
        "yield" => " yielded",
        _ => "",
    }
}

/// `function(arg=repr, ...)`, args shortened for one line.
fn call_label(function: &str, args: Option<&str>) -> String {
    let args = args
        .and_then(|a| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(a).ok())
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let text = v.as_str().unwrap_or_default();
                    let short: String = text.chars().take(30).collect();
                    let cut = if short.len() < text.len() { "..." } else { "" };
                    format!("{k}={short}{cut}")
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    format!("{function}({args})")
}

impl Summary {
    /// The summary of one run of a finished or killed trace, rebuilt with a few
    /// aggregate queries, so a trace of millions of events is never read row by row.
    pub fn from_trace(session: &QuerySession, run_id: &str) -> Result<Summary, QueryError> {
        let scope = format!("run_id = '{}'", run_id.replace('\'', "''"));
        let ask = |sql: String| session.sql(&sql, None);
        let mut summary = Summary::default();

        let kinds = ask(format!(
            "SELECT kind, COUNT(*) AS n FROM events WHERE {scope} GROUP BY kind"
        ))?;
        for (kind, n) in text_values(&kinds, "kind")
            .into_iter()
            .zip(int_values(&kinds, "n"))
        {
            let n = n.unwrap_or(0) as u64;
            summary.events += n;
            match kind.as_deref() {
                Some("call") => summary.calls = n,
                Some("return") => summary.returns = n,
                Some("exception") => summary.exceptions = n,
                Some("unfinished") => summary.unfinished = n,
                Some("gap") => summary.gap_rows = n,
                _ => {}
            }
        }

        let functions = ask(format!(
            "SELECT module, function, \
                    SUM(CASE WHEN kind = 'call' THEN 1 ELSE 0 END) AS calls, \
                    SUM(duration_ns) FILTER (WHERE kind <> 'call' AND {OUTERMOST}) AS total \
             FROM events WHERE {scope} \
                AND kind IN ('call', 'return', 'exception', 'unfinished', 'yield') \
             GROUP BY module, function"
        ))?;
        let modules = text_values(&functions, "module");
        let names = text_values(&functions, "function");
        let calls = int_values(&functions, "calls");
        let totals = int_values(&functions, "total");
        for i in 0..modules.len() {
            let module: Arc<str> = modules[i].clone().unwrap_or_default().into();
            let function: Arc<str> = names[i].clone().unwrap_or_default().into();
            *summary.functions.entry(&module, &function) =
                (calls[i].unwrap_or(0) as u64, totals[i]);
        }

        let tree = ask(format!(
            "SELECT c.function, c.args, c.pid, c.tid, c.thread_name, c.call_id, c.parent_id, \
                    e.kind AS end_kind, e.duration_ns, e.duration_max_ns \
             FROM (SELECT pid, tid, thread_name, call_id, parent_id, seq, function, args FROM events \
                   WHERE {scope} AND kind = 'call' ORDER BY seq LIMIT {TREE_CALLS}) c \
             LEFT JOIN (SELECT pid, call_id, kind, duration_ns, duration_max_ns FROM events \
                        WHERE {scope} AND kind IN ('return', 'exception', 'unfinished', 'yield')) e \
             ON c.pid = e.pid AND c.call_id = e.call_id \
             ORDER BY c.seq"
        ))?;
        let functions = text_values(&tree, "function");
        let args = text_values(&tree, "args");
        let pids = int_values(&tree, "pid");
        let tids = int_values(&tree, "tid");
        let thread_names = text_values(&tree, "thread_name");
        let call_ids = int_values(&tree, "call_id");
        let parent_ids = int_values(&tree, "parent_id");
        let ends = text_values(&tree, "end_kind");
        let mins = int_values(&tree, "duration_ns");
        let maxes = int_values(&tree, "duration_max_ns");
        for i in 0..functions.len() {
            summary.tree.push(TreeNode {
                label: call_label(functions[i].as_deref().unwrap_or("?"), args[i].as_deref()),
                pid: pids[i].unwrap_or(0) as i32,
                tid: tids[i].unwrap_or(0),
                thread_name: thread_names[i].clone(),
                call_id: call_ids[i].unwrap_or(0) as u64,
                parent_id: parent_ids[i].map(|p| p as u64),
                duration: ends[i].as_ref().map(|_| (mins[i].unwrap_or(0), maxes[i])),
                how: end_note(ends[i].as_deref().unwrap_or("")),
            });
        }

        let gaps = ask(format!(
            "SELECT module, function, COALESCE(caller, '?') AS caller, SUM(count) AS n, \
                    MAX(COALESCE(file, '')) AS file \
             FROM events WHERE {scope} AND kind = 'gap' GROUP BY module, function, COALESCE(caller, '?')"
        ))?;
        let modules = text_values(&gaps, "module");
        let names = text_values(&gaps, "function");
        let callers = text_values(&gaps, "caller");
        let counts = int_values(&gaps, "n");
        let files = text_values(&gaps, "file");
        for i in 0..modules.len() {
            summary.gaps.insert(
                (
                    modules[i].clone().unwrap_or_default(),
                    names[i].clone().unwrap_or_default(),
                    callers[i].clone().unwrap_or_default(),
                ),
                (
                    counts[i].unwrap_or(0) as u64,
                    files[i].as_deref().unwrap_or("").is_empty(),
                ),
            );
        }
        Ok(summary)
    }
}

/// Column `name` of an answer as text, one entry per row (nulls kept as `None`).
fn text_values(answer: &Answer, name: &str) -> Vec<Option<String>> {
    column_values(answer, name, &DataType::Utf8, |column, i| {
        column.as_string::<i32>().value(i).to_string()
    })
}

/// Column `name` of an answer as integers, one entry per row (nulls kept as `None`).
fn int_values(answer: &Answer, name: &str) -> Vec<Option<i64>> {
    column_values(answer, name, &DataType::Int64, |column, i| {
        column.as_primitive::<Int64Type>().value(i)
    })
}

fn column_values<T>(
    answer: &Answer,
    name: &str,
    as_type: &DataType,
    value: impl Fn(&ArrayRef, usize) -> T,
) -> Vec<Option<T>> {
    let mut values = Vec::new();
    for batch in &answer.batches {
        let rows = batch.num_rows();
        match batch
            .column_by_name(name)
            .and_then(|column| cast(column, as_type).ok())
        {
            Some(column) => {
                values.extend((0..rows).map(|i| column.is_valid(i).then(|| value(&column, i))))
            }
            None => values.extend((0..rows).map(|_| None)),
        }
    }
    values
}

/// Writes events to a trace and gathers the summary at the same time.
pub struct Recording<W: EventSink> {
    pub writer: W,
    pub summary: Summary,
}

impl<W: EventSink> EventSink for Recording<W> {
    fn event(&mut self, event: &mut Event) -> Result<(), attach::event::SinkError> {
        self.summary.add(event);
        self.writer.event(event)
    }

    fn tick(&mut self, now: std::time::Instant) -> Result<(), attach::event::SinkError> {
        self.writer.tick(now)
    }

    fn python_identified(&mut self, pid: u32, python_version: &str) {
        self.writer.python_identified(pid, python_version);
    }
}

/// The `--include` pattern that traces a module and its submodules.
pub fn include_pattern(module: &str) -> String {
    let top = module.split('.').next().unwrap_or(module);
    format!("{top}.*")
}

/// Quotes an argument for a POSIX shell when it needs it.
pub fn shell_quote(arg: &str) -> String {
    let safe = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// The report text.
pub fn render(
    run: &RunInfo,
    summary: &Summary,
    trace: &Path,
    elapsed: std::time::Duration,
    extra: &[String],
) -> String {
    let mut out = String::new();
    let trace_arg = shell_quote(&trace.display().to_string());
    let python = run.python_version.as_deref().unwrap_or("?");
    let seconds = elapsed.as_secs_f64();
    let _ = writeln!(
        out,
        "tracer: {} of pid {} (Python {python}) for {seconds:.2} s, status {}{}",
        run.mode.as_str(),
        run.pid,
        run.status.as_str(),
        run.exit_code
            .map(|c| format!(", exit code {c}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "  events {}  calls {}  returns {}  exceptions {}  unfinished {}  gaps {}",
        summary.events,
        summary.calls,
        summary.returns,
        summary.exceptions,
        summary.unfinished,
        summary.gap_rows
    );
    match run.mode {
        Mode::Sampled => {
            let _ = writeln!(
                out,
                "  samples {}  late samples {}  sample errors {}",
                run.samples, run.late_samples, run.sample_errors
            );
            if run.sample_errors * 10 > run.samples {
                let _ = writeln!(
                    out,
                    "  warning: {} of {} samples could not be read: calls they would have \
                     seen are missing",
                    run.sample_errors, run.samples
                );
            }
        }
        Mode::Exact => {
            let _ = writeln!(out, "  dropped events {}", run.dropped_events);
            for limited in &run.limited_functions {
                let _ = writeln!(
                    out,
                    "  limited by --max-calls: {}.{} in pid {}: {} calls counted, not recorded",
                    limited.module, limited.function, limited.pid, limited.calls_not_recorded
                );
            }
        }
    }
    if let (Some(longest), Some(rate)) = (run.max_sample_interval_ns, run.rate_hz) {
        let period = 1_000_000_000 / i64::from(rate.max(1));
        let longest = longest as i64;
        if longest > HELD_OFF_PERIODS * period {
            let _ = writeln!(
                out,
                "  warning: the sampler was held off for up to {} (asked for a sample every {}): \
                 calls shorter than that may be missing",
                human_duration(longest),
                human_duration(period)
            );
        }
    }
    for line in extra {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(out, "  trace: {}", trace.display());
    if summary.events == 0 && run.mode == Mode::Exact {
        // No hook connected (the lines above say why): nothing to include or dig into.
        return out;
    }
    if summary.calls == 0 {
        let _ = writeln!(out, "\nNo calls of traced code were seen.");
        if run.include.is_empty() {
            let _ = writeln!(
                out,
                "  By default only the program's own code is traced (__main__ and files under {}); \
                 trace more with --include 'PATTERN' (e.g. --include '*').",
                run.cwd
            );
        }
    } else if summary.calls as usize <= TREE_CALLS {
        let _ = writeln!(
            out,
            "\nCall tree (duration: at least .. at most when sampled):"
        );
        for (level, heading, node) in tree_lines(&summary.tree) {
            if !heading.is_empty() {
                let _ = writeln!(out, "  {heading}");
            }
            let duration = match node.duration {
                Some((min, Some(max))) => {
                    format!("{} .. {}", human_duration(min), human_duration(max))
                }
                Some((min, None)) => human_duration(min),
                None => "?".into(),
            };
            let indent = "  ".repeat(level + 1);
            let _ = writeln!(out, "{indent}{}  {duration}{}", node.label, node.how);
        }
    } else {
        let _ = writeln!(out, "\nMost called functions:");
        let mut top: Vec<_> = summary.functions.iter().collect();
        top.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
        // Sampled durations are lower bounds; exact ones are measured.
        let bound = match run.mode {
            Mode::Sampled => "at least ",
            Mode::Exact => "",
        };
        for ((module, function), (calls, total)) in top.into_iter().take(10) {
            let time = match total {
                Some(total) => format!("{bound}{} in all", human_duration(*total)),
                None => "none ended, time unknown".to_string(),
            };
            let _ = writeln!(out, "  {module}.{function}  {calls} calls, {time}");
        }
    }
    if !summary.gaps.is_empty() {
        let _ = writeln!(out, "\nCalls into code that was not traced:");
        let mut gaps: Vec<_> = summary.gaps.iter().collect();
        gaps.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
        // An exclude wins over every include: a module the run left out is not
        // traced by adding one.
        let excluded_by = |module: &str| {
            run.exclude.iter().find(|pattern| {
                attach::filter::ModuleGlob::new(pattern, "--exclude")
                    .is_ok_and(|glob| glob.matches(module))
            })
        };
        for ((module, function, caller), (count, native)) in gaps.iter().take(10) {
            let how = if *native {
                "a C function, not traceable".to_string()
            } else if let Some(pattern) = excluded_by(module) {
                format!("left out by --exclude '{pattern}'")
            } else {
                format!("trace it with --include '{}'", include_pattern(module))
            };
            let _ = writeln!(
                out,
                "  {module}.{function} from {caller}: {count} calls ({how})"
            );
        }
        let traceable = gaps
            .iter()
            .find(|((module, _, _), (_, native))| !native && excluded_by(module).is_none());
        if let Some(((module, _, _), _)) = traceable {
            let command: Vec<String> = run.command.iter().map(|a| shell_quote(a)).collect();
            if run.launched && !command.is_empty() {
                let mode = match run.mode {
                    Mode::Exact => "--exact ",
                    Mode::Sampled => "",
                };
                let _ = writeln!(
                    out,
                    "  e.g. tracer record {mode}--include '{}' -- {}",
                    include_pattern(module),
                    command.join(" ")
                );
            }
        }
    }
    if summary.events == 0 {
        return out;
    }
    let _ = writeln!(out, "\nDig in:");
    for q in ["--tree", "--top", "--slow", "--gaps", "--flow"] {
        let _ = writeln!(out, "  tracer query {trace_arg} {q}");
    }
    if let Some(((_, function), _)) = summary
        .functions
        .iter()
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.0.cmp(a.0)))
    {
        let _ = writeln!(
            out,
            "  tracer query {trace_arg} --call {}",
            shell_quote(function)
        );
    }
    crate::output::escape_controls(&out, true).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(tid: i64, name: &str, call_id: u64, parent_id: Option<u64>, label: &str) -> TreeNode {
        TreeNode {
            label: label.into(),
            pid: 7,
            tid,
            thread_name: Some(name.into()),
            call_id,
            parent_id,
            duration: None,
            how: "",
        }
    }

    /// The tree as printed: (indent level, heading, label) per line.
    fn laid_out(tree: &[TreeNode]) -> Vec<(usize, String, String)> {
        tree_lines(tree)
            .into_iter()
            .map(|(level, heading, n)| (level, heading, n.label.clone()))
            .collect()
    }

    fn lines(expected: &[(usize, &str, &str)]) -> Vec<(usize, String, String)> {
        expected
            .iter()
            .map(|(l, h, n)| (*l, h.to_string(), n.to_string()))
            .collect()
    }

    #[test]
    fn a_sampled_run_with_many_unreadable_samples_says_so() {
        let mut run = RunInfo::new(vec!["python3".into()], 7, Mode::Sampled);
        run.samples = 100;
        run.sample_errors = 5;
        let quiet = render(
            &run,
            &Summary::default(),
            Path::new("t.parquet"),
            Default::default(),
            &[],
        );
        assert!(!quiet.contains("warning"), "{quiet}");
        run.sample_errors = 40;
        let loud = render(
            &run,
            &Summary::default(),
            Path::new("t.parquet"),
            Default::default(),
            &[],
        );
        assert!(
            loud.contains("warning: 40 of 100 samples could not be read"),
            "{loud}"
        );
    }

    /// A gap into a module the run left out with `--exclude` says so: an `--include`
    /// does not trace it while the exclude stays. Before, the report told to trace it
    /// with `--include 'pkg.*'`, and its example command did.
    #[test]
    fn a_gap_into_an_excluded_module_says_it_was_left_out() {
        let mut run = RunInfo::new(vec!["python3".into(), "app.py".into()], 7, Mode::Exact);
        run.launched = true;
        run.exclude = vec!["pkg.sub.*".into()];
        let mut summary = Summary {
            events: 6,
            ..Summary::default()
        };
        summary.gaps.insert(
            (
                "pkg.sub.util".into(),
                "norm".into(),
                "pkg.core.process".into(),
            ),
            (3, false),
        );
        summary.gaps.insert(
            ("json".into(), "dumps".into(), "__main__.main".into()),
            (1, false),
        );
        let text = render(
            &run,
            &summary,
            Path::new("t.parquet"),
            Default::default(),
            &[],
        );
        assert!(
            text.contains(
                "pkg.sub.util.norm from pkg.core.process: 3 calls (left out by --exclude 'pkg.sub.*')"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "json.dumps from __main__.main: 1 calls (trace it with --include 'json.*')"
            ),
            "{text}"
        );
        assert!(
            text.contains("e.g. tracer record --exact --include 'json.*' -- python3 app.py"),
            "{text}"
        );
    }

    /// A killed run's segments: `<module>` -> `main` -> `step` x `steps`, each step
    /// returning after 1 µs, killed while `main` ran (no end rows for it or `<module>`).
    fn killed_run(trace: &Path, steps: u64) -> RunInfo {
        let run = RunInfo::new(vec!["python3".into(), "steps.py".into()], 4242, Mode::Exact);
        let mut writer =
            storage::writer::TraceWriter::create(trace, run.clone(), false).expect("create trace");
        let event = |seq: u64, kind: EventKind, call_id: u64, function: &str| Event {
            pid: 4242,
            tid: 7,
            thread_name: Some(Arc::from("MainThread")),
            seq,
            ts_ns: 1_714_566_896_000_000_000 + seq as i64 * 1_000,
            kind,
            source: attach::event::Source::Exact,
            call_id,
            parent_id: call_id.checked_sub(1).filter(|&p| p > 0).map(|p| p.min(2)),
            depth: call_id.min(3) as i32 - 1,
            function: Arc::from(function),
            module: Arc::from("__main__"),
            file: Arc::from("/app/steps.py"),
            line: 1,
            caller: match call_id {
                1 => None,
                2 => Some(Arc::from("__main__.<module>")),
                _ => Some(Arc::from("__main__.main")),
            },
            caller_line: None,
            args: (kind == EventKind::Call).then(|| "{}".to_string()),
            value: (kind == EventKind::Return).then(|| "None".to_string()),
            exception: None,
            duration_ns: (kind == EventKind::Return).then_some(1_000),
            duration_max_ns: None,
            count: 1,
        };
        let mut events = vec![
            event(1, EventKind::Call, 1, "<module>"),
            event(2, EventKind::Call, 2, "main"),
        ];
        for step in 0..steps {
            let call_id = 3 + step;
            events.push(event(3 + 2 * step, EventKind::Call, call_id, "step"));
            events.push(event(4 + 2 * step, EventKind::Return, call_id, "step"));
        }
        for e in &events {
            writer.write(e).expect("write event");
        }
        writer.abandon().expect("leave the segments");
        run
    }

    /// A call still running when the tracer was killed has no end row: its time is
    /// unknown, as `tracer query --top` leaves it empty, not 0 ns.
    #[test]
    fn a_killed_runs_functions_that_never_ended_have_no_time() {
        let dir = std::env::temp_dir().join(format!("tracer-report-killed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let trace = dir.join("killed.parquet");
        let steps = TREE_CALLS as u64 + 1;
        let run = killed_run(&trace, steps);
        let session = QuerySession::open(&trace).expect("open the segments");
        let summary = Summary::from_trace(&session, &run.run_id).expect("summary");
        let report = render(&run, &summary, &trace, Default::default(), &[]);
        let _ = std::fs::remove_dir_all(&dir);
        for line in [
            format!("__main__.step  {steps} calls, 61.0 µs in all"),
            "__main__.main  1 calls, none ended, time unknown".to_string(),
            "__main__.<module>  1 calls, none ended, time unknown".to_string(),
        ] {
            assert!(report.contains(&line), "{line:?} in\n{report}");
        }
    }

    #[test]
    fn interleaved_threads_are_laid_out_apart_from_their_parent_links() {
        // In call order: two workers whose calls interleave.
        let tree = [
            node(1, "w0", 10, None, "worker(100)"),
            node(1, "w0", 11, Some(10), "leaf(100)"),
            node(2, "w1", 20, None, "worker(200)"),
            node(2, "w1", 21, Some(20), "leaf(200)"),
            node(1, "w0", 12, Some(10), "leaf(101)"),
            node(2, "w1", 22, Some(20), "leaf(201)"),
        ];
        let expected = [
            (1, "thread w0 (tid 1):", "worker(100)"),
            (2, "", "leaf(100)"),
            (2, "", "leaf(101)"),
            (1, "thread w1 (tid 2):", "worker(200)"),
            (2, "", "leaf(200)"),
            (2, "", "leaf(201)"),
        ];
        assert_eq!(laid_out(&tree), lines(&expected));
    }

    #[test]
    fn one_thread_has_no_heading_and_starts_at_level_zero() {
        let tree = [
            node(1, "MainThread", 1, None, "<module>()"),
            node(1, "MainThread", 2, Some(1), "main()"),
            node(1, "MainThread", 3, Some(2), "work()"),
            node(1, "MainThread", 4, Some(1), "after()"),
        ];
        let expected = [
            (0, "", "<module>()"),
            (1, "", "main()"),
            (2, "", "work()"),
            (1, "", "after()"),
        ];
        assert_eq!(laid_out(&tree), lines(&expected));
    }
}
