//! A tracer killed while recording: everything but the last second survives as
//! complete segments that pyarrow reads and `trace_files` lists, and `repair`
//! makes them one file.
//!
//! The writer runs in a child process: this test's own executable started again
//! with `KILLED_WRITER_TRACE` set, which records for about three seconds and then
//! calls `abort()` (no destructor runs, as with SIGKILL).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{event, expected_row, pyarrow_read, segment_files, seqs, Names, TempDir};
use storage::{repair, trace_files, Mode, RunInfo, RunStatus, TraceWriter};

const CHILD_ENV: &str = "KILLED_WRITER_TRACE";
const TEST_NAME: &str = "a_killed_writer_loses_at_most_the_last_second";
const EVENTS_PER_MS: u64 = 10;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64
}

/// The child: records events stamped with the wall clock, calling `flush_if_due`
/// every millisecond as a sampler loop would, then aborts and prints what it had
/// written last.
fn record_then_abort(trace: &Path) -> ! {
    let names = Names::new(4);
    let run = RunInfo::new(vec!["python3".into(), "killed.py".into()], 1, Mode::Sampled);
    let mut writer = TraceWriter::create(trace, run, false).expect("create the trace");
    let start = Instant::now();
    let mut seq = 0u64;
    while start.elapsed() < Duration::from_secs(3) {
        for _ in 0..EVENTS_PER_MS {
            let mut e = event(&names, seq);
            e.ts_ns = now_ns();
            writer.write(&e).expect("write an event");
            seq += 1;
        }
        writer.flush_if_due(Instant::now()).expect("flush");
        std::thread::sleep(Duration::from_millis(1));
    }
    println!("ABORT {} {}", seq - 1, now_ns());
    std::process::abort();
}

#[test]
fn a_killed_writer_loses_at_most_the_last_second() {
    if let Some(trace) = std::env::var_os(CHILD_ENV) {
        record_then_abort(Path::new(&trace));
    }
    let dir = TempDir::new("killed");
    let trace = dir.join("killed.parquet");
    let out = Command::new(std::env::current_exe().expect("test executable"))
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &trace)
        .output()
        .expect("start the child writer");
    let stdout = String::from_utf8_lossy(&out.stdout);
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "child did not abort: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let abort_line = stdout
        .lines()
        .find_map(|line| line.split_once("ABORT ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("child printed no ABORT line: {stdout}"));
    let mut fields = abort_line
        .split(' ')
        .map(|f| f.parse::<i64>().expect("number"));
    let last_seq = fields.next().expect("last seq") as u64;
    let abort_ns = fields.next().expect("abort time");

    assert!(
        !trace.exists(),
        "a killed writer never writes the trace file"
    );
    let parts = dir.join("killed.parquet.parts");
    // A segment cut short while being written stays under its temporary name.
    std::fs::write(parts.join("part-999999.parquet.tmp"), b"PAR1 cut sh").unwrap();
    let on_disk = segment_files(&parts);
    assert!(on_disk.len() >= 4, "segments: {on_disk:?}");

    let traces = trace_files(&trace).unwrap();
    let killed = &traces.traces[0];
    assert!(!killed.finished && killed.from_segments && !killed.recording);
    assert_eq!(killed.files, on_disk);
    assert_eq!(killed.run.status, RunStatus::Unfinished);

    // Any Parquet reader reads `T.parquet.parts/*.parquet`.
    let read = pyarrow_read(&on_disk.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    let got = seqs(&read);
    let kept = got.len() as u64;
    assert_eq!(
        got,
        (0..kept).collect::<Vec<u64>>(),
        "a prefix of the events, in order"
    );
    assert_eq!(killed.run.events, kept);
    assert!(kept <= last_seq + 1);
    let rows = read["rows"].as_array().unwrap();
    let last_kept_ns = rows[rows.len() - 1]["ts"].as_i64().unwrap();
    let lost_ns = abort_ns - last_kept_ns;
    assert!(
        lost_ns < 1_000_000_000,
        "lost the last {lost_ns} ns before the abort (kept {kept} of {} events)",
        last_seq + 1
    );
    println!(
        "kept {kept} of {} events; the newest kept one was {:.3} s before the abort",
        last_seq + 1,
        lost_ns as f64 / 1e9
    );
    let names = Names::new(4);
    let run_id = killed.run.run_id.clone();
    for row in rows.iter().step_by(1009) {
        let seq = row["seq"].as_u64().unwrap();
        let mut want = event(&names, seq);
        want.ts_ns = row["ts"].as_i64().unwrap();
        assert_eq!(row, &expected_row(&run_id, &want));
    }

    let repaired = repair(&trace).unwrap();
    assert!(!parts.exists());
    let read = pyarrow_read(&[&repaired]);
    assert_eq!(seqs(&read), (0..kept).collect::<Vec<u64>>());
    assert_eq!(read["runs"][0]["status"], "unfinished");
    assert_eq!(read["runs"][0]["run_id"], run_id.as_str());
}
