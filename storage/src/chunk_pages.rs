//! The pages of one column chunk, as the crate's own encoders
//! ([`crate::dictionary_chunk`], [`crate::plain_chunk`], [`crate::delta_chunk`]) write
//! them: each compressed with zstd and written by the `parquet` crate's
//! [`SerializedPageWriter`], and tallied as they go (sizes, the offset index, where
//! the dictionary and the first data page start) for the chunk's metadata, as the
//! Arrow writer tallies its own.

use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriteSpec, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{
    ColumnChunkMetaData, ColumnChunkMetaDataBuilder, ColumnIndexBuilder, OffsetIndexBuilder,
};
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// A column chunk encoded in memory: its bytes from offset 0 and what
/// `SerializedRowGroupWriter::append_column` needs to place them.
pub(crate) struct EncodedChunk {
    pub bytes: Bytes,
    pub close: ColumnCloseResult,
}

/// A column chunk's pages written so far.
pub(crate) struct ChunkPages {
    level: ZstdLevel,
    compressor: zstd::bulk::Compressor<'static>,
    sink: TrackedWrite<Vec<u8>>,
    uncompressed: usize,
    compressed: usize,
    offset_index: OffsetIndexBuilder,
    dictionary_offset: Option<u64>,
    first_data_offset: Option<u64>,
    data_pages: i32,
}

impl ChunkPages {
    /// No pages yet; they will be compressed at zstd `level`.
    pub(crate) fn new(level: ZstdLevel) -> Result<ChunkPages> {
        let compressor = zstd::bulk::Compressor::new(level.compression_level())
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(ChunkPages {
            level,
            compressor,
            sink: TrackedWrite::new(Vec::new()),
            uncompressed: 0,
            compressed: 0,
            offset_index: OffsetIndexBuilder::new(),
            dictionary_offset: None,
            first_data_offset: None,
            data_pages: 0,
        })
    }

    fn compress(&mut self, raw: &[u8]) -> Result<Bytes> {
        self.compressor
            .compress(raw)
            .map(Bytes::from)
            .map_err(|e| ParquetError::External(Box::new(e)))
    }

    /// Writes `page`, whose bytes before compression were `raw_len`.
    fn write(&mut self, page: Page, raw_len: usize) -> Result<PageWriteSpec> {
        let spec = SerializedPageWriter::new(&mut self.sink)
            .write_page(CompressedPage::new(page, raw_len))?;
        self.uncompressed += spec.uncompressed_size;
        self.compressed += spec.compressed_size;
        Ok(spec)
    }

    /// Writes the dictionary page (it comes first): `values` values PLAIN in `raw`.
    pub(crate) fn dictionary(&mut self, raw: &[u8], values: u32, is_sorted: bool) -> Result<()> {
        let page = Page::DictionaryPage {
            buf: self.compress(raw)?,
            num_values: values,
            encoding: Encoding::PLAIN,
            is_sorted,
        };
        self.dictionary_offset = Some(self.write(page, raw.len())?.offset);
        Ok(())
    }

    /// Writes a data page of `rows` rows: `raw` holds their definition levels
    /// (RLE), if any, then their values as `encoding` has them.
    pub(crate) fn data(&mut self, raw: &[u8], rows: usize, encoding: Encoding) -> Result<()> {
        let page = Page::DataPage {
            buf: self.compress(raw)?,
            num_values: rows as u32,
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let spec = self.write(page, raw.len())?;
        self.first_data_offset.get_or_insert(spec.offset);
        self.offset_index
            .append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
        self.offset_index.append_row_count(rows as i64);
        self.data_pages += 1;
        Ok(())
    }

    /// The offset index, for what a data page adds to it beyond its place and rows.
    pub(crate) fn offset_index(&mut self) -> &mut OffsetIndexBuilder {
        &mut self.offset_index
    }

    /// Data pages written.
    pub(crate) fn data_pages(&self) -> i32 {
        self.data_pages
    }

    /// The metadata of column `descr`'s chunk of `rows` rows in these pages: its
    /// compression, size and page offsets; the caller adds its encodings.
    pub(crate) fn metadata(&self, descr: &ColumnDescPtr, rows: u64) -> ColumnChunkMetaDataBuilder {
        ColumnChunkMetaData::builder(Arc::clone(descr))
            .set_compression(Compression::ZSTD(self.level))
            .set_num_values(rows as i64)
            .set_total_compressed_size(self.compressed as i64)
            .set_total_uncompressed_size(self.uncompressed as i64)
            .set_dictionary_page_offset(self.dictionary_offset.map(|o| o as i64))
            .set_data_page_offset(self.first_data_offset.unwrap_or(0) as i64)
    }

    /// The encoded chunk of `rows` rows: its bytes, and `metadata`, `statistics`
    /// and the page indexes, which `SerializedRowGroupWriter::append_column` places
    /// in the footer.
    pub(crate) fn finish(
        self,
        mut metadata: ColumnChunkMetaDataBuilder,
        statistics: Option<Statistics>,
        column_index: Option<ColumnIndexBuilder>,
        rows: u64,
    ) -> Result<Option<EncodedChunk>> {
        if let Some(statistics) = statistics {
            metadata = metadata.set_statistics(statistics);
        }
        Ok(Some(EncodedChunk {
            bytes: Bytes::from(self.sink.into_inner()?),
            close: ColumnCloseResult {
                bytes_written: self.compressed as u64,
                rows_written: rows,
                metadata: metadata.build()?,
                bloom_filter: None,
                column_index: column_index.map(ColumnIndexBuilder::build).transpose()?,
                offset_index: Some(self.offset_index.build()),
            },
        }))
    }
}
