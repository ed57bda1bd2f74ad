//! The tracer's own cost per event in exact mode, without Python: the tracer side of
//! `bench/exact`'s fib workload, for tuning the decoder and the writer.
//!
//! ```text
//! cargo bench -p storage --bench exact_pipeline
//! ```
//!
//! A client thread connects to a real [`ExactSession`]'s socket as the hook does and
//! sends, exactly in the format of `attach/src/exact/wire.rs`, what the native hook
//! sends for `bench/exact/fib.py N` traced with `--include '*'`: a HELLO with the
//! session's token, BATCH frames of about 64 KiB of records (a code record `K` for
//! `fib`, a thread record `T`, then the nested call and return records of fib(N):
//! 2*fib(N+1)-1 calls, each call with its one int argument and each return with its
//! int value, or, values off, calls with `u16` 0xFFFF and returns with the value
//! tag `z`), then BYE. The bytes are encoded once, outside the timed part; a
//! throughput element is one event (a call or return row).
//!
//! Groups:
//! * `exact_decode`: the session decodes into a sink that only counts events (the
//!   socket, frames, records, reprs, the `Event` rows);
//! * `exact_write`: the session decodes into a real [`TraceWriter`] in a temporary
//!   folder, which writes its Parquet segments on its background thread and is
//!   finished (merged into the trace file): the whole tracer side of a recording.
//!
//! Criterion measures wall time. After each benchmark a line gives the process's CPU
//! time per event over all its runs (warm-up included): the receiving thread, the
//! segment thread and the client together, the CPU a recording takes from the
//! traced program on a machine of few cores.
//!
//! Figures and how to read them: `bench/README.md`.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, Bencher, BenchmarkGroup, Criterion, SamplingMode, Throughput,
};

use attach::event::SinkError;
use attach::exact::wire::{MSG_BATCH, MSG_BYE, MSG_HELLO};
use attach::exact::{ExactOptions, ExactSession, ExactStats};
use attach::{Event, EventSink};
use storage::{Mode, RunInfo, RunStatus, TraceWriter, WriterOptions};

/// fib(N) of the decode group: 1,028,457 calls, 2,056,914 events (an iteration of
/// 0.1-0.3 s on the 2-core project machine).
const DECODE_N: u32 = 28;
/// fib(N) of the write group: 635,621 calls, 1,271,242 events, `bench/exact`'s fib(27)
/// without its few calls outside `fib` (so as many segments as a real recording).
const WRITE_N: u32 = 27;

/// The records of one BATCH frame, at most (the frame adds its `u64` dropped count).
const BATCH_BYTES: usize = 64 << 10;

/// `fib`'s code object as `bench/exact/fib.py` has it.
const FIB_FIRST_LINE: i32 = 6;
/// The line of `fib`'s body: where it calls itself and where it returns.
const FIB_BODY_LINE: i32 = 7;
/// The line of `main` that calls `fib` (the root call's caller line).
const MAIN_CALL_LINE: i32 = 11;

/// `perf_counter_ns` between two events in the stream (about the native hook's pace
/// on fib; only the differences reach the rows, as durations).
const EVENT_NS: i64 = 60;

/// The bytes a hook sends for fib(N), framed, and the events they make.
struct Stream {
    bytes: Vec<u8>,
    events: u64,
}

/// Little-endian writers of the wire format's fields.
trait Put {
    fn u8(&mut self, v: u8);
    fn u16(&mut self, v: u16);
    fn u32(&mut self, v: u32);
    fn i32(&mut self, v: i32);
    fn u64(&mut self, v: u64);
    fn i64(&mut self, v: i64);
    /// A `str`: `u32` byte length, then the UTF-8 bytes.
    fn str(&mut self, s: &str);
}

impl Put for Vec<u8> {
    fn u8(&mut self, v: u8) {
        self.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(u32::try_from(s.len()).expect("a short string"));
        self.extend_from_slice(s.as_bytes());
    }
}

/// Writes one frame: `u32` length of what follows, `u8` type, body.
fn put_frame(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.u32(u32::try_from(body.len() + 1).expect("a frame under 4 GiB"));
    out.u8(kind);
    out.extend_from_slice(body);
}

/// Encodes the stream of one hooked process: records go into BATCH frames of at most
/// [`BATCH_BYTES`] of records, never split across two frames.
struct Encoder {
    out: Vec<u8>,
    batch: Vec<u8>,
    record: Vec<u8>,
    values: bool,
    /// The process's `perf_counter_ns`.
    clock: i64,
    events: u64,
}

/// The ids the hook gives the one code object and the one thread.
const CODE_ID: u32 = 0;
const THREAD_ID: u32 = 0;

impl Encoder {
    fn new(token: &str, n: u32, values: bool) -> Encoder {
        let perf_ns: i64 = 1_000_000_000;
        let wall_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let mut hello = Vec::new();
        hello.str(token);
        hello.u32(std::process::id());
        hello.u32(1);
        hello.str("3.12.1");
        hello.str("/usr/bin/python3");
        let argv = ["python3".to_string(), "fib.py".into(), n.to_string()];
        hello.u32(argv.len() as u32);
        for arg in &argv {
            hello.str(arg);
        }
        hello.i64(wall_ns);
        hello.i64(perf_ns);
        hello.str("sys.monitoring tool 3 (native)");
        hello.str("/work/bench/exact");
        let mut out = Vec::new();
        put_frame(&mut out, MSG_HELLO, &hello);
        Encoder {
            out,
            batch: Vec::with_capacity(BATCH_BYTES),
            record: Vec::new(),
            values,
            clock: perf_ns + 1_000_000,
            events: 0,
        }
    }

    /// Adds the record in `self.record` to the batch, sending the batch first when
    /// the record would take it over [`BATCH_BYTES`].
    fn push_record(&mut self) {
        if !self.batch.is_empty() && self.batch.len() + self.record.len() > BATCH_BYTES {
            self.send_batch();
        }
        self.batch.extend_from_slice(&self.record);
    }

    /// A BATCH frame: `u64` events dropped so far (none), then the records.
    fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let mut body = Vec::with_capacity(8 + self.batch.len());
        body.u64(0);
        body.extend_from_slice(&self.batch);
        put_frame(&mut self.out, MSG_BATCH, &body);
        self.batch.clear();
    }

    /// `K`: `u32` id, `u32` base id, `str` function, `str` module, `str` file, `i32`
    /// first line, `u16` n + n × `str` argument names.
    fn code(&mut self) {
        let r = &mut self.record;
        r.clear();
        r.u8(b'K');
        r.u32(CODE_ID);
        r.u32(CODE_ID);
        r.str("fib");
        r.str("__main__");
        r.str("/work/bench/exact/fib.py");
        r.i32(FIB_FIRST_LINE);
        r.u16(1);
        r.str("n");
        self.push_record();
    }

    /// `T`: `u32` id, `i64` OS thread id, `str` name.
    fn thread(&mut self) {
        let r = &mut self.record;
        r.clear();
        r.u8(b'T');
        r.u32(THREAD_ID);
        r.i64(i64::from(std::process::id()));
        r.str("MainThread");
        self.push_record();
    }

    /// The head of an event record: `u32` code, `u32` thread, `i64` ts, `i32` line.
    fn head(&mut self, tag: u8, line: i32) {
        self.clock += EVENT_NS;
        self.events += 1;
        let r = &mut self.record;
        r.clear();
        r.u8(tag);
        r.u32(CODE_ID);
        r.u32(THREAD_ID);
        r.i64(self.clock);
        r.i32(line);
    }

    /// `c`: head (the caller's line), `u16` n (0xFFFF: values off) + n × (`u16`
    /// argument index, value); the value an `i` int: `i64`.
    fn call(&mut self, n: i64, caller_line: i32) {
        self.head(b'c', caller_line);
        let r = &mut self.record;
        if self.values {
            r.u16(1);
            r.u16(0);
            r.u8(b'i');
            r.i64(n);
        } else {
            r.u16(0xFFFF);
        }
        self.push_record();
    }

    /// `r`: head (the line returning), value (`z` when values are off).
    fn ret(&mut self, value: i64) {
        self.head(b'r', FIB_BODY_LINE);
        let r = &mut self.record;
        if self.values {
            r.u8(b'i');
            r.i64(value);
        } else {
            r.u8(b'z');
        }
        self.push_record();
    }

    /// The records of `fib(n)` called from `caller_line`, as `fib.py` makes them.
    fn fib(&mut self, n: i64, caller_line: i32) -> i64 {
        self.call(n, caller_line);
        let result = if n < 2 {
            n
        } else {
            self.fib(n - 1, FIB_BODY_LINE) + self.fib(n - 2, FIB_BODY_LINE)
        };
        self.ret(result);
        result
    }

    /// The last batch, then BYE (`u64` events dropped in total).
    fn finish(mut self) -> Stream {
        self.send_batch();
        let mut bye = Vec::new();
        bye.u64(0);
        put_frame(&mut self.out, MSG_BYE, &bye);
        Stream {
            bytes: self.out,
            events: self.events,
        }
    }
}

/// What a hooked process sends for `fib.py n`, framed.
fn fib_stream(token: &str, n: u32, values: bool) -> Stream {
    let mut encoder = Encoder::new(token, n, values);
    encoder.code();
    encoder.thread();
    encoder.fib(i64::from(n), MAIN_CALL_LINE);
    encoder.finish()
}

/// A sink that only counts what it is given.
#[derive(Default)]
struct CountingSink {
    events: u64,
}

impl EventSink for CountingSink {
    fn event(&mut self, event: &mut Event) -> Result<(), SinkError> {
        std::hint::black_box(event);
        self.events += 1;
        Ok(())
    }
}

/// Runs the session until a client thread has connected, sent `stream` and closed
/// the connection, as `cli/src/exact_cmd.rs` runs it (`stop`, then `wake`), and
/// checks that every event arrived.
fn replay(session: &ExactSession, stream: &Stream, sink: &mut dyn EventSink) -> ExactStats {
    let stop = AtomicBool::new(false);
    let stats = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut socket = UnixStream::connect(session.socket_path()).expect("connect");
            socket.write_all(&stream.bytes).expect("send the stream");
            drop(socket);
            stop.store(true, Ordering::SeqCst);
            session.wake();
        });
        session.run(sink, &stop).expect("the session")
    });
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    assert_eq!(stats.events, stream.events);
    assert!(stats.processes.iter().all(|p| p.completed));
    stats
}

/// CPU time of the whole process so far (every thread), user and system.
fn process_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `getrusage` fills the struct it is given; it cannot fail for
    // RUSAGE_SELF with a valid pointer (and a zeroed one is a valid rusage anyway).
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The runs of one benchmark, warm-up included, for its CPU line.
#[derive(Default)]
struct Tally {
    runs: u64,
    events: u64,
    wall: Duration,
    cpu: Duration,
}

impl Tally {
    /// Prints the line, if the benchmark ran (criterion's filter may skip it).
    fn print(&self, id: &str) {
        if self.runs == 0 {
            return;
        }
        let per_event = |d: Duration| d.as_nanos() as f64 / self.events.max(1) as f64;
        println!(
            "{id}: {:.0} ns of CPU per event (all threads), {:.0} ns of wall time, {} runs with the warm-up",
            per_event(self.cpu),
            per_event(self.wall),
            self.runs
        );
    }
}

/// Times `timed` (one run of `events` events) for criterion and the tally; `after`
/// cleans up what it left, outside the timed part.
fn timed_runs<T>(
    b: &mut Bencher<'_>,
    events: u64,
    tally: &mut Tally,
    mut timed: impl FnMut() -> T,
    mut after: impl FnMut(T),
) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let cpu = process_cpu();
            let start = Instant::now();
            let left = timed();
            let wall = start.elapsed();
            tally.cpu += process_cpu().saturating_sub(cpu);
            tally.wall += wall;
            tally.events += events;
            tally.runs += 1;
            total += wall;
            after(left);
        }
        total
    });
}

/// Records one run of `stream` into a new trace `path` and finishes it.
fn record(session: &ExactSession, stream: &Stream, path: &Path) {
    let mut run = RunInfo::new(vec!["python3".into(), "fib.py".into()], 1, Mode::Exact);
    let mut writer = TraceWriter::create_with_options(path, run.clone(), false, writer_options())
        .expect("create the trace");
    let stats = replay(session, stream, &mut writer);
    run.status = RunStatus::Completed;
    run.exit_code = Some(0);
    run.dropped_events = stats.dropped_events;
    writer.finish(run).expect("finish the trace");
}

/// The CLI's writer options; with `EXACT_PIPELINE_ROWS_ONLY` set, segments are cut
/// by rows alone (128K), as in a real recording of fib(27), which takes well under
/// the flush interval per segment. For counting instructions under valgrind
/// (bench/README.md), whose slowness would otherwise cut them by time into many short
/// segments that the final merge re-encodes.
fn writer_options() -> WriterOptions {
    let mut options = WriterOptions::default();
    if std::env::var_os("EXACT_PIPELINE_ROWS_ONLY").is_some() {
        options.flush_interval = Duration::from_secs(24 * 3600);
    }
    options
}

/// What `tracer record --exact` does first (`cli/src/exact_cmd.rs`,
/// `keep_freed_memory`): `malloc` keeps freed memory instead of returning it to the
/// kernel, so the batches in flight reuse pages rather than fault fresh ones. Without
/// it this benchmark would measure page faults the tracer does not have.
fn keep_freed_memory() {
    // SAFETY: `mallopt` only changes glibc's allocation parameters; called before
    // the benchmark's threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    // One iteration takes a tenth of a second or more: ten samples of whole runs.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
}

fn variants() -> [(&'static str, bool); 2] {
    [("values", true), ("no_values", false)]
}

fn exact_pipeline(c: &mut Criterion) {
    keep_freed_memory();
    let session = ExactSession::new(ExactOptions::default()).expect("an exact session");

    let mut group = c.benchmark_group("exact_decode");
    configure(&mut group);
    for (name, values) in variants() {
        let stream = fib_stream(session.token(), DECODE_N, values);
        group.throughput(Throughput::Elements(stream.events));
        let id = format!("fib{DECODE_N}/{name}");
        let mut tally = Tally::default();
        group.bench_function(&id, |b| {
            timed_runs(
                b,
                stream.events,
                &mut tally,
                || {
                    let mut sink = CountingSink::default();
                    replay(&session, &stream, &mut sink);
                    sink.events
                },
                |counted| assert_eq!(counted, stream.events),
            )
        });
        tally.print(&format!("exact_decode/{id}"));
    }
    group.finish();

    let mut group = c.benchmark_group("exact_write");
    configure(&mut group);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut run = 0u64;
    for (name, values) in variants() {
        let stream = fib_stream(session.token(), WRITE_N, values);
        group.throughput(Throughput::Elements(stream.events));
        let id = format!("fib{WRITE_N}/{name}");
        let mut tally = Tally::default();
        group.bench_function(&id, |b| {
            timed_runs(
                b,
                stream.events,
                &mut tally,
                || -> PathBuf {
                    run += 1;
                    let path = dir.path().join(format!("fib-{run}.parquet"));
                    record(&session, &stream, &path);
                    path
                },
                |path| std::fs::remove_file(path).expect("remove the trace"),
            )
        });
        tally.print(&format!("exact_write/{id}"));
    }
    group.finish();
}

criterion_group!(benches, exact_pipeline);
criterion_main!(benches);
