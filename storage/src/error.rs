//! Typed errors of the storage crate: each carries the path it is about, so the CLI
//! can print `error: ...` and a `hint: ...` without guessing.

use std::io;
use std::path::PathBuf;

/// What went wrong writing or reading a trace.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The output trace (or its segments folder) exists and overwriting was not asked for.
    #[error("{} already exists", path.display())]
    AlreadyExists { path: PathBuf },

    /// A path given to read does not exist (neither the file nor its `.parts` folder).
    #[error("{} does not exist", path.display())]
    NotFound { path: PathBuf },

    /// A folder given to read holds no trace (no `*.parquet`, no `*.parquet.parts`).
    #[error("{} holds no traces (no *.parquet files or *.parquet.parts folders)", path.display())]
    NoTraces { path: PathBuf },

    /// A segments folder without one complete segment (the tracer was killed while
    /// starting).
    #[error("{} holds no complete segments", path.display())]
    NoSegments { path: PathBuf },

    /// [`crate::repair`] was asked to merge, or [`crate::TraceWriter::create`] with
    /// `force` to replace, the segments of a run that a live tracer is recording.
    #[error(
        "{} is still being recorded{}",
        path.display(),
        pid.map(|pid| format!(" by tracer process {pid}")).unwrap_or_default()
    )]
    StillRecording { path: PathBuf, pid: Option<u32> },

    /// A file is not readable as Parquet (truncated, another format, damaged footer).
    #[error("{} is not a readable Parquet file: {detail}", path.display())]
    NotParquet { path: PathBuf, detail: String },

    /// A Parquet file without the `tracer.run` metadata: not written by tracer.
    #[error("{} is a Parquet file but not a trace: it has no `tracer.run` metadata", path.display())]
    NotATrace { path: PathBuf },

    /// The `tracer.run` metadata is not the JSON object [`crate::RunInfo`] expects.
    #[error("{} has damaged `tracer.run` metadata: {source}", path.display())]
    BadRunInfo {
        path: PathBuf,
        source: serde_json::Error,
    },

    /// A file's columns are not those of [`crate::schema::events_schema`].
    #[error("{} does not have the columns of the events table: {detail}", path.display())]
    SchemaMismatch { path: PathBuf, detail: String },

    /// The run given to [`crate::TraceWriter::update_run`] or
    /// [`crate::TraceWriter::finish`] is another run than the one being written.
    #[error("the trace is being written for run {expected}, not run {found}")]
    RunMismatch { expected: String, found: String },

    /// [`crate::TraceWriter::finish`] was given a run whose status says it is still
    /// running; a finished trace needs the reason the run stopped.
    #[error("finishing run {run_id} needs a final status, not `unfinished`")]
    StatusNotFinal { run_id: String },

    /// A file system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    /// Encoding or decoding Parquet failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Parquet {
        action: &'static str,
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },

    /// An Arrow kernel (building, sorting or merging batches) failed.
    #[error("cannot build the events batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// The background thread that writes segments panicked.
    #[error("the segment writer thread of {} panicked", path.display())]
    WriterThread { path: PathBuf },

    /// The writer was used after an earlier error stopped it.
    #[error("writing {} stopped after an earlier error", path.display())]
    WriterStopped { path: PathBuf },
}

/// The storage crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `action` on `path`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Parquet`] for `action` on `path`.
    pub(crate) fn parquet(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: parquet::errors::ParquetError,
    ) -> Error {
        Error::Parquet {
            action,
            path: path.into(),
            source,
        }
    }
}
