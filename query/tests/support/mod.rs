//! Trace files for the query tests and the benchmark generator, written the way the
//! storage writer writes them: Parquet with zstd, the events schema of DESIGN.md
//! (dictionary-encoded strings), rows in `seq` order, and the run's JSON object
//! under the `tracer.run` key-value metadata.
//!
//! [`TraceBuilder`] keeps a call stack per thread, so the rows it writes have what a
//! recording has: parent ids, depths, callers and caller lines, returns and
//! exceptions with their durations, gap rows, several threads.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;
use query::arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray,
    UInt32Array, UInt64Array,
};
use query::arrow::compute::cast;
use query::arrow::datatypes::SchemaRef;
use serde_json::{json, Value};

/// 2024-05-01T12:00:00Z in nanoseconds: when every test run starts.
pub const START_NS: i64 = 1_714_564_800_000_000_000;

/// A folder under the system temp folder, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("tracer-query-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Every file under the folder, recursively, sorted.
    pub fn files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.0, &mut out);
        out.sort();
        out
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `tracer.run` object of a test run.
pub fn run_metadata(run_id: &str, command: &[&str], mode: &str, status: &str) -> Value {
    json!({
        "schema_version": 1,
        "tracer_version": "0.1.0",
        "run_id": run_id,
        "command": command,
        "cwd": "/srv/app",
        "pid": 4242,
        "python_version": "3.12.1",
        "python_executable": "/usr/bin/python3.12",
        "mode": mode,
        "rate_hz": if mode == "sampled" { json!(1000) } else { Value::Null },
        "started_at": "2024-05-01T12:00:00Z",
        "ended_at": if status == "unfinished" { Value::Null } else { json!("2024-05-01T12:00:10Z") },
        "status": status,
        "exit_code": if status == "completed" { json!(0) } else { Value::Null },
        "samples": 0,
        "sample_errors": 0,
        "events": 0,
        "dropped_events": 0,
        "include": ["myapp.*"],
        "exclude": [],
    })
}

/// One events row.
#[derive(Debug, Clone)]
struct Row {
    tid: i64,
    thread_name: Option<String>,
    seq: u64,
    ts: i64,
    kind: &'static str,
    call_id: u64,
    parent_id: Option<u64>,
    depth: i32,
    function: String,
    module: String,
    file: String,
    line: i32,
    caller: Option<String>,
    caller_line: Option<i32>,
    args: Option<String>,
    value: Option<String>,
    exception: Option<String>,
    duration_ns: Option<i64>,
    duration_max_ns: Option<i64>,
    count: u32,
}

struct OpenCall {
    call_id: u64,
    module: String,
    function: String,
    file: String,
    first_line: i32,
    start: i64,
}

/// A call as the builder opened it, to return or raise from later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallId(pub u64);

/// Writes one run as events, one Parquet file or several segments.
pub struct TraceBuilder {
    run_id: String,
    pid: i32,
    source: &'static str,
    metadata: Value,
    now: i64,
    seq: u64,
    next_call_id: u64,
    stacks: HashMap<i64, Vec<OpenCall>>,
    thread_names: HashMap<i64, String>,
    rows: Vec<Row>,
    /// Sampled runs: the upper bound is this much above the lower one.
    sample_interval_ns: Option<i64>,
}

impl TraceBuilder {
    /// An exact-mode run (`source = exact`).
    pub fn exact(metadata: Value) -> TraceBuilder {
        TraceBuilder::new(metadata, "exact", None)
    }

    /// A sampled run: durations are bounds, `duration_max_ns` one interval wider.
    pub fn sampled(metadata: Value, interval_ns: i64) -> TraceBuilder {
        TraceBuilder::new(metadata, "sampled", Some(interval_ns))
    }

    fn new(metadata: Value, source: &'static str, interval: Option<i64>) -> TraceBuilder {
        let run_id = metadata["run_id"].as_str().expect("run_id").to_string();
        TraceBuilder {
            run_id,
            pid: 4242,
            source,
            metadata,
            now: START_NS,
            seq: 0,
            next_call_id: 1,
            stacks: HashMap::new(),
            thread_names: HashMap::new(),
            rows: Vec::new(),
            sample_interval_ns: interval,
        }
    }

    /// Sets one field of the run's `tracer.run` metadata.
    pub fn set_metadata(&mut self, key: &str, value: Value) {
        self.metadata[key] = value;
    }

    /// Names a thread; its rows carry the name.
    pub fn thread(&mut self, tid: i64, name: &str) {
        self.thread_names.insert(tid, name.to_string());
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, ns: i64) {
        self.now += ns;
    }

    /// Nanoseconds since the run's start.
    pub fn elapsed(&self) -> i64 {
        self.now - START_NS
    }

    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    fn base_row(&mut self, tid: i64, kind: &'static str, call_id: u64) -> Row {
        self.seq += 1;
        Row {
            tid,
            thread_name: self.thread_names.get(&tid).cloned(),
            seq: self.seq,
            ts: self.now,
            kind,
            call_id,
            parent_id: None,
            depth: 0,
            function: String::new(),
            module: String::new(),
            file: String::new(),
            line: 0,
            caller: None,
            caller_line: None,
            args: None,
            value: None,
            exception: None,
            duration_ns: None,
            duration_max_ns: None,
            count: 1,
        }
    }

    /// Opens a call of `module.function` (first line `line`) on thread `tid`, made
    /// from the caller's line `caller_line`; `args` is the JSON object of reprs.
    pub fn call(
        &mut self,
        tid: i64,
        module: &str,
        function: &str,
        line: i32,
        caller_line: i32,
        args: &str,
    ) -> CallId {
        let call_id = self.next_call_id;
        self.next_call_id += 1;
        let mut row = self.base_row(tid, "call", call_id);
        let stack = self.stacks.entry(tid).or_default();
        if let Some(parent) = stack.last() {
            row.parent_id = Some(parent.call_id);
            row.caller = Some(format!("{}.{}", parent.module, parent.function));
            row.caller_line = Some(caller_line);
        }
        row.depth = stack.len() as i32;
        row.function = function.to_string();
        row.module = module.to_string();
        row.file = format!("/srv/app/{}.py", module.replace('.', "/"));
        row.line = line;
        row.args = Some(args.to_string());
        stack.push(OpenCall {
            call_id,
            module: module.to_string(),
            function: function.to_string(),
            file: row.file.clone(),
            first_line: line,
            start: self.now,
        });
        self.rows.push(row);
        CallId(call_id)
    }

    fn close(&mut self, tid: i64, call: CallId, kind: &'static str) -> Row {
        let stack = self.stacks.get_mut(&tid).expect("thread has calls");
        let open = stack.pop().expect("an open call");
        assert_eq!(open.call_id, call.0, "calls close innermost first");
        let depth = stack.len() as i32;
        let parent = stack.last().map(|p| p.call_id);
        let mut row = self.base_row(tid, kind, call.0);
        row.parent_id = parent;
        row.depth = depth;
        row.function = open.function;
        row.module = open.module;
        row.file = open.file;
        row.line = open.first_line + 1;
        let duration = self.now - open.start;
        row.duration_ns = Some(duration);
        row.duration_max_ns = self.sample_interval_ns.map(|i| duration + i);
        row
    }

    /// Returns from the innermost call of `tid` with the repr `value`; the duration
    /// is the time since the call.
    pub fn ret(&mut self, tid: i64, call: CallId, value: &str) {
        let mut row = self.close(tid, call, "return");
        row.value = Some(value.to_string());
        self.rows.push(row);
    }

    /// Returns from the innermost call of `tid` as the sampler writes a return: the
    /// row's `ts` is now, the first sample without the call, and its `duration_ns`
    /// ends when the call was last seen, `unseen_ns` ago (the upper bound stays one
    /// interval above the time since the call).
    pub fn ret_last_seen(&mut self, tid: i64, call: CallId, value: &str, unseen_ns: i64) {
        let mut row = self.close(tid, call, "return");
        row.duration_ns = row.duration_ns.map(|ns| ns - unseen_ns);
        row.value = Some(value.to_string());
        self.rows.push(row);
    }

    /// Ends the innermost call of `tid` by an exception.
    pub fn raise(&mut self, tid: i64, call: CallId, exception: &str, message: &str) {
        let mut row = self.close(tid, call, "exception");
        row.exception = Some(exception.to_string());
        row.value = Some(message.to_string());
        self.rows.push(row);
    }

    /// Marks the innermost call of `tid` as still running when recording stopped.
    pub fn unfinished(&mut self, tid: i64, call: CallId) {
        let row = self.close(tid, call, "unfinished");
        self.rows.push(row);
    }

    /// A gap row: the innermost call of `tid` called untraced `module.function`
    /// `count` times, spending `duration_ns` there (the clock moves on by it).
    pub fn gap(&mut self, tid: i64, module: &str, function: &str, count: u32, duration_ns: i64) {
        let call_id = self.next_call_id;
        self.next_call_id += 1;
        let stack = self.stacks.get(&tid).expect("gaps come from a traced call");
        let parent = stack.last().expect("an open call");
        let (parent_id, caller, depth) = (
            parent.call_id,
            format!("{}.{}", parent.module, parent.function),
            stack.len() as i32,
        );
        let mut row = self.base_row(tid, "gap", call_id);
        row.parent_id = Some(parent_id);
        row.caller = Some(caller);
        row.caller_line = Some(7);
        row.depth = depth;
        row.function = function.to_string();
        row.module = module.to_string();
        row.file = format!("/usr/lib/python3.12/{}.py", module.replace('.', "/"));
        row.line = 1;
        row.count = count;
        row.duration_ns = Some(duration_ns);
        self.now += duration_ns;
        self.rows.push(row);
    }

    fn batch(&self, rows: &[Row], schema: &SchemaRef) -> RecordBatch {
        let text = |f: &dyn Fn(&Row) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from_iter(rows.iter().map(f)))
        };
        let columns: Vec<ArrayRef> = vec![
            text(&|_| Some(self.run_id.clone())),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|_| self.pid))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.tid))),
            text(&|r| r.thread_name.clone()),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.seq))),
            Arc::new(
                TimestampNanosecondArray::from_iter_values(rows.iter().map(|r| r.ts))
                    .with_timezone("UTC"),
            ),
            text(&|r| Some(r.kind.to_string())),
            text(&|_| Some(self.source.to_string())),
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.call_id),
            )),
            Arc::new(UInt64Array::from_iter(rows.iter().map(|r| r.parent_id))),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.depth))),
            text(&|r| Some(r.function.clone())),
            text(&|r| Some(r.module.clone())),
            text(&|r| Some(r.file.clone())),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.line))),
            text(&|r| r.caller.clone()),
            Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.caller_line))),
            text(&|r| r.args.clone()),
            text(&|r| r.value.clone()),
            text(&|r| r.exception.clone()),
            Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.duration_ns))),
            Arc::new(Int64Array::from_iter(
                rows.iter().map(|r| r.duration_max_ns),
            )),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.count))),
        ];
        let columns = columns
            .iter()
            .zip(schema.fields())
            .map(|(column, field)| cast(column, field.data_type()).expect("cast to schema type"))
            .collect();
        RecordBatch::try_new(schema.clone(), columns).expect("batch matches schema")
    }

    fn write_file(&self, path: &Path, rows: &[Row], metadata: &Value, row_group: usize) {
        let schema = storage::schema::events_schema();
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(row_group))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "tracer.run".to_string(),
                metadata.to_string(),
            )]))
            .build();
        let file = File::create(path).expect("create trace file");
        let mut writer =
            ArrowWriter::try_new(file, schema.clone(), Some(properties)).expect("writer");
        for chunk in rows.chunks(65_536) {
            writer
                .write(&self.batch(chunk, &schema))
                .expect("write batch");
        }
        writer.close().expect("close trace file");
    }

    fn metadata_with_events(&self, events: usize) -> Value {
        let mut metadata = self.metadata.clone();
        metadata["events"] = json!(events);
        metadata
    }

    /// Writes the whole run as one finished trace file.
    pub fn write(&self, path: &Path) {
        self.write_file(
            path,
            &self.rows,
            &self.metadata_with_events(self.rows.len()),
            1_000_000,
        );
    }

    /// Writes the run as a killed recording leaves it: `T.parquet.parts/` with one
    /// segment per `split` rows, each carrying the metadata as known then (status
    /// `unfinished`), plus a segment left under its temporary name.
    pub fn write_killed(&self, trace: &Path, split: usize) -> PathBuf {
        let parts = PathBuf::from(format!("{}.parts", trace.display()));
        std::fs::create_dir_all(&parts).expect("create parts dir");
        let mut written = 0;
        for (i, chunk) in self.rows.chunks(split).enumerate() {
            written += chunk.len();
            let mut metadata = self.metadata_with_events(written);
            metadata["status"] = json!("unfinished");
            metadata["ended_at"] = Value::Null;
            let segment = parts.join(format!("part-{:06}.parquet", i + 1));
            self.write_file(&segment, chunk, &metadata, 1_000_000);
        }
        std::fs::write(
            parts.join(format!("part-{:06}.parquet.tmp", written / split + 2)),
            b"PAR1 half",
        )
        .expect("write temp segment");
        parts
    }

    /// Writes the run in streaming fashion for large traces: the rows built so far
    /// go to `writer` and are dropped.
    pub fn flush_to(&mut self, writer: &mut ArrowWriter<File>) {
        let schema = storage::schema::events_schema();
        for chunk in self.rows.chunks(131_072) {
            writer
                .write(&self.batch(chunk, &schema))
                .expect("write batch");
        }
        self.rows.clear();
    }

    /// A writer for [`TraceBuilder::flush_to`] with this run's metadata, writing
    /// the file as the tracer writes a trace (its encodings, statistics and row
    /// groups), so that a benchmark on it reads what a user's queries read.
    pub fn streaming_writer(&self, path: &Path, events: usize) -> ArrowWriter<File> {
        let properties = storage::trace_writer_properties()
            .into_builder()
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "tracer.run".to_string(),
                self.metadata_with_events(events).to_string(),
            )]))
            .build();
        let file = File::create(path).expect("create trace file");
        ArrowWriter::try_new(file, storage::schema::events_schema(), Some(properties))
            .expect("writer")
    }
}

/// What the billing workload ([`billing_run`]) is known to have done.
pub mod billing {
    /// `Order.total` is called this many times, `multiply` twice per total.
    pub const TOTALS: i64 = 3;
    /// Each `Order.total` calls `json.dumps` this many times (one gap row).
    pub const DUMPS_PER_TOTAL: u32 = 2;
    /// `multiply(a, b)` takes this long.
    pub const MULTIPLY_NS: i64 = 1_000_000;
    /// `validate` fails with this.
    pub const VALIDATE_ERROR: (&str, &str) = ("ValueError", "amount must be positive");
    /// The worker thread's `fetch` waits on the network this many times.
    pub const RECV_CALLS: u32 = 5;
    /// `slow_io` takes this long.
    pub const SLOW_IO_NS: i64 = 50_000_000;
    pub const MAIN_TID: i64 = 1001;
    pub const WORKER_TID: i64 = 1002;
    pub const COMMAND: [&str; 3] = ["python3", "app.py", "--orders=3"];
}

/// An exact-mode run of a small billing program: the main thread runs
/// `<module>` -> `main` -> `Order.total` x3 (each calling `multiply` twice and
/// `json.dumps` untraced), then `validate(-1)` raising `ValueError` (caught in
/// `main`); a worker thread runs `worker` -> `fetch` (untraced `socket.recv`) and
/// `slow_io`.
pub fn billing_run(run_id: &str) -> TraceBuilder {
    use billing::*;
    let mut t = TraceBuilder::exact(run_metadata(run_id, &COMMAND, "exact", "completed"));
    t.thread(MAIN_TID, "MainThread");
    t.thread(WORKER_TID, "worker-1");
    let module = t.call(MAIN_TID, "__main__", "<module>", 1, 0, "{}");
    t.advance(10_000);
    let main = t.call(MAIN_TID, "__main__", "main", 40, 60, "{}");
    t.advance(10_000);
    let worker = t.call(WORKER_TID, "myapp.net", "worker", 5, 0, "{\"n\": \"1\"}");
    for i in 0..TOTALS {
        let total = t.call(
            MAIN_TID,
            "myapp.billing",
            "Order.total",
            12,
            44,
            &format!("{{\"self\": \"<myapp.billing.Order object at 0x7f00{i}>\", \"discount\": \"0.1\"}}"),
        );
        let mut sum = 0;
        for b in [2, 3] {
            t.advance(5_000);
            let m = t.call(
                MAIN_TID,
                "myapp.mathutil",
                "multiply",
                3,
                14,
                &format!("{{\"a\": \"{}\", \"b\": \"{b}\"}}", i + 1),
            );
            t.advance(MULTIPLY_NS);
            sum += (i + 1) * b;
            t.ret(MAIN_TID, m, &((i + 1) * b).to_string());
        }
        t.gap(MAIN_TID, "json", "dumps", DUMPS_PER_TOTAL, 20_000);
        t.advance(5_000);
        t.ret(MAIN_TID, total, &format!("{sum}.0"));
    }
    let fetch = t.call(
        WORKER_TID,
        "myapp.net",
        "fetch",
        20,
        8,
        "{\"url\": \"'http://billing.local/rates'\"}",
    );
    t.gap(WORKER_TID, "socket", "socket.recv", RECV_CALLS, 300_000);
    t.ret(WORKER_TID, fetch, "b'{}'");
    let validate = t.call(
        MAIN_TID,
        "myapp.billing",
        "validate",
        30,
        50,
        "{\"amount\": \"-1\"}",
    );
    t.advance(2_000);
    t.raise(MAIN_TID, validate, VALIDATE_ERROR.0, VALIDATE_ERROR.1);
    let slow = t.call(WORKER_TID, "myapp.net", "slow_io", 60, 9, "{}");
    t.advance(SLOW_IO_NS);
    t.ret(WORKER_TID, slow, "None");
    t.ret(WORKER_TID, worker, "None");
    t.advance(1_000);
    t.ret(MAIN_TID, main, "0");
    t.ret(MAIN_TID, module, "None");
    t
}

/// A sampled run of another program: `<module>` -> `handler` x2 -> `multiply`,
/// with duration bounds one sampling interval (1 ms) wide, stopped (Ctrl-C) while
/// `wait_forever` ran: it and `<module>` end as `unfinished`.
pub fn sampled_run(run_id: &str) -> TraceBuilder {
    let mut t = TraceBuilder::sampled(
        run_metadata(run_id, &["python3", "server.py"], "sampled", "interrupted"),
        1_000_000,
    );
    t.thread(7, "MainThread");
    let module = t.call(7, "__main__", "<module>", 1, 0, "{}");
    for _ in 0..2 {
        t.advance(1_000_000);
        let handler = t.call(
            7,
            "server",
            "handler",
            10,
            3,
            "{\"req\": \"<Request GET />\"}",
        );
        t.advance(1_000_000);
        let m = t.call(
            7,
            "server.math",
            "multiply",
            2,
            11,
            "{\"a\": \"2\", \"b\": \"2\"}",
        );
        t.advance(3_000_000);
        t.ret(7, m, "4");
        t.ret(7, handler, "200");
    }
    let stuck = t.call(7, "server", "wait_forever", 30, 5, "{}");
    t.advance(4_000_000);
    t.unfinished(7, stuck);
    t.unfinished(7, module);
    t
}
