//! Reading a written trace back with a real Parquet reader (pyarrow from the test
//! venv), so the tests see exactly what any user's reader sees.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::test_venv_python;

/// Every row of the Parquet file(s) at `path` (a file or a glob), as JSON objects with
/// timestamps in nanoseconds, plus the `tracer.run` metadata of the first file.
pub fn read_trace(path: &Path) -> (Vec<Value>, Value) {
    let code = r#"
import glob, json, sys
import pyarrow.parquet as pq
import pyarrow as pa
files = sorted(glob.glob(sys.argv[1])) or [sys.argv[1]]
rows = []
meta = None
for f in files:
    t = pq.read_table(f)
    if meta is None:
        kv = pq.read_metadata(f).metadata or {}
        meta = json.loads(kv.get(b"tracer.run", b"null"))
    t = t.set_column(t.schema.get_field_index("ts"), "ts", t.column("ts").cast(pa.int64()))
    rows.extend(t.to_pylist())
print(json.dumps({"rows": rows, "run": meta}))
"#;
    let out = Command::new(test_venv_python())
        .arg("-c")
        .arg(code)
        .arg(path)
        .output()
        .expect("run pyarrow");
    assert!(
        out.status.success(),
        "pyarrow could not read {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Value = serde_json::from_slice(&out.stdout).expect("pyarrow JSON");
    let rows = v["rows"]
        .as_array_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    (rows, v["run"].take())
}
