//! Writing a dictionary column of the events table (`function`, `module`, `kind`, ...)
//! as a Parquet column chunk straight from the Arrow dictionary's keys.
//!
//! The `parquet` crate's Arrow writer re-interns every row's text into a dictionary
//! of its own (a hash and a comparison of the string per row and column) and, with
//! statistics on, compares every row's text with the running minimum and maximum.
//! The batches the recorder builds already hold one dictionary per column with the
//! keys of every row, so this module writes that dictionary as the dictionary page
//! and the keys as `RLE_DICTIONARY` data pages, and computes the statistics once per
//! distinct text and page: on an exact trace of recursive fib those took a sixth of
//! the run's CPU (bench/README.md, exact mode). The pages, their headers and
//! the column's metadata are the crate's own types, written by its
//! `SerializedPageWriter` ([`crate::chunk_pages`]), so the file is what the Arrow
//! writer would produce but for the order of the dictionary's entries. The RLE/bit-packing hybrid encoder is
//! written here because the crate keeps its own behind its `experimental` feature.

use arrow::array::{Array, AsArray, DictionaryArray};
use arrow::datatypes::Int32Type;
use parquet::basic::{Compression, Encoding, PageType, Type as PhysicalType};
use parquet::data_type::ByteArray;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnIndexBuilder, PageEncodingStats};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnDescPtr;

use crate::chunk_pages::{ChunkPages, EncodedChunk};

/// Encodes `array` (one row group's rows of a `Dictionary(Int32, Utf8)` column) as
/// column `descr` with `props`' compression, statistics level and data page row
/// limit; `None` when the Arrow writer should do it instead (a dictionary larger
/// than the dictionary page limit, whose text the Arrow writer falls back to plain
/// encoding for; an empty or null-holding dictionary; a compression other than zstd).
pub(crate) fn encode_dictionary_column(
    array: &DictionaryArray<Int32Type>,
    descr: &ColumnDescPtr,
    props: &WriterProperties,
) -> Result<Option<EncodedChunk>> {
    let Some(arrow_values) = array.values().as_string_opt::<i32>() else {
        return Ok(None);
    };
    let path = descr.path();
    let Compression::ZSTD(level) = props.compression(path) else {
        return Ok(None);
    };
    if arrow_values.null_count() > 0 || array.is_empty() {
        return Ok(None);
    }
    let keys = array.keys();
    let nullable = descr.max_def_level() > 0;
    if !nullable && keys.null_count() > 0 {
        return Err(ParquetError::General(format!(
            "column {path} is required but holds nulls"
        )));
    }
    // The dictionary page holds each text once and only texts the rows use: a batch
    // concatenated from segments carries every segment's dictionary, and Arrow C++
    // (pyarrow) reads a dictionary page with a repeated text wrongly.
    // (A `DictionaryArray` holds only keys within its values.)
    // Keys come in runs (a column names the same text row after row): each run is
    // marked once, and a column without nulls is read as plain values (going
    // through each row's `Option` was half of this function's time).
    let mut used = vec![false; arrow_values.len()];
    let mut mark = |key: i32, last: &mut i32| {
        if key != *last {
            used[key as usize] = true;
            *last = key;
        }
    };
    let mut last = -1;
    match keys.nulls() {
        None => keys.values().iter().for_each(|&key| mark(key, &mut last)),
        Some(_) => keys.iter().flatten().for_each(|key| mark(key, &mut last)),
    }
    let mut remap = vec![u32::MAX; arrow_values.len()];
    let mut values: Vec<&str> = Vec::new();
    let mut by_text: ahash::AHashMap<&str, u32> = ahash::AHashMap::new();
    for (key, text) in arrow_values.iter().enumerate() {
        if used[key] {
            let text = text.unwrap_or_default();
            remap[key] = *by_text.entry(text).or_insert_with(|| {
                values.push(text);
                values.len() as u32 - 1
            });
        }
    }
    let dictionary_bytes: usize = values.iter().map(|text| 4 + text.len()).sum();
    if values.is_empty() || dictionary_bytes > props.dictionary_page_size_limit() {
        return Ok(None);
    }
    let statistics = props.statistics_enabled(path) != EnabledStatistics::None;
    let mut pages = ChunkPages::new(level)?;

    // The dictionary page: every text, PLAIN (a u32 length, then the bytes).
    let mut raw = Vec::with_capacity(dictionary_bytes);
    for text in &values {
        raw.extend_from_slice(&(text.len() as u32).to_le_bytes());
        raw.extend_from_slice(text.as_bytes());
    }
    pages.dictionary(&raw, values.len() as u32, false)?;

    let bit_width = bits_for(values.len() as u32 - 1);
    let page_rows = props.data_page_row_count_limit().max(1);
    let mut column_index = ColumnIndexBuilder::new(PhysicalType::BYTE_ARRAY);
    // Per key, the last page it was seen on: each distinct text is compared once
    // per page for the statistics.
    let mut seen_on_page = vec![usize::MAX; values.len()];
    let mut chunk_range: Option<(usize, usize)> = None;
    // A page's keys as runs of one key: (key, rows).
    let mut key_runs: Vec<(u32, usize)> = Vec::new();
    let mut levels = Vec::new();
    let key_values = keys.values();
    for (page, start) in (0..keys.len()).step_by(page_rows).enumerate() {
        let end = (start + page_rows).min(keys.len());
        raw.clear();
        key_runs.clear();
        let mut page_range: Option<(usize, usize)> = None;
        let mut nulls = 0u64;
        let mut row = start;
        while row < end {
            if keys.is_null(row) {
                nulls += 1;
                row += 1;
                continue;
            }
            let raw_key = key_values[row];
            let mut next = row + 1;
            while next < end && key_values[next] == raw_key && keys.is_valid(next) {
                next += 1;
            }
            let key = remap[raw_key as usize] as usize;
            key_runs.push((key as u32, next - row));
            if statistics && seen_on_page[key] != page {
                seen_on_page[key] = page;
                page_range = Some(widen(page_range, key, &values));
            }
            row = next;
        }
        if nullable {
            levels.clear();
            if nulls == 0 {
                encode_hybrid(std::iter::once((1, end - start)), 1, &mut levels);
            } else {
                let defined = (start..end).map(|row| (u32::from(keys.is_valid(row)), 1));
                encode_hybrid(defined, 1, &mut levels);
            }
            raw.extend_from_slice(&(levels.len() as u32).to_le_bytes());
            raw.extend_from_slice(&levels);
        }
        raw.push(bit_width);
        encode_hybrid(key_runs.iter().copied(), bit_width, &mut raw);
        pages.data(&raw, end - start, Encoding::RLE_DICTIONARY)?;
        if statistics {
            match page_range {
                Some((min, max)) => {
                    column_index.append(
                        false,
                        values[min].as_bytes().to_vec(),
                        values[max].as_bytes().to_vec(),
                        nulls as i64,
                    );
                    chunk_range = Some(widen(Some(widen(chunk_range, min, &values)), max, &values));
                }
                None => column_index.append(true, Vec::new(), Vec::new(), nulls as i64),
            }
        }
    }

    let rows = keys.len() as u64;
    let null_count = keys.null_count() as u64;
    let metadata = pages
        .metadata(descr, rows)
        .set_encodings(vec![
            Encoding::PLAIN,
            Encoding::RLE,
            Encoding::RLE_DICTIONARY,
        ])
        .set_page_encoding_stats(vec![
            PageEncodingStats {
                page_type: PageType::DICTIONARY_PAGE,
                encoding: Encoding::PLAIN,
                count: 1,
            },
            PageEncodingStats {
                page_type: PageType::DATA_PAGE,
                encoding: Encoding::RLE_DICTIONARY,
                count: pages.data_pages(),
            },
        ]);
    let chunk_statistics = statistics.then(|| {
        let (min, max) = chunk_range.map_or((None, None), |(min, max)| {
            let text = |key: usize| ByteArray::from(values[key].as_bytes().to_vec());
            (Some(text(min)), Some(text(max)))
        });
        Statistics::new(min, max, None, Some(null_count), false)
    });
    let page_index = props.statistics_enabled(path) == EnabledStatistics::Page;
    pages.finish(
        metadata,
        chunk_statistics,
        page_index.then_some(column_index),
        rows,
    )
}

/// `range` (keys of the smallest and largest text so far) widened by `key`.
fn widen(range: Option<(usize, usize)>, key: usize, values: &[&str]) -> (usize, usize) {
    match range {
        None => (key, key),
        Some((min, max)) => {
            let text = values[key].as_bytes();
            let min = if text < values[min].as_bytes() {
                key
            } else {
                min
            };
            let max = if text > values[max].as_bytes() {
                key
            } else {
                max
            };
            (min, max)
        }
    }
}

/// Bits needed for `max` (0 for 0).
fn bits_for(max: u32) -> u8 {
    (32 - max.leading_zeros()) as u8
}

/// Appends `runs` (a value below `2^bit_width`, and how many times it comes) to
/// `out` in Parquet's RLE/bit-packing hybrid: a run of 8 or more equal values as one
/// RLE run, the rest bit-packed in groups of 8 (the last group padded with zeros,
/// which a reader ignores by the value count).
pub(crate) fn encode_hybrid(
    runs: impl Iterator<Item = (u32, usize)>,
    bit_width: u8,
    out: &mut Vec<u8>,
) {
    let mut encoder = HybridEncoder {
        bit_width,
        out,
        packed: Vec::new(),
        run_value: 0,
        run_length: 0,
    };
    for (value, count) in runs {
        encoder.put(value, count);
    }
    encoder.finish();
}

struct HybridEncoder<'a> {
    bit_width: u8,
    out: &'a mut Vec<u8>,
    /// Values waiting to be bit-packed (fewer than 8 of them, or a multiple of 8
    /// held back while a run may still begin).
    packed: Vec<u32>,
    /// The run of equal values at the end of what was put, not yet in `packed`.
    run_value: u32,
    run_length: usize,
}

impl HybridEncoder<'_> {
    /// Puts `value` `count` times.
    fn put(&mut self, value: u32, count: usize) {
        if count == 0 {
            return;
        }
        if self.run_length > 0 && value == self.run_value {
            self.run_length += count;
            return;
        }
        self.end_run();
        self.run_value = value;
        self.run_length = count;
    }

    /// Places the current run: as an RLE run when it is long enough and the packed
    /// values before it fill whole groups, else value by value into `packed`.
    fn end_run(&mut self) {
        if self.run_length == 0 {
            return;
        }
        let mut length = self.run_length;
        self.run_length = 0;
        // Complete the last bit-packed group from the run first.
        while length > 0 && !self.packed.len().is_multiple_of(8) {
            self.packed.push(self.run_value);
            length -= 1;
        }
        if length >= 8 {
            self.flush_packed();
            put_uleb128((length as u64) << 1, self.out);
            let bytes = usize::from(self.bit_width).div_ceil(8);
            self.out
                .extend_from_slice(&self.run_value.to_le_bytes()[..bytes]);
        } else {
            self.packed
                .extend(std::iter::repeat_n(self.run_value, length));
        }
    }

    /// Writes the packed values as one bit-packed run, padded to whole groups.
    fn flush_packed(&mut self) {
        if self.packed.is_empty() {
            return;
        }
        let groups = self.packed.len().div_ceil(8);
        self.packed.resize(groups * 8, 0);
        put_uleb128(((groups as u64) << 1) | 1, self.out);
        let width = u32::from(self.bit_width);
        let mut buffer: u64 = 0;
        let mut filled = 0u32;
        for &value in &self.packed {
            buffer |= u64::from(value) << filled;
            filled += width;
            while filled >= 8 {
                self.out.push(buffer as u8);
                buffer >>= 8;
                filled -= 8;
            }
        }
        // 8 values of any width fill whole bytes.
        debug_assert_eq!(filled, 0);
        self.packed.clear();
    }

    fn finish(&mut self) {
        self.end_run();
        self.flush_packed();
    }
}

/// Appends `value` as ULEB128 (Parquet's unsigned varint): seven bits a byte, lowest
/// first, the high bit set on every byte but the last.
pub(crate) fn put_uleb128(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;
    use parquet::basic::ZstdLevel;
    use parquet::file::metadata::PageIndexPolicy;
    use parquet::file::page_index::column_index::ColumnIndexMetaData;
    use parquet::file::properties::WriterProperties;

    use crate::parquet_io::write_row_group;

    fn dictionary(keys: Vec<Option<i32>>, values: &[&str]) -> ArrayRef {
        Arc::new(DictionaryArray::new(
            Int32Array::from(keys),
            Arc::new(StringArray::from(values.to_vec())),
        ))
    }

    /// Writes `columns` (name, nullable, array) as one row group through
    /// [`write_row_group`] and reads the file back: the rows as text, and the footer.
    fn round_trip(columns: Vec<(&str, bool, ArrayRef)>) -> (Vec<Vec<Option<String>>>, Bytes) {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(name, nullable, _)| Field::new(*name, dict.clone(), *nullable))
                .collect::<Vec<_>>(),
        ));
        let batch =
            RecordBatch::try_new(schema.clone(), columns.into_iter().map(|c| c.2).collect())
                .expect("batch");
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("level")))
            .build();
        let (mut writer, factory) = ArrowWriter::try_new(Vec::new(), schema, Some(props))
            .and_then(ArrowWriter::into_serialized_writer)
            .expect("writer");
        write_row_group(&mut writer, &factory, &batch).expect("row group");
        let file = Bytes::from(writer.into_inner().expect("footer"));
        let reader = ParquetRecordBatchReaderBuilder::try_new(file.clone())
            .expect("reader")
            .build()
            .expect("batches");
        let mut rows: Vec<Vec<Option<String>>> = vec![Vec::new(); batch.num_columns()];
        for read in reader {
            let read = read.expect("batch read back");
            for (column, array) in read.columns().iter().enumerate() {
                let text = arrow::compute::cast(array, &DataType::Utf8).expect("cast");
                rows[column].extend(text.as_string::<i32>().iter().map(|v| v.map(String::from)));
            }
        }
        (rows, file)
    }

    fn expected(keys: &[Option<i32>], values: &[&str]) -> Vec<Option<String>> {
        keys.iter()
            .map(|k| k.map(|k| values[k as usize].to_string()))
            .collect()
    }

    #[test]
    fn keys_of_every_width_and_run_shape_read_back_as_written() {
        let rows = 50_000;
        // One text (0 bits), runs and alternation (2 bits), 300 texts (9 bits), and a
        // nullable column whose nulls come in runs and alone.
        let one = vec![Some(0); rows];
        let few: Vec<Option<i32>> = (0..rows)
            .map(|i| Some(if i % 1000 < 500 { (i % 3) as i32 } else { 3 }))
            .collect();
        let many: Vec<Option<i32>> = (0..rows).map(|i| Some(((i * 7) % 300) as i32)).collect();
        let nullable: Vec<Option<i32>> = (0..rows)
            .map(|i| (i % 17 != 0 && !(20_000..20_100).contains(&i)).then_some((i / 9 % 2) as i32))
            .collect();
        let many_values: Vec<String> = (0..300).map(|i| format!("function_{i:03}")).collect();
        let many_values: Vec<&str> = many_values.iter().map(String::as_str).collect();
        let (read, file) = round_trip(vec![
            ("one", false, dictionary(one.clone(), &["exact"])),
            (
                "few",
                false,
                dictionary(few.clone(), &["call", "return", "gap", "exception"]),
            ),
            ("many", false, dictionary(many.clone(), &many_values)),
            (
                "nullable",
                true,
                dictionary(nullable.clone(), &["MainThread", "wörker 🧵"]),
            ),
            // A nullable column without a null: its definition levels are one run.
            (
                "named",
                true,
                dictionary(few.clone(), &["a", "b", "c", "d"]),
            ),
        ]);
        assert_eq!(read[0], expected(&one, &["exact"]));
        assert_eq!(
            read[1],
            expected(&few, &["call", "return", "gap", "exception"])
        );
        assert_eq!(read[2], expected(&many, &many_values));
        assert_eq!(read[3], expected(&nullable, &["MainThread", "wörker 🧵"]));
        assert_eq!(read[4], expected(&few, &["a", "b", "c", "d"]));

        let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(&file)
            .expect("footer with page indexes");
        let group = metadata.row_group(0);
        let many_chunk = group.column(2);
        assert!(many_chunk.dictionary_page_offset().is_some());
        let stats = many_chunk.statistics().expect("statistics");
        assert_eq!(stats.min_bytes_opt(), Some(&b"function_000"[..]));
        assert_eq!(stats.max_bytes_opt(), Some(&b"function_299"[..]));
        let nullable_stats = group.column(3).statistics().expect("statistics");
        assert_eq!(
            nullable_stats.null_count_opt(),
            Some(nullable.iter().filter(|k| k.is_none()).count() as u64)
        );
        // 20,000 rows a page, as the Arrow writer's default.
        let pages = &metadata.offset_index().expect("offset index")[0][2].page_locations;
        assert_eq!(
            pages.iter().map(|p| p.first_row_index).collect::<Vec<_>>(),
            vec![0, 20_000, 40_000]
        );
        let ColumnIndexMetaData::BYTE_ARRAY(index) = &metadata.column_index().expect("index")[0][1]
        else {
            panic!("no column index for a text column");
        };
        assert_eq!(index.min_value(0), Some(&b"call"[..]));
        assert_eq!(index.max_value(0), Some(&b"return"[..]));
    }

    #[test]
    fn short_runs_between_long_ones_keep_their_order() {
        // A run of 8 after 3 loose values, one after a whole group, and a tail of 1.
        let keys: Vec<Option<i32>> = [
            vec![1, 2, 1],
            vec![0; 13],
            vec![3, 2, 1, 0, 3, 2, 1, 0],
            vec![2; 9],
            vec![1],
        ]
        .concat()
        .into_iter()
        .map(Some)
        .collect();
        let values = ["a", "b", "c", "d"];
        let (read, _) = round_trip(vec![("k", false, dictionary(keys.clone(), &values))]);
        assert_eq!(read[0], expected(&keys, &values));
    }

    #[test]
    fn a_repeated_or_unused_text_is_written_once_or_not_at_all() {
        // What concatenating two segments' columns gives: "b" twice, "unused" never used.
        let values = ["a", "b", "unused", "b", "c"];
        let keys: Vec<Option<i32>> = [0, 1, 3, 4, 3, 1, 0].into_iter().map(Some).collect();
        let (read, file) = round_trip(vec![("k", false, dictionary(keys.clone(), &values))]);
        assert_eq!(read[0], expected(&keys, &values));
        let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .expect("footer");
        let stats = metadata.row_group(0).column(0).statistics().expect("stats");
        assert_eq!(
            stats.max_bytes_opt(),
            Some(&b"c"[..]),
            "not the unused text"
        );
        let reader =
            parquet::file::serialized_reader::SerializedFileReader::new(file).expect("reader");
        let mut pages = parquet::file::reader::FileReader::get_row_group(&reader, 0)
            .expect("row group")
            .get_column_page_reader(0)
            .expect("pages");
        let dictionary = pages
            .get_next_page()
            .expect("page")
            .expect("dictionary page");
        assert_eq!(dictionary.page_type(), PageType::DICTIONARY_PAGE);
        assert_eq!(dictionary.num_values(), 3, "a, b and c once each");
    }
}
