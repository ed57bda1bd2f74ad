//! A recording written through `TraceWriter` and finished reads back, value for
//! value, in the real pyarrow and DuckDB, with its `tracer.run` metadata.

mod common;

use std::time::{Duration, Instant};

use attach::EventSink;
use common::{event, expected_row, mode_of, pyarrow_read, python_json, seqs, Names, TempDir};
use serde_json::Value;
use storage::{trace_files, Mode, RunInfo, RunStatus, TraceWriter, WriterOptions};

fn finished_run(run: &RunInfo) -> RunInfo {
    let mut done = run.clone();
    done.status = RunStatus::Completed;
    done.exit_code = Some(0);
    done.samples = 12_345;
    done.sample_errors = 7;
    done.dropped_events = 2;
    done.ended_at = Some("2024-05-01T12:35:00.000000Z".into());
    done
}

fn new_run() -> RunInfo {
    let mut run = RunInfo::new(
        vec!["python3".into(), "app.py".into(), "--naïve".into()],
        4242,
        Mode::Sampled,
    );
    run.python_version = Some("3.12.1".into());
    run.python_executable = Some("/usr/bin/python3.12".into());
    run.rate_hz = Some(1000);
    run.include = vec!["myapp.*".into()];
    run.exclude = vec!["myapp.vendor.*".into()];
    run.launched = true;
    run
}

#[test]
fn pyarrow_reads_every_value_type_and_the_run_of_a_finished_trace() {
    let dir = TempDir::new("pyarrow");
    // A parent folder that does not exist yet: the writer creates it.
    let path = dir.join("traces/nested/run.parquet");
    let names = Names::new(5);
    let run = new_run();
    let options = WriterOptions {
        max_segment_rows: 700,
        ..WriterOptions::default()
    };
    let mut writer = TraceWriter::create_with_options(&path, run.clone(), false, options).unwrap();
    let events: Vec<_> = (0..3500).map(|seq| event(&names, seq)).collect();
    let start = Instant::now();
    for (i, e) in events.iter().enumerate() {
        writer.event(&mut e.clone()).unwrap();
        // The recording loop's clock: a second passes every 1000 events.
        writer
            .flush_if_due(start + Duration::from_millis(i as u64))
            .unwrap();
    }
    let finished = finished_run(&run);
    let written = writer.finish(finished.clone()).unwrap();
    assert_eq!(written, path);
    assert!(!dir.join("traces/nested/run.parquet.parts").exists());
    assert_eq!(mode_of(&path), 0o600);

    let read = pyarrow_read(&[&path]);
    let types = &read["types"];
    assert_eq!(types["ts"], "timestamp[ns, tz=UTC]");
    assert_eq!(types["seq"], "uint64");
    assert_eq!(types["call_id"], "uint64");
    assert_eq!(types["parent_id"], "uint64");
    assert_eq!(types["pid"], "int32");
    assert_eq!(types["tid"], "int64");
    assert_eq!(types["depth"], "int32");
    assert_eq!(types["line"], "int32");
    assert_eq!(types["caller_line"], "int32");
    assert_eq!(types["duration_ns"], "int64");
    assert_eq!(types["duration_max_ns"], "int64");
    assert_eq!(types["count"], "uint32");
    for name in ["args", "value", "exception"] {
        assert_eq!(types[name], "string", "{name}");
    }
    for name in [
        "run_id",
        "thread_name",
        "kind",
        "source",
        "function",
        "module",
        "file",
        "caller",
    ] {
        let ty = types[name].as_str().unwrap();
        assert!(
            ty == "string" || ty.starts_with("dictionary<values=string"),
            "{name}: {ty}"
        );
    }
    assert_eq!(types.as_object().unwrap().len(), 23);

    // zstd everywhere; a dictionary for the name columns, deltas for the ids that
    // rise, the other integer columns and the timestamps plain.
    let chunks = read["chunks"].as_object().unwrap();
    assert_eq!(chunks.len(), 23);
    for (name, chunk) in chunks {
        assert_eq!(chunk["compression"], "ZSTD", "{name}");
    }
    for name in [
        "run_id",
        "function",
        "module",
        "file",
        "kind",
        "thread_name",
    ] {
        assert_eq!(chunks[name]["dictionary"], true, "{name}");
    }
    // Every integer and timestamp column but the delta ones (found by type, so a new
    // column is checked too), and the free text.
    let plain: Vec<&String> = types
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, ty)| {
            let ty = ty.as_str().unwrap_or_default();
            !["seq", "call_id", "parent_id"].contains(&name.as_str())
                && (ty.starts_with("int") || ty.starts_with("uint") || ty.starts_with("timestamp"))
        })
        .map(|(name, _)| name)
        .collect();
    assert_eq!(plain.len(), 9, "{plain:?}");
    for name in plain
        .iter()
        .map(|name| name.as_str())
        .chain(["args", "value", "exception"])
    {
        let chunk = &chunks[name];
        // A column that holds one value in the whole row group (here `pid`, 4242 on
        // every row) is a dictionary of that value, its pages runs of one key.
        let expected: &[&str] = if name == "pid" {
            &["PLAIN", "RLE_DICTIONARY"]
        } else {
            &["PLAIN"]
        };
        let encodings: Vec<&str> = chunk["encodings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .filter(|e| *e != "RLE")
            .collect();
        assert_eq!(encodings, expected, "{name}: {chunk}");
        assert_eq!(chunk["dictionary"], name == "pid", "{name}: {chunk}");
    }
    for name in ["seq", "call_id", "parent_id"] {
        let chunk = &chunks[name];
        let encodings = chunk["encodings"].as_array().unwrap();
        assert!(
            chunk["dictionary"] == false && encodings.contains(&Value::from("DELTA_BINARY_PACKED")),
            "{name}: {chunk}"
        );
    }
    // Row groups declare their order: run_id (column 0), then seq (column 4).
    assert_eq!(read["sorting"], serde_json::json!([[0, false], [4, false]]));

    assert_eq!(read["num_rows"], 3500);
    // 3500 rows fit in one row group of the finished file.
    assert_eq!(read["row_groups"], 1);
    let expected: Vec<Value> = events
        .iter()
        .map(|e| expected_row(&run.run_id, e))
        .collect();
    let rows = read["rows"].as_array().unwrap();
    for (got, want) in rows.iter().zip(&expected) {
        assert_eq!(got, want);
    }
    assert_eq!(rows.len(), expected.len());

    let stored = &read["runs"][0];
    assert_eq!(stored["run_id"], run.run_id.as_str());
    assert_eq!(stored["schema_version"], 1);
    assert_eq!(stored["status"], "completed");
    assert_eq!(stored["mode"], "sampled");
    assert_eq!(stored["events"], 3500);
    assert_eq!(stored["samples"], 12_345);
    assert_eq!(stored["sample_errors"], 7);
    assert_eq!(stored["dropped_events"], 2);
    assert_eq!(stored["exit_code"], 0);
    assert_eq!(stored["rate_hz"], 1000);
    assert_eq!(stored["pid"], 4242);
    assert_eq!(
        stored["command"],
        serde_json::json!(["python3", "app.py", "--naïve"])
    );
    assert_eq!(stored["python_version"], "3.12.1");
    assert_eq!(stored["python_executable"], "/usr/bin/python3.12");
    assert_eq!(stored["include"], serde_json::json!(["myapp.*"]));
    assert_eq!(stored["exclude"], serde_json::json!(["myapp.vendor.*"]));
    assert_eq!(stored["started_at"], run.started_at.as_str());
    assert_eq!(stored["ended_at"], "2024-05-01T12:35:00.000000Z");
    assert_eq!(stored["tracer_version"], env!("CARGO_PKG_VERSION"));

    let traces = trace_files(&path).unwrap();
    assert_eq!(traces.traces.len(), 1);
    let trace = &traces.traces[0];
    assert!(trace.finished && !trace.from_segments && !trace.recording);
    assert_eq!(trace.files, vec![path.clone()]);
    let mut want = finished;
    want.events = 3500;
    assert_eq!(trace.run, want);
}

#[test]
fn events_arriving_out_of_seq_order_are_stored_sorted() {
    let dir = TempDir::new("unordered");
    let path = dir.join("unordered.parquet");
    let names = Names::new(3);
    let run = new_run();
    let options = WriterOptions {
        max_segment_rows: 250,
        ..WriterOptions::default()
    };
    let mut writer = TraceWriter::create_with_options(&path, run.clone(), false, options).unwrap();
    // Within windows of 600 the order is reversed, so segments of 250 rows overlap
    // in seq and every segment is unsorted on arrival; seq 0..50 arrive last.
    let mut order: Vec<u64> = Vec::new();
    for window in (50..3050u64).step_by(600) {
        order.extend((window..window + 600).rev());
    }
    order.extend(0..50);
    for &seq in &order {
        writer.write(&event(&names, seq)).unwrap();
    }
    writer.finish(finished_run(&run)).unwrap();

    let read = pyarrow_read(&[&path]);
    assert_eq!(seqs(&read), (0..3050).collect::<Vec<u64>>());
    let rows = read["rows"].as_array().unwrap();
    for row in rows.iter().step_by(97) {
        let seq = row["seq"].as_u64().unwrap();
        assert_eq!(row, &expected_row(&run.run_id, &event(&names, seq)));
    }
}

const DUCKDB_READ: &str = r#"
import json, sys
import duckdb
path = sys.argv[1]
con = duckdb.connect()
scan = "read_parquet('" + path.replace("'", "''") + "')"
out = {}
out["count"] = con.execute("SELECT count(*) FROM " + scan).fetchone()[0]
out["types"] = {r[0]: r[1] for r in con.execute("DESCRIBE SELECT * FROM " + scan).fetchall()}
out["kinds"] = dict(con.execute("SELECT kind, count(*) FROM " + scan + " GROUP BY kind").fetchall())
out["sum_count"] = con.execute("SELECT sum(count) FROM " + scan).fetchone()[0]
out["max_call_id"] = con.execute("SELECT max(call_id) FROM " + scan).fetchone()[0]
out["modules"] = sorted(r[0] for r in con.execute("SELECT DISTINCT module FROM " + scan).fetchall())
out["null_threads"] = con.execute("SELECT count(*) FROM " + scan + " WHERE thread_name IS NULL").fetchone()[0]
out["first_ts_ns"] = con.execute("SELECT epoch_ns(ts) FROM " + scan + " ORDER BY seq LIMIT 1").fetchone()[0]
out["args_of_seq_7"] = con.execute("SELECT args FROM " + scan + " WHERE seq = 7").fetchone()[0]
out["in_order"] = con.execute(
    "SELECT bool_and(seq::BIGINT = position) FROM "
    "(SELECT seq, row_number() OVER () - 1 AS position FROM " + scan + ")"
).fetchone()[0]
kv = con.execute(
    "SELECT value FROM parquet_kv_metadata('" + path.replace("'", "''") + "') WHERE key = 'tracer.run'"
).fetchone()[0]
out["run"] = json.loads(kv.decode() if isinstance(kv, (bytes, bytearray)) else kv)
print(json.dumps(out))
"#;

#[test]
fn duckdb_queries_a_finished_trace() {
    let dir = TempDir::new("duckdb");
    let path = dir.join("duck.parquet");
    let names = Names::new(4);
    let run = new_run();
    let mut writer = TraceWriter::create(&path, run.clone(), false).unwrap();
    let events: Vec<_> = (0..2800).map(|seq| event(&names, seq)).collect();
    for e in &events {
        writer.write(e).unwrap();
    }
    writer.finish(finished_run(&run)).unwrap();

    let out = python_json(DUCKDB_READ, &[path.to_str().unwrap()]);
    assert_eq!(out["count"], 2800);
    let types = &out["types"];
    assert_eq!(types["seq"], "UBIGINT");
    assert_eq!(types["call_id"], "UBIGINT");
    assert_eq!(types["pid"], "INTEGER");
    assert_eq!(types["tid"], "BIGINT");
    assert_eq!(types["function"], "VARCHAR");
    assert_eq!(types["kind"], "VARCHAR");
    // DuckDB 1.x reads it as microseconds with time zone, 2.x keeps nanoseconds.
    let ts_type = types["ts"].as_str().unwrap();
    assert!(
        ts_type == "TIMESTAMPTZ_NS" || ts_type == "TIMESTAMP WITH TIME ZONE",
        "{ts_type}"
    );

    let mut kinds = serde_json::Map::new();
    for e in &events {
        let count = kinds.entry(e.kind.as_str()).or_insert(Value::from(0u64));
        *count = Value::from(count.as_u64().unwrap() + 1);
    }
    assert_eq!(out["kinds"], Value::Object(kinds));
    let sum_count: u64 = events.iter().map(|e| u64::from(e.count)).sum();
    assert_eq!(out["sum_count"], sum_count);
    let max_call_id = events.iter().map(|e| e.call_id).max().unwrap();
    assert_eq!(out["max_call_id"], max_call_id);
    let mut modules: Vec<String> = events.iter().map(|e| e.module.to_string()).collect();
    modules.sort();
    modules.dedup();
    assert_eq!(out["modules"], serde_json::json!(modules));
    let null_threads = events.iter().filter(|e| e.thread_name.is_none()).count();
    assert_eq!(out["null_threads"], null_threads);
    assert_eq!(out["first_ts_ns"], events[0].ts_ns);
    assert_eq!(out["args_of_seq_7"], events[7].args.as_deref().unwrap());
    assert_eq!(out["in_order"], true);
    assert_eq!(out["run"]["run_id"], run.run_id.as_str());
    assert_eq!(out["run"]["status"], "completed");
    assert_eq!(out["run"]["events"], 2800);
}
