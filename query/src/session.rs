//! [`QuerySession`]: a DataFusion session over one trace path, and its answers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::config::TableParquetOptions;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::{MemTable, TableProvider};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::GreedyMemoryPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{col, SessionConfig, SessionContext};

use crate::dictionary_groups::GroupByDictionaryIds;
use crate::error::{QueryError, Result};
use crate::questions::{literal, module_glob_matches, question_sql, Filters, Question, RunScope};
use crate::readonly;
use crate::runs::{run_time, runs_batch, shell_join, shell_quote};
use crate::trace::{locate, RunFiles};

/// How long and how much memory one query may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time for planning and running one query (`--timeout`).
    pub timeout: Duration,
    /// Memory the engine may hold for one query, in MiB (`--memory-limit`). Nothing
    /// spills to disk: a query that needs more fails with [`QueryError::MemoryLimit`].
    pub memory_limit_mib: usize,
}

impl Default for Limits {
    /// 30 seconds and 4096 MiB.
    fn default() -> Limits {
        Limits {
            timeout: Duration::from_secs(30),
            memory_limit_mib: 4096,
        }
    }
}

/// The commands that would trace more (`--gaps`) or less (`--top`) of the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tip {
    /// One sentence saying what the commands do.
    pub text: String,
    /// Commands to paste, one per distinct command line of the runs asked.
    pub commands: Vec<String>,
}

/// The answer to a question: the rows, how they were asked, and what to do next.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The question's name (`gaps`, `call`, ..., or `sql`).
    pub question: String,
    /// The question's argument (`--call NAME`, `--top N`, the `--sql` text).
    pub argument: Option<String>,
    /// The SQL that produced the rows (with its `LIMIT`), to rerun or adapt.
    pub sql: String,
    /// The columns of the rows.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// The limit the rows were cut at, when one applied.
    pub limit: Option<usize>,
    /// True when more rows matched than the limit let through.
    pub truncated: bool,
    /// `--gaps` and `--top`: commands to trace more or less.
    pub tip: Option<Tip>,
    /// Facts about the trace the reader should know (a run that did not finish).
    pub notes: Vec<String>,
}

impl Answer {
    /// How many rows the answer holds.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// The non-null text values of column `name`, in row order (empty if the column
    /// is missing). String and dictionary-of-string columns are read.
    pub fn text_column(&self, name: &str) -> Vec<String> {
        self.texts(name).into_iter().flatten().collect()
    }

    /// Column `name` as text, a value per row (`None` for a null; empty if the column
    /// is missing).
    fn texts(&self, name: &str) -> Vec<Option<String>> {
        let mut values = Vec::new();
        for batch in &self.batches {
            let Some(column) = batch.column_by_name(name) else {
                return Vec::new();
            };
            let Ok(text) = datafusion::arrow::compute::cast(
                column,
                &datafusion::arrow::datatypes::DataType::Utf8,
            ) else {
                return Vec::new();
            };
            let text = text.as_string::<i32>();
            values.extend(
                (0..text.len()).map(|i| text.is_valid(i).then(|| text.value(i).to_string())),
            );
        }
        values
    }
}

/// The two ways of reading `events`; each query is planned over one of them.
struct EventsTables {
    /// Filters applied inside the Parquet reader: the default, and far faster for a
    /// filter that keeps few rows (`--call`, `--exceptions`, most `--sql`).
    row_filters: Arc<ListingTable>,
    /// Filters applied after decoding: faster for a filter that keeps most rows,
    /// whose row selections only fragment the decoding (`--top`, `--slow`).
    decoded_filters: Arc<ListingTable>,
}

/// A DataFusion session over a trace path with the tables `events` (the Parquet
/// files, read by the engine with projection and predicate pushdown) and `runs`
/// (one row per run from the footers' `tracer.run`).
pub struct QuerySession {
    /// `None` only while the session is dropped.
    runtime: Option<tokio::runtime::Runtime>,
    context: SessionContext,
    events: EventsTables,
    runs: Vec<RunFiles>,
    limits: Limits,
}

/// The most rows an answer may be asked for: a larger `--limit` (up to 2^64 - 1)
/// is read as this, which SQL's signed 64-bit LIMIT (and a probe row more) can hold.
pub const MAX_ROWS: usize = 1 << 62;

impl QuerySession {
    /// Opens a trace file, a killed run's segments, or a folder of runs, with the
    /// default [`Limits`].
    pub fn open(path: &Path) -> Result<QuerySession> {
        QuerySession::open_with_limits(path, Limits::default())
    }

    /// Opens a trace path with the given limits.
    pub fn open_with_limits(path: &Path, limits: Limits) -> Result<QuerySession> {
        let runs = locate(path)?;
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_time()
            .build()
            .map_err(|source| QueryError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let memory_bytes = limits.memory_limit_mib.saturating_mul(1024 * 1024);
        let engine_error = |e: datafusion::error::DataFusionError| {
            QueryError::from_engine(e, limits.memory_limit_mib)
        };
        let runtime_env = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(GreedyMemoryPool::new(memory_bytes)))
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(engine_error)?;
        let mut config = SessionConfig::new()
            .with_target_partitions(threads)
            .with_information_schema(false);
        let options = config.options_mut();
        // Off for the session: each `events` table says itself whether its filters
        // go into the Parquet reader (DataFusion pushes them when either says so).
        options.execution.parquet.pushdown_filters = false;
        options.execution.parquet.reorder_filters = true;
        // Off: DataFusion 55 builds an aggregate's dynamic filter from its min/max over
        // plain columns only, yet prunes row groups for all its aggregates, so in
        // `SELECT max(seq), max(length(value))` (or a min/max with FILTER) the others
        // miss rows and answer wrong (AggregateExec's `init_dynamic_filter`).
        options.optimizer.enable_aggregate_dynamic_filter_pushdown = false;
        let context = SessionContext::new_with_config_rt(config, runtime_env);
        context.add_optimizer_rule(Arc::new(GroupByDictionaryIds::new()));

        let events = EventsTables {
            row_filters: events_table(&runs, true)?,
            decoded_filters: events_table(&runs, false)?,
        };
        context
            .register_table("events", events.row_filters.clone())
            .map_err(engine_error)?;
        let runs_table = MemTable::try_new(
            crate::runs::runs_schema(),
            vec![vec![runs_batch(&runs).map_err(engine_error)?]],
        )
        .map_err(engine_error)?;
        context
            .register_table("runs", Arc::new(runs_table))
            .map_err(engine_error)?;
        Ok(QuerySession {
            runtime: Some(runtime),
            context,
            events,
            runs,
            limits,
        })
    }

    /// The runs of the trace path, in path order.
    pub fn runs(&self) -> &[RunFiles] {
        &self.runs
    }

    /// What a reader of any answer should know: each run that did not finish.
    pub fn notes(&self) -> Vec<String> {
        self.runs
            .iter()
            .filter(|run| !run.finished)
            .map(|run| {
                format!(
                    "run {} did not finish (the tracer stopped before writing the trace): \
                     read from {} segment(s) in {}; the last second of events may be missing",
                    run.run_id(),
                    run.files.len(),
                    run.path.display()
                )
            })
            .collect()
    }

    /// Answers a named question.
    pub fn ask(&self, question: &Question, filters: &Filters) -> Result<Answer> {
        let scope = self.scope(filters.run.as_deref())?;
        let limit = filters
            .limit
            .unwrap_or_else(|| question.default_limit())
            .min(MAX_ROWS);
        let sql = question_sql(question, filters, &scope, limit)?;
        let probe = question_sql(question, filters, &scope, limit.saturating_add(1))?;
        let (schema, batches) = if question.keeps_most_rows() {
            self.with_events(&self.events.decoded_filters, || self.execute(&probe, None))?
        } else {
            self.execute(&probe, None)?
        };
        let (batches, truncated) = cut(batches, limit);
        let mut answer = Answer {
            question: question.name().to_string(),
            argument: question.argument(),
            sql,
            schema,
            batches,
            limit: Some(limit),
            truncated,
            tip: None,
            notes: self.notes(),
        };
        if matches!(question, Question::Exceptions) {
            answer.notes.extend(self.sampled_runs_note(&scope));
        }
        if !matches!(question, Question::Threads | Question::Runs) {
            answer.notes.extend(self.limited_calls_notes(&scope));
        }
        answer.tip = match question {
            Question::Gaps => self.gaps_tip(&answer, &scope),
            Question::Top(_) => self.top_tip(&answer, &scope),
            _ => None,
        };
        Ok(answer)
    }

    /// The full id of the run `wanted` names: its id or a prefix of exactly one run's
    /// (as `--run` takes it).
    pub fn run_id_for(&self, wanted: &str) -> Result<String> {
        let scope = self.scope(Some(wanted))?;
        Ok(scope.runs[0].0.clone())
    }

    /// For `--exceptions`: the runs in scope that were sampled, whose traces have no
    /// exception rows (a sample sees a call end, not how), so that an empty answer
    /// is not read as "nothing was raised".
    fn sampled_runs_note(&self, scope: &RunScope) -> Option<String> {
        let sampled: Vec<&str> = self
            .scoped_runs(scope)
            .filter(|r| r.metadata.get("mode").and_then(Value::as_str) == Some("sampled"))
            .map(RunFiles::run_id)
            .collect();
        (!sampled.is_empty()).then(|| {
            format!(
                "{} sampled (run {}): sampling sees calls end but not how, so a sampled \
                 trace has no exception rows; `tracer record --exact` records exceptions",
                if sampled.len() == 1 {
                    "one run was"
                } else {
                    "runs were"
                },
                sampled.join(", ")
            )
        })
    }

    /// For the questions about calls: the runs in scope recorded with `--max-calls`
    /// (their `limited_functions`), whose calls past the limit were counted but have
    /// no rows, so that the counts and times of the answer are read as those of the
    /// calls recorded.
    fn limited_calls_notes(&self, scope: &RunScope) -> Vec<String> {
        const SHOWN: usize = 5;
        self.scoped_runs(scope)
            .filter_map(|run| {
                let limited = run.metadata.get("limited_functions")?.as_array()?;
                if limited.is_empty() {
                    return None;
                }
                let mut named: Vec<String> = limited
                    .iter()
                    .take(SHOWN)
                    .map(|l| {
                        format!(
                            "{}.{} {}",
                            l["module"].as_str().unwrap_or("?"),
                            l["function"].as_str().unwrap_or("?"),
                            l["calls_not_recorded"].as_u64().unwrap_or(0)
                        )
                    })
                    .collect();
                if limited.len() > SHOWN {
                    named.push(format!("and {} more", limited.len() - SHOWN));
                }
                Some(format!(
                    "run {} was recorded with --max-calls: calls past the limit were counted, \
                     not recorded, and are not in these figures: {} (`tracer report` lists them)",
                    run.run_id(),
                    named.join(", ")
                ))
            })
            .collect()
    }

    /// Runs one read-only query (`--sql`). Anything but a single SELECT / WITH /
    /// EXPLAIN over `events` and `runs` is refused before it runs. `limit` caps the
    /// rows kept.
    pub fn sql(&self, sql: &str, limit: Option<usize>) -> Result<Answer> {
        self.sql_with_filters(
            sql,
            &Filters {
                limit,
                ..Filters::default()
            },
        )
    }

    /// [`QuerySession::sql`] with `tracer query`'s filters: `filters.limit` caps the
    /// rows kept; the others narrow what the query sees: `events` holds only the rows
    /// they keep (as every named question's), and `runs` only the run `--run` names.
    pub fn sql_with_filters(&self, sql: &str, filters: &Filters) -> Result<Answer> {
        let limit = filters.limit.map(|n| n.min(MAX_ROWS));
        let scope = self.scope(filters.run.as_deref())?;
        let conditions = filters.conditions("", &scope, true)?;
        let run = || self.execute(sql, limit.map(|n| n.saturating_add(1)));
        let (schema, batches) = if conditions.is_empty() {
            run()?
        } else {
            self.with_filtered_tables(&conditions, &scope, run)?
        };
        let (batches, truncated) = match limit {
            Some(limit) => cut(batches, limit),
            None => (batches, false),
        };
        Ok(Answer {
            question: "sql".to_string(),
            argument: Some(sql.to_string()),
            sql: sql.to_string(),
            schema,
            batches,
            limit,
            truncated,
            tip: None,
            notes: self.notes(),
        })
    }

    /// Runs `query` with `events` as a view of its rows that meet `conditions`, and
    /// `runs` as one of the runs `scope` names when `--run` narrowed it; then puts
    /// the tables back.
    fn with_filtered_tables<T>(
        &self,
        conditions: &[String],
        scope: &RunScope,
        query: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let engine_error = |e| QueryError::from_engine(e, self.limits.memory_limit_mib);
        let view = |sql: String| {
            self.runtime()
                .block_on(self.context.sql(&sql))
                .map(|frame| frame.into_view())
        };
        let events = view(format!(
            "SELECT * FROM events WHERE {}",
            conditions.join(" AND ")
        ))
        .map_err(engine_error)?;
        let runs = if scope.narrowed {
            let ids: Vec<String> = scope.runs.iter().map(|(id, _)| literal(id)).collect();
            Some(
                view(format!(
                    "SELECT * FROM runs WHERE run_id IN ({})",
                    ids.join(", ")
                ))
                .map_err(engine_error)?,
            )
        } else {
            None
        };
        let swap = |name: &str, table: Arc<dyn TableProvider>| {
            let old = self.context.deregister_table(name)?;
            self.context.register_table(name, table)?;
            Ok::<_, datafusion::error::DataFusionError>(old)
        };
        let old_events = swap("events", events).map_err(engine_error)?;
        let old_runs = match runs {
            Some(runs) => swap("runs", runs).map_err(engine_error)?,
            None => None,
        };
        let result = query();
        if let Some(old) = old_runs {
            swap("runs", old).map_err(engine_error)?;
        }
        swap("events", self.events.row_filters.clone()).map_err(engine_error)?;
        drop(old_events);
        result
    }

    /// Runs `query` with `events` read through `table`, then puts the default back.
    fn with_events<T>(
        &self,
        table: &Arc<ListingTable>,
        query: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let engine_error = |e| QueryError::from_engine(e, self.limits.memory_limit_mib);
        let register = |table: &Arc<ListingTable>| {
            self.context.deregister_table("events")?;
            self.context.register_table("events", table.clone())
        };
        register(table).map_err(engine_error)?;
        let result = query();
        register(&self.events.row_filters).map_err(engine_error)?;
        result
    }

    /// Checks, plans and runs `sql` under the session's limits.
    pub(crate) fn execute(
        &self,
        sql: &str,
        fetch: Option<usize>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let statement = readonly::check_statement(sql)?;
        let memory_limit_mib = self.limits.memory_limit_mib;
        let engine_error = |e| QueryError::from_engine(e, memory_limit_mib);
        let work = async {
            let state = self.context.state();
            let plan = state
                .statement_to_plan(statement)
                .await
                .map_err(engine_error)?;
            readonly::check_plan(&plan)?;
            let mut frame = self
                .context
                .execute_logical_plan(plan)
                .await
                .map_err(engine_error)?;
            if let Some(fetch) = fetch {
                frame = frame.limit(0, Some(fetch)).map_err(engine_error)?;
            }
            let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
            let batches = frame.collect().await.map_err(engine_error)?;
            Ok((schema, batches))
        };
        let limit = self.limits.timeout;
        // The deadline comes from a plain thread, not tokio's timer: a timer needs a
        // worker to drive it, and a busy query can occupy every worker.
        let (expired_tx, expired_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let deadline = std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(limit) {
                let _ = expired_tx.send(());
            }
        });
        let result = self.runtime().block_on(async {
            tokio::select! {
                biased;
                result = work => result,
                _ = expired_rx => Err(QueryError::Timeout { limit }),
            }
        });
        drop(done_tx);
        let _ = deadline.join();
        result
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime lives until the session is dropped")
    }

    /// The runs a question reads: all, or the one `--run` names.
    pub(crate) fn scope(&self, run: Option<&str>) -> Result<RunScope> {
        let all = || {
            self.runs
                .iter()
                .map(|r| (r.run_id().to_string(), run_time(r, "started_at")))
        };
        let Some(wanted) = run else {
            return Ok(RunScope {
                runs: all().collect(),
                narrowed: false,
            });
        };
        let exact: Vec<_> = all().filter(|(id, _)| id == wanted).collect();
        let matching = if exact.is_empty() {
            all().filter(|(id, _)| id.starts_with(wanted)).collect()
        } else {
            exact
        };
        match matching.len() {
            0 => Err(QueryError::UnknownRun {
                run: wanted.to_string(),
                known: all().map(|(id, _)| id).collect(),
            }),
            1 => Ok(RunScope {
                runs: matching,
                narrowed: true,
            }),
            _ => Err(QueryError::BadArgument {
                what: format!("--run {wanted}"),
                message: format!(
                    "the prefix matches {} runs: {}",
                    matching.len(),
                    matching
                        .iter()
                        .map(|(id, _)| id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// The runs in `scope`, in path order.
    fn scoped_runs<'a>(&'a self, scope: &'a RunScope) -> impl Iterator<Item = &'a RunFiles> {
        self.runs
            .iter()
            .filter(|r| scope.runs.iter().any(|(id, _)| id == r.run_id()))
    }

    /// `tracer record` commands, one per distinct command line of the runs in scope,
    /// with the run's own patterns plus `extra` ones, less its `--exclude` patterns
    /// that match a module of `to_trace`: an exclude wins over every include (the
    /// recorder's filter), so a command that kept it would not trace that module.
    fn record_commands(
        &self,
        scope: &RunScope,
        extra: &[(&str, String)],
        to_trace: &[String],
    ) -> Vec<String> {
        let mut commands: Vec<String> = Vec::new();
        for run in self.scoped_runs(scope) {
            let mut words = vec!["tracer record".to_string()];
            if run.metadata.get("mode").and_then(Value::as_str) == Some("exact") {
                words.push("--exact".to_string());
            }
            if run.metadata.get("subprocesses").and_then(Value::as_bool) == Some(true) {
                words.push("--subprocesses".to_string());
            }
            for pattern in run.include() {
                words.push(format!("--include {}", shell_quote(&pattern)));
            }
            for pattern in run.exclude() {
                if !to_trace.iter().any(|m| module_glob_matches(&pattern, m)) {
                    words.push(format!("--exclude {}", shell_quote(&pattern)));
                }
            }
            for (flag, pattern) in extra {
                let option = format!("{flag} {}", shell_quote(pattern));
                if !words.contains(&option) {
                    words.push(option);
                }
            }
            let command = run.command();
            words.push("--".to_string());
            words.push(if command.is_empty() {
                "<your command>".to_string()
            } else {
                shell_join(&command)
            });
            let line = words.join(" ");
            if !commands.contains(&line) {
                commands.push(line);
            }
        }
        commands
    }

    fn gaps_tip(&self, answer: &Answer, scope: &RunScope) -> Option<Tip> {
        let mut patterns: Vec<String> = Vec::new();
        let mut to_trace: Vec<String> = Vec::new();
        for (module, include) in answer
            .texts("module")
            .into_iter()
            .zip(answer.texts("include"))
        {
            let Some(pattern) = include else { continue };
            if !patterns.contains(&pattern) && patterns.len() < 5 {
                patterns.push(pattern.clone());
            }
            if let Some(module) = module.filter(|_| patterns.contains(&pattern)) {
                to_trace.push(module);
            }
        }
        if patterns.is_empty() {
            return None;
        }
        let mut left_out: Vec<String> = Vec::new();
        for pattern in self.scoped_runs(scope).flat_map(RunFiles::exclude) {
            if to_trace.iter().any(|m| module_glob_matches(&pattern, m))
                && !left_out.contains(&pattern)
            {
                left_out.push(pattern);
            }
        }
        let without = if left_out.is_empty() {
            String::new()
        } else {
            let excludes: Vec<String> = left_out
                .iter()
                .map(|p| format!("--exclude {}", shell_quote(p)))
                .collect();
            format!(
                " (without {}, which would keep them out: an exclude wins over an include)",
                excludes.join(", ")
            )
        };
        let extra: Vec<(&str, String)> =
            patterns.iter().map(|p| ("--include", p.clone())).collect();
        Some(Tip {
            text: format!(
                "to trace the untraced code these calls went into ({}), record again with{without}:",
                patterns.join(", ")
            ),
            commands: self.record_commands(scope, &extra, &to_trace),
        })
    }

    fn top_tip(&self, answer: &Answer, scope: &RunScope) -> Option<Tip> {
        let mut modules: Vec<String> = Vec::new();
        for module in answer.text_column("exclude") {
            if module != "__main__" && !modules.contains(&module) && modules.len() < 3 {
                modules.push(module);
            }
        }
        if modules.is_empty() {
            return None;
        }
        let extra: Vec<(&str, String)> = modules.iter().map(|m| ("--exclude", m.clone())).collect();
        Some(Tip {
            text: format!(
                "to trace less, leave out the busiest modules ({}) with:",
                modules.join(", ")
            ),
            commands: self.record_commands(scope, &extra, &[]),
        })
    }
}

impl Drop for QuerySession {
    /// Leaves a query stopped at its time limit to end in the background instead of
    /// waiting for it.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The `events` table: a listing table over every file of every run, with the
/// schema of DESIGN.md and the files' `(run_id, seq)` order declared, so that
/// ordered questions with a limit stop reading early. With `row_filters` the Parquet
/// reader applies a query's filters row by row while it decodes (only the rows that
/// pass are decoded in the other columns), else the filters run on decoded batches.
fn events_table(runs: &[RunFiles], row_filters: bool) -> Result<Arc<ListingTable>> {
    let mut urls = Vec::new();
    for file in runs.iter().flat_map(|r| r.files.iter()) {
        let absolute = std::path::absolute(file).map_err(|source| QueryError::Io {
            path: file.clone(),
            source,
        })?;
        let text = absolute.to_str().ok_or_else(|| QueryError::NotATrace {
            path: file.clone(),
            reason: "its path is not valid UTF-8".to_string(),
        })?;
        urls.push(
            ListingTableUrl::parse(text).map_err(|e| QueryError::NotParquet {
                path: file.clone(),
                reason: e.strip_backtrace(),
            })?,
        );
    }
    let mut parquet = TableParquetOptions::default();
    parquet.global.pushdown_filters = row_filters;
    parquet.global.reorder_filters = true;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default().with_options(parquet)))
        .with_file_extension(".parquet")
        .with_file_sort_order(vec![vec![
            col("run_id").sort(true, false),
            col("seq").sort(true, false),
        ]]);
    let config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(options)
        .with_schema(storage::schema::events_schema());
    let table =
        ListingTable::try_new(config).map_err(|e| QueryError::Engine(e.strip_backtrace()))?;
    Ok(Arc::new(table))
}

/// Keeps the first `limit` rows; says whether any were dropped.
fn cut(batches: Vec<RecordBatch>, limit: usize) -> (Vec<RecordBatch>, bool) {
    let mut kept = Vec::new();
    let mut left = limit;
    let mut truncated = false;
    for batch in batches {
        if left == 0 {
            truncated |= batch.num_rows() > 0;
            continue;
        }
        if batch.num_rows() > left {
            kept.push(batch.slice(0, left));
            truncated = true;
            left = 0;
        } else {
            left -= batch.num_rows();
            kept.push(batch);
        }
    }
    (kept, truncated)
}
