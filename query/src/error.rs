//! What can go wrong when asking a trace, with the facts a user needs to fix it.

use std::path::PathBuf;
use std::time::Duration;

use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;

/// An error of the query crate. Each variant names the path, statement or value at
/// fault; [`QueryError::is_usage`] tells the command line which ones are the user's
/// request (exit code 2) rather than the trace or the engine (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The trace path does not exist (and no `.parts` segments folder stands for it).
    #[error("no trace at {path}")]
    NotFound { path: PathBuf },

    /// A folder holds no trace files and no segments folders.
    #[error("no traces in {path} (no *.parquet files or *.parquet.parts folders)")]
    EmptyFolder { path: PathBuf },

    /// A killed run's segments folder holds no complete segment.
    #[error("{path} holds no complete segment (part-*.parquet): the recording stopped before its first second")]
    NoSegments { path: PathBuf },

    /// A file that should be Parquet could not be read as Parquet.
    #[error("{path} is not a readable Parquet file: {reason}")]
    NotParquet { path: PathBuf, reason: String },

    /// A Parquet file that is not a tracer trace (a column or `tracer.run` is missing).
    #[error("{path} is not a tracer trace: {reason}")]
    NotATrace { path: PathBuf, reason: String },

    /// A path holds characters the engine would read as a file pattern.
    #[error("{path}: trace paths may not contain '*', '?' or '[' (rename the file)")]
    PatternInPath { path: PathBuf },

    /// A file-system error while looking for trace files.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `--sql` was given a statement that is not a single read-only query.
    #[error("refused: {reason}")]
    Refused { reason: String },

    /// The SQL text does not parse.
    #[error("SQL syntax error: {message}")]
    Syntax { message: String },

    /// A column name in the query is not a column of the tables it reads.
    #[error("unknown column {name}; available columns: {}", available.join(", "))]
    UnknownColumn {
        name: String,
        available: Vec<String>,
    },

    /// A filter or question argument could not be understood.
    #[error("{what}: {message}")]
    BadArgument { what: String, message: String },

    /// `--run` names no run of the trace.
    #[error("no run {run} in this trace; runs: {}", known.join(", "))]
    UnknownRun { run: String, known: Vec<String> },

    /// The query ran longer than its time limit.
    #[error("the query did not finish within {} s", limit.as_secs_f64())]
    Timeout { limit: Duration },

    /// The query needed more memory than its limit.
    #[error("the query needed more than its memory limit of {limit_mib} MiB: {message}")]
    MemoryLimit { limit_mib: usize, message: String },

    /// Any other error of the engine, planning or executing the query.
    #[error("{0}")]
    Engine(String),
}

impl QueryError {
    /// True when the error is in what the user asked (a refused or malformed
    /// statement, an unknown column, a bad filter), not in the trace or the engine.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            QueryError::Refused { .. }
                | QueryError::Syntax { .. }
                | QueryError::UnknownColumn { .. }
                | QueryError::BadArgument { .. }
                | QueryError::UnknownRun { .. }
        )
    }

    /// Turns an engine error into the most specific variant: an unknown column
    /// (with the columns available), a syntax error, an exhausted memory limit of
    /// `memory_limit_mib`, or the engine's own message.
    pub(crate) fn from_engine(error: DataFusionError, memory_limit_mib: usize) -> QueryError {
        for cause in causes(&error) {
            match cause {
                DataFusionError::SchemaError(schema_error, _) => {
                    if let SchemaError::FieldNotFound {
                        field,
                        valid_fields,
                    } = schema_error.as_ref()
                    {
                        let mut available: Vec<String> =
                            valid_fields.iter().map(|c| c.name.clone()).collect();
                        available.sort();
                        available.dedup();
                        return QueryError::UnknownColumn {
                            name: field.name.clone(),
                            available,
                        };
                    }
                }
                DataFusionError::SQL(parser_error, _) => {
                    return QueryError::Syntax {
                        message: parser_error.to_string(),
                    };
                }
                DataFusionError::ResourcesExhausted(message) => {
                    return QueryError::MemoryLimit {
                        limit_mib: memory_limit_mib,
                        message: message.clone(),
                    };
                }
                _ => {}
            }
        }
        QueryError::Engine(error.find_root().strip_backtrace())
    }
}

/// Every error in `error`'s chain, outermost first: through context, diagnostics,
/// shared and collected errors.
fn causes(error: &DataFusionError) -> Vec<&DataFusionError> {
    let mut found = Vec::new();
    let mut queue = vec![error];
    while let Some(next) = queue.pop() {
        found.push(next);
        match next {
            DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
                queue.push(inner)
            }
            DataFusionError::Shared(inner) => queue.push(inner),
            DataFusionError::Collection(all) => queue.extend(all.iter()),
            _ => {}
        }
    }
    found
}

/// The result type of the query crate.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;
