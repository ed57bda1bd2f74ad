//! `tracer query [PATH] [QUESTION]`: ask a trace one question and print the answer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ArgGroup;
use query::{Filters, Limits, QueryError, QuerySession, Question, TimeBound};

use crate::error::CliError;
use crate::output::{write_answer, Format};

/// The folder `tracer` records into when no `-o` is given.
const TRACES_DIR: &str = "traces";

/// How many rows `--top` and `--slow` show when N is not given.
const DEFAULT_TOP: &str = "20";

/// Arguments of `tracer query`. One question at a time; with none, `--runs`.
/// PATH may come before or after the question (`tracer query --top T.parquet`).
#[derive(Debug, Clone, clap::Args)]
#[command(group(
    ArgGroup::new("question")
        .args(["gaps", "call", "flow", "tree", "top", "slow", "exceptions", "threads", "runs", "sql"])
        .multiple(false)
))]
pub struct QueryArgs {
    /// A trace file, a killed run's trace (its T.parquet.parts segments are read), or
    /// a folder of traces; default: the newest trace in ./traces/
    pub path: Option<PathBuf>,

    /// Calls from traced code into untraced code, by callee and caller, with the
    /// --include that would trace them
    #[arg(long)]
    pub gaps: bool,

    /// Every call of a function: `multiply`, `Order.total` or
    /// `myapp.billing.Order.total`; args, return value or exception, duration,
    /// caller and the calls it made
    #[arg(long, value_name = "NAME")]
    pub call: Option<String>,

    /// Every event in order with its depth
    #[arg(long)]
    pub flow: bool,

    /// The calls of each thread as a tree, with durations
    #[arg(long)]
    pub tree: bool,

    /// The N most called functions (default 20), with exclude suggestions
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = DEFAULT_TOP, allow_negative_numbers = true)]
    pub top: Option<CountOrPath>,

    /// The N functions with the most total time (default 20), with per-call times
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = DEFAULT_TOP, allow_negative_numbers = true)]
    pub slow: Option<CountOrPath>,

    /// Every exception: type, message, where it was raised or passed through
    #[arg(long)]
    pub exceptions: bool,

    /// One row per thread
    #[arg(long)]
    pub threads: bool,

    /// One row per run (the default question)
    #[arg(long)]
    pub runs: bool,

    /// Any read-only SQL query over the tables `events` and `runs`
    #[arg(long, value_name = "SELECT ...")]
    pub sql: Option<String>,

    #[command(flatten)]
    pub filters: FilterArgs,

    /// Output format; default: table on a terminal, json otherwise
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    #[command(flatten)]
    pub engine: EngineArgs,
}

/// The filters every question, `tracer export` and `tracer view` accept.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Only functions whose module matches this glob (`myapp.*`)
    #[arg(long, value_name = "PATTERN")]
    pub module: Option<String>,

    /// Only this thread: an OS thread id or a Python thread name
    #[arg(long, value_name = "TID|NAME")]
    pub thread: Option<String>,

    /// Only events at or after TIME: a duration since the run's start (`1.5s`,
    /// `250ms`, `40us`, `2m`) or a UTC time (`2024-05-01T12:00:00Z`)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Only events at or before TIME (same forms as --since)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// At most N rows (each question has its own default; --sql and export have
    /// none; view draws 20000 calls)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub limit: Option<usize>,

    /// Only this run of a folder: its id or a unique prefix
    #[arg(long = "run", value_name = "RUN_ID")]
    pub run_id: Option<String>,
}

impl FilterArgs {
    /// The query crate's filters; a time that does not parse is a usage error.
    pub fn filters(&self) -> Result<Filters, CliError> {
        let bound = |flag: &str, text: &Option<String>| -> Result<Option<TimeBound>, CliError> {
            text.as_deref()
                .map(|t| {
                    t.parse::<TimeBound>().map_err(|e| match e {
                        QueryError::BadArgument { what, message } => {
                            CliError::usage(format!("{flag}: cannot read the {what}")).hint(message)
                        }
                        other => CliError::usage(format!("{flag}: {other}")),
                    })
                })
                .transpose()
        };
        Ok(Filters {
            module: self.module.clone(),
            thread: self.thread.clone(),
            since: bound("--since", &self.since)?,
            until: bound("--until", &self.until)?,
            limit: self.limit,
            run: self.run_id.clone(),
        })
    }
}

/// How long and how much memory a query may take.
#[derive(Debug, Clone, clap::Args)]
pub struct EngineArgs {
    /// Stop a query that runs longer than SECS seconds
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30.0,
        allow_negative_numbers = true
    )]
    pub timeout: f64,

    /// Memory a query may use, in MiB (nothing spills to disk)
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = 4096,
        allow_negative_numbers = true
    )]
    pub memory_limit: usize,
}

impl EngineArgs {
    /// The query crate's limits; a zero or negative value is a usage error.
    pub fn limits(&self) -> Result<Limits, CliError> {
        crate::trace_cmd::check_seconds(self.timeout).map_err(|_| {
            CliError::usage(format!(
                "--timeout {} is not a time a query can take",
                self.timeout
            ))
            .hint("give a number of seconds more than 0, e.g. --timeout 120 (the default is 30)")
        })?;
        if self.memory_limit == 0 {
            return Err(CliError::usage("--memory-limit must be at least 1 MiB")
                .hint("give MiB, e.g. --memory-limit 8192 (the default is 4096)"));
        }
        Ok(Limits {
            timeout: Duration::from_secs_f64(self.timeout),
            memory_limit_mib: self.memory_limit,
        })
    }
}

/// The word after `--top` or `--slow`, whose N is optional: a count, or the trace's
/// path when it was written after the question (`tracer query --top T.parquet`),
/// which clap cannot tell from N.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountOrPath {
    Count(usize),
    Path(PathBuf),
}

impl std::str::FromStr for CountOrPath {
    type Err = String;

    fn from_str(text: &str) -> Result<CountOrPath, String> {
        if let Ok(n) = text.parse::<usize>() {
            return Ok(CountOrPath::Count(n));
        }
        if text.parse::<f64>().is_ok() {
            return Err(format!(
                "N must be a whole number of rows, 0 or more: {text}"
            ));
        }
        Ok(CountOrPath::Path(PathBuf::from(text)))
    }
}

impl QueryArgs {
    /// The trace path given, also when it came after `--top` or `--slow`.
    fn trace_arg(&self) -> Result<Option<PathBuf>, CliError> {
        let after_question = [("--top", &self.top), ("--slow", &self.slow)]
            .into_iter()
            .find_map(|(flag, value)| match value {
                Some(CountOrPath::Path(path)) => Some((flag, path)),
                _ => None,
            });
        match (&self.path, after_question) {
            (path, None) => Ok(path.clone()),
            (None, Some((_, path))) => Ok(Some(path.clone())),
            (Some(_), Some((flag, value))) => Err(CliError::usage(format!(
                "{flag} takes a number of rows, not {}",
                value.display()
            ))
            .hint(format!("tracer query PATH {flag} 20"))),
        }
    }

    /// The question asked, `--runs` when none is.
    fn question(&self) -> Question {
        let count = |value: &CountOrPath| match value {
            CountOrPath::Count(n) => *n,
            CountOrPath::Path(_) => DEFAULT_TOP.parse().expect("a number"),
        };
        if self.gaps {
            Question::Gaps
        } else if let Some(name) = &self.call {
            Question::Call(name.clone())
        } else if self.flow {
            Question::Flow
        } else if self.tree {
            Question::Tree
        } else if let Some(n) = &self.top {
            Question::Top(count(n))
        } else if let Some(n) = &self.slow {
            Question::Slow(count(n))
        } else if self.exceptions {
            Question::Exceptions
        } else if self.threads {
            Question::Threads
        } else {
            Question::Runs
        }
    }
}

/// Runs `tracer query`: opens the trace, asks, prints. An empty answer is a
/// success that says "no rows" on stderr.
pub fn run(args: &QueryArgs) -> Result<(), CliError> {
    let path = trace_path(args.trace_arg()?.as_deref())?;
    let filters = args.filters.filters()?;
    let session = QuerySession::open_with_limits(&path, args.engine.limits()?)
        .map_err(|e| cli_error(e, &path))?;
    let answer = match &args.sql {
        Some(sql) => session.sql_with_filters(sql, &filters),
        None => session.ask(&args.question(), &filters),
    }
    .map_err(|e| cli_error(e, &path))?;
    let format = args.format.unwrap_or_else(Format::for_stdout);
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    write_answer(&answer, format, &mut stdout.lock(), &mut stderr.lock()).or_else(|e| {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Ok(())
        } else {
            Err(CliError::new(format!("cannot write the answer: {e}")))
        }
    })
}

/// The trace a command reads: the one given, or the newest in ./traces/.
pub fn trace_path(given: Option<&Path>) -> Result<PathBuf, CliError> {
    match given {
        Some(path) => Ok(path.to_path_buf()),
        None => query::newest_trace(Path::new(TRACES_DIR)).map_err(|e| match e {
            QueryError::Io { .. } | QueryError::EmptyFolder { .. } => {
                CliError::new(format!("no trace given and none in ./{TRACES_DIR}/"))
                    .hint("tracer record -- python3 app.py   (then: tracer query)")
            }
            other => cli_error(other, Path::new(TRACES_DIR)),
        }),
    }
}

/// The command line's form of a query error: usage errors exit 2, the rest 1, each
/// with the command that helps where there is one.
pub fn cli_error(error: QueryError, path: &Path) -> CliError {
    let shown = path.display();
    let hint = match &error {
        QueryError::NotFound { .. } => format!("ls {TRACES_DIR}/   (tracer query with no path asks the newest trace)"),
        QueryError::EmptyFolder { .. } | QueryError::NoSegments { .. } => {
            "tracer record -- python3 app.py".to_string()
        }
        QueryError::Refused { .. } => format!(
            "tracer query {shown} --sql \"SELECT function, COUNT(*) FROM events GROUP BY function\""
        ),
        QueryError::UnknownColumn { .. } => format!(
            "tracer query {shown} --sql \"SELECT * FROM events LIMIT 1\""
        ),
        QueryError::UnknownRun { .. } => format!("tracer query {shown} --runs"),
        QueryError::Timeout { .. } => "--timeout 120 allows more time".to_string(),
        QueryError::MemoryLimit { limit_mib, .. } => format!(
            "--memory-limit {} allows more memory, or narrow the query with --run, --since or a WHERE",
            limit_mib.saturating_mul(2)
        ),
        // The file that is not Parquet: the path given, or one in the folder given.
        QueryError::NotParquet { path: file, .. } => {
            let file = file.display();
            let folder_hint = if path.is_dir() {
                format!("; move it out of {shown} to read the other traces")
            } else {
                String::new()
            };
            format!(
                "traces are written by `tracer record`; a recording killed before it \
                 finished keeps its events in {file}.parts/ (tracer query {file} reads them \
                 when the file is absent){folder_hint}"
            )
        }
        QueryError::NotATrace { .. } => {
            "tracer query reads traces written by `tracer record`; read other Parquet files \
             with DuckDB or pyarrow"
                .to_string()
        }
        QueryError::PatternInPath { .. } => {
            "rename the file, e.g. mv 'run[1].parquet' run1.parquet".to_string()
        }
        QueryError::Io { .. } => format!("ls -ld {shown}   (is it readable?)"),
        QueryError::Syntax { .. } | QueryError::Engine(_) => format!(
            "tracer query {shown} --sql \"SELECT function, COUNT(*) FROM events GROUP BY function\""
        ),
        QueryError::BadArgument { .. } => "tracer query --help".to_string(),
    };
    let message = error
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let cli = if error.is_usage() {
        CliError::usage(message)
    } else {
        CliError::new(message)
    };
    cli.hint(hint)
}
