//! `tracer record --exact` end to end on every interpreter: the program runs exactly
//! as without the tracer, and the trace holds every call with its arguments, return
//! value or exception, which `tracer query` answers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e::{matrix, read_trace, script, temp_dir, tracer_bin, Interpreter};
use serde_json::Value;

fn run_plain(interp: &Interpreter) -> Output {
    Command::new(&interp.path)
        .arg(script("exact_app.py"))
        .args(["a", "b"])
        .output()
        .expect("run python")
}

fn record_exact(interp: &Interpreter, trace: &Path, extra: &[&str]) -> Output {
    record_script(interp, trace, extra, &["exact_app.py", "a", "b"])
}

/// `tracer record --exact EXTRA -o TRACE -- PYTHON tests/scripts/SCRIPT ARGS...`
/// (`script_and_args`: the script's name, then its arguments).
fn record_script(
    interp: &Interpreter,
    trace: &Path,
    extra: &[&str],
    script_and_args: &[&str],
) -> Output {
    Command::new(tracer_bin())
        .args(["record", "--exact", "-o"])
        .arg(trace)
        .args(extra)
        .arg("--")
        .arg(&interp.path)
        .arg(script(script_and_args[0]))
        .args(&script_and_args[1..])
        .output()
        .expect("run tracer record --exact")
}

/// [`record_script`] into a fresh folder of its own, which must succeed: the trace.
fn recorded(interp: &Interpreter, name: &str, extra: &[&str], script_name: &str) -> PathBuf {
    let label = &interp.label;
    let dir = temp_dir(&format!("{name}-{}", label.replace('/', "_")));
    let trace = dir.join("t.parquet");
    let out = record_script(interp, &trace, extra, &[script_name]);
    assert!(
        out.status.success(),
        "{label}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    trace
}

/// Writes `program` as `NAME.py` into a folder of its own and records it in exact
/// mode with `extra` options; returns the trace's path and the tracer's output.
fn record_program(
    interp: &Interpreter,
    name: &str,
    program: &str,
    extra: &[&str],
) -> (PathBuf, Output) {
    let dir = temp_dir(&format!("exact-{name}-{}", interp.label.replace('/', "_")));
    let path = dir.join(format!("{name}.py"));
    std::fs::write(&path, program).expect("write the program");
    let trace = dir.join("t.parquet");
    let out = record_file(interp, &path, &trace, extra);
    (trace, out)
}

/// `tracer record --exact EXTRA -o TRACE -- PYTHON PATH`.
fn record_file(interp: &Interpreter, path: &Path, trace: &Path, extra: &[&str]) -> Output {
    Command::new(tracer_bin())
        .args(["record", "--exact", "-o"])
        .arg(trace)
        .args(extra)
        .arg("--")
        .arg(&interp.path)
        .arg(path)
        .output()
        .expect("run tracer record --exact")
}

fn ask(trace: &Path, args: &[&str]) -> Vec<Value> {
    let out = Command::new(tracer_bin())
        .arg("query")
        .arg(trace)
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("run tracer query");
    assert!(
        out.status.success(),
        "tracer query {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    answer["rows"].as_array().cloned().unwrap_or_default()
}

#[test]
fn exact_record_leaves_the_program_unchanged_and_records_every_call() {
    for interp in matrix() {
        let label = &interp.label;
        let dir = temp_dir(&format!("exact-{}", label.replace('/', "_")));
        let trace = dir.join("t.parquet");
        let plain = run_plain(&interp);
        let traced = record_exact(&interp, &trace, &[]);

        // Output and exit code are the program's own; the tracer's report follows
        // the program's stderr.
        assert_eq!(traced.status.code(), Some(3), "{label}");
        assert_eq!(plain.status.code(), Some(3), "{label}");
        assert_eq!(traced.stdout, plain.stdout, "{label}: stdout");
        let stderr = String::from_utf8_lossy(&traced.stderr);
        let plain_stderr = String::from_utf8_lossy(&plain.stderr);
        assert!(
            stderr.starts_with(&*plain_stderr),
            "{label}: the program's stderr comes first, unchanged:\n{stderr}"
        );
        let report = &stderr[plain_stderr.len()..];
        assert!(
            report.starts_with("tracer: exact of pid"),
            "{label}: {report}"
        );
        assert!(
            report.contains("status failed, exit code 3"),
            "{label}: {report}"
        );

        let (rows, run) = read_trace(&trace);
        assert_eq!(run["mode"], "exact", "{label}");
        assert_eq!(run["dropped_events"], 0, "{label}");
        assert!(
            run["python_version"]
                .as_str()
                .is_some_and(|v| v.starts_with(&format!("3.{}.", interp.minor))),
            "{label}: {}",
            run["python_version"]
        );
        assert!(rows.iter().all(|r| r["source"] == "exact"), "{label}");

        // Every call of the program, once each, with exact bounds.
        let calls_of = |function: &str| {
            rows.iter()
                .filter(|r| r["kind"] == "call" && r["function"] == function)
                .count()
        };
        assert_eq!(calls_of("charge"), 3, "{label}");
        assert_eq!(calls_of("checkout"), 1, "{label}");
        assert_eq!(calls_of("main"), 1, "{label}");
        assert_eq!(
            calls_of("squares"),
            1,
            "{label}: a generator's first start is its call"
        );

        // --call: arguments, and a return value or the exception, in order.
        let charges = ask(&trace, &["--call", "charge"]);
        let summary: Vec<(String, String, String)> = charges
            .iter()
            .map(|c| {
                let args: Value = serde_json::from_str(c["args"].as_str().unwrap_or("{}")).unwrap();
                (
                    args["amount"].as_str().unwrap_or("").to_string(),
                    c["outcome"].as_str().unwrap_or("").to_string(),
                    c["value"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("10".into(), "return".into(), "20".into()),
                (
                    "250".into(),
                    "exception".into(),
                    "amount 250 over limit".into()
                ),
                ("30".into(), "return".into(), "60".into()),
            ],
            "{label}: {charges:?}"
        );
        assert_eq!(charges[1]["exception"], "__main__.PaymentError", "{label}");
        for c in &charges {
            assert_eq!(c["caller"], "__main__.checkout", "{label}");
            assert!(
                c["duration_max_ns"].is_null(),
                "{label}: exact times have no bounds"
            );
            assert!(c["duration_ns"].as_i64().is_some_and(|d| d > 0), "{label}");
        }
        let checkout = ask(&trace, &["--call", "checkout"]);
        assert_eq!(
            checkout[0]["value"], "[20, 'amount 250 over limit', 60]",
            "{label}: the return value's repr"
        );

        // A generator's call ends at its first yield, and each resume is a row of
        // its own up to the next yield or the return: --call shows every stretch,
        // the argument on the call, the values yielded, and the return at the end.
        let squares = ask(&trace, &["--call", "squares"]);
        let stretches: Vec<(&str, &str, &str)> = squares
            .iter()
            .map(|s| {
                (
                    s["kind"].as_str().unwrap_or(""),
                    s["outcome"].as_str().unwrap_or(""),
                    s["value"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            stretches,
            [
                ("call", "yield", "0"),
                ("resume", "yield", "1"),
                ("resume", "yield", "4"),
                ("resume", "return", "None"),
            ],
            "{label}: {squares:?}"
        );
        assert_eq!(squares[0]["args"], r#"{"n":"3"}"#, "{label}");
        assert!(squares[1..].iter().all(|s| s["args"].is_null()), "{label}");

        // --exceptions: the one raised in charge (its caller caught it), then the
        // SystemExit of sys.exit(3) passing through main and the module.
        let exceptions = ask(&trace, &["--exceptions"]);
        let seen: Vec<(&str, &str, &str)> = exceptions
            .iter()
            .map(|e| {
                (
                    e["function"].as_str().unwrap_or(""),
                    e["exception"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "__main__.charge",
                    "__main__.PaymentError",
                    "amount 250 over limit"
                ),
                ("__main__.main", "SystemExit", "3"),
                ("__main__.<module>", "SystemExit", "3"),
            ],
            "{label}"
        );

        assert_tree_nests(label, &ask(&trace, &["--tree", "--limit", "1000"]));

        // --top counts the generator's resumptions apart from its call.
        let top = ask(&trace, &["--top", "50"]);
        let charge_row = top.iter().find(|r| r["function"] == "charge");
        assert_eq!(
            charge_row.and_then(|r| r["calls"].as_i64()),
            Some(3),
            "{label}"
        );
    }
}

/// `--tree` reads as the calls nested: below each row, until a row as shallow, come
/// the calls it made and its gaps.
fn assert_tree_nests(label: &str, tree: &[Value]) {
    assert!(
        tree.iter().any(|r| r["kind"] == "gap"),
        "{label}: no gaps in {tree:?}"
    );
    let mut open: Vec<&Value> = Vec::new();
    for row in tree {
        let depth = row["depth"].as_u64().expect("depth") as usize;
        open.truncate(depth);
        if depth > 0 {
            let above = open
                .last()
                .unwrap_or_else(|| panic!("{label}: {row} has no row above"));
            assert_eq!(
                row["parent_id"], above["call_id"],
                "{label}: {} is shown under {}",
                row["function"], above["function"]
            );
        }
        open.push(row);
    }
}

#[test]
fn the_tree_nests_calls_and_a_time_window_takes_whole_calls() {
    for interp in matrix() {
        let label = &interp.label;
        let trace = recorded(&interp, "exact-tree", &[], "exact_tree.py");
        let tree = ask(&trace, &["--tree", "--limit", "1000"]);
        assert_tree_nests(label, &tree);
        let steps = tree
            .iter()
            .filter(|r| r["function"] == "__main__.step")
            .count();
        assert_eq!(steps, 20, "{label}: {tree:?}");
        // --flow in the order of time: the module's gap, written while main ran,
        // comes before main's call.
        let flow = ask(&trace, &["--flow", "--limit", "1000"]);
        let times: Vec<&str> = flow.iter().filter_map(|r| r["ts"].as_str()).collect();
        assert_eq!(times.len(), flow.len(), "{label}: {flow:?}");
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "{label}: --flow out of time order: {flow:?}"
        );
        let at = |function: &str, kind: &str| {
            flow.iter()
                .position(|r| r["function"] == function && r["kind"] == kind)
                .unwrap_or_else(|| panic!("{label}: no {kind} of {function} in {flow:?}"))
        };
        assert!(
            at("posixpath.basename", "gap") < at("__main__.main", "call"),
            "{label}"
        );

        // A time window counts the calls that started in it, and adds up the time of
        // those same calls: --top and --slow agree with each other and with --call.
        let window = ["--since", "0.1s", "--until", "0.2s"];
        let of_step = |rows: Vec<Value>| {
            rows.into_iter()
                .find(|r| r["function"] == "step")
                .unwrap_or_else(|| panic!("{label}: no step in the window"))
        };
        let top = of_step(ask(&trace, &[&["--top", "5"][..], &window[..]].concat()));
        let slow = of_step(ask(&trace, &[&["--slow", "5"][..], &window[..]].concat()));
        let calls = top["calls"].as_i64().expect("calls");
        assert!(calls > 0, "{label}: {top}");
        assert_eq!(slow["calls"].as_i64(), Some(calls), "{label}: {top} {slow}");
        assert_eq!(slow["total_ns"], top["total_ns"], "{label}: {top} {slow}");
        // The same calls --call lists for the window, to the nanosecond.
        let listed = ask(&trace, &[&["--call", "step"][..], &window[..]].concat());
        assert_eq!(listed.len() as i64, calls, "{label}: {listed:?}");
        let listed_total: i64 = listed
            .iter()
            .map(|c| c["duration_ns"].as_i64().expect("duration"))
            .sum();
        assert_eq!(
            top["total_ns"].as_i64(),
            Some(listed_total),
            "{label}: {top}"
        );
    }
}

#[test]
fn exact_no_args_records_calls_without_values() {
    let interp = &matrix()[0];
    let dir = temp_dir("exact-no-args");
    let trace = dir.join("t.parquet");
    let out = record_exact(interp, &trace, &["--no-args"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (rows, run) = read_trace(&trace);
    assert_eq!(run["capture_args"], false);
    assert_eq!(
        rows.iter()
            .filter(|r| r["kind"] == "call" && r["function"] == "charge")
            .count(),
        3
    );
    assert!(
        rows.iter()
            .all(|r| r["args"].is_null() && (r["kind"] == "exception" || r["value"].is_null())),
        "no argument or return values with --no-args"
    );
}

#[test]
fn max_calls_leaves_in_the_trace_what_it_counted_without_recording() {
    for interp in matrix() {
        let label = &interp.label;
        let trace = recorded(
            &interp,
            "exact-max-calls",
            &["--max-calls", "5"],
            "exact_tree.py",
        );
        // The 20 steps take 0.3 s: within each second (at most two) the first 5 are
        // recorded, the others counted.
        let (rows, run) = read_trace(&trace);
        let steps = rows
            .iter()
            .filter(|r| r["kind"] == "call" && r["function"] == "step")
            .count() as u64;
        let limited = run["limited_functions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let counted = limited
            .iter()
            .find(|l| l["function"] == "step")
            .and_then(|l| l["calls_not_recorded"].as_u64())
            .unwrap_or_else(|| panic!("{label}: step not limited: {run}"));
        assert!((5..=10).contains(&steps), "{label}: {steps} steps recorded");
        assert_eq!(steps + counted, 20, "{label}: {run}");
        let report = Command::new(tracer_bin())
            .arg("report")
            .arg(&trace)
            .output()
            .expect("run tracer report");
        let report = String::from_utf8_lossy(&report.stdout);
        assert!(
            report.contains(&format!(
                "limited by --max-calls: __main__.step in pid {}: {counted} calls counted, not recorded",
                run["pid"]
            )),
            "{label}: {report}"
        );
        let top = Command::new(tracer_bin())
            .arg("query")
            .arg(&trace)
            .args(["--top", "--format", "json"])
            .output()
            .expect("run tracer query");
        let answer: Value = serde_json::from_slice(&top.stdout).expect("JSON answer");
        assert!(
            answer["notes"]
                .as_array()
                .is_some_and(|notes| notes.iter().any(|n| n
                    .as_str()
                    .is_some_and(|n| n.contains(&format!("__main__.step {counted}"))))),
            "{label}: {answer}"
        );
    }
}

#[test]
fn a_command_without_python_says_so_and_passes_its_exit_code_on() {
    let dir = temp_dir("exact-no-python");
    let trace = dir.join("t.parquet");
    let out = Command::new(tracer_bin())
        .args(["record", "--exact", "-o"])
        .arg(&trace)
        .args(["--", "sh", "-c", "exit 4"])
        .output()
        .expect("run tracer record --exact");
    let report = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{report}");
    assert!(
        report.contains("no Python process loaded the hook"),
        "{report}"
    );
    assert!(
        !report.contains("Dig in") && !report.contains("--include"),
        "nothing to dig into or include: {report}"
    );
}

/// A recursion's time counts once in a function's total (`--slow`, `--top` and the
/// report), as cProfile's cumulative time: the calls a function makes to itself run
/// inside its own.
#[test]
fn a_recursive_function_total_counts_each_recursion_once() {
    let program = "def walk(n):\n    return 0 if n == 0 else 1 + walk(n - 1)\n\n\
                   def main():\n    print(walk(40), walk(40))\n\nmain()\n";
    for interp in matrix() {
        let label = &interp.label;
        let (trace, out) = record_program(&interp, "recursion", program, &[]);
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let walks = ask(
            &trace,
            &[
                "--sql",
                "SELECT caller, duration_ns FROM events \
                 WHERE function = 'walk' AND kind = 'return'",
            ],
        );
        assert_eq!(walks.len(), 82, "{label}");
        let outermost: i64 = walks
            .iter()
            .filter(|w| w["caller"] == "__main__.main")
            .map(|w| w["duration_ns"].as_i64().expect("duration"))
            .sum();
        let every: i64 = walks
            .iter()
            .map(|w| w["duration_ns"].as_i64().unwrap())
            .sum();
        // 80 of the 82 calls run inside another call of walk: summed, their time
        // would count again (a timing ratio is not asserted: a stall of the machine
        // in an outermost call can outweigh the rest).
        let nested = walks
            .iter()
            .filter(|w| w["caller"] == "__main__.walk")
            .count();
        assert_eq!(nested, 80, "{label}");
        assert!(every > outermost, "{label}: {every} {outermost}");
        for question in ["--slow", "--top"] {
            let rows = ask(&trace, &[question]);
            let walk = rows
                .iter()
                .find(|r| r["function"] == "walk")
                .unwrap_or_else(|| panic!("{label}: no walk in {question}: {rows:?}"));
            assert_eq!(walk["calls"], 82, "{label} {question}");
            assert_eq!(walk["total_ns"], outermost, "{label} {question}");
        }
        let main = ask(&trace, &["--call", "main"]);
        let main_ns = main[0]["duration_ns"].as_i64().expect("main's duration");
        assert!(
            outermost <= main_ns,
            "{label}: walk {outermost} > main {main_ns}"
        );
    }
}

/// A generator that works before each of its yields: its time is the sum of its
/// stretches (call to first yield, each resume to the next yield or its return), in
/// `--slow`, `--top` and the report, not only its last stretch.
#[test]
fn a_generator_s_time_is_the_sum_of_its_stretches() {
    let program = "import time\n\ndef slow_gen():\n    for i in range(3):\n        \
                   time.sleep(0.05)\n        yield i\n\ndef main():\n    \
                   print(list(slow_gen()))\n\nmain()\n";
    for interp in matrix() {
        let label = &interp.label;
        let (trace, out) = record_program(&interp, "slow_gen", program, &[]);
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stretches = ask(
            &trace,
            &[
                "--sql",
                "SELECT kind, duration_ns FROM events \
                 WHERE function = 'slow_gen' AND kind IN ('yield', 'return') ORDER BY seq",
            ],
        );
        let kinds: Vec<&str> = stretches
            .iter()
            .map(|r| r["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["yield", "yield", "yield", "return"], "{label}");
        let sum: i64 = stretches
            .iter()
            .map(|r| r["duration_ns"].as_i64().expect("duration"))
            .sum();
        assert!(sum >= 150_000_000, "{label}: three sleeps of 50 ms: {sum}");
        for question in ["--slow", "--top"] {
            let rows = ask(&trace, &[question]);
            let row = rows
                .iter()
                .find(|r| r["function"] == "slow_gen")
                .unwrap_or_else(|| panic!("{label}: no slow_gen in {question}: {rows:?}"));
            assert_eq!(row["calls"], 1, "{label} {question}");
            assert_eq!(row["total_ns"], sum, "{label} {question}");
        }
        let report = Command::new(tracer_bin())
            .arg("report")
            .arg(&trace)
            .output()
            .expect("run tracer report");
        let text = String::from_utf8_lossy(&report.stdout);
        let tree_line = text
            .lines()
            .find(|l| l.trim_start().starts_with("slow_gen("))
            .unwrap_or_else(|| panic!("{label}: no slow_gen in the report's tree:\n{text}"));
        assert!(tree_line.ends_with(" yielded"), "{label}: {tree_line}");
    }
}

/// A call still running when `--timeout` stops the program ends as `unfinished`
/// with the time it ran until then, not at the last record the program sent (a
/// sleep of 5 s stopped after 1 s showed 0 ns).
#[test]
fn a_call_stopped_by_the_timeout_is_unfinished_with_the_time_it_ran() {
    let program = "import time\n\ndef work():\n    time.sleep(5)\n\nwork()\n";
    for interp in matrix() {
        let label = &interp.label;
        let (trace, out) = record_program(&interp, "hangs", program, &["--timeout", "1"]);
        assert_eq!(
            out.status.code(),
            Some(124),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let work = ask(&trace, &["--call", "work"]);
        assert_eq!(work.len(), 1, "{label}: {work:?}");
        assert_eq!(work[0]["outcome"], "unfinished", "{label}");
        let ran = work[0]["duration_ns"].as_i64().expect("a duration");
        // The timeout counts from the launch: on a loaded machine Python's start
        // and the hook's take a few hundred milliseconds of that second (0.82 s was
        // seen with two test binaries running), never all of it.
        assert!(
            (300_000_000..5_000_000_000).contains(&ran),
            "{label}: work ran most of the 1 s before the timeout, not {ran} ns"
        );
    }
}

/// The stacks printed at `--timeout` are the program's threads only: the hook's own
/// sender thread (`_flusher`, in the hook's cache folder) was listed as if it were
/// the program's.
#[test]
fn the_stacks_at_a_timeout_leave_out_the_hook_s_thread() {
    let program = "import threading\n\n\
                   def wait_forever():\n    threading.Event().wait()\n\n\
                   threading.Thread(target=wait_forever, name='worker', daemon=True).start()\n\
                   wait_forever()\n";
    for interp in matrix() {
        let label = &interp.label;
        let (_, out) = record_program(&interp, "waits", program, &["--timeout", "1"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(124), "{label}: {stderr}");
        let stacks = stderr
            .split("where every thread was:")
            .nth(1)
            .unwrap_or_else(|| panic!("{label}: no stacks: {stderr}"));
        let threads: Vec<&str> = stacks
            .lines()
            .filter(|l| l.starts_with("Thread "))
            .collect();
        assert_eq!(threads.len(), 2, "{label}: {stacks}");
        assert!(
            threads[0].contains("main") && threads[1].contains("\"worker\""),
            "{label}: {stacks}"
        );
        assert!(
            !stacks.contains("_flusher") && !stacks.contains("_tracer_exact_hook"),
            "{label}: {stacks}"
        );
    }
}

/// A recording killed with SIGKILL leaves only its segments: they carry the Python
/// version the hook gave (they said "Python ?" until the run was finished).
#[test]
fn a_killed_exact_recording_keeps_the_python_version() {
    let interps = matrix();
    for interp in [&interps[0], &interps[interps.len() - 1]] {
        let label = &interp.label;
        let dir = temp_dir(&format!("exact-killed-{}", label.replace('/', "_")));
        let trace = dir.join("t.parquet");
        let long = script("long_workload.py");
        let mut tracer = Command::new(tracer_bin())
            .args(["record", "--exact", "-o"])
            .arg(&trace)
            .arg("--")
            .arg(&interp.path)
            .arg(&long)
            .arg("6")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tracer record --exact");
        std::thread::sleep(std::time::Duration::from_millis(2500));
        let _ = tracer.kill();
        let _ = tracer.wait();
        let runs = ask(&dir.join("t.parquet.parts"), &["--runs"]);
        assert_eq!(runs.len(), 1, "{label}: {runs:?}");
        assert_eq!(runs[0]["status"], "unfinished", "{label}");
        let version = runs[0]["python_version"].as_str().unwrap_or("");
        assert!(
            version.starts_with(&format!("3.{}.", interp.minor)),
            "{label}: python_version {version:?}"
        );
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(long.to_str().unwrap())
            .status();
    }
}

/// Under PYTHONDONTWRITEBYTECODE (usual in containers) Python keeps no compiled code,
/// so the bootstrap keeps its own in the tracer's cache folder: a traced start after
/// the first compiles neither the hook nor the bootstrap, and the program's own
/// folder still gets no `__pycache__`.
#[test]
fn the_bootstrap_keeps_its_compiled_code_only_in_its_own_folder() {
    for interp in matrix() {
        let label = &interp.label;
        let dir = temp_dir(&format!("exact-pyc-{}", label.replace('/', "_")));
        let cache = dir.join("cache");
        let program_dir = dir.join("program");
        std::fs::create_dir_all(&program_dir).expect("program folder");
        std::fs::write(
            program_dir.join("helper.py"),
            "def twice(x):\n    return 2 * x\n",
        )
        .expect("helper module");
        std::fs::write(
            program_dir.join("main.py"),
            "import helper\nprint(helper.twice(21))\n",
        )
        .expect("program");
        let run = |n: usize| {
            let out = Command::new(tracer_bin())
                .args(["record", "--exact", "-o"])
                .arg(dir.join(format!("t{n}.parquet")))
                .arg("--")
                .arg(&interp.path)
                .arg(program_dir.join("main.py"))
                .env("XDG_CACHE_HOME", &cache)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .output()
                .expect("run tracer record --exact");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "42\n",
                "{label}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(1);
        let boot: Vec<_> = std::fs::read_dir(cache.join("tracer"))
            .expect("the tracer's cache folder")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(boot.len(), 1, "{label}: {boot:?}");
        let cached: Vec<String> = std::fs::read_dir(boot[0].join("__pycache__"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            cached
                .iter()
                .any(|name| name.starts_with("sitecustomize.") && name.ends_with(".pyc")),
            "{label}: the bootstrap's compiled code is kept: {cached:?}"
        );
        let stamp = |name: &str| {
            std::fs::metadata(boot[0].join("__pycache__").join(name))
                .and_then(|m| m.modified())
                .expect("compiled copy")
        };
        let first = stamp(&cached[0]);
        run(2);
        assert_eq!(
            stamp(&cached[0]),
            first,
            "{label}: used again, not rewritten"
        );
        assert!(
            !program_dir.join("__pycache__").exists(),
            "{label}: the program's folder gets no compiled code under PYTHONDONTWRITEBYTECODE"
        );
    }
}

/// Functions that compare equal as code (`def f(x): return x` in two modules: a code
/// object's equality leaves its file out) are recorded each as its own, with its
/// module, file and return; a call through a `functools.wraps` wrapper that is not
/// traced (a contextmanager's helper) is a gap named after the wrapper, not after the
/// traced function it wraps; and `import sitecustomize` fails as it does without the
/// tracer when the program has none, and finds the program's own from a folder it
/// adds later.
#[test]
fn twin_functions_wrapped_callees_and_a_missing_sitecustomize_are_what_they_are() {
    let program = "import contextlib, os, sys\nimport twin_a, twin_b\n\n\
                   @contextlib.contextmanager\ndef opened():\n    yield 1\n\n\
                   class Res:\n    def __enter__(self):\n        return self\n    \
                   def __exit__(self, *exc):\n        return False\n\n\
                   @contextlib.contextmanager\ndef guarded():\n    with Res():\n        yield 1\n\n\
                   def main():\n    print(twin_a.f(1), twin_b.f(2), twin_a.f(3))\n    \
                   print(len(twin_a.make()))\n    \
                   try:\n        with guarded():\n            raise KeyError('k')\n    \
                   except KeyError:\n        print('caught')\n    \
                   with opened() as v:\n        print(v)\n    \
                   try:\n        import sitecustomize\n        print('sitecustomize', sitecustomize.__file__)\n    \
                   except ImportError as e:\n        print('no sitecustomize', type(e).__name__, e)\n    \
                   sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), 'own'))\n    import sitecustomize\n    \
                   print(getattr(sitecustomize, 'VALUE', None))\n\n\
                   main()\n";
    for interp in matrix() {
        let label = &interp.label;
        let dir = temp_dir(&format!("exact-twins-{}", label.replace('/', "_")));
        for twin in ["twin_a", "twin_b"] {
            // Only `f` is a twin; twin_a goes on with a dataclass, whose `__init__`
            // the module makes at run time (file `<string>`).
            let more = if twin == "twin_a" {
                "\nimport dataclasses\n\n@dataclasses.dataclass\nclass Item:\n    name: str\n\n\
                 def make():\n    return [Item('x'), Item('y')]\n"
            } else {
                ""
            };
            std::fs::write(
                dir.join(format!("{twin}.py")),
                format!("def f(x):\n    return x\n{more}"),
            )
            .expect("write a twin");
        }
        // A sitecustomize of the program's own, imported from a folder it adds.
        std::fs::create_dir_all(dir.join("own")).expect("own folder");
        std::fs::write(dir.join("own/sitecustomize.py"), "VALUE = 42\n")
            .expect("own sitecustomize");
        let path = dir.join("twins.py");
        std::fs::write(&path, program).expect("write the program");
        let plain = Command::new(&interp.path)
            .arg(&path)
            .output()
            .expect("run python");
        // Debian's python3.11 has a sitecustomize of its own; pyenv's have none.
        let expected_end = if label.starts_with("pyenv") {
            "no sitecustomize ModuleNotFoundError No module named 'sitecustomize'\n42\n"
        } else {
            "\n"
        };
        let plain_text = String::from_utf8_lossy(&plain.stdout);
        assert!(
            plain_text.starts_with("1 2 3\n2\ncaught\n1\n") && plain_text.ends_with(expected_end),
            "{label}: {plain_text} {}",
            String::from_utf8_lossy(&plain.stderr)
        );
        let trace = dir.join("t.parquet");
        let out = record_file(
            &interp,
            &path,
            &trace,
            &["--include", "__main__", "--include", "twin_*"],
        );
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, plain.stdout, "{label}: stdout");
        let twins = ask(
            &trace,
            &[
                "--sql",
                "SELECT c.module, c.file, c.args, r.kind, r.value, c.caller FROM events c \
                 JOIN events r ON r.call_id = c.call_id AND r.kind <> 'call' \
                 WHERE c.kind = 'call' AND c.function = 'f' ORDER BY c.seq",
            ],
        );
        let seen: Vec<(String, String, String)> = twins
            .iter()
            .map(|r| {
                let file = r["file"].as_str().unwrap_or_default();
                (
                    r["module"].as_str().unwrap_or_default().to_string(),
                    file.rsplit('/').next().unwrap_or_default().to_string(),
                    format!("{} {} {}", r["args"], r["kind"], r["value"]),
                )
            })
            .collect();
        let expected: Vec<(String, String, String)> = [("twin_a", 1), ("twin_b", 2), ("twin_a", 3)]
            .iter()
            .map(|(m, n)| {
                (
                    m.to_string(),
                    format!("{m}.py"),
                    format!("\"{{\\\"x\\\":\\\"{n}\\\"}}\" \"return\" \"{n}\""),
                )
            })
            .collect();
        assert_eq!(seen, expected, "{label}");
        assert!(
            twins.iter().all(|r| r["caller"] == "__main__.main"),
            "{label}: {twins:?}"
        );
        // The dataclass's generated __init__ is its module's code: traced.
        let inits = ask(
            &trace,
            &[
                "--sql",
                "SELECT module FROM events WHERE kind = 'call' AND function LIKE '%__init__' \
                 AND caller LIKE 'twin_a.make%'",
            ],
        );
        assert_eq!(inits.len(), 2, "{label}: {inits:?}");
        assert!(
            inits.iter().all(|r| r["module"] == "twin_a"),
            "{label}: {inits:?}"
        );
        // A generator left by the exception thrown into it, through a `with` block's
        // handler: its resume ends in the exception (3.11 read it as a yield).
        let guarded = ask(&trace, &["--call", "guarded"]);
        let outcomes: Vec<(String, String)> = guarded
            .iter()
            .map(|r| {
                (
                    r["kind"].to_string(),
                    format!("{} {}", r["outcome"], r["exception"]),
                )
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                ("\"call\"".to_string(), "\"yield\" null".to_string()),
                (
                    "\"resume\"".to_string(),
                    "\"exception\" \"KeyError\"".to_string()
                )
            ],
            "{label}: {guarded:?}"
        );
        let gaps = ask(&trace, &["--gaps"]);
        assert!(
            !gaps.iter().any(|g| g["module"] == "__main__"),
            "{label}: a traced function named as a gap: {gaps:?}"
        );
        assert!(
            gaps.iter().any(|g| g["module"] == "contextlib"
                && g["function"]
                    .as_str()
                    .is_some_and(|f| f.ends_with("helper"))),
            "{label}: no gap into the contextmanager's helper: {gaps:?}"
        );
    }
}

/// `--tree` drawn as a table with a filter: a call whose caller the filter leaves
/// out starts at the margin, not under whichever shown call came before it.
#[test]
fn a_filtered_tree_draws_each_call_under_its_own_caller() {
    let interp = &matrix()[0];
    let dir = temp_dir("exact-filtered-tree");
    std::fs::write(
        dir.join("helper.py"),
        "def setup():\n    return 1\n\ndef work():\n    return 2\n\nsetup()\n",
    )
    .expect("write helper");
    let path = dir.join("main.py");
    std::fs::write(
        &path,
        "import helper\n\ndef main():\n    helper.work()\n\nmain()\n",
    )
    .expect("write the program");
    let trace = dir.join("t.parquet");
    let out = record_file(
        interp,
        &path,
        &trace,
        &["--include", "__main__", "--include", "helper"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = Command::new(tracer_bin())
        .arg("query")
        .arg(&trace)
        .args(["--tree", "--module", "helper", "--format", "table"])
        .output()
        .expect("run tracer query");
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let text = String::from_utf8_lossy(&table.stdout);
    let drawn: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.split("  ").next().unwrap_or_default())
        .collect();
    assert_eq!(
        drawn,
        ["helper.<module>", "└─ helper.setup", "helper.work"],
        "{text}"
    );
}

/// A program that closes the descriptors it inherited (a daemon's
/// `os.closerange(3, ...)`) frees the number of the hook's socket, and its next
/// socket or file takes it. The hook never sends into, reads from or closes what now
/// holds that number: it lets its socket go and stops. Before, the program's own
/// socket received the hook's event batches, and its file was closed under it
/// (`f.close()` failed with EBADF, exit code 1).
#[test]
fn a_program_that_closes_inherited_descriptors_keeps_its_own_files() {
    const PROGRAM: &str = r#"
import os, socket, sys, time

def work(i):
    return i * i

def main():
    os.closerange(3, 1024)
    a, b = socket.socketpair()
    b.setblocking(False)
    path = sys.argv[0] + ".out"
    f = open(path, "w")
    for i in range(3000):
        f.write("%d\n" % work(i))
    time.sleep(0.3)
    try:
        foreign = len(b.recv(1 << 20))
    except BlockingIOError:
        foreign = 0
    f.close()
    a.close()
    b.close()
    print("bytes received", foreign, "lines", len(open(path).readlines()))

main()
"#;
    for interp in matrix() {
        let label = &interp.label;
        let dir = temp_dir(&format!("closerange-{}", label.replace('/', "_")));
        let path = dir.join("daemon.py");
        std::fs::write(&path, PROGRAM).expect("write the program");
        let plain = Command::new(&interp.path)
            .arg(&path)
            .output()
            .expect("run python");
        assert!(plain.status.success(), "{label}: {plain:?}");
        let traced = record_file(&interp, &path, &dir.join("t.parquet"), &["--include", "*"]);
        assert_eq!(
            String::from_utf8_lossy(&traced.stdout),
            String::from_utf8_lossy(&plain.stdout),
            "{label}: {}",
            String::from_utf8_lossy(&traced.stderr)
        );
        assert_eq!(traced.status.code(), Some(0), "{label}");
        let stderr = String::from_utf8_lossy(&traced.stderr);
        assert!(!stderr.contains("Error"), "{label}: {stderr}");
    }
}

/// A program that replaces itself with `os.execv` (a launcher, a re-exec; every
/// `os.exec*` raises the audit event the hook listens to) keeps the calls it made
/// before: the hook sends what is pending before the exec, as it does before
/// `os._exit`. Before, the exec took every event not yet sent with it: the trace of
/// this program was empty. An exec that fails leaves the program's traceback as it
/// is (no frame of the hook's in it).
#[test]
fn a_program_that_execs_keeps_the_calls_made_before() {
    const FAILS: &str = r#"
import os
os.execvp("no-such-program-for-the-tracer", ["no-such-program-for-the-tracer"])
"#;
    const PROGRAM: &str = r#"
import os, sys

def stage(n):
    return n * 10

if len(sys.argv) > 1:
    print("second", stage(2), flush=True)
else:
    print("first", stage(1), flush=True)
    os.execv(sys.executable, [sys.executable, sys.argv[0], "again"])
"#;
    for interp in matrix() {
        let label = &interp.label;
        let (trace, out) = record_program(&interp, "execs", PROGRAM, &[]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "first 10\nsecond 20\n",
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{label}");
        let rows = ask(
            &trace,
            &[
                "--sql",
                "SELECT kind, args, value FROM events WHERE function = 'stage' ORDER BY seq",
            ],
        );
        let rows: Vec<(String, String, String)> = rows
            .iter()
            .map(|r| {
                let text = |key: &str| r[key].as_str().unwrap_or_default().to_string();
                (text("kind"), text("args"), text("value"))
            })
            .collect();
        assert_eq!(
            rows,
            [
                (
                    "call".to_string(),
                    r#"{"n":"1"}"#.to_string(),
                    String::new()
                ),
                ("return".to_string(), String::new(), "10".to_string()),
            ],
            "{label}"
        );
        let (fails, traced) = record_program(&interp, "exec-fails", FAILS, &[]);
        let plain = Command::new(&interp.path)
            .arg(fails.with_file_name("exec-fails.py"))
            .output()
            .expect("run python");
        let stderr = String::from_utf8_lossy(&traced.stderr);
        let plain_stderr = String::from_utf8_lossy(&plain.stderr);
        assert!(
            plain_stderr.contains("FileNotFoundError") && stderr.starts_with(&*plain_stderr),
            "{label}: the program's traceback comes first, unchanged:\n{stderr}"
        );
    }
}

/// An exception group's message is its own str(), `message (N sub-exceptions)`, as
/// a TaskGroup's failure prints: it runs no class's code. Before, the group's
/// arguments were rendered instead, `('two failures', [<ValueError object at
/// 0x...>, ...])`. (3.11+: exception groups.)
#[test]
fn an_exception_group_s_message_is_its_str() {
    const PROGRAM: &str = r#"
def fails():
    raise ExceptionGroup("two failures", [ValueError("a"), TypeError("b")])

try:
    fails()
except* ValueError:
    pass
except* TypeError:
    pass
"#;
    for interp in matrix().into_iter().filter(|i| i.minor >= 11) {
        let label = &interp.label;
        let (trace, out) = record_program(&interp, "group", PROGRAM, &[]);
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows = ask(&trace, &["--exceptions"]);
        let messages: Vec<&str> = rows.iter().filter_map(|r| r["message"].as_str()).collect();
        assert_eq!(
            messages,
            ["two failures (2 sub-exceptions)"],
            "{label}: {rows:?}"
        );
    }
}

/// A generator left by a StopIteration gives its caller a RuntimeError (PEP 479), and
/// its exception row says so on every version: 3.12+ raise the RuntimeError in the
/// frame, 3.8-3.11 after its last event. Before, 3.8-3.11 said `StopIteration`.
#[test]
fn a_generator_left_by_stop_iteration_ends_by_the_runtime_error_its_caller_gets() {
    const PROGRAM: &str = r#"
def leaks():
    yield next(iter([]))

async def coro():
    raise StopIteration("c")

for f in (leaks, lambda: coro().send(None)):
    try:
        list(f()) if f is leaks else f()
    except RuntimeError as e:
        print(e)
"#;
    for interp in matrix() {
        let label = &interp.label;
        let (trace, out) = record_program(&interp, "pep479", PROGRAM, &[]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "generator raised StopIteration\ncoroutine raised StopIteration\n",
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows = ask(
            &trace,
            &[
                "--sql",
                "SELECT function, exception, value FROM events \
                 WHERE kind = 'exception' AND function IN ('leaks', 'coro') ORDER BY seq",
            ],
        );
        let rows: Vec<[&str; 3]> = rows
            .iter()
            .map(|r| ["function", "exception", "value"].map(|k| r[k].as_str().unwrap_or_default()))
            .collect();
        assert_eq!(
            rows,
            [
                ["leaks", "RuntimeError", "generator raised StopIteration"],
                ["coro", "RuntimeError", "coroutine raised StopIteration"],
            ],
            "{label}"
        );
    }
}

/// Each call's recorded time lies between the time the function measured inside
/// itself and the time its caller measured around the call (both with
/// `perf_counter_ns`), for sleeps and for work, in two threads at once, long and
/// short: what the hook stamps (on 3.12+ ticks of the time-stamp counter where the
/// kernel keeps time by it, turned into nanoseconds by the tracer) is the program's
/// own clock.
#[test]
fn a_call_s_recorded_time_is_the_time_the_program_measured() {
    let program = "import threading, time\n\
                   clock = time.perf_counter_ns\n\n\
                   def timed(kind, n):\n    start = clock()\n    \
                   if kind == 'sleep':\n        time.sleep(n / 1000)\n    \
                   else:\n        x = 0\n        for i in range(n * 20000):\n            \
                   x += i\n    return clock() - start\n\n\
                   def run(tag, out):\n    \
                   for kind, n in [('sleep', 30), ('spin', 5), ('sleep', 120), ('spin', 20), ('sleep', 2)]:\n        \
                   before = clock()\n        inner = timed(kind, n)\n        \
                   out.append((tag, inner, clock() - before))\n\n\
                   out = []\n\
                   worker = threading.Thread(target=run, args=('worker', out))\n\
                   worker.start()\nrun('main', out)\nworker.join()\n\
                   for tag, inner, outer in out:\n    print(tag, inner, outer)\n";
    for interp in matrix() {
        let label = &interp.label;
        let (trace, out) = record_program(&interp, "timed", program, &[]);
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let rows = ask(
            &trace,
            &[
                "--sql",
                "SELECT thread_name, duration_ns FROM events \
                 WHERE function = 'timed' AND kind = 'return' ORDER BY seq",
            ],
        );
        for tag in ["main", "worker"] {
            let measured: Vec<(i64, i64)> = stdout
                .lines()
                .filter_map(|line| line.strip_prefix(tag)?.strip_prefix(' '))
                .map(|rest| {
                    let (inner, outer) = rest.split_once(' ').expect("two numbers");
                    (inner.parse().expect("inner"), outer.parse().expect("outer"))
                })
                .collect();
            let recorded: Vec<i64> = rows
                .iter()
                .filter(|r| (r["thread_name"] == "MainThread") == (tag == "main"))
                .map(|r| r["duration_ns"].as_i64().expect("a duration"))
                .collect();
            assert_eq!(recorded.len(), 5, "{label} {tag}: {rows:?}");
            assert_eq!(measured.len(), 5, "{label} {tag}: {stdout}");
            for (&ns, &(inner, outer)) in recorded.iter().zip(&measured) {
                // Room for the kernel's clock being slewed (500 ppm at most) between
                // the tracer's two readings around the call, and for rounding.
                let slack = 20_000 + outer / 2000;
                assert!(
                    inner - slack <= ns && ns <= outer + slack,
                    "{label} {tag}: recorded {ns} ns, measured {inner} inside and {outer} around"
                );
            }
        }
    }
}

/// A thread renamed while it runs (`threading.current_thread().name = ...`) has its
/// new name on the rows after the change and its old one on the rows before, in the
/// main thread and in another, as sampled mode reads it (the hook looks for changed
/// names once a batch: a sleep lets a batch go between the rename and the next call).
#[test]
fn a_thread_renamed_while_it_runs_has_its_new_name_on_the_later_rows() {
    let program = "import threading, time\n\n\
                   def before():\n    return 1\n\n\
                   def after():\n    return 2\n\n\
                   def work():\n    before()\n    \
                   threading.current_thread().name = 'renamed-worker'\n    \
                   time.sleep(0.2)\n    after()\n\n\
                   t = threading.Thread(target=work, name='first-name')\n\
                   t.start()\nt.join()\n\
                   threading.current_thread().name = 'main-renamed'\n\
                   time.sleep(0.2)\nafter()\n";
    for interp in matrix() {
        let label = &interp.label;
        let (trace, out) = record_program(&interp, "rename", program, &[]);
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows = ask(
            &trace,
            &[
                "--sql",
                "SELECT function, thread_name FROM events \
                 WHERE kind = 'call' AND function IN ('before', 'after') ORDER BY seq",
            ],
        );
        let seen: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| {
                (
                    r["function"].as_str().unwrap_or_default(),
                    r["thread_name"].as_str().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("before", "first-name"),
                ("after", "renamed-worker"),
                ("after", "main-renamed")
            ],
            "{label}"
        );
    }
}

/// A call whose function starts without a CALL event (a property's getter) right after
/// a call of the same function failed before it started (a TypeError binding its
/// arguments) has its own argument and caller line: 3.12+'s native hook takes a
/// one-argument function's argument from the CALL before its start, and kept the
/// failed call's for the next start. Before, `balance(self=alice)` was recorded for
/// bob's balance, at the failed call's line.
#[test]
fn a_call_after_a_failed_call_of_the_same_function_has_its_own_argument() {
    const PROGRAM: &str = r#"
class Account:
    def __init__(self, owner):
        self.owner = owner
    def balance(self):
        return len(self.owner) * 100
    total = property(balance)

alice, bob = Account("alice"), Account("bob")
try:
    Account.balance(alice, "EUR")
except TypeError:
    pass
t = bob.total
print(hex(id(bob)), t)
"#;
    for interp in matrix() {
        let label = &interp.label;
        let (trace, out) = record_program(&interp, "failed-call", PROGRAM, &[]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let bob = stdout.split_whitespace().next().unwrap_or_default();
        assert!(stdout.ends_with(" 300\n"), "{label}: {stdout}");
        let rows = ask(
            &trace,
            &[
                "--sql",
                "SELECT args, caller_line FROM events \
                 WHERE kind = 'call' AND function = 'Account.balance'",
            ],
        );
        assert_eq!(rows.len(), 1, "{label}: {rows:?}");
        let args = rows[0]["args"].as_str().unwrap_or_default();
        assert!(
            args.contains(&format!("object at {bob}>")),
            "{label}: {args}, bob {bob}"
        );
        assert_eq!(
            rows[0]["caller_line"].as_i64(),
            Some(14),
            "{label}: {rows:?}"
        );
    }
}

/// The frames a RecursionError unwinds have exception rows that name it, the innermost
/// ones too: 3.12+'s native hook could not call its Python helper there and wrote them
/// with no exception type (the two innermost) or `<repr failed: RecursionError>`; it
/// now writes a builtin exception's type and message itself.
#[test]
fn the_frames_a_recursion_error_unwinds_name_it() {
    const PROGRAM: &str = r#"
def down(n):
    return down(n + 1)

try:
    down(0)
except RecursionError as e:
    print("caught", e)
"#;
    for interp in matrix().into_iter().filter(|i| i.minor >= 12) {
        let label = &interp.label;
        let (trace, out) = record_program(&interp, "recursion-error", PROGRAM, &[]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "caught maximum recursion depth exceeded\n",
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows = ask(
            &trace,
            &[
                "--sql",
                "SELECT COUNT(*) AS calls, \
                 COUNT(*) FILTER (WHERE kind = 'exception' AND exception = 'RecursionError' \
                   AND value = 'maximum recursion depth exceeded') AS named \
                 FROM events WHERE function = 'down' AND kind IN ('call', 'exception') \
                 GROUP BY kind ORDER BY kind",
            ],
        );
        let calls = rows[0]["calls"].as_i64().unwrap_or_default();
        assert!(calls > 900, "{label}: {rows:?}");
        assert_eq!(rows[1]["named"].as_i64(), Some(calls), "{label}: {rows:?}");
    }
}

/// A program that recurses to one frame below its recursion limit and there makes an
/// audited call (`sys._getframe`, `open`) runs as without the tracer on 3.12+: the
/// hook's audit hook (it sends what is pending before an exec) is a C function that
/// pushes no frame; a Python one made that call fail with RecursionError.
#[test]
fn an_audited_call_just_below_the_recursion_limit_runs_as_without_the_tracer() {
    const PROGRAM: &str = r#"
import sys

def go(n):
    if n == 0:
        return sys._getframe() is not None
    return go(n - 1)

def deepest():
    n = 900
    while True:
        try:
            go(n + 1)
        except RecursionError:
            return n
        n += 1

print("deepest", deepest())
"#;
    for interp in matrix().into_iter().filter(|i| i.minor >= 12) {
        let label = &interp.label;
        let (trace, traced) = record_program(&interp, "audit-depth", PROGRAM, &[]);
        let plain = Command::new(&interp.path)
            .arg(trace.with_file_name("audit-depth.py"))
            .output()
            .expect("run python");
        assert_eq!(
            String::from_utf8_lossy(&traced.stdout),
            String::from_utf8_lossy(&plain.stdout),
            "{label}"
        );
    }
}

/// A coroutine that runs on after the one it awaits came back from a throw() (an
/// awaited task cancelled, the CancelledError caught there) has a `resume` row for
/// that stretch, and the calls it then makes are its own: 3.11 resumes it without a
/// settrace `call` event, and `after()` was put under `<module>`, main's next yield lost.
#[test]
fn a_coroutine_resumed_after_a_throw_into_the_one_it_awaits_makes_its_own_calls() {
    const PROGRAM: &str = r#"
import asyncio

async def sleeper():
    await asyncio.sleep(1)

async def cancel_me():
    t = asyncio.ensure_future(sleeper())
    await asyncio.sleep(0.01)
    t.cancel()
    try:
        await t
    except asyncio.CancelledError:
        return "was-cancelled"

async def after():
    await asyncio.sleep(0)
    return 1

async def main():
    print(await cancel_me())
    await after()

asyncio.run(main())
"#;
    for interp in matrix() {
        let label = &interp.label;
        let (trace, out) = record_program(&interp, "throw-resume", PROGRAM, &[]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "was-cancelled\n",
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows = ask(
            &trace,
            &[
                "--sql",
                "SELECT kind, caller FROM events \
                 WHERE function IN ('after', 'main') AND kind IN ('call', 'yield') \
                 ORDER BY seq",
            ],
        );
        let rows: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["kind"].as_str().unwrap_or(""),
                    r["caller"].as_str().unwrap_or("")
                )
            })
            .collect();
        assert!(
            rows.contains(&"call __main__.main".to_string()),
            "{label}: after() is main's call: {rows:?}"
        );
        // main yields at the sleep, at the awaited task and in after().
        assert_eq!(
            rows.iter()
                .filter(|r| *r == "yield __main__.<module>")
                .count(),
            3,
            "{label}: {rows:?}"
        );
    }
}
