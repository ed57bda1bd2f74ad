//! Parquet files of the events table: the writer properties every trace file uses,
//! writing one segment atomically, and reading a file's `tracer.run` and rows back.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int32Type;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowRowGroupWriterFactory};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnDescPtr, ColumnPath};

use crate::chunk_pages::EncodedChunk;
use crate::delta_chunk::encode_delta_column;
use crate::dictionary_chunk::encode_dictionary_column;
use crate::error::{Error, Result};
use crate::layout::{create_private_file, rename_into_place, segment_file_name, temp_path};
use crate::plain_chunk::encode_plain_column;
use crate::run::RunInfo;
use crate::schema::{events_schema, RUN_METADATA_KEY};

/// Rows per row group of a finished trace: small enough that the writer's
/// in-progress row group stays a few MiB, large enough for good compression.
pub(crate) const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Rows per batch when reading segments back to merge them.
pub(crate) const READ_BATCH_ROWS: usize = 8192;

/// zstd level of segments: fast, they are rewritten when the run finishes.
pub(crate) const SEGMENT_ZSTD_LEVEL: i32 = 1;

/// zstd level of a finished trace.
pub(crate) const FINAL_ZSTD_LEVEL: i32 = 3;

/// The name columns, the only ones with a dictionary: a few texts repeated on
/// every row. Every other column is plain unless it is a [`DELTA_COLUMNS`] one: the
/// free text (`args`, `value`, `exception`) is (nearly) unique per row, and an
/// integer dictionary costs a hash-table insert per row and column in the writer
/// (on an exact trace of fib(27), 1.27 million rows, those inserts were a fifth of
/// the segment thread's CPU) where plain values are copied and the repeating ones
/// (`pid`, `count`, a thread's `tid`) cost zstd next to nothing. `ts` rises like the
/// delta columns but is plain: queries take its minimum and maximum over every row
/// (`--threads`, `--runs`), and DataFusion decoded deltas so much slower than DuckDB
/// that `--threads` took 1.65x DuckDB's time on the query benchmark's trace, against
/// 1.26x with `ts` plain (the file of an exact fib(27) is 4.5 MB instead of 3.2).
const DICTIONARY_COLUMNS: [&str; 8] = [
    "run_id",
    "thread_name",
    "kind",
    "source",
    "function",
    "module",
    "file",
    "caller",
];

/// Integer columns that rise from row to row (`seq` by one, `call_id` and
/// `parent_id` by a little), written as deltas (`DELTA_BINARY_PACKED`): a few bits a
/// row where plain encoding stores eight bytes for zstd to squeeze. On an exact trace
/// of fib(25) (486k rows) the file was half the size it was with them plain, and
/// zstd's share of a recording's CPU fell from 9% to 2%.
const DELTA_COLUMNS: [&str; 3] = ["seq", "call_id", "parent_id"];

/// Text columns without min/max statistics. The writer computes them by comparing
/// every row's text with the running minimum and maximum (two `memcmp`s per row and
/// column, about 6% of a recording's CPU on call-heavy code), and no question can
/// skip a row group or page by them: every row group holds most kinds, threads and
/// files, and `args`, `value` and `exception` are free text. `run_id` (one per
/// file: `--run` skips files by it), `function` and `module` (`--call`,
/// `--module`) keep theirs.
const NO_STATISTICS_COLUMNS: [&str; 8] = [
    "thread_name",
    "kind",
    "source",
    "file",
    "caller",
    "args",
    "value",
    "exception",
];

/// Position of `run_id` and `seq` in [`events_schema`], for the sorting metadata.
const RUN_ID_COLUMN: i32 = 0;
const SEQ_COLUMN: i32 = 4;

/// Writer properties of every trace file: dictionaries for [`DICTIONARY_COLUMNS`],
/// deltas for [`DELTA_COLUMNS`], the rest plain, statistics (but for
/// [`NO_STATISTICS_COLUMNS`]), zstd at `zstd_level`,
/// rows declared sorted by `(run_id, seq)`, and `tracer.run` when given now (a
/// merged file adds it once its row count is known).
pub(crate) fn writer_properties(zstd_level: i32, run: Option<&RunInfo>) -> WriterProperties {
    let level = ZstdLevel::try_new(zstd_level).expect("the crate's zstd levels are in 1..=22");
    let sorting = vec![
        SortingColumn {
            column_idx: RUN_ID_COLUMN,
            descending: false,
            nulls_first: false,
        },
        SortingColumn {
            column_idx: SEQ_COLUMN,
            descending: false,
            nulls_first: false,
        },
    ];
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_sorting_columns(Some(sorting))
        .set_created_by(format!("tracer {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(run.map(|run| vec![run_metadata(run)]));
    for column in DICTIONARY_COLUMNS {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), true);
    }
    for column in DELTA_COLUMNS {
        builder =
            builder.set_column_encoding(ColumnPath::from(column), Encoding::DELTA_BINARY_PACKED);
    }
    for column in NO_STATISTICS_COLUMNS {
        builder = builder
            .set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::None);
    }
    builder.build()
}

/// Writer properties of a finished trace, for programs that write traces as the
/// tracer does (the query benchmark's generator): the encodings, statistics, row
/// group size and zstd level of [`writer_properties`], without `tracer.run`.
pub fn trace_writer_properties() -> WriterProperties {
    writer_properties(FINAL_ZSTD_LEVEL, None)
}

/// The `tracer.run` key-value pair of `run`.
pub(crate) fn run_metadata(run: &RunInfo) -> parquet::file::metadata::KeyValue {
    parquet::file::metadata::KeyValue::new(RUN_METADATA_KEY.to_string(), run.to_json())
}

/// Writes segment number `number` of `parts_dir` holding `batch` and carrying
/// `run`: under its temporary name first, renamed when the file is complete.
pub(crate) fn write_segment(
    parts_dir: &Path,
    number: u64,
    batch: &RecordBatch,
    run: &RunInfo,
) -> Result<PathBuf> {
    let path = parts_dir.join(segment_file_name(number));
    let temp = temp_path(&path);
    encode_file(
        &temp,
        batch,
        writer_properties(SEGMENT_ZSTD_LEVEL, Some(run)),
    )?;
    rename_into_place(&temp, &path)?;
    Ok(path)
}

/// Writes `batch` as a whole Parquet file of the events table at `temp` (a new
/// private file) with `props`; returns the file, footer written, not yet synced.
pub(crate) fn encode_file(
    temp: &Path,
    batch: &RecordBatch,
    props: WriterProperties,
) -> Result<File> {
    let file = create_private_file(temp)?;
    let write_error = |e| Error::parquet("write", temp, e);
    let (mut writer, factory) = ArrowWriter::try_new(file, events_schema(), Some(props))
        .and_then(ArrowWriter::into_serialized_writer)
        .map_err(|e| Error::parquet("start writing", temp, e))?;
    let mut start = 0;
    while start < batch.num_rows() {
        let rows = ROW_GROUP_ROWS.min(batch.num_rows() - start);
        write_row_group(&mut writer, &factory, &batch.slice(start, rows)).map_err(write_error)?;
        start += rows;
    }
    writer.into_inner().map_err(write_error)
}

/// Writes `batch` (rows of the events table) as the next row group of `writer`:
/// its dictionary columns from their own keys and dictionary
/// ([`encode_dictionary_column`]), `seq` and the ids as deltas
/// ([`encode_delta_column`]), its plain integer and text columns from their values
/// ([`encode_plain_column`]); a column none of them takes (another type, encoding or
/// compression) with the Arrow writer.
pub(crate) fn write_row_group<W: Write + Send>(
    writer: &mut SerializedFileWriter<W>,
    factory: &ArrowRowGroupWriterFactory,
    batch: &RecordBatch,
) -> parquet::errors::Result<()> {
    let props = Arc::clone(writer.properties());
    let columns = writer.schema_descr().columns().to_vec();
    let index = writer.flushed_row_groups().len();
    let mut arrow_writers = factory.create_column_writers(index)?;
    if arrow_writers.len() != batch.num_columns() || columns.len() != batch.num_columns() {
        return Err(ParquetError::General(format!(
            "a batch of {} columns for a file of {} leaf columns",
            batch.num_columns(),
            columns.len()
        )));
    }
    let mut chunks = Vec::with_capacity(batch.num_columns());
    for ((field, array), (arrow_writer, descr)) in batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .zip(arrow_writers.iter_mut().zip(&columns))
    {
        let own = encode_column(array.as_ref(), descr, &props)?;
        if own.is_none() {
            for leaf in compute_leaves(field, array)? {
                arrow_writer.write(&leaf)?;
            }
        }
        chunks.push(own);
    }
    let mut group = writer.next_row_group()?;
    for (own, arrow_writer) in chunks.into_iter().zip(arrow_writers) {
        match own {
            Some(chunk) => group.append_column(&chunk.bytes, chunk.close)?,
            None => arrow_writer.close()?.append_to_row_group(&mut group)?,
        }
    }
    group.close()?;
    Ok(())
}

/// `array` encoded as column `descr` by the crate's own encoders, or `None` for the
/// Arrow writer.
fn encode_column(
    array: &dyn Array,
    descr: &ColumnDescPtr,
    props: &WriterProperties,
) -> parquet::errors::Result<Option<EncodedChunk>> {
    match array.as_dictionary_opt::<Int32Type>() {
        Some(dictionary) => encode_dictionary_column(dictionary, descr, props),
        None if props.encoding(descr.path()) == Some(Encoding::DELTA_BINARY_PACKED) => {
            encode_delta_column(array, descr, props)
        }
        None => encode_plain_column(array, descr, props),
    }
}

/// Reads the footer of `path`.
pub(crate) fn read_metadata(path: &Path) -> Result<ParquetMetaData> {
    let file = open(path)?;
    ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|e| Error::NotParquet {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
}

/// The run stored in a footer's `tracer.run`.
pub(crate) fn run_of(path: &Path, metadata: &ParquetMetaData) -> Result<RunInfo> {
    let json = metadata
        .file_metadata()
        .key_value_metadata()
        .and_then(|pairs| pairs.iter().find(|kv| kv.key == RUN_METADATA_KEY))
        .and_then(|kv| kv.value.as_deref())
        .ok_or_else(|| Error::NotATrace {
            path: path.to_path_buf(),
        })?;
    RunInfo::from_json(json).map_err(|source| Error::BadRunInfo {
        path: path.to_path_buf(),
        source,
    })
}

/// The run stored in `path` and its row count, from the footer alone.
pub fn read_run_info(path: &Path) -> Result<(RunInfo, u64)> {
    let metadata = read_metadata(path)?;
    let run = run_of(path, &metadata)?;
    let rows = u64::try_from(metadata.file_metadata().num_rows()).unwrap_or(0);
    Ok((run, rows))
}

/// A reader of `path`'s rows in batches, after checking it has the events table's
/// columns.
pub(crate) fn open_batches(path: &Path) -> Result<ParquetRecordBatchReader> {
    let file = open(path)?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::NotParquet {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    let expected = events_schema();
    if builder.schema().fields() != expected.fields() {
        return Err(Error::SchemaMismatch {
            path: path.to_path_buf(),
            detail: format!(
                "found columns {:?}",
                builder
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| format!("{}: {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>()
            ),
        });
    }
    builder
        .with_batch_size(READ_BATCH_ROWS)
        .build()
        .map_err(|e| Error::parquet("read", path, e))
}

fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            Error::io("open", path, e)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use attach::{Event, EventKind, Source};

    use crate::batch::EventBatchBuilder;

    /// Row `seq` of a recursive call: a call with its arguments, or a return with
    /// its value, or an exception.
    fn event(seq: u64) -> Event {
        let name: Arc<str> = Arc::from("fib");
        let kind = [EventKind::Call, EventKind::Return, EventKind::Exception][seq as usize % 3];
        Event {
            pid: 4242,
            tid: 7,
            thread_name: Some(Arc::from("MainThread")),
            seq,
            ts_ns: 1_714_566_896_000_000_000 + seq as i64 * 100,
            kind,
            source: Source::Exact,
            call_id: seq / 2,
            parent_id: (seq > 1).then_some(seq / 4),
            depth: (seq % 30) as i32,
            function: name.clone(),
            module: Arc::from("__main__"),
            file: Arc::from("/app/fib.py"),
            line: 6,
            caller: Some(name),
            caller_line: (kind == EventKind::Call).then_some(9),
            args: (kind == EventKind::Call).then(|| format!("{{\"n\": \"{seq}\"}}")),
            value: (kind == EventKind::Return).then(|| seq.to_string()),
            exception: (kind == EventKind::Exception).then(|| "ValueError".to_string()),
            duration_ns: (kind != EventKind::Call).then_some(500),
            duration_max_ns: None,
            count: 1,
        }
    }

    #[test]
    fn no_column_of_the_events_table_goes_to_the_arrow_writer() {
        let mut builder = EventBatchBuilder::new("run-1");
        for seq in 0..1000 {
            builder.push(&event(seq));
        }
        let batch = builder.finish().expect("batch");
        for zstd_level in [SEGMENT_ZSTD_LEVEL, FINAL_ZSTD_LEVEL] {
            let (writer, _) = ArrowWriter::try_new(
                Vec::new(),
                events_schema(),
                Some(writer_properties(zstd_level, None)),
            )
            .and_then(ArrowWriter::into_serialized_writer)
            .expect("writer");
            for (array, descr) in batch.columns().iter().zip(writer.schema_descr().columns()) {
                let chunk = encode_column(array.as_ref(), descr, writer.properties());
                assert!(
                    chunk.expect("encoded").is_some(),
                    "{} goes to the Arrow writer",
                    descr.name()
                );
            }
        }
    }
}
