//! Reading a written trace back with a real Parquet reader (pyarrow from the test
//! venv), so the tests see exactly what any user's reader sees.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::test_venv_python;

/// Every row of the Parquet file(s) at `path` (a file or a glob), as JSON objects with
/// timestamps in nanoseconds, plus the `tracer.run` metadata of the first file.
pub fn read_trace(path: &Path) -> (Vec<Value>, Value) {
    read_traces(&[path])
        .pop()
        .expect("one trace read for one path")
}

/// [`read_trace`] of each path, in one run of the reader (starting pyarrow takes
/// longer than reading a small trace).
pub fn read_traces<P: AsRef<Path>>(paths: &[P]) -> Vec<(Vec<Value>, Value)> {
    let code = r#"
import glob, json, sys
import pyarrow.parquet as pq
import pyarrow as pa
traces = []
for path in sys.argv[1:]:
    files = sorted(glob.glob(path)) or [path]
    rows = []
    meta = None
    for f in files:
        t = pq.read_table(f)
        if meta is None:
            kv = pq.read_metadata(f).metadata or {}
            meta = json.loads(kv.get(b"tracer.run", b"null"))
        t = t.set_column(t.schema.get_field_index("ts"), "ts", t.column("ts").cast(pa.int64()))
        rows.extend(t.to_pylist())
    traces.append({"rows": rows, "run": meta})
print(json.dumps(traces))
"#;
    let out = Command::new(test_venv_python())
        .arg("-c")
        .arg(code)
        .args(paths.iter().map(AsRef::as_ref))
        .output()
        .expect("run pyarrow");
    let shown: Vec<String> = paths
        .iter()
        .map(|p| p.as_ref().display().to_string())
        .collect();
    assert!(
        out.status.success(),
        "pyarrow could not read {}: {}",
        shown.join(", "),
        String::from_utf8_lossy(&out.stderr)
    );
    let traces: Vec<Value> = serde_json::from_slice(&out.stdout).expect("pyarrow JSON");
    traces
        .into_iter()
        .map(|mut v| {
            let rows = v["rows"]
                .as_array_mut()
                .map(std::mem::take)
                .unwrap_or_default();
            (rows, v["run"].take())
        })
        .collect()
}
