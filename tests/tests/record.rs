//! `tracer record` and `tracer attach` against real interpreters: the calls of a
//! workload with known structure and durations, the files read back by pyarrow and
//! DuckDB, and every way a recording ends.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::{
    matrix, read_trace, script, temp_dir, test_venv_python, tracer_bin, Interpreter, Target,
};
use serde_json::Value;

fn record(interp: &Interpreter, trace: &Path, extra: &[&str], script_args: &[&str]) -> Output {
    record_script(interp, trace, extra, "workload.py", script_args)
}

/// `tracer record EXTRA -o TRACE -- PYTHON tests/scripts/NAME ARGS...`.
fn record_script(
    interp: &Interpreter,
    trace: &Path,
    extra: &[&str],
    name: &str,
    script_args: &[&str],
) -> Output {
    Command::new(tracer_bin())
        .arg("record")
        .arg("-o")
        .arg(trace)
        .args(extra)
        .arg("--")
        .arg(&interp.path)
        .arg(script(name))
        .args(script_args)
        .output()
        .expect("run tracer record")
}

/// The workload's own account of its calls (the `RESULTS` line).
fn workload_records(stdout: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULTS "))
        .unwrap_or_else(|| panic!("workload printed no RESULTS: {text}"));
    serde_json::from_str::<Value>(line)
        .expect("RESULTS JSON")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn args_of(row: &Value) -> Value {
    row["args"]
        .as_str()
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or(Value::Null)
}

#[test]
fn sampled_calls_match_what_the_workload_did_on_every_interpreter() {
    let _serial = e2e::serial();
    for interp in matrix() {
        let label = &interp.label;
        let dir = temp_dir(&format!("calls-{}", label.replace('/', "_")));
        let trace = dir.join("t.parquet");
        let out = record(&interp, &trace, &["--rate", "1000"], &[]);
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (rows, run) = read_trace(&trace);
        assert_eq!(run["status"], "completed", "{label}");
        assert_eq!(run["mode"], "sampled", "{label}");
        let calls: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "call").collect();
        // A sampler can only promise to see calls longer than the gaps between its
        // samples. On a machine busy with other work it gets fewer samples than asked:
        // a call shorter than three real sampling periods may then go unseen, but
        // never be seen twice or with wrong facts.
        let ts: Vec<i64> = rows.iter().filter_map(|r| r["ts"].as_i64()).collect();
        let span = ts.iter().max().unwrap_or(&0) - ts.iter().min().unwrap_or(&0);
        let samples = run["samples"].as_i64().unwrap_or(1).max(1);
        let real_period = span / samples;
        // The longest the sampler was held off by other work on the machine: a call
        // shorter than that may fall between two samples whatever the rate.
        let held_off = run["max_sample_interval_ns"].as_i64().unwrap_or(0);
        for expected in workload_records(&out.stdout) {
            let function = expected["function"].as_str().unwrap();
            let matching: Vec<&&Value> = calls
                .iter()
                .filter(|r| r["function"] == function)
                .filter(|r| {
                    let got = args_of(r);
                    expected["args"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .all(|(k, v)| &got[k] == v)
                })
                .collect();
            let true_ns = expected["ns"].as_i64().unwrap();
            // A call that ended before the first sample (the tracer was still
            // finding the process on a busy machine) cannot be seen either.
            let first_ts = ts.iter().min().copied().unwrap_or(0);
            let ended_before_sampling = expected["end"].as_i64().is_some_and(|end| end < first_ts);
            let may_be_unseen =
                true_ns < 3 * real_period || true_ns < held_off || ended_before_sampling;
            if matching.is_empty() && may_be_unseen {
                eprintln!(
                    "{label}: {function}{} ({true_ns} ns) unseen at a real sampling period of {real_period} ns, held off up to {held_off} ns",
                    expected["args"]
                );
                continue;
            }
            assert_eq!(
                matching.len(),
                1,
                "{label}: {function}{} should appear once as a call, found {} (real sampling period {real_period} ns)",
                expected["args"],
                matching.len()
            );
            let call = matching[0];
            assert_eq!(
                call["depth"], expected["depth"],
                "{label}: depth of {function}{}",
                expected["args"]
            );
            match expected["parent"].as_str() {
                Some(parent) => {
                    let parent_row = calls
                        .iter()
                        .find(|r| r["call_id"] == call["parent_id"])
                        .unwrap_or_else(|| {
                            panic!(
                                "{label}: parent of {function}{} not found",
                                expected["args"]
                            )
                        });
                    assert_eq!(
                        parent_row["function"], parent,
                        "{label}: parent of {function}{}",
                        expected["args"]
                    );
                }
                None => assert!(
                    call["parent_id"].is_null(),
                    "{label}: {function} has no traced parent"
                ),
            }
            let end = rows
                .iter()
                .find(|r| r["call_id"] == call["call_id"] && r["kind"] == "return")
                .unwrap_or_else(|| panic!("{label}: no return for {function}{}", expected["args"]));
            // A call already running at the first sample has no upper bound (null).
            let (min, max) = (
                end["duration_ns"].as_i64().unwrap(),
                end["duration_max_ns"].as_i64().unwrap_or(i64::MAX),
            );
            // Event times are the times of the samples that saw them; on a busy machine
            // a sample's reads spread over part of a period, so allow three periods.
            let slack = 3 * real_period;
            // A thread's frame lives on while it waits for the GIL before its first clock
            // read and after its last (seen in CI: a worker 4 ms longer than it measured
            // itself), so its lower bound may exceed its own measure by a switch
            // interval at each end.
            let gil_wait = if expected["threaded"] == true {
                2 * expected["switch_interval_ns"].as_i64().unwrap()
            } else {
                0
            };
            assert!(
                min <= true_ns + slack + gil_wait && true_ns <= max.saturating_add(slack),
                "{label}: {function}{} took {true_ns} ns, outside [{min}, {max}]",
                expected["args"]
            );
        }
        let gaps: Vec<&Value> = rows
            .iter()
            .filter(|r| {
                r["kind"] == "gap" && r["caller"].as_str().is_some_and(|c| c.ends_with("encode"))
            })
            .collect();
        assert!(
            gaps.iter().any(
                |g| g["module"].as_str().is_some_and(|m| m.starts_with("json"))
                    && g["count"].as_u64() >= Some(1)
            ),
            "{label}: a gap row for json under encode, got {gaps:?}"
        );
        assert!(
            !calls.iter().any(|r| r["module"]
                .as_str()
                .is_some_and(|m| m.starts_with("json") || m == "threading")),
            "{label}: library code is not traced by default"
        );
    }
}

#[test]
fn a_top_level_loop_calling_one_function_gives_a_call_per_iteration() {
    let _serial = e2e::serial();
    for interp in matrix() {
        let label = &interp.label;
        let dir = temp_dir(&format!("module-loop-{}", label.replace('/', "_")));
        let trace = dir.join("t.parquet");
        let out = record_script(&interp, &trace, &[], "module_loop.py", &[]);
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "done 40\n", "{label}");
        let (rows, _) = read_trace(&trace);
        let calls = |function: &str| -> Vec<String> {
            rows.iter()
                .filter(|r| r["kind"] == "call" && r["function"] == function)
                .map(|r| args_of(r).to_string())
                .collect()
        };
        let jobs: Vec<String> = (0..12).map(|j| format!("{{\"job\":\"{j}\"}}")).collect();
        assert_eq!(calls("process"), jobs, "{label}: one call per job");
        assert_eq!(
            calls("touch"),
            ["{\"rounds\":\"40\"}"],
            "{label}: binding a global is no new call"
        );
    }
}

#[test]
fn include_traces_library_code_and_exclude_drops_program_code() {
    let _serial = e2e::serial();
    let interp = &matrix()[0];
    let dir = temp_dir("include");
    let trace = dir.join("t.parquet");
    let out = record(
        interp,
        &trace,
        &[
            "--include",
            "json*",
            "--include",
            "__main__",
            "--exclude",
            "__main__",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (rows, _) = read_trace(&trace);
    let calls: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "call").collect();
    assert!(
        calls
            .iter()
            .any(|r| r["module"].as_str().is_some_and(|m| m.starts_with("json"))),
        "json traced"
    );
    assert!(
        !calls.iter().any(|r| r["module"] == "__main__"),
        "__main__ excluded"
    );
}

#[test]
fn the_trace_reads_in_duckdb_with_the_documented_columns_and_types() {
    let _serial = e2e::serial();
    let interp = &matrix()[0];
    let dir = temp_dir("duckdb");
    let trace = dir.join("t.parquet");
    let out = record(interp, &trace, &[], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&trace)
        .expect("trace exists")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "trace files hold argument values: owner only");
    assert!(
        !dir.join("t.parquet.parts").exists(),
        "segments merged on a clean stop"
    );
    let code = r#"
import duckdb, json, sys
con = duckdb.connect()
cols = con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [sys.argv[1]]).fetchall()
kinds = con.execute("SELECT DISTINCT kind FROM read_parquet(?) ORDER BY 1", [sys.argv[1]]).fetchall()
print(json.dumps({"cols": [[c[0], c[1]] for c in cols], "kinds": [k[0] for k in kinds]}))
"#;
    let out = Command::new(test_venv_python())
        .arg("-c")
        .arg(code)
        .arg(&trace)
        .output()
        .expect("duckdb");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cols: Vec<(String, String)> = v["cols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c[0].as_str().unwrap().to_string(),
                c[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("run_id", "VARCHAR"),
        ("pid", "INTEGER"),
        ("tid", "BIGINT"),
        ("thread_name", "VARCHAR"),
        ("seq", "UBIGINT"),
        ("ts", "TIMESTAMPTZ_NS"),
        ("kind", "VARCHAR"),
        ("source", "VARCHAR"),
        ("call_id", "UBIGINT"),
        ("parent_id", "UBIGINT"),
        ("depth", "INTEGER"),
        ("function", "VARCHAR"),
        ("module", "VARCHAR"),
        ("file", "VARCHAR"),
        ("line", "INTEGER"),
        ("caller", "VARCHAR"),
        ("caller_line", "INTEGER"),
        ("args", "VARCHAR"),
        ("value", "VARCHAR"),
        ("exception", "VARCHAR"),
        ("duration_ns", "BIGINT"),
        ("duration_max_ns", "BIGINT"),
        ("count", "UINTEGER"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(cols, expected);
    assert_eq!(v["kinds"], serde_json::json!(["call", "gap", "return"]));
}

/// The run says the Python the program ran, micro version included, even for a
/// program traced from its first milliseconds (before 3.11 the micro is read from a
/// string the interpreter writes while it starts; read too early it was 3.9.0).
#[test]
fn a_run_names_the_python_version_the_program_ran() {
    for interp in matrix() {
        let label = &interp.label;
        let own = Command::new(&interp.path)
            .args(["-c", "import platform; print(platform.python_version())"])
            .output()
            .expect("run python");
        let own = String::from_utf8_lossy(&own.stdout).trim().to_string();
        let dir = temp_dir(&format!("version-{}", label.replace('/', "_")));
        for attempt in 0..3 {
            let trace = dir.join(format!("t{attempt}.parquet"));
            let out = Command::new(tracer_bin())
                .arg("record")
                .arg("-o")
                .arg(&trace)
                .arg("--")
                .arg(&interp.path)
                .args(["-c", "import time; time.sleep(0.05)"])
                .output()
                .expect("run tracer record");
            assert!(out.status.success(), "{label}");
            let (_, run) = read_trace(&trace);
            assert_eq!(
                run["python_version"],
                own.as_str(),
                "{label}, run {attempt}"
            );
        }
    }
}

/// A stack 5000 frames deep is recorded whole: deeper than the kernel's 1024
/// ranges of one batched read (every read of it failed, and the trace held none of
/// its calls) and than the 4096 frames a stack once had at most before it was taken
/// for garbage.
#[test]
fn a_stack_five_thousand_frames_deep_is_recorded() {
    let _serial = e2e::serial();
    for interp in matrix() {
        let label = &interp.label;
        let dir = temp_dir(&format!("deep-stack-{}", label.replace('/', "_")));
        let trace = dir.join("t.parquet");
        let out = record_script(&interp, &trace, &[], "deep_stack.py", &["5000", "2"]);
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (rows, run) = read_trace(&trace);
        let walks: Vec<i64> = rows
            .iter()
            .filter(|r| r["kind"] == "call" && r["function"] == "walk")
            .filter_map(|r| r["depth"].as_i64())
            .collect();
        assert_eq!(walks.len(), 5001, "{label}: calls of walk");
        assert_eq!(walks.iter().max(), Some(&5001), "{label}: the deepest call");
        let (samples, errors) = (
            run["samples"].as_u64().unwrap_or(0),
            run["sample_errors"].as_u64().unwrap_or(0),
        );
        // Samples taken while the recursion goes down or comes back may fail (a
        // debug build reads 5000 frames in tens of milliseconds); the ones at the
        // bottom may not.
        assert!(
            errors * 4 < samples,
            "{label}: {errors} of {samples} samples failed"
        );
    }
}

/// Sampled arguments are values the call was given: with the tracer and the
/// program on different cores, an argument read as the program freed it and reused
/// its memory for the next call's `i * i` was recorded as `work(i=1006221841)`, and
/// a frame read after it returned as `work()`. An argument that cannot be read
/// twice the same is left out (null), never wrong.
#[test]
fn sampled_arguments_are_never_another_calls_values() {
    let _serial = e2e::serial();
    for interp in matrix() {
        let label = &interp.label;
        let (trace, out) = record_across_cores(&interp, "arg-churn", &["arg_churn.py"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let made: i64 = stdout
            .trim()
            .strip_prefix("calls ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{label}: the program's count in {stdout:?}"));
        let (rows, _) = read_trace(&trace);
        let calls: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "call").collect();
        let int_arg = |args: &Value, name: &str| -> Option<i64> {
            let object: Value = serde_json::from_str(args.as_str()?).ok()?;
            object[name].as_str()?.parse().ok()
        };
        // Calls this short (a few microseconds) mostly keep no arguments: other
        // tests check that arguments are there; this one that they are right.
        let works = calls.iter().filter(|r| r["function"] == "work").count();
        assert!(works > 0, "{label}: no call of work seen");
        for call in calls.iter().filter(|r| r["function"] == "work") {
            if call["args"].is_null() {
                continue;
            }
            let i = int_arg(&call["args"], "i")
                .unwrap_or_else(|| panic!("{label}: work called with {}", call["args"]));
            assert!(
                (0..made).contains(&i),
                "{label}: work(i={i}) of {made} calls"
            );
        }
        for call in calls.iter().filter(|r| r["function"] == "leaf") {
            let Some(text) = call["args"].as_str() else {
                continue;
            };
            let d: Value = serde_json::from_str(text).expect("args JSON");
            let repr = d["d"].as_str().unwrap_or_default();
            let number = |key: &str| -> Option<i64> {
                let rest = repr.split(&format!("'{key}': ")).nth(1)?;
                rest.split([',', '}']).next()?.trim().parse().ok()
            };
            if let (Some(i), Some(sq)) = (number("i"), number("sq")) {
                assert_eq!(sq, i * i + 1_000_000, "{label}: leaf({repr})");
            }
        }
    }
}

/// `tracer record -o TRACE -- PYTHON tests/scripts/SCRIPT ARGS...` (`script_and_args`:
/// the script's name, then its arguments) in a fresh folder named after `name`, with
/// the tracer pinned to one core and the program to the other, so that the program
/// changes its frames while they are read; must succeed. The trace and the output.
fn record_across_cores(
    interp: &e2e::Interpreter,
    name: &str,
    script_and_args: &[&str],
) -> (std::path::PathBuf, std::process::Output) {
    let label = &interp.label;
    let dir = temp_dir(&format!("{name}-{}", label.replace('/', "_")));
    let trace = dir.join("t.parquet");
    let out = Command::new("taskset")
        .args(["-c", "0"])
        .arg(tracer_bin())
        .args(["record", "-o"])
        .arg(&trace)
        .args(["--", "taskset", "-c", "1"])
        .arg(&interp.path)
        .arg(script(script_and_args[0]))
        .args(&script_and_args[1..])
        .output()
        .expect("run taskset tracer record");
    assert!(
        out.status.success(),
        "{label}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (trace, out)
}

/// One sampled call is one `call` row. A loop calling the same function starts each
/// call in the frame memory the last one left; a sample that saw a call at its
/// `return` read that call's arguments after the next call had taken the frame, so
/// the ended call was recorded with the next call's arguments and the next call,
/// seen at the following sample, a second time (about one run in ten of 3000 calls).
#[test]
fn a_loop_of_calls_sampled_records_each_call_once() {
    let _serial = e2e::serial();
    for interp in matrix() {
        let label = &interp.label;
        let (trace, _) = record_across_cores(&interp, "loop-calls", &["loop_calls.py", "10000"]);
        let (rows, _) = read_trace(&trace);
        let mut seen = std::collections::HashMap::new();
        for call in rows
            .iter()
            .filter(|r| r["kind"] == "call" && r["function"] == "work")
        {
            let Some(args) = call["args"].as_str() else {
                continue;
            };
            let object: Value = serde_json::from_str(args).expect("args JSON");
            let i = object["i"].as_str().unwrap_or_default().to_string();
            if let Some(first) = seen.insert(i.clone(), call["call_id"].clone()) {
                panic!(
                    "{label}: work(i={i}) recorded as call {first} and again as call {}",
                    call["call_id"]
                );
            }
        }
        assert!(
            seen.len() > 100,
            "{label}: only {} calls of work with arguments",
            seen.len()
        );
    }
}

/// Calls that C code makes one after another (`map`, `sorted(key=...)`), or a loop
/// whose variables do not change (`while q: f(q.pop())`), start in the frame memory
/// the call before left, under a caller that shows no progress: each is its own call,
/// with its own argument. They were merged into one call of the first call's
/// arguments and the time of them all.
#[test]
fn calls_a_c_function_makes_one_after_another_are_each_their_own() {
    let _serial = e2e::serial();
    for interp in matrix() {
        let label = &interp.label;
        let dir = temp_dir(&format!("callbacks-{}", label.replace('/', "_")));
        let trace = dir.join("t.parquet");
        let out = Command::new(tracer_bin())
            .args(["record", "-o"])
            .arg(&trace)
            .arg("--")
            .arg(&interp.path)
            .arg(script("callbacks.py"))
            .output()
            .expect("run tracer record");
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (rows, _) = read_trace(&trace);
        let slow_calls: Vec<&Value> = rows
            .iter()
            .filter(|r| r["function"] == "slow" && r["kind"] == "return")
            .collect();
        assert!(
            slow_calls.len() >= 8,
            "{label}: {} calls of slow seen of 10",
            slow_calls.len()
        );
        for call in &slow_calls {
            let ms = call["duration_ns"].as_i64().unwrap_or_default() / 1_000_000;
            assert!(
                ms < 140,
                "{label}: a call of slow lasting {ms} ms (each sleeps 80 ms): calls merged"
            );
        }
        let mut args: Vec<String> = rows
            .iter()
            .filter(|r| r["function"] == "slow" && r["kind"] == "call")
            .filter_map(|r| r["args"].as_str().map(str::to_string))
            .collect();
        let total = args.len();
        args.sort();
        args.dedup();
        assert_eq!(args.len(), total, "{label}: an argument seen on two calls");
    }
}

/// A command started with SIGINT and SIGTERM ignored (a script's background job,
/// `trap '' INT TERM`) still has them ignored under the tracer, in both modes.
#[test]
fn signals_the_command_inherits_ignored_stay_ignored() {
    let interp = &matrix()[0];
    let dir = temp_dir("ignored-signals");
    let program =
        "import signal; print(signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))";
    let shell = |traced: &str| -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("trap '' INT TERM; exec {traced} \"$0\" -c \"$1\""))
            .arg(&interp.path)
            .arg(program)
            .output()
            .expect("run sh");
        assert!(
            out.status.success(),
            "{traced}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let untraced = shell("");
    assert_eq!(untraced, "Handlers.SIG_IGN Handlers.SIG_IGN\n");
    for (i, mode) in ["", "--exact"].into_iter().enumerate() {
        let traced = format!(
            "{} record {mode} --force -o {} --",
            tracer_bin().display(),
            dir.join(format!("t{i}.parquet")).display()
        );
        assert_eq!(shell(&traced), untraced, "tracer record {mode}");
    }
}

/// A secret given on the command line is redacted before it reaches the trace (the
/// command is in every file's `tracer.run`), in sampled and exact mode, by the
/// built-in names and by `--redact`; the program still gets it.
#[test]
fn secrets_on_the_command_line_are_not_written() {
    let interp = &matrix()[0];
    let dir = temp_dir("command-secrets");
    for (i, mode) in [&[][..], &["--exact"][..]].into_iter().enumerate() {
        let trace = dir.join(format!("t{i}.parquet"));
        let out = Command::new(tracer_bin())
            .arg("record")
            .args(mode)
            .args(["--redact", "pin", "-o"])
            .arg(&trace)
            .arg("--")
            .arg(&interp.path)
            .args([
                "-c",
                "import sys; print(sys.argv[1:])",
                "--password=hunter2",
                "--api-key",
                "sesame42",
                "--pin",
                "9876",
                "--name",
                "visible",
            ])
            .output()
            .expect("run tracer record");
        assert!(
            out.status.success(),
            "{mode:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "['--password=hunter2', '--api-key', 'sesame42', '--pin', '9876', '--name', 'visible']\n",
            "{mode:?}: the program's own arguments are untouched"
        );
        let (_, run) = read_trace(&trace);
        let command: Vec<&str> = run["command"]
            .as_array()
            .expect("command")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            command[1..],
            [
                "-c",
                "import sys; print(sys.argv[1:])",
                "--password=[REDACTED]",
                "--api-key",
                "[REDACTED]",
                "--pin",
                "[REDACTED]",
                "--name",
                "visible"
            ],
            "{mode:?}"
        );
        let bytes = std::fs::read(&trace).expect("trace");
        for secret in ["hunter2", "sesame42", "9876"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{mode:?}: {secret} is in the trace file"
            );
        }
    }
}

/// Every row of a named thread carries its name, the first call included (it was
/// read up to 50 ms after the thread started, and `--thread NAME` missed the calls
/// seen before).
#[test]
fn every_row_of_a_named_thread_carries_its_name() {
    for interp in matrix() {
        let label = &interp.label;
        let dir = temp_dir(&format!("named-threads-{}", label.replace('/', "_")));
        let trace = dir.join("t.parquet");
        let out = record_script(&interp, &trace, &[], "named_threads.py", &[]);
        assert!(out.status.success(), "{label}");
        let (rows, _) = read_trace(&trace);
        let workers: Vec<&Value> = rows
            .iter()
            .filter(|r| r["function"] == "worker" && r["kind"] == "call")
            .collect();
        assert_eq!(workers.len(), 8, "{label}: {workers:?}");
        let mut names: Vec<&str> = workers
            .iter()
            .map(|r| r["thread_name"].as_str().unwrap_or("(none)"))
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["s0", "s1", "s2", "s3", "w0", "w1", "w2", "w3"],
            "{label}: a thread that took an ended one's ident kept its name"
        );
        // Every row of a thread carries that thread's name.
        let name_of: std::collections::HashMap<String, &Value> = workers
            .iter()
            .map(|r| (r["tid"].to_string(), &r["thread_name"]))
            .collect();
        let misnamed: Vec<&Value> = rows
            .iter()
            .filter(|r| r["function"] == "leaf")
            .filter(|r| name_of.get(&r["tid"].to_string()) != Some(&&r["thread_name"]))
            .collect();
        assert!(
            misnamed.is_empty(),
            "{label}: rows of leaf without their thread's name: {misnamed:?}"
        );
    }
}

#[test]
fn a_child_that_exits_non_zero_gives_its_exit_code_and_status_failed() {
    let _serial = e2e::serial();
    let interp = &matrix()[0];
    let dir = temp_dir("exitcode");
    let trace = dir.join("t.parquet");
    let out = record(interp, &trace, &[], &["3"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, run) = read_trace(&trace);
    assert_eq!(run["status"], "failed");
    assert_eq!(run["exit_code"], 3);
}

#[test]
fn timeout_stops_the_child_prints_its_stacks_and_keeps_unfinished_calls() {
    let _serial = e2e::serial();
    let interp = &matrix()[0];
    let dir = temp_dir("timeout");
    let trace = dir.join("t.parquet");
    // Three seconds: on a loaded machine the interpreter may take most of a second to
    // reach spin_for, and the sampler must see it running before the timeout.
    let out = Command::new(tracer_bin())
        .args(["record", "--timeout", "3", "--redact", "mykey", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(&interp.path)
        .arg(script("long_workload.py"))
        .args(["30", "--mykey=MK_SECRET"])
        .output()
        .expect("run tracer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(124), "{stderr}");
    // The stacks' header names the command with the run's --redact names applied.
    assert!(
        stderr.contains("--mykey=[REDACTED]") && !stderr.contains("MK_SECRET"),
        "{stderr}"
    );
    assert!(
        stderr.contains("where every thread was") && stderr.contains("spin_for ("),
        "{stderr}"
    );
    let (rows, run) = read_trace(&trace);
    assert_eq!(run["status"], "timeout");
    assert!(
        rows.iter()
            .any(|r| r["kind"] == "unfinished" && r["function"] == "spin_for"),
        "unfinished call at the timeout"
    );
}

fn spawn_tracer(args: &[&str], trace: &Path, command: &[&Path]) -> std::process::Child {
    Command::new(tracer_bin())
        .args(args)
        .arg("-o")
        .arg(trace)
        .arg("--")
        .args(command)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tracer")
}

#[test]
fn sigint_to_the_tracer_is_forwarded_and_the_trace_is_complete() {
    let _serial = e2e::serial();
    let interp = &matrix()[0];
    let dir = temp_dir("sigint");
    let trace = dir.join("t.parquet");
    let long = script("long_workload.py");
    let mut tracer = spawn_tracer(&["record"], &trace, &[&interp.path, &long]);
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(tracer.id() as i32, libc::SIGINT) };
    let status = tracer.wait().expect("wait tracer");
    assert_eq!(
        status.code(),
        Some(130),
        "Python exits 130 on an uncaught KeyboardInterrupt"
    );
    let (rows, run) = read_trace(&trace);
    assert_eq!(run["status"], "interrupted");
    assert!(rows.iter().any(|r| r["function"] == "spin_for"));
}

#[test]
fn sigkill_mid_run_keeps_all_but_the_last_second_of_events() {
    let _serial = e2e::serial();
    let interp = &matrix()[0];
    let dir = temp_dir("sigkill");
    let trace = dir.join("t.parquet");
    let long = script("long_workload.py");
    let start = Instant::now();
    let mut tracer = spawn_tracer(&["record"], &trace, &[&interp.path, &long, Path::new("10")]);
    std::thread::sleep(Duration::from_secs(5));
    let killed_after = start.elapsed();
    let _ = tracer.kill();
    let _ = tracer.wait();
    let parts = dir.join("t.parquet.parts");
    assert!(parts.is_dir(), "segments survive a SIGKILL");
    let (rows, run) = read_trace(&parts.join("*.parquet"));
    assert_eq!(run["status"], "unfinished");
    let ts: Vec<i64> = rows.iter().filter_map(|r| r["ts"].as_i64()).collect();
    let (first, last) = (
        ts.iter().min().copied().unwrap(),
        ts.iter().max().copied().unwrap(),
    );
    let covered = Duration::from_nanos((last - first) as u64);
    assert!(
        covered + Duration::from_millis(1500)
            >= killed_after.saturating_sub(Duration::from_millis(500)),
        "events cover {covered:?} of a run killed after {killed_after:?}"
    );
    // The workload prints nothing; end it (the tracer is gone, the child lives on).
    let _ = Command::new("pkill")
        .arg("-f")
        .arg(long.to_str().unwrap())
        .status();
}

#[test]
fn attach_stops_at_duration_and_at_target_exit() {
    let _serial = e2e::serial();
    let interp = &matrix()[0];
    let dir = temp_dir("attach");
    let mut target = Target::start(&interp.path, &script("long_workload.py"), &["12"]);
    target.wait_for("READY", Duration::from_secs(20));
    let trace = dir.join("duration.parquet");
    let out = e2e::attach_sampled(target.pid(), "1", &trace);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (rows, run) = read_trace(&trace);
    assert_eq!(run["status"], "duration_reached");
    assert!(rows.iter().any(|r| r["function"] == "spin_for"));

    let trace = dir.join("exit.parquet");
    let out = Command::new(tracer_bin())
        .args(["attach", "--pid", &target.pid().to_string(), "-o"])
        .arg(&trace)
        .output()
        .expect("run tracer attach");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, run) = read_trace(&trace);
    assert_eq!(run["status"], "target_exited");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(
        report.contains("status target_exited") && report.contains("tracer query"),
        "{report}"
    );
}

/// A sampled attach to a process that execs another program ends there, as at an
/// exit: it went on reading the old interpreter's addresses until the new program
/// exited (thousands of sample errors), and `before` "returned" seconds after the
/// exec.
#[test]
fn attach_ends_when_the_target_execs_another_program() {
    let _serial = e2e::serial();
    let interp = &matrix()[0];
    let dir = temp_dir("attach-exec");
    let mut target = Target::start(&interp.path, &script("execs_away.py"), &[]);
    target.wait_for("READY", Duration::from_secs(20));
    let trace = dir.join("t.parquet");
    let started = Instant::now();
    let out = Command::new(tracer_bin())
        .args(["attach", "--pid", &target.pid().to_string(), "-o"])
        .arg(&trace)
        .output()
        .expect("run tracer attach");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The exec comes 1.5 s after READY; `sleep 5` ends 5 s later.
    assert!(took < Duration::from_secs(4), "attach ran {took:?}");
    let (rows, run) = read_trace(&trace);
    assert_eq!(run["status"], "target_exited");
    let ended = rows
        .iter()
        .find(|r| r["function"] == "before" && r["kind"] == "return")
        .unwrap_or_else(|| panic!("before ended: {rows:?}"));
    let ran = ended["duration_ns"].as_i64().expect("a duration");
    assert!(ran < 2_500_000_000, "before ran {ran} ns");
    let (samples, errors) = (
        run["samples"].as_u64().unwrap_or(0),
        run["sample_errors"].as_u64().unwrap_or(0),
    );
    assert!(
        errors * 10 < samples,
        "{errors} of {samples} samples failed"
    );
}

/// Records `subprocesses.py` under `interp`, with `extra` options.
fn record_subprocesses(interp: &Interpreter, name: &str, extra: &[&str]) -> (Vec<Value>, Value) {
    let dir = temp_dir(name);
    let trace = dir.join("t.parquet");
    let out = Command::new(tracer_bin())
        .arg("record")
        .args(extra)
        .arg("-o")
        .arg(&trace)
        .arg("--")
        .arg(&interp.path)
        .arg(script("subprocesses.py"))
        .output()
        .expect("run tracer record");
    assert!(
        out.status.success(),
        "{}: {}",
        interp.label,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[0, 1, 4, 9, 16, 25]\n7\n",
        "{}: the program's output is its own",
        interp.label
    );
    read_trace(&trace)
}

#[test]
fn subprocesses_traces_pool_workers_and_subprocess_children_into_one_run() {
    let _serial = e2e::serial();
    for interp in matrix() {
        let label = &interp.label;
        let (rows, run) = record_subprocesses(&interp, "subprocesses", &["--subprocesses"]);
        assert_eq!(run["subprocesses"], true, "{label}");
        let parent = run["pid"].as_i64().unwrap();
        let calls: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "call").collect();
        let pids_of = |function: &str| -> std::collections::BTreeSet<i64> {
            calls
                .iter()
                .filter(|r| r["function"] == function)
                .filter_map(|r| r["pid"].as_i64())
                .collect()
        };
        let workers = pids_of("square");
        assert!(
            !workers.is_empty() && !workers.contains(&parent),
            "{label}: square runs in pool workers, not pid {parent}: {workers:?}"
        );
        let children = pids_of("child_work");
        assert_eq!(children.len(), 1, "{label}: child_work in one child");
        assert!(!children.contains(&parent), "{label}");
        // Each worker works through its share of 6 tasks of 200 ms: at least the
        // tasks started after the worker was found are seen, none twice.
        let squares: Vec<String> = calls
            .iter()
            .filter(|r| r["function"] == "square")
            .map(|r| r["args"].as_str().unwrap_or("").to_string())
            .collect();
        let distinct: std::collections::BTreeSet<&String> = squares.iter().collect();
        assert_eq!(distinct.len(), squares.len(), "{label}: {squares:?}");
        assert!(squares.len() >= 3, "{label}: {squares:?}");
        // One run: call ids unique across processes, parents in the same process.
        let ids: std::collections::BTreeSet<u64> =
            calls.iter().filter_map(|r| r["call_id"].as_u64()).collect();
        assert_eq!(
            ids.len(),
            calls.len(),
            "{label}: call ids unique in the run"
        );
        for call in &calls {
            if let Some(parent_id) = call["parent_id"].as_u64() {
                let parent_row = calls
                    .iter()
                    .find(|r| r["call_id"].as_u64() == Some(parent_id))
                    .unwrap_or_else(|| panic!("{label}: parent of {call} missing"));
                assert_eq!(parent_row["pid"], call["pid"], "{label}: {call}");
            }
        }
        let seqs: Vec<u64> = rows.iter().filter_map(|r| r["seq"].as_u64()).collect();
        let unique: std::collections::BTreeSet<u64> = seqs.iter().copied().collect();
        assert_eq!(unique.len(), seqs.len(), "{label}: seq unique in the run");
    }
}

#[test]
fn without_subprocesses_only_the_first_python_process_is_traced() {
    let _serial = e2e::serial();
    let interp = &matrix()[0];
    let (rows, run) = record_subprocesses(interp, "no-subprocesses", &[]);
    let parent = run["pid"].as_i64();
    assert!(
        rows.iter().all(|r| r["pid"].as_i64() == parent),
        "{}: rows of other processes without --subprocesses",
        interp.label
    );
}
