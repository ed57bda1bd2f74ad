//! The `runs` table: one row per run, from each run's `tracer.run` footer metadata.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray, TimestampNanosecondArray,
    UInt32Array, UInt64Array,
};
use datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::Value;

use crate::trace::RunFiles;

/// The columns of the `runs` table. `command` is the run's command line joined with
/// shell quoting (ready to paste); `finished` is false for a killed run read from its
/// segments (its `status` is then `unfinished`); `events` counts the rows actually in
/// the files; `path` is the trace file or segments folder; `metadata` is the whole
/// `tracer.run` object as JSON, for fields without a column.
pub fn runs_schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, true),
        Field::new("finished", DataType::Boolean, false),
        Field::new("mode", DataType::Utf8, true),
        Field::new("command", DataType::Utf8, true),
        Field::new("cwd", DataType::Utf8, true),
        Field::new("pid", DataType::Int32, true),
        Field::new("python_version", DataType::Utf8, true),
        Field::new("python_executable", DataType::Utf8, true),
        Field::new("rate_hz", DataType::UInt32, true),
        Field::new("started_at", ts(), true),
        Field::new("ended_at", ts(), true),
        Field::new("exit_code", DataType::Int32, true),
        Field::new("samples", DataType::UInt64, true),
        Field::new("sample_errors", DataType::UInt64, true),
        Field::new("events", DataType::UInt64, false),
        Field::new("dropped_events", DataType::UInt64, true),
        Field::new("schema_version", DataType::UInt32, true),
        Field::new("tracer_version", DataType::Utf8, true),
        Field::new("segments", DataType::UInt32, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("metadata", DataType::Utf8, false),
    ]))
}

/// One batch holding a row per run.
pub fn runs_batch(runs: &[RunFiles]) -> datafusion::error::Result<RecordBatch> {
    let text = |key: &str| -> ArrayRef {
        Arc::new(StringArray::from_iter(runs.iter().map(|r| {
            r.metadata
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_string)
        })))
    };
    let unsigned = |key: &str| -> ArrayRef {
        Arc::new(UInt64Array::from_iter(
            runs.iter()
                .map(|r| r.metadata.get(key).and_then(Value::as_u64)),
        ))
    };
    let small_unsigned = |key: &str| -> ArrayRef {
        Arc::new(UInt32Array::from_iter(runs.iter().map(|r| {
            r.metadata
                .get(key)
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        })))
    };
    let signed = |key: &str| -> ArrayRef {
        Arc::new(Int32Array::from_iter(runs.iter().map(|r| {
            r.metadata
                .get(key)
                .and_then(Value::as_i64)
                .and_then(|v| i32::try_from(v).ok())
        })))
    };
    let time = |key: &str| -> ArrayRef {
        Arc::new(
            TimestampNanosecondArray::from_iter(runs.iter().map(|r| run_time(r, key)))
                .with_timezone("UTC"),
        )
    };
    let status = StringArray::from_iter(runs.iter().map(|r| {
        if r.finished {
            r.metadata
                .get("status")
                .and_then(Value::as_str)
                .map(str::to_string)
        } else {
            Some("unfinished".to_string())
        }
    }));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            runs.iter().map(|r| r.run_id()),
        )),
        Arc::new(status),
        Arc::new(BooleanArray::from_iter(
            runs.iter().map(|r| Some(r.finished)),
        )),
        text("mode"),
        Arc::new(StringArray::from_iter(runs.iter().map(|r| {
            let command = r.command();
            (!command.is_empty()).then(|| shell_join(&command))
        }))),
        text("cwd"),
        signed("pid"),
        text("python_version"),
        text("python_executable"),
        small_unsigned("rate_hz"),
        time("started_at"),
        time("ended_at"),
        signed("exit_code"),
        unsigned("samples"),
        unsigned("sample_errors"),
        Arc::new(UInt64Array::from_iter_values(runs.iter().map(|r| r.rows))),
        unsigned("dropped_events"),
        small_unsigned("schema_version"),
        text("tracer_version"),
        Arc::new(UInt32Array::from_iter_values(
            runs.iter()
                .map(|r| u32::try_from(r.files.len()).unwrap_or(u32::MAX)),
        )),
        Arc::new(StringArray::from_iter_values(
            runs.iter().map(|r| r.path.to_string_lossy().into_owned()),
        )),
        Arc::new(StringArray::from_iter_values(
            runs.iter()
                .map(|r| Value::Object(r.metadata.clone()).to_string()),
        )),
    ];
    Ok(RecordBatch::try_new(runs_schema(), columns)?)
}

/// A timestamp field of `tracer.run` (RFC 3339 text) in nanoseconds since the epoch.
pub fn run_time(run: &RunFiles, key: &str) -> Option<i64> {
    run.metadata
        .get(key)
        .and_then(Value::as_str)
        .and_then(|text| string_to_timestamp_nanos(text).ok())
}

/// Joins a command line with POSIX shell quoting, so it can be pasted back.
pub fn shell_join(words: &[String]) -> String {
    words
        .iter()
        .map(|word| shell_quote(word))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One word quoted for a POSIX shell; words of only safe characters stay bare.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | '+' | ',' | '@' | '%')
        });
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}
