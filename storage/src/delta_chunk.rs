//! Writing a rising id column of the events table (`seq`, `call_id`, `parent_id`) as
//! a `DELTA_BINARY_PACKED` Parquet column chunk straight from the Arrow array's values.
//!
//! The `parquet` crate's Arrow writer goes through each column in mini-batches of
//! 1024 values, updating the running minimum and maximum value by value through a
//! generic comparison and building definition levels one row at a time, and its
//! delta encoder writes each value into a bit writer of its own, one call a value.
//! Here a page's minimum and maximum are a plain loop, its definition levels runs
//! (as in [`crate::plain_chunk`]), and a miniblock's deltas are packed 64 bits at a
//! time. Pages, headers and the column's metadata are the crate's own types written
//! by its `SerializedPageWriter` ([`crate::chunk_pages`]); a page's values are byte
//! for byte those of the crate's `DeltaBitPackEncoder`, blocks of 256 values in 4
//! miniblocks of 64 (the Parquet format's layout, with the miniblock size arrow-rs
//! chose for 64-bit values so that its reader unpacks a miniblock in one call), and
//! its statistics and page indexes those of the Arrow writer.

use arrow::array::{Array, AsArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::UInt64Type;
use parquet::basic::{BoundaryOrder, Compression, Encoding, PageType, Type as PhysicalType};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnIndexBuilder, LevelHistogram, PageEncodingStats};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnDescPtr;

use crate::chunk_pages::{ChunkPages, EncodedChunk};
use crate::dictionary_chunk::put_uleb128;
use crate::plain_chunk::put_definition_levels;

/// Values of a miniblock: bit-packed at one width.
const MINIBLOCK_VALUES: usize = 64;

/// Miniblocks of a block, which shares one minimum delta.
const MINIBLOCKS: usize = 4;

/// Values of a block.
const BLOCK_VALUES: usize = MINIBLOCK_VALUES * MINIBLOCKS;

/// Encodes `array` (one row group's rows of a `UInt64` column) as column `descr`,
/// `DELTA_BINARY_PACKED`, with `props`' compression, statistics level and page
/// limits; `None` when the Arrow writer should do it instead (another type, another
/// encoding or a dictionary set for the column, a compression other than zstd).
pub(crate) fn encode_delta_column(
    array: &dyn Array,
    descr: &ColumnDescPtr,
    props: &WriterProperties,
) -> Result<Option<EncodedChunk>> {
    let path = descr.path();
    if props.encoding(path) != Some(Encoding::DELTA_BINARY_PACKED)
        || props.dictionary_enabled(path)
        || descr.physical_type() != PhysicalType::INT64
    {
        return Ok(None);
    }
    let Compression::ZSTD(level) = props.compression(path) else {
        return Ok(None);
    };
    let Some(array) = array.as_primitive_opt::<UInt64Type>() else {
        return Ok(None);
    };
    let nullable = descr.max_def_level() > 0;
    let valid = array.nulls();
    if !nullable && array.null_count() > 0 {
        return Err(ParquetError::General(format!(
            "column {path} is required but holds nulls"
        )));
    }
    let values = array.values();
    // The page limits of a plain column: deltas never take more than the values.
    let page_rows = props
        .data_page_row_count_limit()
        .min(props.data_page_size_limit() / 8)
        .max(1);
    let statistics = props.statistics_enabled(path) != EnabledStatistics::None;
    let page_index = props.statistics_enabled(path) == EnabledStatistics::Page;

    let mut pages = ChunkPages::new(level)?;
    let mut column_index = ColumnIndexBuilder::new(PhysicalType::INT64);
    let mut order = PageOrder::default();
    let mut chunk_range: Option<(u64, u64)> = None;
    let mut raw = Vec::new();
    let mut defined = Vec::new();
    for start in (0..values.len()).step_by(page_rows) {
        let end = (start + page_rows).min(values.len());
        let rows = end - start;
        let page = page_values(values, valid, start, end, &mut defined);
        let nulls = rows - page.len();
        raw.clear();
        if nullable {
            put_definition_levels(valid, start, rows, nulls, &mut raw);
        }
        let range = encode_deltas(page, &mut raw);
        pages.data(&raw, rows, Encoding::DELTA_BINARY_PACKED)?;
        if !statistics {
            continue;
        }
        if nullable {
            let levels = LevelHistogram::from(vec![nulls as i64, page.len() as i64]);
            column_index.append_histograms(&None, &Some(levels));
        }
        match range {
            Some((min, max)) => {
                order.page(min, max);
                column_index.append(
                    false,
                    min.to_le_bytes().to_vec(),
                    max.to_le_bytes().to_vec(),
                    nulls as i64,
                );
                chunk_range = Some(match chunk_range {
                    None => (min, max),
                    Some((low, high)) => (low.min(min), high.max(max)),
                });
            }
            None => column_index.append(true, Vec::new(), Vec::new(), nulls as i64),
        }
    }
    column_index.set_boundary_order(order.boundary_order());

    let rows = values.len() as u64;
    let data_pages = pages.data_pages();
    let mut metadata = pages
        .metadata(descr, rows)
        .set_encodings(vec![Encoding::RLE, Encoding::DELTA_BINARY_PACKED])
        .set_page_encoding_stats(vec![PageEncodingStats {
            page_type: PageType::DATA_PAGE,
            encoding: Encoding::DELTA_BINARY_PACKED,
            count: data_pages,
        }]);
    let null_count = array.null_count() as u64;
    if statistics && nullable {
        // Rows per definition level (null, not null), as the Arrow writer adds them.
        let levels = vec![null_count as i64, (rows - null_count) as i64];
        metadata = metadata.set_definition_level_histogram(Some(LevelHistogram::from(levels)));
    }
    // Stored as INT64 with the same bits, ordered unsigned (the column's logical type).
    let chunk_statistics = statistics.then(|| {
        Statistics::int64(
            chunk_range.map(|(min, _)| min as i64),
            chunk_range.map(|(_, max)| max as i64),
            None,
            Some(null_count),
            false,
        )
    });
    pages.finish(
        metadata,
        chunk_statistics,
        (page_index && data_pages > 0).then_some(column_index),
        rows,
    )
}

/// The values of rows `start..end` that are not null: a slice of `values` when
/// none is, else gathered into `defined`.
fn page_values<'v>(
    values: &'v [u64],
    valid: Option<&NullBuffer>,
    start: usize,
    end: usize,
    defined: &'v mut Vec<u64>,
) -> &'v [u64] {
    match valid.map(|valid| valid.slice(start, end - start)) {
        Some(page) if page.null_count() > 0 => {
            defined.clear();
            defined.extend(page.valid_indices().map(|row| values[start + row]));
            defined
        }
        _ => &values[start..end],
    }
}

/// Whether the pages' minimums and maximums rise or fall from page to page, which
/// the column index states (pages of nothing but nulls aside), as the Arrow writer
/// finds it.
struct PageOrder {
    last: Option<(u64, u64)>,
    ascending: bool,
    descending: bool,
}

impl Default for PageOrder {
    fn default() -> Self {
        PageOrder {
            last: None,
            ascending: true,
            descending: true,
        }
    }
}

impl PageOrder {
    fn page(&mut self, min: u64, max: u64) {
        if let Some((last_min, last_max)) = self.last {
            self.ascending &= last_min <= min && last_max <= max;
            self.descending &= last_min >= min && last_max >= max;
        }
        self.last = Some((min, max));
    }

    /// Equal pages (and no pages) are ascending.
    fn boundary_order(&self) -> BoundaryOrder {
        match (self.ascending, self.descending) {
            (true, _) => BoundaryOrder::ASCENDING,
            (false, true) => BoundaryOrder::DESCENDING,
            (false, false) => BoundaryOrder::UNORDERED,
        }
    }
}

/// Appends `values` to `out` `DELTA_BINARY_PACKED`: the header (block size,
/// miniblocks per block, value count, first value), then per block of the deltas
/// from value to value (wrapping, as 64-bit two's complement) the smallest delta,
/// one bit width a miniblock, and each miniblock's deltas less the smallest,
/// bit-packed. The last miniblock with values is padded with zeros to its full size;
/// the ones after it have a bit width of 0 and no bytes. Returns the smallest and
/// largest value, found on the way (the page's statistics).
fn encode_deltas(values: &[u64], out: &mut Vec<u8>) -> Option<(u64, u64)> {
    put_uleb128(BLOCK_VALUES as u64, out);
    put_uleb128(MINIBLOCKS as u64, out);
    put_uleb128(values.len() as u64, out);
    let Some(&first) = values.first() else {
        put_uleb128(0, out);
        return None;
    };
    put_uleb128(zigzag(first as i64), out);
    let (mut low, mut high) = (first, first);
    let mut deltas = [0u64; BLOCK_VALUES];
    let mut previous = first;
    for block_values in values[1..].chunks(BLOCK_VALUES) {
        let block = &mut deltas[..block_values.len()];
        // The smallest delta as a signed number: a value below the one before it
        // is a negative delta. (Selects, not `min`, so that the loop has no branch.)
        let mut min_delta = i64::MAX;
        for (delta, &value) in block.iter_mut().zip(block_values) {
            *delta = value.wrapping_sub(previous);
            previous = value;
            min_delta = if (*delta as i64) < min_delta {
                *delta as i64
            } else {
                min_delta
            };
            low = if value < low { value } else { low };
            high = if value > high { value } else { high };
        }
        let min_delta = min_delta as u64;
        put_uleb128(zigzag(min_delta as i64), out);
        let widths_at = out.len();
        out.resize(widths_at + MINIBLOCKS, 0);
        for (miniblock, deltas) in block.chunks(MINIBLOCK_VALUES).enumerate() {
            let bits = deltas
                .iter()
                .fold(0, |bits, &d| bits | d.wrapping_sub(min_delta));
            let width = u64::BITS - bits.leading_zeros();
            out[widths_at + miniblock] = width as u8;
            pack_miniblock(deltas, min_delta, width, out);
        }
    }
    Some((low, high))
}

/// Appends a miniblock's `deltas` less `min_delta` at `width` bits each, the first in
/// the lowest bits, padded with zeros to [`MINIBLOCK_VALUES`] values: `width`
/// 64-bit little-endian words.
fn pack_miniblock(deltas: &[u64], min_delta: u64, width: u32, out: &mut Vec<u8>) {
    if width == 0 {
        return;
    }
    let end = out.len() + width as usize * 8;
    out.reserve(width as usize * 8);
    let mut word = 0u64;
    let mut filled = 0;
    for &delta in deltas {
        let value = delta.wrapping_sub(min_delta);
        word |= value << filled;
        filled += width;
        if filled >= u64::BITS {
            out.extend_from_slice(&word.to_le_bytes());
            filled -= u64::BITS;
            // The bits of `value` that did not fit in the word just written (none
            // when it ended there: `value` is below 2^width).
            word = value.checked_shr(width - filled).unwrap_or(0);
        }
    }
    if filled > 0 {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.resize(end, 0);
}

/// `value` with its sign in the lowest bit: 0, -1, 1, -2, ... as 0, 1, 2, 3, ...
fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, UInt64Array};
    use parquet::basic::ZstdLevel;

    use crate::chunk_checks::{assert_same_chunks, batch_of, data_pages, read_back, write_both};

    /// Writes `columns` (name, nullable, values) as one row group with the crate's
    /// delta encoder and with the Arrow writer, checks that the rows read back as
    /// written and that both files hold the same pages, statistics and indexes.
    fn check(columns: Vec<(&str, bool, Vec<Option<u64>>)>) -> Bytes {
        let batch = batch_of(
            columns
                .into_iter()
                .map(|(name, nullable, values)| {
                    (
                        name,
                        nullable,
                        Arc::new(UInt64Array::from(values)) as ArrayRef,
                    )
                })
                .collect(),
        );
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("level")))
            .set_dictionary_enabled(false)
            .set_encoding(Encoding::DELTA_BINARY_PACKED)
            // The Arrow writer ends a page of a column with nulls at the first
            // multiple of this at or past the row limit (20,000): here at the limit.
            .set_write_batch_size(1000)
            .build();
        let (own, arrow) = write_both(&batch, props, encode_delta_column);
        assert_eq!(read_back(&own, &batch), batch);
        assert_same_chunks(&own, &arrow);
        own
    }

    fn all(values: impl IntoIterator<Item = u64>) -> Vec<Option<u64>> {
        values.into_iter().map(Some).collect()
    }

    #[test]
    fn blocks_and_miniblocks_of_every_fill_read_back_as_the_arrow_writer_wrote_them() {
        // No value, one, a partial miniblock, whole and partial blocks of the
        // Parquet format's example size (128) and of the one written (256).
        for rows in [0, 1, 2, 50, 64, 65, 128, 129, 255, 256, 257, 300, 513] {
            let seq = all((0..rows).map(|i| 1 + i as u64));
            // Rising by a little and by a lot, a miniblock at a time.
            let call_id = all((0..rows).map(|i| (i as u64).pow(3) + i as u64 % 7));
            // Up and down, sometimes none: the parent of each row.
            let parent_id: Vec<Option<u64>> = (0..rows)
                .map(|i| (i % 11 != 3).then_some((i as u64 * 37) % 101))
                .collect();
            check(vec![
                ("seq", false, seq),
                ("call_id", false, call_id),
                ("parent_id", true, parent_id),
            ]);
        }
    }

    #[test]
    fn huge_values_and_wrapping_deltas_read_back_as_written() {
        // Deltas that wrap around (u64::MAX to 0 and back), the widest (64 bits) and
        // the smallest (i64::MIN as a delta), every width in between.
        let wrapping = all([
            u64::MAX,
            0,
            u64::MAX,
            1,
            i64::MAX as u64,
            i64::MIN as u64,
            0,
        ]
        .into_iter()
        .cycle()
        .take(600));
        let widths = all((0..600).map(|i| 1u64 << (i % 64)));
        let falling = all((0..600).map(|i| u64::MAX - i as u64 * 3));
        check(vec![
            ("wrapping", false, wrapping),
            ("widths", false, widths),
            ("falling", true, falling),
        ]);
    }

    #[test]
    fn nulls_in_runs_scattered_and_everywhere_read_back_as_written() {
        let rows = 45_003;
        let runs: Vec<Option<u64>> = (0..rows)
            .map(|i| (!(i % 1000 < 300 || (20_000..40_000).contains(&i))).then_some(i as u64 * 5))
            .collect();
        let scattered: Vec<Option<u64>> = (0..rows)
            .map(|i| (i % 2 == 1 || i % 7 == 0).then_some(1_000_000 - i as u64))
            .collect();
        let all_null = vec![None; rows];
        let own = check(vec![
            ("runs", true, runs),
            ("scattered", true, scattered),
            ("all_null", true, all_null),
            ("seq", false, all((0..rows).map(|i| i as u64))),
        ]);
        // 20,000 rows a page, the Arrow writer's default: three pages.
        assert_eq!(
            data_pages(&own, 3)
                .iter()
                .map(|(rows, _)| *rows)
                .collect::<Vec<_>>(),
            vec![20_000, 20_000, 5_003]
        );
    }

    #[test]
    fn a_miniblock_is_its_deltas_less_the_smallest_at_its_width() {
        // 1, 3, 2, 6: deltas 2, -1, 4; the smallest -1, so 3, 0, 5 at 3 bits in the
        // first miniblock (padded to 64 values: 24 bytes), 0 bits for the other three.
        let mut out = Vec::new();
        assert_eq!(encode_deltas(&[1, 3, 2, 6], &mut out), Some((1, 6)));
        let mut expected = vec![0x80, 0x02, 4, 4, 2, 1, 3, 0, 0, 0];
        // 3 (011) in bits 0-2, 0 in bits 3-5, 5 (101) in bits 6-8.
        expected.extend([0b0100_0011, 0b0000_0001]);
        expected.resize(expected.len() + 22, 0);
        assert_eq!(out, expected);
    }
}
