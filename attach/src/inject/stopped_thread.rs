//! One thread of the target held in a ptrace stop, made to run a system call or a
//! function, then put back exactly as it was.
//!
//! [`StoppedThread::stop`] seizes the thread (`PTRACE_SEIZE`, which sends no signal) and
//! interrupts it (`PTRACE_INTERRUPT`). Its general registers (`PTRACE_GETREGS`) and its
//! whole FP/SSE/AVX state (`PTRACE_GETREGSET NT_X86_XSTATE`) are saved at once, since
//! the stop lands on an arbitrary instruction. Every operation starts from the saved
//! registers; [`StoppedThread::release`] (or `Drop`, on every error path) writes them
//! all back and detaches.
//!
//! * `orig_rax`: a thread stopped inside a blocking system call (a `read`, a
//!   `clock_nanosleep`) carries the call's number in `orig_rax` and `-ERESTART…` in
//!   `rax`. On resume the kernel restarts that call by rewinding `rip` by two bytes,
//!   which would wreck a redirected `rip`. Each operation therefore sets `orig_rax = -1`
//!   (the kernel then sees no system call, as gdb's `amd64_linux_write_pc` does), and
//!   the final restore puts the saved `orig_rax` back, so the interrupted call restarts
//!   as if nothing happened.
//! * Signals: a signal the thread takes while it is held stops it again
//!   (signal-delivery-stop). It is held back (not delivered inside the borrowed
//!   context) and given back on release: the first by the detach itself, which the
//!   final stop (always a signal-delivery-stop) allows, any others by `tgkill`.
//! * Waiting: `waitpid(WNOHANG)` with a short spin then sleeps, under a deadline, so a
//!   thread that never stops or never returns cannot hang the tracer.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::uio::{process_vm_writev, RemoteIoVec};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// `NT_X86_XSTATE` (Linux `elf.h`): the XSAVE area, x87 + SSE + AVX (+ AVX-512...).
const NT_X86_XSTATE: libc::c_int = 0x202;
/// Room for the largest XSAVE area (AMX tiles make it about 11 KiB); the kernel fills
/// what the CPU has and says how much.
const XSTATE_CAPACITY: usize = 64 * 1024;
/// The System V red zone below `rsp` that leaf functions use without moving `rsp`.
const RED_ZONE: u64 = 128;
/// Extra room left below the red zone before the borrowed frame.
const STACK_GAP: u64 = 256;

/// What went wrong while holding a thread; `inject` turns it into an `InjectError`.
#[derive(Debug)]
pub(crate) enum StopError {
    /// The thread or process is gone.
    Gone,
    /// `PTRACE_SEIZE` was refused (permissions, Yama, or another tracer).
    SeizeRefused(Errno),
    /// A ptrace request or a write into the target failed.
    Request(&'static str, Errno),
    /// The thread did not reach the expected stop in time.
    Timeout(&'static str),
    /// The thread stopped somewhere unexpected (a fault inside the called function).
    Fault { signal: Signal, rip: u64 },
}

/// A thread of the target, stopped under ptrace, with everything needed to put it back.
pub(crate) struct StoppedThread {
    pid: i32,
    tid: Pid,
    /// The registers at the stop (`None` until the first stop was reached).
    saved: Option<libc::user_regs_struct>,
    xstate: Vec<u8>,
    /// Whether the thread was resumed and has not been seen stopped since.
    running: bool,
    /// Signals that arrived while the thread was held, in order.
    held_signals: Vec<Signal>,
    /// Whether the thread now sits in a signal-delivery-stop, where the detach can hand
    /// a signal back with its original meaning.
    in_signal_stop: bool,
    stopped_at: Instant,
    released: bool,
}

impl StoppedThread {
    /// Seizes thread `tid` of process `pid` and waits (up to `timeout`) until it is
    /// stopped.
    pub(crate) fn stop(pid: i32, tid: i32, timeout: Duration) -> Result<StoppedThread, StopError> {
        let tid = Pid::from_raw(tid);
        ptrace::seize(tid, ptrace::Options::empty()).map_err(|e| match e {
            Errno::ESRCH => StopError::Gone,
            other => StopError::SeizeRefused(other),
        })?;
        let stopped_at = Instant::now();
        let mut thread = StoppedThread {
            pid,
            tid,
            saved: None,
            xstate: Vec::new(),
            running: true,
            held_signals: Vec::new(),
            in_signal_stop: false,
            stopped_at,
            released: false,
        };
        // On an error, dropping `thread` waits for the stop and lets the thread go.
        thread.interrupt(timeout)?;
        Ok(thread)
    }

    fn interrupt(&mut self, timeout: Duration) -> Result<(), StopError> {
        ptrace::interrupt(self.tid).map_err(|e| request_error("PTRACE_INTERRUPT", e))?;
        let deadline = Instant::now() + timeout;
        loop {
            match self.wait(deadline, "the interrupt stop")? {
                WaitStatus::PtraceEvent(_, _, libc::PTRACE_EVENT_STOP) => break,
                WaitStatus::Stopped(_, signal) => {
                    self.held_signals.push(signal);
                    self.resume(ptrace::cont, "PTRACE_CONT")?;
                }
                _ => self.resume(ptrace::cont, "PTRACE_CONT")?,
            }
        }
        self.saved =
            Some(ptrace::getregs(self.tid).map_err(|e| request_error("PTRACE_GETREGS", e))?);
        self.xstate = self.get_xstate()?;
        Ok(())
    }

    /// Runs the system call `nr` with `args` on this thread by pointing `rip` at an
    /// existing `syscall` instruction (`0f 05`) at `syscall_insn` in the target's own
    /// text and single-stepping over it. Returns the raw `rax` (`-errno` on failure).
    pub(crate) fn syscall(
        &mut self,
        syscall_insn: u64,
        nr: libc::c_long,
        args: [u64; 6],
        timeout: Duration,
    ) -> Result<i64, StopError> {
        let mut regs = self.saved_regs()?;
        regs.rip = syscall_insn;
        regs.rax = nr as u64;
        regs.orig_rax = u64::MAX;
        regs.rdi = args[0];
        regs.rsi = args[1];
        regs.rdx = args[2];
        regs.r10 = args[3];
        regs.r8 = args[4];
        regs.r9 = args[5];
        self.set_regs(regs)?;
        let deadline = Instant::now() + timeout;
        loop {
            self.resume(ptrace::step, "PTRACE_SINGLESTEP")?;
            match self.wait(deadline, "the system call")? {
                WaitStatus::Stopped(_, Signal::SIGTRAP) => {
                    let now = ptrace::getregs(self.tid)
                        .map_err(|e| request_error("PTRACE_GETREGS", e))?;
                    if now.rip == syscall_insn + 2 {
                        self.in_signal_stop = true;
                        return Ok(now.rax as i64);
                    }
                    if now.rip != syscall_insn {
                        return Err(StopError::Fault {
                            signal: Signal::SIGTRAP,
                            rip: now.rip,
                        });
                    }
                }
                WaitStatus::Stopped(_, signal) => self.held_signals.push(signal),
                _ => {}
            }
        }
    }

    /// Calls the function at `func` with up to six integer `args` (System V x86_64) on
    /// this thread and returns its `rax`. The frame sits below the red zone, 16-byte
    /// aligned at the call; the return address is 0, so the return is a `SIGSEGV` at
    /// `rip == 0` that marks the end of the call.
    pub(crate) fn call(
        &mut self,
        func: u64,
        args: &[u64],
        timeout: Duration,
    ) -> Result<u64, StopError> {
        let mut regs = self.saved_regs()?;
        let frame_top = (regs.rsp - RED_ZONE - STACK_GAP) & !0xf;
        let return_slot = frame_top - 8;
        write_memory(self.tid, return_slot, &0u64.to_le_bytes())?;
        regs.rsp = return_slot;
        regs.rip = func;
        regs.rax = 0;
        regs.orig_rax = u64::MAX;
        let slots = [
            &mut regs.rdi,
            &mut regs.rsi,
            &mut regs.rdx,
            &mut regs.rcx,
            &mut regs.r8,
            &mut regs.r9,
        ];
        for (slot, value) in slots.into_iter().zip(args) {
            *slot = *value;
        }
        self.set_regs(regs)?;
        self.resume(ptrace::cont, "PTRACE_CONT")?;
        let deadline = Instant::now() + timeout;
        loop {
            match self.wait(deadline, "the function call")? {
                WaitStatus::Stopped(_, Signal::SIGSEGV) => {
                    let now = ptrace::getregs(self.tid)
                        .map_err(|e| request_error("PTRACE_GETREGS", e))?;
                    if now.rip == 0 {
                        self.in_signal_stop = true;
                        return Ok(now.rax);
                    }
                    return Err(StopError::Fault {
                        signal: Signal::SIGSEGV,
                        rip: now.rip,
                    });
                }
                WaitStatus::Stopped(_, signal) => self.held_signals.push(signal),
                _ => {}
            }
            self.resume(ptrace::cont, "PTRACE_CONT")?;
        }
    }

    /// Puts every register back, detaches, gives back held signals, and returns how
    /// long the thread was held.
    pub(crate) fn release(mut self) -> Result<Duration, StopError> {
        self.let_go()
    }

    /// Stops the thread if it runs, restores it, detaches and hands back signals.
    fn let_go(&mut self) -> Result<Duration, StopError> {
        self.released = true;
        self.ensure_stopped();
        let restored = self.restore();
        let held = self.stopped_at.elapsed();
        let first = if self.in_signal_stop {
            self.held_signals.first().copied()
        } else {
            None
        };
        let detached = ptrace::detach(self.tid, first);
        self.resend_held_signals(usize::from(first.is_some() && detached.is_ok()));
        restored?;
        detached.map_err(|e| request_error("PTRACE_DETACH", e))?;
        Ok(held)
    }

    /// After a timeout the thread may still be running (inside the call, or not yet
    /// at its first stop). It cannot be restored or detached until it stops, so this
    /// interrupts it and waits for the stop without a limit: a thread in
    /// uninterruptible sleep keeps the tracer here until it wakes, which is better
    /// than leaving it attached. Our own end-of-call traps are not held signals.
    fn ensure_stopped(&mut self) {
        if !self.running {
            return;
        }
        if ptrace::interrupt(self.tid).is_err() {
            return;
        }
        loop {
            match waitpid(self.tid, Some(WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Stopped(_, signal)) => {
                    self.in_signal_stop = true;
                    let ours = matches!(signal, Signal::SIGSEGV | Signal::SIGTRAP);
                    if !ours {
                        self.held_signals.push(signal);
                    }
                    break;
                }
                Ok(WaitStatus::PtraceEvent(..)) | Ok(WaitStatus::PtraceSyscall(..)) => {
                    self.in_signal_stop = false;
                    break;
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
                Ok(_) | Err(_) => break,
            }
        }
        self.running = false;
    }

    fn restore(&mut self) -> Result<(), StopError> {
        let Some(saved) = self.saved else {
            return Ok(());
        };
        self.set_regs(saved)?;
        if !self.xstate.is_empty() {
            let mut iov = libc::iovec {
                iov_base: self.xstate.as_mut_ptr().cast(),
                iov_len: self.xstate.len(),
            };
            // SAFETY: iov points at our own buffer of iov_len bytes, which the kernel
            // reads (PTRACE_SETREGSET copies from the tracer).
            let rc = unsafe {
                libc::ptrace(
                    libc::PTRACE_SETREGSET,
                    self.tid.as_raw(),
                    NT_X86_XSTATE as usize as *mut libc::c_void,
                    &mut iov as *mut libc::iovec as *mut libc::c_void,
                )
            };
            Errno::result(rc).map_err(|e| request_error("PTRACE_SETREGSET", e))?;
        }
        Ok(())
    }

    fn saved_regs(&self) -> Result<libc::user_regs_struct, StopError> {
        self.saved.ok_or(StopError::Timeout("the interrupt stop"))
    }

    /// Resumes the thread with `request` (no signal), noting that it runs.
    fn resume(
        &mut self,
        request: fn(Pid, Option<Signal>) -> nix::Result<()>,
        name: &'static str,
    ) -> Result<(), StopError> {
        self.in_signal_stop = false;
        request(self.tid, None).map_err(|e| request_error(name, e))?;
        self.running = true;
        Ok(())
    }

    /// Sends the held signals from `skip` on to the thread again.
    fn resend_held_signals(&self, skip: usize) {
        for signal in self.held_signals.iter().skip(skip) {
            // SAFETY: tgkill with plain integer arguments; a failure (the thread has
            // gone) leaves nothing to hand the signal to.
            unsafe {
                libc::tgkill(self.pid, self.tid.as_raw(), *signal as libc::c_int);
            }
        }
    }

    fn get_xstate(&self) -> Result<Vec<u8>, StopError> {
        let mut buf = vec![0u8; XSTATE_CAPACITY];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: iov points at our own buffer of iov_len bytes, which the kernel fills
        // and shortens iov_len to what it wrote.
        let rc = unsafe {
            libc::ptrace(
                libc::PTRACE_GETREGSET,
                self.tid.as_raw(),
                NT_X86_XSTATE as usize as *mut libc::c_void,
                &mut iov as *mut libc::iovec as *mut libc::c_void,
            )
        };
        Errno::result(rc).map_err(|e| request_error("PTRACE_GETREGSET", e))?;
        buf.truncate(iov.iov_len);
        Ok(buf)
    }

    fn set_regs(&self, regs: libc::user_regs_struct) -> Result<(), StopError> {
        ptrace::setregs(self.tid, regs).map_err(|e| request_error("PTRACE_SETREGS", e))
    }

    /// The next stop of the thread, or an error if it exits or `deadline` passes.
    fn wait(&mut self, deadline: Instant, what: &'static str) -> Result<WaitStatus, StopError> {
        let started = Instant::now();
        loop {
            let status = waitpid(self.tid, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL))
                .map_err(|e| match e {
                    Errno::ECHILD | Errno::ESRCH => StopError::Gone,
                    other => request_error("waitpid", other),
                })?;
            match status {
                WaitStatus::StillAlive => {}
                WaitStatus::Exited(..) | WaitStatus::Signaled(..) => {
                    self.running = false;
                    return Err(StopError::Gone);
                }
                other => {
                    self.running = false;
                    return Ok(other);
                }
            }
            if Instant::now() >= deadline {
                return Err(StopError::Timeout(what));
            }
            // The stops waited for come within microseconds: spin briefly, then sleep.
            if started.elapsed() < Duration::from_millis(50) {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

impl Drop for StoppedThread {
    /// Error paths: put the registers back and let the thread go, whatever happened.
    fn drop(&mut self) {
        if !self.released {
            let _ = self.let_go();
        }
    }
}

/// Writes `bytes` at `addr` in the target (writable pages only: `process_vm_writev`
/// honours page protections).
pub(crate) fn write_memory(tid: Pid, addr: u64, bytes: &[u8]) -> Result<(), StopError> {
    let local = [std::io::IoSlice::new(bytes)];
    let remote = [RemoteIoVec {
        base: addr as usize,
        len: bytes.len(),
    }];
    match process_vm_writev(tid, &local, &remote) {
        Ok(n) if n == bytes.len() => Ok(()),
        Ok(_) => Err(StopError::Request("process_vm_writev", Errno::EFAULT)),
        Err(Errno::ESRCH) => Err(StopError::Gone),
        Err(e) => Err(StopError::Request("process_vm_writev", e)),
    }
}

fn request_error(what: &'static str, e: Errno) -> StopError {
    match e {
        Errno::ESRCH => StopError::Gone,
        other => StopError::Request(what, other),
    }
}
