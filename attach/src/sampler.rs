//! The sampler: reads every thread's stack at a fixed rate without stopping the
//! target, and turns the samples into events.
//!
//! [`Sampler::run`] takes a sample every `1 / rate_hz` seconds on an absolute
//! schedule (a slow sample does not shift the ones after it; slots that could not be
//! taken on time are skipped and counted in [`SamplerStats::late_samples`]). Each
//! sample lists the threads ([`Walker::threads`]), reads each thread's stack
//! ([`Walker::sample_stack`]) and hands it to the [`CallTracker`], which writes
//! `call`, `return` and `gap` rows into the [`EventSink`]; [`Sampler::finish`] writes
//! the `unfinished` rows of calls still running. Sampled mode never writes
//! `exception` rows (see [`crate::calls`]).
//!
//! The target keeps running while it is read, so a read can be inconsistent (a frame
//! freed under the reader): such a read is counted in
//! [`SamplerStats::sample_errors`] and that thread's calls simply wait for the next
//! sample. The target exiting ends [`Sampler::run`] with
//! [`StopReason::TargetExited`].
//!
//! What a new frame costs (once per call, not per sample): its code object's facts
//! (module, whether it is traced, the loop regions of its source file) are cached
//! per code object, names per code object and class, and its arguments' reprs are
//! read when the call is first seen. Thread names are read as soon as a new thread
//! appears, again every [`THREAD_NAMES_RETRY`] while it has none, and every
//! [`THREAD_NAMES_REFRESH`]; the main thread is `MainThread` until `threading` says
//! otherwise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::calls::{
    CallSite, CallTracker, CodeFacts, FrameInfo, FrameState, SourceRegions, ThreadLabel, Window,
};
use crate::error::Error;
use crate::event::{EventSink, SinkError};
use crate::filter::{FilterError, ModuleFilter, ProgramScope};
use crate::names::Names;
use crate::process::{ProcStat, PythonProcess};
use crate::repr::{repr_named_live, ReprOptions, TypeCache};
use crate::snapshot::{take_snapshot, ProcessSnapshot, SnapshotOptions};
use crate::walker::{CodeInfo, RawThread, SampledFrame, Walker};

/// The highest sampling rate accepted.
pub const MAX_RATE_HZ: u32 = 100_000;
/// How often thread names are read again.
pub const THREAD_NAMES_REFRESH: Duration = Duration::from_secs(1);
/// How soon thread names are read again when a thread without a name appears.
pub const THREAD_NAMES_RETRY: Duration = Duration::from_millis(50);
/// Source files larger than this get no loop regions.
const MAX_SOURCE_BYTES: u64 = 8 << 20;
/// The longest sleep between checks of the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(20);

/// How to sample (the options `tracer record` and `tracer attach` share).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplerOptions {
    /// Samples per second (DESIGN.md default 1000).
    pub rate_hz: u32,
    /// `--include` module globs, added to the program's own code.
    pub include: Vec<String>,
    /// `--exclude` module globs, which win over everything.
    pub exclude: Vec<String>,
    /// `--no-args`: record no argument reprs.
    pub no_args: bool,
    /// How argument reprs are cut and redacted.
    pub repr: ReprOptions,
}

impl Default for SamplerOptions {
    fn default() -> SamplerOptions {
        SamplerOptions {
            rate_hz: 1000,
            include: Vec::new(),
            exclude: Vec::new(),
            no_args: false,
            repr: ReprOptions::default(),
        }
    }
}

/// How often the sink is given a chance to write out what it buffered (the trace
/// writer completes a segment every second).
const SINK_TICK: Duration = Duration::from_millis(100);

/// Why [`Sampler::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The target process exited.
    TargetExited,
    /// The stop flag was set (Ctrl-C, a signal, the caller).
    Stopped,
    /// The deadline passed (`--duration`, `--timeout`).
    DeadlineReached,
}

/// Figures of a sampling run, for the run report and the trace's metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SamplerStats {
    /// Sampling ticks taken.
    pub samples: u64,
    /// Reads that failed or did not make sense (a thread list or one thread's stack).
    pub sample_errors: u64,
    /// Ticks that could not be taken on time and were skipped.
    pub late_samples: u64,
    /// The longest time between the starts of two consecutive samples: how long the
    /// sampler was held off at worst (a machine busy with other work). Calls shorter
    /// than this may have gone unseen.
    pub max_interval_ns: u64,
    /// Time spent taking samples (reading and rebuilding calls), without the waits
    /// between them: the sampler's work, apart from the cost of waking up.
    pub sampling_ns: u64,
    /// Rows written.
    pub events: u64,
    pub calls: u64,
    pub returns: u64,
    pub unfinished: u64,
    pub gaps: u64,
}

/// What can stop the sampler with an error.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    #[error(transparent)]
    Read(#[from] Error),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("cannot write events: {0}")]
    Sink(SinkError),
    #[error("the sampling rate must be between 1 and {MAX_RATE_HZ} Hz, not {0}")]
    Rate(u32),
}

/// Reads a process's stacks at a fixed rate and writes the calls they show.
pub struct Sampler {
    walker: Walker,
    names: Names,
    filter: ModuleFilter,
    tracker: CallTracker,
    types: TypeCache,
    options: SamplerOptions,
    clock: Clock,
    samples: u64,
    sample_errors: u64,
    late_samples: u64,
    max_interval_ns: u64,
    sampling_ns: u64,
    /// Labels of the threads, by thread state address.
    labels: HashMap<u64, ThreadLabel>,
    thread_names: HashMap<u64, Arc<str>>,
    /// The name of the main thread until `threading` gives one.
    main_thread_name: Arc<str>,
    /// Each thread (by its key, see [`thread_key`]): its ident, when it was first
    /// listed, and the sample that last listed it. Keyed by more than the ident: a
    /// thread that starts as another ends often gets the ended one's ident, and has
    /// to be named anew.
    thread_appeared: HashMap<u64, (u64, Instant, u64)>,
    names_read_at: Option<Instant>,
    frames: Vec<SampledFrame>,
    states: Vec<FrameState>,
    /// Arguments read for the new frames of the thread being observed.
    args: Vec<Option<String>>,
    keys: Vec<u64>,
    codes: CodeCaches,
    /// The program the target ran when sampling began ([`program_image`]): a read
    /// that fails after an exec reads addresses of a program no longer there.
    image: Option<(u64, u64)>,
}

/// A call site's cache key: code address, globals address, and the address of the
/// function name (3.8–3.10 name methods after the class of `self`).
type SiteKey = (u64, u64, usize);

/// What the sampler keeps per code object (checked against the walker's current
/// [`CodeInfo`] for the address, which changes when the address is reused).
#[derive(Debug, Default)]
struct CodeCaches {
    /// `(code, globals)` → facts.
    facts: HashMap<(u64, u64), (Arc<CodeInfo>, CodeFacts)>,
    /// `(code, globals, function name)` → site.
    sites: HashMap<SiteKey, (Arc<CodeInfo>, Arc<CallSite>)>,
    /// File name → its loop regions (`None`: unreadable, or not the compiled text).
    sources: HashMap<Arc<str>, Option<Arc<SourceRegions>>>,
}

impl Sampler {
    /// A sampler of `process` (found with [`PythonProcess::open`]).
    pub fn new(process: PythonProcess, options: SamplerOptions) -> Result<Sampler, SamplerError> {
        if options.rate_hz == 0 || options.rate_hz > MAX_RATE_HZ {
            return Err(SamplerError::Rate(options.rate_hz));
        }
        let pid = process.pid;
        let image = ProcStat::read(process.mem.pid()).and_then(|stat| program_image(&stat));
        let walker = Walker::new(process);
        let scope = ProgramScope::of_process(&walker)?;
        let filter = ModuleFilter::new(&options.include, &options.exclude, scope)?;
        Ok(Sampler {
            walker,
            names: Names::new(),
            filter,
            tracker: CallTracker::new(pid),
            types: TypeCache::new(),
            options,
            clock: Clock::new(),
            samples: 0,
            sample_errors: 0,
            late_samples: 0,
            max_interval_ns: 0,
            sampling_ns: 0,
            labels: HashMap::new(),
            thread_names: HashMap::new(),
            main_thread_name: Arc::from("MainThread"),
            thread_appeared: HashMap::new(),
            names_read_at: None,
            frames: Vec::new(),
            states: Vec::new(),
            args: Vec::new(),
            keys: Vec::new(),
            codes: CodeCaches::default(),
            image,
        })
    }

    /// The process being sampled.
    pub fn process(&self) -> &PythonProcess {
        &self.walker.process
    }

    /// The figures so far.
    pub fn stats(&self) -> SamplerStats {
        let counts = self.tracker.counts();
        SamplerStats {
            samples: self.samples,
            sample_errors: self.sample_errors,
            late_samples: self.late_samples,
            max_interval_ns: self.max_interval_ns,
            sampling_ns: self.sampling_ns,
            events: counts.events,
            calls: counts.calls,
            returns: counts.returns,
            unfinished: counts.unfinished,
            gaps: counts.gaps,
        }
    }

    /// Samples until `stop` is set, `deadline` passes or the target exits, writing
    /// events into `sink`. Call [`Sampler::finish`] afterwards for the calls still
    /// running.
    pub fn run(
        &mut self,
        sink: &mut dyn EventSink,
        stop: &AtomicBool,
        deadline: Option<Instant>,
    ) -> Result<StopReason, SamplerError> {
        reduce_timer_slack();
        let period = 1_000_000_000 / i64::from(self.options.rate_hz);
        let start = monotonic_ns();
        let end =
            deadline.map(|d| start + d.saturating_duration_since(Instant::now()).as_nanos() as i64);
        let mut tick: i64 = 0;
        let mut last_sink_tick = start;
        let mut last_began: Option<i64> = None;
        loop {
            let scheduled = start + tick * period;
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(StopReason::Stopped);
                }
                let now = monotonic_ns();
                if end.is_some_and(|end| now >= end || scheduled >= end) {
                    return Ok(StopReason::DeadlineReached);
                }
                if now >= scheduled {
                    break;
                }
                sleep_until(scheduled.min(now + STOP_CHECK.as_nanos() as i64));
            }
            let slot = (monotonic_ns() - start) / period;
            if slot > tick {
                self.late_samples += (slot - tick) as u64;
                tick = slot;
            }
            let began = monotonic_ns();
            if let Some(previous) = last_began {
                self.max_interval_ns = self.max_interval_ns.max((began - previous) as u64);
            }
            last_began = Some(began);
            let sampled = self.sample(sink);
            self.sampling_ns += (monotonic_ns() - began) as u64;
            if let Some(reason) = sampled? {
                if reason == StopReason::TargetExited {
                    // Every call seen ended with the process: they are returns (by
                    // the time the exit was noticed), not calls still running.
                    let noticed = self.clock.now_ns();
                    self.tracker
                        .threads_listed(noticed, &[], sink)
                        .map_err(SamplerError::Sink)?;
                }
                return Ok(reason);
            }
            if began - last_sink_tick >= SINK_TICK.as_nanos() as i64 {
                sink.tick(Instant::now()).map_err(SamplerError::Sink)?;
                last_sink_tick = began;
            }
            tick += 1;
        }
    }

    /// Takes one sample now: lists the threads, reads each one's stack and writes the
    /// events it shows. `Some(TargetExited)` when the target is gone.
    pub fn sample(&mut self, sink: &mut dyn EventSink) -> Result<Option<StopReason>, SamplerError> {
        self.samples += 1;
        let listed_at = self.clock.now_ns();
        self.walker.begin_sample();
        let threads = match self.walker.threads() {
            Ok(threads) => threads,
            Err(e) => return Ok(self.read_failed(e)),
        };
        self.refresh_thread_names(&threads);
        self.keys.clear();
        self.labels.clear();
        for (i, t) in threads.iter().enumerate() {
            if t.tid == Some(0) {
                // A thread state whose thread has not yet recorded its kernel id (3.11+
                // set `native_thread_id` as the thread starts): it runs no Python yet,
                // and its key would change once the id is set.
                continue;
            }
            if threads[i + 1..].iter().any(|older| older.ident == t.ident) {
                // ≤3.10: a thread state made for a new thread carries the ident of the
                // thread that made it until the new thread sets its own. New thread
                // states are put at the head of the list, so the older one with the
                // same ident is that thread; this one's key would change, and split
                // its calls, once the new thread (which may already run Python by the
                // time its frames are read) sets its ident.
                continue;
            }
            let tid = t.tid.unwrap_or(0);
            let key = thread_key(t.tstate, t.ident, tid);
            self.keys.push(key);
            let name = self.thread_names.get(&t.ident).cloned().or_else(|| {
                // Before `threading` is imported (or registers the main thread) the
                // main thread has no Python name yet; Python will call it MainThread.
                (tid == i64::from(self.walker.process.pid)).then(|| self.main_thread_name.clone())
            });
            self.labels.insert(t.tstate, ThreadLabel { key, tid, name });
        }
        self.tracker
            .threads_listed(listed_at, &self.keys, sink)
            .map_err(SamplerError::Sink)?;
        let mut named_again = false;
        for t in &threads {
            let Some(label) = self.labels.get(&t.tstate) else {
                continue;
            };
            let mut label = label.clone();
            // A read that tears (the thread's frames changed under it: a target
            // running on another core changes them every few microseconds in a loop
            // of short calls) is read again at once, up to SAMPLE_ATTEMPTS times,
            // before the thread's sample counts as failed: one failure in three
            // reads cost a third of a busy thread's samples.
            let mut attempt = 0;
            loop {
                attempt += 1;
                let retry = attempt < SAMPLE_ATTEMPTS;
                let t0 = self.clock.now_ns();
                let mut read = self.walker.sample_stack(t.tstate, &mut self.frames);
                if read.is_ok() {
                    self.states.clear();
                    self.states.extend(self.frames.iter().map(frame_state));
                    if !self.tracker.same_below_innermost(label.key, &self.states) {
                        read = self.walker.settle_stack(t.tstate, &mut self.frames);
                        self.states.clear();
                        self.states.extend(self.frames.iter().map(frame_state));
                    }
                }
                if read.is_ok() && self.suspended_at_the_bottom(label.key) {
                    // The walk reached a generator or coroutine frame as it yielded: a
                    // suspended one has no link to its caller, so the stack seemed to
                    // end there, and a second read of the same frames agrees with it.
                    // Every call below it would end and start again. Walked afresh
                    // once; still so, this tick keeps no read of the thread.
                    read = self.walker.sample_stack(t.tstate, &mut self.frames);
                    self.states.clear();
                    self.states.extend(self.frames.iter().map(frame_state));
                    if read.is_ok() && self.suspended_at_the_bottom(label.key) {
                        break;
                    }
                }
                if read.is_ok() {
                    // A module body's variables are in its globals (see FrameState);
                    // one read per such frame, usually the thread's outermost alone.
                    for (state, f) in self.states.iter_mut().zip(&self.frames) {
                        state.globals_version = self.walker.globals_version(&f.frame);
                    }
                }
                let t1 = self.clock.now_ns();
                if let Err(e) = read {
                    // A pointer followed as it went stale reads unmapped memory
                    // (EFAULT) as often as it reads a frame that fails its checks.
                    if retry && !matches!(e, Error::Exited(_) | Error::NoSuchProcess(_)) {
                        continue;
                    }
                    if let Some(reason) = self.read_failed(e) {
                        return Ok(Some(reason));
                    }
                    break;
                }
                let new_frames =
                    self.frames.len() - self.tracker.continued(label.key, &self.states);
                if label.name.is_none()
                    && new_frames > 0
                    && !named_again
                    && self.is_newcomer(label.key)
                {
                    // Names were read before these frames: a new thread that has
                    // begun its target since has registered its name (Python does so
                    // first), and its first calls are to carry it. Once a sample at
                    // the most.
                    named_again = true;
                    self.names_read_at = None;
                    self.refresh_thread_names(&threads);
                    if let Some(name) = self.thread_names.get(&t.ident) {
                        label.name = Some(name.clone());
                        self.labels.insert(t.tstate, label.clone());
                    }
                }
                let mut info = Describer {
                    walker: &mut self.walker,
                    names: &mut self.names,
                    filter: &mut self.filter,
                    types: &mut self.types,
                    codes: &mut self.codes,
                    options: &self.options,
                    frames: &self.frames,
                    args: &mut self.args,
                };
                if !info.read_new_args(new_frames) {
                    // A new frame returned while its arguments were read: this read
                    // of the thread mixes two calls, and is read afresh. Keeping the
                    // stack with the arguments left out is not safe: under heavy call
                    // churn such stacks are often torn reads that passed the walker's
                    // checks (frames reused between reading the innermost and the
                    // outer ones), and they put calls under callers that never made
                    // them.
                    if retry {
                        continue;
                    }
                    self.sample_errors += 1;
                    break;
                }
                self.tracker
                    .observe(&label, Window { t0, t1 }, &self.states, &mut info, sink)
                    .map_err(SamplerError::Sink)?;
                break;
            }
        }
        Ok(None)
    }

    /// Counts a failed read, or tells that the target has exited.
    fn read_failed(&mut self, error: Error) -> Option<StopReason> {
        let pid = self.walker.process.mem.pid();
        // A process that exec'd another program no longer runs the Python it was:
        // its calls end there, as at an exit (every read of the old program's
        // addresses would fail until the new one exits).
        let stat = ProcStat::read(pid);
        let execd = self
            .image
            .is_some_and(|image| stat.as_ref().and_then(program_image) != Some(image));
        if matches!(error, Error::Exited(_) | Error::NoSuchProcess(_))
            || exited(stat.as_ref())
            || execd
        {
            return Some(StopReason::TargetExited);
        }
        self.sample_errors += 1;
        None
    }

    /// Whether the stack just read ends (outermost) at a generator or coroutine frame
    /// that was not the outermost frame of the thread's previous sample: a thread's
    /// stack starts with a plain function or module frame below any generator, so
    /// such a read was taken while the generator suspended. A thread whose stack
    /// did start at a generator (driven from C) keeps that frame from one sample to
    /// the next and is read as it is.
    fn suspended_at_the_bottom(&self, key: u64) -> bool {
        use python_offsets::code_flags::{ASYNC_GENERATOR, COROUTINE, GENERATOR};
        match self.frames.last() {
            Some(outermost)
                if outermost.frame.code.flags & (GENERATOR | COROUTINE | ASYNC_GENERATOR) != 0 =>
            {
                self.tracker
                    .outermost_frame(key)
                    .is_some_and(|addr| addr != outermost.frame.addr)
            }
            _ => false,
        }
    }

    /// Whether the thread `key` appeared less than [`THREAD_NAMES_REFRESH`] ago.
    fn is_newcomer(&self, key: u64) -> bool {
        self.thread_appeared
            .get(&key)
            .is_some_and(|(_, appeared, _)| appeared.elapsed() < THREAD_NAMES_REFRESH)
    }

    /// Reads Python's thread names every [`THREAD_NAMES_REFRESH`], and every
    /// [`THREAD_NAMES_RETRY`] while a thread that appeared less than
    /// [`THREAD_NAMES_REFRESH`] ago has no name yet (a new thread registers its
    /// name shortly after it starts).
    fn refresh_thread_names(&mut self, threads: &[RawThread]) {
        let now = Instant::now();
        // Each listed thread is stamped with this sample's number; the others are gone.
        let pass = self.samples;
        let mut unnamed_newcomer = false;
        for t in threads {
            let key = thread_key(t.tstate, t.ident, t.tid.unwrap_or(0));
            match self.thread_appeared.entry(key) {
                std::collections::hash_map::Entry::Occupied(mut seen) => seen.get_mut().2 = pass,
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert((t.ident, now, pass));
                    // A name known for this ident was an earlier thread's.
                    self.thread_names.remove(&t.ident);
                    unnamed_newcomer = true;
                }
            }
        }
        self.thread_appeared.retain(|_, (_, _, seen)| *seen == pass);
        let waiting = self.thread_appeared.values().any(|(ident, appeared, _)| {
            !self.thread_names.contains_key(ident)
                && now.duration_since(*appeared) < THREAD_NAMES_REFRESH
        });
        // A thread seen for the first time is named before its first calls are
        // written: Python registers a thread's name before it runs its target.
        let due = match self.names_read_at {
            None => true,
            Some(_) if unnamed_newcomer => true,
            Some(at) if waiting => at.elapsed() >= THREAD_NAMES_RETRY,
            Some(at) => at.elapsed() >= THREAD_NAMES_REFRESH,
        };
        if !due {
            return;
        }
        self.names_read_at = Some(Instant::now());
        let names = self.names.thread_names(&self.walker);
        for (ident, name) in names {
            if self
                .thread_names
                .get(&ident)
                .is_none_or(|known| **known != *name)
            {
                self.thread_names.insert(ident, name.into());
            }
        }
        self.thread_names
            .retain(|ident, _| threads.iter().any(|t| t.ident == *ident));
    }

    /// Ends recording: `unfinished` rows (with their gap rows) for every call still
    /// running.
    pub fn finish(&mut self, sink: &mut dyn EventSink) -> Result<(), SamplerError> {
        self.tracker.finish(sink).map_err(SamplerError::Sink)
    }

    /// Every thread's stack now, with arguments, as `tracer dump` shows it: what a
    /// `--timeout` prints before stopping the target.
    pub fn snapshot(&mut self, options: &SnapshotOptions) -> Result<ProcessSnapshot, SamplerError> {
        Ok(take_snapshot(&mut self.walker, &mut self.names, options)?)
    }
}

/// What the tracker compares of a sampled frame.
fn frame_state(f: &SampledFrame) -> FrameState {
    FrameState {
        addr: f.frame.addr,
        code: f.frame.code.addr,
        instr_offset: f.frame.instr_offset,
        line: f.frame.line,
        slots: f.slots,
        args: f.args,
        globals_version: 0,
    }
}

/// Answers the tracker's questions about the frames of one sample from the target.
struct Describer<'a> {
    walker: &'a mut Walker,
    names: &'a mut Names,
    filter: &'a mut ModuleFilter,
    types: &'a mut TypeCache,
    codes: &'a mut CodeCaches,
    options: &'a SamplerOptions,
    frames: &'a [SampledFrame],
    /// The arguments of the sample's new traced frames, by stack index, read by
    /// [`Describer::read_new_args`] before the tracker asks.
    args: &'a mut Vec<Option<String>>,
}

impl FrameInfo for Describer<'_> {
    fn facts(&mut self, index: usize) -> CodeFacts {
        let frame = &self.frames[index].frame;
        let key = (frame.code.addr, frame.globals);
        if let Some((code, facts)) = self.codes.facts.get(&key) {
            if Arc::ptr_eq(code, &frame.code) {
                return facts.clone();
            }
        }
        let module = self.names.module_name(self.walker, frame);
        let traced = self.filter.includes(&module, &frame.code.filename);
        let regions = self.regions(&frame.code);
        let facts = CodeFacts {
            traced,
            first_line: frame.code.firstlineno,
            regions,
        };
        self.codes
            .facts
            .insert(key, (frame.code.clone(), facts.clone()));
        facts
    }

    fn site(&mut self, index: usize) -> Arc<CallSite> {
        let frame = &self.frames[index].frame;
        let needs_args = self.walker.layout().code.qualname.is_none() && frame.code.argcount > 0;
        let args = if needs_args {
            self.walker.frame_args(frame).unwrap_or_default()
        } else {
            Vec::new()
        };
        let function = self.names.function_name(self.walker, frame, &args);
        let key = (
            frame.code.addr,
            frame.globals,
            Arc::as_ptr(&function) as *const u8 as usize,
        );
        if let Some((code, site)) = self.codes.sites.get(&key) {
            if Arc::ptr_eq(code, &frame.code) {
                return site.clone();
            }
        }
        let module = self.names.module_name(self.walker, frame);
        let site = Arc::new(CallSite::new(
            function,
            module,
            frame.code.filename.clone(),
            frame.code.firstlineno,
        ));
        self.codes
            .sites
            .insert(key, (frame.code.clone(), site.clone()));
        site
    }

    fn args(&mut self, index: usize) -> Option<String> {
        self.args.get(index).cloned().flatten()
    }
}

impl Describer<'_> {
    /// Reads the arguments of the `count` innermost frames (the calls this sample
    /// sees first) that are traced, then checks that each of those frames still runs
    /// the code it ran when the stack was read, with the same objects in its
    /// argument slots. False when one does not: the frame returned and another call
    /// took its memory (of the same function, in a loop), so the stack read is of a
    /// call that has ended, and the arguments just read are the next call's.
    ///
    /// A frame's arguments are kept only when its argument slots held the same
    /// objects and the values read the same twice in a row; else that call's `args`
    /// are left out (null), never another call's. Freed objects go back to the front
    /// of Python's free lists, so within one call of a loop an address can hold the
    /// argument, then a temporary of the next call (an `i` read as the next call's
    /// `i * i`), then the next argument again. The next call of the same function
    /// often takes the same frame: slots that changed mean the call read returned
    /// (the sample still saw that function running there). Empty slots too: 3.8-3.10
    /// clear a finished frame's slots.
    fn read_new_args(&mut self, count: usize) -> bool {
        self.args.clear();
        if self.options.no_args {
            return true;
        }
        let mut slots_read: Vec<(usize, Vec<u64>)> = Vec::new();
        for index in 0..count {
            let args = if self.facts(index).traced {
                self.read_args(index).map(|(json, slots)| {
                    slots_read.push((index, slots));
                    json
                })
            } else {
                None
            };
            self.args.push(args);
        }
        for (index, slots) in slots_read {
            if !self
                .walker
                .frame_unchanged(&self.frames[index])
                .unwrap_or(false)
            {
                return false;
            }
            let mut stable = false;
            for _ in 0..ARGS_READS {
                match self.read_args(index) {
                    Some((json, now)) if now == slots => {
                        if self.args[index].as_deref() == Some(json.as_str()) {
                            stable = true;
                            break;
                        }
                        self.args[index] = Some(json);
                    }
                    _ => break,
                }
            }
            if !stable {
                self.args[index] = None;
            }
        }
        true
    }

    /// The arguments of frame `index` as a JSON object of name to repr, read now,
    /// and the object addresses its argument slots held; `None` when its slots are
    /// empty or an argument had been freed (the call ended).
    fn read_args(&mut self, index: usize) -> Option<(String, Vec<u64>)> {
        let frame = &self.frames[index].frame;
        let pairs = self.walker.frame_args(frame).ok()?;
        // Every slot empty: the frame had returned (3.8-3.10 clear a finished
        // frame's slots); its call is kept without arguments.
        if !pairs.is_empty() && pairs.iter().all(|(_, addr)| *addr == 0) {
            return None;
        }
        let mem = &self.walker.process.mem;
        let layout = self.walker.layout();
        // An argument freed since: the call ended, and none of its values is read
        // right.
        let object = pairs
            .iter()
            .filter(|(_, addr)| *addr != 0)
            .map(|(name, addr)| {
                let text =
                    repr_named_live(mem, layout, self.types, name, *addr, &self.options.repr)?;
                Some((name.to_string(), serde_json::Value::String(text)))
            })
            .collect::<Option<serde_json::Map<String, serde_json::Value>>>()?;
        Some((
            serde_json::Value::Object(object).to_string(),
            pairs.iter().map(|(_, addr)| *addr).collect(),
        ))
    }

    /// The loop regions of a code object's source file, when the file can be read
    /// through the target's root and still has the code's definition at its first
    /// line.
    fn regions(&mut self, code: &CodeInfo) -> Option<Arc<SourceRegions>> {
        let pid = self.walker.process.mem.pid();
        let regions = self
            .codes
            .sources
            .entry(code.filename.clone())
            .or_insert_with(|| {
                read_source(pid, &code.filename).map(|text| Arc::new(SourceRegions::parse(&text)))
            })
            .clone()?;
        regions
            .starts_code(code.firstlineno, &code.name)
            .then_some(regions)
    }
}

/// Reads of a thread's stack in one sample, at most, when reads tear.
const SAMPLE_ATTEMPTS: usize = 3;

/// Reads of a frame's arguments after the first, for two in a row to agree.
const ARGS_READS: usize = 2;

/// The text of a target's source file, read through `/proc/PID/root` (or its
/// working directory for a relative name).
fn read_source(pid: i32, filename: &str) -> Option<String> {
    if filename.starts_with('<') || filename.is_empty() {
        return None;
    }
    let path = match filename.strip_prefix('/') {
        Some(absolute) => format!("/proc/{pid}/root/{absolute}"),
        None => format!("/proc/{pid}/cwd/{filename}"),
    };
    let file = std::fs::File::open(path).ok()?;
    if file.metadata().ok()?.len() > MAX_SOURCE_BYTES {
        return None;
    }
    std::io::read_to_string(file).ok()
}

/// What identifies a thread between samples: its thread state, `pthread_t` and TID
/// (a new thread can reuse a dead one's thread state address).
fn thread_key(tstate: u64, ident: u64, tid: i64) -> u64 {
    let mix = |h: u64, v: u64| (h.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    mix(mix(mix(0, tstate), ident), tid as u64)
}

/// Where the program a process runs was mapped: its executable's code and its stack
/// (`start_code` and `start_stack`). An exec maps a new program, at new addresses
/// (address space randomization), so a change means the process runs another
/// program. `None` when unreadable or hidden (the kernel shows zeros to a reader
/// without ptrace access).
fn program_image(stat: &ProcStat) -> Option<(u64, u64)> {
    let start_code: u64 = stat.field(26)?;
    let start_stack: u64 = stat.field(28)?;
    (start_code != 0 || start_stack != 0).then_some((start_code, start_stack))
}

/// Whether a process has exited: gone (no stat), or a zombie waiting to be reaped.
fn exited(stat: Option<&ProcStat>) -> bool {
    stat.is_none_or(|stat| matches!(stat.field::<char>(3), Some('Z' | 'X')))
}

/// Whether process `pid` has exited (gone, or a zombie waiting to be reaped).
pub fn target_gone(pid: i32) -> bool {
    exited(ProcStat::read(pid).as_ref())
}

/// Event time: nanoseconds since the Unix epoch, advancing with the monotonic clock
/// from one reading of the wall clock, so durations are never skewed by clock steps.
#[derive(Debug, Clone, Copy)]
struct Clock {
    epoch_at_start: i64,
    monotonic_at_start: i64,
}

impl Clock {
    fn new() -> Clock {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        Clock {
            epoch_at_start: epoch,
            monotonic_at_start: monotonic_ns(),
        }
    }

    fn now_ns(&self) -> i64 {
        self.epoch_at_start + (monotonic_ns() - self.monotonic_at_start)
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds.
fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Sleeps until `CLOCK_MONOTONIC` reaches `at_ns` (an absolute deadline, so time
/// spent sampling does not drift the schedule).
fn sleep_until(at_ns: i64) {
    let ts = libc::timespec {
        tv_sec: at_ns / 1_000_000_000,
        tv_nsec: at_ns % 1_000_000_000,
    };
    // SAFETY: clock_nanosleep reads one timespec we own; no remainder is asked for.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        );
    }
}

/// Asks the kernel to wake this thread on time: the default 50 µs timer slack is as
/// long as a whole period at 20,000 Hz.
fn reduce_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and affects only this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}
