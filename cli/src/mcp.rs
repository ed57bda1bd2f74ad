//! `tracer mcp`: a Model Context Protocol server on stdio, for AI coding agents.
//!
//! Its tools mirror the command line and run the same code in this process:
//! `dump` (`tracer dump --format json`), `record` and `attach` (a trace and its run
//! report), one `query_*` tool per question of `tracer query` and `query_sql`
//! (each answer is the JSON of `tracer query ... --format json`), `report`, `export`
//! and `view`. Every tool that reads or writes a trace takes its path explicitly:
//! there is no "newest trace" guess, so an agent always knows what it asked.
//!
//! Tools run on tokio's blocking threads (sampling and DataFusion block). A failed
//! tool answers with `isError` and `{"error", "hint"}`, the words the command line
//! would print. Stdout carries the protocol, so `record` captures the launched
//! command's output and returns its end, and no Ctrl-C handler is installed.
//!
//! Stdin and stdout are read and written through `tokio::fs::File` (blocking reads
//! and writes on tokio's blocking threads, as tokio's own stdio does), which needs no
//! tokio feature beyond those DataFusion already builds with.

use std::os::fd::AsFd;
use std::path::PathBuf;

use query::{Filters, QuerySession, Question};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::schemars::JsonSchema;
use rmcp::{tool, tool_handler, tool_router, ErrorData, ServerHandler, ServiceExt};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::CliError;
use crate::export::{export, ExportFormat};
use crate::output::answer_json;
use crate::query_cmd::cli_error;
use crate::trace_cmd::{
    attach_run, record_run, AttachArgs, Caller, RecordArgs, TraceOptions, Traced,
};

/// What the server tells a client about itself when it connects.
const INSTRUCTIONS: &str = "tracer shows what a Python process actually did. \
`dump` prints every thread's stack of a running process now. `record` runs a command \
under the sampler (with a timeout) and `attach` samples a running process for a \
duration, each writing a Parquet trace to the path you give. The query_* tools ask a \
trace questions (query_top, query_slow, query_tree, query_call, query_flow, query_gaps, \
query_exceptions, query_threads, query_runs, and read-only SQL over the tables events \
and runs with query_sql). export writes a flame graph, Chrome trace or speedscope file; \
view writes an HTML page. Paths are read relative to the server's working directory: \
give absolute paths.";

/// `tracer mcp`'s arguments: none; the client starts it and speaks on stdio.
#[derive(Debug, Clone, clap::Args)]
pub struct McpArgs {}

/// Runs the server until the client closes stdin.
pub fn run(_args: &McpArgs) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the MCP server: {e}")))?;
    let served = runtime.block_on(async {
        let (stdin, stdout) = stdio().map_err(|e| format!("cannot use stdin/stdout: {e}"))?;
        let service = TracerTools::new()
            .serve((stdin, stdout))
            .await
            .map_err(|e| format!("the client did not start an MCP session: {e}"))?;
        service
            .waiting()
            .await
            .map_err(|e| format!("the MCP session failed: {e}"))?;
        Ok::<(), String>(())
    });
    // The client has gone: a recording in progress stops its command and finishes
    // its trace (a few seconds at most) before the server exits.
    crate::trace_cmd::end_tool_calls();
    runtime.shutdown_timeout(TOOL_CALLS_END_WITHIN);
    served.map_err(CliError::new)
}

/// How long a closing server waits for its tool calls in progress to end.
const TOOL_CALLS_END_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Stdin and stdout as tokio files (copies of the descriptors).
fn stdio() -> std::io::Result<(tokio::fs::File, tokio::fs::File)> {
    let stdin = std::io::stdin().as_fd().try_clone_to_owned()?;
    let stdout = std::io::stdout().as_fd().try_clone_to_owned()?;
    Ok((
        tokio::fs::File::from_std(std::fs::File::from(stdin)),
        tokio::fs::File::from_std(std::fs::File::from(stdout)),
    ))
}

/// The filters of every question (as `tracer query`'s options).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct FilterParams {
    /// Only functions whose module matches this glob (`myapp.*`).
    #[serde(default)]
    pub module: Option<String>,
    /// Only this thread: an OS thread id or a Python thread name.
    #[serde(default)]
    pub thread: Option<String>,
    /// Only events at or after this time: a duration since the run's start (`1.5s`,
    /// `250ms`) or a UTC time (`2024-05-01T12:00:00Z`).
    #[serde(default)]
    pub since: Option<String>,
    /// Only events at or before this time (same forms as since).
    #[serde(default)]
    pub until: Option<String>,
    /// At most this many rows (each question has its own default).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Only this run of a folder of traces: its id or a unique prefix.
    #[serde(default)]
    pub run: Option<String>,
}

impl FilterParams {
    fn filters(&self) -> Result<Filters, CliError> {
        crate::query_cmd::FilterArgs {
            module: self.module.clone(),
            thread: self.thread.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            limit: self.limit,
            run_id: self.run.clone(),
        }
        .filters()
    }
}

/// A question with no argument.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct QuestionParams {
    /// The trace: a .parquet file, a killed run's trace, or a folder of traces.
    pub trace: String,
    #[serde(flatten)]
    pub filters: FilterParams,
}

/// `query_top` and `query_slow`: how many functions.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct RankParams {
    /// The trace: a .parquet file, a killed run's trace, or a folder of traces.
    pub trace: String,
    /// How many functions (default 20).
    #[serde(default)]
    pub n: Option<usize>,
    #[serde(flatten)]
    pub filters: FilterParams,
}

/// `query_call`: which function.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct CallParams {
    /// The trace: a .parquet file, a killed run's trace, or a folder of traces.
    pub trace: String,
    /// The function: `multiply`, `Order.total` or `myapp.billing.Order.total`.
    pub name: String,
    #[serde(flatten)]
    pub filters: FilterParams,
}

/// `query_sql`: one read-only statement.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct SqlParams {
    /// The trace: a .parquet file, a killed run's trace, or a folder of traces.
    pub trace: String,
    /// One SELECT (or WITH / EXPLAIN) over the tables `events` and `runs`; anything
    /// that would write, copy or create is refused.
    pub sql: String,
    /// The filters of the questions, as `tracer query --sql` applies them: the
    /// statement sees only the rows they keep (limit: default all rows).
    #[serde(flatten)]
    pub filters: FilterParams,
}

/// `dump`: which process.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct DumpParams {
    /// The process id of a running Python process.
    pub pid: i32,
    /// Also read every local variable of every frame.
    #[serde(default)]
    pub locals: bool,
    /// Names whose values are shown as [REDACTED] (added to the built-in secret names).
    #[serde(default)]
    pub redact: Vec<String>,
}

/// The options of `record` and `attach`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct SamplingParams {
    /// Samples per second (default 1000).
    #[serde(default)]
    pub rate: Option<u32>,
    /// Trace modules matching these globs (`'*'` is everything; default: the
    /// program's own code).
    #[serde(default)]
    pub include: Vec<String>,
    /// Do not trace modules matching these globs.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Do not record argument values.
    #[serde(default)]
    pub no_args: bool,
    /// Names whose values are stored as [REDACTED].
    #[serde(default)]
    pub redact: Vec<String>,
    /// Also trace Python processes started later under the traced one.
    #[serde(default)]
    pub subprocesses: bool,
    /// Replace the output file if it exists.
    #[serde(default)]
    pub force: bool,
}

impl SamplingParams {
    fn options(&self, output: &str) -> TraceOptions {
        TraceOptions {
            output: Some(PathBuf::from(output)),
            force: self.force,
            rate: self.rate.unwrap_or(1000),
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            no_args: self.no_args,
            redact: self.redact.clone(),
            subprocesses: self.subprocesses,
            exact: false,
            max_calls: None,
        }
    }
}

/// `record`: the command, where the trace goes, and when to stop.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct RecordParams {
    /// The command and its arguments, e.g. ["python3", "app.py", "--port", "8000"].
    pub command: Vec<String>,
    /// Where to write the trace (a .parquet path).
    pub output: String,
    /// Stop the command after this many seconds (every thread's stack is returned).
    pub timeout: f64,
    #[serde(flatten)]
    pub sampling: SamplingParams,
}

/// `attach`: which process, where the trace goes, for how long.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct AttachParams {
    /// The process id of a running Python process.
    pub pid: i32,
    /// Where to write the trace (a .parquet path).
    pub output: String,
    /// Sample for this many seconds (or until the process exits).
    pub duration: f64,
    #[serde(flatten)]
    pub sampling: SamplingParams,
}

/// `report`: which trace.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct ReportParams {
    /// The trace: a .parquet file, a killed run's trace, or a folder of traces.
    pub trace: String,
    /// Only this run of a folder.
    #[serde(default)]
    pub run: Option<String>,
}

/// `export`: which trace, in which format, to which file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct ExportParams {
    /// The trace: a .parquet file, a killed run's trace, or a folder of traces.
    pub trace: String,
    /// `flamegraph` (SVG), `chrome` (trace-event JSON for Perfetto) or `speedscope`.
    pub format: ExportFormat,
    /// The file to write.
    pub output: String,
    #[serde(flatten)]
    pub filters: FilterParams,
}

/// `view`: which trace, to which file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct ViewParams {
    /// The trace: a .parquet file, a killed run's trace, or a folder of traces.
    pub trace: String,
    /// The HTML file to write.
    pub output: String,
    #[serde(flatten)]
    pub filters: FilterParams,
}

/// The server: its tools and their router.
#[derive(Debug, Clone)]
pub struct TracerTools {
    tool_router: ToolRouter<TracerTools>,
}

impl TracerTools {
    fn new() -> TracerTools {
        TracerTools {
            tool_router: Self::tool_router(),
        }
    }
}

/// Runs `work` on a blocking thread and turns its outcome into a tool result.
async fn blocking<F>(work: F) -> Result<CallToolResult, ErrorData>
where
    F: FnOnce() -> Result<Value, CliError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(CallToolResult::structured(value)),
        Ok(Err(error)) => Ok(CallToolResult::structured_error(json!({
            "error": error.message,
            "hint": error.hint,
        }))),
        Err(join) => Err(ErrorData::internal_error(
            format!("the tool failed: {join}"),
            None,
        )),
    }
}

/// Asks trace `trace` one question: the JSON of `tracer query --format json`.
fn ask(trace: &str, question: Question, filters: &FilterParams) -> Result<Value, CliError> {
    let path = PathBuf::from(trace);
    let filters = filters.filters()?;
    let session = QuerySession::open(&path).map_err(|e| cli_error(e, &path))?;
    let answer = session
        .ask(&question, &filters)
        .map_err(|e| cli_error(e, &path))?;
    Ok(answer_json(&answer))
}

/// A recording's answer: the trace, how it ended, the report, and the trace's
/// `query_runs` answer.
fn traced_json(traced: Traced) -> Result<Value, CliError> {
    if let Some(error) = traced.error {
        return Err(error);
    }
    let runs = match &traced.trace {
        Some(trace) => ask(
            &trace.to_string_lossy(),
            Question::Runs,
            &FilterParams::default(),
        )?,
        None => Value::Null,
    };
    let (stdout, stderr) = traced.output.unwrap_or_default();
    Ok(json!({
        "trace": traced.trace.map(|p| p.display().to_string()),
        "status": traced.status.map(|s| s.as_str()),
        "exit_code": traced.target_exit_code,
        "tracer_exit_code": traced.exit_code,
        "note": traced.note,
        "report": traced.report,
        "stacks_at_timeout": traced.stacks_at_timeout,
        "stdout": stdout,
        "stderr": stderr,
        "runs": runs,
    }))
}

#[tool_router]
impl TracerTools {
    #[tool(
        description = "Every thread's stack of a running Python process, now, without stopping it \
        (as `tracer dump --pid PID --format json`): pid, python_version, and per thread its \
        name, state (running/idle/blocked/stopped), GIL, system call and frames with argument values."
    )]
    async fn dump(
        &self,
        Parameters(p): Parameters<DumpParams>,
    ) -> Result<CallToolResult, ErrorData> {
        blocking(move || {
            let snapshot = crate::dump::snapshot(p.pid, p.locals, &p.redact)?;
            serde_json::to_value(&snapshot)
                .map_err(|e| CliError::new(format!("cannot encode the dump: {e}")))
        })
        .await
    }

    #[tool(
        description = "Run a command under the sampler and write its trace (as `tracer record \
        -o OUTPUT --timeout SECS -- CMD`). Returns the trace path, status, exit code, the run \
        report, the command's stdout/stderr (their last 64 KiB), the stacks at a timeout, and \
        the trace's query_runs answer."
    )]
    async fn record(
        &self,
        Parameters(p): Parameters<RecordParams>,
    ) -> Result<CallToolResult, ErrorData> {
        blocking(move || {
            crate::trace_cmd::check_seconds(p.timeout)
                .map_err(|e| CliError::usage(format!("timeout: {e}")))?;
            let args = RecordArgs {
                trace: p.sampling.options(&p.output),
                timeout: Some(p.timeout),
                command: p.command,
            };
            traced_json(record_run(&args, Caller::Tool)?)
        })
        .await
    }

    #[tool(
        description = "Sample a running Python process for a duration and write its trace (as \
        `tracer attach --pid PID --duration SECS -o OUTPUT`). Returns the trace path, status, \
        the run report and the trace's query_runs answer."
    )]
    async fn attach(
        &self,
        Parameters(p): Parameters<AttachParams>,
    ) -> Result<CallToolResult, ErrorData> {
        blocking(move || {
            crate::trace_cmd::check_seconds(p.duration)
                .map_err(|e| CliError::usage(format!("duration: {e}")))?;
            let args = AttachArgs {
                pid: p.pid,
                duration: Some(p.duration),
                trace: p.sampling.options(&p.output),
            };
            traced_json(attach_run(&args, Caller::Tool)?)
        })
        .await
    }

    #[tool(description = "One row per run of a trace (as `tracer query TRACE --runs`).")]
    async fn query_runs(
        &self,
        Parameters(p): Parameters<QuestionParams>,
    ) -> Result<CallToolResult, ErrorData> {
        blocking(move || ask(&p.trace, Question::Runs, &p.filters)).await
    }

    #[tool(
        description = "One row per thread: name, first and last event, calls, exceptions, depth (as `tracer query TRACE --threads`)."
    )]
    async fn query_threads(
        &self,
        Parameters(p): Parameters<QuestionParams>,
    ) -> Result<CallToolResult, ErrorData> {
        blocking(move || ask(&p.trace, Question::Threads, &p.filters)).await
    }

    #[tool(
        description = "The most called functions, with exclude suggestions (as `tracer query TRACE --top N`)."
    )]
    async fn query_top(
        &self,
        Parameters(p): Parameters<RankParams>,
    ) -> Result<CallToolResult, ErrorData> {
        blocking(move || ask(&p.trace, Question::Top(p.n.unwrap_or(20)), &p.filters)).await
    }

    #[tool(
        description = "The functions with the most total time, with per-call times and sampled upper bounds (as `tracer query TRACE --slow N`)."
    )]
    async fn query_slow(
        &self,
        Parameters(p): Parameters<RankParams>,
    ) -> Result<CallToolResult, ErrorData> {
        blocking(move || ask(&p.trace, Question::Slow(p.n.unwrap_or(20)), &p.filters)).await
    }

    #[tool(
        description = "Every call of one function: args, return value or exception, duration, caller and the calls it made (as `tracer query TRACE --call NAME`)."
    )]
    async fn query_call(
        &self,
        Parameters(p): Parameters<CallParams>,
    ) -> Result<CallToolResult, ErrorData> {
        blocking(move || ask(&p.trace, Question::Call(p.name), &p.filters)).await
    }

    #[tool(
        description = "The calls of each thread as a tree with durations (as `tracer query TRACE --tree`)."
    )]
    async fn query_tree(
        &self,
        Parameters(p): Parameters<QuestionParams>,
    ) -> Result<CallToolResult, ErrorData> {
        blocking(move || ask(&p.trace, Question::Tree, &p.filters)).await
    }

    #[tool(description = "Every event in order with its depth (as `tracer query TRACE --flow`).")]
    async fn query_flow(
        &self,
        Parameters(p): Parameters<QuestionParams>,
    ) -> Result<CallToolResult, ErrorData> {
        blocking(move || ask(&p.trace, Question::Flow, &p.filters)).await
    }

    #[tool(
        description = "Calls from traced code into untraced code, by callee and caller, with the --include that would trace them (as `tracer query TRACE --gaps`)."
    )]
    async fn query_gaps(
        &self,
        Parameters(p): Parameters<QuestionParams>,
    ) -> Result<CallToolResult, ErrorData> {
        blocking(move || ask(&p.trace, Question::Gaps, &p.filters)).await
    }

    #[tool(
        description = "Every exception: type, message, where it was raised or passed through (as `tracer query TRACE --exceptions`)."
    )]
    async fn query_exceptions(
        &self,
        Parameters(p): Parameters<QuestionParams>,
    ) -> Result<CallToolResult, ErrorData> {
        blocking(move || ask(&p.trace, Question::Exceptions, &p.filters)).await
    }

    #[tool(
        description = "Any read-only SQL over the tables `events` (one row per call, return, \
        exception, unfinished call or gap; DESIGN's schema) and `runs` (as `tracer query TRACE \
        --sql ...`). Writes, copies and DDL are refused."
    )]
    async fn query_sql(
        &self,
        Parameters(p): Parameters<SqlParams>,
    ) -> Result<CallToolResult, ErrorData> {
        blocking(move || {
            let path = PathBuf::from(&p.trace);
            let filters = p.filters.filters()?;
            let session = QuerySession::open(&path).map_err(|e| cli_error(e, &path))?;
            let answer = session
                .sql_with_filters(&p.sql, &filters)
                .map_err(|e| cli_error(e, &path))?;
            Ok(answer_json(&answer))
        })
        .await
    }

    #[tool(
        description = "The run report of a trace again (as `tracer report TRACE`), as {\"report\": text}."
    )]
    async fn report(
        &self,
        Parameters(p): Parameters<ReportParams>,
    ) -> Result<CallToolResult, ErrorData> {
        blocking(move || {
            let path = PathBuf::from(&p.trace);
            let report = crate::report_cmd::reports(&path, p.run.as_deref())?;
            Ok(json!({ "report": report }))
        })
        .await
    }

    #[tool(
        description = "Write a trace as an SVG flame graph, a Chrome trace-event JSON (Perfetto, \
        chrome://tracing) or a speedscope JSON (as `tracer export TRACE --format F -o OUTPUT`). \
        Returns the path written and how many calls and threads it draws."
    )]
    async fn export(
        &self,
        Parameters(p): Parameters<ExportParams>,
    ) -> Result<CallToolResult, ErrorData> {
        blocking(move || {
            let path = PathBuf::from(&p.trace);
            let filters = p.filters.filters()?;
            let session = QuerySession::open(&path).map_err(|e| cli_error(e, &path))?;
            let written = export(
                &session,
                &path,
                p.format,
                &filters,
                &PathBuf::from(&p.output),
            )?;
            Ok(written.to_json(p.format))
        })
        .await
    }

    #[tool(
        description = "Write one self-contained HTML page of a trace with its call tree, a \
        timeline per thread and the per-function table (as `tracer view TRACE -o OUTPUT`)."
    )]
    async fn view(
        &self,
        Parameters(p): Parameters<ViewParams>,
    ) -> Result<CallToolResult, ErrorData> {
        blocking(move || {
            let path = PathBuf::from(&p.trace);
            let mut filters = p.filters.filters()?;
            filters.limit.get_or_insert(crate::view::DEFAULT_CALLS);
            let session = QuerySession::open(&path).map_err(|e| cli_error(e, &path))?;
            let output = PathBuf::from(&p.output);
            let notes = crate::view::write_view(&session, &path, &filters, &output)?;
            Ok(json!({ "path": output.display().to_string(), "notes": notes }))
        })
        .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TracerTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("tracer", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }
}
