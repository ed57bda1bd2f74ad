//! Helpers for the end-to-end tests: the interpreter matrix, target scripts run under
//! a guard that kills them on drop, the `tracer` binary, and a venv with the Python
//! packages the tests read traces with (pyarrow, DuckDB), compare against (py-spy) and
//! drive `tracer mcp` with (the `mcp` SDK). [`record_script`] records a script of
//! `tests/scripts/`; [`browser`] opens pages in headless Chromium and speedscope.
//!
//! The matrix is pyenv's newest 3.8 to 3.13 (`$PYENV_ROOT`, else `~/.pyenv`) plus
//! Debian's own `/usr/bin/python3.11` (a static build). `TRACER_TEST_PYTHONS`, a
//! `:`-separated list of interpreter paths, replaces it. A missing interpreter is a
//! test failure that names it, never a silent skip.

use std::io::{BufRead, BufReader};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// One interpreter of the test matrix.
#[derive(Debug, Clone)]
pub struct Interpreter {
    /// A short name for messages: `pyenv-3.12.1`, `debian-3.11`.
    pub label: String,
    pub path: PathBuf,
    pub minor: u8,
}

/// The minor versions DESIGN.md supports.
pub const MINORS: [u8; 6] = [8, 9, 10, 11, 12, 13];

/// pyenv's root folder.
pub fn pyenv_root() -> PathBuf {
    if let Some(root) = std::env::var_os("PYENV_ROOT") {
        return PathBuf::from(root);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".pyenv")
}

/// The newest pyenv install of `3.minor` (free-threaded builds excluded).
pub fn pyenv_interpreter(minor: u8) -> Option<Interpreter> {
    let versions = pyenv_root().join("versions");
    let prefix = format!("3.{minor}.");
    let mut best: Option<(u32, PathBuf, String)> = None;
    for entry in std::fs::read_dir(&versions).ok()?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(micro) = name.strip_prefix(&prefix) else {
            continue;
        };
        let Ok(micro) = micro.parse::<u32>() else {
            continue;
        };
        let bin = entry.path().join("bin").join(format!("python3.{minor}"));
        if bin.exists() && best.as_ref().is_none_or(|b| micro > b.0) {
            best = Some((micro, bin, name));
        }
    }
    best.map(|(_, path, name)| Interpreter {
        label: format!("pyenv-{name}"),
        path,
        minor,
    })
}

/// The interpreters every end-to-end test runs on. Panics, naming what is missing,
/// when the matrix is incomplete.
pub fn matrix() -> Vec<Interpreter> {
    if let Ok(list) = std::env::var("TRACER_TEST_PYTHONS") {
        return list
            .split(':')
            .filter(|s| !s.is_empty())
            .map(|p| {
                let path = PathBuf::from(p);
                let minor = minor_of(&path);
                Interpreter {
                    label: p.to_string(),
                    path,
                    minor,
                }
            })
            .collect();
    }
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for minor in MINORS {
        match pyenv_interpreter(minor) {
            Some(i) => found.push(i),
            None => missing.push(format!(
                "pyenv 3.{minor} (expected under {}/versions/3.{minor}.*)",
                pyenv_root().display()
            )),
        }
    }
    let debian = PathBuf::from("/usr/bin/python3.11");
    if debian.exists() {
        found.push(Interpreter {
            label: "debian-3.11".into(),
            path: debian,
            minor: 11,
        });
    } else {
        missing.push("Debian's python3.11 (apt-get install python3.11)".into());
    }
    assert!(
        missing.is_empty(),
        "the test matrix needs these interpreters, which are missing: {}; \
         install them or set TRACER_TEST_PYTHONS",
        missing.join(", ")
    );
    found
}

fn minor_of(path: &Path) -> u8 {
    let out = Command::new(path)
        .args(["-c", "import sys; print(sys.version_info[1])"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{} did not print its version", path.display()))
}

/// The folder of the small target programs (`tests/scripts/`).
pub fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

/// A path under `tests/scripts/`.
pub fn script(name: &str) -> PathBuf {
    scripts_dir().join(name)
}

/// The workspace's `target/` folder.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .join("target")
}

/// A fresh folder for one test's files under `target/e2e-tmp`, named after the test
/// and this process (emptied if a previous run left it).
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = target_dir()
        .join("e2e-tmp")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// The `tracer` binary built alongside this test (`target/<profile>/tracer`), or
/// `$TRACER_BIN`.
/// `tracer attach --pid PID --duration SECONDS -o TRACE` (sampled), waited for.
pub fn attach_sampled(pid: i32, seconds: &str, trace: &Path) -> std::process::Output {
    Command::new(tracer_bin())
        .args([
            "attach",
            "--pid",
            &pid.to_string(),
            "--duration",
            seconds,
            "-o",
        ])
        .arg(trace)
        .output()
        .expect("run tracer attach")
}

pub fn tracer_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TRACER_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let bin = profile_dir.join("tracer");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        bin.display()
    );
    bin
}

/// A target process that is killed (with its process group) when dropped.
pub struct Target {
    pub child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Target {
    /// Starts `python script args...` in its own process group, stdout piped.
    pub fn start(python: &Path, script: &Path, args: &[&str]) -> Target {
        let mut cmd = Command::new(python);
        cmd.arg(script).args(args);
        Target::spawn(cmd)
    }

    /// Starts `cmd` with stdout piped, in its own process group.
    pub fn spawn(mut cmd: Command) -> Target {
        use std::os::unix::process::CommandExt;
        cmd.stdout(Stdio::piped()).process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Target { child, stdout }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Reads stdout lines until one equals `marker` (or starts with it), returning the
    /// lines before it and the marker line. Panics after `timeout`.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let fd = self.stdout.get_ref().as_raw_fd();
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero() || !self.stdout.buffer().is_empty(),
                "target {} did not print {marker:?} in {timeout:?}; it printed {lines:?}",
                self.pid()
            );
            if self.stdout.buffer().is_empty() {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
                if n <= 0 {
                    continue;
                }
            }
            let mut line = String::new();
            let n = self
                .stdout
                .read_line(&mut line)
                .expect("read target stdout");
            assert!(
                n > 0,
                "target {} exited before printing {marker:?}; it printed {lines:?}",
                self.pid()
            );
            let line = line.trim_end_matches('\n').to_string();
            let done = line.starts_with(marker);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }
}

impl Target {
    /// Everything the target printed on stdout after what was already read, up to its
    /// exit (call it once the target has exited or is exiting).
    pub fn read_rest(&mut self, out: &mut String) -> std::io::Result<usize> {
        use std::io::Read;
        self.stdout.read_to_string(out)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // SAFETY: signalling our own child's process group.
        unsafe {
            libc::kill(-(self.child.id() as i32), libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the test venv holds: readers of traces (pyarrow, DuckDB), a profiler to compare
/// with (py-spy), a real MCP client (the `mcp` SDK) and a JSON Schema validator.
const VENV_PACKAGES: [&str; 5] = ["pyarrow", "duckdb", "py-spy", "mcp", "jsonschema"];

/// The Python of a venv under `target/` holding [`VENV_PACKAGES`], created on first
/// use and brought up to date when the list grows (one creator at a time across test
/// binaries, by a lock file).
pub fn test_venv_python() -> PathBuf {
    let dir = target_dir().join("test-venv");
    let python = dir.join("bin").join("python");
    let ready = dir.join(".ready");
    std::fs::create_dir_all(target_dir()).expect("create target dir");
    let lock_path = target_dir().join("test-venv.lock");
    let lock = std::fs::File::create(&lock_path).expect("create venv lock");
    // SAFETY: flock on a file we hold open; released when `lock` is dropped.
    unsafe {
        libc::flock(lock.as_raw_fd(), libc::LOCK_EX);
    }
    let wanted = VENV_PACKAGES.join(" ");
    let installed = std::fs::read_to_string(&ready).unwrap_or_default();
    if installed.trim() != wanted {
        if !python.exists() {
            let base = pyenv_interpreter(11)
                .map(|i| i.path)
                .unwrap_or_else(|| PathBuf::from("python3"));
            let status = Command::new(&base)
                .args(["-m", "venv", "--clear"])
                .arg(&dir)
                .status()
                .expect("run python -m venv");
            assert!(status.success(), "creating the test venv failed");
        }
        let status = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(VENV_PACKAGES)
            .status()
            .expect("run pip");
        assert!(
            status.success(),
            "pip install {wanted} into {} failed",
            dir.display()
        );
        std::fs::write(&ready, &wanted).expect("mark venv ready");
    }
    drop(lock);
    python
}

/// Runs `python -c code args...` and returns its stdout, panicking with its stderr on
/// failure.
pub fn run_python(python: &Path, code: &str, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "{} -c failed: {}",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

mod markers;
pub use markers::line_markers;

mod trace_rows;
pub use trace_rows::{read_trace, read_traces};

pub mod browser;

mod recording;
pub use recording::{record_script, Recording};

/// Serialises the tests of one test binary that measure time or load every core (a
/// recording, Chromium): a sampler starved of CPU by a parallel test's busy workload
/// would miss calls on a 2-core machine.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
