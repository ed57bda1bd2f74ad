//! Ctrl-C and SIGTERM while recording: the tracer stops cleanly (finishing the trace)
//! instead of dying, and tells a terminal's Ctrl-C, which the whole foreground process
//! group (the launched child too) already received, from a signal sent to the tracer
//! alone, which it forwards to the child.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The last SIGINT/SIGTERM received, 0 when none.
static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// How many stop signals arrived.
static COUNT: AtomicI32 = AtomicI32::new(0);
/// Whether the last one was sent by a process (`kill`), not by the terminal.
static SENT_BY_PROCESS: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t with SA_SIGINFO.
    let code = unsafe { (*info).si_code };
    SENT_BY_PROCESS.store(
        code == libc::SI_USER || code == libc::SI_QUEUE,
        Ordering::SeqCst,
    );
    LAST_SIGNAL.store(sig, Ordering::SeqCst);
    COUNT.fetch_add(1, Ordering::SeqCst);
}

/// `tracer record`'s handlers: SIGINT and SIGTERM, but for a signal the tracer was
/// started with ignored (a shell's background job, `nohup`, `trap '' INT`): that one
/// stays ignored, so the launched command inherits it ignored as it would without
/// the tracer (`exec` resets a handled signal to its default action, and the program
/// could be interrupted or killed where it otherwise would not be).
pub fn install_for_record() {
    install(true);
}

/// `tracer attach`'s handlers: SIGINT and SIGTERM, even when the tracer was started
/// with them ignored. Attach launches nothing that could inherit the disposition, and
/// a script's background job (`tracer attach --pid P &`, started with SIGINT ignored
/// by the shell) must still stop on `kill -INT`.
pub fn install_for_attach() {
    install(false);
}

fn install(keep_ignored: bool) {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with our handler and an empty mask is valid; the
        // handler only touches atomics (async-signal-safe). Reading the current action
        // with a null new action changes nothing.
        unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            if keep_ignored
                && libc::sigaction(sig, std::ptr::null(), &mut current) == 0
                && current.sa_sigaction == libc::SIG_IGN
            {
                continue;
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// A stop signal that arrived since the last call: `(signal, sent_by_process, count)`.
pub fn take() -> Option<(i32, bool, i32)> {
    let sig = LAST_SIGNAL.swap(0, Ordering::SeqCst);
    (sig != 0).then(|| {
        (
            sig,
            SENT_BY_PROCESS.load(Ordering::SeqCst),
            COUNT.load(Ordering::SeqCst),
        )
    })
}
