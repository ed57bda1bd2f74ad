//! Test support of the column chunk encoders ([`crate::delta_chunk`],
//! [`crate::plain_chunk`]): a batch written by [`write_row_group`] and by the Arrow
//! writer alone, read back, and the two files' chunks compared page by page.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::column::page::Page;
use parquet::errors::Result;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::schema::types::ColumnDescPtr;

use crate::chunk_pages::EncodedChunk;
use crate::parquet_io::write_row_group;

/// A column chunk encoder of the crate, as [`write_row_group`] calls it.
pub(crate) type Encoder =
    fn(&dyn Array, &ColumnDescPtr, &WriterProperties) -> Result<Option<EncodedChunk>>;

/// A batch of `columns` (name, nullable, values).
pub(crate) fn batch_of(columns: Vec<(&str, bool, ArrayRef)>) -> RecordBatch {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, nullable, array)| Field::new(*name, array.data_type().clone(), *nullable))
            .collect::<Vec<_>>(),
    ));
    RecordBatch::try_new(schema, columns.into_iter().map(|c| c.2).collect()).expect("batch")
}

/// `batch` written as one row group with `props` twice: by [`write_row_group`],
/// after checking that `encode` takes every column (not the Arrow writer), and by
/// the Arrow writer alone.
pub(crate) fn write_both(
    batch: &RecordBatch,
    props: WriterProperties,
    encode: Encoder,
) -> (Bytes, Bytes) {
    let (mut writer, factory) =
        ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props.clone()))
            .and_then(ArrowWriter::into_serialized_writer)
            .expect("writer");
    for (array, descr) in batch.columns().iter().zip(writer.schema_descr().columns()) {
        assert!(
            encode(array.as_ref(), descr, writer.properties())
                .expect("encode")
                .is_some(),
            "{} is encoded by the crate",
            descr.name()
        );
    }
    write_row_group(&mut writer, &factory, batch).expect("row group");
    let own = Bytes::from(writer.into_inner().expect("footer"));
    let mut writer =
        ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).expect("arrow writer");
    writer.write(batch).expect("arrow rows");
    let arrow = Bytes::from(writer.into_inner().expect("arrow footer"));
    (own, arrow)
}

/// The rows of `file` as one batch of `batch`'s schema.
pub(crate) fn read_back(file: &Bytes, batch: &RecordBatch) -> RecordBatch {
    let read = ParquetRecordBatchReaderBuilder::try_new(file.clone())
        .expect("reader")
        .build()
        .expect("batches")
        .collect::<std::result::Result<Vec<_>, _>>()
        .expect("rows read back");
    arrow::compute::concat_batches(&batch.schema(), &read).expect("one batch")
}

/// The footer of `file` with its page indexes.
pub(crate) fn footer(file: &Bytes) -> ParquetMetaData {
    ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Optional)
        .parse_and_finish(file)
        .expect("footer")
}

/// The data pages of column `column` of `file`, uncompressed: each page's rows,
/// and its values' bytes after the definition levels (which the crate's encoders
/// write as other runs than the Arrow writer's).
pub(crate) fn data_pages(file: &Bytes, column: usize) -> Vec<(u32, Bytes)> {
    let reader = SerializedFileReader::new(file.clone()).expect("reader");
    let group = reader.get_row_group(0).expect("row group");
    let nullable = group
        .metadata()
        .column(column)
        .column_descr()
        .max_def_level()
        > 0;
    let mut pages = Vec::new();
    for page in group.get_column_page_reader(column).expect("pages") {
        let page = page.expect("page");
        let Page::DataPage {
            buf, num_values, ..
        } = page
        else {
            panic!("a page other than a v1 data page");
        };
        let values = if nullable {
            let levels = u32::from_le_bytes(buf[..4].try_into().expect("length")) as usize;
            buf.slice(4 + levels..)
        } else {
            buf
        };
        pages.push((num_values, values));
    }
    pages
}

/// Asserts that every column chunk of `own` is what the Arrow writer wrote in
/// `arrow`: the same rows per page and values' bytes per page, encodings,
/// statistics and page indexes.
pub(crate) fn assert_same_chunks(own: &Bytes, arrow: &Bytes) {
    let (own_footer, arrow_footer) = (footer(own), footer(arrow));
    if arrow_footer.num_row_groups() == 0 {
        // The Arrow writer writes no row group of no rows; the crate's writer never
        // asks for one, and one it writes has no pages.
        assert_eq!(own_footer.file_metadata().num_rows(), 0);
        for column in 0..own_footer.row_group(0).num_columns() {
            assert!(data_pages(own, column).is_empty());
        }
        return;
    }
    let (group, arrow_group) = (own_footer.row_group(0), arrow_footer.row_group(0));
    for column in 0..group.num_columns() {
        let (chunk, arrow_chunk) = (group.column(column), arrow_group.column(column));
        let name = chunk.column_descr().name();
        assert_eq!(
            data_pages(own, column),
            data_pages(arrow, column),
            "{name}: pages"
        );
        assert_eq!(
            chunk.encodings().collect::<Vec<_>>(),
            arrow_chunk.encodings().collect::<Vec<_>>(),
            "{name}: encodings"
        );
        assert_eq!(
            (
                chunk.page_encoding_stats(),
                chunk.page_encoding_stats_mask()
            ),
            (
                arrow_chunk.page_encoding_stats(),
                arrow_chunk.page_encoding_stats_mask()
            ),
            "{name}: page encodings"
        );
        assert_eq!(chunk.num_values(), arrow_chunk.num_values(), "{name}: rows");
        assert_eq!(
            chunk.statistics(),
            arrow_chunk.statistics(),
            "{name}: statistics"
        );
        let column_index = |footer: &ParquetMetaData| {
            footer
                .column_index()
                .map(|groups| groups[0][column].clone())
        };
        assert_eq!(
            column_index(&own_footer),
            column_index(&arrow_footer),
            "{name}: column index"
        );
        let row_starts = |footer: &ParquetMetaData| {
            footer.offset_index().map(|groups| {
                let index = &groups[0][column];
                let starts: Vec<i64> = index
                    .page_locations
                    .iter()
                    .map(|page| page.first_row_index)
                    .collect();
                (starts, index.unencoded_byte_array_data_bytes.clone())
            })
        };
        assert_eq!(
            row_starts(&own_footer),
            row_starts(&arrow_footer),
            "{name}: offset index"
        );
    }
}
