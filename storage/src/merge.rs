//! Merging a run's segments into one trace file sorted by `seq`, streaming: at any
//! moment only one batch per open segment is in memory, and a segment is opened only
//! when the merge reaches the lowest `seq` it holds.
//!
//! Segments written by [`crate::TraceWriter`] are each sorted by `seq`. When their
//! `seq` ranges do not overlap (the usual case: producers emit in `seq` order) the
//! merge splices: the encoded row groups of a segment of at least [`SPLICE_MIN_ROWS`]
//! rows are copied into the trace byte for byte, without decoding (a run of millions
//! of events is finished in the time it takes to copy its files), and shorter
//! segments are decoded and encoded together, so a long quiet run does not end up
//! with thousands of tiny row groups. Spliced chunks keep the segments' zstd level;
//! re-encoded ones get [`FINAL_ZSTD_LEVEL`]. Where ranges overlap (a producer emitted
//! late rows), rows are taken one at a time from whichever open segment holds the
//! lowest `seq`.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch, UInt64Array};
use arrow::compute::{concat_batches, interleave_record_batch};
use arrow::datatypes::{SchemaRef, UInt64Type};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReader;
use parquet::arrow::arrow_writer::ArrowRowGroupWriterFactory;
use parquet::arrow::ArrowWriter;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::writer::SerializedFileWriter;

use crate::error::{Error, Result};
use crate::layout::{create_private_file, rename_into_place, temp_path};
use crate::parquet_io::{
    encode_file, open_batches, read_metadata, run_metadata, write_row_group, writer_properties,
    FINAL_ZSTD_LEVEL, READ_BATCH_ROWS, ROW_GROUP_ROWS,
};
use crate::run::RunInfo;
use crate::schema::events_schema;

/// Writes the rows of `segments` (in any order) to `trace`, sorted by `seq`, with
/// `run` as its `tracer.run` (its `events` set to the rows written). The file is
/// written under a temporary name, synced, and renamed into place. Returns the rows.
pub(crate) fn merge_segments(segments: &[PathBuf], trace: &Path, mut run: RunInfo) -> Result<u64> {
    let mut pending = segment_spans(segments)?;
    pending.make_contiguous().sort_by_key(|span| span.min_seq);
    let in_order = pending
        .iter()
        .zip(pending.iter().skip(1))
        .all(|(a, b)| a.max_seq < b.min_seq);

    let temp = temp_path(trace);
    let file = create_private_file(&temp)?;
    let props = writer_properties(FINAL_ZSTD_LEVEL, None);
    let writer = ArrowWriter::try_new(file, events_schema(), Some(props))
        .map_err(|e| Error::parquet("start writing", &temp, e))?;
    let (mut writer, rows) = if in_order {
        let (writer, factory) = writer
            .into_serialized_writer()
            .map_err(|e| Error::parquet("start writing", &temp, e))?;
        let mut splicer = Splicer {
            writer,
            factory,
            schema: events_schema(),
            path: temp.clone(),
            short: Vec::new(),
            short_rows: 0,
            rows: 0,
        };
        for span in &pending {
            splicer.add(span)?;
        }
        splicer.encode_short()?;
        (Finished::Spliced(splicer.writer), splicer.rows)
    } else {
        let mut output = Output {
            writer,
            path: temp.clone(),
            rows: 0,
        };
        merge(&mut pending, &mut output)?;
        (Finished::Merged(output.writer), output.rows)
    };

    run.events = rows;
    match &mut writer {
        Finished::Spliced(w) => w.append_key_value_metadata(run_metadata(&run)),
        Finished::Merged(w) => w.append_key_value_metadata(run_metadata(&run)),
    }
    let file = match writer {
        Finished::Spliced(w) => w.into_inner(),
        Finished::Merged(w) => w.into_inner(),
    }
    .map_err(|e| Error::parquet("write", &temp, e))?;
    put_in_place(file, &temp, trace)?;
    Ok(rows)
}

/// Writes `batch` (sorted by `seq`) as the whole trace `trace`, with `run` as its
/// `tracer.run` (its `events` set to the rows): what [`merge_segments`] would make of
/// one segment holding `batch`, without writing that segment and reading it back.
/// A run whose rows never left the writer's buffer (most short runs) finishes so,
/// a few milliseconds sooner after its program exits.
pub(crate) fn write_whole_trace(
    batch: &RecordBatch,
    trace: &Path,
    mut run: RunInfo,
) -> Result<u64> {
    let temp = temp_path(trace);
    run.events = batch.num_rows() as u64;
    let file = encode_file(
        &temp,
        batch,
        writer_properties(FINAL_ZSTD_LEVEL, Some(&run)),
    )?;
    put_in_place(file, &temp, trace)?;
    Ok(run.events)
}

/// Syncs the finished `file` written at `temp` and renames it to `trace`, durably.
fn put_in_place(file: File, temp: &Path, trace: &Path) -> Result<()> {
    file.sync_all()
        .map_err(|e| Error::io("flush to disk", temp, e))?;
    rename_into_place(temp, trace)?;
    sync_parent(trace);
    Ok(())
}

/// The writer of a merged trace, by the way its rows went in.
enum Finished {
    Spliced(SerializedFileWriter<File>),
    Merged(ArrowWriter<File>),
}

/// Segments at least this long are spliced (see the module documentation).
const SPLICE_MIN_ROWS: i64 = 16 * 1024;

/// Writes segments whose `seq` ranges follow one another, in that order.
struct Splicer {
    writer: SerializedFileWriter<File>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    path: PathBuf,
    /// Rows of short segments waiting to be encoded as one row group.
    short: Vec<RecordBatch>,
    short_rows: usize,
    rows: u64,
}

impl Splicer {
    fn add(&mut self, span: &SegmentSpan) -> Result<()> {
        let metadata = read_metadata_with_page_index(&span.path)?;
        let same_layout = metadata.file_metadata().schema_descr().root_schema()
            == self.writer.schema_descr().root_schema();
        if same_layout && metadata.file_metadata().num_rows() >= SPLICE_MIN_ROWS {
            self.encode_short()?;
            return self.splice(&span.path, &metadata);
        }
        for batch in open_batches(&span.path)? {
            let batch = batch.map_err(|e| Error::NotParquet {
                path: span.path.clone(),
                detail: e.to_string(),
            })?;
            self.short_rows += batch.num_rows();
            self.short.push(batch);
            if self.short_rows >= ROW_GROUP_ROWS {
                self.encode_short()?;
            }
        }
        Ok(())
    }

    /// Copies every row group of `segment` as it is encoded there.
    fn splice(&mut self, segment: &Path, metadata: &ParquetMetaData) -> Result<()> {
        let source = File::open(segment).map_err(|e| Error::io("open", segment, e))?;
        let write_error = |e| Error::parquet("write", &self.path, e);
        for (index, group) in metadata.row_groups().iter().enumerate() {
            let column_indexes = metadata.column_index().and_then(|all| all.get(index));
            let offset_indexes = metadata.offset_index().and_then(|all| all.get(index));
            let mut out = self.writer.next_row_group().map_err(write_error)?;
            for (column, chunk) in group.columns().iter().enumerate() {
                let close = ColumnCloseResult {
                    bytes_written: u64::try_from(chunk.compressed_size()).unwrap_or(0),
                    rows_written: u64::try_from(group.num_rows()).unwrap_or(0),
                    metadata: chunk.clone(),
                    bloom_filter: None,
                    column_index: column_indexes.and_then(|c| c.get(column)).cloned(),
                    offset_index: offset_indexes.and_then(|o| o.get(column)).cloned(),
                };
                out.append_column(&source, close).map_err(write_error)?;
            }
            out.close().map_err(write_error)?;
            self.rows += u64::try_from(group.num_rows()).unwrap_or(0);
        }
        Ok(())
    }

    /// Encodes the rows of short segments gathered so far as one row group.
    fn encode_short(&mut self) -> Result<()> {
        if self.short_rows == 0 {
            return Ok(());
        }
        let batch = concat_batches(&self.schema, &self.short)?;
        self.short.clear();
        self.short_rows = 0;
        write_row_group(&mut self.writer, &self.factory, &batch)
            .map_err(|e| Error::parquet("write", &self.path, e))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }
}

/// The footer of a segment with its page indexes, which splicing carries over.
fn read_metadata_with_page_index(path: &Path) -> Result<ParquetMetaData> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Optional)
        .parse_and_finish(&file)
        .map_err(|e| Error::NotParquet {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
}

/// One segment and the `seq` range its footer statistics give.
struct SegmentSpan {
    path: PathBuf,
    min_seq: u64,
    max_seq: u64,
}

/// The non-empty segments with their `seq` ranges. A segment without statistics
/// gets the widest range, which only costs the merge speed.
fn segment_spans(segments: &[PathBuf]) -> Result<VecDeque<SegmentSpan>> {
    let schema = events_schema();
    let mut spans = VecDeque::with_capacity(segments.len());
    for path in segments {
        let metadata = read_metadata(path)?;
        if metadata.file_metadata().num_rows() == 0 {
            continue;
        }
        let stats_error = |e| Error::parquet("read the statistics of", path, e);
        let converter =
            StatisticsConverter::try_new("seq", &schema, metadata.file_metadata().schema_descr())
                .map_err(stats_error)?;
        let mins = converter
            .row_group_mins(metadata.row_groups())
            .map_err(stats_error)?;
        let maxes = converter
            .row_group_maxes(metadata.row_groups())
            .map_err(stats_error)?;
        let (min_seq, max_seq) = match (
            mins.as_primitive_opt::<UInt64Type>(),
            maxes.as_primitive_opt::<UInt64Type>(),
        ) {
            (Some(mins), Some(maxes)) if mins.null_count() == 0 && maxes.null_count() == 0 => (
                mins.values().iter().copied().min().unwrap_or(0),
                maxes.values().iter().copied().max().unwrap_or(u64::MAX),
            ),
            _ => (0, u64::MAX),
        };
        spans.push_back(SegmentSpan {
            path: path.clone(),
            min_seq,
            max_seq,
        });
    }
    Ok(spans)
}

/// The file being merged into.
struct Output {
    writer: ArrowWriter<File>,
    path: PathBuf,
    rows: u64,
}

impl Output {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let batch = RecordBatch::try_new(events_schema(), batch.columns().to_vec())?;
        self.writer
            .write(&batch)
            .map_err(|e| Error::parquet("write", &self.path, e))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }
}

/// An open segment: its current batch and the next row to take from it.
struct Cursor {
    reader: ParquetRecordBatchReader,
    path: PathBuf,
    max_seq: u64,
    batch: RecordBatch,
    seqs: UInt64Array,
    row: usize,
}

impl Cursor {
    /// Opens `span`, positioned on its first row; `None` if it holds no rows.
    fn open(span: SegmentSpan) -> Result<Option<Cursor>> {
        let reader = open_batches(&span.path)?;
        let mut cursor = Cursor {
            reader,
            path: span.path,
            max_seq: span.max_seq,
            batch: RecordBatch::new_empty(events_schema()),
            seqs: UInt64Array::from(Vec::<u64>::new()),
            row: 0,
        };
        Ok(cursor.next_batch()?.then_some(cursor))
    }

    /// `seq` of the current row.
    fn seq(&self) -> u64 {
        self.seqs.value(self.row)
    }

    fn batch_done(&self) -> bool {
        self.row >= self.batch.num_rows()
    }

    /// Moves to the next non-empty batch; false when the segment is exhausted.
    fn next_batch(&mut self) -> Result<bool> {
        for batch in self.reader.by_ref() {
            let batch = batch.map_err(|e| Error::NotParquet {
                path: self.path.clone(),
                detail: e.to_string(),
            })?;
            if batch.num_rows() == 0 {
                continue;
            }
            let seqs = batch
                .column_by_name("seq")
                .and_then(|column| column.as_primitive_opt::<UInt64Type>())
                .cloned()
                .ok_or_else(|| Error::SchemaMismatch {
                    path: self.path.clone(),
                    detail: "no uint64 `seq` column".into(),
                })?;
            self.batch = batch;
            self.seqs = seqs;
            self.row = 0;
            return Ok(true);
        }
        Ok(false)
    }
}

/// Streams every row of `pending` segments into `output` in `seq` order.
fn merge(pending: &mut VecDeque<SegmentSpan>, output: &mut Output) -> Result<()> {
    let mut active: Vec<Cursor> = Vec::new();
    // Rows chosen but not yet written: (index in `active`, row in its batch).
    let mut picks: Vec<(usize, usize)> = Vec::with_capacity(READ_BATCH_ROWS);
    loop {
        // Open every segment that may hold the next row in `seq` order.
        let mut frontier = active.iter().map(Cursor::seq).min();
        while pending
            .front()
            .is_some_and(|span| frontier.is_none_or(|lowest| span.min_seq <= lowest))
        {
            let Some(span) = pending.pop_front() else {
                break;
            };
            if let Some(cursor) = Cursor::open(span)? {
                frontier = Some(frontier.map_or(cursor.seq(), |lowest| lowest.min(cursor.seq())));
                active.push(cursor);
            }
        }
        if active.is_empty() {
            break;
        }

        // One open segment whose rows all come before the next one's: copy batches.
        if active.len() == 1
            && pending
                .front()
                .is_none_or(|next| active[0].max_seq < next.min_seq)
        {
            flush_picks(&mut picks, &active, output)?;
            let cursor = &mut active[0];
            let rest = cursor.batch.num_rows() - cursor.row;
            output.write(&cursor.batch.slice(cursor.row, rest))?;
            cursor.row += rest;
            if !cursor.next_batch()? {
                active.clear();
            }
            continue;
        }

        // Overlapping segments: take the lowest `seq` among them.
        let lowest = (0..active.len())
            .min_by_key(|&index| active[index].seq())
            .expect("active is not empty");
        picks.push((lowest, active[lowest].row));
        active[lowest].row += 1;
        if active[lowest].batch_done() || picks.len() == READ_BATCH_ROWS {
            flush_picks(&mut picks, &active, output)?;
        }
        if active[lowest].batch_done() && !active[lowest].next_batch()? {
            active.remove(lowest);
        }
    }
    flush_picks(&mut picks, &active, output)
}

/// Writes the picked rows as one batch.
fn flush_picks(
    picks: &mut Vec<(usize, usize)>,
    active: &[Cursor],
    output: &mut Output,
) -> Result<()> {
    if picks.is_empty() {
        return Ok(());
    }
    let batches: Vec<&RecordBatch> = active.iter().map(|cursor| &cursor.batch).collect();
    let batch = interleave_record_batch(&batches, picks)?;
    picks.clear();
    output.write(&batch)
}

/// Makes the rename of `path` durable; a failure only weakens crash safety, so it is
/// not reported.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(handle) = File::open(dir) {
            let _ = handle.sync_all();
        }
    }
}
