//! Ask a trace: a DataFusion session over a trace path, and every named question of
//! `tracer query` as SQL.
//!
//! * [`QuerySession`]: opened on a trace file, a killed run's `.parts` segments or a
//!   folder of runs ([`trace`] finds the files and reads their footers). It
//!   registers two tables: `events` (the Parquet files, read by DataFusion with
//!   projection and predicate pushdown) and `runs` (one row per run, from each
//!   file's `tracer.run` metadata; see [`runs::runs_schema`]).
//! * [`Question`] and [`Filters`]: the named questions (`--gaps`, `--call NAME`,
//!   `--flow`, `--tree`, `--top N`, `--slow N`, `--exceptions`, `--threads`,
//!   `--runs`), each one SQL query ([`QuerySession::ask`]).
//! * [`QuerySession::sql`]: any read-only query; [`readonly`] refuses the rest.
//! * [`QuerySession::timeline`]: every call as a [`Span`] in per-thread
//!   [`Timeline`]s, nested, with sampled calls drawn at their lower bound: what
//!   `tracer export` and `tracer view` draw.
//! * [`Answer`]: the rows (Arrow record batches), the SQL that made them, whether
//!   they were cut at a limit, a [`Tip`] for `--gaps` and `--top`, and notes.
//!
//! ```no_run
//! use query::{Filters, Question, QuerySession};
//!
//! let session = QuerySession::open(std::path::Path::new("traces/run.parquet"))?;
//! let answer = session.ask(&Question::Call("Order.total".into()), &Filters::default())?;
//! println!("{} calls of Order.total", answer.num_rows());
//! # Ok::<(), query::QueryError>(())
//! ```

mod dictionary_groups;
pub mod error;
pub mod questions;
pub mod readonly;
pub mod runs;
pub mod session;
pub mod timeline;
pub mod trace;

/// Arrow, as the engine uses it: answers are Arrow record batches.
pub use datafusion::arrow;

pub use error::{QueryError, Result};
pub use questions::{Filters, Question, TimeBound, OUTERMOST};
pub use session::{Answer, Limits, QuerySession, Tip};
pub use timeline::{Outcome, Span, ThreadTimeline, Timeline, UntracedCalls};
pub use trace::{newest_trace, RunFiles};
