//! One consistent picture of a process, now: every thread with its OS state and its
//! Python stack, innermost frame first, with argument reprs. `tracer dump` prints it.
//!
//! The target keeps running while it is read, so a stack can change under the
//! reader; a read that does not make sense is retried a few times (see
//! [`take_snapshot`]) and otherwise reported, never shown as garbage.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::names::Names;
use crate::repr::{repr_named, ReprOptions};
use crate::threads::{os_thread, SocketTable, Syscall, ThreadState};
use crate::walker::{RawFrame, Walker};

/// What to read besides the stacks.
#[derive(Debug, Clone, Default)]
pub struct SnapshotOptions {
    /// Every local variable of every frame, not only the arguments.
    pub locals: bool,
    pub repr: ReprOptions,
}

/// A process's threads and stacks (the JSON form of `tracer dump`).
#[derive(Debug, Clone, Serialize)]
pub struct ProcessSnapshot {
    pub pid: i32,
    pub python_version: String,
    pub python_executable: String,
    /// Main thread first.
    pub threads: Vec<ThreadSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThreadSnapshot {
    /// The kernel's thread id (0 when it could not be found).
    pub tid: i64,
    /// Python's name for the thread (`threading.Thread.name`).
    pub name: Option<String>,
    pub is_main: bool,
    pub holds_gil: bool,
    pub state: ThreadState,
    pub syscall: Option<Syscall>,
    /// Innermost first.
    pub frames: Vec<FrameSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameSnapshot {
    pub function: String,
    pub module: String,
    pub file: String,
    pub line: i32,
    /// Argument name to repr, in the order of the signature.
    pub args: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locals: Option<serde_json::Map<String, serde_json::Value>>,
}

/// How many times an inconsistent read of the whole process is retried.
const ATTEMPTS: usize = 5;

/// Reads every thread of the process behind `walker`.
pub fn take_snapshot(
    walker: &mut Walker,
    names: &mut Names,
    opts: &SnapshotOptions,
) -> Result<ProcessSnapshot> {
    retried(|| read_once(walker, names, opts))
}

/// `read` until it makes sense, at most [`ATTEMPTS`] times; errors that another read
/// cannot mend (the process is gone, no permission) end it at once.
fn retried<T>(mut read: impl FnMut() -> Result<T>) -> Result<T> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        match read() {
            Ok(value) => return Ok(value),
            Err(e @ (Error::Inconsistent(_) | Error::Memory(_))) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::inconsistent("no consistent read")))
}

fn read_once(
    walker: &mut Walker,
    names: &mut Names,
    opts: &SnapshotOptions,
) -> Result<ProcessSnapshot> {
    let pid = walker.process.pid;
    let threads = walker.threads()?;
    let gil = walker.gil_holder()?;
    let thread_names = names.thread_names(walker);
    let mut sockets = SocketTable::default();
    let mut out = Vec::with_capacity(threads.len());
    for t in &threads {
        // Only the thread running Python changes its stack while it is read, so a read
        // that does not make sense is retried for that thread alone: a busy process
        // rarely lets every thread of it read cleanly in one go.
        let frame_out = retried(|| {
            walker
                .stack(t.tstate)?
                .iter()
                .map(|f| frame_snapshot(walker, names, f, opts))
                .collect::<Result<Vec<_>>>()
        })?;
        let tid = t.tid.unwrap_or(0);
        let os = os_thread(pid, tid, &mut sockets);
        out.push(ThreadSnapshot {
            tid,
            name: thread_names.get(&t.ident).cloned(),
            is_main: tid == i64::from(pid),
            holds_gil: gil == Some(t.tstate),
            state: os.state,
            syscall: os.syscall,
            frames: frame_out,
        });
    }
    // Main thread first, then the others oldest first (the interpreter lists newest first).
    out.reverse();
    out.sort_by_key(|t| !t.is_main);
    Ok(ProcessSnapshot {
        pid,
        python_version: walker.process.version.to_string(),
        python_executable: walker.process.executable.clone(),
        threads: out,
    })
}

fn frame_snapshot(
    walker: &Walker,
    names: &mut Names,
    frame: &RawFrame,
    opts: &SnapshotOptions,
) -> Result<FrameSnapshot> {
    let mem = &walker.process.mem;
    let layout = walker.layout();
    let slots = if opts.locals {
        walker.frame_locals(frame)?
    } else {
        walker.frame_args(frame)?
    };
    let nargs = frame.code.arg_slots().min(slots.len());
    let render = |pairs: &[(Arc<str>, u64)]| {
        pairs
            .iter()
            .filter(|(_, addr)| *addr != 0)
            .map(|(name, addr)| {
                (
                    name.to_string(),
                    serde_json::Value::String(repr_named(mem, layout, name, *addr, &opts.repr)),
                )
            })
            .collect::<serde_json::Map<_, _>>()
    };
    let args = render(&slots[..nargs]);
    let locals = opts.locals.then(|| render(&slots));
    Ok(FrameSnapshot {
        function: names
            .function_name(walker, frame, &slots[..nargs])
            .to_string(),
        module: names.module_name(walker, frame).to_string(),
        file: frame.code.filename.to_string(),
        line: frame.line,
        args,
        locals,
    })
}

/// Python thread names by thread ident.
pub type ThreadNames = HashMap<u64, String>;
