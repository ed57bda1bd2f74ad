//! Writing a plain column of the events table as a Parquet column chunk straight from
//! the Arrow array: the integers (`pid`, `tid`, `ts`, `depth`, `line`,
//! `duration_ns`, `count`, ...) from their values, the free text without statistics
//! (`args`, `value`, `exception`) from its offsets and bytes.
//!
//! The `parquet` crate's Arrow writer goes through each column in mini-batches of
//! 1024 values, updating the running minimum and maximum value by value through a
//! generic comparison, and building definition levels one row at a time; on an exact
//! trace of recursive fib that was about a sixth of the segment thread's instructions
//! for the nine integer columns (bench/README.md, "counting instructions"). Here a
//! page's values are copied as one little-endian slice, its minimum and maximum are a
//! plain loop the compiler vectorizes, and its definition levels are runs. The text
//! goes the same way: the Arrow writer gathers each mini-batch's non-null rows by
//! index and appends them one at a time through its generic byte array encoder,
//! counting each text's bytes for the offset index; here a page's texts are copied
//! from the array's offsets, its bounds found from the offsets alone unless its texts
//! are long. Pages, headers and the column's metadata are the crate's own types
//! written by its `SerializedPageWriter` ([`crate::chunk_pages`]), so the
//! file is what the Arrow writer would write, page for page.

use arrow::array::{Array, AsArray, StringArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Int32Type, Int64Type, TimestampNanosecondType, UInt32Type};
use parquet::basic::{Compression, Encoding, PageType, Type as PhysicalType, ZstdLevel};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnIndexBuilder, PageEncodingStats};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnDescPtr;

use crate::chunk_pages::{ChunkPages, EncodedChunk};
use crate::dictionary_chunk::{encode_hybrid, put_uleb128};

/// An integer as Parquet stores it: its physical type's little-endian bytes, ordered
/// as its logical type orders it (`count` is a `UInt32` stored as `INT32`, so its
/// minimum and maximum are found unsigned, then stored as the same 32 bits).
trait PlainInt: Copy + Ord {
    const PHYSICAL: PhysicalType;
    const WIDTH: usize;
    fn put(values: &[Self], out: &mut Vec<u8>);
    fn le_bytes(self) -> Vec<u8>;
    fn statistics(min: Option<Self>, max: Option<Self>, nulls: u64) -> Statistics;
}

macro_rules! plain_int {
    ($native:ty, $physical:ident, $stats:ident, $stored:ty) => {
        impl PlainInt for $native {
            const PHYSICAL: PhysicalType = PhysicalType::$physical;
            const WIDTH: usize = std::mem::size_of::<$native>();

            fn put(values: &[$native], out: &mut Vec<u8>) {
                out.reserve(values.len() * Self::WIDTH);
                for value in values {
                    out.extend_from_slice(&value.to_le_bytes());
                }
            }

            fn le_bytes(self) -> Vec<u8> {
                self.to_le_bytes().to_vec()
            }

            fn statistics(min: Option<Self>, max: Option<Self>, nulls: u64) -> Statistics {
                // The stored type has the same width: `as` keeps the bits.
                Statistics::$stats(
                    min.map(|v| v as $stored),
                    max.map(|v| v as $stored),
                    None,
                    Some(nulls),
                    false,
                )
            }
        }
    };
}

plain_int!(i32, INT32, int32, i32);
plain_int!(u32, INT32, int32, i32);
plain_int!(i64, INT64, int64, i64);

/// Encodes `array` (one row group's rows of an `Int32`, `UInt32`, `Int64` or
/// nanosecond `Timestamp` column, or of a `Utf8` column without statistics) as
/// column `descr`, PLAIN, with `props`' compression, statistics level and page
/// limits; `None` when the Arrow writer should do it instead (another type, an
/// encoding or dictionary set for the column, a compression other than zstd, text
/// with statistics).
pub(crate) fn encode_plain_column(
    array: &dyn Array,
    descr: &ColumnDescPtr,
    props: &WriterProperties,
) -> Result<Option<EncodedChunk>> {
    let path = descr.path();
    if props.encoding(path).is_some() || props.dictionary_enabled(path) {
        return Ok(None);
    }
    let Compression::ZSTD(level) = props.compression(path) else {
        return Ok(None);
    };
    let nulls = array.logical_nulls();
    let chunk = Chunk {
        descr,
        props,
        level,
        nulls: nulls.as_ref(),
    };
    match array.data_type() {
        DataType::Int32 => chunk.encode(array.as_primitive::<Int32Type>().values()),
        DataType::UInt32 => chunk.encode(array.as_primitive::<UInt32Type>().values()),
        DataType::Int64 => chunk.encode(array.as_primitive::<Int64Type>().values()),
        DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, _) => {
            chunk.encode(array.as_primitive::<TimestampNanosecondType>().values())
        }
        DataType::Utf8 => chunk.encode_text(array.as_string::<i32>()),
        _ => Ok(None),
    }
}

/// One column chunk being encoded.
struct Chunk<'a> {
    descr: &'a ColumnDescPtr,
    props: &'a WriterProperties,
    level: ZstdLevel,
    nulls: Option<&'a NullBuffer>,
}

/// What a page holds: its rows, and its values' range and nulls.
struct PageSpan<T> {
    start: usize,
    end: usize,
    min: Option<T>,
    max: Option<T>,
    nulls: usize,
}

impl Chunk<'_> {
    fn encode<T: PlainInt>(&self, values: &[T]) -> Result<Option<EncodedChunk>> {
        let descr = self.descr;
        let path = descr.path();
        let nullable = descr.max_def_level() > 0;
        if T::PHYSICAL != descr.physical_type() {
            return Ok(None);
        }
        if !nullable && self.nulls.is_some_and(|n| n.null_count() > 0) {
            return Err(ParquetError::General(format!(
                "column {path} is required but holds nulls"
            )));
        }
        let page_rows = self
            .props
            .data_page_row_count_limit()
            .min(self.props.data_page_size_limit() / T::WIDTH)
            .max(1);
        let mut defined: Vec<T> = Vec::new();
        let spans: Vec<PageSpan<T>> = (0..values.len())
            .step_by(page_rows)
            .map(|start| {
                let end = (start + page_rows).min(values.len());
                let page = self.page_values(values, start, end, &mut defined);
                let (min, max) = min_max(page);
                let nulls = (end - start) - page.len();
                PageSpan {
                    start,
                    end,
                    min,
                    max,
                    nulls,
                }
            })
            .collect();
        let chunk_min = spans.iter().filter_map(|p| p.min).min();
        let chunk_max = spans.iter().filter_map(|p| p.max).max();
        // A column that holds one value in the whole row group (`pid`, `count`, the
        // `tid` of a one-thread program) is written as a dictionary of that value,
        // and its pages as runs of key 0: a few bytes where plain pages are megabytes
        // for zstd to squeeze.
        let constant = chunk_min.is_some() && chunk_min == chunk_max;

        let mut pages = ChunkPages::new(self.level)?;
        let mut raw = Vec::new();
        if let (true, Some(value)) = (constant, chunk_min) {
            raw.extend_from_slice(&value.le_bytes());
            pages.dictionary(&raw, 1, true)?;
        }
        let statistics = self.props.statistics_enabled(path) != EnabledStatistics::None;
        let mut column_index = ColumnIndexBuilder::new(T::PHYSICAL);
        for span in &spans {
            let rows = span.end - span.start;
            raw.clear();
            if nullable {
                put_definition_levels(self.nulls, span.start, rows, span.nulls, &mut raw);
            }
            let encoding = if constant {
                // Bit width 0: one run of key 0 for every value.
                raw.push(0);
                encode_hybrid(std::iter::once((0, rows - span.nulls)), 0, &mut raw);
                Encoding::RLE_DICTIONARY
            } else {
                T::put(
                    self.page_values(values, span.start, span.end, &mut defined),
                    &mut raw,
                );
                Encoding::PLAIN
            };
            pages.data(&raw, rows, encoding)?;
            match (span.min, span.max) {
                (Some(min), Some(max)) => {
                    column_index.append(false, min.le_bytes(), max.le_bytes(), span.nulls as i64)
                }
                _ => column_index.append(true, Vec::new(), Vec::new(), span.nulls as i64),
            }
        }

        let rows = values.len() as u64;
        let null_count = self.nulls.map_or(0, NullBuffer::null_count) as u64;
        let data_encoding = if constant {
            Encoding::RLE_DICTIONARY
        } else {
            Encoding::PLAIN
        };
        let mut encodings = vec![Encoding::PLAIN, Encoding::RLE];
        let mut encoding_stats = vec![PageEncodingStats {
            page_type: PageType::DATA_PAGE,
            encoding: data_encoding,
            count: spans.len() as i32,
        }];
        if constant {
            encodings.push(Encoding::RLE_DICTIONARY);
            encoding_stats.insert(
                0,
                PageEncodingStats {
                    page_type: PageType::DICTIONARY_PAGE,
                    encoding: Encoding::PLAIN,
                    count: 1,
                },
            );
        }
        let metadata = pages
            .metadata(descr, rows)
            .set_encodings(encodings)
            .set_page_encoding_stats(encoding_stats);
        let page_index =
            self.props.statistics_enabled(path) == EnabledStatistics::Page && !spans.is_empty();
        pages.finish(
            metadata,
            statistics.then(|| T::statistics(chunk_min, chunk_max, null_count)),
            (statistics && page_index).then_some(column_index),
            rows,
        )
    }

    /// Writes a text column without statistics (`args`, `value`, `exception`):
    /// each page's texts that are not null as PLAIN `BYTE_ARRAY`s (a little-endian
    /// `u32` length, then the bytes), a page ending at the row limit or at the first
    /// row that brings its values to the page size limit (the Arrow writer looks at
    /// the size after each batch of rows, 1,024 by default, so its pages of long
    /// texts run longer).
    fn encode_text(&self, array: &StringArray) -> Result<Option<EncodedChunk>> {
        let descr = self.descr;
        let path = descr.path();
        let nullable = descr.max_def_level() > 0;
        if descr.physical_type() != PhysicalType::BYTE_ARRAY
            || self.props.statistics_enabled(path) != EnabledStatistics::None
        {
            return Ok(None);
        }
        if !nullable && self.nulls.is_some_and(|n| n.null_count() > 0) {
            return Err(ParquetError::General(format!(
                "column {path} is required but holds nulls"
            )));
        }
        let page_rows = self.props.data_page_row_count_limit().max(1);
        let page_bytes = self.props.data_page_size_limit();
        let offsets = array.value_offsets();
        let data = array.value_data();
        let text = |row: usize| &data[offsets[row] as usize..offsets[row + 1] as usize];
        let is_valid = |row: usize| self.nulls.is_none_or(|valid| valid.is_valid(row));

        let mut pages = ChunkPages::new(self.level)?;
        let mut raw = Vec::new();
        let mut start = 0;
        while start < array.len() {
            // The page's rows: up to the row limit, or to the row whose text
            // brings the page's values to the size limit. The bytes of every row
            // (a null one's too) and a length for each are an upper bound, below
            // the limit on pages of short texts: their rows are not looked at.
            let last = (start + page_rows).min(array.len());
            let mut end = last;
            let most = 4 * (end - start) + (offsets[end] - offsets[start]) as usize;
            if most >= page_bytes {
                let mut bytes = 0;
                end = start;
                while bytes < page_bytes && end < last {
                    if is_valid(end) {
                        bytes += 4 + text(end).len();
                    }
                    end += 1;
                }
            }
            let rows = end - start;
            let page_valid = self
                .nulls
                .map(|valid| valid.slice(start, rows))
                .filter(|valid| valid.null_count() > 0);
            let nulls = page_valid.as_ref().map_or(0, NullBuffer::null_count);
            raw.clear();
            if nullable {
                put_definition_levels(self.nulls, start, rows, nulls, &mut raw);
            }
            let values_at = raw.len();
            let mut put = |row: usize| {
                let text = text(row);
                raw.extend_from_slice(&(text.len() as u32).to_le_bytes());
                raw.extend_from_slice(text);
            };
            match &page_valid {
                Some(valid) => valid.valid_indices().for_each(|row| put(start + row)),
                None => (start..end).for_each(put),
            }
            // The texts' own bytes, as the Arrow writer counts them.
            let text_bytes = raw.len() - values_at - 4 * (rows - nulls);
            pages.data(&raw, rows, Encoding::PLAIN)?;
            pages
                .offset_index()
                .append_unencoded_byte_array_data_bytes(Some(text_bytes as i64));
            start = end;
        }
        let metadata = pages
            .metadata(descr, array.len() as u64)
            .set_encodings(vec![Encoding::PLAIN, Encoding::RLE])
            .set_page_encoding_stats(vec![PageEncodingStats {
                page_type: PageType::DATA_PAGE,
                encoding: Encoding::PLAIN,
                count: pages.data_pages(),
            }]);
        pages.finish(metadata, None, None, array.len() as u64)
    }

    /// The values of rows `start..end` that are not null: a slice of `values` when
    /// none is, else gathered into `defined`.
    fn page_values<'v, T: PlainInt>(
        &self,
        values: &'v [T],
        start: usize,
        end: usize,
        defined: &'v mut Vec<T>,
    ) -> &'v [T] {
        match self.nulls.map(|valid| valid.slice(start, end - start)) {
            Some(page) if page.null_count() > 0 => {
                defined.clear();
                defined.extend(page.valid_indices().map(|row| values[start + row]));
                defined
            }
            _ => &values[start..end],
        }
    }
}

/// The smallest and largest of `values` (a loop the compiler vectorizes, where
/// `Iterator::min` and `max` take two passes of compares and branches).
fn min_max<T: PlainInt>(values: &[T]) -> (Option<T>, Option<T>) {
    let Some(&first) = values.first() else {
        return (None, None);
    };
    let (mut min, mut max) = (first, first);
    for &value in values {
        min = if value < min { value } else { min };
        max = if value > max { value } else { max };
    }
    (Some(min), Some(max))
}

/// Appends the definition levels of a nullable column's page of `rows` rows from
/// `start`, `nulls` of them null, as a data page (v1) holds them: their length in
/// bytes (a little-endian `u32`), then one RLE run when no row is null, else the
/// validity bitmap as one bit-packed run.
pub(crate) fn put_definition_levels(
    valid: Option<&NullBuffer>,
    start: usize,
    rows: usize,
    nulls: usize,
    raw: &mut Vec<u8>,
) {
    let length_at = raw.len();
    raw.extend_from_slice(&[0; 4]);
    match valid {
        Some(valid) if nulls > 0 => bit_packed_levels(&valid.slice(start, rows), raw),
        _ => encode_hybrid(std::iter::once((1, rows)), 1, raw),
    }
    let length = (raw.len() - length_at - 4) as u32;
    raw[length_at..length_at + 4].copy_from_slice(&length.to_le_bytes());
}

/// Appends the definition levels of a page holding nulls, one bit a row, as one
/// bit-packed run of Parquet's RLE/bit-packing hybrid: groups of eight 1-bit values,
/// the first in the lowest bit, which is how Arrow lays out a validity bitmap, so the
/// bitmap is the run's body. (Values and nulls often alternate row by row: a call row
/// has a `caller_line` and no `duration_ns`, its return row the other way round.)
fn bit_packed_levels(valid: &NullBuffer, out: &mut Vec<u8>) {
    let groups = valid.len().div_ceil(8);
    put_uleb128(((groups as u64) << 1) | 1, out);
    let bitmap = valid.inner().sliced();
    out.extend_from_slice(&bitmap.as_slice()[..groups]);
    // Bits past the last row are read as levels of no row: make them 0.
    let tail = valid.len() % 8;
    if tail > 0 {
        if let Some(last) = out.last_mut() {
            *last &= (1u8 << tail) - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, Int32Array, Int64Array, RecordBatch, TimestampNanosecondArray, UInt32Array,
    };
    use arrow::datatypes::{Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;
    use parquet::basic::ZstdLevel;
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
    use parquet::file::page_index::column_index::ColumnIndexMetaData;

    use crate::parquet_io::write_row_group;

    /// Writes `columns` as one row group through [`write_row_group`], checks that
    /// each was encoded here (not by the Arrow writer), and reads the file back.
    fn round_trip(columns: Vec<(&str, bool, ArrayRef)>) -> (RecordBatch, ParquetMetaData) {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(name, nullable, array)| {
                    Field::new(*name, array.data_type().clone(), *nullable)
                })
                .collect::<Vec<_>>(),
        ));
        let batch =
            RecordBatch::try_new(schema.clone(), columns.into_iter().map(|c| c.2).collect())
                .expect("batch");
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("level")))
            .set_dictionary_enabled(false)
            .build();
        let (mut writer, factory) = ArrowWriter::try_new(Vec::new(), schema, Some(props))
            .and_then(ArrowWriter::into_serialized_writer)
            .expect("writer");
        for (array, descr) in batch.columns().iter().zip(writer.schema_descr().columns()) {
            let props = writer.properties();
            assert!(
                encode_plain_column(array.as_ref(), descr, props)
                    .expect("encode")
                    .is_some(),
                "{} is encoded here",
                descr.name()
            );
        }
        write_row_group(&mut writer, &factory, &batch).expect("row group");
        let file = Bytes::from(writer.into_inner().expect("footer"));
        let read = ParquetRecordBatchReaderBuilder::try_new(file.clone())
            .expect("reader")
            .with_batch_size(batch.num_rows())
            .build()
            .expect("batches")
            .collect::<std::result::Result<Vec<_>, _>>()
            .expect("rows read back");
        let read = arrow::compute::concat_batches(&batch.schema(), &read).expect("one batch");
        let metadata = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(&file)
            .expect("footer with page indexes");
        (read, metadata)
    }

    #[test]
    fn integer_columns_of_every_shape_read_back_as_written() {
        let rows = 45_003;
        // Alternating nulls (a call's caller_line, a return's duration), nulls in
        // runs with a page of nothing but nulls, none, and a constant.
        let alternating: Int64Array = (0..rows)
            .map(|i| (i % 2 == 1).then_some(i as i64 * 1_000 - 7_000_000))
            .collect();
        let runs: Int32Array = (0..rows)
            .map(|i| (!(i % 1000 < 300 || (20_000..40_000).contains(&i))).then_some(i as i32 % 77))
            .collect();
        let ts = TimestampNanosecondArray::from(
            (0..rows)
                .map(|i| 1_700_000_000_000_000_000 + i as i64 * 61)
                .collect::<Vec<_>>(),
        )
        .with_timezone("UTC");
        let constant = Int32Array::from(vec![4242; rows]);
        let constant_with_nulls: Int64Array =
            (0..rows).map(|i| (i % 3 != 0).then_some(-5)).collect();
        // Unsigned: its range is found as unsigned, above i32::MAX.
        let unsigned = UInt32Array::from(
            (0..rows)
                .map(|i| if i == 7 { u32::MAX } else { 1 + i as u32 % 5 })
                .collect::<Vec<_>>(),
        );
        let all_null = Int32Array::from(vec![None::<i32>; rows]);
        let columns: Vec<(&str, bool, ArrayRef)> = vec![
            ("alternating", true, Arc::new(alternating)),
            ("runs", true, Arc::new(runs)),
            ("ts", false, Arc::new(ts)),
            ("constant", false, Arc::new(constant)),
            ("constant_with_nulls", true, Arc::new(constant_with_nulls)),
            ("unsigned", false, Arc::new(unsigned)),
            ("all_null", true, Arc::new(all_null)),
        ];
        let expected: Vec<ArrayRef> = columns.iter().map(|c| c.2.clone()).collect();
        let (read, metadata) = round_trip(columns);
        for (column, expected) in expected.iter().enumerate() {
            assert_eq!(
                read.column(column).as_ref(),
                expected.as_ref(),
                "column {column}"
            );
        }

        let group = metadata.row_group(0);
        let stats = |c: usize| group.column(c).statistics().expect("statistics").clone();
        assert_eq!(
            stats(0).min_bytes_opt(),
            Some(&(-6_999_000i64).to_le_bytes()[..])
        );
        assert_eq!(stats(0).null_count_opt(), Some(rows as u64 / 2 + 1));
        assert_eq!(stats(5).min_bytes_opt(), Some(&1u32.to_le_bytes()[..]));
        assert_eq!(stats(5).max_bytes_opt(), Some(&u32::MAX.to_le_bytes()[..]));
        assert_eq!(stats(6).min_bytes_opt(), None);
        assert_eq!(stats(6).null_count_opt(), Some(rows as u64));
        // The constants are a one-value dictionary; the others plain.
        assert!(group.column(3).dictionary_page_offset().is_some());
        assert!(group.column(4).dictionary_page_offset().is_some());
        assert!(group.column(2).dictionary_page_offset().is_none());
        assert!(
            group.column(3).compressed_size() < 200,
            "a constant is a few bytes"
        );

        // 20,000 rows a page, as the Arrow writer's default, with a page index.
        let pages = &metadata.offset_index().expect("offset index")[0][1].page_locations;
        assert_eq!(
            pages.iter().map(|p| p.first_row_index).collect::<Vec<_>>(),
            vec![0, 20_000, 40_000]
        );
        let ColumnIndexMetaData::INT32(index) = &metadata.column_index().expect("index")[0][1]
        else {
            panic!("no column index for an INT32 column");
        };
        assert!(index.is_null_page(1), "rows 20,000-39,999 are null");
        assert_eq!(index.min_value(0), Some(&0));
        assert_eq!(index.max_value(0), Some(&76));
    }

    /// Writer properties of the text tests: texts without statistics, as
    /// `args`, `value` and `exception` are, and `page_bytes` a page.
    fn text_properties(page_bytes: usize) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("level")))
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_data_page_size_limit(page_bytes)
            // The Arrow writer ends a page of a column with nulls at the first
            // multiple of this at or past the row limit (20,000): here at the limit.
            .set_write_batch_size(1000)
            .build()
    }

    #[test]
    fn text_columns_read_back_as_the_arrow_writer_wrote_them() {
        use crate::chunk_checks::{assert_same_chunks, batch_of, read_back, write_both};
        use arrow::array::StringArray;

        // More rows than a page holds; texts empty, ASCII, non-ASCII; nulls
        // scattered, in runs (a page of nothing but nulls), everywhere, nowhere.
        let rows = 45_003;
        let text = |i: usize| match i % 5 {
            0 => String::new(),
            1 => format!("(n={i})"),
            2 => format!("'wörker 🧵 {i}'"),
            3 => "x".repeat(i % 300),
            _ => format!("ValueError('{}')", i * 7),
        };
        let scattered: StringArray = (0..rows)
            .map(|i| (i % 2 == 1 || i % 7 == 0).then(|| text(i)))
            .collect();
        let runs: StringArray = (0..rows)
            .map(|i| (!(i % 1000 < 300 || (20_000..40_000).contains(&i))).then(|| text(i)))
            .collect();
        let all_null = StringArray::from(vec![None::<&str>; rows]);
        let no_null: StringArray = (0..rows).map(|i| Some(text(i))).collect();
        let columns: Vec<(&str, bool, ArrayRef)> = vec![
            ("args", true, Arc::new(scattered)),
            ("value", true, Arc::new(runs)),
            ("exception", true, Arc::new(all_null)),
            ("required", false, Arc::new(no_null)),
        ];
        for rows in [0, 1, rows] {
            let columns = columns
                .iter()
                .map(|(name, nullable, array)| (*name, *nullable, array.slice(0, rows)))
                .collect();
            let batch = batch_of(columns);
            let (own, arrow) = write_both(&batch, text_properties(1 << 20), encode_plain_column);
            assert_eq!(read_back(&own, &batch), batch, "{rows} rows");
            assert_same_chunks(&own, &arrow);
        }
    }

    #[test]
    fn a_page_of_long_texts_ends_at_the_size_limit() {
        use crate::chunk_checks::{batch_of, data_pages, read_back, write_both};
        use arrow::array::StringArray;

        // 1,000 bytes a text (1,004 in the page with its length), one row in ten
        // null: the 1,161st row of a page brings it to 1 MiB. (The Arrow writer
        // looks after every 1,000 rows here: its pages are 2,000 and 1,000 rows.)
        let long: StringArray = (0..3000)
            .map(|i| (i % 10 != 9).then(|| format!("{i:04}{}", "é".repeat(498))))
            .collect();
        let batch = batch_of(vec![("value", true, Arc::new(long) as ArrayRef)]);
        let (own, _) = write_both(&batch, text_properties(1 << 20), encode_plain_column);
        assert_eq!(read_back(&own, &batch), batch);
        let pages = data_pages(&own, 0);
        assert_eq!(
            pages.iter().map(|(rows, _)| *rows).collect::<Vec<_>>(),
            vec![1161, 1161, 678]
        );
        assert!(pages
            .iter()
            .all(|(_, values)| values.len() < (1 << 20) + 1004));
    }

    #[test]
    fn a_last_page_whose_nulls_only_seem_to_fill_it_ends_with_the_column() {
        use crate::chunk_checks::{batch_of, data_pages, read_back, write_both};
        use arrow::array::StringArray;

        // 10 texts of 10 bytes, then 100 nulls: the bound of 4 bytes a row (540)
        // passes the 300-byte page, the texts (140) do not. The page is walked row
        // by row to the column's end, not past it (a panic on json with values).
        let array: StringArray = (0..110)
            .map(|i| (i < 10).then(|| format!("text {i:05}")))
            .collect();
        let batch = batch_of(vec![("value", true, Arc::new(array) as ArrayRef)]);
        let (own, _) = write_both(&batch, text_properties(300), encode_plain_column);
        assert_eq!(read_back(&own, &batch), batch);
        let pages = data_pages(&own, 0);
        assert_eq!(pages.iter().map(|(rows, _)| *rows).sum::<u32>(), 110);
    }

    #[test]
    fn the_text_of_a_null_row_is_not_written() {
        use crate::chunk_checks::{batch_of, data_pages, read_back, write_both};
        use arrow::array::StringArray;
        use arrow::buffer::OffsetBuffer;

        // Arrow lets a null row keep bytes ("hidden"); a reader sees no value there.
        let array = StringArray::new(
            OffsetBuffer::from_lengths([1, 6, 1]),
            arrow::buffer::Buffer::from("ahiddenb".as_bytes()),
            Some(NullBuffer::from(vec![true, false, true])),
        );
        let batch = batch_of(vec![("args", true, Arc::new(array) as ArrayRef)]);
        let (own, _) = write_both(&batch, text_properties(1 << 20), encode_plain_column);
        assert_eq!(read_back(&own, &batch), batch);
        let pages = data_pages(&own, 0);
        assert_eq!(pages[0].1.as_ref(), b"\x01\0\0\0a\x01\0\0\0b");
    }
}
