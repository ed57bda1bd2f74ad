//! `attach::inject` against real CPython 3.12 and 3.13 processes: the injected source
//! runs on the main thread, sees `__main__`'s globals without touching them, and the
//! target goes on exactly as before (its stdout sequence intact, nothing on its
//! stderr), whatever the source does; a main thread blocked in a system call gets the
//! call later (and its system call completes correctly); versions before 3.12 are
//! refused with a hint to sample instead.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attach::inject::{
    run_python_source, InjectError, InjectOptions, Injected, Outcome, Ran, Withdrawal,
};
use e2e::{Interpreter, Target};

const MINORS: [u8; 2] = [12, 13];

fn interpreter(minor: u8) -> Interpreter {
    e2e::pyenv_interpreter(minor).unwrap_or_else(|| {
        panic!(
            "the injection tests need pyenv's Python 3.{minor} (expected under {}/versions/3.{minor}.*)",
            e2e::pyenv_root().display()
        )
    })
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scripts")
        .join(name)
}

/// A scratch folder for one test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("tracer-inject-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running target whose stderr goes to a file, so a test can check it stayed empty.
struct Watched {
    target: Target,
    stderr: PathBuf,
    /// Every stdout line read so far, after `READY`.
    lines: Vec<String>,
}

impl Watched {
    fn start(interp: &Interpreter, name: &str, args: &[&str], scratch: &Scratch) -> Watched {
        Watched::start_with(interp, name, args, scratch, Stdio::null())
    }

    fn start_with(
        interp: &Interpreter,
        name: &str,
        args: &[&str],
        scratch: &Scratch,
        stdin: Stdio,
    ) -> Watched {
        let stderr = scratch.path(&format!("{name}.stderr"));
        let mut cmd = Command::new(&interp.path);
        cmd.arg(script(name))
            .args(args)
            .stdin(stdin)
            .stderr(File::create(&stderr).expect("create stderr file"));
        let mut target = Target::spawn(cmd);
        target.wait_for("READY", Duration::from_secs(20));
        Watched {
            target,
            stderr,
            lines: Vec::new(),
        }
    }

    fn pid(&self) -> i32 {
        self.target.pid()
    }

    /// Reads stdout up to the line starting with `marker`.
    fn read_until(&mut self, marker: &str) {
        let lines = self.target.wait_for(marker, Duration::from_secs(30));
        self.lines.extend(lines);
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Still running (not exited, not stopped by ptrace or a signal).
    fn assert_running(&mut self) {
        assert!(
            self.target.child.try_wait().expect("poll target").is_none(),
            "the target exited; stderr: {}",
            self.stderr_text()
        );
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        let state = stat
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start().chars().next());
        assert!(
            matches!(state, Some(Some('R' | 'S'))),
            "the target is not running: {stat}"
        );
    }

    fn assert_quiet_stderr(&self) {
        assert_eq!(self.stderr_text(), "", "the target wrote to its stderr");
    }
}

/// The `tick N` lines among `lines`, checked to count up by one with nothing else
/// between them.
fn assert_ticks_consecutive(lines: &[String]) -> u64 {
    let ticks: Vec<u64> = lines
        .iter()
        .filter(|l| l.starts_with("tick "))
        .map(|l| {
            l["tick ".len()..]
                .parse()
                .unwrap_or_else(|_| panic!("bad tick line {l:?}"))
        })
        .collect();
    assert!(!ticks.is_empty(), "no tick lines in {lines:?}");
    for pair in ticks.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "tick sequence broken: {ticks:?}");
    }
    *ticks.last().unwrap_or(&0)
}

fn ran(result: Result<Injected, InjectError>) -> Ran {
    match result {
        Ok(Injected::Ran(ran)) => ran,
        Ok(Injected::Queued(queued)) => panic!("expected the source to run, got: {queued}"),
        Err(e) => panic!("injection failed: {e} (hint: {:?})", e.hint()),
    }
}

fn quick() -> InjectOptions {
    InjectOptions {
        wait: Duration::from_secs(10),
        ..InjectOptions::default()
    }
}

#[test]
fn source_runs_on_the_main_thread_and_the_program_goes_on_unchanged() {
    let _serial = e2e::serial();
    for minor in MINORS {
        let interp = interpreter(minor);
        let scratch = Scratch::new(&format!("main-{minor}"));
        let mut target = Watched::start(&interp, "inject_ticker.py", &[], &scratch);
        target.read_until("tick 5");
        let out = scratch.path("out.txt");
        let source = format!(
            "import threading, __main__\n\
             with open({out:?}, 'w') as f:\n    \
             f.write(threading.current_thread().name + ' ' + str(__main__.counter) + ' ' + __name__)\n",
            out = out.to_str().expect("utf-8 path")
        );
        let result = ran(run_python_source(target.pid(), &source, &quick()));
        assert_eq!(result.outcome, Outcome::Completed, "{}", interp.label);
        assert!(
            result.unmapped,
            "{}: the loader's pages were not unmapped",
            interp.label
        );
        let written = std::fs::read_to_string(&out).expect("the injected source wrote its file");
        let fields: Vec<&str> = written.split(' ').collect();
        assert_eq!(fields.len(), 3, "{}: {written:?}", interp.label);
        assert_eq!(fields[0], "MainThread", "{}: {written:?}", interp.label);
        assert_eq!(fields[2], "__tracer__", "{}: {written:?}", interp.label);
        let counter: u64 = fields[1].parse().expect("counter is a number");
        assert!(counter >= 5, "{}: counter {counter}", interp.label);
        target.read_until(&format!("tick {}", counter + 30));
        let last = assert_ticks_consecutive(&target.lines);
        assert_eq!(last, counter + 30);
        target.assert_running();
        target.assert_quiet_stderr();
    }
}

#[test]
fn raising_broken_or_exiting_source_leaves_the_program_unharmed() {
    let _serial = e2e::serial();
    for minor in MINORS {
        let interp = interpreter(minor);
        let scratch = Scratch::new(&format!("raise-{minor}"));
        let mut target = Watched::start(&interp, "inject_ticker.py", &[], &scratch);
        target.read_until("tick 3");
        for (source, expected) in [
            (
                "raise ValueError('from the tracer')",
                "ValueError: from the tracer",
            ),
            ("def broken(:\n    pass\n", "SyntaxError"),
            ("import sys\nsys.exit(7)", "SystemExit: 7"),
            ("raise KeyboardInterrupt", "KeyboardInterrupt"),
            (
                "import __main__\ndel __main__.nonexistent",
                "AttributeError",
            ),
        ] {
            let result = ran(run_python_source(target.pid(), source, &quick()));
            match &result.outcome {
                Outcome::Raised(text) => assert!(
                    text.starts_with(expected),
                    "{}: {source:?} raised {text:?}, expected {expected:?}",
                    interp.label
                ),
                other => panic!("{}: {source:?} ended {other:?}", interp.label),
            }
        }
        target.read_until("tick 60");
        assert_ticks_consecutive(&target.lines);
        target.assert_running();
        target.assert_quiet_stderr();
    }
}

#[test]
fn twenty_injections_in_a_row_on_a_busy_target_all_run() {
    let _serial = e2e::serial();
    for minor in MINORS {
        let interp = interpreter(minor);
        let scratch = Scratch::new(&format!("twenty-{minor}"));
        let mut target = Watched::start(&interp, "inject_ticker.py", &[], &scratch);
        target.read_until("tick 2");
        let out = scratch.path("runs.txt");
        let mut stops = Vec::new();
        for i in 0..20 {
            let source = format!(
                "with open({out:?}, 'a') as f:\n    f.write('run {i}\\n')\n",
                out = out.to_str().expect("utf-8 path")
            );
            let result = ran(run_python_source(target.pid(), &source, &quick()));
            assert_eq!(
                result.outcome,
                Outcome::Completed,
                "{} run {i}",
                interp.label
            );
            stops.push(result.stopped);
        }
        let written = std::fs::read_to_string(&out).expect("runs file");
        let expected: String = (0..20).map(|i| format!("run {i}\n")).collect();
        assert_eq!(written, expected, "{}", interp.label);
        stops.sort();
        eprintln!(
            "{}: main thread stopped per injection: median {:?}, max {:?}",
            interp.label,
            stops[stops.len() / 2],
            stops[stops.len() - 1]
        );
        let tick = assert_ticks_consecutive(&target.lines);
        target.read_until(&format!("tick {}", tick + 20));
        assert_ticks_consecutive(&target.lines);
        target.assert_running();
        target.assert_quiet_stderr();
        let leftovers: Vec<_> = std::fs::read_dir("/tmp")
            .expect("list /tmp")
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("tracer-inject-{}-", std::process::id()))
            })
            .collect();
        assert!(
            leftovers.is_empty(),
            "loader folders left behind: {leftovers:?}"
        );
    }
}

#[test]
fn a_sleeping_main_thread_gets_the_call_queued_and_runs_it_when_it_wakes() {
    let _serial = e2e::serial();
    for minor in MINORS {
        let interp = interpreter(minor);
        let scratch = Scratch::new(&format!("sleep-{minor}"));

        // 30 s asleep: the tracer gives up at its limit, the target is not stopped.
        let mut long = Watched::start(&interp, "inject_sleeper.py", &["30"], &scratch);
        long.read_until("alive 2");
        let options = InjectOptions {
            wait: Duration::from_millis(800),
            ..InjectOptions::default()
        };
        let started = Instant::now();
        let queued = match run_python_source(long.pid(), "pass", &options) {
            Ok(Injected::Queued(queued)) => queued,
            other => panic!("{}: expected Queued, got {other:?}", interp.label),
        };
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(3),
            "{}: gave up after {took:?}",
            interp.label
        );
        assert!(
            queued.to_string().contains("blocked in a system call"),
            "{queued}"
        );
        let alive_before = long.lines.len();
        long.read_until("alive 30");
        assert!(long.lines.len() > alive_before);
        long.assert_running();
        drop(queued);
        long.assert_quiet_stderr();
        drop(long);

        // 3 s asleep: the queued call runs once the main thread wakes, and
        // `time.sleep` was neither cut short nor lost by the stop.
        let mut short = Watched::start(&interp, "inject_sleeper.py", &["3"], &scratch);
        let out = scratch.path("late.txt");
        let source = format!(
            "import threading\nopen({out:?}, 'w').write(threading.current_thread().name)\n",
            out = out.to_str().expect("utf-8 path")
        );
        let queued = match run_python_source(short.pid(), &source, &options) {
            Ok(Injected::Queued(queued)) => queued,
            other => panic!("{}: expected Queued, got {other:?}", interp.label),
        };
        assert!(
            !out.exists(),
            "{}: ran before the main thread woke",
            interp.label
        );
        let result = ran(queued.wait(Duration::from_secs(10)));
        assert_eq!(result.outcome, Outcome::Completed);
        assert_eq!(
            std::fs::read_to_string(&out).expect("late file"),
            "MainThread"
        );
        short.read_until("woke after");
        let woke = short.lines.last().cloned().unwrap_or_default();
        let slept: f64 = woke["woke after ".len()..].parse().expect("seconds");
        assert!(
            (3.0..4.0).contains(&slept),
            "{}: time.sleep(3) took {slept} s",
            interp.label
        );
        short.read_until("tick 20");
        assert_ticks_consecutive(&short.lines);
        short.assert_running();
        short.assert_quiet_stderr();
    }
}

#[test]
fn a_withdrawn_call_does_nothing_when_the_main_thread_wakes() {
    let _serial = e2e::serial();
    for minor in MINORS {
        let interp = interpreter(minor);
        let scratch = Scratch::new(&format!("withdraw-{minor}"));
        let mut target = Watched::start(&interp, "inject_sleeper.py", &["2"], &scratch);
        let out = scratch.path("withdrawn.txt");
        let source = format!(
            "open({out:?}, 'w').write('ran')\n",
            out = out.to_str().expect("utf-8 path")
        );
        let options = InjectOptions {
            wait: Duration::from_millis(300),
            ..InjectOptions::default()
        };
        let queued = match run_python_source(target.pid(), &source, &options) {
            Ok(Injected::Queued(queued)) => queued,
            other => panic!("{}: expected Queued, got {other:?}", interp.label),
        };
        assert_eq!(queued.withdraw().expect("withdraw"), Withdrawal::Withdrawn);
        target.read_until("tick 30");
        assert!(!out.exists(), "{}: a withdrawn call ran", interp.label);
        assert_ticks_consecutive(&target.lines);
        target.assert_running();
        target.assert_quiet_stderr();
    }
}

#[test]
fn a_main_thread_blocked_in_read_completes_its_read_after_the_stop() {
    let _serial = e2e::serial();
    for minor in MINORS {
        let interp = interpreter(minor);
        let scratch = Scratch::new(&format!("read-{minor}"));
        let mut target =
            Watched::start_with(&interp, "inject_reader.py", &[], &scratch, Stdio::piped());
        // Let the main thread get into its read.
        std::thread::sleep(Duration::from_millis(200));
        let out = scratch.path("after_read.txt");
        let source = format!(
            "open({out:?}, 'w').write('ran')\n",
            out = out.to_str().expect("utf-8 path")
        );
        let options = InjectOptions {
            wait: Duration::from_millis(300),
            ..InjectOptions::default()
        };
        let queued = match run_python_source(target.pid(), &source, &options) {
            Ok(Injected::Queued(queued)) => queued,
            other => panic!("{}: expected Queued, got {other:?}", interp.label),
        };
        let mut stdin = target.target.child.stdin.take().expect("piped stdin");
        stdin
            .write_all(b"hello\n")
            .expect("write to the target's stdin");
        let result = ran(queued.wait(Duration::from_secs(10)));
        assert_eq!(result.outcome, Outcome::Completed);
        target.read_until("got ");
        assert_eq!(
            target.lines.last().map(String::as_str),
            Some("got b'hello\\n'"),
            "{}",
            interp.label
        );
        assert_eq!(std::fs::read_to_string(&out).expect("file"), "ran");
        target.read_until("tick 10");
        target.assert_running();
        target.assert_quiet_stderr();
    }
}

#[test]
fn python_before_3_12_is_refused_with_a_hint_to_sample() {
    let _serial = e2e::serial();
    let mut interpreters = vec![interpreter(11)];
    let debian = PathBuf::from("/usr/bin/python3.11");
    assert!(
        debian.exists(),
        "the refusal test needs Debian's static /usr/bin/python3.11 (apt-get install python3.11)"
    );
    interpreters.push(Interpreter {
        label: "debian-3.11".into(),
        path: debian,
        minor: 11,
    });
    for interp in interpreters {
        let scratch = Scratch::new(&format!("old-{}", interp.label));
        let mut target = Watched::start(&interp, "inject_ticker.py", &[], &scratch);
        target.read_until("tick 2");
        let err = match run_python_source(target.pid(), "pass", &quick()) {
            Err(e) => e,
            Ok(other) => panic!("{}: expected a refusal, got {other:?}", interp.label),
        };
        assert!(
            matches!(err, InjectError::UnsupportedVersion { .. }),
            "{}: {err:?}",
            interp.label
        );
        let message = err.to_string();
        assert!(
            message.contains("3.11") && message.contains("sampled attach"),
            "{}: {message}",
            interp.label
        );
        assert!(err.hint().is_some_and(|h| h.contains("without --exact")));
        target.read_until("tick 10");
        assert_ticks_consecutive(&target.lines);
        target.assert_running();
        target.assert_quiet_stderr();
    }
}

#[test]
fn a_held_pending_call_lock_is_waited_for_and_never_blocked_on() {
    let _serial = e2e::serial();
    for minor in MINORS {
        let interp = interpreter(minor);
        let layout = python_offsets::Layout::for_version(python_offsets::Version::new(3, minor, 0))
            .expect("a layout for 3.12 and 3.13");
        let (offset, kind) = match (
            layout.runtime.pending_calls_lock,
            layout.runtime.pending_calls_mutex,
        ) {
            (Some(offset), _) => (offset, "semaphore"),
            (None, Some(offset)) => (offset, "mutex"),
            (None, None) => panic!("3.{minor} has no pending-call lock offset"),
        };
        let scratch = Scratch::new(&format!("lock-{minor}"));
        let offset = offset.to_string();
        let mut target = Watched::start(
            &interp,
            "inject_lock_holder.py",
            &[&offset, kind, "2.5"],
            &scratch,
        );
        // Held for 2.5 s: a 300 ms retry budget runs out without calling into the lock.
        let short = InjectOptions {
            lock_retry: Duration::from_millis(300),
            ..quick()
        };
        let started = Instant::now();
        match run_python_source(target.pid(), "pass", &short) {
            Err(InjectError::PendingLockBusy { .. }) => {}
            other => panic!("{}: expected PendingLockBusy, got {other:?}", interp.label),
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{}: the refusal took {:?}",
            interp.label,
            started.elapsed()
        );
        target.read_until("tick 5");
        target.assert_running();
        // A longer budget outlasts the holder: the call goes in once the lock is free.
        let long = InjectOptions {
            lock_retry: Duration::from_secs(10),
            ..quick()
        };
        let result = ran(run_python_source(target.pid(), "pass", &long));
        assert_eq!(result.outcome, Outcome::Completed, "{}", interp.label);
        target.read_until("tick 250");
        assert_ticks_consecutive(&target.lines);
        target.assert_running();
        target.assert_quiet_stderr();
    }
}
