//! `tracer export` on real traces of tests/scripts/workload.py, opened by real readers:
//! the SVG flame graph by Python's XML parser, the Chrome trace-event JSON by a check
//! written from the Trace Event Format document, and both JSON formats by speedscope
//! (its npm package) in headless Chromium.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::browser::{open_page, speedscope_release, speedscope_url};
use e2e::{pyenv_interpreter, record_script, run_python, test_venv_python, tracer_bin, Recording};
use serde_json::Value;

/// Records workload.py with CPython 3.`minor`. Recordings are made one at a time: a
/// sampler starved of CPU by a parallel test misses calls on a 2-core machine.
fn record_workload(minor: u8, name: &str) -> Recording {
    let _serial = e2e::serial();
    let python = pyenv_interpreter(minor)
        .unwrap_or_else(|| panic!("CPython 3.{minor} is missing: `pyenv install 3.{minor}`"));
    record_script(
        &python.path,
        "workload.py",
        &[],
        &format!("{name}-3.{minor}"),
    )
}

/// The functions workload.py says it ran, as `__main__.<name>`.
fn workload_functions(run: &Recording) -> BTreeSet<String> {
    let records = run
        .printed("RESULTS ")
        .unwrap_or_else(|| panic!("workload.py printed no RESULTS: {}", run.stdout));
    let names: BTreeSet<String> = records
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["function"].as_str())
        .map(|f| format!("__main__.{f}"))
        .collect();
    assert!(names.len() >= 6, "too few functions in {records}");
    names
}

/// The rows of `tracer query TRACE --threads` (ordered by first event).
fn thread_rows(trace: &Path) -> Vec<Value> {
    let out = Command::new(tracer_bin())
        .arg("query")
        .arg(trace)
        .args(["--threads", "--format", "json"])
        .output()
        .expect("run tracer query");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    answer["rows"].as_array().cloned().unwrap_or_default()
}

/// The thread names the trace knows, and how many threads it has.
fn thread_names(trace: &Path) -> (BTreeSet<String>, usize) {
    let rows = thread_rows(trace);
    let names = rows
        .iter()
        .filter_map(|r| r["thread_name"].as_str().map(str::to_string))
        .collect();
    (names, rows.len())
}

/// The OS thread id of the thread that started last.
fn last_thread_tid(trace: &Path) -> i64 {
    thread_rows(trace)
        .last()
        .and_then(|row| row["tid"].as_i64())
        .expect("a thread")
}

/// Runs `tracer export TRACE --format F -o OUT extra...`; returns OUT.
fn export(trace: &Path, format: &str, out: &Path, extra: &[&str]) -> PathBuf {
    let output = Command::new(tracer_bin())
        .arg("export")
        .arg(trace)
        .args(["--format", format, "-o"])
        .arg(out)
        .args(extra)
        .output()
        .expect("run tracer export");
    assert!(
        output.status.success(),
        "tracer export --format {format}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        out.display().to_string(),
        "export prints the path it wrote"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out)
        .expect("the export exists")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "exports hold argument values: mode 0600"
    );
    out.to_path_buf()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read the export");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Each call's start (call row ts, ns) and duration_ns by call id, read from the
/// trace itself with `tracer query --sql`.
fn calls_by_id(trace: &Path) -> HashMap<u64, (i64, i64)> {
    let out = Command::new(tracer_bin())
        .arg("query")
        .arg(trace)
        .args([
            "--format",
            "json",
            "--sql",
            "SELECT c.call_id, CAST(c.ts AS BIGINT) AS start_ns, e.duration_ns \
             FROM events c JOIN events e ON e.call_id = c.call_id \
               AND e.kind IN ('return', 'exception', 'unfinished') \
             WHERE c.kind = 'call'",
        ])
        .output()
        .expect("run tracer query");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    answer["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r["call_id"].as_u64()?,
                (r["start_ns"].as_i64()?, r["duration_ns"].as_i64()?),
            ))
        })
        .collect()
}

#[test]
fn flame_graph_svg_parses_as_xml_and_names_the_workload_functions() {
    for minor in [8, 13] {
        let run = record_workload(minor, "export-svg");
        let svg = export(&run.trace, "flamegraph", &run.dir.join("flame.svg"), &[]);
        // Every frame's <title> is "name (N ns, P%)": parsed by Python's XML parser.
        let code = r#"
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
print(json.dumps(titles))
"#;
        let titles: Vec<String> = serde_json::from_str(&run_python(
            &test_venv_python(),
            code,
            &[&svg.to_string_lossy()],
        ))
        .expect("titles JSON");
        let frame_names: BTreeSet<String> = titles
            .iter()
            .filter_map(|t| t.rsplit_once(" (").map(|(name, _)| name.to_string()))
            .collect();
        for function in workload_functions(&run) {
            assert!(
                frame_names.contains(&function),
                "3.{minor}: {function} is not a frame of the flame graph; frames: {frame_names:?}"
            );
        }
        assert!(
            frame_names.contains("json.dumps (untraced)"),
            "3.{minor}: encode's calls into json.dumps are an untraced frame: {frame_names:?}"
        );
        assert!(
            titles
                .iter()
                .any(|t| t.starts_with("all (") && t.contains(" ns, 100%)")),
            "3.{minor}: the graph is weighted in ns: {titles:?}"
        );

        // --thread keeps one thread: a worker's (the last thread to start).
        let worker_tid = last_thread_tid(&run.trace).to_string();
        let worker = export(
            &run.trace,
            "flamegraph",
            &run.dir.join("worker.svg"),
            &["--thread", &worker_tid],
        );
        let text = std::fs::read_to_string(worker).expect("read svg");
        assert!(
            text.contains("__main__.worker"),
            "3.{minor}: thread {worker_tid} runs worker"
        );
        assert!(
            !text.contains("__main__.outer"),
            "3.{minor}: outer runs on the main thread, not {worker_tid}"
        );
    }
}

/// A complete event's start and end (microseconds) and name.
type Slice = (f64, f64, String);

/// Checks a Chrome trace-event JSON against the Trace Event Format document: the
/// JSON Object Format with `traceEvents`; every event has `name`, `ph`, `pid`,
/// `tid`; complete events (`X`) have a numeric `ts` and `dur` in microseconds and
/// nest per thread; begin/end events (`B`/`E`) balance per thread; metadata events
/// (`M`) name processes and threads with `args.name`. Returns the X events.
fn check_trace_event_format(trace: &Value) -> Vec<Value> {
    let events = trace["traceEvents"]
        .as_array()
        .expect("JSON Object Format: a traceEvents array");
    if let Some(unit) = trace.get("displayTimeUnit") {
        assert!(
            matches!(unit.as_str(), Some("ms" | "ns")),
            "displayTimeUnit {unit}"
        );
    }
    let mut complete: Vec<Value> = Vec::new();
    let mut open: HashMap<(i64, i64), Vec<String>> = HashMap::new();
    for event in events {
        let ph = event["ph"]
            .as_str()
            .unwrap_or_else(|| panic!("no ph: {event}"));
        assert!(event["name"].is_string(), "every event has a name: {event}");
        assert!(event["pid"].is_i64(), "pid is an integer: {event}");
        assert!(event["tid"].is_i64(), "tid is an integer: {event}");
        let key = (
            event["pid"].as_i64().unwrap_or(0),
            event["tid"].as_i64().unwrap_or(0),
        );
        match ph {
            "X" => {
                let ts = event["ts"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("X without ts: {event}"));
                let dur = event["dur"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("X without dur: {event}"));
                assert!(ts >= 0.0 && dur >= 0.0, "negative time: {event}");
                if let Some(args) = event.get("args") {
                    assert!(args.is_object(), "args is an object: {event}");
                }
                complete.push(event.clone());
            }
            "B" => {
                assert!(event["ts"].is_number(), "B without ts: {event}");
                open.entry(key).or_default().push(event["name"].to_string());
            }
            "E" => {
                assert!(event["ts"].is_number(), "E without ts: {event}");
                assert!(
                    open.entry(key).or_default().pop().is_some(),
                    "E without a B on its thread: {event}"
                );
            }
            "M" => {
                let name = event["name"].as_str().unwrap_or_default();
                assert!(
                    matches!(
                        name,
                        "process_name"
                            | "thread_name"
                            | "process_sort_index"
                            | "thread_sort_index"
                            | "process_labels"
                    ),
                    "unknown metadata event {name}"
                );
                assert!(event["args"].is_object(), "metadata args: {event}");
            }
            other => panic!("unexpected phase {other:?} in {event}"),
        }
    }
    for (thread, stack) in &open {
        assert!(
            stack.is_empty(),
            "unbalanced B events on {thread:?}: {stack:?}"
        );
    }
    // Complete events nest per thread: sorted by start (longest first on ties), each
    // lies inside the enclosing one or after it ends.
    let mut by_thread: HashMap<(i64, i64), Vec<Slice>> = HashMap::new();
    for event in &complete {
        let key = (
            event["pid"].as_i64().unwrap_or(0),
            event["tid"].as_i64().unwrap_or(0),
        );
        let ts = event["ts"].as_f64().unwrap_or(0.0);
        let end = ts + event["dur"].as_f64().unwrap_or(0.0);
        by_thread
            .entry(key)
            .or_default()
            .push((ts, end, event["name"].to_string()));
    }
    const EPSILON_US: f64 = 1e-3;
    for (thread, mut slices) in by_thread {
        slices.sort_by(|a, b| a.0.total_cmp(&b.0).then(b.1.total_cmp(&a.1)));
        let mut stack: Vec<Slice> = Vec::new();
        for slice in slices {
            while stack
                .last()
                .is_some_and(|top| slice.0 >= top.1 - EPSILON_US && slice.1 > top.1)
            {
                stack.pop();
            }
            if let Some(top) = stack.last() {
                assert!(
                    slice.1 <= top.1 + EPSILON_US,
                    "thread {thread:?}: {} [{}, {}] overlaps {} [{}, {}] without nesting",
                    slice.2,
                    slice.0,
                    slice.1,
                    top.2,
                    top.0,
                    top.1
                );
            }
            stack.push(slice);
        }
    }
    complete
}

#[test]
fn chrome_trace_follows_the_trace_event_format_with_args_and_thread_names() {
    for minor in [8, 13] {
        let run = record_workload(minor, "export-chrome");
        let path = export(&run.trace, "chrome", &run.dir.join("trace.json"), &[]);
        let trace = read_json(&path);
        let complete = check_trace_event_format(&trace);

        let names: BTreeSet<String> = complete
            .iter()
            .filter_map(|e| e["name"].as_str().map(str::to_string))
            .collect();
        for function in workload_functions(&run) {
            assert!(
                names.contains(&function),
                "3.{minor}: no slice of {function}; the recording's report:\n{}",
                run.report
            );
        }

        // Metadata events name each thread whose name the trace knows.
        let (known, threads) = thread_names(&run.trace);
        assert!(threads >= 3, "3.{minor}: the main thread and two workers");
        assert!(known.contains("MainThread"), "3.{minor}: {known:?}");
        let named: BTreeSet<String> = trace["traceEvents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
            .filter_map(|e| e["args"]["name"].as_str().map(str::to_string))
            .collect();
        assert_eq!(
            named, known,
            "3.{minor}: thread_name events name the known threads"
        );

        // Arguments on every slice of leaf: n, as the program passed it.
        let records = run.printed("RESULTS ").expect("RESULTS");
        let leaf_args: BTreeSet<String> = records
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["function"] == "leaf")
            .filter_map(|r| r["args"]["n"].as_str().map(str::to_string))
            .collect();
        let sliced: BTreeSet<String> = complete
            .iter()
            .filter(|e| e["name"] == "__main__.leaf")
            .filter_map(|e| e["args"]["args"]["n"].as_str().map(str::to_string))
            .collect();
        assert!(
            !sliced.is_empty() && sliced.is_subset(&leaf_args),
            "3.{minor}: leaf slices carry n from {leaf_args:?}, got {sliced:?}"
        );
        // encode's argument, its outcome, and its calls into untraced json.dumps.
        let encode = complete
            .iter()
            .find(|e| e["name"] == "__main__.encode")
            .expect("an encode slice");
        assert_eq!(encode["args"]["args"]["payload"], "{'a': 1}", "3.{minor}");
        assert_eq!(encode["args"]["outcome"], "return", "3.{minor}");
        assert_eq!(
            encode["args"]["untraced_calls"][0]["function"], "json.dumps",
            "3.{minor}: {encode}"
        );

        // Times are microseconds since otherData.origin_ns: each slice starts at its
        // call row's ts and lasts its duration_ns (the sampled lower bound), unless
        // that would end it after its caller's slice. (The sampler stamps a sample when
        // its read starts and ends: a callee's bound can end a read's length after its
        // caller's, and is then cut at the caller's end.)
        let origin = trace["otherData"]["origin_ns"].as_i64().expect("origin_ns");
        let calls = calls_by_id(&run.trace);
        let (mut checked, mut uncut) = (0, 0);
        for event in &complete {
            let call_id = event["args"]["call_id"].as_u64().expect("call_id in args");
            let Some(&(start_ns, ns)) = calls.get(&call_id) else {
                continue;
            };
            let ts = event["ts"].as_f64().unwrap_or(-1.0);
            let dur = event["dur"].as_f64().unwrap_or(-1.0);
            assert!(
                (ts * 1000.0 - (start_ns - origin) as f64).abs() < 2.0,
                "3.{minor}: {} starts at {ts} us, its call at {} ns after the origin",
                event["name"],
                start_ns - origin
            );
            assert!(
                dur * 1000.0 <= ns as f64 + 1.0,
                "3.{minor}: {} lasts {dur} us, longer than its {ns} ns",
                event["name"]
            );
            assert_eq!(event["args"]["duration_ns"], ns);
            checked += 1;
            if (dur * 1000.0 - ns as f64).abs() < 1.0 {
                uncut += 1;
            }
        }
        assert!(
            uncut * 2 >= checked,
            "3.{minor}: only {uncut} of {checked} slices last their duration_ns"
        );
        assert!(checked >= 10, "3.{minor}: only {checked} slices checked");
    }
}

/// The page's text in each of speedscope's profiles (one per thread), read from its
/// Sandwich view, whose table lists the profile's functions as text.
const SANDWICH_TEXTS: &str = r#"(async () => {
  const pause = (ms) => new Promise((r) => setTimeout(r, ms));
  const texts = [];
  for (let i = 0; i < 8; i++) {
    texts.push(document.body.innerText);
    const before = document.body.innerText;
    window.dispatchEvent(new KeyboardEvent("keypress", {key: "n"}));
    await pause(400);
    if (document.body.innerText === before) break;
  }
  return texts;
})()"#;

/// Clicks speedscope's "Sandwich" tab.
const CLICK_SANDWICH: &str = r#"[...document.querySelectorAll("div, span, a")]
  .find((e) => e.textContent.trim().endsWith("Sandwich") && e.children.length < 3)
  .click()"#;

/// Opens `profile` in speedscope in headless Chromium; returns every profile's text.
fn open_in_speedscope(profile: &Path, screenshot: &Path, file_name: &str) -> Vec<String> {
    let url = speedscope_url(profile);
    // Loaded: the toolbar names the file, or the profile shown of several ("(1/4)").
    let wait = format!(
        r"document.body.innerText.includes({}) || /\(\d+\/\d+\)/.test(document.body.innerText)",
        Value::String(file_name.to_string())
    );
    let report = open_page(
        &url,
        screenshot,
        &wait,
        SANDWICH_TEXTS,
        Some(CLICK_SANDWICH),
    );
    assert!(
        report.ready,
        "speedscope did not show {file_name}: {report:?}"
    );
    assert!(
        report.errors().is_empty(),
        "speedscope reported errors loading {file_name}: {:?}",
        report.errors()
    );
    let imported = report.console.iter().any(|m| {
        m["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("Importing as"))
    });
    assert!(
        imported,
        "speedscope did not import {file_name}: {:?}",
        report.console
    );
    report
        .value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect()
}

#[test]
fn speedscope_and_chrome_exports_load_in_speedscope_with_the_functions_visible() {
    let run = record_workload(13, "export-speedscope");
    let functions = workload_functions(&run);
    let (known, threads) = thread_names(&run.trace);
    let speedscope_json = export(
        &run.trace,
        "speedscope",
        &run.dir.join("profile.speedscope.json"),
        &[],
    );
    let chrome_json = export(
        &run.trace,
        "chrome",
        &run.dir.join("profile.trace.json"),
        &[],
    );

    // The speedscope file validates against the schema speedscope ships.
    let schema = speedscope_release().join("file-format-schema.json");
    let code = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
profile = json.load(open(sys.argv[2]))
jsonschema.validate(profile, schema)
print("valid")
"#;
    let verdict = run_python(
        &test_venv_python(),
        code,
        &[
            &schema.to_string_lossy(),
            &speedscope_json.to_string_lossy(),
        ],
    );
    assert_eq!(verdict.trim(), "valid");

    for (profile, name) in [
        (&speedscope_json, "profile.speedscope.json"),
        (&chrome_json, "profile.trace.json"),
    ] {
        let screenshot = run.dir.join(format!("{name}.png"));
        let texts = open_in_speedscope(profile, &screenshot, name);
        let all = texts.join("\n");
        for function in &functions {
            assert!(
                all.contains(function.as_str()),
                "{name}: speedscope shows no {function}"
            );
        }
        for thread in &known {
            assert!(
                all.contains(thread.as_str()),
                "{name}: speedscope shows no thread {thread}"
            );
        }
        assert_eq!(texts.len(), threads, "{name}: one profile per thread");
    }
}

#[test]
fn chrome_trace_of_an_exact_run_carries_return_values_exceptions_and_yields() {
    let python = pyenv_interpreter(13).expect("CPython 3.13 is missing: `pyenv install 3.13`");
    let dir = e2e::target_dir()
        .join("e2e-tmp")
        .join(format!("export-exact-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test's folder");
    let trace = dir.join("t.parquet");
    let recorded = {
        let _serial = e2e::serial();
        Command::new(tracer_bin())
            .current_dir(e2e::scripts_dir())
            .args(["record", "--exact", "-o"])
            .arg(&trace)
            .arg("--")
            .arg(&python.path)
            .arg("exact_app.py")
            .output()
            .expect("run tracer record --exact")
    };
    // exact_app.py exits with 3 on purpose; record passes its exit code on.
    assert_eq!(
        recorded.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&recorded.stderr)
    );
    let path = export(&trace, "chrome", &dir.join("exact.trace.json"), &[]);
    let complete = check_trace_event_format(&read_json(&path));
    let slices = |name: &str| -> Vec<&Value> {
        complete
            .iter()
            .filter(|e| e["name"] == format!("__main__.{name}").as_str())
            .collect()
    };
    // What the program printed: checkout's list (charge's return value, or the
    // message of the exception it raised, per amount) and the squares yielded.
    let printed: Value = String::from_utf8_lossy(&recorded.stdout)
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("exact_app.py prints its results");
    let expected: Vec<String> = printed["checkout"]
        .as_array()
        .expect("checkout results")
        .iter()
        .map(|v| match v {
            Value::String(message) => format!("raised {message}"),
            other => format!("returned {other}"),
        })
        .collect();
    let charges: Vec<String> = slices("charge")
        .iter()
        .map(|e| {
            let args = &e["args"];
            match args["outcome"].as_str() {
                Some("exception") => {
                    assert_eq!(args["exception"], "__main__.PaymentError", "{e}");
                    format!("raised {}", args["message"].as_str().unwrap_or_default())
                }
                _ => format!("returned {}", args["return"].as_str().unwrap_or_default()),
            }
        })
        .collect();
    assert_eq!(charges, expected, "charge's slices end as the program says");
    let squares: Vec<String> = printed["squares"]
        .as_array()
        .expect("squares")
        .iter()
        .map(Value::to_string)
        .collect();
    let yielded: Vec<String> = slices("squares")
        .iter()
        .filter_map(|e| e["args"]["yielded"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        yielded, squares,
        "each stretch of squares ends in its yield"
    );
}
