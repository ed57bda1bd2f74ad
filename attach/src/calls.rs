//! Calls and returns rebuilt from consecutive stack samples.
//!
//! [`CallTracker`] receives, per thread and per sample, the thread's frames as
//! [`FrameState`]s (innermost first, as the walker reads them) and compares them with
//! the frames it saw in the thread's previous sample, from the outermost frame in:
//!
//! * a frame that continues a frame of the previous sample keeps its call;
//! * frames of the previous sample that are not continued ended: they get `return`
//!   rows (`ts` = this sample, `duration_ns` = last seen − first seen,
//!   `duration_max_ns` = this sample − the sample before the call was first seen);
//! * frames that continue nothing are new calls: `call` rows with the argument reprs
//!   read now, `line` = the code's first line, `caller`/`caller_line` from the
//!   nearest traced frame below.
//!
//! When does a frame continue one of the previous sample? The frame's address and
//! code are not enough: CPython ≤3.10 reuses a code object's "zombie" frame object
//! and 3.11+ reuses the same slot of the thread's frame stack when a function is
//! called again, so a function called twice between two samples sits at the same
//! address with the same code. A frame is a new call when the state shows it:
//!
//! 1. its address or code changed, or a frame below it is a new call;
//! 2. its caller ran in between: the caller's instruction offset or any of its local
//!    variable slots changed ([`FrameState::slots`]). A frame cannot run while a call
//!    it made is still running, so the call seen before has returned. This catches a
//!    function called again by a loop (the loop variable changes) or from another
//!    line of the caller. A module body (or a class body) keeps its variables in its
//!    globals dict, not in slots: there the call is new when the dict changed since
//!    the call was first seen (its [`FrameState::globals_version`]) and the call's
//!    arguments changed since the last sample ([`FrameState::args`]), as in
//!    `for job in jobs: process(job)` at the top level of a script. Either alone
//!    proves nothing: a function may bind a global name or assign its own parameter
//!    while it runs (both, the one after the other, in one call called from a module
//!    body is taken for a new call);
//! 3. its own position moved back to an earlier line that no loop can explain: the
//!    [`SourceRegions`] of its file (loops, `with` and `try` statements, decorated
//!    definitions and statements spanning several lines are where one call can go
//!    back to an earlier line). Without the source, a move back proves nothing: a
//!    busy loop revisits its lines all the time.
//!
//! What no state shows is merged: a function called again with the same arguments by
//! a caller that did not change (a C function such as `map()`, or a `while` loop that
//! assigns nothing), whose new run is sampled inside the same loop as the old one,
//! counts as one call; so does everything shorter than the sampling interval, which a
//! sampler cannot see at all. A generator or coroutine resumed after its consumer ran
//! is a new call each time it is seen again.
//!
//! Exceptions cannot be seen by sampling (a frame that ends by an exception looks
//! like one that returned), so sampled mode never emits `exception` rows; nor does it
//! know return values (`value` stays null).
//!
//! Frames whose code is not traced ([`CodeFacts::traced`], decided by the filter) get
//! no rows; their traced callees hang under the nearest traced frame below them, and
//! `depth` counts traced frames only. The first untraced frame directly above a
//! traced one is a *gap*: the distinct untraced calls of one callee under one traced
//! call become one `gap` row (`count` calls, `duration_ns`/`duration_max_ns` their
//! summed bounds), written when the traced call ends.
//!
//! Timing: each observation carries the window `[t0, t1]` during which the thread was
//! read. Bounds are taken on the safe side of it: at least `last.t0 − first.t1`, at
//! most `after.t1 − before.t0`, so a call's true duration always lies between them.

use std::collections::HashMap;
use std::sync::Arc;

use crate::event::{Event, EventKind, EventSink, SinkError, Source};

/// One frame of a sample, as the tracker compares it with the previous sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameState {
    /// The frame's address.
    pub addr: u64,
    /// The code object's address.
    pub code: u64,
    /// The instruction offset in bytes.
    pub instr_offset: i64,
    /// The line executing.
    pub line: i32,
    /// A fingerprint of the frame's local variable slots (the object pointers); it
    /// changes when the frame assigns a variable, which only a running frame does.
    pub slots: u64,
    /// The same fingerprint of its argument slots alone.
    pub args: u64,
    /// A module or class body: the version of its globals dict, which moves when the
    /// body (or anything else) binds a global name; 0 for a function's frame or when
    /// unknown. Such a body keeps its variables there, not in slots.
    pub globals_version: u64,
}

impl FrameState {
    /// Whether `other` is this frame as the walker read it, in the same state: all
    /// but `globals_version`, which the sampler adds after the stack is settled.
    pub fn same_read(&self, other: &FrameState) -> bool {
        FrameState {
            globals_version: other.globals_version,
            ..*self
        } == *other
    }
}

/// When a thread was read: the read started at `t0` and ended at `t1` (nanoseconds
/// since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub t0: i64,
    pub t1: i64,
}

/// Facts about a frame's code that are needed for every new frame, traced or not.
/// Cheap to clone; the sampler caches them per code object.
#[derive(Debug, Clone, Default)]
pub struct CodeFacts {
    /// Whether calls of this code get rows (`--include` / `--exclude`).
    pub traced: bool,
    /// `co_firstlineno`.
    pub first_line: i32,
    /// Where one call of this code can move back to an earlier line; `None` when the
    /// source is not available.
    pub regions: Option<Arc<SourceRegions>>,
}

/// Who a call is, as its rows name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSite {
    pub function: Arc<str>,
    pub module: Arc<str>,
    pub file: Arc<str>,
    /// `co_firstlineno`, the `line` of call rows.
    pub first_line: i32,
    /// `module.function`: the `caller` of the calls it makes.
    pub qualified: Arc<str>,
}

impl CallSite {
    /// A call site, with its `module.function` name.
    pub fn new(function: Arc<str>, module: Arc<str>, file: Arc<str>, first_line: i32) -> CallSite {
        let qualified = format!("{module}.{function}").into();
        CallSite {
            function,
            module,
            file,
            first_line,
            qualified,
        }
    }
}

/// What the tracker asks about the frames of the sample it is given (indexes are
/// positions in that stack, innermost first). The sampler answers from the target's
/// memory; tests answer from tables.
pub trait FrameInfo {
    /// Facts about frame `index`'s code; asked for every new frame.
    fn facts(&mut self, index: usize) -> CodeFacts;
    /// Names of frame `index`; asked for new traced frames and new gap callees.
    fn site(&mut self, index: usize) -> Arc<CallSite>;
    /// The arguments of frame `index` as a JSON object of name to repr, read now
    /// (the call's first sight); `None` when arguments are not recorded.
    fn args(&mut self, index: usize) -> Option<String>;
}

/// A thread as the tracker labels its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadLabel {
    /// What identifies the thread between samples (its thread state's address).
    pub key: u64,
    /// The kernel's thread id.
    pub tid: i64,
    /// Python's name for the thread.
    pub name: Option<Arc<str>>,
}

/// Counts of what the tracker wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCounts {
    pub events: u64,
    pub calls: u64,
    pub returns: u64,
    pub unfinished: u64,
    pub gaps: u64,
}

/// The untraced callees of one traced call, counted by distinct call.
#[derive(Debug)]
struct Gap {
    site: Arc<CallSite>,
    count: u32,
    first_ts: i64,
    caller_line: i32,
    min_total: i64,
    max_total: Option<i64>,
}

/// A call being followed: one frame of a thread's last sample.
#[derive(Debug)]
struct Tracked {
    state: FrameState,
    /// The caller's `globals_version` in the sample that first saw this call (0: not
    /// a module body's call, or unknown).
    caller_version: u64,
    call_id: u64,
    facts: CodeFacts,
    /// Traced frames and gap callees: their names.
    site: Option<Arc<CallSite>>,
    /// Traced frames among the frames below this one (its depth when traced).
    traced_below: i32,
    /// The nearest traced frame below this one: its position in the thread's stack.
    nearest_traced: Option<usize>,
    parent_id: Option<u64>,
    caller: Option<Arc<str>>,
    first_seen: Window,
    last_seen: Window,
    /// When the thread was last seen without this call (before it was first seen).
    before_first: Option<i64>,
    /// For a gap callee: its entry in the gaps of the frame below.
    gap_entry: Option<usize>,
    /// For a traced frame: the untraced callees seen directly above it.
    gaps: Vec<Gap>,
}

impl Tracked {
    /// `duration_ns` and `duration_max_ns`. A call is "seen" when the read that saw
    /// it started: from its call row's `ts` (the first read's start) its duration
    /// reaches the start of the last read that saw it, so a call seen inside another
    /// spans a time inside the other's (measured from the first read's end, a child
    /// could outlast its parent by the difference of their first reads' lengths, or,
    /// seen once, start after its parent's end).
    fn bounds(&self, end: i64) -> (i64, Option<i64>) {
        let min = (self.last_seen.t0 - self.first_seen.t0).max(0);
        let max = self.before_first.map(|before| (end - before).max(min));
        (min, max)
    }
}

/// One thread's calls in progress.
#[derive(Debug)]
struct ThreadCalls {
    label: ThreadLabel,
    /// Outermost first.
    frames: Vec<Tracked>,
    /// The last time the thread's stack was read, or known not to exist yet.
    last_observed: Option<Window>,
    /// When the thread's stack last read empty while it had calls, if that read is
    /// not yet believed (see [`CallTracker::observe`]).
    emptied_at: Option<Window>,
}

/// Turns consecutive per-thread stack samples into call, return, gap and unfinished
/// rows (see the module documentation for the rules).
#[derive(Debug)]
pub struct CallTracker {
    pid: i32,
    next_seq: u64,
    next_call_id: u64,
    threads: HashMap<u64, ThreadCalls>,
    /// Threads of the last thread list, with the time before which they did not exist
    /// (the previous list), when they appeared after the first list.
    listed: HashMap<u64, Option<i64>>,
    previous_list: Option<i64>,
    counts: CallCounts,
}

impl CallTracker {
    /// A tracker for process `pid`; `seq` and `call_id` start at 1.
    pub fn new(pid: i32) -> CallTracker {
        CallTracker {
            pid,
            next_seq: 1,
            next_call_id: 1,
            threads: HashMap::new(),
            listed: HashMap::new(),
            previous_list: None,
            counts: CallCounts::default(),
        }
    }

    /// What has been written so far.
    pub fn counts(&self) -> CallCounts {
        self.counts
    }

    /// Starts a sample: the thread keys listed at `listed_at`. Threads that are no
    /// longer listed end their calls (`return` rows at `listed_at`); threads listed
    /// for the first time are known not to have existed at the previous list.
    pub fn threads_listed(
        &mut self,
        listed_at: i64,
        keys: &[u64],
        sink: &mut dyn EventSink,
    ) -> Result<(), SinkError> {
        let mut gone: Vec<u64> = self
            .threads
            .keys()
            .copied()
            .filter(|k| !keys.contains(k))
            .collect();
        gone.sort_unstable();
        for key in gone {
            if let Some(mut thread) = self.threads.remove(&key) {
                let end = Window {
                    t0: listed_at,
                    t1: listed_at,
                };
                self.end_frames(&mut thread, 0, end, EventKind::Return, sink)?;
            }
        }
        let first_list = self.previous_list.is_none();
        self.listed.retain(|k, _| keys.contains(k));
        for &key in keys {
            let previous = self.previous_list;
            self.listed
                .entry(key)
                .or_insert(if first_list { None } else { previous });
        }
        self.previous_list = Some(listed_at);
        Ok(())
    }

    /// How many frames of `stack` (innermost first), counted from the outermost,
    /// continue calls already seen on the thread `key`; the rest are new calls.
    pub fn continued(&self, key: u64, stack: &[FrameState]) -> usize {
        self.threads
            .get(&key)
            .map_or(0, |t| continued_frames(&t.frames, stack))
    }

    /// The outermost frame's address in thread `key`'s previous sample, if it had one.
    pub fn outermost_frame(&self, key: u64) -> Option<u64> {
        self.threads.get(&key)?.frames.first().map(|f| f.state.addr)
    }

    /// Whether `stack` (innermost first) shows thread `key` as its previous sample did
    /// below the innermost frame, with the same innermost call: then nothing in it
    /// starts or ends a call, however its reads were interleaved with the target.
    pub fn same_below_innermost(&self, key: u64, stack: &[FrameState]) -> bool {
        let Some(thread) = self.threads.get(&key) else {
            return stack.is_empty();
        };
        let old = &thread.frames;
        old.len() == stack.len()
            && old
                .iter()
                .zip(stack.iter().rev())
                .enumerate()
                .all(|(i, (before, now))| {
                    if i + 1 == old.len() {
                        before.state.addr == now.addr && before.state.code == now.code
                    } else {
                        before.state.same_read(now)
                    }
                })
    }

    /// Compares one thread's stack (innermost first), read during `window`, with its
    /// previous sample and writes the rows that follow.
    pub fn observe(
        &mut self,
        thread: &ThreadLabel,
        window: Window,
        stack: &[FrameState],
        info: &mut dyn FrameInfo,
        sink: &mut dyn EventSink,
    ) -> Result<(), SinkError> {
        let mut calls = match self.threads.remove(&thread.key) {
            Some(mut t) => {
                t.label.clone_from(thread);
                t
            }
            None => ThreadCalls {
                label: thread.clone(),
                frames: Vec::new(),
                emptied_at: None,
                last_observed: self
                    .listed
                    .get(&thread.key)
                    .copied()
                    .flatten()
                    .map(|t| Window { t0: t, t1: t }),
            },
        };
        let result = if stack.is_empty() && !calls.frames.is_empty() {
            self.observe_emptied(&mut calls, window, info, sink)
        } else {
            calls.emptied_at = None;
            let result = self.observe_thread(&mut calls, window, stack, info, sink);
            calls.last_observed = Some(window);
            result
        };
        self.threads.insert(thread.key, calls);
        result
    }

    /// A thread with calls whose stack reads empty. A running thread's stack empties
    /// only when it leaves Python, and a read can also find it empty for a moment
    /// while C code calls into Python (3.11–3.12 switch `_PyCFrame`s, 3.13 points at
    /// a frame on the C stack): believed, such a read would end every call of the
    /// thread and start them again at the next sample (seen on 3.13: a `<module>`
    /// "called" 8 times in 3 seconds by a program whose three threads call
    /// `json.dumps` in a loop). So the first empty read is only remembered; the
    /// calls end, at that first read, when the next read is empty too, when the
    /// thread disappears from the thread list, or when recording ends.
    fn observe_emptied(
        &mut self,
        calls: &mut ThreadCalls,
        window: Window,
        info: &mut dyn FrameInfo,
        sink: &mut dyn EventSink,
    ) -> Result<(), SinkError> {
        let Some(first) = calls.emptied_at.take() else {
            calls.emptied_at = Some(window);
            return Ok(());
        };
        let result = self.observe_thread(calls, first, &[], info, sink);
        calls.last_observed = Some(window);
        result
    }

    fn observe_thread(
        &mut self,
        calls: &mut ThreadCalls,
        window: Window,
        stack: &[FrameState],
        info: &mut dyn FrameInfo,
        sink: &mut dyn EventSink,
    ) -> Result<(), SinkError> {
        let n = stack.len();
        let kept = continued_frames(&calls.frames, stack);
        self.end_frames(calls, kept, window, EventKind::Return, sink)?;
        for (i, tracked) in calls.frames.iter_mut().enumerate() {
            tracked.state = stack[n - 1 - i];
            tracked.last_seen = window;
        }
        let before_first = calls.last_observed.map(|w| w.t0);
        for i in kept..n {
            let index = n - 1 - i;
            let frame = self.new_frame(calls, index, stack[index], window, before_first, info);
            if let (true, Some(site)) = (frame.facts.traced, frame.site.clone()) {
                let args = info.args(index);
                let caller_line = frame.nearest_traced.map(|p| calls.frames[p].state.line);
                let row = self.row(
                    &calls.label,
                    EventKind::Call,
                    window.t0,
                    &frame,
                    &site,
                    site.first_line,
                );
                self.emit(
                    Event {
                        caller_line,
                        args,
                        ..row
                    },
                    sink,
                )?;
                self.counts.calls += 1;
            }
            calls.frames.push(frame);
        }
        Ok(())
    }

    /// Builds the tracked frame for a frame first seen at stack position `index`, and
    /// counts it as a gap callee of the frame below when that one is traced.
    fn new_frame(
        &mut self,
        calls: &mut ThreadCalls,
        index: usize,
        state: FrameState,
        window: Window,
        before_first: Option<i64>,
        info: &mut dyn FrameInfo,
    ) -> Tracked {
        let facts = info.facts(index);
        let below = calls.frames.len().checked_sub(1);
        let (traced_below, nearest_traced, below_traced) =
            match below.map(|b| (b, &calls.frames[b])) {
                Some((b, f)) if f.facts.traced => (f.traced_below + 1, Some(b), true),
                Some((_, f)) => (f.traced_below, f.nearest_traced, false),
                None => (0, None, false),
            };
        let site = (facts.traced || below_traced).then(|| info.site(index));
        let call_id = self.next_call_id;
        self.next_call_id += 1;
        let mut gap_entry = None;
        if let (false, true, Some(b), Some(site)) = (facts.traced, below_traced, below, &site) {
            let parent = &mut calls.frames[b];
            let position = parent
                .gaps
                .iter()
                .position(|g| g.site.function == site.function && g.site.module == site.module);
            let position = position.unwrap_or_else(|| {
                parent.gaps.push(Gap {
                    site: site.clone(),
                    count: 0,
                    first_ts: window.t0,
                    caller_line: parent.state.line,
                    min_total: 0,
                    max_total: Some(0),
                });
                parent.gaps.len() - 1
            });
            parent.gaps[position].count += 1;
            gap_entry = Some(position);
        }
        let caller_version = below.map_or(0, |b| calls.frames[b].state.globals_version);
        let parent = nearest_traced.map(|p| &calls.frames[p]);
        Tracked {
            state,
            caller_version,
            call_id,
            facts,
            site,
            traced_below,
            nearest_traced,
            parent_id: parent.map(|p| p.call_id),
            caller: parent
                .and_then(|p| p.site.as_ref())
                .map(|s| s.qualified.clone()),
            first_seen: window,
            last_seen: window,
            before_first,
            gap_entry,
            gaps: Vec::new(),
        }
    }

    /// Ends the frames of `calls` from position `keep` up, innermost first, with rows
    /// of `kind` at `end.t0`.
    fn end_frames(
        &mut self,
        calls: &mut ThreadCalls,
        keep: usize,
        end: Window,
        kind: EventKind,
        sink: &mut dyn EventSink,
    ) -> Result<(), SinkError> {
        while calls.frames.len() > keep {
            let Some(frame) = calls.frames.pop() else {
                break;
            };
            let upper_end = if kind == EventKind::Return {
                end.t1
            } else {
                frame.last_seen.t1
            };
            let (min, max) = frame.bounds(upper_end);
            if let (Some(entry), Some(parent)) = (frame.gap_entry, calls.frames.last_mut()) {
                if let Some(gap) = parent.gaps.get_mut(entry) {
                    gap.min_total += min;
                    gap.max_total = gap.max_total.zip(max).map(|(a, b)| a + b);
                }
            }
            if !frame.facts.traced {
                continue;
            }
            for gap in &frame.gaps {
                self.emit_gap(&calls.label, &frame, gap, sink)?;
            }
            if let Some(site) = &frame.site {
                let ts = if kind == EventKind::Return {
                    end.t0
                } else {
                    frame.last_seen.t0
                };
                let row = self.row(&calls.label, kind, ts, &frame, site, frame.state.line);
                self.emit(
                    Event {
                        duration_ns: Some(min),
                        duration_max_ns: max,
                        ..row
                    },
                    sink,
                )?;
                match kind {
                    EventKind::Unfinished => self.counts.unfinished += 1,
                    _ => self.counts.returns += 1,
                }
            }
        }
        Ok(())
    }

    fn emit_gap(
        &mut self,
        label: &ThreadLabel,
        parent: &Tracked,
        gap: &Gap,
        sink: &mut dyn EventSink,
    ) -> Result<(), SinkError> {
        let call_id = self.next_call_id;
        self.next_call_id += 1;
        let event = Event {
            pid: self.pid,
            tid: label.tid,
            thread_name: label.name.clone(),
            seq: 0,
            ts_ns: gap.first_ts,
            kind: EventKind::Gap,
            source: Source::Sampled,
            call_id,
            parent_id: Some(parent.call_id),
            depth: parent.traced_below + 1,
            function: gap.site.function.clone(),
            module: gap.site.module.clone(),
            file: gap.site.file.clone(),
            line: gap.site.first_line,
            caller: parent.site.as_ref().map(|s| s.qualified.clone()),
            caller_line: Some(gap.caller_line),
            args: None,
            value: None,
            exception: None,
            duration_ns: Some(gap.min_total),
            duration_max_ns: gap.max_total,
            count: gap.count,
        };
        self.counts.gaps += 1;
        self.emit(event, sink)
    }

    /// The fields every row of a tracked call shares.
    fn row(
        &self,
        label: &ThreadLabel,
        kind: EventKind,
        ts: i64,
        frame: &Tracked,
        site: &CallSite,
        line: i32,
    ) -> Event {
        Event {
            pid: self.pid,
            tid: label.tid,
            thread_name: label.name.clone(),
            seq: 0,
            ts_ns: ts,
            kind,
            source: Source::Sampled,
            call_id: frame.call_id,
            parent_id: frame.parent_id,
            depth: frame.traced_below,
            function: site.function.clone(),
            module: site.module.clone(),
            file: site.file.clone(),
            line,
            caller: frame.caller.clone(),
            caller_line: None,
            args: None,
            value: None,
            exception: None,
            duration_ns: None,
            duration_max_ns: None,
            count: 1,
        }
    }

    fn emit(&mut self, mut event: Event, sink: &mut dyn EventSink) -> Result<(), SinkError> {
        event.seq = self.next_seq;
        self.next_seq += 1;
        self.counts.events += 1;
        sink.event(&mut event)
    }

    /// Ends recording: every call still running gets an `unfinished` row (at the
    /// thread's last sample, with its duration so far) after the gap rows of its
    /// untraced callees. A thread whose stack last read empty ends its calls there
    /// with `return` rows instead.
    pub fn finish(&mut self, sink: &mut dyn EventSink) -> Result<(), SinkError> {
        let mut keys: Vec<u64> = self.threads.keys().copied().collect();
        keys.sort_unstable();
        for key in keys {
            if let Some(mut thread) = self.threads.remove(&key) {
                if let Some(emptied) = thread.emptied_at {
                    self.end_frames(&mut thread, 0, emptied, EventKind::Return, sink)?;
                    continue;
                }
                let end = thread.last_observed.unwrap_or(Window { t0: 0, t1: 0 });
                self.end_frames(&mut thread, 0, end, EventKind::Unfinished, sink)?;
            }
        }
        Ok(())
    }
}

/// How many frames, from the outermost, of the previous sample (`old`, outermost
/// first) continue in the new one (`stack`, innermost first).
fn continued_frames(old: &[Tracked], stack: &[FrameState]) -> usize {
    let n = stack.len();
    let mut kept = 0;
    while kept < old.len() && kept < n {
        let new = &stack[n - 1 - kept];
        let before = &old[kept];
        if new.addr != before.state.addr || new.code != before.state.code {
            break;
        }
        if kept > 0 {
            let caller_before = &old[kept - 1].state;
            let caller_now = &stack[n - kept];
            // Against the version when the call was first seen, not in the last
            // sample: the version is read after the frames, so a sample can pair the
            // old call's arguments with the version of after the loop moved on.
            let body_moved_on = caller_now.globals_version != 0
                && before.caller_version != 0
                && before.caller_version != caller_now.globals_version
                && before.state.args != new.args;
            if caller_before.instr_offset != caller_now.instr_offset
                || caller_before.slots != caller_now.slots
                || body_moved_on
            {
                break;
            }
        }
        if new.line < before.state.line {
            let explained = before.facts.regions.as_ref().is_none_or(|r| {
                r.may_go_back(before.state.line, new.line, before.facts.first_line)
            });
            if !explained {
                break;
            }
        }
        if kept > 0
            && new.args != before.state.args
            && new.instr_offset <= before.state.instr_offset
            && before
                .facts
                .regions
                .as_ref()
                .is_some_and(|r| !r.spans(before.state.line, new.line, before.facts.first_line))
        {
            // A caller that shows no progress (a C function calling back: `map`,
            // `sorted(key=...)`, a parser's hook; a loop whose variables did not
            // change, `while q: f(q.pop())`) calls again in the same frame memory.
            // Other objects in the argument slots, with the callee no further on and
            // no loop or multi-line statement of its own to take it back, are a new
            // call; a function that reassigns its argument moves on, or loops.
            break;
        }
        kept += 1;
    }
    kept
}

/// The line ranges of a source file within which one call can move back to an
/// earlier line: loops (`for`, `while`, `async for`, with their `else`), `with` and
/// `try` statements (their exit and cleanup code runs under the header's line, and
/// 3.8's `finally` blocks are subroutines), decorated definitions (decorators apply
/// after the `def` line), and every statement that spans several lines (a call's
/// instruction runs under its first line after its arguments' lines).
///
/// Built from the text alone, with a small tokenizer that knows strings, comments,
/// brackets and line continuations, so it does not depend on the Python version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceRegions {
    /// Inclusive `(first, last)` line ranges.
    regions: Vec<(i32, i32)>,
    /// The text of each physical line, to check that the file still matches the code.
    lines: Vec<String>,
}

/// One logical line of Python source.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogicalLine {
    start: i32,
    end: i32,
    indent: usize,
    /// The first two words (`async`, `for`; `@` for a decorator).
    words: [String; 2],
}

impl SourceRegions {
    /// The regions of a file's text.
    pub fn parse(source: &str) -> SourceRegions {
        let logical = logical_lines(source);
        let mut regions = Vec::new();
        for (i, line) in logical.iter().enumerate() {
            if line.end > line.start {
                regions.push((line.start, line.end));
            }
            let first = line.words[0].as_str();
            let keyword = if first == "async" {
                line.words[1].as_str()
            } else {
                first
            };
            let clauses: &[&str] = match keyword {
                "for" | "while" => &["else"],
                "try" => &["except", "else", "finally"],
                "with" => &[],
                "@" => {
                    let starts_run = i == 0
                        || logical[i - 1].words[0] != "@"
                        || logical[i - 1].indent != line.indent;
                    let definition = logical[i..]
                        .iter()
                        .find(|l| l.indent == line.indent && l.words[0] != "@");
                    if let (true, Some(def)) = (starts_run, definition) {
                        regions.push((line.start, def.end));
                    }
                    continue;
                }
                _ => continue,
            };
            let mut end = line.end;
            for next in &logical[i + 1..] {
                let clause =
                    next.indent == line.indent && clauses.contains(&next.words[0].as_str());
                if next.indent > line.indent || clause {
                    end = next.end;
                } else {
                    break;
                }
            }
            regions.push((line.start, end));
        }
        SourceRegions {
            regions,
            lines: source.lines().map(str::to_string).collect(),
        }
    }

    /// Whether one call of code starting at `first_line`, having been at line `from`,
    /// can next be at line `to`: always when `to` is not earlier, else only within a
    /// region that starts inside the code (at or after `first_line`).
    pub fn may_go_back(&self, from: i32, to: i32, first_line: i32) -> bool {
        to >= from || self.spans(from, to, first_line)
    }

    /// Whether a region that starts inside the code holds both line `from` and the
    /// earlier or same line `to`: a loop, `with`, `try` or multi-line statement one
    /// call can stay in or go round.
    pub fn spans(&self, from: i32, to: i32, first_line: i32) -> bool {
        self.regions
            .iter()
            .any(|&(start, end)| start >= first_line && start <= to && from <= end)
    }

    /// Whether line `first_line` of the text can start the code object `name`: the
    /// file may have been edited since the code was compiled. Functions and classes
    /// start at their `def`/`class` line or at a decorator; other code (`<module>`,
    /// `<lambda>`, comprehensions) is not checked.
    pub fn starts_code(&self, first_line: i32, name: &str) -> bool {
        if name.starts_with('<') {
            return true;
        }
        let Some(text) = usize::try_from(first_line - 1)
            .ok()
            .and_then(|i| self.lines.get(i))
        else {
            return false;
        };
        let text = text.trim_start();
        text.starts_with('@')
            || text.contains(&format!("def {name}"))
            || text.contains(&format!("class {name}"))
    }
}

/// Splits Python source into logical lines (a statement with its continuation
/// lines), skipping blank and comment-only lines.
fn logical_lines(source: &str) -> Vec<LogicalLine> {
    let chars: Vec<char> = source.trim_start_matches('\u{feff}').chars().collect();
    let mut out = Vec::new();
    let mut line: i32 = 1;
    let mut depth: usize = 0;
    let mut current: Option<LogicalLine> = None;
    let mut indent: usize = 0;
    let mut at_line_start = true;
    let mut words = WordReader::default();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if at_line_start && current.is_none() {
            match c {
                ' ' => indent += 1,
                '\t' => indent += 8 - indent % 8,
                '\x0c' | '\r' => {}
                _ => at_line_start = false,
            }
            if at_line_start {
                i += 1;
                continue;
            }
        }
        match c {
            '\n' => {
                if depth == 0 {
                    if let Some(mut l) = current.take() {
                        l.end = line;
                        out.push(l);
                    }
                    words = WordReader::default();
                }
                line += 1;
                indent = 0;
                at_line_start = true;
                i += 1;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '\\' if chars.get(i + 1) == Some(&'\n') => {
                line += 1;
                i += 2;
            }
            '\\' if chars.get(i + 1) == Some(&'\r') && chars.get(i + 2) == Some(&'\n') => {
                line += 1;
                i += 3;
            }
            '\'' | '"' => {
                current.get_or_insert_with(|| new_logical(line, indent));
                words.stop();
                let triple = chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c);
                i += if triple { 3 } else { 1 };
                while i < chars.len() {
                    let s = chars[i];
                    if s == '\\' {
                        if chars.get(i + 1) == Some(&'\n') {
                            line += 1;
                        }
                        i += 2;
                        continue;
                    }
                    if s == '\n' {
                        if !triple {
                            // An unterminated string ends at the line's end.
                            break;
                        }
                        line += 1;
                    }
                    if s == c
                        && (!triple
                            || (chars.get(i + 1) == Some(&c) && chars.get(i + 2) == Some(&c)))
                    {
                        i += if triple { 3 } else { 1 };
                        break;
                    }
                    i += 1;
                }
            }
            _ => {
                let l = current.get_or_insert_with(|| new_logical(line, indent));
                match c {
                    '(' | '[' | '{' => depth += 1,
                    ')' | ']' | '}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                words.push(c, &mut l.words);
                i += 1;
            }
        }
    }
    if let Some(mut l) = current.take() {
        l.end = line;
        out.push(l);
    }
    out
}

/// Collects the first two words of a logical line (`@` counts as a word at its
/// start); punctuation or a string ends the collection.
#[derive(Debug, Default)]
struct WordReader {
    index: usize,
    in_word: bool,
}

impl WordReader {
    fn push(&mut self, c: char, words: &mut [String; 2]) {
        if self.index >= 2 {
            return;
        }
        if c.is_alphanumeric() || c == '_' {
            words[self.index].push(c);
            self.in_word = true;
        } else if c == '@' && self.index == 0 && !self.in_word {
            words[0].push('@');
            self.index = 1;
        } else if c.is_whitespace() {
            if self.in_word {
                self.index += 1;
                self.in_word = false;
            }
        } else {
            self.stop();
        }
    }

    fn stop(&mut self) {
        self.index = 2;
        self.in_word = false;
    }
}

fn new_logical(line: i32, indent: usize) -> LogicalLine {
    LogicalLine {
        start: line,
        end: line,
        indent,
        words: [String::new(), String::new()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of a synthetic stack: `(addr, code, offset, line, slots)`.
    fn f(addr: u64, code: u64, offset: i64, line: i32, slots: u64) -> FrameState {
        FrameState {
            addr,
            code,
            instr_offset: offset,
            line,
            slots,
            args: 0,
            globals_version: 0,
        }
    }

    /// Answers from tables: code address → (function, traced, regions).
    struct Table {
        codes: HashMap<u64, (&'static str, bool)>,
        regions: Option<Arc<SourceRegions>>,
        stack: Vec<FrameState>,
        args_asked: Vec<u64>,
    }

    impl Table {
        fn new(codes: &[(u64, &'static str, bool)]) -> Table {
            Table {
                codes: codes.iter().map(|&(a, n, t)| (a, (n, t))).collect(),
                regions: None,
                stack: Vec::new(),
                args_asked: Vec::new(),
            }
        }
    }

    impl FrameInfo for Table {
        fn facts(&mut self, index: usize) -> CodeFacts {
            let code = self.stack[index].code;
            CodeFacts {
                traced: self.codes[&code].1,
                first_line: 1,
                regions: self.regions.clone(),
            }
        }
        fn site(&mut self, index: usize) -> Arc<CallSite> {
            let code = self.stack[index].code;
            let module = if self.codes[&code].1 { "app" } else { "json" };
            Arc::new(CallSite::new(
                self.codes[&code].0.into(),
                module.into(),
                "app.py".into(),
                code as i32,
            ))
        }
        fn args(&mut self, index: usize) -> Option<String> {
            self.args_asked.push(self.stack[index].code);
            Some(format!("{{\"at\": \"{}\"}}", self.stack[index].addr))
        }
    }

    struct Run {
        tracker: CallTracker,
        info: Table,
        events: Vec<Event>,
        t: i64,
        /// How long the next reads take.
        read_ns: i64,
    }

    impl Run {
        fn new(info: Table) -> Run {
            Run {
                tracker: CallTracker::new(42),
                info,
                events: Vec::new(),
                t: 0,
                read_ns: 10,
            }
        }

        /// One sample of thread 1 (innermost first), 1000 ns after the previous one,
        /// each read taking `read_ns` (10 ns unless a test says otherwise).
        fn sample(&mut self, stack: &[FrameState]) {
            self.sample_threads(&[(1, stack)]);
        }

        fn sample_threads(&mut self, threads: &[(u64, &[FrameState])]) {
            self.t += 1000;
            let keys: Vec<u64> = threads.iter().map(|(k, _)| *k).collect();
            self.tracker
                .threads_listed(self.t, &keys, &mut self.events)
                .expect("vec sink");
            for (key, stack) in threads {
                self.info.stack = stack.to_vec();
                let label = ThreadLabel {
                    key: *key,
                    tid: 100 + *key as i64,
                    name: Some("MainThread".into()),
                };
                let window = Window {
                    t0: self.t,
                    t1: self.t + self.read_ns,
                };
                self.tracker
                    .observe(&label, window, stack, &mut self.info, &mut self.events)
                    .expect("vec sink");
            }
        }

        fn finish(&mut self) {
            self.tracker.finish(&mut self.events).expect("vec sink");
        }

        fn of(&self, kind: EventKind) -> Vec<&Event> {
            self.events.iter().filter(|e| e.kind == kind).collect()
        }

        fn names(&self, kind: EventKind) -> Vec<String> {
            self.of(kind)
                .iter()
                .map(|e| e.function.to_string())
                .collect()
        }
    }

    const MAIN: u64 = 0x100;
    const WORK: u64 = 0x200;
    const LEAF: u64 = 0x300;
    const DUMPS: u64 = 0x400;
    const ENCODE: u64 = 0x500;

    fn codes() -> Table {
        Table::new(&[
            (MAIN, "main", true),
            (WORK, "work", true),
            (LEAF, "leaf", true),
            (DUMPS, "dumps", false),
            (ENCODE, "encode", false),
        ])
    }

    /// A call seen inside another spans, from its call row's `ts` for its
    /// `duration_ns`, a time inside the other's, however long the reads that first
    /// saw each took (exports draw calls so, and clipped a child that outlasted its
    /// parent by the difference).
    #[test]
    fn a_child_s_span_lies_inside_its_parent_s() {
        let mut run = Run::new(codes());
        let main = f(0xa0, MAIN, 10, 5, 1);
        run.read_ns = 400;
        run.sample(&[f(0xb0, WORK, 4, 12, 7), main]);
        run.read_ns = 5;
        run.sample(&[f(0xc0, LEAF, 2, 21, 9), f(0xb0, WORK, 8, 13, 7), main]);
        run.sample(&[f(0xc0, LEAF, 6, 22, 9), f(0xb0, WORK, 8, 13, 7), main]);
        // A call seen by one read only, the last read of its parent.
        run.read_ns = 300;
        run.sample(&[f(0xd0, LEAF, 2, 21, 9), f(0xb0, WORK, 8, 13, 7), main]);
        run.sample(&[main]);
        run.finish();
        let spans = |name: &str| -> Vec<(i64, i64)> {
            run.of(EventKind::Call)
                .into_iter()
                .filter(|e| &*e.function == name)
                .map(|call| {
                    let end = run
                        .events
                        .iter()
                        .find(|e| e.call_id == call.call_id && e.kind != EventKind::Call)
                        .expect("an end row");
                    (
                        call.ts_ns,
                        call.ts_ns + end.duration_ns.expect("a duration"),
                    )
                })
                .collect()
        };
        let work = spans("work")[0];
        for leaf in spans("leaf") {
            assert!(
                work.0 <= leaf.0 && leaf.1 <= work.1,
                "leaf {leaf:?} outside work {work:?}"
            );
        }
        assert_eq!(spans("leaf").len(), 2);
    }

    #[test]
    fn calls_and_returns_with_bounds_parents_and_depths() {
        let mut run = Run::new(codes());
        let main = f(0xa0, MAIN, 10, 5, 1);
        run.sample(&[main]); // t=1000
        run.sample(&[f(0xb0, WORK, 4, 12, 7), main]); // t=2000: work starts
        run.sample(&[f(0xc0, LEAF, 2, 21, 9), f(0xb0, WORK, 8, 13, 7), main]); // 3000
        run.sample(&[f(0xc0, LEAF, 6, 22, 9), f(0xb0, WORK, 8, 13, 7), main]); // 4000
        run.sample(&[f(0xb0, WORK, 12, 14, 8), main]); // 5000: leaf returned
        run.sample(&[main]); // 6000: work returned
        run.finish();

        assert_eq!(run.names(EventKind::Call), ["main", "work", "leaf"]);
        let calls = run.of(EventKind::Call);
        let (main_call, work_call, leaf_call) = (calls[0], calls[1], calls[2]);
        assert_eq!(
            (
                main_call.depth,
                main_call.parent_id,
                main_call.caller.clone()
            ),
            (0, None, None)
        );
        assert_eq!(work_call.depth, 1);
        assert_eq!(work_call.parent_id, Some(main_call.call_id));
        assert_eq!(work_call.caller.as_deref(), Some("app.main"));
        assert_eq!(work_call.caller_line, Some(5));
        assert_eq!(
            work_call.line, WORK as i32,
            "call rows carry the first line"
        );
        assert_eq!(work_call.ts_ns, 2000);
        assert_eq!(leaf_call.depth, 2);
        assert_eq!(leaf_call.parent_id, Some(work_call.call_id));
        assert_eq!(leaf_call.caller_line, Some(13));
        assert_eq!(leaf_call.args.as_deref(), Some("{\"at\": \"192\"}"));

        let returns = run.of(EventKind::Return);
        assert_eq!(returns.len(), 2);
        let (leaf_ret, work_ret) = (returns[0], returns[1]);
        assert_eq!(leaf_ret.call_id, leaf_call.call_id);
        assert_eq!(
            leaf_ret.ts_ns, 5000,
            "a return is stamped with the first sample without the call"
        );
        assert_eq!(leaf_ret.line, 22, "the last line seen");
        // Seen by the reads at 3000 and 4000 (of 10 ns): at least 4000 - 3000, at
        // most 5010 - 2000.
        assert_eq!(leaf_ret.duration_ns, Some(1000));
        assert_eq!(leaf_ret.duration_max_ns, Some(3010));
        assert_eq!(work_ret.duration_ns, Some(5000 - 2000));
        assert_eq!(work_ret.duration_max_ns, Some(6010 - 1000));
        assert_eq!(work_ret.caller.as_deref(), Some("app.main"));

        let unfinished = run.of(EventKind::Unfinished);
        assert_eq!(unfinished.len(), 1);
        assert_eq!(unfinished[0].call_id, main_call.call_id);
        assert_eq!(unfinished[0].duration_ns, Some(6000 - 1000));
        assert_eq!(
            unfinished[0].duration_max_ns, None,
            "running before the first sample"
        );

        let seqs: Vec<u64> = run.events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=run.events.len() as u64).collect::<Vec<_>>());
        assert!(run
            .events
            .iter()
            .all(|e| e.source == Source::Sampled && e.tid == 101));
        assert_eq!(run.tracker.counts().calls, 3);
        assert_eq!(run.tracker.counts().returns, 2);
        assert_eq!(run.tracker.counts().unfinished, 1);
        assert_eq!(run.tracker.counts().events, run.events.len() as u64);
    }

    #[test]
    fn same_slot_again_is_a_new_call_when_the_caller_ran() {
        let mut run = Run::new(codes());
        // The caller's offset moved: work(30); work(40) from two lines.
        run.sample(&[f(0xb0, WORK, 20, 13, 5), f(0xa0, MAIN, 10, 5, 1)]);
        run.sample(&[f(0xb0, WORK, 30, 13, 5), f(0xa0, MAIN, 14, 6, 1)]);
        // The caller's loop variable changed, same call instruction.
        run.sample(&[f(0xb0, WORK, 30, 13, 5), f(0xa0, MAIN, 14, 6, 2)]);
        // Nothing changed below: the same call goes on, even though its own offset
        // moved back (a loop).
        run.sample(&[f(0xb0, WORK, 8, 13, 5), f(0xa0, MAIN, 14, 6, 2)]);
        run.finish();
        assert_eq!(run.names(EventKind::Call), ["main", "work", "work", "work"]);
        assert_eq!(run.of(EventKind::Return).len(), 2);
    }

    #[test]
    fn one_empty_read_ends_no_calls_two_end_them_at_the_first() {
        let mut run = Run::new(codes());
        let stack = [f(0xb0, WORK, 20, 13, 5), f(0xa0, MAIN, 10, 5, 1)];
        run.sample(&stack);
        // Read empty once (C code calling into Python), then as before: one call each.
        run.sample(&[]);
        run.sample(&stack);
        assert_eq!(run.names(EventKind::Call), ["main", "work"]);
        assert!(run.of(EventKind::Return).is_empty());
        // Empty twice: both calls returned, by the first empty read (t = 4000).
        run.sample(&[]);
        run.sample(&[]);
        run.sample(&stack);
        assert_eq!(run.names(EventKind::Call), ["main", "work", "main", "work"]);
        let returns = run.of(EventKind::Return);
        assert_eq!(returns.len(), 2);
        assert!(returns.iter().all(|r| r.ts_ns == 4000), "{returns:?}");
        // Recording ends after one empty read: the calls returned there.
        run.sample(&[]);
        run.finish();
        assert_eq!(run.of(EventKind::Return).len(), 4);
        assert!(run.of(EventKind::Unfinished).is_empty());
    }

    #[test]
    fn a_stack_needs_no_second_read_only_when_nothing_below_the_innermost_moved() {
        let mut run = Run::new(codes());
        assert!(
            run.tracker.same_below_innermost(1, &[]),
            "unknown thread, no frames"
        );
        let first = [f(0xb0, WORK, 20, 13, 5), f(0xa0, MAIN, 10, 5, 1)];
        assert!(
            !run.tracker.same_below_innermost(1, &first),
            "unknown thread"
        );
        run.sample(&first);
        // The innermost frame ran on: nothing starts or ends.
        let ran_on = [f(0xb0, WORK, 40, 14, 9), f(0xa0, MAIN, 10, 5, 1)];
        assert!(run.tracker.same_below_innermost(1, &ran_on));
        let caller_moved = [f(0xb0, WORK, 20, 13, 5), f(0xa0, MAIN, 14, 6, 1)];
        assert!(!run.tracker.same_below_innermost(1, &caller_moved));
        let caller_assigned = [f(0xb0, WORK, 20, 13, 5), f(0xa0, MAIN, 10, 5, 2)];
        assert!(!run.tracker.same_below_innermost(1, &caller_assigned));
        let other_callee = [f(0xc0, WORK, 20, 13, 5), f(0xa0, MAIN, 10, 5, 1)];
        assert!(!run.tracker.same_below_innermost(1, &other_callee));
        let deeper = [
            f(0xc0, LEAF, 4, 2, 0),
            f(0xb0, WORK, 20, 13, 5),
            f(0xa0, MAIN, 10, 5, 1),
        ];
        assert!(!run.tracker.same_below_innermost(1, &deeper));
        assert!(
            !run.tracker.same_below_innermost(1, &first[1..]),
            "returned"
        );
    }

    #[test]
    fn moving_back_outside_any_loop_is_a_new_call() {
        let source = "\
def work(n):
    total = 0
    for i in range(n):
        total += i
    return total

def main():
    while True:
        work(10)
";
        let regions = Arc::new(SourceRegions::parse(source));
        let mut info = codes();
        info.regions = Some(regions);
        let mut run = Run::new(info);
        let main = f(0xa0, MAIN, 10, 9, 1);
        run.sample(&[f(0xb0, WORK, 40, 4, 5), main]);
        run.sample(&[f(0xb0, WORK, 20, 3, 6), main]); // back to the loop header: a loop
        run.sample(&[f(0xb0, WORK, 50, 5, 6), main]); // the return line
        run.sample(&[f(0xb0, WORK, 10, 2, 6), main]); // line 2, before the loop: new call
        run.sample(&[f(0xb0, WORK, 10, 2, 6), f(0xa0, MAIN, 10, 9, 1)]);
        run.finish();
        assert_eq!(run.names(EventKind::Call), ["main", "work", "work"]);
    }

    #[test]
    fn a_module_body_calling_again_with_other_arguments_makes_a_new_call() {
        // `for job in jobs: work(job)` at a script's top level: the body's variable is
        // in its globals (the dict's version moves), the call's argument is another.
        let module = |version| FrameState {
            globals_version: version,
            ..f(0xa0, MAIN, 10, 5, 1)
        };
        let work = |args| FrameState {
            args,
            ..f(0xb0, WORK, 8, 13, 7)
        };
        let mut run = Run::new(codes());
        run.sample(&[work(1), module(100)]);
        // The same call.
        run.sample(&[work(1), module(100)]);
        // The next job.
        run.sample(&[work(2), module(356)]);
        // The body's globals changed (work bound a global name) but the arguments
        // are the same: the same call.
        run.sample(&[work(2), module(612)]);
        run.finish();
        assert_eq!(run.names(EventKind::Call), ["main", "work", "work"]);

        // A function's frame has no globals version: another argument alone (a
        // parameter assigned while it runs) is the same call.
        let mut run = Run::new(codes());
        let main = f(0xa0, MAIN, 10, 5, 1);
        run.sample(&[work(1), main]);
        run.sample(&[work(2), main]);
        run.finish();
        assert_eq!(run.names(EventKind::Call), ["main", "work"]);
    }

    #[test]
    fn threads_that_disappear_end_their_calls_and_new_threads_have_bounds() {
        let mut run = Run::new(codes());
        let main = f(0xa0, MAIN, 10, 5, 1);
        run.sample_threads(&[(1, &[main])]); // 1000
        run.sample_threads(&[(1, &[main]), (2, &[f(0xd0, WORK, 2, 12, 1)])]); // 2000
        run.sample_threads(&[(1, &[main])]); // 3000: thread 2 gone
        run.finish();
        let returns = run.of(EventKind::Return);
        assert_eq!(returns.len(), 1);
        assert_eq!(returns[0].function.as_ref(), "work");
        assert_eq!(returns[0].tid, 102);
        assert_eq!(returns[0].ts_ns, 3000);
        assert_eq!(returns[0].duration_ns, Some(0), "seen once");
        assert_eq!(
            returns[0].duration_max_ns,
            Some(3000 - 1000),
            "the thread did not exist at the list before"
        );
    }

    #[test]
    fn untraced_callees_become_gap_rows_counted_by_call() {
        let mut run = Run::new(codes());
        let main = f(0xa0, MAIN, 10, 5, 1);
        let work = |slots| f(0xb0, WORK, 8, 13, slots);
        run.sample(&[main]);
        run.sample(&[
            f(0xe0, ENCODE, 4, 200, 1),
            f(0xc0, DUMPS, 2, 100, 1),
            work(1),
            main,
        ]);
        run.sample(&[
            f(0xe0, ENCODE, 6, 201, 1),
            f(0xc0, DUMPS, 2, 100, 1),
            work(1),
            main,
        ]);
        run.sample(&[f(0xc0, DUMPS, 2, 100, 1), work(2), main]); // work ran: a second dumps
                                                                 // A traced callback under untraced code hangs under the nearest traced frame.
        run.sample(&[
            f(0xf0, LEAF, 2, 30, 1),
            f(0xc0, DUMPS, 2, 100, 1),
            work(2),
            main,
        ]);
        run.sample(&[work(3), main]);
        run.sample(&[main]);
        run.finish();
        assert_eq!(run.names(EventKind::Call), ["main", "work", "leaf"]);
        let leaf = run.of(EventKind::Call)[2];
        let work_call = run.of(EventKind::Call)[1];
        assert_eq!(leaf.parent_id, Some(work_call.call_id));
        assert_eq!(leaf.depth, 2);
        assert_eq!(leaf.caller.as_deref(), Some("app.work"));
        let gaps = run.of(EventKind::Gap);
        assert_eq!(
            gaps.len(),
            1,
            "encode is under dumps, not directly under work"
        );
        let gap = gaps[0];
        assert_eq!(
            (gap.function.as_ref(), gap.module.as_ref()),
            ("dumps", "json")
        );
        assert_eq!(gap.count, 2);
        assert_eq!(gap.parent_id, Some(work_call.call_id));
        assert_eq!(gap.caller.as_deref(), Some("app.work"));
        assert_eq!(gap.depth, 2);
        assert_eq!(gap.ts_ns, 2000);
        // First dumps seen at 2000 and 3000, the second at 4000 and 5000.
        assert_eq!(gap.duration_ns, Some(1000 + 1000));
        assert_eq!(gap.duration_max_ns, Some((4010 - 1000) + (6010 - 3000)));
        let work_return = run
            .events
            .iter()
            .position(|e| e.kind == EventKind::Return && e.function.as_ref() == "work");
        let gap_at = run.events.iter().position(|e| e.kind == EventKind::Gap);
        assert!(
            gap_at < work_return,
            "the gap row comes when its caller ends"
        );
        assert_eq!(
            run.info.args_asked,
            [MAIN, WORK, LEAF],
            "arguments of traced calls only"
        );
        assert_eq!(run.tracker.counts().gaps, 1);
    }

    #[test]
    fn gaps_of_calls_running_at_the_end_are_written_with_them() {
        let mut run = Run::new(codes());
        run.sample(&[f(0xc0, DUMPS, 2, 100, 1), f(0xa0, MAIN, 10, 5, 1)]);
        run.finish();
        let kinds: Vec<EventKind> = run.events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [EventKind::Call, EventKind::Gap, EventKind::Unfinished]
        );
    }

    #[test]
    fn source_regions_cover_loops_blocks_and_continued_statements() {
        let source = r#"import os

@decorator(
    arg=1)
def f(a, b):  # a comment with for and while
    x = 1
    for i in range(3):
        x += i
    else:
        x = 0
    s = """a string
with for inside
"""
    while x:
        x -= 1
    with open(a) as fh:
        fh.read()
    try:
        g(a,
          b)
    except ValueError:
        pass
    finally:
        x = 2
    if x:
        y = 3
    async with lock:
        pass
    return x \
        + 1
"#;
        let r = SourceRegions::parse(source);
        let has = |start, end| r.regions.contains(&(start, end));
        assert!(has(3, 5), "decorated definition: {:?}", r.regions);
        assert!(has(3, 4), "decorator spanning lines");
        assert!(has(7, 10), "for with its else");
        assert!(has(11, 13), "triple-quoted string");
        assert!(has(14, 15), "while");
        assert!(has(16, 17), "with");
        assert!(has(18, 24), "try with except and finally");
        assert!(has(19, 20), "call over two lines");
        assert!(has(27, 28), "async with");
        assert!(has(29, 30), "backslash continuation");
        assert!(
            !r.regions.iter().any(|&(s, _)| s == 25),
            "an if is not a region"
        );
        assert!(r.may_go_back(8, 7, 5));
        assert!(!r.may_go_back(8, 6, 5), "line 6 is before the loop");
        assert!(!r.may_go_back(26, 25, 5));
        assert!(r.may_go_back(6, 9, 5), "forwards is always possible");
        assert!(
            !r.may_go_back(4, 3, 5),
            "regions must start inside the code"
        );
        assert!(r.starts_code(3, "f"), "a decorator line starts a function");
        assert!(r.starts_code(5, "f"));
        assert!(!r.starts_code(6, "f"));
        assert!(r.starts_code(1, "<module>"));
        assert!(!r.starts_code(99, "f"));
    }
}
