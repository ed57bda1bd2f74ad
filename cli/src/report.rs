//! The run report printed on stderr when recording ends: key figures, the call tree
//! when it is small (the most called functions when it is not), the calls into code
//! that was not traced with the `--include` that would trace them, and the exact
//! `tracer query` commands to dig in.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use attach::{Event, EventKind, EventSink};
use storage::run::RunInfo;

use crate::output::human_duration;

/// Calls kept for the tree; a run with more shows its most called functions instead.
const TREE_CALLS: usize = 60;

/// Counts and a small call tree, gathered from the events as they are written.
#[derive(Debug, Default)]
pub struct Summary {
    pub events: u64,
    pub calls: u64,
    pub returns: u64,
    pub exceptions: u64,
    pub unfinished: u64,
    pub gap_rows: u64,
    /// `(module, function)` to (calls, total lower-bound nanoseconds).
    functions: HashMap<(String, String), (u64, i64)>,
    /// The first calls: label, depth, call id, and the duration bounds once known.
    tree: Vec<TreeNode>,
    tree_index: HashMap<u64, usize>,
    /// `(callee module, callee function, caller)` to calls.
    gaps: HashMap<(String, String, String), u64>,
}

#[derive(Debug)]
struct TreeNode {
    label: String,
    depth: i32,
    duration: Option<(i64, Option<i64>)>,
    how: &'static str,
}

impl Summary {
    pub fn add(&mut self, e: &Event) {
        self.events += 1;
        match e.kind {
            EventKind::Call => {
                self.calls += 1;
                self.functions
                    .entry((e.module.to_string(), e.function.to_string()))
                    .or_default()
                    .0 += 1;
                if self.tree.len() < TREE_CALLS {
                    self.tree_index.insert(e.call_id, self.tree.len());
                    self.tree.push(TreeNode {
                        label: call_label(e),
                        depth: e.depth,
                        duration: None,
                        how: "",
                    });
                }
            }
            EventKind::Return | EventKind::Exception | EventKind::Unfinished => {
                match e.kind {
                    EventKind::Return => self.returns += 1,
                    EventKind::Exception => self.exceptions += 1,
                    _ => self.unfinished += 1,
                }
                let ns = e.duration_ns.unwrap_or(0);
                if let Some(f) = self
                    .functions
                    .get_mut(&(e.module.to_string(), e.function.to_string()))
                {
                    f.1 += ns;
                }
                if let Some(&i) = self.tree_index.get(&e.call_id) {
                    self.tree[i].duration = Some((ns, e.duration_max_ns));
                    self.tree[i].how = match e.kind {
                        EventKind::Exception => " raised",
                        EventKind::Unfinished => " unfinished",
                        _ => "",
                    };
                }
            }
            EventKind::Gap => {
                self.gap_rows += 1;
                *self
                    .gaps
                    .entry((
                        e.module.to_string(),
                        e.function.to_string(),
                        e.caller.as_deref().unwrap_or("?").to_string(),
                    ))
                    .or_default() += u64::from(e.count);
            }
            EventKind::Yield | EventKind::Resume => {}
        }
    }
}

/// `function(arg=repr, ...)`, args shortened for one line.
fn call_label(e: &Event) -> String {
    let args = e
        .args
        .as_deref()
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
    format!("{}({args})", e.function)
}

/// Writes events to a trace and gathers the summary at the same time.
pub struct Recording<W: EventSink> {
    pub writer: W,
    pub summary: Summary,
}

impl<W: EventSink> EventSink for Recording<W> {
    fn event(&mut self, event: Event) -> Result<(), attach::event::SinkError> {
        self.summary.add(&event);
        self.writer.event(event)
    }

    fn tick(&mut self, now: std::time::Instant) -> Result<(), attach::event::SinkError> {
        self.writer.tick(now)
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
    let _ = writeln!(
        out,
        "  samples {}  sample errors {}  dropped events {}",
        run.samples, run.sample_errors, run.dropped_events
    );
    for line in extra {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(out, "  trace: {}", trace.display());
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
        for node in &summary.tree {
            let duration = match node.duration {
                Some((min, Some(max))) => {
                    format!("{} .. {}", human_duration(min), human_duration(max))
                }
                Some((min, None)) => human_duration(min),
                None => "?".into(),
            };
            let indent = "  ".repeat(node.depth.max(0) as usize + 1);
            let _ = writeln!(out, "{indent}{}  {duration}{}", node.label, node.how);
        }
    } else {
        let _ = writeln!(out, "\nMost called functions:");
        let mut top: Vec<_> = summary.functions.iter().collect();
        top.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
        for ((module, function), (calls, total)) in top.into_iter().take(10) {
            let _ = writeln!(
                out,
                "  {module}.{function}  {calls} calls, at least {} in all",
                human_duration(*total)
            );
        }
    }
    if !summary.gaps.is_empty() {
        let _ = writeln!(out, "\nCalls into code that was not traced:");
        let mut gaps: Vec<_> = summary.gaps.iter().collect();
        gaps.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for ((module, function, caller), count) in gaps.iter().take(10) {
            let _ = writeln!(
                out,
                "  {module}.{function} from {caller}: {count} calls (trace it with --include '{}')",
                include_pattern(module)
            );
        }
        if let Some(((module, _, _), _)) = gaps.first() {
            let command: Vec<String> = run.command.iter().map(|a| shell_quote(a)).collect();
            if run.launched && !command.is_empty() {
                let _ = writeln!(
                    out,
                    "  e.g. tracer record --include '{}' -- {}",
                    include_pattern(module),
                    command.join(" ")
                );
            }
        }
    }
    let _ = writeln!(out, "\nDig in:");
    for q in ["--tree", "--top", "--slow", "--gaps", "--flow"] {
        let _ = writeln!(out, "  tracer query {trace_arg} {q}");
    }
    if let Some(((_, function), _)) = summary
        .functions
        .iter()
        .max_by_key(|(_, (calls, _))| *calls)
    {
        let _ = writeln!(
            out,
            "  tracer query {trace_arg} --call {}",
            shell_quote(function)
        );
    }
    out
}
