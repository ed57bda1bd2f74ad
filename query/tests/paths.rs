//! Trace paths that cannot be asked: missing, corrupt, not a trace, empty folders.

mod support;

use std::sync::Arc;

use datafusion::parquet::arrow::ArrowWriter;
use query::arrow::array::{Int64Array, RecordBatch};
use query::arrow::datatypes::{DataType, Field, Schema};
use query::{QueryError, QuerySession};
use support::{billing_run, TempDir};

fn open_error(path: &std::path::Path) -> QueryError {
    match QuerySession::open(path) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e,
    }
}

#[test]
fn a_missing_file_is_not_found() {
    let dir = TempDir::new("missing");
    let error = open_error(&dir.path().join("nope.parquet"));
    assert!(matches!(error, QueryError::NotFound { .. }), "{error:?}");
    assert!(error.to_string().contains("nope.parquet"));
}

#[test]
fn a_corrupt_file_is_named_as_not_parquet() {
    let dir = TempDir::new("corrupt");
    let path = dir.path().join("broken.parquet");
    std::fs::write(&path, b"PAR1 this is not a parquet file at all PAR1").expect("write");
    let error = open_error(&path);
    assert!(matches!(error, QueryError::NotParquet { .. }), "{error:?}");
    assert!(error.to_string().contains("broken.parquet"), "{error}");

    let truncated = dir.path().join("truncated.parquet");
    let good = dir.path().join("good.parquet");
    billing_run("0000000000billing01").write(&good);
    let bytes = std::fs::read(&good).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    assert!(matches!(
        open_error(&truncated),
        QueryError::NotParquet { .. }
    ));
}

#[test]
fn a_parquet_file_without_trace_columns_or_metadata_is_not_a_trace() {
    let dir = TempDir::new("foreign");
    let path = dir.path().join("numbers.parquet");
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1, 2]))])
        .expect("batch");
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(&path).expect("create"), schema, None)
            .expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    let error = open_error(&path);
    assert!(matches!(error, QueryError::NotATrace { .. }), "{error:?}");
    assert!(error.to_string().contains("run_id"), "{error}");
}

#[test]
fn an_empty_folder_says_there_are_no_traces() {
    let dir = TempDir::new("empty");
    std::fs::write(dir.path().join("notes.txt"), "not a trace").expect("write");
    let error = open_error(dir.path());
    assert!(matches!(error, QueryError::EmptyFolder { .. }), "{error:?}");
    assert!(query::newest_trace(dir.path()).is_err());
}

#[test]
fn a_segments_folder_without_complete_segments_says_so() {
    let dir = TempDir::new("noparts");
    let parts = dir.path().join("t.parquet.parts");
    std::fs::create_dir(&parts).expect("mkdir");
    std::fs::write(parts.join("part-000001.parquet.tmp"), b"PAR1").expect("write");
    let error = open_error(&dir.path().join("t.parquet"));
    assert!(matches!(error, QueryError::NoSegments { .. }), "{error:?}");
}

#[test]
fn the_newest_trace_of_a_folder_is_found() {
    let dir = TempDir::new("newest");
    let older = dir.path().join("a.parquet");
    let newer = dir.path().join("b.parquet");
    billing_run("0000000000billing01").write(&older);
    std::thread::sleep(std::time::Duration::from_millis(20));
    billing_run("0000000000billing02").write(&newer);
    assert_eq!(query::newest_trace(dir.path()).expect("newest"), newer);
}

#[test]
fn a_path_with_pattern_characters_is_refused_by_name() {
    let dir = TempDir::new("pattern");
    let path = dir.path().join("run[1].parquet");
    billing_run("0000000000billing01").write(&path);
    let error = open_error(&path);
    assert!(
        matches!(error, QueryError::PatternInPath { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("run[1].parquet"), "{error}");
}
