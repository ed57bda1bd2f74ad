//! Segments while recording: size- and time-based cuts, what readers see of a run
//! that did not finish, repairing it, folders of traces, and the errors a reader
//! gets for paths that are not traces.

mod common;

use std::time::{Duration, Instant};

use common::{
    event, expected_row, mode_of, pyarrow_read, python_json, segment_files, seqs, Names, TempDir,
};
use storage::{
    newest_trace, read_run_info, repair, trace_files, Error, Mode, RunInfo, RunStatus, TraceWriter,
    WriterOptions,
};

fn run() -> RunInfo {
    RunInfo::new(vec!["python3".into(), "job.py".into()], 77, Mode::Exact)
}

#[test]
fn a_full_buffer_becomes_a_segment_and_abandoned_segments_stay_readable() {
    let dir = TempDir::new("abandon");
    let path = dir.join("job.parquet");
    let names = Names::new(3);
    let run = run();
    let options = WriterOptions {
        max_segment_rows: 1000,
        flush_interval: Duration::from_secs(3600),
        ..WriterOptions::default()
    };
    let mut writer = TraceWriter::create_with_options(&path, run.clone(), false, options).unwrap();
    let parts = writer.parts_dir().to_path_buf();
    assert_eq!(mode_of(&parts), 0o700);
    assert!(!path.exists(), "the trace file appears only when finished");
    for seq in 0..10_500 {
        writer.write(&event(&names, seq)).unwrap();
    }
    let mut updated = writer.run().clone();
    updated.samples = 99;
    writer.update_run(updated).unwrap();
    assert_eq!(writer.abandon().unwrap(), parts);

    // Segment 1 is the empty one written at start; 10 full segments; the last 500
    // rows written by `abandon`.
    let files = segment_files(&parts);
    let names_only: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let expected_names: Vec<String> = (1..=12).map(|n| format!("part-{n:06}.parquet")).collect();
    assert_eq!(names_only, expected_names);
    let mut seen_events = Vec::new();
    for (index, file) in files.iter().enumerate() {
        assert_eq!(mode_of(file), 0o600, "{}", file.display());
        let (segment_run, rows) = read_run_info(file).unwrap();
        let want_rows = match index {
            0 => 0,
            11 => 500,
            _ => 1000,
        };
        assert_eq!(rows, want_rows, "{}", file.display());
        assert_eq!(segment_run.status, RunStatus::Unfinished);
        assert_eq!(segment_run.ended_at, None);
        assert_eq!(segment_run.run_id, run.run_id);
        seen_events.push(segment_run.events);
    }
    // Each segment's `tracer.run` counts the rows up to and including it.
    let cumulative: Vec<u64> = (0..12u64)
        .map(|i| match i {
            0 => 0,
            11 => 10_500,
            _ => i * 1000,
        })
        .collect();
    assert_eq!(seen_events, cumulative);
    assert_eq!(read_run_info(&files[11]).unwrap().0.samples, 99);

    let traces = trace_files(&path).unwrap();
    let trace = &traces.traces[0];
    assert!(!trace.finished && trace.from_segments && !trace.recording);
    assert_eq!(trace.files, files);
    assert_eq!(trace.run.events, 10_500);
    assert_eq!(trace.run.samples, 99);
    // The parts folder itself names the same trace.
    assert_eq!(trace_files(&parts).unwrap(), traces);

    let read = pyarrow_read(&files.iter().map(|f| f.as_path()).collect::<Vec<_>>());
    assert_eq!(seqs(&read), (0..10_500).collect::<Vec<u64>>());
    assert!(read["modes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m == "0o600"));

    let repaired = repair(&path).unwrap();
    assert_eq!(repaired, path);
    assert!(!parts.exists());
    assert_eq!(mode_of(&path), 0o600);
    let read = pyarrow_read(&[&path]);
    assert_eq!(read["num_rows"], 10_500);
    assert_eq!(read["runs"][0]["status"], "unfinished");
    assert_eq!(read["runs"][0]["events"], 10_500);
    let rows = read["rows"].as_array().unwrap();
    assert_eq!(
        rows[10_499],
        expected_row(&run.run_id, &event(&names, 10_499))
    );
    let after = trace_files(&path).unwrap();
    assert!(!after.traces[0].finished && !after.traces[0].from_segments);
    // Repairing a trace that is one file already changes nothing.
    assert_eq!(repair(&path).unwrap(), path);
}

/// Row counts of each row group of `path`, in file order, as pyarrow sees them, and
/// whether the `seq` page index finds exactly the rows of a range (DuckDB answering
/// a filtered count reads the statistics and page indexes the merge copied).
const ROW_GROUPS_AND_FILTER: &str = r#"
import json, sys
import duckdb, pyarrow.parquet as pq
f = pq.ParquetFile(sys.argv[1])
groups = [f.metadata.row_group(i).num_rows for i in range(f.metadata.num_row_groups)]
count = duckdb.sql(
    "SELECT COUNT(*), MIN(seq), MAX(seq) FROM read_parquet('%s') WHERE seq BETWEEN 20150 AND 40100"
    % sys.argv[1].replace("'", "''")).fetchall()[0]
print(json.dumps({"groups": groups, "filtered": list(count)}))
"#;

#[test]
fn finishing_splices_long_segments_and_packs_short_ones_together() {
    let dir = TempDir::new("splice");
    let path = dir.join("splice.parquet");
    let names = Names::new(3);
    let run = run();
    let options = WriterOptions {
        max_segment_rows: 20_000,
        flush_interval: Duration::from_secs(3600),
        ..WriterOptions::default()
    };
    let mut writer = TraceWriter::create_with_options(&path, run.clone(), false, options).unwrap();
    let mut seq = 0;
    let mut write = |writer: &mut TraceWriter, rows: u64| {
        for _ in 0..rows {
            writer.write(&event(&names, seq)).unwrap();
            seq += 1;
        }
    };
    // A full segment (spliced), two short ones (encoded together), two full ones,
    // and a short tail written by `finish`.
    write(&mut writer, 20_000);
    write(&mut writer, 300);
    writer.flush().unwrap();
    write(&mut writer, 400);
    writer.flush().unwrap();
    write(&mut writer, 40_000);
    write(&mut writer, 100);
    let mut finished = run.clone();
    finished.status = RunStatus::Completed;
    writer.finish(finished).unwrap();

    let read = pyarrow_read(&[&path]);
    assert_eq!(read["num_rows"], 60_800);
    assert_eq!(read["runs"][0]["events"], 60_800);
    assert_eq!(seqs(&read), (0..60_800).collect::<Vec<u64>>());
    let rows = read["rows"].as_array().unwrap();
    for seq in [0, 19_999, 20_000, 20_699, 20_700, 60_799] {
        assert_eq!(
            rows[seq as usize],
            expected_row(&run.run_id, &event(&names, seq)),
            "row {seq}"
        );
    }
    let out = python_json(ROW_GROUPS_AND_FILTER, &[path.to_str().unwrap()]);
    assert_eq!(
        out["groups"],
        serde_json::json!([20_000, 700, 20_000, 20_000, 100])
    );
    assert_eq!(out["filtered"], serde_json::json!([19_951, 20_150, 40_100]));
}

#[test]
fn flush_if_due_cuts_a_segment_once_the_interval_has_passed() {
    let dir = TempDir::new("due");
    let path = dir.join("due.parquet");
    let names = Names::new(2);
    let mut writer = TraceWriter::create(&path, run(), false).unwrap();
    let parts = writer.parts_dir().to_path_buf();
    let start = Instant::now();
    writer.write(&event(&names, 0)).unwrap();
    writer.write(&event(&names, 1)).unwrap();
    writer.flush_if_due(start).unwrap();
    writer
        .flush_if_due(start + Duration::from_millis(100))
        .unwrap();
    // Not due yet: nothing but the empty first segment (written synchronously).
    assert_eq!(segment_files(&parts).len(), 1);
    writer.flush_if_due(start + Duration::from_secs(1)).unwrap();
    // Due: a segment goes to the writer thread; it appears within a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while segment_files(&parts).len() < 2 {
        assert!(Instant::now() < deadline, "no segment after the interval");
        std::thread::sleep(Duration::from_millis(10));
    }
    let files = segment_files(&parts);
    assert_eq!(read_run_info(&files[1]).unwrap().1, 2);
    // While the writer lives, readers see the run as being recorded, and repair
    // refuses to take its segments away.
    let traces = trace_files(&path).unwrap();
    assert!(traces.traces[0].recording);
    assert!(matches!(repair(&path), Err(Error::StillRecording { .. })));
    drop(writer);
    assert!(!trace_files(&path).unwrap().traces[0].recording);
}

#[test]
fn an_existing_trace_is_not_overwritten_without_force() {
    let dir = TempDir::new("overwrite");
    let path = dir.join("t.parquet");
    let first = run();
    let writer = TraceWriter::create(&path, first.clone(), false).unwrap();
    // A second recording to the same path while the first one runs is refused.
    match TraceWriter::create(&path, run(), false) {
        Err(Error::AlreadyExists { path: existing }) => {
            assert_eq!(existing, dir.join("t.parquet.parts"))
        }
        other => panic!("expected AlreadyExists, got {:?}", other.err()),
    }
    // Even with force: its segments are not taken from under a live writer.
    match TraceWriter::create(&path, run(), true) {
        Err(Error::StillRecording { path: busy, pid }) => {
            assert_eq!(busy, path);
            assert_eq!(pid, Some(std::process::id()));
        }
        other => panic!("expected StillRecording, got {:?}", other.err()),
    }
    let mut done = first.clone();
    done.status = RunStatus::Completed;
    writer.finish(done).unwrap();
    match TraceWriter::create(&path, run(), false) {
        Err(Error::AlreadyExists { path: existing }) => assert_eq!(existing, path),
        other => panic!("expected AlreadyExists, got {:?}", other.err()),
    }
    assert_eq!(read_run_info(&path).unwrap().0.run_id, first.run_id);

    let second = run();
    let writer = TraceWriter::create(&path, second.clone(), true).unwrap();
    assert!(!path.exists(), "force removes the old trace at once");
    let mut done = second.clone();
    done.status = RunStatus::Interrupted;
    writer.finish(done).unwrap();
    let (stored, rows) = read_run_info(&path).unwrap();
    assert_eq!(stored.run_id, second.run_id);
    assert_eq!(stored.status, RunStatus::Interrupted);
    assert_eq!(rows, 0);
}

#[test]
fn finish_wants_the_same_run_and_a_final_status() {
    let dir = TempDir::new("finish-checks");
    let path = dir.join("t.parquet");
    let first = run();
    let mut writer = TraceWriter::create(&path, first.clone(), false).unwrap();
    let other = run();
    assert!(matches!(
        writer.update_run(other.clone()),
        Err(Error::RunMismatch { .. })
    ));
    let mut still_running = first.clone();
    still_running.status = RunStatus::Unfinished;
    assert!(matches!(
        writer.finish(still_running),
        Err(Error::StatusNotFinal { .. })
    ));
    // The rejected finish dropped the writer, which leaves the segments readable.
    let traces = trace_files(&path).unwrap();
    assert!(!traces.traces[0].finished);
    assert_eq!(traces.traces[0].run.run_id, first.run_id);
}

#[test]
fn a_folder_of_traces_lists_finished_and_unfinished_runs_and_finds_the_newest() {
    let dir = TempDir::new("folder");
    let names = Names::new(2);
    let mut runs = Vec::new();
    for (index, name) in ["a.parquet", "b.parquet", "c.parquet"].iter().enumerate() {
        let run = run();
        let mut writer = TraceWriter::create(&dir.join(name), run.clone(), false).unwrap();
        for seq in 0..(100 * (index as u64 + 1)) {
            writer.write(&event(&names, seq)).unwrap();
        }
        if index == 1 {
            writer.abandon().unwrap();
        } else {
            let mut done = run.clone();
            done.status = RunStatus::Completed;
            writer.finish(done).unwrap();
        }
        runs.push(run);
        // Modification times must differ for "newest" to mean something.
        std::thread::sleep(Duration::from_millis(20));
    }
    // A file still being written by someone is not a trace to read.
    std::fs::write(dir.join("d.parquet.tmp"), b"partial").unwrap();

    let traces = trace_files(&dir.path).unwrap();
    let paths: Vec<_> = traces.traces.iter().map(|t| t.path.clone()).collect();
    assert_eq!(
        paths,
        vec![
            dir.join("a.parquet"),
            dir.join("b.parquet"),
            dir.join("c.parquet")
        ]
    );
    let finished: Vec<bool> = traces.traces.iter().map(|t| t.finished).collect();
    assert_eq!(finished, vec![true, false, true]);
    let ids: Vec<&str> = traces
        .traces
        .iter()
        .map(|t| t.run.run_id.as_str())
        .collect();
    let want_ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, want_ids);
    let unfinished: Vec<_> = traces.unfinished().map(|t| t.path.clone()).collect();
    assert_eq!(unfinished, vec![dir.join("b.parquet")]);
    // Every file together, as a query engine reads them: 100 + 200 + 300 rows.
    let files = traces.files();
    let read = pyarrow_read(&files.iter().map(|f| f.as_path()).collect::<Vec<_>>());
    assert_eq!(read["num_rows"], 600);

    assert_eq!(newest_trace(&dir.path).unwrap(), dir.join("c.parquet"));
    std::thread::sleep(Duration::from_millis(20));
    let mut writer = TraceWriter::create(&dir.join("e.parquet"), run(), false).unwrap();
    writer.write(&event(&names, 0)).unwrap();
    // A run being recorded (only segments so far) is the newest one.
    assert_eq!(newest_trace(&dir.path).unwrap(), dir.join("e.parquet"));
    drop(writer);
}

#[test]
fn readers_get_typed_errors_for_paths_that_are_not_traces() {
    let dir = TempDir::new("errors");

    let missing = dir.join("missing.parquet");
    assert!(matches!(trace_files(&missing), Err(Error::NotFound { path }) if path == missing));
    assert!(matches!(repair(&missing), Err(Error::NotFound { .. })));
    assert!(matches!(
        newest_trace(&dir.join("no-such-dir")),
        Err(Error::NotFound { .. })
    ));

    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("notes.txt"), b"not a trace").unwrap();
    assert!(matches!(trace_files(&empty), Err(Error::NoTraces { path }) if path == empty));
    assert!(matches!(newest_trace(&empty), Err(Error::NoTraces { .. })));

    let garbage = dir.join("garbage.parquet");
    std::fs::write(&garbage, b"this is not parquet at all, just text").unwrap();
    match trace_files(&garbage) {
        Err(Error::NotParquet { path, .. }) => assert_eq!(path, garbage),
        other => panic!("expected NotParquet, got {other:?}"),
    }

    // A folder holding a damaged trace names the damaged file.
    match trace_files(&dir.path) {
        Err(Error::NotParquet { path, .. }) => assert_eq!(path, garbage),
        other => panic!("expected NotParquet, got {other:?}"),
    }

    // A real Parquet file, written by pyarrow, without `tracer.run`.
    let foreign = dir.join("foreign.parquet");
    python_json(
        "import sys, json, pyarrow as pa, pyarrow.parquet as pq\n\
         pq.write_table(pa.table({'x': [1, 2, 3]}), sys.argv[1])\n\
         print(json.dumps(True))",
        &[foreign.to_str().unwrap()],
    );
    match trace_files(&foreign) {
        Err(Error::NotATrace { path }) => assert_eq!(path, foreign),
        other => panic!("expected NotATrace, got {other:?}"),
    }
    let message = trace_files(&foreign).unwrap_err().to_string();
    assert!(message.contains("tracer.run"), "{message}");

    // A segments folder whose only segment is still under its temporary name.
    let parts = dir.join("killed.parquet.parts");
    std::fs::create_dir(&parts).unwrap();
    std::fs::write(parts.join("part-000001.parquet.tmp"), b"half written").unwrap();
    assert!(matches!(
        trace_files(&dir.join("killed.parquet")),
        Err(Error::NoSegments { .. })
    ));
}
