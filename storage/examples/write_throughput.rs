//! Write throughput of `TraceWriter`: records N events (default 1,000,000) of a
//! call/return mix over 8 threads and 64 functions, then finishes the trace.
//!
//! ```text
//! cargo run --release -p storage --example write_throughput -- [N] [OUTPUT_DIR]
//! ```
//!
//! Prints the recording rate (events handed to the writer, segments written in the
//! background), the end-to-end rate including the final merge, the file size and
//! the peak memory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use attach::{Event, EventKind, Source};
use storage::{Mode, RunInfo, RunStatus, TraceWriter};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: u64 = match args.next() {
        Some(n) => n.parse()?,
        None => 1_000_000,
    };
    let dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("write-throughput-{}.parquet", std::process::id()));

    let functions: Vec<Arc<str>> = (0..64)
        .map(|i| Arc::from(format!("Handler{}.process_{i}", i % 8)))
        .collect();
    let modules: Vec<Arc<str>> = (0..8)
        .map(|i| Arc::from(format!("myapp.module{i}")))
        .collect();
    let files: Vec<Arc<str>> = (0..8)
        .map(|i| Arc::from(format!("/srv/myapp/module{i}.py")))
        .collect();
    let threads: Vec<Arc<str>> = (0..8).map(|i| Arc::from(format!("worker-{i}"))).collect();

    let run = RunInfo::new(vec!["python3".into(), "bench.py".into()], 1, Mode::Exact);
    let mut writer = TraceWriter::create(&path, run.clone(), true)?;
    let start = Instant::now();
    for seq in 0..count {
        let i = seq as usize;
        let call_id = seq / 2;
        let is_call = seq % 2 == 0;
        let f = (call_id as usize * 7) % functions.len();
        writer.write(&Event {
            pid: 1,
            tid: 1000 + (i % 8) as i64,
            thread_name: Some(threads[i % 8].clone()),
            seq,
            ts_ns: 1_700_000_000_000_000_000 + seq as i64 * 1000,
            kind: if is_call {
                EventKind::Call
            } else {
                EventKind::Return
            },
            source: Source::Exact,
            call_id,
            parent_id: call_id.checked_sub(1),
            depth: (call_id % 16) as i32,
            function: functions[f].clone(),
            module: modules[f % 8].clone(),
            file: files[f % 8].clone(),
            line: (f * 10 + 1) as i32,
            caller: Some(functions[(f + 1) % functions.len()].clone()),
            caller_line: Some(42),
            args: is_call.then(|| {
                format!(
                    r#"{{"self": "<Handler object at 0x7f00{call_id:08x}>", "n": "{call_id}"}}"#
                )
            }),
            value: (!is_call).then(|| call_id.to_string()),
            exception: None,
            duration_ns: (!is_call).then_some(1500),
            duration_max_ns: None,
            count: 1,
        })?;
        if seq % 1000 == 0 {
            writer.flush_if_due(Instant::now())?;
        }
    }
    let recorded = start.elapsed();
    let mut done = run;
    done.status = RunStatus::Completed;
    let path = writer.finish(done)?;
    let total = start.elapsed();
    let size = std::fs::metadata(&path)?.len();
    println!("events:            {count}");
    println!(
        "recording:         {:.3} s, {:.0} events/s",
        recorded.as_secs_f64(),
        count as f64 / recorded.as_secs_f64()
    );
    println!(
        "recording + merge: {:.3} s, {:.0} events/s",
        total.as_secs_f64(),
        count as f64 / total.as_secs_f64()
    );
    println!(
        "trace file:        {} bytes ({:.1} bytes/event)",
        size,
        size as f64 / count as f64
    );
    if let Some(peak) = peak_memory() {
        println!("peak memory (RSS): {peak}");
    }
    std::fs::remove_file(&path)?;
    Ok(())
}

/// The process's peak resident memory, as the kernel reports it (`VmHWM`).
fn peak_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .map(|value| value.trim().to_string())
}
