//! `tracer attach` stops when it is told to: on SIGINT even when it was started with
//! SIGINT ignored (a script's background job), and, with `--exact`, on a signal or
//! `--duration` while it waits for a blocked main thread to reach a safe point
//! (nothing is injected then).

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use e2e::{matrix, pyenv_interpreter, read_trace, script, temp_dir, tracer_bin, Target};

/// Waits up to `limit` for `child` to exit; its status and stderr, or `None` (it is
/// then killed) with its stderr.
fn wait_for_exit(child: &mut Child, limit: Duration) -> (Option<ExitStatus>, String) {
    let since = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait tracer") {
            break Some(status);
        }
        if since.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    if let Some(err) = child.stderr.as_mut() {
        let _ = std::io::Read::read_to_string(err, &mut stderr);
    }
    (status, stderr)
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// `tracer attach` started with SIGINT ignored (a script's background job, `tracer
/// attach --pid P &`, gets it so from the shell) still stops on `kill -INT`, sampled
/// and exact: it launches nothing that should inherit the ignored signal.
#[test]
fn attach_started_with_sigint_ignored_still_stops_on_sigint() {
    let _serial = e2e::serial();
    let dir = temp_dir("attach-ignored-sigint");
    let sampled = matrix()[0].clone();
    let exact = pyenv_interpreter(12).expect("CPython 3.12 is missing: pyenv install 3.12");
    for (i, (interp, mode)) in [(&sampled, ""), (&exact, "--exact")]
        .into_iter()
        .enumerate()
    {
        let mut target = Target::start(&interp.path, &script("long_workload.py"), &["60"]);
        target.wait_for("READY", Duration::from_secs(20));
        let trace = dir.join(format!("t{i}.parquet"));
        let mut tracer = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "trap '' INT; exec \"$0\" attach {mode} --pid {} -o \"$1\"",
                target.pid()
            ))
            .arg(tracer_bin())
            .arg(&trace)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sh");
        std::thread::sleep(Duration::from_secs(2));
        // sh exec'd the tracer: same pid.
        signal(&tracer, libc::SIGINT);
        let (status, stderr) = wait_for_exit(&mut tracer, Duration::from_secs(10));
        let status = status.unwrap_or_else(|| {
            panic!("attach {mode} still ran 10 s after SIGINT; it printed {stderr}")
        });
        assert_eq!(status.code(), Some(0), "attach {mode}: {stderr}");
        let (_, run) = read_trace(&trace);
        assert_eq!(run["status"], "interrupted", "attach {mode}: {stderr}");
    }
}

/// `tracer attach --exact --pid P` with `extra` options, stderr piped.
fn spawn_attach_exact(pid: i32, trace: &Path, extra: &[&str]) -> Child {
    Command::new(tracer_bin())
        .args(["attach", "--exact", "--pid", &pid.to_string(), "-o"])
        .arg(trace)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tracer attach --exact")
}

/// While `attach --exact` waits for a blocked main thread to reach a safe point,
/// `--duration` and SIGTERM stop it at once (it waited the whole 10 s and more), the
/// queued loader is withdrawn (it was injected anyway when the main thread woke after
/// the signal), and the trace says how the run ended.
#[test]
fn attach_exact_stops_while_it_waits_for_a_safe_point() {
    let _serial = e2e::serial();
    let interp = pyenv_interpreter(12).expect("CPython 3.12 is missing: pyenv install 3.12");
    let dir = temp_dir("attach-exact-stop-waiting");

    // --duration 2, the main thread asleep for 600 s.
    let mut target = Target::start(&interp.path, &script("blocked_main.py"), &["600"]);
    target.wait_for("READY", Duration::from_secs(20));
    let trace = dir.join("duration.parquet");
    let started = Instant::now();
    let mut tracer = spawn_attach_exact(target.pid(), &trace, &["--duration", "2"]);
    let (status, stderr) = wait_for_exit(&mut tracer, Duration::from_secs(30));
    let took = started.elapsed();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{stderr}");
    assert!(
        took < Duration::from_millis(3500),
        "--duration 2 took {took:?}: {stderr}"
    );
    assert!(stderr.contains("nothing was injected"), "{stderr}");
    let (rows, run) = read_trace(&trace);
    assert_eq!(run["status"], "duration_reached", "{stderr}");
    assert!(rows.is_empty(), "{rows:?}");
    drop(target);

    // SIGTERM after 1.5 s, the main thread waking at 5 s (within the 10 s the tracer
    // would wait): the tracer is gone before then and the loader does nothing.
    let mut target = Target::start(&interp.path, &script("blocked_main.py"), &["5"]);
    target.wait_for("READY", Duration::from_secs(20));
    let trace = dir.join("sigterm.parquet");
    let mut tracer = spawn_attach_exact(target.pid(), &trace, &[]);
    std::thread::sleep(Duration::from_millis(1500));
    signal(&tracer, libc::SIGTERM);
    let sent = Instant::now();
    let (status, stderr) = wait_for_exit(&mut tracer, Duration::from_secs(30));
    let took = sent.elapsed();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{stderr}");
    assert!(
        took < Duration::from_secs(1),
        "stopped {took:?} after SIGTERM: {stderr}"
    );
    assert!(stderr.contains("nothing was injected"), "{stderr}");
    let (_, run) = read_trace(&trace);
    assert_eq!(run["status"], "interrupted", "{stderr}");
    let tools = target.wait_for("TOOLS", Duration::from_secs(20));
    assert_eq!(
        tools.last().map(String::as_str),
        Some("TOOLS [None, None, None, None, None, None]"),
        "the withdrawn loader placed the hook"
    );
}
