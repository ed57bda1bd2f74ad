//! The command line itself: subcommands, version, usage errors and a missing trace.
//!
//! These live in the `cli` package on purpose: an integration test here makes
//! `cargo test --workspace` build the `tracer` binary, which the end-to-end tests in
//! `tests/` then run against real interpreters.

use std::process::{Command, Output};

fn tracer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tracer"))
        .args(args)
        .output()
        .expect("run tracer")
}

#[test]
fn help_lists_every_subcommand() {
    let out = tracer(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in ["record", "attach", "dump", "query", "report"] {
        assert!(help.contains(sub), "`{sub}` missing from --help:\n{help}");
    }
}

#[test]
fn version_names_the_package_version() {
    let out = tracer(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("tracer {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn a_missing_subcommand_is_a_usage_error() {
    let out = tracer(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage:"));
}

#[test]
fn a_command_line_clap_cannot_parse_is_one_error_and_a_hint() {
    let stderr = assert_error_and_hint(&tracer(&["attach", "--pid", "abc"]), 2);
    assert!(stderr.contains("'abc'"), "{stderr}");
    assert!(stderr.contains("tracer attach --help"), "{stderr}");
    let stderr = assert_error_and_hint(&tracer(&["query", "--top", "-1"]), 2);
    assert!(stderr.contains("'-1'"), "{stderr}");
    assert!(stderr.contains("tracer query --help"), "{stderr}");
    let stderr = assert_error_and_hint(&tracer(&["record"]), 2);
    assert!(stderr.contains("<CMD>"), "{stderr}");
    // Seconds that are not a time the clock can count to (a panic once).
    for (command, flag) in [("attach", "--duration"), ("record", "--timeout")] {
        for value in ["inf", "1e30", "nan", "0", "-1"] {
            let mut args = vec![command, flag, value];
            args.extend(if command == "attach" {
                ["--pid", "1"]
            } else {
                ["--", "true"]
            });
            let stderr = assert_error_and_hint(&tracer(&args), 2);
            assert!(
                stderr.contains("give a number of seconds"),
                "{args:?}: {stderr}"
            );
        }
    }
    // No N for which --max-calls 0 would mean what it says (it meant no limit).
    let stderr = assert_error_and_hint(
        &tracer(&["record", "--exact", "--max-calls", "0", "--", "true"]),
        2,
    );
    assert!(stderr.contains("'0'"), "{stderr}");
    for limit in [["--timeout", "0"], ["--memory-limit", "0"]] {
        let mut args = vec!["query", "/nonexistent/trace.parquet", "--top"];
        args.extend(limit);
        let stderr = assert_error_and_hint(&tracer(&args), 2);
        assert!(stderr.contains(limit[0]), "{args:?}: {stderr}");
    }
    let stderr = assert_error_and_hint(
        &tracer(&["attach", "--exact", "--subprocesses", "--pid", "1"]),
        2,
    );
    assert!(stderr.contains("--subprocesses"), "{stderr}");
    let stderr = assert_error_and_hint(&tracer(&["frobnicate"]), 2);
    assert!(stderr.contains("tracer --help"), "{stderr}");
    let stderr = assert_error_and_hint(
        &tracer(&[
            "query",
            "/nonexistent/trace.parquet",
            "--top",
            "--since",
            "banana",
        ]),
        2,
    );
    assert!(stderr.contains("\"banana\""), "{stderr}");
    assert!(stderr.contains("hint: give a duration"), "{stderr}");
}

#[test]
fn a_missing_trace_gives_error_and_hint() {
    let out = tracer(&["query", "/nonexistent/trace.parquet", "--top"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines.iter().any(|l| l.starts_with("hint: ")), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Asserts one `error:` line then one `hint:` line, and the exit code.
fn assert_error_and_hint(out: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one error line and one hint: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[1].starts_with("hint: "), "{stderr}");
    stderr
}

/// `--top` and `--slow` take an optional N: a path written after them is the trace.
#[test]
fn a_path_after_top_or_slow_is_the_trace() {
    for flag in ["--top", "--slow"] {
        let stderr = assert_error_and_hint(&tracer(&["query", flag, "/nonexistent/t.parquet"]), 1);
        assert!(
            stderr.contains("no trace at /nonexistent/t.parquet"),
            "{stderr}"
        );
    }
    let stderr = assert_error_and_hint(
        &tracer(&["query", "/nonexistent/t.parquet", "--top", "x.parquet"]),
        2,
    );
    assert!(
        stderr.contains("--top takes a number of rows, not x.parquet"),
        "{stderr}"
    );
}

#[test]
fn a_corrupt_trace_gives_error_and_hint() {
    let dir = std::env::temp_dir().join(format!("tracer-cli-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let garbage = dir.join("garbage.parquet");
    std::fs::write(&garbage, b"not parquet at all, only some bytes").expect("write");
    let garbage = garbage.to_string_lossy().into_owned();
    let stderr = assert_error_and_hint(&tracer(&["query", &garbage, "--top"]), 1);
    assert!(stderr.contains("not a readable Parquet file"), "{stderr}");
    // Asked through its folder, the hint names the file, not the folder.
    let folder = dir.to_string_lossy().into_owned();
    let stderr = assert_error_and_hint(&tracer(&["query", &folder, "--top"]), 1);
    assert!(stderr.contains(&format!("{garbage}.parts/")), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
