//! Make a live CPython 3.12 / 3.13 process run a short piece of Python source on its
//! main thread, at a point where the interpreter itself says Python may run.
//!
//! [`run_python_source`] is the one entry point; it returns [`Injected::Ran`] once
//! the main thread has run the source, or [`Injected::Queued`] when the main thread
//! did not get there within [`InjectOptions::wait`].
//!
//! # Method
//!
//! 1. [`PythonProcess::open`] finds the interpreter; the version must be 3.12 or 3.13
//!    and the binary that holds `_PyRuntime` (libpython or a static executable) must
//!    export `Py_AddPendingCall` and `PyRun_SimpleString`.
//! 2. A private directory is made in the target's `/tmp` (through `/proc/PID/root`,
//!    so a container's own `/tmp` works), mode 0700, owned by the target's user, with
//!    an empty file `armed` in it.
//! 3. The main thread (thread id = pid) alone is stopped with `PTRACE_SEIZE` +
//!    `PTRACE_INTERRUPT`; every other thread keeps running. Its general registers and
//!    XSAVE state are saved.
//! 4. The pending-call queue's lock (`_PyRuntime.ceval.pending_mainthread`, offsets
//!    from `python-offsets`, proved against DWARF) is read: if it is held, the thread
//!    is let go untouched and the stop is retried a millisecond later (up to
//!    [`InjectOptions::lock_retry`]).
//! 5. On that thread: `mmap` (a system call made by pointing `rip` at a `syscall`
//!    instruction already in the target's text and single-stepping it: no code is
//!    written anywhere) maps fresh pages, the loader text is written into them with
//!    `process_vm_writev`, and `Py_AddPendingCall(PyRun_SimpleString, page)` is
//!    called on a frame below the red zone, returning to address 0 (the fault there
//!    marks the end of the call).
//! 6. Every register, `orig_rax` and the XSAVE state are put back, held signals are
//!    given back, the thread is detached. Only the main thread was stopped, for
//!    three round trips of ptrace (stop, system call, call): about 0.2 ms on an idle
//!    CPU; on a loaded one each round trip also waits for the thread to get a CPU
//!    (milliseconds). [`Ran::stopped`] reports it.
//! 7. The interpreter runs `PyRun_SimpleString(page)` on its main thread at its next
//!    eval-breaker check. The loader (see the `loader` module) claims the injection
//!    (renames `armed` to `started`), runs the source in its own namespace, catching
//!    everything, and writes `result`. The tracer polls for that file.
//! 8. Once the loader ran, the text is no longer needed (the parser copied it): a
//!    second short stop of the main thread `munmap`s the pages.
//!
//! # Why it is safe
//!
//! * Python code runs only where CPython runs pending calls: on the main thread, at
//!   an eval-breaker check, holding the GIL, between bytecodes. Nothing runs at the
//!   arbitrary instruction where ptrace stopped the thread except `mmap`, `munmap`
//!   (system calls that take no user-space lock) and `Py_AddPendingCall`, which the
//!   C-API documents as callable without a thread state or the GIL. Nothing calls
//!   `malloc`.
//! * `Py_AddPendingCall` takes one lock, the queue's. A thread that holds it would
//!   deadlock on itself if borrowed; step 4 proves the stopped thread does not hold it
//!   (the lock is free while that thread cannot move). The main thread is the one
//!   that takes it most (to pop calls), and it is the stopped one; the other threads
//!   are left running, so one of them taking the lock meanwhile only makes the call
//!   wait until it lets go, never forever.
//! * No code is written into the target: `process_vm_writev` writes only the fresh
//!   pages and the return-address slot below the red zone of the borrowed stack.
//! * A thread stopped inside a blocking system call (`read`, `time.sleep`) restarts
//!   it afterwards exactly as the kernel would after a signal handler: see
//!   `stopped_thread` for `orig_rax`. Signals that arrive while the thread is held are
//!   given back on release.
//! * Every error path restores and detaches (`StoppedThread`'s `Drop`), so the
//!   target is never left stopped. The injected operations have time limits; a
//!   thread still running at a limit is interrupted and restored before it is let go.
//! * No exception escapes into the program and `__main__`'s namespace is untouched
//!   (see the `loader` module); the source runs in a fresh dict named `__tracer__`.
//!
//! # Limits
//!
//! * ptrace needs the target's user (or root) and, with the Yama LSM,
//!   `kernel.yama.ptrace_scope` 0 (1 allows only descendants, 2 only
//!   `CAP_SYS_PTRACE`); [`InjectError::Permission`] and its hint say which.
//! * A main thread blocked in a system call (`time.sleep`, `thread.join`, a `read`,
//!   `select`) runs the loader only when that call returns: [`Injected::Queued`]
//!   says so. A queued call cannot be taken out of CPython's queue. [`Queued::wait`]
//!   waits longer; dropping the [`Queued`] (or [`Queued::withdraw`]) withdraws it:
//!   when the main thread gets to it, the loader finds the `armed` file gone and
//!   does nothing, so a late run is harmless. The pages of a withdrawn call stay
//!   mapped (the interpreter will still read them): one page for a short source.
//! * A signal that makes Python raise (`KeyboardInterrupt` from Ctrl-C) arriving in
//!   the microseconds between the loader's start and its `try` escapes as a
//!   `SystemError`; one arriving while the source runs is caught by the loader,
//!   which the program then never sees.
//! * If the tracer is killed (SIGKILL) inside the few microseconds of the call, the
//!   kernel detaches with the borrowed registers and the thread faults on return.
//! * Embedded interpreters whose "main thread" (the one that ran `Py_Initialize`) is
//!   not the process's first thread: the queue's popper is then not the stopped
//!   thread, so a 3.13 `PyMutex` could be contended during the call and park the
//!   thread.
//! * A main thread in uninterruptible sleep (state `D`, e.g. slow disk or NFS I/O)
//!   does not stop until that I/O ends; a thread that never reached its stop cannot
//!   be detached before it does, so the tracer waits for it.
//! * Shadow stacks (x86 user CET, off by default in glibc) would fault on the
//!   borrowed return; seccomp filters that forbid `mmap` make the injection fail.
//! * PEP 768's `sys.remote_exec` (the interpreter's own safe-point hook) exists only
//!   from 3.14; tracer supports 3.8–3.13, so 3.12 and 3.13 use the method above and
//!   earlier versions are refused (sampled attach still works there).

mod loader;
mod stopped_thread;

use std::fmt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::error::Error;
use crate::memory::{ProcessMemory, RemoteMemory};
use crate::process::{read_maps, PythonProcess};
use stopped_thread::{write_memory, StopError, StoppedThread};

/// How long to wait for the main thread to stop after `PTRACE_INTERRUPT`.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the injected system calls and `Py_AddPendingCall` may take (they take
/// microseconds; a limit keeps a broken target from hanging the tracer).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the loader may take to write its result once it has claimed the call.
const RESULT_GRACE: Duration = Duration::from_secs(1);
const PAGE: u64 = 4096;

/// How long to wait for the target, and for what.
#[derive(Debug, Clone, Copy)]
pub struct InjectOptions {
    /// How long to wait for the main thread to reach a safe point and run the source
    /// (then [`Injected::Queued`]).
    pub wait: Duration,
    /// How long to keep retrying while the pending-call queue's lock is held (then
    /// [`InjectError::PendingLockBusy`]). It is held for nanoseconds at a time.
    pub lock_retry: Duration,
}

impl Default for InjectOptions {
    fn default() -> InjectOptions {
        InjectOptions {
            wait: Duration::from_secs(5),
            lock_retry: Duration::from_secs(1),
        }
    }
}

/// What became of an injection.
#[derive(Debug)]
pub enum Injected {
    /// The main thread ran the source.
    Ran(Ran),
    /// The call is queued in the interpreter, but the main thread did not reach a safe
    /// point in time (it is probably blocked in a system call).
    Queued(Queued),
}

/// An injection the main thread ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// How the source ended.
    pub outcome: Outcome,
    /// From the call being queued to the tracer seeing its result.
    pub waited: Duration,
    /// How long the target's main thread was held in ptrace stops in all (the queuing
    /// stop and the one that frees the loader's pages); the other threads ran on.
    pub stopped: Duration,
    /// Whether the loader's pages were unmapped again (false only if that second stop
    /// failed, e.g. because the process exited).
    pub unmapped: bool,
}

/// How the injected source ended. The loader catches everything, so none of these
/// reaches the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ran to its end.
    Completed,
    /// It raised (or had a syntax error, or called `sys.exit`): `Type: message`.
    Raised(String),
    /// It started on the main thread but had not finished when the wait ended.
    StillRunning,
}

/// An injection still in the interpreter's queue. Dropping it withdraws it (see
/// [`Queued::withdraw`]).
#[derive(Debug)]
pub struct Queued {
    pid: i32,
    syscall_insn: u64,
    page: u64,
    len: u64,
    dir: MarkerDir,
    queued_at: Instant,
    stopped: Duration,
}

/// What [`Queued::withdraw`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withdrawal {
    /// The loader will do nothing when the main thread gets to it.
    Withdrawn,
    /// Too late: the loader had already started.
    AlreadyRan(Ran),
}

/// Why an injection was refused or failed. In every case the target was left running
/// with its registers as they were.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error(transparent)]
    Process(#[from] Error),
    #[error(
        "process {pid} runs Python {version}: tracer injects code only into Python 3.12 \
         and 3.13; sampled attach (without --exact) still works"
    )]
    UnsupportedVersion { pid: i32, version: String },
    #[error(
        "the interpreter of process {pid} does not export {symbol}, which injection \
         needs; sampled attach (without --exact) still works"
    )]
    MissingSymbol { pid: i32, symbol: &'static str },
    #[error("no permission to ptrace process {pid}: {detail}")]
    Permission {
        pid: i32,
        detail: String,
        /// `kernel.yama.ptrace_scope`, when Yama is active.
        ptrace_scope: Option<u32>,
    },
    #[error("process {pid} is already traced by process {tracer}")]
    AlreadyTraced { pid: i32, tracer: i32 },
    #[error("the main thread of process {pid} cannot run Python code: {state}")]
    MainThreadUnavailable { pid: i32, state: String },
    #[error(
        "the pending-call lock of process {pid} stayed held for {waited:?}; nothing was \
         injected"
    )]
    PendingLockBusy { pid: i32, waited: Duration },
    #[error("the pending-call queue of process {pid} is full; nothing was injected")]
    QueueFull { pid: i32 },
    #[error("unexpected interpreter state in process {pid}: {what}; nothing was injected")]
    Implausible { pid: i32, what: String },
    #[error("process {pid} has no `syscall` instruction in its readable code")]
    NoSyscallInstruction { pid: i32 },
    #[error("{call} in process {pid} failed: {errno}")]
    RemoteSyscall {
        pid: i32,
        call: &'static str,
        errno: Errno,
    },
    #[error("{request} on process {pid} failed: {errno}")]
    Ptrace {
        pid: i32,
        request: &'static str,
        errno: Errno,
    },
    #[error("process {pid} did not complete {what} in time; its registers were restored")]
    Timeout { pid: i32, what: &'static str },
    #[error(
        "process {pid} stopped with {signal:?} at {rip:#x} during the injected call; \
         its registers were restored"
    )]
    Fault {
        pid: i32,
        signal: nix::sys::signal::Signal,
        rip: u64,
    },
    #[error("process {0} exited")]
    Exited(i32),
    #[error("cannot prepare the loader's directory {path}: {source}")]
    MarkerDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl InjectError {
    /// What the user can do about it, when there is something.
    pub fn hint(&self) -> Option<String> {
        match self {
            InjectError::Permission { ptrace_scope, .. } => Some(match ptrace_scope {
                Some(scope @ 1..) => format!(
                    "kernel.yama.ptrace_scope is {scope}: only {} may ptrace this process; \
                     run tracer as root, or `sysctl kernel.yama.ptrace_scope=0` (1 still \
                     needs the target to be tracer's descendant)",
                    if *scope >= 2 {
                        "a process with CAP_SYS_PTRACE"
                    } else {
                        "its ancestors or a process with CAP_SYS_PTRACE"
                    }
                ),
                _ => "run tracer as the same user as the target, or as root".into(),
            }),
            InjectError::AlreadyTraced { tracer, .. } => Some(format!(
                "detach the other tracer (process {tracer}: a debugger, strace, or py-spy \
                 --native) and try again"
            )),
            InjectError::PendingLockBusy { .. } => {
                Some("another tool may be injecting at the same time; try again".into())
            }
            InjectError::UnsupportedVersion { .. } | InjectError::MissingSymbol { .. } => {
                Some("run `tracer attach --pid PID` without --exact to sample it".into())
            }
            _ => None,
        }
    }
}

/// Has `pid`'s main thread run `source` (Python) at its next safe point, in a fresh
/// namespace, with every exception caught, and waits up to `options.wait` for it.
/// See the module documentation for the method and its limits.
pub fn run_python_source(
    pid: i32,
    source: &str,
    options: &InjectOptions,
) -> Result<Injected, InjectError> {
    let target = Target::open(pid)?;
    let dir = MarkerDir::create(pid)?;
    let mut text = loader::loader_text(source, &dir.target_path).into_bytes();
    text.push(0);
    let len = (text.len() as u64).div_ceil(PAGE) * PAGE;
    let (page, stopped) = target.queue(&text, len, options)?;
    let queued = Queued {
        pid,
        syscall_insn: target.syscall_insn,
        page,
        len,
        dir,
        queued_at: Instant::now(),
        stopped,
    };
    queued.wait(options.wait)
}

impl Queued {
    /// How long the tracer has waited so far.
    pub fn waited(&self) -> Duration {
        self.queued_at.elapsed()
    }

    /// Waits up to `limit` more for the main thread to run the source.
    pub fn wait(self, limit: Duration) -> Result<Injected, InjectError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(outcome) = self.dir.result() {
                return Ok(Injected::Ran(self.finish(outcome)));
            }
            if self.dir.started() {
                let grace = deadline.max(Instant::now() + RESULT_GRACE);
                let outcome = self.dir.wait_result(grace);
                return Ok(Injected::Ran(self.finish(outcome)));
            }
            if !process_alive(self.pid) {
                return Err(InjectError::Exited(self.pid));
            }
            if Instant::now() >= deadline {
                return Ok(Injected::Queued(self));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Withdraws the call: when the main thread gets to it, the loader does nothing.
    /// If the loader had already started, waits briefly for its result instead.
    pub fn withdraw(self) -> Result<Withdrawal, InjectError> {
        if self.dir.disarm() {
            return Ok(Withdrawal::Withdrawn);
        }
        let outcome = self.dir.wait_result(Instant::now() + RESULT_GRACE);
        Ok(Withdrawal::AlreadyRan(self.finish(outcome)))
    }

    /// The loader has started, so its text was parsed: unmap the pages.
    fn finish(self, outcome: Outcome) -> Ran {
        let waited = self.queued_at.elapsed();
        let (unmapped, unmap_stop) = match unmap(self.pid, self.syscall_insn, self.page, self.len) {
            Ok(held) => (true, held),
            Err(_) => (false, Duration::ZERO),
        };
        Ran {
            outcome,
            waited,
            stopped: self.stopped + unmap_stop,
            unmapped,
        }
    }
}

impl fmt::Display for Queued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the main thread of process {} has not reached a safe point in {:.1?}: it is \
             probably blocked in a system call (time.sleep, a join, a read); the source \
             runs when that call returns, unless the call is withdrawn first",
            self.pid,
            self.waited()
        )
    }
}

/// Where the pending-call queue's lock is, by version.
#[derive(Debug, Clone, Copy)]
enum PendingLock {
    /// 3.12: the address of a `PyThread_type_lock`, i.e. a `sem_t*`.
    SemaphorePointer(u64),
    /// 3.13: the address of a one-byte `PyMutex`.
    Mutex(u64),
}

/// What injection needs to know about a target, found before anything is stopped.
struct Target {
    pid: i32,
    mem: RemoteMemory,
    add_pending_call: u64,
    run_simple_string: u64,
    lock: PendingLock,
    syscall_insn: u64,
}

impl Target {
    fn open(pid: i32) -> Result<Target, InjectError> {
        let process = PythonProcess::open(pid)?;
        let version = process.version;
        if (version.major, version.minor) < (3, 12) || (version.major, version.minor) > (3, 13) {
            return Err(InjectError::UnsupportedVersion {
                pid,
                version: version.to_string(),
            });
        }
        let runtime_layout = process.layout.runtime;
        let lock = match (
            runtime_layout.pending_calls_lock,
            runtime_layout.pending_calls_mutex,
        ) {
            (Some(offset), _) => PendingLock::SemaphorePointer(process.runtime + offset),
            (None, Some(offset)) => PendingLock::Mutex(process.runtime + offset),
            (None, None) => {
                return Err(InjectError::UnsupportedVersion {
                    pid,
                    version: version.to_string(),
                })
            }
        };
        let maps = read_maps(pid)?;
        let (binary, _) = crate::process::find_python_binary(pid, &maps, &process.executable)?;
        let symbol = |name: &'static str| {
            binary
                .symbol(name)
                .ok_or(InjectError::MissingSymbol { pid, symbol: name })
        };
        let add_pending_call = symbol("Py_AddPendingCall")?;
        let run_simple_string = symbol("PyRun_SimpleString")?;
        check_main_thread(pid)?;
        let syscall_insn = find_syscall_instruction(pid, &process.mem, &maps)?;
        Ok(Target {
            pid,
            mem: process.mem,
            add_pending_call,
            run_simple_string,
            lock,
            syscall_insn,
        })
    }

    /// Stops the main thread at a moment it does not hold the pending-call lock, maps
    /// `len` bytes, writes `text` there and queues `PyRun_SimpleString(text)`.
    /// Returns the pages' address and how long the thread was held.
    fn queue(
        &self,
        text: &[u8],
        len: u64,
        options: &InjectOptions,
    ) -> Result<(u64, Duration), InjectError> {
        let pid = self.pid;
        let started = Instant::now();
        let mut earlier_stops = Duration::ZERO;
        let mut thread = loop {
            let thread =
                StoppedThread::stop(pid, pid, STOP_TIMEOUT).map_err(|e| stop_error(pid, e))?;
            if !self.pending_lock_held()? {
                break thread;
            }
            earlier_stops += thread.release().map_err(|e| stop_error(pid, e))?;
            if started.elapsed() >= options.lock_retry {
                return Err(InjectError::PendingLockBusy {
                    pid,
                    waited: started.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let page = thread
            .syscall(
                self.syscall_insn,
                libc::SYS_mmap,
                [
                    0,
                    len,
                    (libc::PROT_READ | libc::PROT_WRITE) as u64,
                    (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                    u64::MAX,
                    0,
                ],
                CALL_TIMEOUT,
            )
            .map_err(|e| stop_error(pid, e))?;
        if (-4095..0).contains(&page) {
            return Err(InjectError::RemoteSyscall {
                pid,
                call: "mmap",
                errno: Errno::from_raw(-page as i32),
            });
        }
        let page = page as u64;
        let unmap_unused = |thread: &mut StoppedThread| {
            let _ = thread.syscall(
                self.syscall_insn,
                libc::SYS_munmap,
                [page, len, 0, 0, 0, 0],
                CALL_TIMEOUT,
            );
        };
        if let Err(e) = write_memory(Pid::from_raw(pid), page, text) {
            unmap_unused(&mut thread);
            return Err(stop_error(pid, e));
        }
        // A call that faulted or timed out may have queued the text before it stopped:
        // its pages then stay mapped, since the interpreter may still read them.
        let rc = thread
            .call(
                self.add_pending_call,
                &[self.run_simple_string, page],
                CALL_TIMEOUT,
            )
            .map_err(|e| stop_error(pid, e))?;
        if rc as i32 != 0 {
            // Not queued, so nothing will read the pages: give them back.
            unmap_unused(&mut thread);
            return Err(InjectError::QueueFull { pid });
        }
        let held = thread.release().map_err(|e| stop_error(pid, e))?;
        Ok((page, earlier_stops + held))
    }

    /// Whether the pending-call queue's lock is held right now, read while the main
    /// thread is stopped. A value that fits no lock is refused rather than guessed.
    fn pending_lock_held(&self) -> Result<bool, InjectError> {
        let implausible = |what: String| InjectError::Implausible {
            pid: self.pid,
            what,
        };
        let read_err = |e| InjectError::Process(crate::process::read_error(self.pid, e));
        match self.lock {
            PendingLock::SemaphorePointer(at) => {
                let sem = self.mem.read_u64(at).map_err(read_err)?;
                if sem == 0 {
                    return Err(implausible("the pending-call lock is not allocated".into()));
                }
                // glibc's sem_t starts with a 64-bit word whose low half is the value
                // (musl: a 32-bit value with the waiters flag in bit 31).
                let value = self.mem.read_u32(sem).map_err(read_err)? & 0x7fff_ffff;
                match value {
                    0 => Ok(true),
                    1 => Ok(false),
                    other => Err(implausible(format!(
                        "the pending-call semaphore holds {other}, not 0 or 1"
                    ))),
                }
            }
            PendingLock::Mutex(at) => {
                let bits = self.mem.read_u8(at).map_err(read_err)?;
                match bits {
                    0 | 2 => Ok(false),
                    1 | 3 => Ok(true),
                    other => Err(implausible(format!(
                        "the pending-call mutex holds {other:#x}, not a PyMutex state"
                    ))),
                }
            }
        }
    }
}

/// Gives back the loader's pages, in a second short stop of the main thread.
fn unmap(pid: i32, syscall_insn: u64, page: u64, len: u64) -> Result<Duration, InjectError> {
    let mut thread = StoppedThread::stop(pid, pid, STOP_TIMEOUT).map_err(|e| stop_error(pid, e))?;
    let rc = thread
        .syscall(
            syscall_insn,
            libc::SYS_munmap,
            [page, len, 0, 0, 0, 0],
            CALL_TIMEOUT,
        )
        .map_err(|e| stop_error(pid, e))?;
    let held = thread.release().map_err(|e| stop_error(pid, e))?;
    if rc != 0 {
        return Err(InjectError::RemoteSyscall {
            pid,
            call: "munmap",
            errno: Errno::from_raw(-rc as i32),
        });
    }
    Ok(held)
}

/// Refuses a main thread that is gone, stopped, or already traced, before stopping
/// anything; explains a ptrace refusal.
fn check_main_thread(pid: i32) -> Result<(), InjectError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/status"))
        .map_err(|_| InjectError::Exited(pid))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or("")
            .to_string()
    };
    let state = field("State:");
    if state.starts_with('Z') || state.starts_with('X') {
        return Err(InjectError::MainThreadUnavailable {
            pid,
            state: format!("it has exited ({state})"),
        });
    }
    if state.starts_with('T') {
        return Err(InjectError::MainThreadUnavailable {
            pid,
            state: format!("the process is stopped ({state}); continue it first"),
        });
    }
    match field("TracerPid:").parse::<i32>() {
        Ok(0) => Ok(()),
        Ok(tracer) => Err(InjectError::AlreadyTraced { pid, tracer }),
        Err(_) => Ok(()),
    }
}

/// `kernel.yama.ptrace_scope`, when the Yama LSM is active.
fn ptrace_scope() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

fn stop_error(pid: i32, e: StopError) -> InjectError {
    match e {
        StopError::Gone => InjectError::Exited(pid),
        StopError::SeizeRefused(Errno::EPERM) => {
            if let Err(traced @ InjectError::AlreadyTraced { .. }) = check_main_thread(pid) {
                return traced;
            }
            InjectError::Permission {
                pid,
                detail: "PTRACE_SEIZE was refused (EPERM)".into(),
                ptrace_scope: ptrace_scope(),
            }
        }
        StopError::SeizeRefused(errno) => InjectError::Ptrace {
            pid,
            request: "PTRACE_SEIZE",
            errno,
        },
        StopError::Request(request, errno) => InjectError::Ptrace {
            pid,
            request,
            errno,
        },
        StopError::Timeout(what) => InjectError::Timeout { pid, what },
        StopError::Fault { signal, rip } => InjectError::Fault { pid, signal, rip },
    }
}

/// The address of a `syscall` instruction (`0f 05`) in the target's executable
/// mappings, libc's first. Any such byte pair works, even inside another instruction:
/// execution starts there.
fn find_syscall_instruction(
    pid: i32,
    mem: &RemoteMemory,
    maps: &[crate::process::MapEntry],
) -> Result<u64, InjectError> {
    const CHUNK: u64 = 64 * 1024;
    let is_libc = |path: &str| {
        Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("libc.so") || n.starts_with("libc-"))
    };
    let mut code: Vec<_> = maps
        .iter()
        .filter(|m| m.perms.starts_with("r-x") && m.path != "[vsyscall]")
        .collect();
    code.sort_by_key(|m| !is_libc(&m.path));
    for map in code {
        let mut at = map.start;
        while at < map.end {
            let len = CHUNK.min(map.end - at);
            let Ok(bytes) = mem.read_vec(at, len as usize) else {
                break;
            };
            if let Some(i) = bytes.windows(2).position(|w| w == [0x0f, 0x05]) {
                return Ok(at + i as u64);
            }
            // Overlap by one byte so a pair split across chunks is found.
            at += len.saturating_sub(1).max(1);
        }
    }
    Err(InjectError::NoSyscallInstruction { pid })
}

fn process_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}/task/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            })
            .unwrap_or(true)
}

/// The loader's private directory in the target's `/tmp`: `armed` (claimed by the
/// loader), `started`, `result`. Dropping it withdraws a call that has not started
/// and removes the directory.
#[derive(Debug)]
struct MarkerDir {
    /// The directory as the tracer reaches it (`/proc/PID/root/tmp/...`).
    local: PathBuf,
    /// The directory as the target sees it (`/tmp/...`).
    target_path: String,
}

impl MarkerDir {
    fn create(pid: i32) -> Result<MarkerDir, InjectError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "tracer-inject-{}-{}-{nanos:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let target_path = format!("/tmp/{name}");
        let local = PathBuf::from(format!("/proc/{pid}/root/tmp/{name}"));
        let dir_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| InjectError::MarkerDir { path, source }
        };
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&local)
            .map_err(dir_err(&local))?;
        let dir = MarkerDir { local, target_path };
        std::fs::set_permissions(&dir.local, std::fs::Permissions::from_mode(0o700))
            .map_err(dir_err(&dir.local))?;
        let (uid, gid) = process_owner(pid);
        // SAFETY: geteuid has no preconditions.
        if uid.is_some_and(|uid| uid != unsafe { libc::geteuid() }) {
            std::os::unix::fs::chown(&dir.local, uid, gid).map_err(dir_err(&dir.local))?;
        }
        std::fs::write(dir.local.join("armed"), b"").map_err(dir_err(&dir.local))?;
        Ok(dir)
    }

    fn result(&self) -> Option<Outcome> {
        let text = std::fs::read_to_string(self.local.join("result")).ok()?;
        Some(match text.strip_prefix("raised") {
            Some(rest) => Outcome::Raised(rest.trim_start().to_string()),
            None => Outcome::Completed,
        })
    }

    fn started(&self) -> bool {
        self.local.join("started").exists()
    }

    fn wait_result(&self, deadline: Instant) -> Outcome {
        loop {
            if let Some(outcome) = self.result() {
                return outcome;
            }
            if Instant::now() >= deadline {
                return Outcome::StillRunning;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Removes `armed`; true if that happened before the loader claimed it.
    fn disarm(&self) -> bool {
        std::fs::remove_file(self.local.join("armed")).is_ok()
    }
}

impl Drop for MarkerDir {
    fn drop(&mut self) {
        self.disarm();
        let _ = std::fs::remove_dir_all(&self.local);
    }
}

/// The effective user and group of process `pid` (from `/proc/PID/status`): the
/// loader's directory is made theirs, and exact tracing (whose socket and bootstrap
/// only the tracer's own user can open) checks that they are the tracer's.
pub fn process_owner(pid: i32) -> (Option<u32>, Option<u32>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let effective = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    (effective("Uid:"), effective("Gid:"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A signal sent to the main thread while it is held (here during a borrowed
    /// `getpid`) reaches the program's handler once, after the thread is let go.
    #[test]
    fn a_signal_sent_while_the_main_thread_is_held_is_delivered_once_after() {
        let python = e2e::pyenv_interpreter(12)
            .expect("this test needs pyenv's Python 3.12 (under ~/.pyenv/versions/3.12.*)")
            .path;
        let code = "import signal, time\n\
                    signal.signal(signal.SIGUSR1, lambda *a: print('usr1', flush=True))\n\
                    signal.signal(signal.SIGUSR2, lambda *a: print('usr2', flush=True))\n\
                    print('READY', flush=True)\n\
                    while True:\n    time.sleep(0.01)\n";
        let mut cmd = Command::new(python);
        cmd.args(["-c", code]);
        let mut target = e2e::Target::spawn(cmd);
        target.wait_for("READY", Duration::from_secs(20));
        let pid = target.pid();
        let maps = read_maps(pid).expect("read the target's maps");
        let insn = find_syscall_instruction(pid, &RemoteMemory::new(pid), &maps)
            .expect("a syscall instruction in the target");
        let mut thread = StoppedThread::stop(pid, pid, STOP_TIMEOUT).expect("stop the main thread");
        // SAFETY: signalling our own child's main thread.
        unsafe {
            libc::tgkill(pid, pid, libc::SIGUSR1);
        }
        let got = thread
            .syscall(insn, libc::SYS_getpid, [0; 6], CALL_TIMEOUT)
            .expect("getpid on the held thread");
        assert_eq!(got, i64::from(pid));
        thread.release().expect("release the main thread");
        assert_eq!(
            target.wait_for("usr1", Duration::from_secs(10)),
            vec!["usr1"]
        );
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: as above.
        unsafe {
            libc::tgkill(pid, pid, libc::SIGUSR2);
        }
        assert_eq!(
            target.wait_for("usr2", Duration::from_secs(10)),
            vec!["usr2"],
            "the held SIGUSR1 was delivered more than once"
        );
    }
}
