//! `tracer attach` stops when it is told to: on SIGINT even when it was started with
//! SIGINT ignored (a script's background job), and, with `--exact`, on a signal or
//! `--duration` while it waits for a blocked main thread to reach a safe point
//! (nothing is injected then).

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
