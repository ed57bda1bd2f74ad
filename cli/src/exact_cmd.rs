//! `tracer record --exact -- CMD`: every Python process CMD starts loads the exact-mode
//! hook (`attach::exact`) before the program's code, and streams its calls, returns,
//! exceptions and values to this process, which writes them as the same Parquet trace
//! as sampled mode (`source = exact`).
//!
//! The receiver runs on a thread of its own while this thread watches for Ctrl-C,
//! SIGTERM, `--timeout` and the command's exit, as in sampled mode; once the command
//! has exited the receiver drains what the hooks sent and the trace is finished.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use attach::exact::{ExactError, ExactOptions, ExactSession, ExactStats};
use attach::inject::{self, InjectError, InjectOptions, Injected, Outcome, Withdrawal};
use attach::repr::ReprOptions;
use attach::PythonProcess;
use storage::run::{Mode, RunInfo, RunStatus};

use crate::error::{CliError, CliResult};
use crate::report::{self, Recording, Summary};
use crate::signals;
use crate::trace_cmd::{
    command_line, create_trace, descendants, exit_code_of, forward, print_stacks,
    still_this_tracer, wait_child, AttachArgs, RecordArgs, TraceOptions, TIMEOUT_EXIT,
};

/// Set to `0`, makes `record --exact` run the hook's pure-Python callbacks instead of
/// its native accelerator (to compare them, or to rule the accelerator out).
const NATIVE_VARIABLE: &str = "TRACER_EXACT_NATIVE";

/// The hook's options from the command line's.
fn exact_options(opts: &TraceOptions) -> ExactOptions {
    let native = std::env::var_os(NATIVE_VARIABLE).is_none_or(|v| v != "0");
    ExactOptions {
        include: opts.include.clone(),
        exclude: opts.exclude.clone(),
        no_args: opts.no_args,
        max_calls: opts.max_calls,
        subprocesses: opts.subprocesses,
        repr: ReprOptions {
            redact_names: opts.redact.clone(),
            ..ReprOptions::default()
        },
        native,
        ..ExactOptions::default()
    }
}

/// How often `record --exact` looks whether the child has exited: the recording of a
/// short program ends at most this long after it.
const CHILD_POLL_MS: u64 = 2;

/// Makes `malloc` keep the memory this process frees instead of handing it back to
/// the kernel. An exact recording builds a batch of columns (a few MiB) several
/// times a second and frees the last one on the segment thread; by default glibc
/// returns such blocks at once (they are above its `mmap` threshold, or trimmed from
/// the top of the heap), so every new batch touched fresh pages: on fib(27) with
/// values, about 26,000 page faults in the tracer (7% of the run's CPU in one
/// profile); 14,000-17,000 with this, the first touches of the batches in flight.
/// The tracer's resident memory stays at its peak until it exits.
fn keep_freed_memory() {
    // SAFETY: `mallopt` only changes glibc's allocation parameters; it is called
    // before the recording's threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

pub fn record(args: &RecordArgs) -> CliResult<i32> {
    signals::install_for_record();
    keep_freed_memory();
    let started = Instant::now();
    let opts = &args.trace;
    let session = ExactSession::new(exact_options(opts)).map_err(|e| match e {
        ExactError::Filter(e) => CliError::usage(e.to_string()),
        other => CliError::new(format!("cannot prepare exact tracing: {other}")),
    })?;
    let mut child = Command::new(&args.command[0])
        .args(&args.command[1..])
        .envs(session.child_env())
        .spawn()
        .map_err(|e| {
            CliError::new(format!("cannot start {}: {e}", args.command[0])).hint(
                "check the command after `--`, e.g. `tracer record --exact -- python3 app.py`",
            )
        })?;
    let child_pid = child.id() as i32;
    let mut run = RunInfo::new(args.command.clone(), child_pid, Mode::Exact);
    run.launched = true;
    run.include = opts.include.clone();
    run.exclude = opts.exclude.clone();
    run.set_redact(opts.redact.clone());
    run.capture_args = !opts.no_args;
    run.subprocesses = opts.subprocesses;
    let (writer, _) = match create_trace(opts, &run, child_pid) {
        Ok(created) => created,
        Err(e) => {
            forward(child_pid, libc::SIGKILL);
            let _ = child.wait();
            return Err(e);
        }
    };
    let mut recording = Recording {
        writer,
        summary: Summary::default(),
    };
    let deadline = args
        .timeout
        .map(|s| started + Duration::from_secs_f64(s.max(0.0)));
    let stop = AtomicBool::new(false);
    let mut probe = UnsupportedProbe::new(child_pid);
    let (status, exit_code, received) = std::thread::scope(|scope| {
        let receiver = scope.spawn(|| session.run(&mut recording, &stop));
        let mut status = None;
        let exit_code = loop {
            probe.look();
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
                break exit_code_of(exit);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                for pid in std::iter::once(child_pid).chain(descendants(child_pid)) {
                    print_stacks(pid, &opts.redact, Some(session.bootstrap_dir()));
                }
                status = Some(RunStatus::Timeout);
                forward(child_pid, libc::SIGTERM);
                break wait_child(&mut child, Some(Instant::now() + Duration::from_secs(2)));
            }
            std::thread::sleep(Duration::from_millis(CHILD_POLL_MS));
        };
        stop.store(true, Ordering::SeqCst);
        session.wake();
        let received = receiver
            .join()
            .map_err(|_| CliError::new("the exact-mode receiver failed"));
        (status, exit_code, received)
    });
    let status = status.unwrap_or(if exit_code == 0 {
        RunStatus::Completed
    } else {
        RunStatus::Failed
    });
    let stats = received?.map_err(|e| CliError::new(format!("exact tracing failed: {e}")))?;
    let unsupported = probe
        .found
        .filter(|_| stats.processes.is_empty())
        .map(|e| format!("{e}: nothing was traced"));
    if unsupported.is_some() {
        // The report's header names the Python it found, not "Python ?".
        run.python_version = run.python_version.or(probe.version);
    }
    finish(
        run,
        recording,
        &stats,
        status,
        Some(exit_code),
        started,
        unsupported,
    )?;
    Ok(match status {
        RunStatus::Timeout => TIMEOUT_EXIT,
        _ => exit_code,
    })
}

/// Looks, during the first seconds of a launched command, for a CPython too old for
/// the hook (3.7 and older: its bootstrap does nothing there), so that the report
/// can say so instead of asking whether the command was Python.
struct UnsupportedProbe {
    pid: i32,
    looks_left: u32,
    next: Instant,
    found: Option<String>,
    /// The version of the Python it found, for the run's `python_version`.
    version: Option<String>,
}

impl UnsupportedProbe {
    /// Looks this many times, this far apart (reading a process's symbols takes a
    /// few milliseconds).
    const LOOKS: u32 = 80;
    const EVERY: Duration = Duration::from_millis(25);

    fn new(pid: i32) -> UnsupportedProbe {
        UnsupportedProbe {
            pid,
            looks_left: Self::LOOKS,
            next: Instant::now(),
            found: None,
            version: None,
        }
    }

    fn look(&mut self) {
        if self.looks_left == 0 || Instant::now() < self.next {
            return;
        }
        self.looks_left -= 1;
        self.next = Instant::now() + Self::EVERY;
        for pid in std::iter::once(self.pid).chain(descendants(self.pid)) {
            if still_this_tracer(pid) {
                continue;
            }
            match PythonProcess::open(pid) {
                Err(e @ attach::Error::UnsupportedVersion { .. }) => {
                    self.found = Some(e.to_string());
                    if let attach::Error::UnsupportedVersion { version, .. } = &e {
                        // `2.7 (by its file name)`: the version alone.
                        let number = version.split(" (").next().unwrap_or(version);
                        self.version = Some(number.to_string());
                    }
                    self.looks_left = 0;
                }
                Ok(_) => self.looks_left = 0,
                Err(_) => {}
            }
        }
    }
}

/// How long `attach --exact` waits for the target's main thread to run the loader,
/// after saying that it waits (it says so once [`SAY_WAITING_AFTER`] has passed).
const SAFE_POINT_WAIT: Duration = Duration::from_secs(10);

/// How long the loader may wait in the queue before the tracer says it is waiting.
const SAY_WAITING_AFTER: Duration = Duration::from_secs(1);

/// How often, while the loader waits in the queue, the tracer looks at Ctrl-C,
/// SIGTERM and `--duration`: a stop request withdraws the loader within this long.
const WAIT_SLICE: Duration = Duration::from_millis(20);

/// How long, once told to stop, the receiver lets an attached hook send what it still
/// holds before it closes the connection (which makes the hook remove itself).
const DETACH_GRACE: Duration = Duration::from_millis(300);

/// `tracer attach --pid PID --exact`: places the hook into the running process (3.12+)
/// through [`attach::inject`], records until Ctrl-C, `--duration` or the target's
/// exit, then closes the connection, on which the hook removes itself (frees its
/// `sys.monitoring` tool id, stops its thread): the process is left as it was. If the
/// tracer dies instead, the hook sees the socket close and does the same.
pub fn attach(args: &AttachArgs) -> CliResult<i32> {
    signals::install_for_attach();
    keep_freed_memory();
    let started = Instant::now();
    let opts = &args.trace;
    if opts.subprocesses {
        // The hook placed into a running process does not reach the children it
        // starts (they never run the bootstrap): refused rather than ignored.
        return Err(CliError::usage(
            "--subprocesses does not follow the children of a process attached with --exact",
        )
        .hint(format!(
            "tracer attach --pid {} --subprocesses (sampled), or start it under `tracer record --exact --subprocesses -- ...`",
            args.pid
        )));
    }
    let process = PythonProcess::open_named(args.pid)?;
    if process.version.minor < 12 {
        return Err(CliError::new(format!(
            "exact tracing of a running process needs Python 3.12 or newer; pid {} runs {}",
            args.pid, process.version
        ))
        .hint(format!(
            "tracer attach --pid {} (sampled: nothing is injected), or restart it under `tracer record --exact -- ...`",
            args.pid
        )));
    }
    // The hook reaches the tracer through a socket and a bootstrap folder only the
    // tracer's user can open (the connection's user is checked too): another user's
    // process is refused before anything is placed into it.
    let own = nix::unistd::geteuid().as_raw();
    if let (Some(owner), _) = inject::process_owner(args.pid) {
        if owner != own {
            let user = |uid: u32| {
                nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                    .ok()
                    .flatten()
                    .map_or_else(|| format!("uid {uid}"), |u| u.name)
            };
            let owner_name = user(owner);
            return Err(CliError::new(format!(
                "exact tracing of another user's process is not supported: pid {} runs as {owner_name}, the tracer as {}",
                args.pid,
                user(own)
            ))
            .hint(format!(
                "run the tracer as that user (sudo -u {owner_name} tracer attach --exact --pid {}), or trace it sampled: tracer attach --pid {}",
                args.pid, args.pid
            )));
        }
    }
    // The pure-Python hook: a native module cannot be unloaded, and each attach would
    // load another copy of it from its own session folder (memory that grows with
    // every attach to a long-lived process).
    let options = ExactOptions {
        subprocesses: false,
        grace: DETACH_GRACE,
        native: false,
        ..exact_options(opts)
    };
    let session = ExactSession::new(options).map_err(|e| match e {
        ExactError::Filter(e) => CliError::usage(e.to_string()),
        other => CliError::new(format!("cannot prepare exact tracing: {other}")),
    })?;
    let mut run = RunInfo::new(command_line(args.pid, &[]), args.pid, Mode::Exact);
    run.python_version = Some(process.version.to_string());
    run.python_executable = Some(process.executable.clone());
    if let Ok(cwd) = std::fs::read_link(format!("/proc/{}/cwd", args.pid)) {
        run.cwd = cwd.to_string_lossy().into_owned();
    }
    run.include = opts.include.clone();
    run.exclude = opts.exclude.clone();
    run.set_redact(opts.redact.clone());
    run.capture_args = !opts.no_args;
    let (writer, _) = create_trace(opts, &run, args.pid)?;
    let mut recording = Recording {
        writer,
        summary: Summary::default(),
    };
    let stop = AtomicBool::new(false);
    let (outcome, received) = std::thread::scope(|scope| {
        let receiver = scope.spawn(|| session.run(&mut recording, &stop));
        let outcome = inject_and_watch(args, &session, started);
        stop.store(true, Ordering::SeqCst);
        session.wake();
        let received = receiver
            .join()
            .map_err(|_| CliError::new("the exact-mode receiver failed"));
        (outcome, received)
    });
    let stats = received?.map_err(|e| CliError::new(format!("exact tracing failed: {e}")))?;
    match outcome {
        Ok((status, nothing_injected)) => {
            finish(
                run,
                recording,
                &stats,
                status,
                None,
                started,
                nothing_injected,
            )?;
            Ok(0)
        }
        Err(e) => {
            // Nothing was placed into the target: no trace is left behind either.
            if let Ok(parts) = recording.writer.abandon() {
                let _ = std::fs::remove_dir_all(parts);
            }
            Err(e)
        }
    }
}

/// What stops an attached recording now: Ctrl-C or SIGTERM, or `--duration`.
fn stop_requested(deadline: Option<Instant>) -> Option<RunStatus> {
    if signals::take().is_some() {
        return Some(RunStatus::Interrupted);
    }
    deadline
        .is_some_and(|d| Instant::now() >= d)
        .then_some(RunStatus::DurationReached)
}

/// Injects the loader, waits for it to run, then waits for Ctrl-C, `--duration` or
/// the target's exit; returns the status the run ended with and, when it ended before
/// anything was injected, a line saying so for the report.
///
/// While the loader waits in the target's queue for the main thread (blocked in a
/// long sleep, a join, a read), Ctrl-C, SIGTERM and `--duration` are looked at every
/// [`WAIT_SLICE`]: the loader is withdrawn (it does nothing when the main thread gets
/// to it) and the run ends with an empty trace, `interrupted` or `duration_reached`.
/// If the loader had already started, the hook is in and is removed as on any stop
/// (the connection closes).
fn inject_and_watch(
    args: &AttachArgs,
    session: &ExactSession,
    started: Instant,
) -> CliResult<(RunStatus, Option<String>)> {
    let pid = args.pid;
    let deadline = args
        .duration
        .map(|s| started + Duration::from_secs_f64(s.max(0.0)));
    let nothing_injected = |status: RunStatus| {
        let why = match status {
            RunStatus::DurationReached => "--duration ended",
            _ => "interrupted",
        };
        Some(format!(
            "{why} before pid {pid}'s main thread reached a safe point (it is blocked, e.g. in a long sleep or a join): nothing was injected"
        ))
    };
    if let Some(status) = stop_requested(deadline) {
        return Ok((status, nothing_injected(status)));
    }
    let inject_options = InjectOptions {
        wait: WAIT_SLICE,
        ..InjectOptions::default()
    };
    let mut injected = inject::run_python_source(pid, &checked_loader(session), &inject_options)
        .map_err(|e| inject_error(pid, e))?;
    let mut said_waiting = false;
    let ran = loop {
        let queued = match injected {
            Injected::Ran(ran) => break ran,
            Injected::Queued(queued) => queued,
        };
        if let Some(status) = stop_requested(deadline) {
            return match queued.withdraw().map_err(|e| inject_error(pid, e))? {
                Withdrawal::Withdrawn => Ok((status, nothing_injected(status))),
                Withdrawal::AlreadyRan(_) => Ok((status, None)),
            };
        }
        if queued.waited() >= SAY_WAITING_AFTER + SAFE_POINT_WAIT {
            let withdrawn = queued.withdraw();
            return Err(CliError::new(format!(
                "pid {pid}'s main thread did not reach a safe point within {} s (it is blocked, e.g. in a long sleep or a join); nothing was injected{}",
                SAFE_POINT_WAIT.as_secs(),
                match withdrawn {
                    Ok(_) => "",
                    Err(_) => " (the queued loader will do nothing when it runs)",
                }
            ))
            .hint(format!("tracer attach --pid {pid} (sampled: works whatever the main thread does)")));
        }
        if !said_waiting && queued.waited() >= SAY_WAITING_AFTER {
            said_waiting = true;
            eprintln!(
                "tracer: waiting up to {} s for pid {pid}'s main thread to reach a safe point: {queued}",
                SAFE_POINT_WAIT.as_secs()
            );
        }
        injected = queued.wait(WAIT_SLICE).map_err(|e| inject_error(pid, e))?;
    };
    if let Outcome::Raised(message) = &ran.outcome {
        let hint = if message.starts_with(NO_TOOL_ID) {
            format!("tracer attach --pid {pid} (sampled: reads the process from outside, with no sys.monitoring tool id)")
        } else {
            format!("tracer attach --pid {pid} (sampled)")
        };
        return Err(
            CliError::new(format!("the hook could not start in pid {pid}: {message}")).hint(hint),
        );
    }
    loop {
        if signals::take().is_some() {
            return Ok((RunStatus::Interrupted, None));
        }
        if attach::sampler::target_gone(pid) {
            return Ok((RunStatus::TargetExited, None));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok((RunStatus::DurationReached, None));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How the loader's error starts when the hook found no free `sys.monitoring` tool id.
const NO_TOOL_ID: &str = "RuntimeError: no free sys.monitoring tool id";

/// The session's loader, followed by a check that the hook took a `sys.monitoring`
/// tool id. A hook that finds every id taken (a process running a debugger, coverage
/// and profilers at once) reports it over its connection and returns without raising,
/// which the tracer learned only when the run ended: it recorded nothing until
/// `--duration` or Ctrl-C, and exited 0 with an empty trace. Raised in the loader
/// instead, it ends `attach` at once with an error (see [`inject_and_watch`]).
/// Compared with the ids before the hook started, so a hook left by another tracer
/// (also named `tracer`) does not count.
fn checked_loader(session: &ExactSession) -> String {
    format!(
        "import sys as _tracer_sys\n\
         _tracer_before = [_tracer_sys.monitoring.get_tool(_t) for _t in range(6)]\n\
         {}\n\
         _tracer_after = [_tracer_sys.monitoring.get_tool(_t) for _t in range(6)]\n\
         if not any(a == 'tracer' and b != 'tracer' for a, b in zip(_tracer_after, _tracer_before)):\n    \
         raise RuntimeError('no free sys.monitoring tool id: ' + ', '.join('%d (%s)' % (_t, _n) for _t, _n in enumerate(_tracer_after) if _n is not None) + ' in use')\n",
        session.loader_source()
    )
}

/// The command line's form of an injection error.
fn inject_error(pid: i32, error: InjectError) -> CliError {
    let hint = error
        .hint()
        .unwrap_or_else(|| format!("tracer attach --pid {pid} (sampled: nothing is injected)"));
    CliError::new(format!("cannot place the hook into pid {pid}: {error}")).hint(hint)
}

/// Fills in the run from what the hooks said, finishes the trace and prints the
/// report with the exact-mode lines: why nothing was traced (`nothing_traced`, when
/// that is known), which mechanism ran in each process, errors, dropped events and
/// limited functions.
fn finish(
    mut run: RunInfo,
    recording: Recording<storage::writer::TraceWriter>,
    stats: &ExactStats,
    status: RunStatus,
    exit_code: Option<i32>,
    started: Instant,
    nothing_traced: Option<String>,
) -> CliResult {
    if let Some(first) = stats.processes.first() {
        run.pid = first.pid as i32;
        run.python_version = Some(first.python_version.clone());
        run.python_executable = Some(first.python_executable.clone());
        if !first.cwd.is_empty() {
            run.cwd = first.cwd.clone();
        }
    }
    run.status = status;
    run.exit_code = exit_code;
    run.dropped_events = stats.dropped_events;
    run.limited_functions = stats
        .limited_functions
        .iter()
        .map(|l| storage::LimitedFunction {
            pid: l.pid as i32,
            module: l.module.clone(),
            function: l.function.clone(),
            calls_not_recorded: l.calls_not_recorded,
        })
        .collect();
    run.ended_at = Some(storage::utc::rfc3339(SystemTime::now()));
    run.events = recording.summary.events;
    let path = recording
        .writer
        .finish(run.clone())
        .map_err(|e| CliError::new(format!("cannot finish the trace: {e}")))?;
    let mut extra = Vec::new();
    if let Some(why) = nothing_traced {
        extra.push(why);
    } else if stats.processes.is_empty() {
        extra.push(
            "no Python process loaded the hook: was the command Python, started without -S, -E or -I?"
                .to_string(),
        );
    }
    for p in &stats.processes {
        extra.push(format!(
            "pid {} (Python {}): {}, {} events{}",
            p.pid,
            p.python_version,
            p.mechanism,
            p.events,
            if p.completed || !run.launched {
                ""
            } else {
                ", ended without saying goodbye"
            }
        ));
    }
    for error in &stats.errors {
        extra.push(format!("ERROR: {error}"));
    }
    if stats.dropped_events > 0 {
        extra.push(format!(
            "WARNING: {} events were DROPPED because the tracer could not keep up; \
             the trace is incomplete (narrow it with --include/--exclude, --no-args or --max-calls)",
            stats.dropped_events
        ));
    }
    eprint!(
        "{}",
        report::render(&run, &recording.summary, &path, started.elapsed(), &extra)
    );
    Ok(())
}
