//! Which files a trace path stands for, and what their footers say.
//!
//! A trace path is one of (DESIGN.md, "Where traces go"):
//! * a finished trace `T.parquet`;
//! * a killed run: `T.parquet` is missing (or the path names `T.parquet.parts`) and
//!   its segments `T.parquet.parts/part-NNNNNN.parquet` are read instead; segments
//!   still under a temporary name are skipped;
//! * a folder: every `*.parquet` in it and every `*.parquet.parts` folder whose
//!   finished trace is missing, one run each (not recursive).
//!
//! Only footers are read here: the run metadata under `tracer.run`, the schema, and
//! row counts. Events are read by the engine.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use datafusion::parquet::arrow::parquet_to_arrow_schema;
use datafusion::parquet::file::metadata::ParquetMetaDataReader;
use serde_json::{Map, Value};

use crate::error::{QueryError, Result};

/// The key-value metadata key holding a run's JSON object.
pub const RUN_METADATA_KEY: &str = "tracer.run";

/// The suffix of a killed run's segments folder (`T.parquet.parts`).
const PARTS_SUFFIX: &str = ".parts";

/// The events columns every trace file must have (schema version 1).
const REQUIRED_COLUMNS: [&str; 23] = [
    "run_id",
    "pid",
    "tid",
    "thread_name",
    "seq",
    "ts",
    "kind",
    "source",
    "call_id",
    "parent_id",
    "depth",
    "function",
    "module",
    "file",
    "line",
    "caller",
    "caller_line",
    "args",
    "value",
    "exception",
    "duration_ns",
    "duration_max_ns",
    "count",
];

/// One run of a trace path and the files that hold its events.
#[derive(Debug, Clone)]
pub struct RunFiles {
    /// The finished trace file, or the segments folder of a killed run.
    pub path: PathBuf,
    /// The Parquet files holding the run's events (one, or the segments in order).
    pub files: Vec<PathBuf>,
    /// False when the run was read from its segments: the recording did not finish.
    pub finished: bool,
    /// The `tracer.run` object of the file (for segments: of the newest segment).
    pub metadata: Map<String, Value>,
    /// Rows in all of the run's files, from their footers.
    pub rows: u64,
}

impl RunFiles {
    /// The run id from `tracer.run`, or empty when the metadata has none.
    pub fn run_id(&self) -> &str {
        self.metadata
            .get("run_id")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The original command line of the run (`tracer.run.command`), if recorded.
    pub fn command(&self) -> Vec<String> {
        string_list(self.metadata.get("command"))
    }

    /// The `--include` patterns the run was recorded with.
    pub fn include(&self) -> Vec<String> {
        string_list(self.metadata.get("include"))
    }

    /// The `--exclude` patterns the run was recorded with.
    pub fn exclude(&self) -> Vec<String> {
        string_list(self.metadata.get("exclude"))
    }
}

fn string_list(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Finds the runs a trace path stands for and reads their footers.
pub fn locate(path: &Path) -> Result<Vec<RunFiles>> {
    let metadata = std::fs::metadata(path);
    match metadata {
        Ok(meta) if meta.is_dir() => {
            if is_parts_dir(path) {
                Ok(vec![read_segments(path)?])
            } else {
                read_folder(path)
            }
        }
        Ok(_) => Ok(vec![read_trace_file(path)?]),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let parts = parts_dir_of(path);
            if parts.is_dir() {
                Ok(vec![read_segments(&parts)?])
            } else {
                Err(QueryError::NotFound {
                    path: path.to_path_buf(),
                })
            }
        }
        Err(source) => Err(QueryError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The newest trace in `dir` (a finished `*.parquet` or a killed run's segments
/// folder), by modification time: what `tracer query` asks when no path is given.
pub fn newest_trace(dir: &Path) -> Result<PathBuf> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in read_dir_sorted(dir)? {
        if !(is_trace_file_name(&entry) || is_parts_dir(&entry) && entry.is_dir()) {
            continue;
        }
        let modified = std::fs::metadata(&entry)
            .and_then(|m| m.modified())
            .map_err(|source| QueryError::Io {
                path: entry.clone(),
                source,
            })?;
        if newest.as_ref().is_none_or(|(time, _)| modified >= *time) {
            newest = Some((modified, entry));
        }
    }
    newest
        .map(|(_, path)| path)
        .ok_or_else(|| QueryError::EmptyFolder {
            path: dir.to_path_buf(),
        })
}

fn parts_dir_of(trace: &Path) -> PathBuf {
    let mut name = trace.as_os_str().to_owned();
    name.push(PARTS_SUFFIX);
    PathBuf::from(name)
}

fn is_parts_dir(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(PARTS_SUFFIX))
        .is_some_and(|trace| trace.ends_with(".parquet"))
}

fn is_trace_file_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".parquet") && !n.starts_with('.'))
        && path.is_file()
}

/// The number of a segment named `part-NNNNNN.parquet`; `None` for other names
/// (a segment still under its temporary name included).
fn segment_number(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let io_error = |source| QueryError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        entries.push(entry.map_err(io_error)?.path());
    }
    entries.sort();
    Ok(entries)
}

fn read_folder(dir: &Path) -> Result<Vec<RunFiles>> {
    let mut runs = Vec::new();
    for entry in read_dir_sorted(dir)? {
        if is_trace_file_name(&entry) {
            runs.push(read_trace_file(&entry)?);
        } else if is_parts_dir(&entry) && entry.is_dir() {
            let finished_trace = entry.with_extension("");
            if finished_trace.is_file() {
                continue;
            }
            match read_segments(&entry) {
                Ok(run) => runs.push(run),
                Err(QueryError::NoSegments { .. }) => continue,
                Err(other) => return Err(other),
            }
        }
    }
    if runs.is_empty() {
        return Err(QueryError::EmptyFolder {
            path: dir.to_path_buf(),
        });
    }
    Ok(runs)
}

fn read_trace_file(path: &Path) -> Result<RunFiles> {
    let footer = read_footer(path)?;
    Ok(RunFiles {
        path: path.to_path_buf(),
        files: vec![path.to_path_buf()],
        finished: true,
        metadata: footer.run,
        rows: footer.rows,
    })
}

fn read_segments(dir: &Path) -> Result<RunFiles> {
    let mut segments: Vec<(u64, PathBuf)> = read_dir_sorted(dir)?
        .into_iter()
        .filter_map(|p| segment_number(&p).map(|n| (n, p)))
        .filter(|(_, p)| p.is_file())
        .collect();
    segments.sort();
    let Some((_, newest)) = segments.last() else {
        return Err(QueryError::NoSegments {
            path: dir.to_path_buf(),
        });
    };
    let newest = newest.clone();
    let mut rows = 0;
    let mut metadata = Map::new();
    for (_, segment) in &segments {
        let footer = read_footer(segment)?;
        rows += footer.rows;
        if *segment == newest {
            metadata = footer.run;
        }
    }
    Ok(RunFiles {
        path: dir.to_path_buf(),
        files: segments.into_iter().map(|(_, p)| p).collect(),
        finished: false,
        metadata,
        rows,
    })
}

struct Footer {
    run: Map<String, Value>,
    rows: u64,
}

/// Reads the footer of one Parquet file: checks the events columns are there and
/// parses `tracer.run`.
fn read_footer(path: &Path) -> Result<Footer> {
    if path.to_string_lossy().contains(['*', '?', '[']) {
        return Err(QueryError::PatternInPath {
            path: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(|source| QueryError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let not_parquet = |reason: String| QueryError::NotParquet {
        path: path.to_path_buf(),
        reason,
    };
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|e| not_parquet(e.to_string()))?;
    let file_metadata = metadata.file_metadata();
    let key_values = file_metadata.key_value_metadata();
    let schema = parquet_to_arrow_schema(file_metadata.schema_descr(), key_values)
        .map_err(|e| not_parquet(e.to_string()))?;
    let not_a_trace = |reason: String| QueryError::NotATrace {
        path: path.to_path_buf(),
        reason,
    };
    let missing: Vec<&str> = REQUIRED_COLUMNS
        .iter()
        .copied()
        .filter(|name| schema.field_with_name(name).is_err())
        .collect();
    if !missing.is_empty() {
        return Err(not_a_trace(format!(
            "it has no column {}",
            missing.join(", ")
        )));
    }
    let run_json = key_values
        .and_then(|kvs| kvs.iter().find(|kv| kv.key == RUN_METADATA_KEY))
        .and_then(|kv| kv.value.as_deref())
        .ok_or_else(|| not_a_trace(format!("no {RUN_METADATA_KEY} metadata")))?;
    let run = match serde_json::from_str::<Value>(run_json) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Err(not_a_trace(format!(
                "{RUN_METADATA_KEY} is not a JSON object"
            )))
        }
        Err(e) => {
            return Err(not_a_trace(format!(
                "{RUN_METADATA_KEY} is not valid JSON: {e}"
            )))
        }
    };
    if !run.get("run_id").is_some_and(Value::is_string) {
        return Err(not_a_trace(format!("{RUN_METADATA_KEY} has no run_id")));
    }
    Ok(Footer {
        run,
        rows: u64::try_from(file_metadata.num_rows()).unwrap_or(0),
    })
}
