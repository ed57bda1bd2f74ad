//! The events table, schema version 1 (DESIGN.md, "The events table").
//! Column names are stable: add columns, never rename.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The version written into `tracer.run.schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

/// The Parquet key-value metadata key that holds the run's JSON object.
pub const RUN_METADATA_KEY: &str = "tracer.run";

/// The Arrow schema of the events table. String columns that repeat are
/// dictionary-encoded (`Dictionary(Int32, Utf8)`), as DESIGN.md allows.
pub fn events_schema() -> SchemaRef {
    let dict = || DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    Arc::new(Schema::new(vec![
        Field::new("run_id", dict(), false),
        Field::new("pid", DataType::Int32, false),
        Field::new("tid", DataType::Int64, false),
        Field::new("thread_name", dict(), true),
        Field::new("seq", DataType::UInt64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new("kind", dict(), false),
        Field::new("source", dict(), false),
        Field::new("call_id", DataType::UInt64, false),
        Field::new("parent_id", DataType::UInt64, true),
        Field::new("depth", DataType::Int32, false),
        Field::new("function", dict(), false),
        Field::new("module", dict(), false),
        Field::new("file", dict(), false),
        Field::new("line", DataType::Int32, false),
        Field::new("caller", dict(), true),
        Field::new("caller_line", DataType::Int32, true),
        Field::new("args", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
        Field::new("exception", DataType::Utf8, true),
        Field::new("duration_ns", DataType::Int64, true),
        Field::new("duration_max_ns", DataType::Int64, true),
        Field::new("count", DataType::UInt32, false),
    ]))
}
