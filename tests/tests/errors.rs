//! Bad input to `tracer dump`: one `error:` line, one `hint:` line, exit code 1 (2 for
//! usage), and never a panic.

use std::process::{Command, Output};
use std::time::Duration;

use e2e::{matrix, script, tracer_bin, Target};

fn dump(args: &[&str]) -> Output {
    Command::new(tracer_bin())
        .arg("dump")
        .args(args)
        .output()
        .expect("run tracer")
}

/// Asserts the two-line error form and returns the error line.
fn error_line(out: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one error line and one hint: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[1].starts_with("hint: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0].to_string()
}

#[test]
fn a_pid_that_does_not_exist() {
    let out = dump(&["--pid", "999999999"]);
    assert_eq!(error_line(&out, 1), "error: no process with pid 999999999");
}

#[test]
fn a_process_that_is_not_python() {
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("start sleep");
    let out = dump(&["--pid", &sleeper.id().to_string()]);
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let line = error_line(&out, 1);
    assert!(line.contains("is not a Python interpreter"), "{line}");
}

#[test]
fn an_unsupported_python_version() {
    let root = e2e::pyenv_root().join("versions");
    let old = std::fs::read_dir(&root)
        .expect("pyenv versions")
        .flatten()
        .map(|e| e.path().join("bin/python3.7"))
        .find(|p| p.exists());
    let Some(python37) = old else {
        panic!(
            "this test needs pyenv's 3.7 (an unsupported version) under {}",
            root.display()
        );
    };
    let mut target = Target::start(&python37, &script("sleep_forever.py"), &[]);
    target.wait_for("READY", Duration::from_secs(20));
    let out = dump(&["--pid", &target.pid().to_string()]);
    let line = error_line(&out, 1);
    assert!(
        line.contains("Python 3.7") && line.contains("does not support"),
        "{line}"
    );
}

/// `record` of a Python too old: sampled, the command runs on untraced and the
/// tracer ends with the error; exact, the bootstrap does nothing there (it failed on
/// the program's stderr) and the report names the version. A `python3.6` without
/// `_PyRuntime` is told by its name.
#[test]
fn record_of_an_unsupported_python_says_so_and_leaves_the_program_alone() {
    let root = e2e::pyenv_root().join("versions");
    let python37 = std::fs::read_dir(&root)
        .expect("pyenv versions")
        .flatten()
        .map(|e| e.path().join("bin/python3.7"))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "this test needs pyenv's 3.7 (an unsupported version) under {}",
                root.display()
            )
        });
    let program = "import sys, time; time.sleep(0.3); print('hi'); sys.stderr.write('own\\n')";
    let dir = e2e::temp_dir("old-python");
    let record = |extra: &[&str]| {
        Command::new(tracer_bin())
            .arg("record")
            .args(extra)
            .arg("-o")
            .arg(dir.join("t.parquet"))
            .arg("--force")
            .arg("--")
            .arg(&python37)
            .args(["-c", program])
            .output()
            .expect("run tracer record")
    };
    let sampled = record(&[]);
    let stderr = String::from_utf8_lossy(&sampled.stderr);
    assert_eq!(sampled.status.code(), Some(1), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&sampled.stdout), "hi\n");
    assert!(
        stderr.contains("error: process") && stderr.contains("Python 3.7"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
    let exact = record(&["--exact"]);
    let stderr = String::from_utf8_lossy(&exact.stderr);
    assert_eq!(exact.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&exact.stdout), "hi\n");
    assert!(
        stderr.starts_with("own\n"),
        "the program's stderr first, unchanged: {stderr}"
    );
    assert!(
        stderr.contains("runs Python 3.7") && stderr.contains("nothing was traced"),
        "{stderr}"
    );
    // The report's header names it too (it said "Python ?"), and never a made-up
    // micro version (3.7.0 for a 3.7.16 read before it had set up).
    assert!(stderr.contains("(Python 3.7"), "{stderr}");
    assert!(!stderr.contains("3.7.0"), "{stderr}");
    // A binary named like an old Python, without `_PyRuntime`.
    let fake = dir.join("python3.6");
    std::fs::copy("/bin/sleep", &fake).expect("copy sleep");
    let mut child = Command::new(&fake)
        .arg("5")
        .spawn()
        .expect("start python3.6");
    std::thread::sleep(Duration::from_millis(200));
    let out = dump(&["--pid", &child.id().to_string()]);
    let _ = child.kill();
    let _ = child.wait();
    let line = error_line(&out, 1);
    assert!(line.contains("Python 3.6 (by its file name)"), "{line}");
}

#[test]
fn a_process_that_exits_while_being_read_never_panics() {
    let interp = &matrix()[0];
    for _ in 0..10 {
        let mut child = Command::new(&interp.path)
            .args(["-c", "import time; time.sleep(0.05)"])
            .spawn()
            .expect("start python");
        let out = dump(&["--pid", &child.id().to_string(), "--format", "json"]);
        let _ = child.wait();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        if !out.status.success() {
            error_line(&out, 1);
        }
    }
}

#[test]
fn missing_permission_is_explained() {
    // A process of another user cannot be read by an unprivileged tracer. As root the
    // tracer can read anything, so drop to `nobody` for the tracer itself.
    let interp = &matrix()[0];
    let mut target = Target::start(&interp.path, &script("sleep_forever.py"), &[]);
    target.wait_for("READY", Duration::from_secs(20));
    let bin = tracer_bin();
    let copy = std::env::temp_dir().join(format!("tracer-perm-test-{}", std::process::id()));
    std::fs::copy(&bin, &copy).expect("copy tracer");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&copy)
        .args(["dump", "--pid", &target.pid().to_string()])
        .output()
        .expect("run setpriv");
    let _ = std::fs::remove_file(&copy);
    let line = error_line(&out, 1);
    assert!(line.contains("no permission"), "{line}");
}

#[test]
fn a_usage_error_exits_2() {
    let out = dump(&["--pid", "not-a-number"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error:"));
}

/// `-o` naming a folder is refused with a hint to give a file path in it, with
/// `--force` too (the hint said to add --force, and with it, to add --force again).
#[test]
fn an_output_path_that_is_a_directory_asks_for_a_file_path() {
    let interp = &matrix()[0];
    let mut target = Target::start(&interp.path, &script("sleep_forever.py"), &[]);
    target.wait_for("READY", Duration::from_secs(20));
    let dir = e2e::temp_dir("output-directory");
    let outdir = dir.join("outdir");
    std::fs::create_dir(&outdir).unwrap();
    for force in [&[][..], &["--force"][..]] {
        let out = Command::new(tracer_bin())
            .args([
                "attach",
                "--pid",
                &target.pid().to_string(),
                "--duration",
                "1",
                "-o",
            ])
            .arg(&outdir)
            .args(force)
            .output()
            .expect("run tracer attach");
        let error = error_line(&out, 1);
        assert!(error.contains("is a directory"), "{force:?}: {error}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = format!("{}", outdir.join("trace.parquet").display());
        assert!(
            stderr.contains(&expected) && !stderr.contains("--force"),
            "{force:?}: {stderr}"
        );
        assert!(outdir.is_dir(), "the folder is left alone");
    }
}
