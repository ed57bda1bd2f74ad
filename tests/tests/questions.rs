//! `tracer query` and `tracer report` on runs recorded from a real program whose calls
//! are known (tests/scripts/questions_app.py): each question's answer is checked
//! against what the program says it did.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e::{pyenv_interpreter, run_python, scripts_dir, test_venv_python, tracer_bin, Interpreter};
use serde_json::Value;

/// One recorded run of the program and what it printed about itself.
struct Recorded {
    label: String,
    trace: PathBuf,
    /// The report `tracer record` printed on stderr.
    report: String,
    /// Function name to how many times the program says it ran.
    calls: Value,
    /// Each `Cart.total` call: cart id, item count, nanoseconds it took.
    totals: Vec<Value>,
    /// The longest time the sampler was held off (from the run's metadata).
    held_off_ns: i64,
}

fn record(interp: &Interpreter) -> Recorded {
    let label = interp.label.replace('/', "_");
    let dir = e2e::target_dir()
        .join("e2e-tmp")
        .join(format!("questions-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let trace = dir.join("t.parquet");
    let out = Command::new(tracer_bin())
        .current_dir(scripts_dir())
        .args(["record", "--rate", "1000", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(&interp.path)
        .arg("questions_app.py")
        .output()
        .expect("run tracer record");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{label}: {report}");
    let results: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULTS "))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{label}: no RESULTS line in {stdout}"));
    let runs = ask(&trace, &["--runs"]);
    let metadata = read_metadata(&trace);
    assert_eq!(runs["rows"][0]["status"], "completed", "{label}");
    Recorded {
        label: interp.label.clone(),
        trace,
        report,
        calls: results["calls"].clone(),
        totals: results["totals"].as_array().cloned().unwrap_or_default(),
        held_off_ns: metadata["max_sample_interval_ns"]
            .as_i64()
            .expect("a sampled run records its longest sampling interval"),
    }
}

/// The run's `tracer.run` metadata, read with pyarrow.
fn read_metadata(trace: &Path) -> Value {
    let code = "import pyarrow.parquet as pq, sys; \
                print(pq.read_metadata(sys.argv[1]).metadata[b'tracer.run'].decode())";
    let text = run_python(&test_venv_python(), code, &[&trace.to_string_lossy()]);
    serde_json::from_str(&text).expect("tracer.run is JSON")
}

fn query(trace: &Path, args: &[&str]) -> Output {
    Command::new(tracer_bin())
        .arg("query")
        .arg(trace)
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("run tracer query")
}

/// Asks one question and returns its JSON answer.
fn ask(trace: &Path, args: &[&str]) -> Value {
    let out = query(trace, args);
    assert!(
        out.status.success(),
        "tracer query {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the answer is JSON")
}

fn rows(answer: &Value) -> Vec<Value> {
    answer["rows"].as_array().cloned().unwrap_or_default()
}

fn sql_rows(trace: &Path, sql: &str) -> Vec<Value> {
    rows(&ask(trace, &["--sql", sql]))
}

/// The interpreters the questions are asked of: the oldest (names derived from
/// `self`) and the newest (`co_qualname`).
fn interpreters() -> Vec<Interpreter> {
    [8u8, 13]
        .into_iter()
        .map(|minor| {
            pyenv_interpreter(minor).unwrap_or_else(|| {
                panic!("CPython 3.{minor} is missing: install it with `pyenv install 3.{minor}`")
            })
        })
        .collect()
}

/// How many calls of `function` the run should show: all the program made, unless
/// the sampler was held off for longer than the function's calls last (then at most
/// that many, said on stderr).
fn check_count(run: &Recorded, function: &str, seen: i64, shortest_ns: i64) {
    let expected = run.calls[function].as_i64().unwrap_or(0);
    if run.held_off_ns >= shortest_ns {
        eprintln!(
            "{}: sampler held off {} ns; {function}: {seen} of {expected} calls seen",
            run.label, run.held_off_ns
        );
        assert!(
            seen <= expected,
            "{}: {function} seen {seen} > {expected}",
            run.label
        );
    } else {
        assert_eq!(seen, expected, "{}: calls of {function}", run.label);
    }
}

#[test]
fn every_question_answers_what_the_program_did() {
    let _serial = e2e::serial();
    for interp in interpreters() {
        let run = record(&interp);
        let label = &run.label;
        let trace = &run.trace;

        // --top: how often each function ran.
        let top = ask(trace, &["--top", "50"]);
        let count_of = |function: &str| {
            rows(&top)
                .iter()
                .find(|r| r["function"] == function)
                .and_then(|r| r["calls"].as_i64())
                .unwrap_or(0)
        };
        for (function, shortest_ms) in [
            ("price", 30),
            ("checkout", 90),
            ("encode", 40),
            ("summarize", 40),
            ("reporter", 180),
            ("main", 300),
        ] {
            check_count(&run, function, count_of(function), shortest_ms * 1_000_000);
        }
        // Cart.total runs once per checkout.
        check_count(&run, "checkout", count_of("Cart.total"), 40 * 1_000_000);
        let top_rows = rows(&top);
        let calls: Vec<i64> = top_rows
            .iter()
            .filter_map(|r| r["calls"].as_i64())
            .collect();
        assert!(
            calls.windows(2).all(|w| w[0] >= w[1]),
            "{label}: --top sorted by calls: {calls:?}"
        );

        // --call in its three spellings: every Cart.total call with its arguments,
        // caller, duration bounds and the calls it made.
        let bare = ask(trace, &["--call", "total"]);
        let qualified = ask(trace, &["--call", "Cart.total"]);
        let full = ask(trace, &["--call", "shopkit.billing.Cart.total"]);
        assert_eq!(
            rows(&bare),
            rows(&qualified),
            "{label}: total vs Cart.total"
        );
        assert_eq!(rows(&full), rows(&qualified), "{label}: module-qualified");
        let total_calls = rows(&qualified);
        assert!(!total_calls.is_empty(), "{label}: no Cart.total calls");
        for call in &total_calls {
            assert_eq!(call["function"], "shopkit.billing.Cart.total", "{label}");
            assert_eq!(call["caller"], "__main__.checkout", "{label}");
            let args: Value = serde_json::from_str(call["args"].as_str().unwrap_or("{}"))
                .expect("args are a JSON object");
            assert_eq!(args["tax_rate"], "0.25", "{label}: {args}");
            assert!(
                args["self"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("<shopkit.billing.Cart object at 0x")),
                "{label}: {args}"
            );
            let made = call["calls_made"].to_string();
            assert!(
                made.contains("price"),
                "{label}: calls made by Cart.total: {made}"
            );
        }
        // Calls come in the order the program made them; each one's bounds hold the
        // time the program measured (give or take the sampling period).
        if total_calls.len() == run.totals.len() {
            for (call, truth) in total_calls.iter().zip(&run.totals) {
                let true_ns = truth["ns"].as_i64().unwrap_or(0);
                let min = call["duration_ns"].as_i64().unwrap_or(i64::MAX);
                let max = call["duration_max_ns"].as_i64().unwrap_or(i64::MAX);
                // Three sampling periods, and the reporter thread holding the GIL for a
                // switch interval (5 ms) at each end of the call while its frame is
                // already or still on the stack, outside the program's own clock.
                let slack = 3_000_000 + 2 * 5_000_000;
                assert!(
                    min <= true_ns + slack && true_ns <= max.saturating_add(slack),
                    "{label}: Cart.total of cart {} took {true_ns} ns, answer says [{min}, {max}]",
                    truth["cart_id"]
                );
            }
        }

        // --gaps: the program's calls into json, with the --include that traces them
        // and the command to do it.
        let gaps = ask(trace, &["--gaps"]);
        let json_gap = rows(&gaps)
            .into_iter()
            .find(|g| g["module"].as_str().is_some_and(|m| m.starts_with("json")))
            .unwrap_or_else(|| panic!("{label}: no gap into json: {gaps}"));
        assert_eq!(json_gap["caller"], "__main__.encode", "{label}");
        assert_eq!(json_gap["include"], "json.*", "{label}");
        let tip = gaps["tip"]["commands"].to_string();
        assert!(
            tip.contains("--include 'json.*'") && tip.contains("questions_app.py"),
            "{label}: tip {tip}"
        );

        // --slow: ordered by total time; summarize's total is its three calls.
        let slow = rows(&ask(trace, &["--slow", "50"]));
        let totals: Vec<i64> = slow.iter().filter_map(|r| r["total_ns"].as_i64()).collect();
        assert!(
            totals.windows(2).all(|w| w[0] >= w[1]),
            "{label}: --slow sorted by total: {totals:?}"
        );
        assert_eq!(
            slow[0]["function"], "<module>",
            "{label}: the whole program is slowest"
        );

        // --threads: the main thread and the named reporter thread.
        let threads = rows(&ask(trace, &["--threads"]));
        // In first-seen order, which the program does not fix: the reporter starts as
        // soon as main does, and one sample may read it first (CPython lists the
        // newest thread first), so compare the names as a set.
        let mut names: Vec<&str> = threads
            .iter()
            .filter_map(|t| t["thread_name"].as_str())
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["MainThread", "reporter"], "{label}: {threads:?}");

        // --thread narrows every question to one thread, by name.
        let reporter_flow = rows(&ask(
            trace,
            &["--flow", "--thread", "reporter", "--limit", "1000"],
        ));
        assert!(!reporter_flow.is_empty(), "{label}");
        assert!(
            reporter_flow
                .iter()
                .all(|r| r["function"]
                    .as_str()
                    .is_some_and(|f| f.ends_with("reporter")
                        || f.ends_with("summarize")
                        || f.contains("sleep")
                        || f.contains("busy"))),
            "{label}: --thread reporter shows only the reporter's calls: {reporter_flow:?}"
        );

        // --flow: the main thread's calls in the order the program made them.
        let flow = rows(&ask(
            trace,
            &["--flow", "--thread", "MainThread", "--limit", "1000"],
        ));
        let order: Vec<&str> = flow
            .iter()
            .filter(|r| r["kind"] == "call")
            .filter_map(|r| r["function"].as_str())
            .filter(|f| {
                f.ends_with(".checkout") || f.ends_with(".encode") || f.ends_with("Cart.total")
            })
            .collect();
        if run.held_off_ns < 40_000_000 {
            assert_eq!(
                order,
                [
                    "__main__.checkout",
                    "shopkit.billing.Cart.total",
                    "__main__.encode",
                    "__main__.checkout",
                    "shopkit.billing.Cart.total",
                    "__main__.encode",
                    "__main__.checkout",
                    "shopkit.billing.Cart.total",
                    "__main__.encode",
                ],
                "{label}: --flow order"
            );
        }

        // --tree: each call one level below its caller.
        let tree = rows(&ask(
            trace,
            &["--tree", "--thread", "MainThread", "--limit", "1000"],
        ));
        let depth_of = |suffix: &str| {
            tree.iter()
                .find(|r| {
                    r["kind"] == "call"
                        && r["function"].as_str().is_some_and(|f| f.ends_with(suffix))
                })
                .and_then(|r| r["depth"].as_i64())
        };
        assert_eq!(depth_of("<module>"), Some(0), "{label}: {tree:?}");
        assert_eq!(depth_of(".main"), Some(1), "{label}");
        assert_eq!(depth_of(".checkout"), Some(2), "{label}");
        assert_eq!(depth_of("Cart.total"), Some(3), "{label}");
        assert_eq!(depth_of(".price"), Some(4), "{label}");

        // --module narrows to matching modules.
        let billing = rows(&ask(trace, &["--top", "--module", "shopkit.*"]));
        assert!(
            !billing.is_empty() && billing.iter().all(|r| r["module"] == "shopkit.billing"),
            "{label}: {billing:?}"
        );

        // --since / --until: relative to the run's start.
        let late = ask(trace, &["--flow", "--since", "10m"]);
        assert!(rows(&late).is_empty(), "{label}: nothing ten minutes in");
        let early = rows(&ask(trace, &["--flow", "--until", "0s", "--limit", "1000"]));
        assert!(
            early.len() < flow.len(),
            "{label}: --until 0s keeps only the start"
        );

        // --exceptions: a sampled run sees none (exceptions need --exact), and says so
        // with an empty answer and exit 0.
        let exceptions = query(trace, &["--exceptions"]);
        assert_eq!(exceptions.status.code(), Some(0), "{label}");
        let answer: Value = serde_json::from_slice(&exceptions.stdout).expect("json");
        assert!(
            answer["notes"]
                .as_array()
                .is_some_and(|notes| notes.iter().any(|n| n
                    .as_str()
                    .is_some_and(|n| n.contains("sampled") && n.contains("--exact")))),
            "{label}: the empty answer does not say a sampled run has no exceptions: {answer}"
        );

        // --runs: one completed run of the program's command line.
        let runs = rows(&ask(trace, &["--runs"]));
        assert_eq!(runs.len(), 1, "{label}");
        assert!(
            runs[0]["command"]
                .as_str()
                .is_some_and(|c| c.ends_with("questions_app.py")),
            "{label}: {runs:?}"
        );
        assert_eq!(runs[0]["mode"], "sampled", "{label}");

        check_sql_matches_duckdb(&run);
        check_report_again(&run);
    }
}

/// `--sql` gives what DuckDB gives for the same SQL on the same file.
fn check_sql_matches_duckdb(run: &Recorded) {
    let sql = "SELECT module, function, kind, COUNT(*) AS n, SUM(count) AS total_count, \
               MIN(depth) AS min_depth, MAX(depth) AS max_depth \
               FROM events GROUP BY module, function, kind ORDER BY module, function, kind";
    let ours = sql_rows(&run.trace, sql);
    let code = r#"
import duckdb, json, sys
con = duckdb.connect()
path = sys.argv[1].replace("'", "''")
con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{path}')")
cur = con.execute(sys.argv[2])
names = [d[0] for d in cur.description]
print(json.dumps([dict(zip(names, row)) for row in cur.fetchall()]))
"#;
    let text = run_python(
        &test_venv_python(),
        code,
        &[&run.trace.to_string_lossy(), sql],
    );
    let theirs: Vec<Value> = serde_json::from_str(&text).expect("duckdb JSON");
    assert_eq!(ours, theirs, "{}: --sql and DuckDB differ", run.label);
}

/// `tracer report` prints the report `tracer record` printed, from the trace alone
/// (the first line's duration comes from the run's start and end, so it may differ
/// in the last digits).
/// The run id of a one-run trace.
fn run_id_of(trace: &Path) -> String {
    let runs = rows(&ask(trace, &["--runs"]));
    runs[0]["run_id"].as_str().expect("run_id").to_string()
}

fn check_report_again(run: &Recorded) {
    let out = Command::new(tracer_bin())
        .arg("report")
        .arg(&run.trace)
        .output()
        .expect("run tracer report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = String::from_utf8_lossy(&out.stdout);
    // A unique prefix of the run id names the run, as with `query --run`.
    let run_id = run_id_of(&run.trace);
    let prefixed = Command::new(tracer_bin())
        .arg("report")
        .arg(&run.trace)
        .args(["--run", &run_id[..8]])
        .output()
        .expect("run tracer report --run");
    assert!(
        prefixed.status.success(),
        "{}: report --run {}: {}",
        run.label,
        &run_id[..8],
        String::from_utf8_lossy(&prefixed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&prefixed.stdout),
        again,
        "{}: report --run PREFIX",
        run.label
    );
    let body = |text: &str| -> Vec<String> {
        let start = text.find("tracer: sampled").unwrap_or(0);
        text[start..].lines().skip(1).map(str::to_string).collect()
    };
    assert_eq!(
        body(&again),
        body(&run.report),
        "{}: report again",
        run.label
    );
    let first = again.lines().next().unwrap_or("");
    assert!(
        first.starts_with("tracer: sampled of pid")
            && first.contains("status completed, exit code 0"),
        "{}: {first}",
        run.label
    );
}
