//! Helpers shared by the storage tests: a temporary folder, a varied stream of
//! events (every kind, several threads, nulls, non-ASCII text), the JSON a reader
//! should see for them, and running Python readers.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use attach::{Event, EventKind, Source};
use serde_json::{json, Value};

/// A folder under the system temp dir, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "storage-test-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

const KINDS: [EventKind; 7] = [
    EventKind::Call,
    EventKind::Return,
    EventKind::Exception,
    EventKind::Unfinished,
    EventKind::Gap,
    EventKind::Yield,
    EventKind::Resume,
];

/// Names shared between events as producers share them (`Arc<str>` handed out again).
pub struct Names {
    functions: Vec<Arc<str>>,
    modules: Vec<Arc<str>>,
    files: Vec<Arc<str>>,
    threads: Vec<Option<Arc<str>>>,
}

impl Names {
    pub fn new(threads: usize) -> Names {
        let mut thread_names: Vec<Option<Arc<str>>> = vec![Some("MainThread".into())];
        for t in 1..threads {
            // One thread without a Python name (a thread started from C).
            thread_names.push((t != 2).then(|| Arc::from(format!("wörker-{t} 🧵"))));
        }
        Names {
            functions: [
                "main",
                "Order.total",
                "<module>",
                "λ_handler",
                "<listcomp>",
                "計算",
            ]
            .map(Arc::from)
            .to_vec(),
            modules: ["__main__", "myapp.billing", "データ.処理", "myapp.ünïcode"]
                .map(Arc::from)
                .to_vec(),
            files: [
                "/app/main.py",
                "/app/myapp/billing.py",
                "/srv/データ/処理.py",
            ]
            .map(Arc::from)
            .to_vec(),
            threads: thread_names,
        }
    }
}

/// Event `seq` of a deterministic, varied stream: thread, kind, nulls and text all
/// vary with `seq`, so every column holds several values and some nulls.
pub fn event(names: &Names, seq: u64) -> Event {
    let i = seq as usize;
    let thread = i % names.threads.len();
    let kind = KINDS[i % KINDS.len()];
    let has_parent = !i.is_multiple_of(5);
    let function = names.functions[i % names.functions.len()].clone();
    let caller = has_parent.then(|| {
        let f = &names.functions[(i + 1) % names.functions.len()];
        Arc::from(format!(
            "{}.{f}",
            names.modules[(i + 2) % names.modules.len()]
        ))
    });
    let ends_call = matches!(
        kind,
        EventKind::Return | EventKind::Exception | EventKind::Unfinished
    );
    let source = if i.is_multiple_of(3) {
        Source::Exact
    } else {
        Source::Sampled
    };
    Event {
        pid: 4242,
        tid: 100_000 + thread as i64,
        thread_name: names.threads[thread].clone(),
        seq,
        ts_ns: 1_714_566_896_000_000_000 + seq as i64 * 1_234_567 + 89,
        kind,
        source,
        call_id: u64::MAX - 1000 + (seq / 3) % 1000,
        parent_id: has_parent.then_some(seq / 7),
        depth: (i % 40) as i32,
        function,
        module: names.modules[i % names.modules.len()].clone(),
        file: names.files[i % names.files.len()].clone(),
        line: (i % 500) as i32 + 1,
        caller,
        caller_line: has_parent.then_some((i % 77) as i32),
        args: (kind == EventKind::Call)
            .then(|| format!(r#"{{"name": "'Zoë {seq} 🐍'", "n": "{seq}"}}"#)),
        value: match kind {
            EventKind::Return => Some(format!("'résultat {seq}'")),
            EventKind::Exception => Some(format!("invalid literal: 'ß{seq}'")),
            _ => None,
        },
        exception: (kind == EventKind::Exception).then(|| "ValueError".to_string()),
        duration_ns: ends_call.then_some(seq as i64 * 1000),
        duration_max_ns: (ends_call && source == Source::Sampled)
            .then_some(seq as i64 * 1000 + 999),
        count: if kind == EventKind::Gap { 3 } else { 1 },
    }
}

/// The row a reader should see for `event` in run `run_id` (timestamps as integer
/// nanoseconds).
pub fn expected_row(run_id: &str, event: &Event) -> Value {
    json!({
        "run_id": run_id,
        "pid": event.pid,
        "tid": event.tid,
        "thread_name": event.thread_name.as_deref(),
        "seq": event.seq,
        "ts": event.ts_ns,
        "kind": event.kind.as_str(),
        "source": event.source.as_str(),
        "call_id": event.call_id,
        "parent_id": event.parent_id,
        "depth": event.depth,
        "function": &*event.function,
        "module": &*event.module,
        "file": &*event.file,
        "line": event.line,
        "caller": event.caller.as_deref(),
        "caller_line": event.caller_line,
        "args": event.args,
        "value": event.value,
        "exception": event.exception,
        "duration_ns": event.duration_ns,
        "duration_max_ns": event.duration_max_ns,
        "count": event.count,
    })
}

/// Runs `code` with the test venv's Python (pyarrow, DuckDB) and parses the JSON it
/// prints.
pub fn python_json(code: &str, args: &[&str]) -> Value {
    let python = e2e::test_venv_python();
    let out = e2e::run_python(&python, code, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("python printed no JSON ({e}): {out}"))
}

/// What pyarrow sees in the Parquet files `paths` (read as one table): column
/// types, rows (ts cast to int64 ns), row groups, each file's `tracer.run` and mode,
/// and for the first row group of the first file that has one, each column chunk's
/// compression and dictionary page, and the declared sort order.
pub const PYARROW_READ: &str = r#"
import json, os, sys
import pyarrow as pa, pyarrow.parquet as pq
paths = sys.argv[1:]
tables, row_groups, runs, modes, chunks, sorting = [], 0, [], [], None, None
for path in paths:
    f = pq.ParquetFile(path)
    tables.append(f.read())
    row_groups += f.metadata.num_row_groups
    if chunks is None and f.metadata.num_row_groups > 0:
        group = f.metadata.row_group(0)
        chunks = {}
        for i in range(group.num_columns):
            column = group.column(i)
            chunks[column.path_in_schema] = {"compression": column.compression,
                                             "dictionary": column.has_dictionary_page,
                                             "encodings": list(column.encodings)}
        sorting = [[c.column_index, c.descending] for c in group.sorting_columns]
    meta = f.metadata.metadata or {}
    runs.append(json.loads(meta[b"tracer.run"]) if b"tracer.run" in meta else None)
    modes.append(oct(os.stat(path).st_mode & 0o777))
table = pa.concat_tables(tables)
types = {field.name: str(field.type) for field in table.schema}
ts_index = table.schema.get_field_index("ts")
rows = table.set_column(ts_index, "ts", table.column("ts").cast(pa.int64())).to_pylist()
print(json.dumps({"types": types, "num_rows": table.num_rows, "row_groups": row_groups,
                  "runs": runs, "modes": modes, "chunks": chunks, "sorting": sorting,
                  "rows": rows}))
"#;

/// Reads `paths` with pyarrow (see [`PYARROW_READ`]).
pub fn pyarrow_read(paths: &[&Path]) -> Value {
    let args: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    python_json(PYARROW_READ, &args)
}

/// The `seq` column of pyarrow's rows.
pub fn seqs(read: &Value) -> Vec<u64> {
    read["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row["seq"].as_u64().expect("seq"))
        .collect()
}

/// File mode bits of `path`.
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The complete segments in a parts folder, by name.
pub fn segment_files(parts: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(parts)
        .expect("list parts")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "parquet"))
        .collect();
    files.sort();
    files
}
