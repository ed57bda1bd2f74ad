//! `tracer export [PATH] --format flamegraph|chrome|speedscope [-o FILE]`: a trace as
//! a picture other tools open: an SVG flame graph, a Chrome trace-event JSON
//! (Perfetto UI, `chrome://tracing`) or a speedscope JSON.
//!
//! The calls come from [`query::QuerySession::timeline`] with the same filters as
//! `tracer query`; each format's module says how it draws them. The file is written
//! with mode 0600 (it holds argument values, as the trace does) under a temporary
//! name and renamed when complete.

mod chrome;
mod flamegraph;
mod speedscope;

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use query::{Filters, QuerySession, Timeline};
use serde_json::{json, Map, Value};

use crate::error::CliError;
use crate::query_cmd::{cli_error, trace_path, EngineArgs, FilterArgs};

/// What `tracer export` writes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Deserialize,
    rmcp::schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
#[schemars(crate = "rmcp::schemars")]
pub enum ExportFormat {
    /// An SVG flame graph of self time (inferno).
    Flamegraph,
    /// Chrome trace-event JSON: per-thread timelines for Perfetto UI and chrome://tracing.
    Chrome,
    /// speedscope's JSON: one evented profile per thread.
    Speedscope,
}

impl ExportFormat {
    /// The file name ending of the format's default output.
    fn extension(self) -> &'static str {
        match self {
            ExportFormat::Flamegraph => "svg",
            ExportFormat::Chrome => "trace.json",
            ExportFormat::Speedscope => "speedscope.json",
        }
    }

    /// The name the command line spells the format with.
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Flamegraph => "flamegraph",
            ExportFormat::Chrome => "chrome",
            ExportFormat::Speedscope => "speedscope",
        }
    }
}

/// Arguments of `tracer export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// A trace file, a killed run's trace, or a folder of traces; default: the newest
    /// trace in ./traces/
    pub path: Option<PathBuf>,

    /// What to write
    #[arg(long, value_enum)]
    pub format: ExportFormat,

    /// Where to write it (default: beside the trace, `T.svg`, `T.trace.json` or
    /// `T.speedscope.json`); an existing file is replaced, a Parquet file never
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub filters: FilterArgs,

    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Runs `tracer export`: prints the path written on stdout.
pub fn run(args: &ExportArgs) -> Result<(), CliError> {
    let path = trace_path(args.path.as_deref())?;
    let filters = args.filters.filters()?;
    let session = QuerySession::open_with_limits(&path, args.engine.limits()?)
        .map_err(|e| cli_error(e, &path))?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| beside_trace(&path, args.format.extension()));
    let written = export(&session, &path, args.format, &filters, &output)?;
    for note in &written.notes {
        eprintln!("note: {note}");
    }
    crate::output::print_stdout(&format!("{}\n", written.path.display()))?;
    Ok(())
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The file written.
    pub path: PathBuf,
    /// How many calls it draws.
    pub calls: usize,
    /// How many threads.
    pub threads: usize,
    /// Facts the reader should know (a cut at `--limit`, an unfinished run).
    pub notes: Vec<String>,
}

impl Exported {
    /// The JSON the MCP server answers with.
    pub fn to_json(&self, format: ExportFormat) -> Value {
        json!({
            "path": self.path.display().to_string(),
            "format": format.name(),
            "calls": self.calls,
            "threads": self.threads,
            "notes": self.notes,
        })
    }
}

/// Draws the calls of `session` (trace path `trace`) the filters keep in `format`
/// and writes them to `output`.
pub fn export(
    session: &QuerySession,
    trace: &Path,
    format: ExportFormat,
    filters: &Filters,
    output: &Path,
) -> Result<Exported, CliError> {
    let timeline = session.timeline(filters).map_err(|e| cli_error(e, trace))?;
    let mut notes = timeline.notes.clone();
    if timeline.truncated {
        notes.push(format!(
            "only the first {} calls are drawn; --limit N draws more",
            filters.limit.unwrap_or(0)
        ));
    }
    if timeline.span_count() == 0 {
        return Err(CliError::new(format!(
            "no calls to draw in {}{}",
            trace.display(),
            if filters == &Filters::default() {
                ""
            } else {
                " with these filters"
            }
        ))
        .hint(format!("tracer query {} --threads", trace.display())));
    }
    let shown = trace.display().to_string();
    let bytes = match format {
        ExportFormat::Flamegraph => flamegraph::render_svg(&timeline, &format!("tracer: {shown}"))?,
        ExportFormat::Chrome => to_json_bytes(&chrome::chrome_trace(
            &timeline,
            &run_commands(session),
            about(&shown, &timeline),
        ))?,
        ExportFormat::Speedscope => to_json_bytes(&speedscope::speedscope(&timeline, &shown))?,
    };
    write_private(output, &bytes)?;
    Ok(Exported {
        path: output.to_path_buf(),
        calls: timeline.span_count(),
        threads: timeline.threads.len(),
        notes,
    })
}

fn to_json_bytes(value: &Value) -> Result<Vec<u8>, CliError> {
    serde_json::to_vec(value).map_err(|e| CliError::new(format!("cannot encode the export: {e}")))
}

/// What the Chrome trace's `otherData` says about where it came from.
fn about(trace: &str, timeline: &Timeline) -> Map<String, Value> {
    let mut about = Map::new();
    about.insert("trace".into(), json!(trace));
    about.insert(
        "exporter".into(),
        json!(format!("tracer {}", env!("CARGO_PKG_VERSION"))),
    );
    about.insert("origin_ns".into(), json!(timeline.origin_ns));
    about
}

/// Each run's command line, as its processes are named.
pub fn run_commands(session: &QuerySession) -> HashMap<String, String> {
    session
        .runs()
        .iter()
        .map(|run| (run.run_id().to_string(), run.command().join(" ")))
        .filter(|(_, command)| !command.is_empty())
        .collect()
}

/// `T.<extension>` beside trace `T.parquet` (or `T.parquet.parts`); in a folder of
/// traces, `tracer.<extension>` inside it.
pub fn beside_trace(trace: &Path, extension: &str) -> PathBuf {
    if trace.is_dir() && !trace.to_string_lossy().ends_with(".parquet.parts") {
        return trace.join(format!("tracer.{extension}"));
    }
    let text = trace.to_string_lossy();
    let stem = text
        .strip_suffix(".parquet.parts")
        .or_else(|| text.strip_suffix(".parquet.parts/"))
        .or_else(|| text.strip_suffix(".parquet"))
        .unwrap_or(&text);
    PathBuf::from(format!("{stem}.{extension}"))
}

/// Writes `bytes` to `path` with mode 0600, through a temporary file renamed into
/// place. Refuses to replace a Parquet file or a folder.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let is_parquet = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    if is_parquet || path.is_dir() {
        return Err(CliError::usage(format!(
            "will not write over {}: {}",
            path.display(),
            if is_parquet {
                "it would replace a trace"
            } else {
                "it is a folder"
            }
        ))
        .hint("give -o a file name such as out.svg or out.json"));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        CliError::new(format!("cannot write {}: {e}", path.display()))
            .hint("check that the folder exists and is writable, or give another -o path")
    })
}
