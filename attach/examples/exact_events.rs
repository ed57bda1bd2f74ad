//! Runs a command with the exact-mode hook and prints every event as a JSON line on
//! stdout, then the session's statistics as one JSON object on stderr: a manual
//! check of `attach::exact`.
//!
//! ```text
//! cargo run -p attach --example exact_events -- [--include GLOB]... [--exclude GLOB]...
//!     [--no-args] [--max-calls N] [--subprocesses] [--python-hook] [--count]
//!     -- CMD [ARGS...]
//! ```
//!
//! The command's own output goes to stderr so that stdout holds events only.
//! `--python-hook` forces the hook's pure-Python callbacks; `--count` only counts the
//! events (a sink that costs next to nothing, for benchmarks).

use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use attach::event::SinkError;
use attach::exact::{ExactOptions, ExactSession, ExactStats};
use attach::{Event, EventSink};
use serde_json::json;

/// Prints each event as it comes.
struct JsonLines;

impl EventSink for JsonLines {
    fn event(&mut self, e: &mut Event) -> Result<(), SinkError> {
        let line = json!({
            "pid": e.pid, "tid": e.tid, "thread_name": e.thread_name.as_deref(),
            "seq": e.seq, "ts": e.ts_ns, "kind": e.kind.as_str(), "call_id": e.call_id,
            "parent_id": e.parent_id, "depth": e.depth, "function": &*e.function,
            "module": &*e.module, "file": &*e.file, "line": e.line,
            "caller": e.caller.as_deref(), "caller_line": e.caller_line, "args": e.args,
            "value": e.value, "exception": e.exception, "duration_ns": e.duration_ns,
            "count": e.count,
        });
        println!("{line}");
        Ok(())
    }
}

/// Counts events and keeps none.
struct Count(u64);

impl EventSink for Count {
    fn event(&mut self, _: &mut Event) -> Result<(), SinkError> {
        self.0 += 1;
        Ok(())
    }
}

fn stats_json(stats: &ExactStats) -> serde_json::Value {
    json!({
        "events": stats.events,
        "dropped_events": stats.dropped_events,
        "errors": stats.errors,
        "processes": stats.processes.iter().map(|p| json!({
            "pid": p.pid, "python_version": p.python_version,
            "python_executable": p.python_executable, "argv": p.argv,
            "mechanism": p.mechanism, "events": p.events,
            "dropped_events": p.dropped_events, "completed": p.completed,
        })).collect::<Vec<_>>(),
        "limited_functions": stats.limited_functions.iter().map(|l| json!({
            "pid": l.pid, "module": l.module, "function": l.function,
            "calls_not_recorded": l.calls_not_recorded,
        })).collect::<Vec<_>>(),
    })
}

fn main() -> ExitCode {
    let mut options = ExactOptions::default();
    let mut args = std::env::args().skip(1);
    let mut command: Vec<String> = Vec::new();
    let mut count = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--include" => options.include.extend(args.next()),
            "--exclude" => options.exclude.extend(args.next()),
            "--no-args" => options.no_args = true,
            "--subprocesses" => options.subprocesses = true,
            "--python-hook" => options.native = false,
            "--count" => count = true,
            "--max-calls" => options.max_calls = args.next().and_then(|n| n.parse().ok()),
            "--" => {
                command.extend(args.by_ref());
            }
            _ => command.push(arg),
        }
    }
    let Some((program, rest)) = command.split_first() else {
        eprintln!("usage: exact_events [OPTIONS] -- CMD [ARGS...]");
        return ExitCode::from(2);
    };
    let session = match ExactSession::new(options) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let child = Command::new(program)
        .args(rest)
        .envs(session.child_env())
        .stdout(Stdio::from(std::io::stderr()))
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot run {program}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = AtomicBool::new(false);
    let (status, stats) = std::thread::scope(|scope| {
        let receiver = scope.spawn(|| {
            if count {
                session.run(&mut Count(0), &stop)
            } else {
                session.run(&mut JsonLines, &stop)
            }
        });
        let status = child.wait();
        stop.store(true, Ordering::SeqCst);
        session.wake();
        (status, receiver.join())
    });
    match stats {
        Ok(Ok(stats)) => eprintln!("{}", stats_json(&stats)),
        Ok(Err(e)) => eprintln!("error: {e}"),
        Err(_) => eprintln!("error: the receiver panicked"),
    }
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}
