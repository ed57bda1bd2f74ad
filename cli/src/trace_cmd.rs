//! `tracer record -- CMD` and `tracer attach --pid PID`: sample a Python process into
//! a Parquet trace, then print the run report.
//!
//! Both run the sampler on a thread of its own while this thread watches for Ctrl-C,
//! SIGTERM, `--duration`, `--timeout` and the target's exit, and tells the sampler to
//! stop. The trace is finished (segments merged into one file) on every way out but a
//! SIGKILL, after which the segments written so far stay readable.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use attach::names::Names;
use attach::repr::ReprOptions;
use attach::sampler::{Sampler, SamplerOptions, StopReason};
use attach::snapshot::{take_snapshot, SnapshotOptions};
use attach::{PythonProcess, Walker};
use clap::Args;
use storage::run::{Mode, RunInfo, RunStatus};
use storage::writer::TraceWriter;

use crate::error::{CliError, CliResult};
use crate::report::{self, Recording, Summary};
use crate::signals;

/// Options shared by `record` and `attach`.
#[derive(Args, Clone)]
pub struct TraceOptions {
    /// Where to write the trace (default: ./traces/<time>-<program>-<pid>.parquet).
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    force: bool,
    /// Samples per second.
    #[arg(long, default_value_t = 1000, value_name = "HZ")]
    rate: u32,
    /// Trace modules matching this glob (repeatable; `'*'` is everything). Default: the
    /// program's own code (__main__ and files under its working directory that are not
    /// the standard library, site-packages or a virtual environment).
    #[arg(long, value_name = "PATTERN")]
    include: Vec<String>,
    /// Do not trace modules matching this glob (repeatable).
    #[arg(long, value_name = "PATTERN")]
    exclude: Vec<String>,
    /// Do not record argument values.
    #[arg(long)]
    no_args: bool,
    /// A name whose values are stored as [REDACTED] (repeatable; added to the built-in
    /// secret names such as password and token).
    #[arg(long = "redact", value_name = "NAME")]
    redact: Vec<String>,
}

#[derive(Args)]
pub struct RecordArgs {
    #[command(flatten)]
    trace: TraceOptions,
    /// Stop the command after this many seconds, printing where every thread was.
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// The command to run, e.g. `python app.py` or `pytest -x`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Args)]
pub struct AttachArgs {
    /// The process to trace.
    #[arg(long)]
    pid: i32,
    /// Stop after this many seconds (default: until Ctrl-C or the process exits).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    #[command(flatten)]
    trace: TraceOptions,
}

/// The exit code `record` uses when `--timeout` stopped the command (as `timeout(1)`).
const TIMEOUT_EXIT: i32 = 124;

/// How long `record` waits for the launched command to become a Python process.
const FIND_PYTHON_FOR: Duration = Duration::from_secs(10);

pub fn record(args: &RecordArgs) -> CliResult<i32> {
    if args.trace.rate == 0 {
        return Err(CliError::usage("--rate must be at least 1"));
    }
    signals::install();
    let started = Instant::now();
    let mut child = Command::new(&args.command[0])
        .args(&args.command[1..])
        .spawn()
        .map_err(|e| {
            CliError::new(format!("cannot start {}: {e}", args.command[0]))
                .hint("check the command after `--`, e.g. `tracer record -- python3 app.py`")
        })?;
    let child_pid = child.id() as i32;
    let deadline = args
        .timeout
        .map(|s| started + Duration::from_secs_f64(s.max(0.0)));
    let Some(process) = find_python(child_pid, &mut child) else {
        let code = wait_child(&mut child, deadline);
        eprintln!(
            "tracer: {} exited with code {code} before a Python interpreter could be read in it; nothing was traced",
            args.command[0]
        );
        return Ok(code);
    };
    let mut run = RunInfo::new(args.command.clone(), process.pid, Mode::Sampled);
    run.launched = true;
    let session = Session::start(process, &args.trace, run)?;
    let mut status = None;
    let exit_code;
    loop {
        if let Some((sig, sent_by_process, count)) = signals::take() {
            status = Some(RunStatus::Interrupted);
            if sent_by_process || sig == libc::SIGTERM {
                forward(child_pid, sig);
            }
            if count > 1 {
                forward(child_pid, libc::SIGKILL);
            }
        }
        if let Ok(Some(exit)) = child.try_wait() {
            exit_code = exit_code_of(exit);
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            print_stacks(session.pid());
            // Stop sampling before the child is stopped, so what was running at the
            // timeout stays `unfinished` rather than ending with the process.
            session.stop_sampling();
            status = Some(RunStatus::Timeout);
            forward(child_pid, libc::SIGTERM);
            exit_code = wait_child(&mut child, Some(Instant::now() + Duration::from_secs(2)));
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = status.unwrap_or(if exit_code == 0 {
        RunStatus::Completed
    } else {
        RunStatus::Failed
    });
    session.finish(status, Some(exit_code), started)?;
    Ok(match status {
        RunStatus::Timeout => TIMEOUT_EXIT,
        _ => exit_code,
    })
}

pub fn attach(args: &AttachArgs) -> CliResult<i32> {
    if args.trace.rate == 0 {
        return Err(CliError::usage("--rate must be at least 1"));
    }
    signals::install();
    let started = Instant::now();
    let process = PythonProcess::open(args.pid)?;
    let command = command_line(args.pid);
    let mut run = RunInfo::new(command, args.pid, Mode::Sampled);
    if let Ok(cwd) = std::fs::read_link(format!("/proc/{}/cwd", args.pid)) {
        run.cwd = cwd.to_string_lossy().into_owned();
    }
    let session = Session::start(process, &args.trace, run)?;
    let deadline = args
        .duration
        .map(|s| started + Duration::from_secs_f64(s.max(0.0)));
    let status = loop {
        if signals::take().is_some() {
            break RunStatus::Interrupted;
        }
        if session.sampler_done() {
            break RunStatus::TargetExited;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break RunStatus::DurationReached;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    session.finish(status, None, started)?;
    Ok(0)
}

/// A sampler running on its own thread into a trace writer.
struct Session {
    pid: i32,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Result<(Recording<TraceWriter>, RunInfo), CliError>>,
    path: PathBuf,
}

impl Session {
    fn start(process: PythonProcess, opts: &TraceOptions, mut run: RunInfo) -> CliResult<Session> {
        let pid = process.pid;
        run.python_version = Some(process.version.to_string());
        run.python_executable = Some(process.executable.clone());
        run.rate_hz = Some(opts.rate);
        run.include = opts.include.clone();
        run.exclude = opts.exclude.clone();
        run.redact = opts.redact.clone();
        run.capture_args = !opts.no_args;
        let program = run
            .command
            .iter()
            .find(|a| !(a.starts_with('-') || looks_like_python(a)))
            .or(run.command.first())
            .cloned()
            .unwrap_or_else(|| "python".into());
        let path = match &opts.output {
            Some(p) => p.clone(),
            None => storage::layout::default_trace_path(
                Path::new("traces"),
                &program,
                pid,
                SystemTime::now(),
            ),
        };
        let writer = TraceWriter::create(&path, run.clone(), opts.force).map_err(|e| {
            let err = CliError::new(format!("cannot write the trace: {e}"));
            if path.exists() {
                err.hint(format!(
                    "choose another -o path, or add --force to overwrite {}",
                    path.display()
                ))
            } else {
                err.hint("check that the output folder is writable")
            }
        })?;
        let sampler_opts = SamplerOptions {
            rate_hz: opts.rate,
            include: opts.include.clone(),
            exclude: opts.exclude.clone(),
            no_args: opts.no_args,
            repr: ReprOptions {
                redact_names: opts.redact.clone(),
                ..ReprOptions::default()
            },
        };
        let mut sampler =
            Sampler::new(process, sampler_opts).map_err(|e| CliError::usage(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let (stop_flag, done_flag) = (stop.clone(), done.clone());
        let handle = std::thread::Builder::new()
            .name("sampler".into())
            .spawn(move || {
                let mut recording = Recording {
                    writer,
                    summary: Summary::default(),
                };
                let result = sampler.run(&mut recording, &stop_flag, None);
                done_flag.store(true, Ordering::SeqCst);
                let reason = result.map_err(|e| CliError::new(format!("sampling failed: {e}")))?;
                sampler
                    .finish(&mut recording)
                    .map_err(|e| CliError::new(format!("cannot write the trace: {e}")))?;
                let stats = sampler.stats();
                run.samples = stats.samples;
                run.sample_errors = stats.sample_errors;
                run.max_sample_interval_ns = Some(stats.max_interval_ns);
                if reason == StopReason::TargetExited {
                    run.status = RunStatus::TargetExited;
                }
                Ok((recording, run))
            })
            .map_err(|e| CliError::new(format!("cannot start the sampler: {e}")))?;
        Ok(Session {
            pid,
            stop,
            done,
            handle,
            path,
        })
    }

    fn pid(&self) -> i32 {
        self.pid
    }

    /// Tells the sampler to stop and waits until it has.
    fn stop_sampling(&self) {
        self.stop.store(true, Ordering::SeqCst);
        while !self.sampler_done() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn sampler_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    fn finish(self, status: RunStatus, exit_code: Option<i32>, started: Instant) -> CliResult {
        self.stop.store(true, Ordering::SeqCst);
        let joined = self
            .handle
            .join()
            .map_err(|_| CliError::new("the sampler thread failed"))?;
        let (recording, mut run) = joined?;
        run.status = status;
        run.exit_code = exit_code;
        run.ended_at = Some(storage::utc::rfc3339(SystemTime::now()));
        run.events = recording.summary.events;
        let path = recording.writer.finish(run.clone()).map_err(|e| {
            CliError::new(format!(
                "cannot finish the trace {}: {e}",
                self.path.display()
            ))
        })?;
        eprint!(
            "{}",
            report::render(&run, &recording.summary, &path, started.elapsed(), &[])
        );
        Ok(())
    }
}

fn looks_like_python(arg: &str) -> bool {
    let name = Path::new(arg)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    name.starts_with("python") || name == "uv" || name == "run"
}

/// Waits for `child` (or one of its descendants) to be a Python process whose
/// interpreter can be read.
fn find_python(child_pid: i32, child: &mut Child) -> Option<PythonProcess> {
    let until = Instant::now() + FIND_PYTHON_FOR;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        for pid in std::iter::once(child_pid).chain(descendants(child_pid)) {
            if let Ok(process) = PythonProcess::open(pid) {
                if process.interpreter().is_ok() {
                    return Some(process);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// Every descendant of `pid`, by scanning `/proc/*/stat` for parent ids.
fn descendants(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
                .and_then(|s| s.parse().ok());
            if let Some(ppid) = ppid {
                parents.push((p, ppid));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

fn forward(pid: i32, sig: i32) {
    // SAFETY: sending a signal to our own child.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn exit_code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Waits for the child, killing it at `deadline`.
fn wait_child(child: &mut Child, deadline: Option<Instant>) -> i32 {
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return exit_code_of(status);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            return child.wait().map(exit_code_of).unwrap_or(1);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Prints every thread's stack to stderr (what was running at a timeout).
fn print_stacks(pid: i32) {
    let Ok(process) = PythonProcess::open(pid) else {
        return;
    };
    let mut walker = Walker::new(process);
    match take_snapshot(&mut walker, &mut Names::new(), &SnapshotOptions::default()) {
        Ok(snapshot) => {
            eprintln!("tracer: timeout reached; where every thread was:");
            eprint!(
                "{}",
                crate::dump::render_text(&snapshot, &command_line(pid).join(" "))
            );
        }
        Err(e) => eprintln!("tracer: timeout reached; could not read the stacks: {e}"),
    }
}

/// A process's command line from `/proc/PID/cmdline`.
pub fn command_line(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}
