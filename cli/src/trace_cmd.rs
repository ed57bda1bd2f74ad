//! `tracer record -- CMD` and `tracer attach --pid PID`: sample a Python process into
//! a Parquet trace, then print the run report.
//!
//! Both run the sampler on a thread of its own while this thread watches for Ctrl-C,
//! SIGTERM, `--duration`, `--timeout` and the target's exit, and tells the sampler to
//! stop. The trace is finished (segments merged into one file) on every way out but a
//! SIGKILL, after which the segments written so far stay readable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use attach::event::SinkError;
use attach::names::Names;
use attach::repr::ReprOptions;
use attach::sampler::{Sampler, SamplerError, SamplerOptions};
use attach::snapshot::{take_snapshot, SnapshotOptions};
use attach::{Event, EventSink, PythonProcess, Walker};
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
    pub(crate) output: Option<PathBuf>,
    /// Overwrite the output file if it exists.
    #[arg(long)]
    pub(crate) force: bool,
    /// Samples per second.
    #[arg(
        long,
        default_value_t = 1000,
        value_name = "HZ",
        allow_negative_numbers = true
    )]
    pub(crate) rate: u32,
    /// Trace modules matching this glob (repeatable; `'*'` is everything). Default: the
    /// program's own code (__main__ and files under its working directory that are not
    /// the standard library, site-packages or a virtual environment).
    #[arg(long, value_name = "PATTERN")]
    pub(crate) include: Vec<String>,
    /// Do not trace modules matching this glob (repeatable).
    #[arg(long, value_name = "PATTERN")]
    pub(crate) exclude: Vec<String>,
    /// Do not record argument values.
    #[arg(long)]
    pub(crate) no_args: bool,
    /// A name whose values are stored as [REDACTED] (repeatable; added to the built-in
    /// secret names such as password and token).
    #[arg(long = "redact", value_name = "NAME")]
    pub(crate) redact: Vec<String>,
    /// Also trace Python processes started later under the traced one
    /// (multiprocessing workers, subprocess), into the same trace.
    #[arg(long)]
    pub(crate) subprocesses: bool,
    /// Exact tracing: a hook inside the Python process records every call, return,
    /// exception and value of the traced code (record: loaded at start-up).
    #[arg(long)]
    pub(crate) exact: bool,
    /// With --exact: keep full detail for the first N calls of each function per
    /// second and only count the rest (N at least 1).
    #[arg(
        long,
        value_name = "N",
        requires = "exact",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub(crate) max_calls: Option<u32>,
}

/// The longest `--duration` or `--timeout`: a hundred years, so that the time it
/// ends at is a time the clock can hold.
const MAX_SECONDS: f64 = 100.0 * 365.25 * 24.0 * 3600.0;

/// A number of seconds given as `--duration` or `--timeout`: more than zero, and a
/// number (`inf`, `nan` and `1e30` are not).
pub(crate) fn seconds(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    check_seconds(value)
}

/// [`seconds`] for a number given as such (the MCP tools' arguments).
pub(crate) fn check_seconds(value: f64) -> Result<f64, String> {
    if value.is_finite() && value > 0.0 && value <= MAX_SECONDS {
        Ok(value)
    } else {
        Err("give a number of seconds more than 0 and at most 100 years".to_string())
    }
}

#[derive(Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub(crate) trace: TraceOptions,
    /// Stop the command after this many seconds, printing where every thread was.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = seconds)]
    pub(crate) timeout: Option<f64>,
    /// The command to run, e.g. `python app.py` or `pytest -x`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub(crate) command: Vec<String>,
}

#[derive(Args)]
pub struct AttachArgs {
    /// The process to trace.
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) pid: i32,
    /// Stop after this many seconds (default: until Ctrl-C or the process exits).
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = seconds)]
    pub(crate) duration: Option<f64>,
    #[command(flatten)]
    pub(crate) trace: TraceOptions,
}

/// The exit code `record` uses when `--timeout` stopped the command (as `timeout(1)`).
pub(crate) const TIMEOUT_EXIT: i32 = 124;

/// How long `record` waits for the launched command to become a Python process.
const FIND_PYTHON_FOR: Duration = Duration::from_secs(10);

/// Who runs a recording: the command line (a terminal, Ctrl-C, the child's output
/// on ours) or a tool call of `tracer mcp` (stdout is the protocol's: the child's
/// output is captured, and no signal handler is installed, so the server still stops
/// on SIGTERM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    CommandLine,
    Tool,
}

/// What a recording did: where the trace is and what the run report says.
#[derive(Debug)]
pub struct Traced {
    /// The finished trace; `None` when the command never became a readable Python.
    pub trace: Option<PathBuf>,
    /// How the run ended.
    pub status: Option<RunStatus>,
    /// `record`: the command's exit code.
    pub target_exit_code: Option<i32>,
    /// The exit code `tracer` itself exits with.
    pub exit_code: i32,
    /// The run report (printed on stderr by the command line).
    pub report: String,
    /// `record --timeout`: every thread's stack when the timeout was reached.
    pub stacks_at_timeout: Option<String>,
    /// [`Caller::Tool`]: the end of what the command wrote on stdout and stderr.
    pub output: Option<(String, String)>,
    /// Why nothing was traced, when nothing was.
    pub note: Option<String>,
    /// A sampler that failed after the trace was started (the trace is finished
    /// all the same).
    pub error: Option<CliError>,
}

impl Traced {
    /// The command line's ending: the report on stderr, then the sampler's error or
    /// the exit code.
    fn finish_on_terminal(self) -> CliResult<i32> {
        eprint!("{}", self.report);
        if let Some(note) = &self.note {
            eprintln!("tracer: {note}");
        }
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.exit_code),
        }
    }
}

/// Set when the MCP server's client has gone: recordings in progress stop their
/// command (SIGTERM, as a timeout does) and finish their trace.
static TOOL_CALLS_ENDED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Ends the recordings of tool calls in progress (the MCP server is closing).
pub fn end_tool_calls() {
    TOOL_CALLS_ENDED.store(true, Ordering::SeqCst);
}

fn tool_calls_ended() -> bool {
    TOOL_CALLS_ENDED.load(Ordering::SeqCst)
}

/// How much of a launched command's output a tool call keeps (its end).
const CAPTURED_BYTES: usize = 64 * 1024;

/// How long a tool call waits, once its command exited, for the command's output
/// pipes to close: a process the command left running may hold them open forever.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// The end of a child's output pipe, read on a thread of its own.
struct Captured {
    kept: Arc<Mutex<Vec<u8>>>,
    closed: std::sync::mpsc::Receiver<()>,
}

impl Captured {
    /// Reads `pipe` to its end on a thread, keeping the last [`CAPTURED_BYTES`].
    fn start(pipe: Option<impl std::io::Read + Send + 'static>) -> Captured {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let (closed_tx, closed) = std::sync::mpsc::channel();
        let shared = kept.clone();
        std::thread::spawn(move || {
            if let Some(mut pipe) = pipe {
                let mut buffer = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    let Ok(mut kept) = shared.lock() else { break };
                    kept.extend_from_slice(&buffer[..n]);
                    if kept.len() > CAPTURED_BYTES {
                        let extra = kept.len() - CAPTURED_BYTES;
                        kept.drain(..extra);
                    }
                }
            }
            let _ = closed_tx.send(());
        });
        Captured { kept, closed }
    }

    /// What was read by `deadline` (waiting for the pipe to close until then).
    fn text(self, deadline: Instant) -> String {
        let _ = self
            .closed
            .recv_timeout(deadline.saturating_duration_since(Instant::now()));
        self.kept
            .lock()
            .map(|kept| String::from_utf8_lossy(&kept).into_owned())
            .unwrap_or_default()
    }
}

pub fn record(args: &RecordArgs) -> CliResult<i32> {
    if args.trace.rate == 0 {
        return Err(CliError::usage("--rate must be at least 1"));
    }
    if args.trace.exact {
        return crate::exact_cmd::record(args);
    }
    record_run(args, Caller::CommandLine)?.finish_on_terminal()
}

/// Runs a sampled `tracer record` for `caller` (`--exact` runs in
/// [`crate::exact_cmd`]).
pub fn record_run(args: &RecordArgs, caller: Caller) -> CliResult<Traced> {
    if args.trace.rate == 0 {
        return Err(CliError::usage("--rate must be at least 1"));
    }
    let Some(program) = args.command.first() else {
        return Err(CliError::usage("give the command to run after `--`"));
    };
    if caller == Caller::CommandLine {
        signals::install_for_record();
    }
    let started = Instant::now();
    let mut command = Command::new(program);
    command.args(&args.command[1..]);
    if caller == Caller::Tool {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // A server that goes away (its client closed stdin, or SIGTERM, for which a
        // tool call installs no handler) takes the command with it instead of
        // leaving it running past its timeout. The signal comes when the thread
        // that started the command ends, which is this tool call's, and it waits
        // for the command before it returns.
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; it only marks the child process.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn().map_err(|e| {
        CliError::new(format!("cannot start {program}: {e}"))
            .hint("check the command after `--`, e.g. `tracer record -- python3 app.py`")
    })?;
    let captured = (caller == Caller::Tool).then(|| {
        (
            Captured::start(child.stdout.take()),
            Captured::start(child.stderr.take()),
        )
    });
    let collect = |captured: Option<(Captured, Captured)>| {
        captured.map(|(out, err)| {
            let deadline = Instant::now() + OUTPUT_GRACE;
            (out.text(deadline), err.text(deadline))
        })
    };
    let child_pid = child.id() as i32;
    let deadline = args
        .timeout
        .map(|s| started + Duration::from_secs_f64(s.max(0.0)));
    // Nothing traced: the command ran on, its exit code is passed on, with a note or
    // an error saying why.
    let untraced = |code: i32, output, note: Option<String>, error: Option<CliError>| Traced {
        trace: None,
        status: None,
        target_exit_code: Some(code),
        exit_code: code,
        report: String::new(),
        stacks_at_timeout: None,
        output,
        note,
        error,
    };
    let process = match find_python(child_pid, &mut child) {
        Found::Python(process) => *process,
        Found::Unsupported(e) => {
            // Said now, and again when the command, which runs on untraced, ends.
            let error = CliError::from(e);
            if caller == Caller::CommandLine {
                eprintln!("tracer: {}; {program} runs on untraced", error.message);
            }
            let code = wait_child(&mut child, deadline);
            return Ok(untraced(code, collect(captured), None, Some(error)));
        }
        Found::Nothing => {
            let code = wait_child(&mut child, deadline);
            let note = format!(
                "{program} exited with code {code} before a Python interpreter could be read in it; nothing was traced"
            );
            return Ok(untraced(code, collect(captured), Some(note), None));
        }
    };
    let mut run = RunInfo::new(args.command.clone(), process.pid, Mode::Sampled);
    run.launched = true;
    let mut session = Session::start(process, &args.trace, run)?;
    let mut status = None;
    let mut stacks_at_timeout = None;
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
        if caller == Caller::Tool && tool_calls_ended() {
            session.stop_sampling();
            status = Some(RunStatus::Interrupted);
            forward(child_pid, libc::SIGTERM);
            exit_code = wait_child(&mut child, Some(Instant::now() + Duration::from_secs(2)));
            break;
        }
        session.trace_new_subprocesses(child_pid);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let stacks: String = session
                .pids()
                .into_iter()
                .map(|pid| stacks_text(pid, &args.trace.redact, None))
                .collect();
            if caller == Caller::CommandLine {
                eprint!("{stacks}");
            }
            stacks_at_timeout = Some(stacks);
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
    let finished = session.finish(status, Some(exit_code), started)?;
    Ok(Traced {
        trace: Some(finished.path),
        status: Some(status),
        target_exit_code: Some(exit_code),
        exit_code: match status {
            RunStatus::Timeout => TIMEOUT_EXIT,
            _ => exit_code,
        },
        report: finished.report,
        stacks_at_timeout,
        output: collect(captured),
        note: None,
        error: finished.error,
    })
}

pub fn attach(args: &AttachArgs) -> CliResult<i32> {
    if args.trace.rate == 0 {
        return Err(CliError::usage("--rate must be at least 1"));
    }
    if args.trace.exact {
        return crate::exact_cmd::attach(args);
    }
    attach_run(args, Caller::CommandLine)?.finish_on_terminal()
}

/// Runs a sampled `tracer attach` for `caller` (`--exact` runs in
/// [`crate::exact_cmd`]).
pub fn attach_run(args: &AttachArgs, caller: Caller) -> CliResult<Traced> {
    if args.trace.rate == 0 {
        return Err(CliError::usage("--rate must be at least 1"));
    }
    if caller == Caller::CommandLine {
        signals::install_for_attach();
    }
    let started = Instant::now();
    let process = PythonProcess::open_named(args.pid)?;
    let command = command_line(args.pid, &[]);
    let mut run = RunInfo::new(command, args.pid, Mode::Sampled);
    if let Ok(cwd) = std::fs::read_link(format!("/proc/{}/cwd", args.pid)) {
        run.cwd = cwd.to_string_lossy().into_owned();
    }
    let mut session = Session::start(process, &args.trace, run)?;
    let deadline = args
        .duration
        .map(|s| started + Duration::from_secs_f64(s.max(0.0)));
    let status = loop {
        if signals::take().is_some() || (caller == Caller::Tool && tool_calls_ended()) {
            break RunStatus::Interrupted;
        }
        if session.first_sampler_done() {
            break RunStatus::TargetExited;
        }
        session.trace_new_subprocesses(args.pid);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break RunStatus::DurationReached;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let finished = session.finish(status, None, started)?;
    Ok(Traced {
        trace: Some(finished.path),
        status: Some(status),
        target_exit_code: None,
        exit_code: 0,
        report: finished.report,
        stacks_at_timeout: None,
        output: None,
        note: None,
        error: finished.error,
    })
}

/// A finished trace and its run report.
struct Finished {
    path: PathBuf,
    report: String,
    /// The first sampler failure, if one failed.
    error: Option<CliError>,
}

/// Every sampler of a run writes through this: the trace writer and the report's
/// summary, behind one lock, with one `seq` order for the whole run.
struct SharedRecording {
    recording: Recording<TraceWriter>,
    next_seq: u64,
}

/// The sink of one traced process. Each process's calls get their own range of call
/// ids (`call_id_base` on), so calls of different processes in one run never share
/// an id.
struct ProcessSink {
    shared: Arc<Mutex<SharedRecording>>,
    call_id_base: u64,
}

/// Call ids of the n-th traced process of a run start at n << 40: room for a trillion
/// calls a process.
const CALL_ID_BITS: u32 = 40;

impl ProcessSink {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, SharedRecording>, SinkError> {
        self.shared
            .lock()
            .map_err(|_| SinkError::from("another sampler failed while writing"))
    }
}

impl EventSink for ProcessSink {
    fn event(&mut self, event: &mut Event) -> Result<(), SinkError> {
        let base = self.call_id_base;
        let mut shared = self.lock()?;
        event.seq = shared.next_seq;
        shared.next_seq += 1;
        event.call_id += base;
        event.parent_id = event.parent_id.map(|p| p + base);
        shared.recording.event(event)
    }

    fn tick(&mut self, now: Instant) -> Result<(), SinkError> {
        self.lock()?.recording.tick(now)
    }
}

/// What one sampler thread reports when it stops.
struct SamplerOutcome {
    samples: u64,
    sample_errors: u64,
    late_samples: u64,
    max_interval_ns: u64,
}

/// A sampler on its own thread, tracing one process.
struct SamplerThread {
    pid: i32,
    done: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<CliResult<SamplerOutcome>>,
}

/// The samplers of a run (the first process, and with `--subprocesses` every Python
/// process started under it later) writing into one trace.
struct Session {
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<SharedRecording>>,
    samplers: Vec<SamplerThread>,
    options: SamplerOptions,
    run: RunInfo,
    path: PathBuf,
    /// Processes under the first one looked at for `--subprocesses`: pid to the
    /// executable it ran when last looked at (a process that execs Python later
    /// is looked at again).
    looked_at: HashMap<i32, PathBuf>,
    /// Processes that could not be opened as Python yet, and how many looks failed:
    /// a child caught while its exec is still loading libraries fails to open.
    failed_opens: HashMap<i32, u32>,
    last_scan: Instant,
}

/// How often `--subprocesses` looks for new Python processes.
const SUBPROCESS_SCAN: Duration = Duration::from_millis(50);

/// Looks after which a process that never opened as Python is left alone (a second
/// at [`SUBPROCESS_SCAN`]).
const SUBPROCESS_OPEN_TRIES: u32 = 20;

impl Session {
    fn start(process: PythonProcess, opts: &TraceOptions, mut run: RunInfo) -> CliResult<Session> {
        let pid = process.pid;
        run.python_version = Some(process.version.to_string());
        run.python_executable = Some(process.executable.clone());
        run.rate_hz = Some(opts.rate);
        run.include = opts.include.clone();
        run.exclude = opts.exclude.clone();
        run.set_redact(opts.redact.clone());
        run.capture_args = !opts.no_args;
        run.subprocesses = opts.subprocesses;
        let (writer, path) = create_trace(opts, &run, pid)?;
        let options = SamplerOptions {
            rate_hz: opts.rate,
            include: opts.include.clone(),
            exclude: opts.exclude.clone(),
            no_args: opts.no_args,
            repr: ReprOptions {
                redact_names: opts.redact.clone(),
                ..ReprOptions::default()
            },
        };
        let mut session = Session {
            stop: Arc::new(AtomicBool::new(false)),
            shared: Arc::new(Mutex::new(SharedRecording {
                recording: Recording {
                    writer,
                    summary: Summary::default(),
                },
                next_seq: 1,
            })),
            samplers: Vec::new(),
            options,
            run,
            path,
            looked_at: HashMap::new(),
            failed_opens: HashMap::new(),
            last_scan: Instant::now(),
        };
        session.looked_at.insert(pid, exe_of(pid));
        session.add(process)?;
        Ok(session)
    }

    /// Starts sampling one more process into the run.
    fn add(&mut self, process: PythonProcess) -> CliResult {
        let pid = process.pid;
        let mut sampler = match Sampler::new(process, self.options.clone()) {
            Ok(sampler) => sampler,
            // Gone between being found and being set up to sample (a command that
            // ends within milliseconds): nothing of it is sampled, and the run ends
            // as the process did.
            Err(SamplerError::Read(attach::Error::Exited(_) | attach::Error::NoSuchProcess(_))) => {
                return Ok(());
            }
            Err(e) => return Err(CliError::usage(e.to_string())),
        };
        let mut sink = ProcessSink {
            shared: self.shared.clone(),
            call_id_base: (self.samplers.len() as u64) << CALL_ID_BITS,
        };
        let stop = self.stop.clone();
        let done = Arc::new(AtomicBool::new(false));
        let done_flag = done.clone();
        let handle = std::thread::Builder::new()
            .name(format!("sampler-{pid}"))
            .spawn(move || {
                let result = sampler.run(&mut sink, &stop, None);
                done_flag.store(true, Ordering::SeqCst);
                result.map_err(|e| CliError::new(format!("sampling failed: {e}")))?;
                sampler
                    .finish(&mut sink)
                    .map_err(|e| CliError::new(format!("cannot write the trace: {e}")))?;
                let stats = sampler.stats();
                Ok(SamplerOutcome {
                    samples: stats.samples,
                    sample_errors: stats.sample_errors,
                    late_samples: stats.late_samples,
                    max_interval_ns: stats.max_interval_ns,
                })
            })
            .map_err(|e| CliError::new(format!("cannot start the sampler: {e}")))?;
        self.samplers.push(SamplerThread { pid, done, handle });
        Ok(())
    }

    /// With `--subprocesses`: starts sampling every Python process that appeared
    /// under `root` since the last look (at most every [`SUBPROCESS_SCAN`]).
    fn trace_new_subprocesses(&mut self, root: i32) {
        if !self.run.subprocesses || self.last_scan.elapsed() < SUBPROCESS_SCAN {
            return;
        }
        self.last_scan = Instant::now();
        for pid in std::iter::once(root).chain(descendants(root)) {
            let exe = exe_of(pid);
            if self.looked_at.get(&pid) == Some(&exe) {
                continue;
            }
            match PythonProcess::open(pid) {
                Ok(process) if process.interpreter().is_ok() => {
                    self.failed_opens.remove(&pid);
                    self.looked_at.insert(pid, exe);
                    if let Err(e) = self.add(process) {
                        eprintln!("tracer: cannot trace subprocess {pid}: {}", e.message);
                    }
                }
                // Python, but its interpreter is not set up yet: look again next time.
                Ok(_) => {}
                // Not Python, or not yet readable as Python (seen in CI: a child
                // opened mid-exec was never looked at again): a few more looks.
                Err(_) => {
                    let tries = self.failed_opens.entry(pid).or_insert(0);
                    *tries += 1;
                    if *tries >= SUBPROCESS_OPEN_TRIES {
                        self.failed_opens.remove(&pid);
                        self.looked_at.insert(pid, exe);
                    }
                }
            }
        }
    }

    /// The processes traced so far.
    fn pids(&self) -> Vec<i32> {
        self.samplers.iter().map(|s| s.pid).collect()
    }

    /// Tells the samplers to stop and waits until they have.
    fn stop_sampling(&self) {
        self.stop.store(true, Ordering::SeqCst);
        while !self.samplers.iter().all(|s| s.done.load(Ordering::SeqCst)) {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Whether the first process's sampler stopped by itself (the target exited).
    /// Whether the first process's sampling has ended (none was started when that
    /// process exited before it could be set up).
    fn first_sampler_done(&self) -> bool {
        self.samplers
            .first()
            .is_none_or(|s| s.done.load(Ordering::SeqCst))
    }

    fn finish(
        self,
        status: RunStatus,
        exit_code: Option<i32>,
        started: Instant,
    ) -> CliResult<Finished> {
        self.stop.store(true, Ordering::SeqCst);
        let mut run = self.run;
        let mut first_error = None;
        let mut max_interval = 0;
        let pids: Vec<i32> = self.samplers.iter().map(|s| s.pid).collect();
        for sampler in self.samplers {
            let outcome = sampler
                .handle
                .join()
                .map_err(|_| CliError::new("a sampler thread failed"))
                .and_then(|r| r);
            match outcome {
                Ok(outcome) => {
                    run.samples += outcome.samples;
                    run.sample_errors += outcome.sample_errors;
                    run.late_samples += outcome.late_samples;
                    max_interval = max_interval.max(outcome.max_interval_ns);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let shared = Arc::try_unwrap(self.shared)
            .map_err(|_| CliError::new("a sampler still holds the trace"))?
            .into_inner()
            .map_err(|_| CliError::new("a sampler failed while writing the trace"))?;
        let recording = shared.recording;
        run.max_sample_interval_ns = Some(max_interval);
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
        let mut extra = Vec::new();
        if run.subprocesses {
            let shown: Vec<String> = pids.iter().map(i32::to_string).collect();
            extra.push(format!(
                "processes traced: {} (pids {})",
                pids.len(),
                shown.join(", ")
            ));
        }
        let report = report::render(&run, &recording.summary, &path, started.elapsed(), &extra);
        Ok(Finished {
            path,
            report,
            error: first_error,
        })
    }
}

/// Creates the trace writer of a run: at `-o PATH`, or
/// `./traces/<time>-<program>-<pid>.parquet`.
pub(crate) fn create_trace(
    opts: &TraceOptions,
    run: &RunInfo,
    pid: i32,
) -> CliResult<(TraceWriter, PathBuf)> {
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
    // A folder is refused, --force or not, with a hint that names the problem: the
    // writer's own refusal ("already exists", then "cannot replace: Is a directory")
    // led to a hint to add --force, again and again. The trace is not put inside the
    // folder under a made-up name: -o names the file.
    if path.is_dir() {
        return Err(CliError::new(format!(
            "cannot write the trace: {} is a directory",
            path.display()
        ))
        .hint(format!(
            "give -o a file path, such as {}",
            path.join("trace.parquet").display()
        )));
    }
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
    Ok((writer, path))
}

/// The executable a process runs now (empty when it is gone).
fn exe_of(pid: i32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default()
}

pub(crate) fn looks_like_python(arg: &str) -> bool {
    let name = Path::new(arg)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    name.starts_with("python") || name == "uv" || name == "run"
}

/// Waits for `child` (or one of its descendants) to be a Python process whose
/// interpreter can be read.
fn find_python(child_pid: i32, child: &mut Child) -> Found {
    let until = Instant::now() + FIND_PYTHON_FOR;
    // An interpreter found before it wrote its version string (3.8-3.10) is looked
    // at again for a moment, so that the run says 3.9.18, not the 3.9.0 of its name.
    let mut settled_by: Option<Instant> = None;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return Found::Nothing;
        }
        for pid in std::iter::once(child_pid).chain(descendants(child_pid)) {
            if still_this_tracer(pid) {
                continue;
            }
            match PythonProcess::open(pid) {
                Ok(process) if process.interpreter().is_ok() => {
                    let settled_by =
                        *settled_by.get_or_insert_with(|| Instant::now() + VERSION_SETTLES_IN);
                    if process.micro_known || Instant::now() >= settled_by {
                        return Found::Python(Box::new(process));
                    }
                }
                Err(e @ attach::Error::UnsupportedVersion { .. }) => return Found::Unsupported(e),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Found::Nothing
}

/// Whether `pid` runs this tracer's own executable: a launched child before its
/// `exec`. Looking for Python in it read the tracer's symbol table (0.3 s of CPU for
/// the release build, 2.4 s for the debug one), while the program started without
/// being watched.
pub(crate) fn still_this_tracer(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(child), Ok(own)) = (
        std::fs::metadata(format!("/proc/{pid}/exe")),
        std::fs::metadata("/proc/self/exe"),
    ) else {
        return false;
    };
    (child.dev(), child.ino()) == (own.dev(), own.ino())
}

/// What [`find_python`] found under a launched command.
enum Found {
    Python(Box<PythonProcess>),
    /// A CPython the tracer cannot read (3.7 and older: their version string is
    /// read, their runtime structures are not known).
    Unsupported(attach::Error),
    /// No interpreter before the command exited or [`FIND_PYTHON_FOR`] passed.
    Nothing,
}

/// How long after its interpreter appears a started Python is given to write its
/// version string (it does while it starts, within milliseconds).
const VERSION_SETTLES_IN: Duration = Duration::from_millis(300);

/// Every descendant of `pid`, by scanning `/proc/*/stat` for parent ids.
pub(crate) fn descendants(pid: i32) -> Vec<i32> {
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

pub(crate) fn forward(pid: i32, sig: i32) {
    // SAFETY: sending a signal to our own child.
    unsafe {
        libc::kill(pid, sig);
    }
}

pub(crate) fn exit_code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Waits for the child, killing it at `deadline`.
pub(crate) fn wait_child(child: &mut Child, deadline: Option<Instant>) -> i32 {
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

/// Prints every thread's stack to stderr (what was running at a timeout), values
/// and the command line redacted with the built-in and `redact` names; an exact
/// recording's hook threads are left out (see [`stacks_text`]).
pub(crate) fn print_stacks(pid: i32, redact: &[String], hook_dir: Option<&Path>) {
    eprint!("{}", stacks_text(pid, redact, hook_dir));
}

/// Every thread's stack of `pid`, as text (what was running at a timeout). With
/// `hook_dir` (an exact recording's bootstrap folder), a thread the hook started (its
/// outermost frame runs a file of that folder: the hook's sender, `_flusher`) is left
/// out: it is the tracer's, not the program's. A program thread that is inside one of
/// the hook's callbacks (3.8-3.11's trace function) is still shown, hook frame and all.
fn stacks_text(pid: i32, redact: &[String], hook_dir: Option<&Path>) -> String {
    let Ok(process) = PythonProcess::open(pid) else {
        return String::new();
    };
    let mut walker = Walker::new(process);
    let mut options = SnapshotOptions::default();
    options.repr.redact_names = redact.to_vec();
    match take_snapshot(&mut walker, &mut Names::new(), &options) {
        Ok(mut snapshot) => {
            if let Some(dir) = hook_dir {
                snapshot.threads.retain(|t| {
                    !t.frames
                        .last()
                        .is_some_and(|f| Path::new(&f.file).starts_with(dir))
                });
            }
            format!(
                "tracer: timeout reached; where every thread was:\n{}",
                crate::dump::render_text(&snapshot, &command_line(pid, redact).join(" "))
            )
        }
        Err(e) => format!("tracer: timeout reached; could not read the stacks: {e}\n"),
    }
}

/// A process's command line from `/proc/PID/cmdline`, its secrets redacted with the
/// built-in names and `redact` (a run's are applied again by [`RunInfo::set_redact`],
/// which also covers a launched command's).
pub fn command_line(pid: i32, redact: &[String]) -> Vec<String> {
    let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default();
    attach::redact::redact_command(&argv, redact)
}
