//! `tracer mcp` driven by a real MCP client (the `mcp` Python SDK) over stdio: the tools
//! are listed, each is called, and each answer is compared with the JSON (or text, or
//! file) the command line gives for the same trace or process.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use e2e::{pyenv_interpreter, script, target_dir, test_venv_python, tracer_bin, Target};
use serde_json::{json, Value};

/// Every tool the server offers: the command line's commands and questions.
const TOOLS: [&str; 16] = [
    "dump",
    "record",
    "attach",
    "query_runs",
    "query_threads",
    "query_top",
    "query_slow",
    "query_call",
    "query_tree",
    "query_flow",
    "query_gaps",
    "query_exceptions",
    "query_sql",
    "report",
    "export",
    "view",
];

fn tracer(args: &[&str]) -> Output {
    Command::new(tracer_bin())
        .args(args)
        .output()
        .expect("run tracer")
}

/// The JSON a `tracer` command prints, which must succeed.
fn tracer_json(args: &[&str]) -> Value {
    let out = tracer(args);
    assert!(
        out.status.success(),
        "tracer {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("tracer {args:?} JSON: {e}"))
}

/// Runs the MCP client on `calls` (label, tool, arguments); returns its report.
fn run_client(dir: &Path, calls: &Value) -> Value {
    let calls_file = dir.join("calls.json");
    std::fs::write(&calls_file, calls.to_string()).expect("write calls");
    let client = Path::new(env!("CARGO_MANIFEST_DIR")).join("mcp/client.py");
    let out = Command::new(test_venv_python())
        .arg(&client)
        .arg(tracer_bin())
        .arg(&calls_file)
        .output()
        .expect("run the MCP client");
    assert!(
        out.status.success(),
        "the MCP client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the client prints JSON")
}

fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[test]
fn mcp_tools_answer_as_the_command_line_does() {
    let python = pyenv_interpreter(13).expect("CPython 3.13 is missing: `pyenv install 3.13`");
    let dir: PathBuf = target_dir()
        .join("e2e-tmp")
        .join(format!("mcp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test folder");
    let recorded = dir.join("recorded.parquet");
    let attached = dir.join("attached.parquet");
    let missing = dir.join("missing.parquet");

    let mut sleeper = Target::start(&python.path, &script("sleep_forever.py"), &[]);
    sleeper.wait_for("READY", Duration::from_secs(20));
    let mut busy = Target::start(&python.path, &script("long_workload.py"), &["60"]);
    busy.wait_for("READY", Duration::from_secs(20));

    let trace = text(&recorded);
    let questions: Vec<(&str, &str, Value, Vec<&str>)> = vec![
        ("runs", "query_runs", json!({}), vec!["--runs"]),
        ("threads", "query_threads", json!({}), vec!["--threads"]),
        ("top", "query_top", json!({"n": 5}), vec!["--top", "5"]),
        ("slow", "query_slow", json!({}), vec!["--slow"]),
        (
            "call",
            "query_call",
            json!({"name": "leaf"}),
            vec!["--call", "leaf"],
        ),
        ("tree", "query_tree", json!({}), vec!["--tree"]),
        (
            "tree_w0",
            "query_tree",
            json!({"thread": "w0", "since": "0s"}),
            vec!["--tree", "--thread", "w0", "--since", "0s"],
        ),
        (
            "flow",
            "query_flow",
            json!({"limit": 40}),
            vec!["--flow", "--limit", "40"],
        ),
        ("gaps", "query_gaps", json!({}), vec!["--gaps"]),
        (
            "exceptions",
            "query_exceptions",
            json!({}),
            vec!["--exceptions"],
        ),
        (
            "sql",
            "query_sql",
            json!({"sql": "SELECT function, COUNT(*) AS n FROM events GROUP BY function ORDER BY function"}),
            vec![
                "--sql",
                "SELECT function, COUNT(*) AS n FROM events GROUP BY function ORDER BY function",
            ],
        ),
        (
            "sql_w0",
            "query_sql",
            json!({"sql": "SELECT function, COUNT(*) AS n FROM events GROUP BY function ORDER BY function", "thread": "w0"}),
            vec![
                "--sql",
                "SELECT function, COUNT(*) AS n FROM events GROUP BY function ORDER BY function",
                "--thread",
                "w0",
            ],
        ),
    ];
    let mut calls = vec![json!([
        "record",
        "record",
        {
            "command": [text(&python.path), text(&script("workload.py"))],
            "output": trace,
            "timeout": 60,
        }
    ])];
    for (label, tool, arguments, _) in &questions {
        let mut arguments = arguments.clone();
        arguments["trace"] = json!(trace);
        calls.push(json!([label, tool, arguments]));
    }
    calls.extend([
        json!(["report", "report", {"trace": trace}]),
        json!(["export", "export", {"trace": trace, "format": "chrome", "output": text(&dir.join("mcp.trace.json"))}]),
        json!(["view", "view", {"trace": trace, "output": text(&dir.join("mcp.html"))}]),
        json!(["dump", "dump", {"pid": sleeper.pid()}]),
        json!(["attach", "attach", {"pid": busy.pid(), "duration": 1.0, "output": text(&attached)}]),
        json!(["missing", "query_runs", {"trace": text(&missing)}]),
        json!(["refused", "query_sql", {"trace": trace, "sql": "DELETE FROM events"}]),
    ]);
    let report = run_client(&dir, &Value::Array(calls));

    // The tools: every command and question, each trace-reading one asking for the
    // trace path.
    assert_eq!(report["server"]["name"], "tracer");
    let tools: BTreeSet<String> = report["tools"]
        .as_object()
        .expect("tools")
        .keys()
        .cloned()
        .collect();
    let expected: BTreeSet<String> = TOOLS.iter().map(|t| t.to_string()).collect();
    assert_eq!(tools, expected);
    for (name, schema) in report["tools"].as_object().into_iter().flatten() {
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let wanted: &[&str] = match name.as_str() {
            "dump" => &["pid"],
            "record" => &["command", "output", "timeout"],
            "attach" => &["pid", "output", "duration"],
            "export" => &["trace", "format", "output"],
            "view" => &["trace", "output"],
            _ => &["trace"],
        };
        for field in wanted {
            assert!(
                required.contains(field),
                "{name} does not require {field}: {schema}"
            );
        }
    }

    let results = &report["results"];
    let result = |label: &str| -> &Value {
        let r = &results[label];
        assert_eq!(r["is_error"], false, "{label} failed: {}", r["text"]);
        &r["structured"]
    };

    // record: the run, its report, the program's own output.
    let record = result("record");
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["exit_code"], 0);
    assert_eq!(record["trace"], trace);
    assert!(record["stdout"]
        .as_str()
        .unwrap_or_default()
        .contains("RESULTS "));
    assert!(record["report"]
        .as_str()
        .unwrap_or_default()
        .contains("outer(rounds=3)"));
    assert_eq!(
        record["runs"],
        tracer_json(&["query", &trace, "--runs", "--format", "json"])
    );

    // Every question: the same JSON as `tracer query --format json`.
    for (label, _, _, flags) in &questions {
        let mut args = vec!["query", trace.as_str()];
        args.extend(flags.iter().copied());
        args.extend(["--format", "json"]);
        let cli = tracer_json(&args);
        assert_eq!(
            result(label),
            &cli,
            "{label}: MCP and `tracer {args:?}` differ"
        );
        assert!(
            cli["row_count"].as_u64().unwrap_or(0) > 0 || *label == "exceptions",
            "{label}: the CLI answered no rows, a weak comparison"
        );
    }
    assert_ne!(
        result("sql_w0")["rows"],
        result("sql")["rows"],
        "query_sql's thread filter keeps fewer rows"
    );

    // report: the text of `tracer report`.
    let cli_report = tracer(&["report", &trace]);
    assert!(cli_report.status.success());
    assert_eq!(
        result("report")["report"].as_str().unwrap_or_default(),
        String::from_utf8_lossy(&cli_report.stdout)
    );

    // export and view: the same files as the command line writes.
    let cli_chrome = dir.join("cli.trace.json");
    let out = tracer(&[
        "export",
        &trace,
        "--format",
        "chrome",
        "-o",
        &text(&cli_chrome),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(result("export")["path"], text(&dir.join("mcp.trace.json")));
    assert!(result("export")["calls"].as_u64().unwrap_or(0) > 10);
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(
        read(&cli_chrome) == read(&dir.join("mcp.trace.json")),
        "MCP and CLI Chrome exports differ"
    );
    let cli_html = dir.join("cli.html");
    let out = tracer(&["view", &trace, "-o", &text(&cli_html)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        read(&cli_html) == read(&dir.join("mcp.html")),
        "MCP and CLI pages differ"
    );

    // dump: the same snapshot of a sleeping process as `tracer dump --format json`.
    let cli_dump = tracer_json(&[
        "dump",
        "--pid",
        &sleeper.pid().to_string(),
        "--format",
        "json",
    ]);
    assert_eq!(result("dump"), &cli_dump);

    // attach: sampled for the duration, and the trace answers as the CLI's does.
    let attach = result("attach");
    assert_eq!(attach["status"], "duration_reached", "{attach}");
    assert!(attach["report"]
        .as_str()
        .unwrap_or_default()
        .contains("tick"));
    assert_eq!(
        attach["runs"],
        tracer_json(&["query", &text(&attached), "--runs", "--format", "json"])
    );

    // Errors: the command line's words, as a tool error.
    let missing_trace = text(&missing);
    for (label, args) in [
        ("missing", vec!["query", missing_trace.as_str(), "--runs"]),
        (
            "refused",
            vec!["query", trace.as_str(), "--sql", "DELETE FROM events"],
        ),
    ] {
        let r = &results[label];
        assert_eq!(r["is_error"], true, "{label}: {r}");
        let out = tracer(&args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut lines = stderr.lines();
        assert_eq!(
            lines.next().and_then(|l| l.strip_prefix("error: ")),
            r["structured"]["error"].as_str(),
            "{label}"
        );
        assert_eq!(
            lines.next().and_then(|l| l.strip_prefix("hint: ")),
            r["structured"]["hint"].as_str(),
            "{label}"
        );
    }
}

/// A client that goes away while a `record` runs: the server stops the command (as
/// its timeout would), finishes the trace, then exits (it left the command running
/// past its timeout and the trace unfinished).
#[test]
fn a_recording_in_progress_ends_with_the_client() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;

    let python = pyenv_interpreter(12).expect("CPython 3.12 is missing: pyenv install 3.12");
    let dir = target_dir().join("mcp-client-gone");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let trace = dir.join("t.parquet");
    let marker = format!("client-gone-{}", std::process::id());
    let mut server = Command::new(tracer_bin())
        .arg("mcp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tracer mcp");
    let mut stdin = server.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(server.stdout.take().expect("stdout"));
    let mut send = |message: Value| {
        writeln!(stdin, "{message}").expect("write to the server");
        stdin.flush().expect("flush");
    };
    send(
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"}}}),
    );
    let mut line = String::new();
    stdout.read_line(&mut line).expect("the server's answer");
    assert!(line.contains("\"result\""), "{line}");
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let program = format!("import time\ntime.sleep(60)  # {marker}");
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "record", "arguments": {
            "command": [python.path.to_str().unwrap(), "-c", program],
            "output": trace.to_str().unwrap(), "timeout": 30}}}),
    );
    std::thread::sleep(Duration::from_millis(1500));
    drop(stdin);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = server.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server is still running 20 s after its client went away"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let left = Command::new("pgrep")
        .args(["-f", &marker])
        .output()
        .expect("pgrep");
    assert!(
        left.stdout.is_empty(),
        "the recorded command runs on: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    assert!(trace.is_file(), "the trace was not finished");
    let runs = tracer_json(&[
        "query",
        trace.to_str().unwrap(),
        "--runs",
        "--format",
        "json",
    ]);
    assert_eq!(runs["rows"][0]["status"], "interrupted", "{runs}");
}
