//! Exact mode against real interpreters: every test runs on the whole matrix
//! (pyenv 3.8–3.13 and Debian's python3.11), launching small programs from
//! `tests/scripts/exact_*.py` with the hook and checking the rows against what the
//! programs print about themselves, against cProfile, and against runs without the
//! hook.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attach::event::SinkError;
use attach::exact::{ExactOptions, ExactSession, ExactStats};
use attach::{Event, EventKind, EventSink};
use e2e::Interpreter;
use serde_json::Value;

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts")
}

fn script(name: &str) -> String {
    scripts().join(name).display().to_string()
}

/// A traced run: its rows, the session's statistics and the program's output.
struct Run {
    events: Vec<Event>,
    stats: ExactStats,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: ExitStatus,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn of(&self, kind: EventKind) -> Vec<&Event> {
        self.events.iter().filter(|e| e.kind == kind).collect()
    }

    fn calls_of(&self, function: &str) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| e.kind == EventKind::Call && &*e.function == function)
            .collect()
    }

    fn by_call_id(&self) -> HashMap<u64, &Event> {
        self.events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Call | EventKind::Resume))
            .map(|e| (e.call_id, e))
            .collect()
    }

    /// The rows of `function` but its gaps, in order.
    fn rows_of(&self, function: &str) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| e.kind != EventKind::Gap && &*e.function == function)
            .collect()
    }

    /// That `function` was called `calls` times, each call ended by a return.
    fn assert_returned(&self, function: &str, calls: usize, label: &str) {
        let made = self.calls_of(function);
        assert_eq!(
            made.len(),
            calls,
            "{label}: calls of {function}: {:?}",
            self.stats.processes
        );
        for call in made {
            let end = self.end_of(call.call_id).map(|e| e.kind);
            assert_eq!(end, Some(EventKind::Return), "{label}: {call:?}");
        }
    }

    /// The row that ends the call `call_id`.
    fn end_of(&self, call_id: u64) -> Option<&Event> {
        self.events.iter().find(|e| {
            e.call_id == call_id
                && matches!(
                    e.kind,
                    EventKind::Return
                        | EventKind::Yield
                        | EventKind::Exception
                        | EventKind::Unfinished
                )
        })
    }
}

/// Every interpreter of the matrix with the hook as it runs by default (the native
/// accelerator on 3.12+), and 3.12+ once more with the pure-Python callbacks forced
/// (`ExactOptions::native` false), so that both stay tested.
fn hooks() -> Vec<(Interpreter, bool)> {
    let mut out = Vec::new();
    for python in e2e::matrix() {
        if python.minor >= 12 {
            let mut pure = python.clone();
            pure.label.push_str(" (python hook)");
            out.push((pure, false));
        }
        out.push((python, true));
    }
    out
}

/// The default options, with the native accelerator on or forced off.
fn options(native: bool) -> ExactOptions {
    ExactOptions {
        native,
        ..ExactOptions::default()
    }
}

/// The mechanism a process reports: the native callbacks on 3.12+ unless forced off.
fn assert_mechanism(python: &Interpreter, native: bool, stats: &ExactStats) {
    for process in &stats.processes {
        let mechanism = &process.mechanism;
        if python.minor < 12 {
            assert_eq!(mechanism, "sys.settrace", "{}", python.label);
        } else if native {
            assert!(
                mechanism.starts_with("sys.monitoring tool ") && mechanism.ends_with(" (native)"),
                "{}: {mechanism}",
                python.label
            );
        } else {
            assert!(
                mechanism.starts_with("sys.monitoring tool ")
                    && mechanism.ends_with(" (python; native off)"),
                "{}: {mechanism}",
                python.label
            );
        }
    }
}

/// Runs `python args...` in the scripts folder with the hook, until it exits.
fn run_exact(
    python: &Interpreter,
    args: &[&str],
    options: ExactOptions,
    pythonpath: Option<&Path>,
) -> Run {
    let session = ExactSession::new(options).expect("exact session");
    let env = session.child_env_with(pythonpath.map(Path::as_os_str));
    let child = Command::new(&python.path)
        .args(args)
        .current_dir(scripts())
        .env_remove("PYTHONPATH")
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: cannot start: {e}", python.label));
    let stop = AtomicBool::new(false);
    let mut events: Vec<Event> = Vec::new();
    let (output, stats) = std::thread::scope(|scope| {
        let receiver = scope.spawn(|| session.run(&mut events, &stop));
        let output = child.wait_with_output();
        stop.store(true, Ordering::SeqCst);
        session.wake();
        (output, receiver.join())
    });
    let output = output.unwrap_or_else(|e| panic!("{}: {e}", python.label));
    let stats = stats
        .expect("receiver thread")
        .unwrap_or_else(|e| panic!("{}: session failed: {e}", python.label));
    Run {
        events,
        stats,
        stdout: output.stdout,
        stderr: output.stderr,
        status: output.status,
    }
}

/// The same program without the hook.
fn run_plain(
    python: &Interpreter,
    args: &[&str],
    pythonpath: Option<&Path>,
) -> std::process::Output {
    let mut command = Command::new(&python.path);
    command
        .args(args)
        .current_dir(scripts())
        .env_remove("PYTHONPATH");
    if let Some(path) = pythonpath {
        command.env("PYTHONPATH", path);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("{}: cannot start: {e}", python.label))
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// Each note with its function and how many notes of that function came before it
/// (the index of the call it is about among the function's call rows).
fn numbered(notes: &[Value]) -> Vec<(String, usize, &Value)> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    notes
        .iter()
        .map(|note| {
            let function = note["function"].as_str().unwrap_or_default().to_string();
            let index = seen.entry(function.clone()).or_insert(0);
            *index += 1;
            (function, *index - 1, note)
        })
        .collect()
}

fn args_of(event: &Event) -> serde_json::Map<String, Value> {
    let text = event
        .args
        .as_deref()
        .unwrap_or_else(|| panic!("no args: {event:?}"));
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        other => panic!("args are not a JSON object: {text}: {other:?}"),
    }
}

/// A private scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exact-mode-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// Call counts per function of `program` as cProfile counts them, keyed by the
/// code's first line and name (a comprehension and a generator expression can share
/// a line).
fn cprofile_counts(python: &Interpreter, dir: &Path, program: &str) -> HashMap<(i64, String), u64> {
    let profile = dir.join(format!("{program}-{}.prof", python.label));
    let out = run_plain(
        python,
        &[
            "-m",
            "cProfile",
            "-o",
            &profile.display().to_string(),
            &script(program),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}: cProfile run failed",
        python.label
    );
    let reader = "import json, pstats, sys\n\
                  s = pstats.Stats(sys.argv[1])\n\
                  print(json.dumps([[f, l, n, v[1]] for (f, l, n), v in s.stats.items()]))";
    let out = run_plain(
        python,
        &["-c", reader, &profile.display().to_string()],
        None,
    );
    let rows: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{}: pstats output: {e}", python.label));
    rows.as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r[0].as_str()
                .is_some_and(|f| f.ends_with(&format!("/{program}")))
        })
        .map(|r| {
            let line = r[1].as_i64().unwrap_or(-1);
            let name = r[2].as_str().unwrap_or("").to_string();
            ((line, name), r[3].as_u64().unwrap_or(0))
        })
        .collect()
}

#[test]
fn calls_per_function_equal_cprofile_counts() {
    let dir = scratch("cprofile");
    // The workload of the other tests, and a program of many shapes of Python code
    // (classes, generators driven by send/throw/close, exceptions, asyncio).
    for (python, native, program) in hooks().into_iter().flat_map(|(python, native)| {
        ["exact_workload.py", "exact_shapes.py"].map(|p| (python.clone(), native, p))
    }) {
        let expected = cprofile_counts(&python, &dir, program);
        assert!(
            expected.len() >= 15,
            "{}: cProfile saw {expected:?}",
            python.label
        );
        let run = run_exact(&python, &[&script(program)], options(native), None);
        assert!(
            run.status.success(),
            "{}: {}",
            python.label,
            String::from_utf8_lossy(&run.stderr)
        );
        // cProfile counts a generator's every resume as a call; exact mode writes a
        // `call` row for its first start (its line: the code's first line) and a
        // `resume` row for each resume (the line it resumed at). A resume counts for
        // the code of its name that starts last at or before that line (several
        // `<genexpr>` share a name).
        let mut first_lines: HashMap<(&str, &str), Vec<i32>> = HashMap::new();
        for e in run.of(EventKind::Call) {
            first_lines
                .entry((&*e.function, &*e.file))
                .or_default()
                .push(e.line);
        }
        let mut got: HashMap<(i64, String), u64> = HashMap::new();
        for e in run
            .events
            .iter()
            .filter(|e| e.file.ends_with(&format!("/{program}")))
        {
            let line = match e.kind {
                EventKind::Call => e.line,
                EventKind::Resume => {
                    let starts = &first_lines[&(&*e.function, &*e.file)];
                    let before = starts.iter().filter(|&&l| l <= e.line).max();
                    *before.unwrap_or(&starts[0])
                }
                _ => continue,
            };
            // cProfile names the code (`co_name`); the row, its qualified name.
            let name = e
                .function
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_string();
            *got.entry((i64::from(line), name)).or_default() += 1;
        }
        for ((line, name), count) in &expected {
            assert_eq!(
                got.get(&(*line, name.clone())).copied().unwrap_or(0),
                *count,
                "{} {program}: calls of {name} (line {line}): exact mode vs cProfile",
                python.label
            );
        }
        assert_eq!(
            got.len(),
            expected.len(),
            "{} {program}: functions seen by exact mode {got:?}, by cProfile {expected:?}",
            python.label
        );
        assert_eq!(run.stats.dropped_events, 0, "{}", python.label);
        assert_eq!(run.stats.processes.len(), 1, "{}", python.label);
        assert!(run.stats.processes[0].completed, "{}", python.label);
        assert_mechanism(&python, native, &run.stats);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn args_returns_and_exceptions_equal_what_the_workload_prints() {
    for (python, native) in hooks() {
        let run = run_exact(
            &python,
            &[&script("exact_workload.py")],
            options(native),
            None,
        );
        let notes = json_lines(&run.stdout());
        assert!(notes.len() >= 15, "{}: {}", python.label, run.stdout());
        for (function, index, note) in numbered(&notes) {
            if function == "main" {
                continue;
            }
            let calls = run.calls_of(&function);
            let call = calls
                .get(index)
                .unwrap_or_else(|| panic!("{}: call {index} of {function} missing", python.label));
            if let Some(args) = note["args"].as_object() {
                let got = args_of(call);
                for (name, want) in args {
                    assert_eq!(
                        got.get(name),
                        Some(want),
                        "{}: argument {name} of {function}: rows {got:?}",
                        python.label
                    );
                }
            }
            if let Some(exception) = note["exception"].as_str() {
                let end = run.end_of(call.call_id).expect("end row");
                assert_eq!(
                    end.kind,
                    EventKind::Exception,
                    "{}: {function}",
                    python.label
                );
                assert_eq!(
                    end.exception.as_deref(),
                    Some(exception),
                    "{}",
                    python.label
                );
                assert_eq!(
                    end.value.as_deref(),
                    note["message"].as_str(),
                    "{}",
                    python.label
                );
                assert!(end.duration_ns.is_some_and(|d| d >= 0));
                continue;
            }
            if let Some(yields) = note["yields"].as_array() {
                // A generator: its first start, then a yield per value, each resume
                // a new call, and the final return.
                let rows: Vec<&Event> = run
                    .events
                    .iter()
                    .filter(|e| *e.function == function && e.kind != EventKind::Gap)
                    .collect();
                let kinds: Vec<&str> = rows.iter().map(|e| e.kind.as_str()).collect();
                let mut expect_kinds = vec!["call"];
                for _ in yields {
                    expect_kinds.extend(["yield", "resume"]);
                }
                expect_kinds.push("return");
                assert_eq!(kinds, expect_kinds, "{}: {function}", python.label);
                let yielded: Vec<Option<&str>> = rows
                    .iter()
                    .filter(|e| e.kind == EventKind::Yield)
                    .map(|e| e.value.as_deref())
                    .collect();
                let want: Vec<Option<&str>> = yields.iter().map(Value::as_str).collect();
                assert_eq!(yielded, want, "{}: yields of {function}", python.label);
                for pair in rows.windows(2) {
                    if pair[1].kind != EventKind::Resume {
                        assert_eq!(
                            pair[0].call_id, pair[1].call_id,
                            "{}: a yield or return ends the call before it",
                            python.label
                        );
                    } else {
                        assert_ne!(
                            pair[0].call_id, pair[1].call_id,
                            "{}: a resume opens a new call",
                            python.label
                        );
                    }
                }
            }
            let end = match note["yields"].is_array() {
                true => run
                    .of(EventKind::Return)
                    .into_iter()
                    .find(|e| *e.function == function)
                    .expect("generator returns"),
                false => run.end_of(call.call_id).expect("end row"),
            };
            assert_eq!(end.kind, EventKind::Return, "{}: {function}", python.label);
            assert_eq!(
                end.value.as_deref(),
                note["result"].as_str(),
                "{}: result of {function} #{index}",
                python.label
            );
        }
        // Recursion: 501 nested calls of `recurse`, each the parent of the next.
        let recurse = run.calls_of("recurse");
        assert_eq!(recurse.len(), 501, "{}", python.label);
        for pair in recurse.windows(2) {
            assert_eq!(pair[1].parent_id, Some(pair[0].call_id), "{}", python.label);
            assert_eq!(pair[1].depth, pair[0].depth + 1, "{}", python.label);
            assert_eq!(
                pair[1].caller.as_deref(),
                Some("__main__.recurse"),
                "{}",
                python.label
            );
            assert_eq!(pair[1].caller_line, Some(24), "{}", python.label);
        }
        // The exception raised in level4 ends level4, level3 and level2 and is
        // caught in level1, which returns.
        let level1 = run.calls_of("level1")[0];
        assert_eq!(
            run.end_of(level1.call_id).map(|e| e.kind),
            Some(EventKind::Return)
        );
        let level2 = run.calls_of("level2")[0];
        assert_eq!(level2.parent_id, Some(level1.call_id), "{}", python.label);
        // Durations are exact and nested: a caller lasts at least as long as its
        // callee.
        let fib_root = run.calls_of("fib")[0];
        let fib_end = run.end_of(fib_root.call_id).expect("fib returns");
        let fib_child = run.calls_of("fib")[1];
        let child_end = run.end_of(fib_child.call_id).expect("fib returns");
        assert!(
            fib_end.duration_ns >= child_end.duration_ns,
            "{}",
            python.label
        );
        assert_eq!(
            fib_end.ts_ns - fib_root.ts_ns,
            fib_end.duration_ns.unwrap_or(-1)
        );
        // Rows come in order and every parent is a call that was open.
        let seqs: Vec<u64> = run.events.iter().map(|e| e.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "{}: seq",
            python.label
        );
        let opened = run.by_call_id();
        for e in &run.events {
            if let Some(parent) = e.parent_id {
                assert!(
                    opened.contains_key(&parent),
                    "{}: parent of {e:?}",
                    python.label
                );
            }
            assert_eq!(e.source, attach::Source::Exact);
        }
        // Gaps: calls from traced code into code that is not traced.
        let gaps = run.of(EventKind::Gap);
        assert!(
            gaps.iter().any(|g| &*g.function == "dumps"
                && &*g.module == "json"
                && g.caller.as_deref() == Some("__main__.note")),
            "{}: no gap to json.dumps: {gaps:?}",
            python.label
        );
        // A Python class is Python code of its module (3.12+ sees the class called,
        // 3.8-3.11 its __init__): the gap carries that module's file, so --gaps and
        // the report offer `--include 'json.*'` rather than calling it a C function.
        let decoder = gaps
            .iter()
            .find(|g| g.function.starts_with("JSONDecoder") && &*g.module == "json.decoder")
            .unwrap_or_else(|| panic!("{}: no gap to json.JSONDecoder: {gaps:?}", python.label));
        assert!(
            decoder.file.ends_with("decoder.py"),
            "{}: {decoder:?}",
            python.label
        );
    }
}

/// Every way of binding arguments gives the call row the arguments the function
/// received: the native hook takes a one-argument function's value from the CALL
/// that starts it, and must agree with the frame for every call shape.
#[test]
fn every_call_shape_records_the_arguments_the_function_received() {
    for (python, native) in hooks() {
        let run = run_exact(
            &python,
            &[&script("exact_call_shapes.py")],
            options(native),
            None,
        );
        assert!(run.status.success(), "{}: {}", python.label, run.stdout());
        let notes = json_lines(&run.stdout());
        assert_eq!(notes.len(), 3 * 17, "{}: {}", python.label, run.stdout());
        let mut failures = Vec::new();
        let mut noted: HashMap<String, usize> = HashMap::new();
        for (function, index, note) in numbered(&notes) {
            noted.insert(function.clone(), index + 1);
            let calls = run.calls_of(&function);
            let Some(call) = calls.get(index) else {
                failures.push(format!("call {index} of {function} missing"));
                continue;
            };
            let got = Value::Object(args_of(call));
            if got != note["args"] {
                failures.push(format!(
                    "call {index} of {function}: got {got}, want {}",
                    note["args"]
                ));
            }
        }
        for (function, calls) in &noted {
            let recorded = run.calls_of(function).len();
            if recorded != *calls {
                failures.push(format!("{function}: {recorded} call rows, {calls} calls"));
            }
        }
        assert!(
            failures.is_empty(),
            "{}:\n{}",
            python.label,
            failures.join("\n")
        );
    }
}

#[test]
fn threads_and_asyncio_tasks_have_their_real_callers() {
    for (python, native) in hooks() {
        let run = run_exact(
            &python,
            &[&script("exact_concurrency.py")],
            options(native),
            None,
        );
        assert_eq!(run.stdout(), "[0, 1, 2]\n", "{}", python.label);
        let opened = run.by_call_id();
        let main_tid = run.calls_of("main")[0].tid;
        // Each worker thread: in_thread at depth 0 with no parent, its three leaves
        // under it, on its own OS thread, with the thread's name.
        let roots = run.calls_of("in_thread");
        assert_eq!(roots.len(), 3, "{}", python.label);
        for root in &roots {
            assert_eq!((root.parent_id, root.depth), (None, 0), "{}", python.label);
            assert_ne!(root.tid, main_tid, "{}", python.label);
            let n = args_of(root)["n"].as_str().unwrap_or_default().to_string();
            assert_eq!(root.thread_name.as_deref(), Some(format!("w{n}").as_str()));
            let leaves: Vec<&Event> = run
                .calls_of("leaf")
                .into_iter()
                .filter(|l| l.parent_id == Some(root.call_id))
                .collect();
            assert_eq!(leaves.len(), 3, "{}", python.label);
            for leaf in leaves {
                assert_eq!(leaf.tid, root.tid);
                assert!(args_of(leaf)["tag"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with(&format!("'t{n}-")));
            }
        }
        // asyncio: tasks interleave on the main thread; every leaf's parent is the
        // task (call or resume) that ran it, with the same task number.
        let tasks = run.calls_of("task");
        assert_eq!(tasks.len(), 3, "{}", python.label);
        for leaf in run.calls_of("leaf").iter().filter(|l| l.tid == main_tid) {
            let tag = args_of(leaf)["tag"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let parent = opened[&leaf.parent_id.expect("parent")];
            if tag.starts_with("'s") {
                assert_eq!(&*parent.function, "step", "{}: {tag}", python.label);
                let task = opened[&parent.parent_id.expect("step's parent")];
                assert_eq!(&*task.function, "task", "{}", python.label);
                assert_eq!(task.kind, EventKind::Resume, "{}", python.label);
                continue;
            }
            assert_eq!(&*parent.function, "task", "{}: {tag}", python.label);
            if tag.starts_with("'before") {
                assert_eq!(parent.kind, EventKind::Call);
                let i = args_of(parent)["i"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                assert_eq!(tag, format!("'before{i}'"), "{}", python.label);
            } else {
                assert_eq!(parent.kind, EventKind::Resume);
            }
            assert_eq!(leaf.depth, parent.depth + 1);
        }
        // Each task: call, then yields and resumes, then a return of its number.
        let task_returns: Vec<Option<&str>> = run
            .of(EventKind::Return)
            .iter()
            .filter(|e| &*e.function == "task")
            .map(|e| e.value.as_deref())
            .collect();
        assert_eq!(
            task_returns,
            vec![Some("0"), Some("1"), Some("2")],
            "{}",
            python.label
        );
        assert!(run.of(EventKind::Unfinished).is_empty(), "{}", python.label);
    }
}

#[test]
fn methods_are_named_by_their_class_and_threads_by_their_name() {
    for (python, native) in hooks() {
        // `--include '*'`: the thread's first events are those of threading's own
        // bootstrap, before `threading._active` knows the thread.
        let everything = ExactOptions {
            include: vec!["*".into()],
            ..options(native)
        };
        let run = run_exact(&python, &[&script("exact_names.py")], everything, None);
        assert_eq!(
            run.stdout(),
            "12 3 2\n[1, 2]\nVec Square 5\n[8]\n",
            "{}",
            python.label
        );
        let named = |function: &str| -> Vec<&Event> {
            run.events
                .iter()
                .filter(|e| &*e.module == "__main__" && &*e.function == function)
                .collect()
        };
        let count = |function: &str, kind: EventKind| {
            named(function).iter().filter(|e| e.kind == kind).count()
        };
        // Shape.scaled runs for two Squares and a Shape, under one name; size by the
        // class that defines the one that ran; a generator method's call, resumes
        // and ends all carry the class.
        let expected = [
            ("Shape.scaled", EventKind::Call, 3),
            ("Shape.scaled", EventKind::Return, 3),
            ("Square.size", EventKind::Call, 2),
            ("Shape.size", EventKind::Call, 1),
            ("Shape.make", EventKind::Call, 1),
            ("Shape.__hidden", EventKind::Call, 1),
            ("Fetcher.fetch", EventKind::Call, 1),
            ("Fetcher.fetch", EventKind::Resume, 2),
            ("Fetcher.fetch", EventKind::Yield, 2),
            ("Fetcher.fetch", EventKind::Return, 1),
            // A metaclass's methods, run with a class as `cls`.
            ("Meta.__call__", EventKind::Call, 1),
            ("Meta.describe", EventKind::Call, 1),
            // Takes `self` but is no method of its class: 3.11 names it bare too.
            ("helper", EventKind::Call, 1),
            // Another class's method run with a Square: 3.8-3.10 cannot tell which
            // class defines it without co_qualname and name it bare, never by the
            // Square it ran with.
            (
                if python.minor >= 11 {
                    "Unrelated.method"
                } else {
                    "method"
                },
                EventKind::Call,
                1,
            ),
        ];
        for (function, kind, n) in expected {
            assert_eq!(
                count(function, kind),
                n,
                "{}: {function} {kind:?}",
                python.label
            );
        }
        assert!(named("fetch").is_empty(), "{}", python.label);
        // Every row of the worker thread, its bootstrap's included, has its name.
        let worker = named("worker");
        assert_eq!(worker.len(), 2, "{}", python.label);
        let worker_tid = worker[0].tid;
        let thread_rows: Vec<&Event> = run.events.iter().filter(|e| e.tid == worker_tid).collect();
        assert!(
            thread_rows.iter().any(|e| &*e.module == "threading"),
            "{}: threading's bootstrap not traced",
            python.label
        );
        for row in thread_rows {
            assert_eq!(
                row.thread_name.as_deref(),
                Some("named-worker"),
                "{}: {row:?}",
                python.label
            );
        }
    }
}

#[test]
fn a_recursion_error_reaches_the_program_as_without_the_hook() {
    for (python, native) in hooks() {
        let args = [script("exact_recursion_limit.py")];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let plain = run_plain(&python, &args, None);
        let run = run_exact(&python, &args, options(native), None);
        assert_eq!(
            plain.stdout, b"recursion error caught\n42\n",
            "{}",
            python.label
        );
        // 3.8 aborted here ("Cannot recover from stack overflow").
        assert_eq!(run.stdout, plain.stdout, "{}", python.label);
        assert_eq!(run.stderr, plain.stderr, "{}", python.label);
        assert_eq!(run.status.code(), Some(0), "{}", python.label);
        assert!(run.calls_of("overflow").len() > 300, "{}", python.label);
        // sys.monitoring goes on after the error; CPython turns a settrace hook off
        // for the thread (README).
        if python.minor >= 12 {
            let after = run.calls_of("after");
            assert_eq!(after.len(), 1, "{}", python.label);
            let end = run.end_of(after[0].call_id).expect("end of after");
            assert_eq!(end.value.as_deref(), Some("42"), "{}", python.label);
            assert!(run.of(EventKind::Unfinished).is_empty(), "{}", python.label);
        }
    }
}

#[test]
fn a_gap_belongs_to_the_call_that_made_it_in_recursion() {
    for (python, native) in hooks() {
        let args = [script("exact_gap_recursion.py")];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = run_exact(&python, &args, options(native), None);
        assert_eq!(run.stdout(), "done\n", "{}", python.label);
        for (function, callee, calls) in [("descend", "join", 4), ("through", "basename", 3)] {
            let made = run.calls_of(function);
            assert_eq!(made.len(), calls, "{}: calls of {function}", python.label);
            for call in made {
                let gaps: Vec<&Event> = run
                    .of(EventKind::Gap)
                    .into_iter()
                    .filter(|g| g.parent_id == Some(call.call_id) && &*g.function == callee)
                    .collect();
                let count: u32 = gaps.iter().map(|g| g.count).sum();
                let expected = if callee == "join" { 2 } else { 1 };
                assert_eq!(
                    count, expected,
                    "{}: {function} call {} made {expected} calls of {callee}: {gaps:?}",
                    python.label, call.call_id
                );
                assert!(
                    gaps.iter().all(|g| g.ts_ns >= call.ts_ns),
                    "{}: a gap of {function} call {} before its start: {gaps:?}",
                    python.label,
                    call.call_id
                );
            }
        }
    }
}

#[test]
fn a_program_that_forks_gets_no_warning_the_hook_would_cause() {
    for (python, native) in hooks() {
        let args = [script("exact_fork.py")];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let plain = run_plain(&python, &args, None);
        let run = run_exact(&python, &args, options(native), None);
        assert_eq!(
            plain.stdout, b"forked 0 0\nforked 1 2\n",
            "{}",
            python.label
        );
        assert_eq!(run.stdout, plain.stdout, "{}", python.label);
        // 3.12+: "This process is multi-threaded, use of fork() may lead to
        // deadlocks" when the hook's sending thread runs across the fork.
        assert_eq!(
            String::from_utf8_lossy(&run.stderr),
            String::from_utf8_lossy(&plain.stderr),
            "{}",
            python.label
        );
        assert_eq!(run.status.code(), Some(0), "{}", python.label);
        for (function, calls) in [("before", 2), ("after", 2)] {
            assert_eq!(
                run.calls_of(function).len(),
                calls,
                "{}: {function}",
                python.label
            );
        }

        // With everything included and the children traced, the hook's own work
        // around a fork and in its os._exit stays out of the trace: the program's
        // module calls its functions only (the hook's at-fork handler called
        // os.path.exists, which showed as a call of the program's), and os._exit,
        // which the hook wraps, is a gap into posix._exit from the module (in each
        // child).
        let everything = ExactOptions {
            include: vec!["*".into()],
            subprocesses: true,
            ..options(native)
        };
        let run = run_exact(&python, &args, everything, None);
        assert_eq!(run.stdout, plain.stdout, "{}", python.label);
        let mut called: Vec<&str> = run
            .of(EventKind::Call)
            .iter()
            .filter(|e| e.caller.as_deref() == Some("__main__.<module>"))
            .map(|e| &*e.function)
            .collect();
        called.sort();
        called.dedup();
        assert_eq!(
            called,
            ["after", "before"],
            "{}: calls made by the program's module",
            python.label
        );
        assert_eq!(run.calls_of("in_child").len(), 2, "{}", python.label);
        let hook_rows: Vec<&Event> = run
            .events
            .iter()
            .filter(|e| e.module.contains("tracer") || e.file.contains("/tracer/exact-"))
            .collect();
        assert!(hook_rows.is_empty(), "{}: {hook_rows:?}", python.label);
        let gaps = run.of(EventKind::Gap);
        assert!(
            gaps.iter().all(|g| !g.module.contains("tracer")),
            "{}: {gaps:?}",
            python.label
        );
        let exits: Vec<&&Event> = gaps.iter().filter(|g| &*g.function == "_exit").collect();
        assert_eq!(exits.len(), 2, "{}: {gaps:?}", python.label);
        for exit in exits {
            assert_eq!(&*exit.module, "posix", "{}", python.label);
            assert_eq!(
                exit.caller.as_deref(),
                Some("__main__.<module>"),
                "{}",
                python.label
            );
        }
    }
}

#[test]
fn program_output_argv_and_exit_status_are_unchanged() {
    let dir = scratch("identity");
    std::fs::write(
        dir.join("sitecustomize.py"),
        "import sys\nMARK = 'user'\nprint('user sitecustomize ran', file=sys.stderr)\n",
    )
    .expect("user sitecustomize");
    for (python, native) in hooks() {
        let args = [
            script("exact_identity.py"),
            "plain arg".into(),
            "ünï cødé".into(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let plain = run_plain(&python, &args, Some(&dir));
        let run = run_exact(&python, &args, options(native), Some(&dir));
        assert_eq!(plain.status.code(), Some(3), "{}", python.label);
        assert_eq!(run.status.code(), Some(3), "{}", python.label);
        assert_eq!(
            run.stdout(),
            String::from_utf8_lossy(&plain.stdout),
            "{}",
            python.label
        );
        assert_eq!(run.stderr, plain.stderr, "{}", python.label);
        let seen = &json_lines(&run.stdout())[0];
        assert_eq!(seen["sitecustomize_mark"], "user", "{}", python.label);
        assert_eq!(seen["argv"][1], "plain arg");
        assert_eq!(seen["name"], "__main__");
        assert_eq!(seen["bootstrap_on_path"], false);
        assert_eq!(seen["config_in_environ"], false);
        assert_eq!(seen["pythonpath"], dir.display().to_string().as_str());
        assert!(
            String::from_utf8_lossy(&run.stderr).contains("user sitecustomize ran"),
            "{}",
            python.label
        );
        assert_eq!(
            run.calls_of("describe").len(),
            1,
            "{}: traced",
            python.label
        );
    }
    // Without a user sitecustomize, and without PYTHONPATH at all.
    for (python, native) in hooks() {
        let args = [script("exact_identity.py")];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let plain = run_plain(&python, &args, None);
        let run = run_exact(&python, &args, options(native), None);
        assert_eq!(run.stdout, plain.stdout, "{}", python.label);
        assert_eq!(run.stderr, plain.stderr, "{}", python.label);
        assert_eq!(run.status.code(), plain.status.code(), "{}", python.label);
        let seen = &json_lines(&run.stdout())[0];
        assert_eq!(seen["pythonpath"], Value::Null, "{}", python.label);
        assert_eq!(seen["sitecustomize_mark"], Value::Null, "{}", python.label);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_program_using_cprofile_still_works_and_is_traced() {
    for (python, native) in hooks() {
        let run = run_exact(
            &python,
            &[&script("exact_cprofile.py")],
            options(native),
            None,
        );
        assert!(
            run.status.success(),
            "{}: {}",
            python.label,
            String::from_utf8_lossy(&run.stderr)
        );
        assert_eq!(run.stdout(), "4950 True\n", "{}", python.label);
        let work = run.calls_of("work");
        assert_eq!(work.len(), 1, "{}", python.label);
        assert_eq!(args_of(work[0])["n"], "100");
        let end = run.end_of(work[0].call_id).expect("work returns");
        assert_eq!(end.value.as_deref(), Some("4950"));
        // cProfile holds tool id 2; the hook takes another.
        let mechanism = &run.stats.processes[0].mechanism;
        assert!(
            !mechanism.starts_with("sys.monitoring tool 2 "),
            "{}: {mechanism}",
            python.label
        );
        assert_mechanism(&python, native, &run.stats);
    }
}

/// A sink that counts what it receives, for a test thread to watch, and can hold
/// its first event until a gate opens (a tracer that does not keep up).
struct Counting {
    seen: Arc<AtomicU64>,
    events: Vec<Event>,
    gate: Arc<AtomicBool>,
}

impl Counting {
    /// A sink that holds the receiver on its first event until `gate` opens.
    fn held_by(gate: &Arc<AtomicBool>) -> Counting {
        Counting {
            seen: Arc::new(AtomicU64::new(0)),
            events: Vec::new(),
            gate: gate.clone(),
        }
    }
}

/// `exact_hot.py CALLS` started under `session`'s hook.
fn start_hot(
    python: &Interpreter,
    session: &ExactSession,
    calls: &str,
    stdout: Stdio,
) -> std::process::Child {
    Command::new(&python.path)
        .args([&script("exact_hot.py"), calls])
        .current_dir(scripts())
        .env_remove("PYTHONPATH")
        .envs(session.child_env_with(None))
        .stdout(stdout)
        .spawn()
        .expect("start")
}

impl EventSink for Counting {
    fn event(&mut self, event: &mut Event) -> Result<(), SinkError> {
        if self.seen.fetch_add(1, Ordering::SeqCst) == 0 {
            let held = Instant::now();
            while !self.gate.load(Ordering::SeqCst) && held.elapsed() < Duration::from_secs(120) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.events.push(event.clone());
        Ok(())
    }
}

#[test]
fn the_hook_removes_itself_when_the_tracer_goes_away() {
    for (python, native) in hooks() {
        let session = ExactSession::new(ExactOptions {
            grace: Duration::ZERO,
            ..options(native)
        })
        .expect("session");
        let mut child = Command::new(&python.path)
            .arg(script("exact_detach.py"))
            .current_dir(scripts())
            .env_remove("PYTHONPATH")
            .envs(session.child_env_with(None))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start");
        let seen = Arc::new(AtomicU64::new(0));
        let stop = AtomicBool::new(false);
        let mut sink = Counting {
            seen: seen.clone(),
            events: Vec::new(),
            gate: Arc::new(AtomicBool::new(true)),
        };
        let stats = std::thread::scope(|scope| {
            let receiver = scope.spawn(|| session.run(&mut sink, &stop));
            let started = Instant::now();
            while seen.load(Ordering::SeqCst) < 50 && started.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(5));
            }
            stop.store(true, Ordering::SeqCst);
            session.wake();
            receiver.join()
        });
        let stats = stats.expect("receiver").expect("session");
        drop(session);
        let stopped = Instant::now();
        let stdout = child.stdout.take().expect("stdout");
        let lines: Vec<String> = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect();
        let status = child.wait().expect("wait");
        assert_eq!(
            lines,
            vec!["READY True".to_string(), "gone".to_string()],
            "{}",
            python.label
        );
        assert!(status.success(), "{}", python.label);
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "{}: the program ran on for {:?} after the tracer went away",
            python.label,
            stopped.elapsed()
        );
        assert!(
            sink.events.iter().any(|e| &*e.function == "work"),
            "{}",
            python.label
        );
        assert!(!stats.processes[0].completed, "{}", python.label);
        // The calls open when the tracer stopped end as unfinished.
        assert!(
            sink.events
                .iter()
                .any(|e| e.kind == EventKind::Unfinished && &*e.function == "<module>"),
            "{}",
            python.label
        );
    }
}

#[test]
fn a_slow_tracer_makes_the_hook_drop_and_count_events_not_block() {
    for (python, native) in hooks() {
        // A small backlog, so that the hook has to drop whatever the machine's speed.
        let session = ExactSession::new(ExactOptions {
            backlog_bytes: 64 << 10,
            ..options(native)
        })
        .expect("session");
        let mut child = start_hot(&python, &session, "400000", Stdio::piped());
        let stop = AtomicBool::new(false);
        let gate = Arc::new(AtomicBool::new(false));
        let mut sink = Counting::held_by(&gate);
        // The tracer reads nothing until the program has done all its work (it is
        // then sending what it kept, at exit), so the hook must drop.
        let (output, stats) = std::thread::scope(|scope| {
            let receiver = scope.spawn(|| session.run(&mut sink, &stop));
            let stdout = child.stdout.take().expect("stdout");
            let lines: Vec<String> = BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .inspect(|_| gate.store(true, Ordering::SeqCst))
                .collect();
            gate.store(true, Ordering::SeqCst);
            let status = child.wait();
            stop.store(true, Ordering::SeqCst);
            session.wake();
            (status.map(|s| (s, lines)), receiver.join())
        });
        let (status, lines) = output.expect("wait");
        let stats = stats.expect("receiver").expect("session");
        assert!(status.success(), "{}", python.label);
        assert_eq!(lines, ["cold done"], "{}", python.label);
        assert!(
            stats.dropped_events > 0,
            "{}: nothing dropped: {stats:?}",
            python.label
        );
        assert_eq!(stats.dropped_events, stats.processes[0].dropped_events);
        assert!(stats.processes[0].completed, "{}", python.label);
        let hot_rows = sink
            .events
            .iter()
            .filter(|e| {
                &*e.function == "hot"
                    && matches!(
                        e.kind,
                        EventKind::Call | EventKind::Return | EventKind::Unfinished
                    )
            })
            .count() as u64;
        assert!(hot_rows < 800_000, "{}", python.label);
        // What was kept and what was dropped add up to every event of `hot`, give
        // or take the unfinished rows that stand for lost returns.
        assert!(
            hot_rows + stats.dropped_events >= 800_000,
            "{}: {hot_rows} rows + {} dropped",
            python.label,
            stats.dropped_events
        );
    }
}

#[test]
fn what_an_exited_program_sent_is_read_to_the_end_however_late_the_tracer_is() {
    // The program's stream must fit in its socket, so that it exits with all of it
    // sent while the tracer reads nothing, and be larger than the receiver reads at
    // once, so that one last read after the stop would not get it all. About 45 bytes
    // a call without values: 60,000 calls are 2.7 MB, in a socket of up to twice
    // `wmem_max` (4 MiB on the project's machines).
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/wmem_max")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(212_992);
    let calls = (wmem_max * 3 / 2 / 45).min(60_000);
    for (python, native) in hooks() {
        let session = ExactSession::new(ExactOptions {
            grace: Duration::ZERO,
            no_args: true,
            ..options(native)
        })
        .expect("session");
        let mut child = start_hot(&python, &session, &calls.to_string(), Stdio::null());
        let stop = AtomicBool::new(false);
        let gate = Arc::new(AtomicBool::new(false));
        let mut sink = Counting::held_by(&gate);
        // The tracer is held on its first event until the program has exited and the
        // recording was told to stop, with no grace at all.
        let (status, stats) = std::thread::scope(|scope| {
            let receiver = scope.spawn(|| session.run(&mut sink, &stop));
            let status = child.wait();
            stop.store(true, Ordering::SeqCst);
            session.wake();
            gate.store(true, Ordering::SeqCst);
            (status, receiver.join())
        });
        let stats = stats.expect("receiver").expect("session");
        assert!(status.expect("wait").success(), "{}", python.label);
        let hot = |kind: EventKind| {
            sink.events
                .iter()
                .filter(|e| &*e.function == "hot" && e.kind == kind)
                .count()
        };
        assert_eq!(
            (hot(EventKind::Call), hot(EventKind::Return)),
            (calls, calls),
            "{}: {stats:?}",
            python.label
        );
        assert_eq!(stats.dropped_events, 0, "{}", python.label);
        assert!(stats.processes[0].completed, "{}", python.label);
    }
}

#[test]
fn no_args_max_calls_include_and_exclude() {
    for (python, native) in hooks() {
        let run = run_exact(
            &python,
            &[&script("exact_hot.py"), "2000"],
            ExactOptions {
                max_calls: Some(10),
                ..options(native)
            },
            None,
        );
        let hot = run.calls_of("hot");
        assert!(
            (10..=30).contains(&hot.len()),
            "{}: {} hot calls kept",
            python.label,
            hot.len()
        );
        let limited: Vec<_> = run
            .stats
            .limited_functions
            .iter()
            .filter(|l| l.function == "hot")
            .collect();
        assert_eq!(
            limited.len(),
            1,
            "{}: {:?}",
            python.label,
            run.stats.limited_functions
        );
        assert_eq!(limited[0].module, "__main__");
        assert_eq!(
            limited[0].calls_not_recorded + hot.len() as u64,
            2000,
            "{}",
            python.label
        );
        for call in &hot {
            assert!(run
                .end_of(call.call_id)
                .is_some_and(|e| e.kind == EventKind::Return));
        }
        assert_eq!(run.calls_of("cold").len(), 1);

        let run = run_exact(
            &python,
            &[&script("exact_workload.py")],
            ExactOptions {
                no_args: true,
                ..options(native)
            },
            None,
        );
        assert_eq!(run.calls_of("fib").len(), 1973, "{}", python.label);
        assert!(
            run.events.iter().all(|e| e.args.is_none()),
            "{}",
            python.label
        );
        assert!(run.of(EventKind::Return).iter().all(|e| e.value.is_none()));
        assert!(run
            .of(EventKind::Exception)
            .iter()
            .all(|e| e.exception.is_some()));

        let run = run_exact(
            &python,
            &[&script("exact_workload.py")],
            ExactOptions {
                include: vec!["json.*".into()],
                exclude: vec!["json.decoder".into()],
                ..options(native)
            },
            None,
        );
        let dumps = run
            .calls_of("dumps")
            .into_iter()
            .filter(|e| &*e.module == "json")
            .count();
        assert_eq!(
            dumps, 22,
            "{}: json.dumps traced once per note",
            python.label
        );
        // Calls into json.decoder are gaps, never traced calls.
        assert!(run
            .events
            .iter()
            .all(|e| &*e.module != "json.decoder" || e.kind == EventKind::Gap));
        assert!(run
            .events
            .iter()
            .all(|e| !e.file.contains("_tracer_exact_hook")));
    }
}

#[test]
fn subprocesses_are_traced_only_when_asked() {
    for (python, native) in hooks() {
        let run = run_exact(
            &python,
            &[&script("exact_children.py")],
            options(native),
            None,
        );
        let stdout = run.stdout();
        assert!(
            run.status.success(),
            "{}: {}",
            python.label,
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            stdout.contains("fork [0, 1, 4, 9, 16, 25]"),
            "{}: {stdout}",
            python.label
        );
        assert!(
            stdout.contains("configuration: False"),
            "{}: {stdout}",
            python.label
        );
        assert_eq!(
            run.stats.processes.len(),
            1,
            "{}: {:?}",
            python.label,
            run.stats.processes
        );
        assert!(run.calls_of("square").is_empty(), "{}", python.label);

        let run = run_exact(
            &python,
            &[&script("exact_children.py")],
            ExactOptions {
                subprocesses: true,
                ..options(native)
            },
            None,
        );
        let stdout = run.stdout();
        assert!(run.status.success(), "{}", python.label);
        assert!(
            stdout.contains("spawn [0, 1, 4, 9, 16, 25]"),
            "{}: {stdout}",
            python.label
        );
        assert!(
            stdout.contains("configuration: True"),
            "{}: {stdout}",
            python.label
        );
        let parent = run.stats.processes[0].pid;
        let squares = run.calls_of("square");
        assert_eq!(
            squares.len(),
            12,
            "{}: {:?}",
            python.label,
            run.stats.processes
        );
        assert!(squares.iter().all(|e| e.pid as u32 != parent));
        let worker_pids: std::collections::HashSet<i32> = squares.iter().map(|e| e.pid).collect();
        assert!(worker_pids.len() >= 2, "{}", python.label);
        for pid in worker_pids {
            let stats = run.stats.processes.iter().find(|p| p.pid as i32 == pid);
            assert!(
                stats.is_some_and(|p| p.ppid == parent),
                "{}: worker {pid}",
                python.label
            );
        }
        let mut values: Vec<String> = squares
            .iter()
            .filter_map(|c| run.end_of(c.call_id).and_then(|e| e.value.clone()))
            .collect();
        values.sort();
        values.dedup();
        assert_eq!(values, ["0", "1", "16", "25", "4", "9"], "{}", python.label);
        // Workers terminated by `with Pool` (SIGTERM) had sent each task's calls
        // before reporting its result.
        assert!(
            stdout.contains("with spawn [0, 1, 8, 27, 64, 125]"),
            "{}: {stdout}",
            python.label
        );
        run.assert_returned("cube", 12, &python.label);
        assert!(run.stats.processes.len() >= 6, "{}", python.label);

        // With everything traced, the pools' own task loops are traced too: the
        // tasks' calls go out when they return to the loop, before their results.
        let run = run_exact(
            &python,
            &[&script("exact_children.py")],
            ExactOptions {
                subprocesses: true,
                include: vec!["*".into()],
                ..options(native)
            },
            None,
        );
        assert!(run.status.success(), "{}", python.label);
        for function in ["square", "cube"] {
            run.assert_returned(function, 12, &format!("{} --include '*'", python.label));
        }
    }
}

#[test]
fn argument_reprs_match_sampled_modes_expectations() {
    for (python, native) in hooks() {
        let session = ExactSession::new(options(native)).expect("session");
        let mut child = Command::new(&python.path)
            .arg(script("repr_values.py"))
            .current_dir(scripts())
            .env_remove("PYTHONPATH")
            .envs(session.child_env_with(None))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start");
        let stop = AtomicBool::new(false);
        let mut events: Vec<Event> = Vec::new();
        let records = std::thread::scope(|scope| {
            let receiver = scope.spawn(|| session.run(&mut events, &stop));
            let stdout = child.stdout.take().expect("stdout");
            let mut records = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == "READY" {
                    break;
                }
                records.push(line);
            }
            std::thread::sleep(Duration::from_millis(500));
            let _ = child.kill();
            let _ = child.wait();
            stop.store(true, Ordering::SeqCst);
            session.wake();
            let _ = receiver.join();
            records
        });
        let expectations: Vec<Value> = records
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["kind"] == "value")
            .collect();
        let calls = events
            .iter()
            .filter(|e| e.kind == EventKind::Call && &*e.function == "value")
            .collect::<Vec<_>>();
        assert_eq!(calls.len(), expectations.len(), "{}", python.label);
        let mut failures = Vec::new();
        for (record, call) in expectations.iter().zip(&calls) {
            let expect = record["expect"].as_str().unwrap_or_default();
            let bounded = record["default"].as_str().unwrap_or(expect);
            let want = if bounded.chars().count() <= 200 {
                bounded.to_string()
            } else {
                format!("{}...", bounded.chars().take(197).collect::<String>())
            };
            let args = args_of(call);
            let got = args.get("v").and_then(Value::as_str).unwrap_or("<missing>");
            if got != want {
                failures.push(format!(
                    "{}:\n  got    {got}\n  expect {want}",
                    record["name"]
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{}: {} of {} reprs differ:\n{}",
            python.label,
            failures.len(),
            calls.len(),
            failures.join("\n")
        );
    }
}

#[test]
fn a_hook_loaded_by_hand_connects_and_says_when_no_tool_id_is_free() {
    for (python, native) in hooks() {
        for occupy in [false, true] {
            let session = ExactSession::new(options(native)).expect("session");
            let config: Vec<(OsString, OsString)> = session
                .child_env_with(None)
                .into_iter()
                .filter(|(k, _)| k != "PYTHONPATH")
                .collect();
            let mut args = vec![
                script("exact_manual_load.py"),
                session.bootstrap_dir().display().to_string(),
            ];
            if occupy {
                args.push("occupy".into());
            }
            let child = Command::new(&python.path)
                .args(&args)
                .current_dir(scripts())
                .env_remove("PYTHONPATH")
                .envs(config)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start");
            let stop = AtomicBool::new(false);
            let mut events: Vec<Event> = Vec::new();
            let (output, stats) = std::thread::scope(|scope| {
                let receiver = scope.spawn(|| session.run(&mut events, &stop));
                let output = child.wait_with_output();
                stop.store(true, Ordering::SeqCst);
                session.wake();
                (output, receiver.join())
            });
            let output = output.expect("wait");
            let stats = stats.expect("receiver").expect("session");
            assert!(
                output.status.success(),
                "{}: {:?}, stderr: {}",
                python.label,
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            assert_eq!(
                String::from_utf8_lossy(&output.stdout),
                "2\n",
                "{}",
                python.label
            );
            assert_eq!(stats.processes.len(), 1, "{}", python.label);
            let traced = events.iter().filter(|e| &*e.function == "traced").count();
            if occupy && python.minor >= 12 {
                assert_eq!(traced, 0, "{}", python.label);
                assert_eq!(stats.processes[0].mechanism, "none");
                assert!(
                    stats
                        .errors
                        .iter()
                        .any(|e| e.contains("no free sys.monitoring tool id")),
                    "{}: {:?}",
                    python.label,
                    stats.errors
                );
            } else {
                assert_eq!(traced, 2, "{}: call and return", python.label);
                assert!(
                    stats.errors.is_empty(),
                    "{}: {:?}",
                    python.label,
                    stats.errors
                );
            }
        }
    }
}

#[test]
fn a_connection_with_a_wrong_token_is_refused() {
    let session = ExactSession::new(ExactOptions::default()).expect("session");
    let python = e2e::pyenv_interpreter(12).expect("pyenv 3.12");
    let env: Vec<(OsString, OsString)> = session
        .child_env_with(None)
        .into_iter()
        .map(|(k, v)| {
            if k == "TRACER_EXACT" {
                let text = v.to_string_lossy().replace(session.token(), "0badc0de");
                (k, OsString::from(text))
            } else {
                (k, v)
            }
        })
        .collect();
    let child = Command::new(&python.path)
        .args(["-c", "def f(): return 1\nprint(f())"])
        .env_remove("PYTHONPATH")
        .envs(env)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start");
    let stop = AtomicBool::new(false);
    let mut events: Vec<Event> = Vec::new();
    let (output, stats) = std::thread::scope(|scope| {
        let receiver = scope.spawn(|| session.run(&mut events, &stop));
        let output = child.wait_with_output();
        stop.store(true, Ordering::SeqCst);
        session.wake();
        (output, receiver.join())
    });
    let output = output.expect("wait");
    let stats = stats.expect("receiver").expect("session");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "1\n");
    assert!(events.is_empty());
    assert!(stats.processes.is_empty());
    assert!(
        stats.errors.iter().any(|e| e.contains("wrong token")),
        "{:?}",
        stats.errors
    );
}

/// `exact_throw.py` traced, and the lines of its marked statements.
fn run_throw(python: &Interpreter, native: bool) -> (Run, HashMap<String, i32>) {
    let run = run_exact(python, &[&script("exact_throw.py")], options(native), None);
    assert!(
        run.status.success(),
        "{}: {}",
        python.label,
        String::from_utf8_lossy(&run.stderr)
    );
    let notes = json_lines(&run.stdout());
    let lines = notes
        .iter()
        .find(|n| n["case"] == "lines")
        .and_then(|n| n["lines"].as_object())
        .unwrap_or_else(|| panic!("{}: no lines: {}", python.label, run.stdout()))
        .iter()
        .map(|(name, line)| (name.clone(), line.as_i64().unwrap_or(-1) as i32))
        .collect();
    (run, lines)
}

fn kinds<'a>(rows: &[&'a Event]) -> Vec<&'a str> {
    rows.iter().map(|e| e.kind.as_str()).collect()
}

fn yielded<'a>(rows: &[&'a Event]) -> Vec<Option<&'a str>> {
    rows.iter()
        .filter(|e| e.kind == EventKind::Yield)
        .map(|e| e.value.as_deref())
        .collect()
}

/// The rows of one generator or coroutine: each start or resume is a call of
/// `parent` (when given), and the row after it ends that call.
fn assert_stretches(rows: &[&Event], parent: Option<u64>, label: &str) {
    for pair in rows.windows(2) {
        if matches!(pair[0].kind, EventKind::Call | EventKind::Resume) {
            if parent.is_some() {
                assert_eq!(pair[0].parent_id, parent, "{label}: {:?}", pair[0]);
            }
            assert_eq!(pair[1].call_id, pair[0].call_id, "{label}: {:?}", pair[1]);
            assert!(
                !matches!(pair[1].kind, EventKind::Call | EventKind::Resume),
                "{label}: {:?} follows an open call",
                pair[1]
            );
        }
    }
}

/// A generator or coroutine continued by throw() or close(), or woken by the
/// exception of a task it awaits, resumes (3.12+ say so with PY_THROW, not
/// PY_RESUME): a `resume` row, an end row for it, and what it calls next has it as
/// the parent. One thrown into before it ever ran (a task cancelled before its first
/// step) starts: a `call` row with its arguments.
#[test]
fn throw_and_close_resume_generators_and_coroutines() {
    for (python, native) in hooks() {
        let (run, lines) = run_throw(&python, native);
        let label = python.label.as_str();
        let driver = Some(run.calls_of("drive_generators")[0].call_id);

        let catcher = run.rows_of("catcher");
        assert_eq!(
            kinds(&catcher),
            ["call", "yield", "resume", "yield", "resume", "yield", "resume", "return"],
            "{label}"
        );
        assert_eq!(
            yielded(&catcher),
            [Some("'first'"), Some("'caught'"), Some("'last'")],
            "{label}"
        );
        // throw() resumes it at the yield where it waited.
        assert_eq!(catcher[2].line, lines["catcher-first"], "{label}");
        assert_eq!(catcher[3].line, lines["catcher-caught"], "{label}");
        assert_stretches(&catcher, driver, label);

        // close() of a generator waiting in `try`: it resumes, its `finally` runs
        // (calls made there have the resume as parent), GeneratorExit ends it.
        let closed = run.rows_of("closed");
        assert_eq!(
            kinds(&closed),
            ["call", "yield", "resume", "exception"],
            "{label}"
        );
        assert_stretches(&closed, driver, label);
        assert_eq!(
            closed[3].exception.as_deref(),
            Some("GeneratorExit"),
            "{label}"
        );
        let in_finally = run
            .calls_of("note")
            .into_iter()
            .filter(|n| n.parent_id == Some(closed[2].call_id))
            .count();
        assert_eq!(in_finally, 1, "{label}");

        let early = run.rows_of("never_started");
        assert_eq!(kinds(&early), ["call", "exception"], "{label}");
        assert_stretches(&early, driver, label);
        assert_eq!(args_of(early[0])["tag"], "'early'", "{label}");
        assert_eq!(early[1].exception.as_deref(), Some("KeyError"), "{label}");

        // asyncio: `supervisor` awaits a task that fails; the task's exception wakes
        // it (a resume at the await), and what it calls next is its callee.
        let opened = run.by_call_id();
        let failing = run.rows_of("failing");
        assert_eq!(
            kinds(&failing),
            ["call", "yield", "resume", "exception"],
            "{label}"
        );
        assert_eq!(
            (failing[3].exception.as_deref(), failing[3].value.as_deref()),
            (Some("RuntimeError"), Some("task failed")),
            "{label}"
        );
        let after = run.calls_of("after_failure")[0];
        let woken = opened[&after.parent_id.expect("parent")];
        assert_eq!(
            (&*woken.function, woken.kind, woken.line),
            ("supervisor", EventKind::Resume, lines["await-failing"]),
            "{label}"
        );
        let supervisor = run.rows_of("supervisor");
        assert_stretches(&supervisor, None, label);
        let end = supervisor.last().expect("supervisor rows");
        assert_eq!(
            (end.kind, end.value.as_deref()),
            (EventKind::Return, Some("'done'")),
            "{label}"
        );
        // A task cancelled before its first step: its coroutine is thrown into
        // before it ran.
        let cancelled = run.rows_of("cancelled");
        assert_eq!(kinds(&cancelled), ["call", "exception"], "{label}");
        assert_eq!(args_of(cancelled[0])["tag"], "'never'", "{label}");
        assert!(
            cancelled[1]
                .exception
                .as_deref()
                .is_some_and(|e| e.ends_with("CancelledError")),
            "{label}: {:?}",
            cancelled[1]
        );

        assert!(run.of(EventKind::Unfinished).is_empty(), "{label}");
        for e in &run.events {
            if let Some(parent) = e.parent_id {
                assert!(opened.contains_key(&parent), "{label}: parent of {e:?}");
            }
        }
    }
}

/// An exception thrown into a generator that catches it and yields again at the
/// same yield: the row is that `yield`, with its value (3.8–3.11 tell it from an
/// exit by the exception with a line event).
#[test]
fn a_thrown_exception_caught_before_the_same_yield_is_not_the_generators_end() {
    for (python, native) in hooks() {
        let (run, lines) = run_throw(&python, native);
        let label = python.label.as_str();
        let repeater = run.rows_of("repeater");
        assert_eq!(
            kinds(&repeater),
            [
                "call",
                "yield",
                "resume",
                "yield",
                "resume",
                "yield",
                "resume",
                "exception"
            ],
            "{label}"
        );
        assert_eq!(yielded(&repeater), [Some("'tick'"); 3], "{label}");
        for row in repeater.iter().filter(|e| e.kind == EventKind::Yield) {
            assert_eq!(row.line, lines["repeater-yield"], "{label}");
        }
        assert_stretches(
            &repeater,
            Some(run.calls_of("drive_generators")[0].call_id),
            label,
        );
        assert_eq!(
            repeater[7].exception.as_deref(),
            Some("GeneratorExit"),
            "{label}"
        );
    }
}

/// An exception row's line is the line running when the exception left the
/// function, as 3.8–3.11 give it: a `raise ... from`, a bare `raise`, an `except`
/// that did not match, a `finally`. 3.12+ give the PY_UNWIND the offset of the
/// handler's last RERAISE, which has no line.
#[test]
fn exception_rows_give_the_line_the_exception_left_from() {
    for (python, native) in hooks() {
        let (run, lines) = run_throw(&python, native);
        let label = python.label.as_str();
        for (function, exception, marker) in [
            ("raise_from", "ValueError", "raise-from"),
            ("bare_reraise", "KeyError", "bare-reraise"),
            ("no_match", "KeyError", "no-match"),
            ("closed", "GeneratorExit", "closed-finally"),
        ] {
            let end = run
                .rows_of(function)
                .into_iter()
                .find(|e| e.kind == EventKind::Exception)
                .unwrap_or_else(|| panic!("{label}: no exception row of {function}"));
            assert_eq!(
                (end.exception.as_deref(), end.line),
                (Some(exception), lines[marker]),
                "{label}: {function}"
            );
        }
    }
}

/// An async generator's yield rows carry the value it yielded, not the wrapper the
/// interpreter hands the yield event (`async_generator_wrapped_value`); its awaits'
/// yields are what the awaitable yielded.
#[test]
fn async_generator_yields_are_the_values_yielded() {
    for (python, native) in hooks() {
        let (run, _) = run_throw(&python, native);
        let label = python.label.as_str();
        let ticker = run.rows_of("ticker");
        assert_eq!(
            yielded(&ticker),
            [Some("5"), Some("None"), Some("[5, 'two']")],
            "{label}"
        );
        assert_eq!(
            ticker.last().map(|e| e.kind),
            Some(EventKind::Return),
            "{label}"
        );
        assert!(
            run.events.iter().all(|e| !e
                .value
                .as_deref()
                .is_some_and(|v| v.contains("wrapped_value"))),
            "{label}"
        );
    }
}

/// An exception's message renders int, str and container subclasses among its
/// arguments as the arguments renderer does (an IntEnum member as its number, a str
/// subclass as a str, a named tuple and a set subclass by name), not as `<Class
/// object at 0x...>`, on both hooks; an OSError's is its own `[Errno N] text` made
/// from its arguments' values; and no class's own `__repr__`/`__str__` runs for it
/// (they would print).
#[test]
fn exception_messages_render_subclasses_of_builtins_as_their_base() {
    let dir = scratch("subclass-messages");
    let program = dir.join("messages.py");
    std::fs::write(
        &program,
        "import collections, enum, sys\n\
         class Code(enum.IntEnum):\n    BAD = 3\n\
         class Name(str):\n    pass\n\
         class Loud(int):\n    def __repr__(self):\n        print('repr ran')\n        return 'loud'\n    \
         __str__ = __repr__\n\
         class Tags(set):\n    pass\n\
         Point = collections.namedtuple('Point', 'x y')\n\
         def boom(*args):\n    raise ValueError(*args)\n\
         def key(k):\n    raise KeyError(k)\n\
         def leave():\n    sys.exit(Code.BAD)\n\
         def os_error(*args):\n    raise OSError(*args)\n\
         for f, args in ((boom, (Code.BAD,)), (boom, (Name('x'),)), (key, (Name('x'),)),\n\
         \x20             (boom, (Loud(5),)), (boom, ([Code.BAD, Name('y')],)),\n\
         \x20             (boom, (Point(1, Name('z')),)), (boom, (Tags([Code.BAD]),)),\n\
         \x20             (boom, (Code.BAD, Name('y'))), (key, (Code.BAD,)),\n\
         \x20             (os_error, (Loud(13), Name('denied'))), (os_error, (2, Name('gone')))):\n    \
         try:\n        f(*args)\n    except Exception:\n        pass\n\
         leave()\n",
    )
    .expect("program");
    let program = program.display().to_string();
    for (python, native) in hooks() {
        let label = python.label.as_str();
        let run = run_exact(&python, &[&program], options(native), None);
        assert_eq!(run.status.code(), Some(3), "{label}");
        assert_eq!(run.stdout(), "", "{label}: a __repr__ ran");
        let ended = |function: &str| -> Vec<(String, String)> {
            run.calls_of(function)
                .iter()
                .map(|call| {
                    let end = run.end_of(call.call_id).expect("end row");
                    assert_eq!(end.kind, EventKind::Exception, "{label}: {function}");
                    (
                        end.exception.clone().unwrap_or_default(),
                        end.value.clone().unwrap_or_default(),
                    )
                })
                .collect()
        };
        let pair = |e: &str, m: &str| (e.to_string(), m.to_string());
        assert_eq!(
            ended("boom"),
            [
                pair("ValueError", "3"),
                pair("ValueError", "x"),
                pair("ValueError", "5"),
                pair("ValueError", "[3, 'y']"),
                pair("ValueError", "Point(x=1, y='z')"),
                pair("ValueError", "Tags({3})"),
                pair("ValueError", "(3, 'y')"),
            ],
            "{label}"
        );
        assert_eq!(
            ended("key"),
            [pair("KeyError", "'x'"), pair("KeyError", "3")],
            "{label}"
        );
        assert_eq!(ended("leave"), [pair("SystemExit", "3")], "{label}");
        // OSError's own str() (`[Errno N] text`), made from the arguments' values.
        assert_eq!(
            ended("os_error"),
            [
                pair("PermissionError", "[Errno 13] denied"),
                pair("FileNotFoundError", "[Errno 2] gone"),
            ],
            "{label}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `--include '*'` the trace holds no work of the tracer's own bootstrap
/// (`sitecustomize`): not the `os.path.abspath` of every `sys.path` entry it takes
/// its folder out of, not its import of a user `sitecustomize` that is not there
/// (two `ModuleNotFoundError` rows). A user's own `sitecustomize` is user code: it
/// still runs, traced, before the program.
#[test]
fn include_everything_leaves_out_the_bootstraps_own_work() {
    let dir = scratch("include-everything");
    let program = dir.join("prog.py");
    std::fs::write(
        &program,
        "def work():\n    return 1\nwork()\nprint('hello')\n",
    )
    .expect("program");
    let user = dir.join("user");
    std::fs::create_dir_all(&user).expect("user folder");
    std::fs::write(
        user.join("sitecustomize.py"),
        "def mark():\n    return 'user'\nMARK = mark()\n",
    )
    .expect("user sitecustomize");
    let program = program.display().to_string();
    for (python, native) in hooks() {
        // Debian's python3.11 has a sitecustomize of its own; pyenv's have none.
        let probe = Command::new(&python.path)
            .args(["-c", "import sys; print('sitecustomize' in sys.modules)"])
            .env_remove("PYTHONPATH")
            .output()
            .expect("probe");
        let has_own = String::from_utf8_lossy(&probe.stdout).trim() == "True";
        for pythonpath in [None, Some(user.as_path())] {
            let label = format!("{} with PYTHONPATH {pythonpath:?}", python.label);
            let run = run_exact(
                &python,
                &[&program],
                ExactOptions {
                    include: vec!["*".into()],
                    ..options(native)
                },
                pythonpath,
            );
            assert_eq!(run.status.code(), Some(0), "{label}");
            assert_eq!(run.stdout(), "hello\n", "{label}");
            assert_eq!(run.calls_of("work").len(), 1, "{label}: traced");
            let abspath: Vec<&Event> = run
                .calls_of("abspath")
                .into_iter()
                .filter(|e| &*e.module == "posixpath")
                .collect();
            assert!(abspath.is_empty(), "{label}: {abspath:?}");
            let failed: Vec<&Event> = run
                .of(EventKind::Exception)
                .into_iter()
                .filter(|e| e.value.as_deref() == Some("No module named 'sitecustomize'"))
                .collect();
            assert!(failed.is_empty(), "{label}: {failed:?}");
            let sitecustomize_imports = run
                .calls_of("_find_and_load")
                .into_iter()
                .filter(|e| {
                    e.args
                        .as_deref()
                        .is_some_and(|a| a.contains("'sitecustomize'"))
                })
                .count();
            let marks: Vec<&Event> = run
                .calls_of("mark")
                .into_iter()
                .filter(|e| &*e.module == "sitecustomize")
                .collect();
            if pythonpath.is_some() {
                // The user's, traced with its import, before the program's code.
                assert_eq!(sitecustomize_imports, 1, "{label}");
                assert_eq!(marks.len(), 1, "{label}");
                let first_main = run
                    .events
                    .iter()
                    .position(|e| &*e.module == "__main__")
                    .expect("__main__ rows");
                assert!(marks[0].seq < run.events[first_main].seq, "{label}");
            } else {
                assert_eq!(sitecustomize_imports, usize::from(has_own), "{label}");
                assert!(marks.is_empty(), "{label}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
