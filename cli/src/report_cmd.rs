//! `tracer report [PATH]`: the run report again, rebuilt from a trace, for a run whose
//! report scrolled away or was recorded by someone else.

use std::path::{Path, PathBuf};
use std::time::Duration;

use query::runs::run_time;
use query::{QuerySession, RunFiles};
use storage::run::RunInfo;

use crate::error::CliError;
use crate::query_cmd::{cli_error, trace_path};
use crate::report::{self, Summary};

/// Arguments of `tracer report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// A trace file, a killed run's trace (its segments are read), or a folder of
    /// traces (one report per run); default: the newest trace in ./traces/
    pub path: Option<PathBuf>,

    /// Only this run of a folder (see `tracer query PATH --runs`)
    #[arg(long, value_name = "RUN_ID")]
    pub run: Option<String>,
}

/// Prints the report of every run of the path (or of `--run`) on stdout.
pub fn run(args: &ReportArgs) -> Result<(), CliError> {
    let path = trace_path(args.path.as_deref())?;
    crate::output::print_stdout(&reports(&path, args.run.as_deref())?)
}

/// The report of every run of trace path `path` (or of run `only`), one after the
/// other.
pub fn reports(path: &Path, only: Option<&str>) -> Result<String, CliError> {
    let session = QuerySession::open(path).map_err(|e| cli_error(e, path))?;
    // A unique prefix names a run, as with `tracer query --run`.
    let only = only
        .map(|wanted| session.run_id_for(wanted))
        .transpose()
        .map_err(|e| cli_error(e, path))?;
    let runs: Vec<&RunFiles> = session
        .runs()
        .iter()
        .filter(|r| only.as_deref().is_none_or(|id| r.run_id() == id))
        .collect();
    if runs.is_empty() {
        return Err(CliError::new(format!(
            "no run {} in {}",
            only.as_deref().unwrap_or(""),
            path.display()
        ))
        .hint(format!("tracer query {} --runs", path.display())));
    }
    let mut out = String::new();
    for (i, files) in runs.into_iter().enumerate() {
        let run = RunInfo::from_json(&serde_json::Value::Object(files.metadata.clone()).to_string())
            .map_err(|e| {
                CliError::new(format!(
                    "{} has no readable run metadata (tracer.run): {e}",
                    files.path.display()
                ))
                .hint("a trace written by another tracer version? tracer query PATH --sql \"SELECT * FROM runs\"")
            })?;
        let summary = Summary::from_trace(&session, &run.run_id).map_err(|e| cli_error(e, path))?;
        let mut extra = Vec::new();
        if !files.finished {
            extra.push(format!(
                "the recording did not finish: read from {} segment(s); the last second of events may be missing",
                files.files.len()
            ));
        }
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&report::render(
            &run,
            &summary,
            &files.path,
            recorded_for(&session, files)?,
            &extra,
        ));
    }
    Ok(out)
}

/// How long the run recorded: from its start to its end, or to its last event when
/// the tracer was killed before writing the end.
fn recorded_for(session: &QuerySession, files: &RunFiles) -> Result<Duration, CliError> {
    let start = run_time(files, "started_at");
    let end = match run_time(files, "ended_at") {
        Some(end) => Some(end),
        None => {
            let last = session
                .sql(
                    &format!(
                        "SELECT CAST(MAX(ts) AS BIGINT) AS last FROM events WHERE run_id = '{}'",
                        files.run_id().replace('\'', "''")
                    ),
                    None,
                )
                .map_err(|e| cli_error(e, &files.path))?;
            last.text_column("last")
                .first()
                .and_then(|t| t.parse().ok())
        }
    };
    Ok(match (start, end) {
        (Some(start), Some(end)) if end > start => Duration::from_nanos((end - start) as u64),
        _ => Duration::ZERO,
    })
}
