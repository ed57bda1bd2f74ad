//! The on-disk trace: the Arrow schema of the events table (schema version 1),
//! run metadata, and Parquet segments.
//!
//! * [`schema`]: [`schema::events_schema`], the columns of DESIGN.md.

pub mod schema;
