//! `tracer view [PATH] [-o FILE] [--open]`: one self-contained HTML page of a trace,
//! with the call tree, a timeline per thread and the per-function table, that opens
//! in any browser without a network (its script, styles and data are inline).
//!
//! The calls are [`query::QuerySession::timeline`]'s (sampled calls at their lower
//! bound, the upper bound shown beside it); the table is `tracer query --slow`'s.
//! The data goes into the page as JSON in a `<script type="application/json">`
//! element, with `<` escaped so no value can end the element.

use std::path::{Path, PathBuf};

use query::{Filters, QuerySession, Question, Timeline};
use serde_json::{json, Value};

use crate::error::CliError;
use crate::export::{beside_trace, write_private};
use crate::output::rows_json;
use crate::query_cmd::{cli_error, trace_path, EngineArgs, FilterArgs};

/// The page, with `/*TRACER_DATA*/` where the data goes.
const PAGE: &str = include_str!("view/page.html");

/// The placeholder in [`PAGE`] replaced by the data.
const DATA_MARK: &str = "/*TRACER_DATA*/";

/// How many calls the page draws when `--limit` is not given: a browser stays
/// responsive with this many elements in the tree and the timeline.
pub const DEFAULT_CALLS: usize = 20_000;

/// How many functions the per-function table lists.
const TABLE_ROWS: usize = 500;

/// Arguments of `tracer view`.
#[derive(Debug, Clone, clap::Args)]
pub struct ViewArgs {
    /// A trace file, a killed run's trace, or a folder of traces; default: the newest
    /// trace in ./traces/
    pub path: Option<PathBuf>,

    /// Where to write the page (default: beside the trace, `T.html`)
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Open the page in the browser (with xdg-open)
    #[arg(long)]
    pub open: bool,

    #[command(flatten)]
    pub filters: FilterArgs,

    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Runs `tracer view`: writes the page, prints its path, opens it with `--open`.
pub fn run(args: &ViewArgs) -> Result<(), CliError> {
    let path = trace_path(args.path.as_deref())?;
    let mut filters = args.filters.filters()?;
    filters.limit.get_or_insert(DEFAULT_CALLS);
    let session = QuerySession::open_with_limits(&path, args.engine.limits()?)
        .map_err(|e| cli_error(e, &path))?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| beside_trace(&path, "html"));
    let notes = write_view(&session, &path, &filters, &output)?;
    for note in &notes {
        eprintln!("note: {note}");
    }
    crate::output::print_stdout(&format!("{}\n", output.display()))?;
    if args.open {
        open_in_browser(&output);
    }
    Ok(())
}

/// Writes the page of the calls `filters` keep to `output`; returns the notes it
/// shows (an unfinished run, a cut at the limit).
pub fn write_view(
    session: &QuerySession,
    trace: &Path,
    filters: &Filters,
    output: &Path,
) -> Result<Vec<String>, CliError> {
    let timeline = session.timeline(filters).map_err(|e| cli_error(e, trace))?;
    let mut notes = timeline.notes.clone();
    if timeline.truncated {
        notes.push(format!(
            "only the first {} calls are shown; --limit N shows more",
            filters.limit.unwrap_or(0)
        ));
    }
    let table_filters = Filters {
        limit: Some(TABLE_ROWS),
        ..filters.clone()
    };
    let functions = session
        .ask(&Question::Slow(TABLE_ROWS), &table_filters)
        .map_err(|e| cli_error(e, trace))?;
    let data = json!({
        "trace": trace.display().to_string(),
        "generator": format!("tracer {}", env!("CARGO_PKG_VERSION")),
        "runs": runs_json(session),
        "notes": notes,
        "origin_ns": timeline.origin_ns,
        "end_ns": timeline.end_ns(),
        "threads": threads_json(&timeline),
        "functions": rows_json(&functions),
    });
    let page = render_page(&data)?;
    write_private(output, page.as_bytes())?;
    Ok(notes)
}

/// The page with `data` inline.
fn render_page(data: &Value) -> Result<String, CliError> {
    let text = serde_json::to_string(data)
        .map_err(|e| CliError::new(format!("cannot encode the page's data: {e}")))?;
    // `<` only occurs inside JSON strings, where `\u003c` means the same.
    let safe = text.replace('<', "\\u003c");
    Ok(PAGE.replacen(DATA_MARK, &safe, 1))
}

/// One object per run: what the page's header says about it.
fn runs_json(session: &QuerySession) -> Vec<Value> {
    const SHOWN: [&str; 8] = [
        "run_id",
        "command",
        "status",
        "mode",
        "python_version",
        "pid",
        "started_at",
        "ended_at",
    ];
    session
        .runs()
        .iter()
        .map(|run| {
            let mut shown = serde_json::Map::new();
            for key in SHOWN {
                if let Some(value) = run.metadata.get(key) {
                    shown.insert(key.to_string(), value.clone());
                }
            }
            shown.insert("finished".into(), json!(run.finished));
            Value::Object(shown)
        })
        .collect()
}

/// Each thread's spans, times in nanoseconds since the timeline's origin.
fn threads_json(timeline: &Timeline) -> Vec<Value> {
    let origin = timeline.origin_ns;
    timeline
        .threads
        .iter()
        .map(|thread| {
            let spans: Vec<Value> = thread
                .spans
                .iter()
                .map(|span| {
                    let untraced: Vec<String> = span
                        .untraced
                        .iter()
                        .map(|u| format!("{}.{} x{}", u.module, u.function, u.calls))
                        .collect();
                    json!({
                        "n": span.qualified_name(),
                        "s": span.start_ns - origin,
                        "e": span.end_ns - origin,
                        "l": span.level,
                        "o": span.outcome.name(),
                        "a": span.args,
                        "v": span.value,
                        "x": span.exception,
                        "d": span.duration_ns,
                        "m": span.duration_max_ns,
                        "u": untraced,
                    })
                })
                .collect();
            json!({
                "label": thread.label(),
                "pid": thread.pid,
                "tid": thread.tid,
                "run_id": thread.run_id,
                "spans": spans,
            })
        })
        .collect()
}

/// Opens `page` with `xdg-open` when there is one; says so on stderr when not.
fn open_in_browser(page: &Path) {
    let found = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| dir.join("xdg-open").is_file())
    });
    if !found {
        eprintln!(
            "note: no xdg-open on this machine to open a browser with; open {} yourself",
            page.display()
        );
        return;
    }
    let status = std::process::Command::new("xdg-open")
        .arg(page)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("note: xdg-open {} exited with {status}", page.display()),
        Err(e) => eprintln!("note: xdg-open {} failed: {e}", page.display()),
    }
}
