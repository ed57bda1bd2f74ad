//! Walking a target's interpreter: its thread states, each thread's frames innermost
//! first, and the code object behind each frame (names, file, line table, argument
//! names), without stopping the target.
//!
//! Reads per frame: one for the frame struct, and for a code object seen for the
//! first time a few more (its header, names, line table), cached by address after that.
//! A code object's address can be reused after it is freed, so a cached entry is
//! checked against the code object's first line and line-table pointer, which the
//! frame read already brings (see [`Walker::code`]).

use std::collections::HashMap;
use std::sync::Arc;

use python_offsets::linetable::LineRanges;
use python_offsets::{code_flags, frame_owner, local_kinds, FrameModel, Layout};

use crate::error::{Error, Result};
use crate::memory::ProcessMemory;
use crate::objects;
use crate::process::{read_error, PythonProcess};

/// Most frames a stack may have before it is taken for garbage.
pub const MAX_FRAMES: usize = 4096;
/// Most threads an interpreter may have before its list is taken for garbage.
pub const MAX_THREADS: usize = 4096;

/// What the reader keeps about a code object.
#[derive(Debug, Clone)]
pub struct CodeInfo {
    pub addr: u64,
    /// `co_name`.
    pub name: Arc<str>,
    /// `co_qualname` (3.11+), else `co_name`.
    pub qualname: Arc<str>,
    pub filename: Arc<str>,
    pub firstlineno: i32,
    pub lines: LineRanges,
    pub argcount: u32,
    pub kwonlyargcount: u32,
    pub nlocals: u32,
    pub flags: u32,
    /// Names of the local slots: `co_varnames` + `co_cellvars` + `co_freevars` (≤3.10)
    /// or `co_localsplusnames` (3.11+).
    pub slot_names: Vec<Arc<str>>,
    /// 3.11+: the kind of each slot (`local_kinds`).
    pub slot_kinds: Vec<u8>,
    /// ≤3.10: how many names of `slot_names` are `co_varnames` (the rest are cells).
    pub nvarnames: u32,
    /// ≤3.10: how many cell variables follow `co_varnames`.
    pub ncellvars: u32,
    /// 3.11+: `_co_firsttraceable` in bytes. A frame whose instruction offset is
    /// below it has not started, and CPython itself hides it.
    pub first_traceable: Option<i64>,
    /// The pointer to the line table object, to validate a cached entry.
    linetable_ptr: u64,
}

impl CodeInfo {
    /// How many slots hold arguments: positional, keyword-only, `*args`, `**kwargs`.
    pub fn arg_slots(&self) -> usize {
        let mut n = self.argcount + self.kwonlyargcount;
        if self.flags & code_flags::VARARGS != 0 {
            n += 1;
        }
        if self.flags & code_flags::VARKEYWORDS != 0 {
            n += 1;
        }
        n as usize
    }

    /// Whether the code is a generator, coroutine or async generator.
    pub fn is_generator(&self) -> bool {
        self.flags & (code_flags::GENERATOR | code_flags::COROUTINE | code_flags::ASYNC_GENERATOR)
            != 0
    }
}

/// One frame of a stack, as read.
#[derive(Debug, Clone)]
pub struct RawFrame {
    /// The frame's address (a `PyFrameObject` or `_PyInterpreterFrame`).
    pub addr: u64,
    pub code: Arc<CodeInfo>,
    /// The instruction offset in bytes (−1 before the first instruction).
    pub instr_offset: i64,
    pub line: i32,
    /// The frame's globals dict (to find its module's `__name__`).
    pub globals: u64,
    /// Address of the first local slot.
    pub localsplus: u64,
}

/// A thread state of the interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawThread {
    pub tstate: u64,
    /// `thread_id`: the `pthread_t`, which is also Python's `threading.get_ident()`.
    pub ident: u64,
    /// The kernel's thread id, when known.
    pub tid: Option<i64>,
}

/// Reads threads and stacks of one process, caching code objects between calls.
pub struct Walker {
    pub process: PythonProcess,
    codes: HashMap<u64, Arc<CodeInfo>>,
    /// ≤3.10: where glibc (or musl) keeps the kernel TID inside `struct pthread`,
    /// found by calibrating against `/proc/PID/task` (see [`Walker::threads`]).
    pthread_tid_offset: Option<u64>,
    /// ≤3.10: `(tstate, ident, tid)` of threads whose TID was checked against
    /// `/proc/PID/task`, so that the check runs only when a thread appears.
    checked_tids: Vec<(u64, u64, i64)>,
    /// The interpreter state, read once (checked by every thread pointing back at it).
    interp: Option<u64>,
}

/// The largest frame struct read in one go (3.8's `PyFrameObject` is 368 bytes).
const FRAME_READ: usize = 368;

impl Walker {
    pub fn new(process: PythonProcess) -> Walker {
        Walker {
            process,
            codes: HashMap::new(),
            pthread_tid_offset: None,
            checked_tids: Vec::new(),
            interp: None,
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.process.layout
    }

    fn read_u64(&self, addr: u64) -> Result<u64> {
        self.process
            .mem
            .read_u64(addr)
            .map_err(|e| read_error(self.process.pid, e))
    }

    /// Every thread state of the first interpreter, in the interpreter's list order
    /// (newest first).
    ///
    /// Reads: the list head, then one read per thread state (≤3.10: one more per
    /// thread for its TID, and `/proc/PID/task` when a thread appears).
    pub fn threads(&mut self) -> Result<Vec<RawThread>> {
        let layout = self.process.layout;
        let t = layout.thread;
        let interp = match self.interp {
            Some(interp) => interp,
            None => self.process.interpreter()?,
        };
        let head = self.read_u64(interp + layout.interpreter.threads_head);
        self.interp = head.as_ref().ok().map(|_| interp);
        let mut tstate = head?;
        let span = [Some(t.next), Some(t.interp), Some(t.thread_id), t.native_thread_id]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0) as usize
            + 8;
        let mut bytes = vec![0u8; span];
        let word = |bytes: &[u8], off: u64| {
            let o = off as usize;
            u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap_or([0; 8]))
        };
        let mut threads = Vec::new();
        while tstate != 0 {
            if threads.len() >= MAX_THREADS {
                return Err(Error::inconsistent("thread list does not end"));
            }
            self.process
                .mem
                .read(tstate, &mut bytes)
                .map_err(|e| read_error(self.process.pid, e))?;
            if word(&bytes, t.interp) != interp {
                self.interp = None;
                return Err(Error::inconsistent(format!(
                    "thread state {tstate:#x} belongs to another interpreter"
                )));
            }
            threads.push(RawThread {
                tstate,
                ident: word(&bytes, t.thread_id),
                tid: t.native_thread_id.map(|off| word(&bytes, off) as i64),
            });
            tstate = word(&bytes, t.next);
        }
        if t.native_thread_id.is_none() {
            self.fill_tids_from_pthread(&mut threads);
        }
        Ok(threads)
    }

    /// ≤3.10 thread states keep only the `pthread_t`, the address of glibc's `struct
    /// pthread`, which holds the kernel TID at a libc-specific offset. The offset is
    /// found once: the first one at which every thread's value is a distinct TID of
    /// the target (`/proc/PID/task`).
    fn fill_tids_from_pthread(&mut self, threads: &mut [RawThread]) {
        let mem = &self.process.mem;
        let value_at = |ident: u64, off: u64| mem.read_i32(ident + off).ok().map(i64::from);
        if let Some(off) = self.pthread_tid_offset {
            let tids: Vec<Option<i64>> = threads.iter().map(|t| value_at(t.ident, off)).collect();
            let checked = threads.iter().zip(&tids).all(|(t, tid)| {
                tid.is_some_and(|tid| self.checked_tids.contains(&(t.tstate, t.ident, tid)))
            });
            if checked {
                for (t, tid) in threads.iter_mut().zip(tids) {
                    t.tid = tid;
                }
                return;
            }
        }
        let tasks = task_ids(self.process.pid);
        let fits = |off: u64| {
            let mut seen = Vec::new();
            threads.iter().all(|t| match value_at(t.ident, off) {
                Some(v) if tasks.contains(&v) && !seen.contains(&v) => {
                    seen.push(v);
                    true
                }
                _ => false,
            })
        };
        if self.pthread_tid_offset.is_none_or(|off| !fits(off)) {
            // glibc 2.36 keeps it at 720; try that first, then scan.
            self.pthread_tid_offset = std::iter::once(720u64)
                .chain((0..2048u64).step_by(4))
                .find(|&off| !threads.is_empty() && fits(off));
        }
        self.checked_tids.clear();
        if let Some(off) = self.pthread_tid_offset {
            for t in threads.iter_mut() {
                t.tid = value_at(t.ident, off);
                if let Some(tid) = t.tid {
                    self.checked_tids.push((t.tstate, t.ident, tid));
                }
            }
        }
    }

    /// The thread state holding the GIL, if any.
    pub fn gil_holder(&self) -> Result<Option<u64>> {
        let layout = self.process.layout;
        let (locked_addr, holder_addr) = match (layout.runtime.gil_locked, layout.interpreter.ceval_gil)
        {
            (Some(locked), _) => (
                self.process.runtime + locked,
                self.process.runtime + layout.runtime.gil_last_holder.unwrap_or(0),
            ),
            (None, Some(gil_ptr)) => {
                let gil = self.read_u64(self.process.interpreter()? + gil_ptr)?;
                (gil + layout.gil.locked, gil + layout.gil.last_holder)
            }
            (None, None) => return Ok(None),
        };
        let locked = self
            .process
            .mem
            .read_i32(locked_addr)
            .map_err(|e| read_error(self.process.pid, e))?;
        if locked == 0 {
            return Ok(None);
        }
        Ok(Some(self.read_u64(holder_addr)?).filter(|&h| h != 0))
    }

    /// The innermost frame pointer of a thread state.
    fn top_frame(&self, tstate: u64) -> Result<u64> {
        let t = &self.process.layout.thread;
        match self.process.layout.frame.model {
            FrameModel::FrameObject => self.read_u64(tstate + t.frame.unwrap_or(0)),
            FrameModel::CFrame => {
                let cframe = self.read_u64(tstate + t.cframe.unwrap_or(0))?;
                if cframe == 0 {
                    return Ok(0);
                }
                self.read_u64(cframe + t.cframe_current_frame.unwrap_or(0))
            }
            FrameModel::CurrentFrame => self.read_u64(tstate + t.current_frame.unwrap_or(0)),
        }
    }

    /// The Python frames of a thread, innermost first. Frames the interpreter itself
    /// hides (3.12+ C-stack shim frames, frames that have not started) are skipped.
    pub fn stack(&mut self, tstate: u64) -> Result<Vec<RawFrame>> {
        let layout = self.process.layout;
        let fl = layout.frame;
        let mut frames = Vec::new();
        let mut addr = self.top_frame(tstate)?;
        let mut buf = [0u8; FRAME_READ];
        let read_len = match fl.model {
            FrameModel::FrameObject => fl.size as usize,
            _ => fl.localsplus as usize,
        };
        while addr != 0 {
            if frames.len() >= MAX_FRAMES {
                return Err(Error::inconsistent("stack does not end"));
            }
            let bytes = &mut buf[..read_len];
            self.process
                .mem
                .read(addr, bytes)
                .map_err(|e| read_error(self.process.pid, e))?;
            let word = |off: u64| {
                let o = off as usize;
                u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap_or([0; 8]))
            };
            let previous = word(fl.previous);
            let code_addr = word(fl.code);
            let globals = word(fl.globals);
            let owner = fl.owner.map(|o| bytes[o as usize]);
            if owner == Some(frame_owner::CSTACK) || code_addr == 0 {
                addr = previous;
                continue;
            }
            let Some(code) = self.frame_code(code_addr)? else {
                addr = previous;
                continue;
            };
            let instr_offset = match (fl.lasti, fl.instr_ptr) {
                (Some(off), _) => {
                    let lasti = i64::from(i32::from_le_bytes(
                        bytes[off as usize..off as usize + 4].try_into().unwrap_or([0; 4]),
                    ));
                    if fl.model == FrameModel::FrameObject
                        && layout.code.linetable_format == python_offsets::LineTableFormat::Linetable310
                        && lasti >= 0
                    {
                        lasti * 2
                    } else {
                        lasti
                    }
                }
                (None, Some(off)) => {
                    let ptr = word(off);
                    let start = code_addr + layout.code.code_adaptive.unwrap_or(0);
                    ptr as i64 - start as i64
                }
                (None, None) => -1,
            };
            if let (Some(first), Some(owner)) = (code.first_traceable, owner) {
                if owner != frame_owner::GENERATOR && instr_offset < first {
                    addr = previous;
                    continue;
                }
            }
            let line = code.lines.line(instr_offset).unwrap_or(code.firstlineno);
            frames.push(RawFrame {
                addr,
                code,
                instr_offset,
                line,
                globals,
                localsplus: addr + fl.localsplus,
            });
            addr = previous;
        }
        Ok(frames)
    }

    /// The code object at `addr`, from the cache when its first line and line table
    /// pointer still match.
    pub fn code(&mut self, addr: u64) -> Result<Arc<CodeInfo>> {
        self.frame_code(addr)?
            .ok_or_else(|| Error::inconsistent(format!("object at {addr:#x} is not a code object")))
    }

    /// The code object a frame runs, or `None` when the frame's executable is not a
    /// code object (3.13 frames may run other executables; they are skipped).
    fn frame_code(&mut self, addr: u64) -> Result<Option<Arc<CodeInfo>>> {
        let cl = self.process.layout.code;
        if let Some(cached) = self.codes.get(&addr) {
            let mem = &self.process.mem;
            let still = mem.read_u64(addr + cl.linetable).ok() == Some(cached.linetable_ptr)
                && mem.read_i32(addr + cl.firstlineno).ok() == Some(cached.firstlineno);
            if still {
                return Ok(Some(cached.clone()));
            }
        }
        let Some(info) = read_code(&self.process, addr)? else {
            return Ok(None);
        };
        let info = Arc::new(info);
        if self.codes.len() > 100_000 {
            self.codes.clear();
        }
        self.codes.insert(addr, info.clone());
        Ok(Some(info))
    }

    /// The argument slots of a frame: `(name, object address)`; an address of 0 is a
    /// slot not yet set. Cells (arguments captured by a closure) are followed to
    /// their value.
    pub fn frame_args(&self, frame: &RawFrame) -> Result<Vec<(Arc<str>, u64)>> {
        self.frame_slots(frame, frame.code.arg_slots())
    }

    /// Every named local slot of a frame (arguments first), cells followed.
    pub fn frame_locals(&self, frame: &RawFrame) -> Result<Vec<(Arc<str>, u64)>> {
        self.frame_slots(frame, frame.code.slot_names.len())
    }

    fn frame_slots(&self, frame: &RawFrame, count: usize) -> Result<Vec<(Arc<str>, u64)>> {
        let code = &frame.code;
        let count = count.min(code.slot_names.len());
        if count == 0 {
            return Ok(Vec::new());
        }
        let layout = &self.process.layout;
        let mem = &self.process.mem;
        let raw = mem
            .read_vec(frame.localsplus, code.slot_names.len() * 8)
            .map_err(|e| read_error(self.process.pid, e))?;
        let slot = |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        let deref_cell = |obj: u64| -> u64 {
            if obj == 0 {
                return 0;
            }
            let is_cell = objects::type_of(mem, layout, obj)
                .and_then(|t| objects::type_name(mem, layout, t))
                .is_ok_and(|n| n == "cell");
            if is_cell {
                mem.read_u64(obj + layout.object.cell_ref).unwrap_or(0)
            } else {
                obj
            }
        };
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let name = code.slot_names[i].clone();
            let mut value = slot(i);
            if code.slot_kinds.is_empty() {
                // ≤3.10: an argument captured by a closure leaves its slot NULL and
                // lives in the cell of the same name after co_nlocals.
                if value == 0 && i < code.nvarnames as usize {
                    let cells = code.nvarnames as usize..(code.nvarnames + code.ncellvars) as usize;
                    if let Some(j) = cells.clone().find(|&j| code.slot_names[j] == name) {
                        let cell_slot = code.nlocals as usize + (j - code.nvarnames as usize);
                        if cell_slot < code.slot_names.len() {
                            value = deref_cell(slot(cell_slot));
                        }
                    }
                } else if i >= code.nvarnames as usize {
                    value = deref_cell(value);
                }
            } else {
                let kind = code.slot_kinds.get(i).copied().unwrap_or(0);
                if kind & local_kinds::HIDDEN != 0 {
                    continue;
                }
                if kind & (local_kinds::CELL | local_kinds::FREE) != 0 {
                    value = deref_cell(value);
                }
            }
            out.push((name, value));
        }
        Ok(out)
    }
}

/// The kernel thread ids of a process.
pub fn task_ids(pid: i32) -> Vec<i64> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the code object at `addr`; `None` when the target says it is not one (its
/// type is not `PyCode_Type`, checked where frames may run other executables).
fn read_code(process: &PythonProcess, addr: u64) -> Result<Option<CodeInfo>> {
    let layout = &process.layout;
    let cl = layout.code;
    let mem = &process.mem;
    let pid = process.pid;
    let header_len = [
        Some(cl.argcount),
        Some(cl.kwonlyargcount),
        Some(cl.nlocals),
        Some(cl.flags),
        Some(cl.firstlineno),
        Some(cl.varnames),
        cl.cellvars,
        cl.freevars,
        cl.localspluskinds,
        Some(cl.filename),
        Some(cl.name),
        cl.qualname,
        Some(cl.linetable),
        cl.firsttraceable,
        Some(layout.object.ob_type),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0)
        + 8;
    let header = mem
        .read_vec(addr, header_len as usize)
        .map_err(|e| read_error(pid, e))?;
    let i32_at = |off: u64| {
        let o = off as usize;
        i32::from_le_bytes(header[o..o + 4].try_into().unwrap_or([0; 4]))
    };
    let u64_at = |off: u64| {
        let o = off as usize;
        u64::from_le_bytes(header[o..o + 8].try_into().unwrap_or([0; 8]))
    };
    if let (Some(code_type), FrameModel::CurrentFrame) = (process.code_type, layout.frame.model) {
        if u64_at(layout.object.ob_type) != code_type {
            return Ok(None);
        }
    }
    let counts = [i32_at(cl.argcount), i32_at(cl.kwonlyargcount), i32_at(cl.nlocals)];
    if counts.iter().any(|&c| !(0..=65535).contains(&c)) {
        return Err(Error::inconsistent(format!("code object at {addr:#x} has bad counts")));
    }
    let name: Arc<str> = objects::read_str(mem, layout, u64_at(cl.name))?.into();
    let qualname: Arc<str> = match cl.qualname {
        Some(off) => objects::read_str(mem, layout, u64_at(off))?.into(),
        None => name.clone(),
    };
    let filename: Arc<str> = objects::read_str(mem, layout, u64_at(cl.filename))?.into();
    let firstlineno = i32_at(cl.firstlineno);
    let linetable_ptr = u64_at(cl.linetable);
    let table = objects::read_bytes(mem, layout, linetable_ptr, 1 << 24)?;
    let lines = LineRanges::decode(cl.linetable_format, &table, firstlineno);
    let to_arcs = |v: Vec<String>| v.into_iter().map(Arc::<str>::from).collect::<Vec<_>>();
    let mut slot_names = to_arcs(objects::read_str_tuple(mem, layout, u64_at(cl.varnames))?);
    let nvarnames = slot_names.len() as u32;
    let mut ncellvars = 0;
    let mut slot_kinds = Vec::new();
    if let (Some(cells), Some(frees)) = (cl.cellvars, cl.freevars) {
        let cellvars = to_arcs(objects::read_str_tuple(mem, layout, u64_at(cells))?);
        ncellvars = cellvars.len() as u32;
        slot_names.extend(cellvars);
        slot_names.extend(to_arcs(objects::read_str_tuple(mem, layout, u64_at(frees))?));
    }
    if let Some(kinds) = cl.localspluskinds {
        slot_kinds = objects::read_bytes(mem, layout, u64_at(kinds), 65536)?;
        if slot_kinds.len() != slot_names.len() {
            return Err(Error::inconsistent(format!(
                "code object at {addr:#x}: {} slot kinds for {} names",
                slot_kinds.len(),
                slot_names.len()
            )));
        }
    }
    Ok(Some(CodeInfo {
        addr,
        name,
        qualname,
        filename,
        firstlineno,
        lines,
        argcount: counts[0] as u32,
        kwonlyargcount: counts[1] as u32,
        nlocals: counts[2] as u32,
        flags: i32_at(cl.flags) as u32,
        slot_names,
        slot_kinds,
        nvarnames,
        ncellvars,
        first_traceable: cl.firsttraceable.map(|off| i64::from(i32_at(off)) * 2),
        linetable_ptr,
    }))
}
