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
use std::hash::{BuildHasherDefault, Hasher};
use std::io::IoSliceMut;
use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;

use python_offsets::linetable::LineRanges;
use python_offsets::{code_flags, frame_owner, local_kinds, FrameModel, Layout};

use crate::error::{Error, Result};
use crate::memory::{MemoryError, ProcessMemory};
use crate::objects;
use crate::process::{read_error, PythonProcess};

/// Most frames a stack may have before it is taken for garbage (a chain of frames
/// that loops). Far above any stack a program reaches by `sys.setrecursionlimit`
/// in practice: a recursion 5000 deep is ordinary in parsers and tree walks, and
/// 3.11+ run pure-Python recursion without the C stack, so 100,000 deep works.
pub const MAX_FRAMES: usize = 1 << 20;
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
    codes: AddrMap<CachedCode>,
    /// The sampling pass ([`Walker::begin_sample`]).
    pass: u64,
    sampling: Sampling,
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

/// Most memory ranges read in one batched read (the kernel takes up to 1024).
const MAX_BATCH_RANGES: usize = 1000;
/// Most bytes read in one batched read; deeper stacks are read partly frame by frame.
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Frames closer than this to the range before them are read as one range.
const MERGE_GAP: u64 = 512;
const PAGE: u64 = 4096;

/// A hasher for address keys: one multiply and rotate per word. Keys are addresses
/// in the target, so SipHash's protection against chosen keys buys nothing here and
/// costs the most of any single step of a cached frame lookup.
#[derive(Debug, Default, Clone, Copy)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A map keyed by target addresses.
pub type AddrMap<V> = HashMap<u64, V, BuildHasherDefault<AddrHasher>>;

/// A cached code object, the sampling pass that last used it, and the globals of
/// the frame that ran it then.
#[derive(Debug)]
struct CachedCode {
    info: Arc<CodeInfo>,
    seen: u64,
    globals: u64,
}

/// How much a cached code object is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CodeCheck {
    /// Check that its line table pointer and first line are unchanged (two reads).
    Validate,
    /// Use it unchecked when it was used in this sampling pass or the previous one,
    /// by a frame with the same globals.
    TrustRecent,
}

/// A frame read by [`Walker::sample_stack`].
#[derive(Debug, Clone)]
pub struct SampledFrame {
    pub frame: RawFrame,
    /// A fingerprint of the object pointers in the frame's local variable slots: it
    /// changes when the frame assigns a variable, which only a running frame does.
    pub slots: u64,
    /// The same of its argument slots alone: a function called again with other
    /// arguments shows it (see `FrameState::args`).
    pub args: u64,
    /// The address of the frame below, as this frame's bytes said.
    pub previous: u64,
}

impl SampledFrame {
    /// Whether `other` shows this frame at the same place: same frame, code, caller,
    /// instruction and local slots.
    fn same_position(&self, other: &SampledFrame) -> bool {
        self.frame.addr == other.frame.addr
            && self.frame.code.addr == other.frame.code.addr
            && self.frame.instr_offset == other.frame.instr_offset
            && self.slots == other.slots
            && self.previous == other.previous
    }
}

/// How many bytes from a frame's address hold its header (`header_len`) and its
/// local slots: what is read to see it again.
fn frame_span(frame: &RawFrame, header_len: usize) -> usize {
    let slots_end = frame.localsplus + frame.code.slot_names.len() as u64 * 8;
    (slots_end.max(frame.addr + header_len as u64) - frame.addr) as usize
}

/// Whether two reads of the same frames (innermost first) agree: every frame below
/// the innermost at the same position, and the innermost the same frame running the
/// same code (it may have moved on).
fn reads_agree(a: &[SampledFrame], b: &[SampledFrame]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).enumerate().all(|(i, (x, y))| {
            if i == 0 {
                x.frame.addr == y.frame.addr
                    && x.frame.code.addr == y.frame.code.addr
                    && x.previous == y.previous
            } else {
                x.same_position(y)
            }
        })
}

/// Which part of a tick's batched read some bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The thread list: its head, thread states, ≤3.10 TIDs.
    ThreadList,
    /// Memory that held frames of the thread state given as owner.
    Frames,
    /// The innermost-frame pointer (3.11–3.12: and the `_PyCFrame` word) of the
    /// thread state given as owner, read after that thread's frames.
    Top,
}

/// One tick's batched read ([`Walker::begin_sample`]): what was asked, in order,
/// and what arrived.
#[derive(Debug, Default)]
struct Prefetch {
    remote: Vec<RemoteIoVec>,
    /// `(part, owner)` of each entry of `remote`.
    parts: Vec<(Part, u64)>,
    buf: Vec<u8>,
    /// `(part, owner, address, length, offset in buf)` of the ranges that arrived.
    got: Vec<(Part, u64, u64, usize, usize)>,
    /// Whether [`Walker::threads`] has not used the thread-list part yet.
    thread_list_fresh: bool,
}

impl Prefetch {
    fn clear(&mut self) {
        self.remote.clear();
        self.parts.clear();
        self.got.clear();
        self.thread_list_fresh = false;
    }

    fn bytes(&self) -> usize {
        self.remote.iter().map(|r| r.len).sum()
    }

    fn push(&mut self, part: Part, owner: u64, addr: u64, len: usize) {
        self.remote.push(RemoteIoVec {
            base: addr as usize,
            len,
        });
        self.parts.push((part, owner));
    }

    /// Reads everything asked with one `process_vm_readv`. The kernel stops at the
    /// first range it cannot read; what came before it is kept.
    fn read(&mut self, pid: i32) -> Result<(), MemoryError> {
        let total = self.bytes();
        self.buf.resize(total, 0);
        let arrived = if self.remote.is_empty() {
            0
        } else {
            read_scattered(pid, &self.remote, &mut self.buf)?
        };
        let mut at = 0;
        for (io, &(part, owner)) in self.remote.iter().zip(&self.parts) {
            if at + io.len > arrived {
                break;
            }
            self.got.push((part, owner, io.base as u64, io.len, at));
            at += io.len;
        }
        Ok(())
    }

    /// Copies the bytes at `addr` out of the range of `part` and `owner` that holds
    /// them; `false` when none does. Searched from the end: frames are looked up
    /// innermost first and were read outermost first.
    fn copy_out(&self, part: Part, owner: u64, addr: u64, dest: &mut [u8]) -> bool {
        let len = dest.len() as u64;
        for &(p, o, start, range_len, at) in self.got.iter().rev() {
            // An address read from a torn frame can be anything: near the top of the
            // address space, `addr + len` does not fit in 64 bits.
            let inside = addr >= start
                && addr
                    .checked_add(len)
                    .zip(start.checked_add(range_len as u64))
                    .is_some_and(|(end, range_end)| end <= range_end);
            if p == part && o == owner && inside {
                let from = at + (addr - start) as usize;
                dest.copy_from_slice(&self.buf[from..from + dest.len()]);
                return true;
            }
        }
        false
    }

    fn word(&self, part: Part, owner: u64, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.copy_out(part, owner, addr, &mut b)
            .then(|| u64::from_le_bytes(b))
    }
}

/// What [`Walker::sample_stack`] remembers about one thread between ticks.
#[derive(Debug, Default)]
struct StackHint {
    /// Memory that held the thread's frames last time, outermost frame first.
    ranges: Vec<(u64, usize)>,
    /// 3.11–3.12: the `_PyCFrame` the thread state pointed at last time.
    cframe: u64,
    /// Whether this tick's batched read holds the thread's frames and top pointer.
    prefetched: bool,
    /// Frames met in this sample, innermost first: `(address, length)`.
    next: Vec<(u64, usize)>,
}

impl StackHint {
    /// Turns the frames met into the ranges to read next time: outermost first,
    /// merged when close, and on 3.11+ (`frame_stack`) the innermost range extended
    /// to the end of its page, where the next frames are pushed.
    fn remember(&mut self, frame_stack: bool) {
        self.ranges.clear();
        for &(addr, len) in self.next.iter().rev() {
            let end = addr + len as u64;
            match self.ranges.last_mut() {
                Some((start, range_len))
                    if addr >= *start && addr <= *start + *range_len as u64 + MERGE_GAP =>
                {
                    let merged_end = end.max(*start + *range_len as u64);
                    *range_len = (merged_end - *start) as usize;
                }
                _ => self.ranges.push((addr, len)),
            }
        }
        if let (true, Some((start, range_len))) = (frame_stack, self.ranges.last_mut()) {
            let end = *start + *range_len as u64;
            *range_len = (end.div_ceil(PAGE) * PAGE - *start) as usize;
        }
    }
}

/// The sampler's state in the walker: the tick's batched read and what each thread's
/// stack looked like.
#[derive(Debug, Default)]
struct Sampling {
    prefetch: Prefetch,
    hints: AddrMap<StackHint>,
    /// Thread states of the last [`Walker::threads`].
    listed: Vec<u64>,
    scratch: Vec<u8>,
}

/// Reads the remote ranges `remote` one after the other into `buf`, returning how
/// many bytes arrived: one `process_vm_readv` per [`MAX_BATCH_RANGES`] ranges (the
/// kernel refuses more than 1024 in one call, so a stack over a thousand frames deep
/// failed every read), stopping at the first range that did not arrive whole.
fn read_scattered(pid: i32, remote: &[RemoteIoVec], buf: &mut [u8]) -> Result<usize, MemoryError> {
    let mut arrived = 0;
    for chunk in remote.chunks(MAX_BATCH_RANGES) {
        let len: usize = chunk.iter().map(|r| r.len).sum();
        let Some(into) = buf.get_mut(arrived..arrived + len) else {
            break;
        };
        let n = read_ranges(pid, chunk, into)?;
        arrived += n;
        if n < len {
            break;
        }
    }
    Ok(arrived)
}

/// One `process_vm_readv` of at most [`MAX_BATCH_RANGES`] ranges into `buf`.
fn read_ranges(pid: i32, remote: &[RemoteIoVec], buf: &mut [u8]) -> Result<usize, MemoryError> {
    match process_vm_readv(Pid::from_raw(pid), &mut [IoSliceMut::new(buf)], remote) {
        Ok(n) => Ok(n),
        Err(Errno::EFAULT) => Ok(0),
        Err(Errno::ESRCH) => Err(MemoryError::Gone(pid)),
        Err(Errno::EPERM) => Err(MemoryError::Permission(pid)),
        Err(e) => Err(MemoryError::Read {
            pid,
            addr: remote.first().map_or(0, |r| r.base as u64),
            len: buf.len(),
            reason: e.desc().to_string(),
        }),
    }
}

/// A hash of local slot bytes (a multiply and a rotate per word).
fn fingerprint(bytes: &[u8]) -> u64 {
    let mut hasher = AddrHasher::default();
    for word in bytes.chunks_exact(8) {
        hasher.write_u64(u64::from_le_bytes(word.try_into().unwrap_or([0; 8])));
    }
    hasher.finish()
}

/// How many bytes of a thread state [`Walker::threads`] reads.
fn thread_span(t: &python_offsets::ThreadLayout) -> usize {
    [
        Some(t.next),
        Some(t.interp),
        Some(t.thread_id),
        t.native_thread_id,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(0) as usize
        + 8
}

/// The thread-state field that leads to the innermost frame.
fn top_field(layout: &Layout) -> Result<u64> {
    let t = layout.thread;
    match layout.frame.model {
        FrameModel::FrameObject => t.frame,
        FrameModel::CFrame => t.cframe,
        FrameModel::CurrentFrame => t.current_frame,
    }
    .ok_or_else(|| Error::inconsistent("no frame pointer in this layout"))
}

impl Walker {
    pub fn new(process: PythonProcess) -> Walker {
        Walker {
            process,
            codes: AddrMap::default(),
            pass: 0,
            sampling: Sampling::default(),
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
    /// thread for its TID, and `/proc/PID/task` when a thread appears); none after
    /// [`Walker::begin_sample`] when the threads are those of the last call.
    pub fn threads(&mut self) -> Result<Vec<RawThread>> {
        let layout = self.process.layout;
        let t = layout.thread;
        let fresh = std::mem::replace(&mut self.sampling.prefetch.thread_list_fresh, false);
        let interp = match self.interp {
            Some(interp) => interp,
            None => self.process.interpreter()?,
        };
        let head_addr = interp + layout.interpreter.threads_head;
        let head = match self
            .sampling
            .prefetch
            .word(Part::ThreadList, 0, head_addr)
            .filter(|_| fresh)
        {
            Some(head) => Ok(head),
            None => self.read_u64(head_addr),
        };
        self.interp = head.as_ref().ok().map(|_| interp);
        let mut tstate = head?;
        let mut bytes = vec![0u8; thread_span(&t)];
        let word = |bytes: &[u8], off: u64| {
            let o = off as usize;
            u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap_or([0; 8]))
        };
        let mut threads = Vec::new();
        while tstate != 0 {
            if threads.len() >= MAX_THREADS {
                return Err(Error::inconsistent("thread list does not end"));
            }
            if !(fresh
                && self
                    .sampling
                    .prefetch
                    .copy_out(Part::ThreadList, 0, tstate, &mut bytes))
            {
                self.process
                    .mem
                    .read(tstate, &mut bytes)
                    .map_err(|e| read_error(self.process.pid, e))?;
            }
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
            self.fill_tids_from_pthread(&mut threads, fresh);
        }
        self.sampling.listed.clear();
        self.sampling
            .listed
            .extend(threads.iter().map(|t| t.tstate));
        let listed = &self.sampling.listed;
        self.sampling
            .hints
            .retain(|tstate, _| listed.contains(tstate));
        Ok(threads)
    }

    /// ≤3.10 thread states keep only the `pthread_t`, the address of glibc's `struct
    /// pthread`, which holds the kernel TID at a libc-specific offset. The offset is
    /// found once: the first one at which every thread's value is a distinct TID of
    /// the target (`/proc/PID/task`). `fresh`: the tick's batched read holds the TIDs
    /// of threads already checked.
    fn fill_tids_from_pthread(&mut self, threads: &mut [RawThread], fresh: bool) {
        let mem = &self.process.mem;
        let prefetch = &self.sampling.prefetch;
        let value_at = |ident: u64, off: u64| {
            let mut b = [0u8; 4];
            if !(fresh && prefetch.copy_out(Part::ThreadList, 0, ident + off, &mut b)) {
                mem.read(ident + off, &mut b).ok()?;
            }
            Some(i64::from(i32::from_le_bytes(b)))
        };
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
        let pid = i64::from(self.process.pid);
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
        let finds_main = |off: u64| threads.iter().any(|t| value_at(t.ident, off) == Some(pid));
        // A calibrated offset stays while it still finds the main thread: a thread
        // that is starting or ending can hold a TID that /proc no longer (or not yet)
        // lists, and must not cost every other thread its TID.
        if self.pthread_tid_offset.is_none_or(|off| !finds_main(off)) {
            // glibc 2.36 keeps it at 720; try that first, then scan.
            let candidates = || std::iter::once(720u64).chain((0..2048u64).step_by(4));
            self.pthread_tid_offset = candidates()
                .find(|&off| !threads.is_empty() && fits(off))
                .or_else(|| candidates().find(|&off| finds_main(off)));
        }
        self.checked_tids.clear();
        if let Some(off) = self.pthread_tid_offset {
            for t in threads.iter_mut() {
                t.tid = value_at(t.ident, off).filter(|v| tasks.contains(v));
                if let Some(tid) = t.tid {
                    self.checked_tids.push((t.tstate, t.ident, tid));
                }
            }
        }
    }

    /// The thread state holding the GIL, if any.
    pub fn gil_holder(&self) -> Result<Option<u64>> {
        let layout = self.process.layout;
        let (locked_addr, holder_addr) =
            match (layout.runtime.gil_locked, layout.interpreter.ceval_gil) {
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
        let mut frames = Vec::new();
        let mut addr = self.top_frame(tstate)?;
        let mut buf = [0u8; FRAME_READ];
        let bytes = &mut buf[..self.frame_header_len()];
        while addr != 0 {
            if frames.len() >= MAX_FRAMES {
                return Err(Error::inconsistent(format!(
                    "stack does not end within {MAX_FRAMES} frames"
                )));
            }
            self.process
                .mem
                .read(addr, bytes)
                .map_err(|e| read_error(self.process.pid, e))?;
            let (frame, previous) = self.parse_frame(addr, bytes, CodeCheck::Validate)?;
            frames.extend(frame);
            addr = previous;
        }
        Ok(frames)
    }

    /// How many bytes of a frame [`Walker::parse_frame`] needs: the fixed part of the
    /// frame struct, before its local slots.
    fn frame_header_len(&self) -> usize {
        let fl = self.process.layout.frame;
        match fl.model {
            FrameModel::FrameObject => fl.size as usize,
            _ => fl.localsplus as usize,
        }
    }

    /// The frame whose first [`Walker::frame_header_len`] bytes are `bytes`, and the
    /// address of the frame below it. `None` for frames the interpreter hides: 3.12+
    /// C-stack shim frames, frames not running a code object, frames that have not
    /// started.
    fn parse_frame(
        &mut self,
        addr: u64,
        bytes: &[u8],
        check: CodeCheck,
    ) -> Result<(Option<RawFrame>, u64)> {
        let layout = self.process.layout;
        let fl = layout.frame;
        let word = |off: u64| {
            let o = off as usize;
            u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap_or([0; 8]))
        };
        let previous = word(fl.previous);
        let code_addr = word(fl.code);
        let globals = word(fl.globals);
        let owner = fl.owner.map(|o| bytes[o as usize]);
        if owner == Some(frame_owner::CSTACK) || code_addr == 0 {
            return Ok((None, previous));
        }
        let Some(code) = self.frame_code(code_addr, check, globals)? else {
            return Ok((None, previous));
        };
        let instr_offset = match (fl.lasti, fl.instr_ptr) {
            (Some(off), _) => {
                let lasti = i64::from(i32::from_le_bytes(
                    bytes[off as usize..off as usize + 4]
                        .try_into()
                        .unwrap_or([0; 4]),
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
                return Ok((None, previous));
            }
        }
        let line = code.lines.line(instr_offset).unwrap_or(code.firstlineno);
        let frame = RawFrame {
            addr,
            code,
            instr_offset,
            line,
            globals,
            localsplus: addr + fl.localsplus,
        };
        Ok((Some(frame), previous))
    }

    /// Starts a sampling tick, before its [`Walker::threads`] and
    /// [`Walker::sample_stack`] calls.
    ///
    /// Reads, with one `process_vm_readv`, what the last tick found: the thread list
    /// head and thread states (≤3.10: their TIDs), then for each thread the memory
    /// that held its frames (outermost first; on 3.11+ the frame stack is one block,
    /// read to the end of the page above its top, where new frames are pushed)
    /// followed by its innermost-frame pointer. The calls of this tick use those
    /// bytes once and read alone only what moved.
    ///
    /// Code objects that [`Walker::sample_stack`] met in this tick or the previous
    /// one are then used without being checked again: a code object is kept alive
    /// by the frames that run it, so one seen a tick ago has been replaced at the
    /// same address only if every frame running it ended and a new code object was
    /// compiled there within one sampling interval. The check is two reads per
    /// frame, the biggest cost of a sample without it. A frame whose globals differ
    /// from the last frame's that ran the code is checked all the same: at every
    /// start, `site` runs a `.pth` line as a `<module>` of `<string>` in its own
    /// globals, frees it, and the main script's functions may be compiled into its
    /// place a millisecond later (seen in CI as a child's `child_work` named
    /// `<module>` for the whole of its run).
    pub fn begin_sample(&mut self) {
        self.pass += 1;
        let layout = self.process.layout;
        let cframe_field = layout.thread.cframe_current_frame.unwrap_or(0);
        let Ok(top) = top_field(&layout) else {
            return;
        };
        let sampling = &mut self.sampling;
        let prefetch = &mut sampling.prefetch;
        prefetch.clear();
        if let Some(interp) = self.interp {
            prefetch.push(
                Part::ThreadList,
                0,
                interp + layout.interpreter.threads_head,
                8,
            );
            let span = thread_span(&layout.thread);
            for &tstate in &sampling.listed {
                prefetch.push(Part::ThreadList, 0, tstate, span);
            }
            if let Some(off) = self.pthread_tid_offset {
                for &(_, ident, _) in &self.checked_tids {
                    prefetch.push(Part::ThreadList, 0, ident + off, 4);
                }
            }
        }
        let mut bytes = prefetch.bytes();
        for &tstate in &sampling.listed {
            let Some(hint) = sampling.hints.get_mut(&tstate) else {
                continue;
            };
            let needed: usize = hint.ranges.iter().map(|r| r.1).sum::<usize>() + 16;
            if prefetch.remote.len() + hint.ranges.len() + 2 > MAX_BATCH_RANGES
                || bytes + needed > MAX_BATCH_BYTES
            {
                continue;
            }
            for &(addr, len) in &hint.ranges {
                prefetch.push(Part::Frames, tstate, addr, len);
            }
            prefetch.push(Part::Top, tstate, tstate + top, 8);
            if layout.frame.model == FrameModel::CFrame && hint.cframe != 0 {
                prefetch.push(Part::Top, tstate, hint.cframe + cframe_field, 8);
            }
            bytes += needed;
            hint.prefetched = true;
        }
        // A failed batch only means that this tick reads one by one.
        if prefetch.read(self.process.mem.pid()).is_err() {
            prefetch.got.clear();
        }
        prefetch.thread_list_fresh = true;
    }

    /// The frames of a thread, innermost first, as [`Walker::stack`] reads them, with
    /// a fingerprint of each frame's local slots: the sampler's hot path.
    ///
    /// Uses the bytes of [`Walker::begin_sample`]. There, each thread's frames were
    /// read before its innermost-frame pointer, so a frame that changed after its
    /// bytes were read has a live frame above it that was pushed later: the stack
    /// read is never one where a caller has moved on under a callee that already
    /// returned. Frames outside the remembered memory are read one by one; then the
    /// innermost-frame pointer is read again, and a stack that changed in the
    /// meantime is an [`Error::Inconsistent`].
    ///
    /// Cost (bench/sampling, 40 frames): nothing beyond the tick's batched read when
    /// the stack stayed where it was; one read per new frame on 3.8–3.10 (frame
    /// objects are scattered on the heap) and per frame past the remembered page on
    /// 3.11+, plus the checking reads.
    pub fn sample_stack(&mut self, tstate: u64, out: &mut Vec<SampledFrame>) -> Result<()> {
        let mut hint = self.sampling.hints.remove(&tstate).unwrap_or_default();
        let result = self.sample_stack_with(tstate, &mut hint, out);
        self.sampling.hints.insert(tstate, hint);
        result
    }

    fn sample_stack_with(
        &mut self,
        tstate: u64,
        hint: &mut StackHint,
        out: &mut Vec<SampledFrame>,
    ) -> Result<()> {
        out.clear();
        let layout = self.process.layout;
        let fl = layout.frame;
        let top_field = top_field(&layout)?;
        let cframe_field = layout.thread.cframe_current_frame.unwrap_or(0);
        let header_len = self.frame_header_len();
        let pid = self.process.mem.pid();
        let prefetched = std::mem::replace(&mut hint.prefetched, false);
        let owner = if prefetched { tstate } else { 0 };
        let batched_top = self
            .sampling
            .prefetch
            .word(Part::Top, owner, tstate + top_field);
        let mut read_alone = false;
        let top = match (fl.model, batched_top) {
            (FrameModel::CFrame, Some(cframe)) if cframe == hint.cframe && cframe != 0 => {
                match self
                    .sampling
                    .prefetch
                    .word(Part::Top, owner, cframe + cframe_field)
                {
                    Some(top) => top,
                    None => {
                        read_alone = true;
                        self.read_u64(cframe + cframe_field)?
                    }
                }
            }
            (FrameModel::CFrame, _) => {
                read_alone = true;
                let cframe = self.read_u64(tstate + top_field)?;
                hint.cframe = cframe;
                if cframe == 0 {
                    0
                } else {
                    self.read_u64(cframe + cframe_field)?
                }
            }
            (_, Some(top)) => top,
            (_, None) => {
                read_alone = true;
                self.read_u64(tstate + top_field)?
            }
        };

        hint.next.clear();
        let mut slot_bytes = std::mem::take(&mut self.sampling.scratch);
        let mut addr = top;
        let mut header = [0u8; FRAME_READ];
        while addr != 0 {
            if out.len() >= MAX_FRAMES {
                return Err(Error::inconsistent(format!(
                    "stack does not end within {MAX_FRAMES} frames"
                )));
            }
            let bytes = &mut header[..header_len];
            if !self
                .sampling
                .prefetch
                .copy_out(Part::Frames, owner, addr, bytes)
            {
                read_alone = true;
                self.process
                    .mem
                    .read(addr, bytes)
                    .map_err(|e| read_error(pid, e))?;
            }
            let (frame, previous) = self.parse_frame(addr, bytes, CodeCheck::TrustRecent)?;
            let Some(frame) = frame else {
                hint.next.push((addr, header_len));
                addr = previous;
                continue;
            };
            let slots_len = frame.code.slot_names.len() * 8;
            slot_bytes.resize(slots_len, 0);
            if !self.sampling.prefetch.copy_out(
                Part::Frames,
                owner,
                frame.localsplus,
                &mut slot_bytes,
            ) {
                read_alone = true;
                self.process
                    .mem
                    .read(frame.localsplus, &mut slot_bytes)
                    .map_err(|e| read_error(pid, e))?;
            }
            let slots = fingerprint(&slot_bytes);
            let args = fingerprint(&slot_bytes[..frame.code.arg_slots().min(slots_len / 8) * 8]);
            hint.next.push((addr, frame_span(&frame, header_len)));
            out.push(SampledFrame {
                frame,
                slots,
                args,
                previous,
            });
            addr = previous;
        }
        self.sampling.scratch = slot_bytes;
        hint.remember(fl.model != FrameModel::FrameObject);
        if read_alone {
            let now = match fl.model {
                FrameModel::CFrame => match self.read_u64(tstate + top_field)? {
                    0 => 0,
                    cframe => self.read_u64(cframe + cframe_field)?,
                },
                _ => self.read_u64(tstate + top_field)?,
            };
            if now != top {
                return Err(Error::inconsistent("the stack changed while it was read"));
            }
        }
        Ok(())
    }

    /// Makes a stack read by [`Walker::sample_stack`] one that existed at one moment.
    ///
    /// Without stopping the target, the frames of a sample are read one after the
    /// other while it runs, and the tick's batched read takes them from where the
    /// thread's frames were last time, before its innermost-frame pointer. When calls
    /// begin or end meanwhile, the stack read can mix moments: a caller read at its
    /// place before a call while its callee, read a moment later, is already the new
    /// call (compared with the next sample, the caller seems to have moved under a
    /// callee that goes on, and the callee is counted twice); or a frame pushed after
    /// its memory was read, whose bytes are still those of an earlier call there.
    ///
    /// So the same frames are read again: when every frame below the innermost is
    /// where the first read saw it, and the innermost is the same frame running the
    /// same code, each stayed put from its first read to its second, and all were
    /// there together at the end of the first read, whatever the order of the reads;
    /// the second read is kept, for its innermost frame (which may run on) read after
    /// its caller. When they differ (or the first read found no frames where the
    /// previous sample had some), the stack is walked afresh from the innermost
    /// pointer, frame by frame, and that walk is checked the same way. A stack that
    /// keeps changing (short calls made all the time) is left as walked afresh; when it
    /// changed under the fresh walk too, the tick has no read of the thread (an
    /// [`Error::Inconsistent`]) rather than one that may mix moments. The calls that
    /// tear it are shorter than the sampling interval, which a sampler cannot count
    /// anyway.
    ///
    /// Cost: one batched read of the frames' memory, plus a walk and a second batched
    /// read when the stack changed during the first; the sampler skips it when the
    /// stack below the innermost frame is as it was in the previous sample.
    pub fn settle_stack(&mut self, tstate: u64, frames: &mut Vec<SampledFrame>) -> Result<()> {
        if !frames.is_empty() {
            if let Some(second) = self.reread_frames(frames)? {
                if reads_agree(frames, &second) {
                    *frames = second;
                    return Ok(());
                }
            }
        }
        // When the stack moved during the fresh walk too, this tick has no read of the
        // thread that can be trusted, and none is kept: the first read may hold a
        // frame whose bytes were taken while it was being pushed (3.11+: its link
        // to its caller not yet set, so the stack seems to end there and every
        // call below it to return and start again; seen on 3.13 with three threads
        // calling json.dumps in a loop: the main thread's `<module>` "called" 12
        // times in 3 seconds). The thread's calls go on from its previous sample.
        // A walk that finds no frames is returned as it is: the call tracker does
        // not believe one empty read of a thread that had calls.
        self.sample_stack(tstate, frames)?;
        if let Some(second) = self.reread_frames(frames)? {
            if reads_agree(frames, &second) {
                *frames = second;
            }
        }
        Ok(())
    }

    /// The frames at the addresses of `frames` read again, outermost first, in one
    /// batched read; `None` when some of that memory no longer holds a frame.
    fn reread_frames(&mut self, frames: &[SampledFrame]) -> Result<Option<Vec<SampledFrame>>> {
        let header_len = self.frame_header_len();
        let pid = self.process.mem.pid();
        let mut remote = Vec::with_capacity(frames.len());
        let mut spans = Vec::with_capacity(frames.len());
        let mut total = 0;
        for f in frames.iter().rev() {
            let slots_len = f.frame.code.slot_names.len() * 8;
            let len = frame_span(&f.frame, header_len);
            remote.push(RemoteIoVec {
                base: f.frame.addr as usize,
                len,
            });
            spans.push((total, len, slots_len));
            total += len;
        }
        let mut buf = std::mem::take(&mut self.sampling.scratch);
        buf.resize(total, 0);
        let arrived = read_scattered(pid, &remote, &mut buf).map_err(|e| read_error(pid, e))?;
        let mut out = Vec::with_capacity(frames.len());
        if arrived == total {
            for (f, &(at, len, slots_len)) in frames.iter().rev().zip(&spans) {
                let bytes = &buf[at..at + len];
                let (frame, previous) =
                    self.parse_frame(f.frame.addr, &bytes[..header_len], CodeCheck::TrustRecent)?;
                let Some(frame) = frame else {
                    break;
                };
                let from = (frame.localsplus - frame.addr) as usize;
                let slots = fingerprint(&bytes[from..from + slots_len]);
                let args_len = frame.code.arg_slots().min(slots_len / 8) * 8;
                let args = fingerprint(&bytes[from..from + args_len]);
                out.push(SampledFrame {
                    frame,
                    slots,
                    args,
                    previous,
                });
            }
        }
        self.sampling.scratch = buf;
        if out.len() != frames.len() {
            return Ok(None);
        }
        out.reverse();
        Ok(Some(out))
    }

    /// The version of a module body's globals dict (`ma_version_tag`), which moves
    /// whenever the body binds a variable; 0 for a function's frame (its variables
    /// are in its slots) or when it cannot be read.
    pub fn globals_version(&mut self, frame: &RawFrame) -> u64 {
        if frame.code.flags & code_flags::OPTIMIZED != 0 || frame.globals == 0 {
            return 0;
        }
        let at = frame.globals + self.process.layout.object.dict.ma_version_tag;
        self.read_u64(at).unwrap_or(0)
    }

    /// The code object at `addr`, from the cache when its first line and line table
    /// pointer still match.
    pub fn code(&mut self, addr: u64) -> Result<Arc<CodeInfo>> {
        self.frame_code(addr, CodeCheck::Validate, 0)?
            .ok_or_else(|| Error::inconsistent(format!("object at {addr:#x} is not a code object")))
    }

    /// The code object a frame runs, or `None` when the frame's executable is not a
    /// code object (3.13 frames may run other executables; they are skipped).
    /// `globals` is the frame's (0 when there is no frame).
    fn frame_code(
        &mut self,
        addr: u64,
        check: CodeCheck,
        globals: u64,
    ) -> Result<Option<Arc<CodeInfo>>> {
        let cl = self.process.layout.code;
        let pass = self.pass;
        if let Some(cached) = self.codes.get_mut(&addr) {
            let recent = check == CodeCheck::TrustRecent
                && cached.seen + 1 >= pass
                && cached.globals == globals;
            let mem = &self.process.mem;
            let still = recent
                || (mem.read_u64(addr + cl.linetable).ok() == Some(cached.info.linetable_ptr)
                    && mem.read_i32(addr + cl.firstlineno).ok() == Some(cached.info.firstlineno));
            if still {
                cached.seen = pass;
                if globals != 0 {
                    cached.globals = globals;
                }
                return Ok(Some(cached.info.clone()));
            }
        }
        let Some(info) = read_code(&self.process, addr)? else {
            return Ok(None);
        };
        let info = Arc::new(info);
        if self.codes.len() > 100_000 {
            self.codes.clear();
        }
        self.codes.insert(
            addr,
            CachedCode {
                info: info.clone(),
                seen: pass,
                globals,
            },
        );
        Ok(Some(info))
    }

    /// Whether the frame of `sampled` still runs its code with the same objects in
    /// its argument slots, read now. A frame read earlier in a sample may since have
    /// returned and its memory been reused by another call, of another function or
    /// of the same one (a loop calling it starts each call where the last one
    /// returned); what is read from it later (its arguments) is only the sampled
    /// call's when this still holds afterwards.
    pub fn frame_unchanged(&self, sampled: &SampledFrame) -> Result<bool> {
        let frame = &sampled.frame;
        let code = &frame.code;
        let args_len = code.arg_slots().min(code.slot_names.len()) * 8;
        let slots_at = (frame.localsplus - frame.addr) as usize;
        let bytes = self
            .process
            .mem
            .read_vec(frame.addr, slots_at + args_len)
            .map_err(|e| read_error(self.process.pid, e))?;
        let code_at = self.process.layout.frame.code as usize;
        let code_now = bytes
            .get(code_at..code_at + 8)
            .map_or(0, |w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
        Ok(code_now == code.addr && fingerprint(&bytes[slots_at..]) == sampled.args)
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
        let slot =
            |i: usize| u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
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
    let counts = [
        i32_at(cl.argcount),
        i32_at(cl.kwonlyargcount),
        i32_at(cl.nlocals),
    ];
    if counts.iter().any(|&c| !(0..=65535).contains(&c)) {
        return Err(Error::inconsistent(format!(
            "code object at {addr:#x} has bad counts"
        )));
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
        slot_names.extend(to_arcs(objects::read_str_tuple(
            mem,
            layout,
            u64_at(frees),
        )?));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame pointer read while the frame changed can be any number: one near the
    /// top of the address space is not in any prefetched range (its end overflowed,
    /// and the sampler thread panicked in a debug build).
    #[test]
    fn an_address_at_the_top_of_the_address_space_is_in_no_range() {
        let prefetch = Prefetch {
            buf: vec![7; 64],
            got: vec![(Part::Frames, 1, 0x1000, 64, 0)],
            ..Prefetch::default()
        };
        let mut word = [0u8; 8];
        assert!(prefetch.copy_out(Part::Frames, 1, 0x1008, &mut word));
        assert_eq!(word, [7; 8]);
        assert!(!prefetch.copy_out(Part::Frames, 1, u64::MAX - 3, &mut word));
        assert!(!prefetch.copy_out(Part::Frames, 1, 0x1040, &mut word));
        assert_eq!(prefetch.word(Part::Frames, 1, u64::MAX), None);
    }
}
