//! The on-disk trace: the Arrow schema of the events table (schema version 1),
//! the run's metadata, Parquet segments while recording, finishing and repairing.
//!
//! # Overview
//!
//! * [`schema::events_schema`]: the columns of DESIGN.md's events table.
//! * [`RunInfo`]: the run-level facts (command, target, mode, status, counters),
//!   stored as JSON under the Parquet key-value metadata key `tracer.run` of every
//!   file of a trace. [`new_run_id`] makes the id every row carries.
//! * [`TraceWriter`]: the [`attach::EventSink`] a recording writes into. Events are
//!   buffered as Arrow batches and written as complete Parquet segments
//!   `T.parquet.parts/part-000001.parquet`, ... at least every second (the caller
//!   calls [`TraceWriter::flush_if_due`] from its loop), each carrying `tracer.run`
//!   with status `unfinished`. [`TraceWriter::finish`] merges them, streaming, into
//!   `T.parquet` sorted by `seq` and removes the folder.
//! * [`trace_files`]: what a reader of a path reads: per run, the Parquet files
//!   (the finished file, or the segments of a run whose tracer was killed) and its
//!   [`RunInfo`]. [`repair`] merges a killed run's segments into one file;
//!   [`newest_trace`] finds the latest trace in `./traces/`.
//!
//! Producers (the sampler, the exact-mode decoder) never see Parquet: they emit
//! [`attach::Event`]s. Readers (the query crate, pyarrow, DuckDB) never see the
//! writer: they read the files [`trace_files`] lists.
//!
//! ```no_run
//! use std::path::Path;
//! use std::time::Instant;
//! use storage::{Mode, RunInfo, RunStatus, TraceWriter};
//!
//! # fn main() -> storage::Result<()> {
//! let run = RunInfo::new(vec!["python3".into(), "app.py".into()], 4242, Mode::Sampled);
//! let mut writer = TraceWriter::create(Path::new("traces/app.parquet"), run.clone(), false)?;
//! // The sampler sends events with `writer.write(&event)?` (or through `EventSink`),
//! // and calls this every tick, events or not:
//! writer.flush_if_due(Instant::now())?;
//! let finished = RunInfo { status: RunStatus::Completed, ..run };
//! let path = writer.finish(finished)?;
//! let traces = storage::trace_files(&path)?;
//! assert!(traces.traces[0].finished);
//! # Ok(())
//! # }
//! ```

mod batch;
#[cfg(test)]
mod chunk_checks;
mod chunk_pages;
mod delta_chunk;
mod dictionary_chunk;
pub mod error;
pub mod layout;
mod merge;
mod parquet_io;
mod plain_chunk;
pub mod reader;
pub mod run;
pub mod schema;
pub mod utc;
pub mod writer;

pub use error::{Error, Result};
pub use parquet_io::{read_run_info, trace_writer_properties};
pub use reader::{newest_trace, repair, trace_files, Trace, TraceFiles};
pub use run::{new_run_id, LimitedFunction, Mode, RunInfo, RunStatus};
pub use writer::{TraceWriter, WriterOptions};
