//! Finding the Parquet files of traces, finished or not, and repairing a run whose
//! tracer was killed.
//!
//! A path to read is one of: a finished trace `T.parquet`; `T.parquet` whose tracer
//! was killed (only `T.parquet.parts/` exists) or is still recording; the
//! `T.parquet.parts` folder itself; or a folder of traces (every `*.parquet` and
//! `*.parquet.parts` in it). [`trace_files`] turns it into the Parquet files to read
//! and, per run, its [`RunInfo`] from the files' metadata.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::layout::{is_being_recorded, parts_dir, segment_number, trace_of_parts_dir};
use crate::merge::merge_segments;
use crate::parquet_io::read_run_info;
use crate::run::{RunInfo, RunStatus};

/// One trace: one run and the Parquet files that hold its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// The trace's name, `T.parquet` (which does not exist as a file while the run
    /// is only in segments).
    pub path: PathBuf,
    /// The files to read: `T.parquet`, or the complete segments in order.
    pub files: Vec<PathBuf>,
    /// The run from the file's `tracer.run` (for segments, the newest one's), with
    /// `events` set to the rows actually present.
    pub run: RunInfo,
    /// True when the run stopped cleanly and was merged into `T.parquet` (its
    /// status is not `unfinished`).
    pub finished: bool,
    /// True when the rows come from the `T.parquet.parts` segments.
    pub from_segments: bool,
    /// True when a [`crate::TraceWriter`] holds the segments folder: the run is
    /// being recorded, not killed.
    pub recording: bool,
}

/// The traces under a path given to read.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceFiles {
    /// The traces, ordered by path.
    pub traces: Vec<Trace>,
}

impl TraceFiles {
    /// Every Parquet file to read, all traces together.
    pub fn files(&self) -> Vec<PathBuf> {
        self.traces
            .iter()
            .flat_map(|trace| trace.files.iter().cloned())
            .collect()
    }

    /// The traces whose run did not finish (killed, or still recording).
    pub fn unfinished(&self) -> impl Iterator<Item = &Trace> {
        self.traces.iter().filter(|trace| !trace.finished)
    }
}

/// The Parquet files and runs under `path` (see the module documentation). Segments
/// still under their temporary name are skipped. Errors: [`Error::NotFound`],
/// [`Error::NoTraces`] for a folder without traces, [`Error::NoSegments`],
/// [`Error::NotParquet`] / [`Error::NotATrace`] / [`Error::BadRunInfo`] naming the
/// first file that is not a readable trace.
pub fn trace_files(path: &Path) -> Result<TraceFiles> {
    let traces = if path.is_dir() {
        match trace_of_parts_dir(path) {
            Some(trace) => vec![read_trace(&trace)?],
            None => {
                let names = traces_in_folder(path)?;
                if names.is_empty() {
                    return Err(Error::NoTraces {
                        path: path.to_path_buf(),
                    });
                }
                names
                    .iter()
                    .map(|trace| read_trace(trace))
                    .collect::<Result<Vec<_>>>()?
            }
        }
    } else {
        vec![read_trace(path)?]
    };
    Ok(TraceFiles { traces })
}

/// Merges the segments of a run that did not finish into `T.parquet` (status
/// `unfinished`, rows sorted by `seq`) and removes `T.parquet.parts`, so that one
/// file holds the run. `path` is `T.parquet` or `T.parquet.parts`. A trace that is
/// already one file is left as it is (a leftover segments folder beside it, from a
/// tracer killed while removing it, is removed). Refuses a run still being recorded.
pub fn repair(path: &Path) -> Result<PathBuf> {
    let trace_path = trace_of_parts_dir(path).unwrap_or_else(|| path.to_path_buf());
    let parts = parts_dir(&trace_path);
    let trace = read_trace(&trace_path)?;
    if !trace.from_segments {
        if parts.is_dir() {
            std::fs::remove_dir_all(&parts)
                .map_err(|e| Error::io("remove the leftover segments folder", &parts, e))?;
        }
        return Ok(trace_path);
    }
    if trace.recording {
        return Err(Error::StillRecording {
            path: trace_path,
            pid: Some(trace.run.tracer_pid),
        });
    }
    let mut run = trace.run;
    run.status = RunStatus::Unfinished;
    merge_segments(&trace.files, &trace_path, run)?;
    std::fs::remove_dir_all(&parts)
        .map_err(|e| Error::io("remove the segments folder", &parts, e))?;
    Ok(trace_path)
}

/// The trace in `dir` (`./traces/`) written to most recently: a `*.parquet` file or
/// the segments of a run without one. Errors: [`Error::NotFound`] when `dir` does
/// not exist, [`Error::NoTraces`] when it holds none.
pub fn newest_trace(dir: &Path) -> Result<PathBuf> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for trace in traces_in_folder(dir)? {
        let written = if trace.is_file() {
            trace.clone()
        } else {
            parts_dir(&trace)
        };
        let modified = written
            .metadata()
            .and_then(|meta| meta.modified())
            .map_err(|e| Error::io("read the modification time of", &written, e))?;
        let is_newer = newest
            .as_ref()
            .is_none_or(|(time, path)| (modified, &trace) > (*time, path));
        if is_newer {
            newest = Some((modified, trace));
        }
    }
    newest.map(|(_, path)| path).ok_or_else(|| Error::NoTraces {
        path: dir.to_path_buf(),
    })
}

/// The traces named in `dir`: every `X.parquet` file, and `X.parquet` for every
/// `X.parquet.parts` folder, sorted by name.
fn traces_in_folder(dir: &Path) -> Result<BTreeSet<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound {
                path: dir.to_path_buf(),
            }
        } else {
            Error::io("list", dir, e)
        }
    })?;
    let mut traces = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let path = entry.path();
        let is_dir = entry
            .file_type()
            .map_err(|e| Error::io("read the type of", &path, e))?
            .is_dir()
            || path.is_dir();
        if is_dir {
            if let Some(trace) = trace_of_parts_dir(&path) {
                traces.insert(trace);
            }
        } else if path.extension().is_some_and(|ext| ext == "parquet") {
            traces.insert(path);
        }
    }
    Ok(traces)
}

/// One trace: the finished file if it exists, else its segments.
fn read_trace(trace_path: &Path) -> Result<Trace> {
    if trace_path.is_file() {
        let (mut run, rows) = read_run_info(trace_path)?;
        run.events = rows;
        return Ok(Trace {
            path: trace_path.to_path_buf(),
            files: vec![trace_path.to_path_buf()],
            finished: run.status != RunStatus::Unfinished,
            run,
            from_segments: false,
            recording: false,
        });
    }
    let parts = parts_dir(trace_path);
    if !parts.is_dir() {
        return Err(Error::NotFound {
            path: trace_path.to_path_buf(),
        });
    }
    let segments = segments_in(&parts)?;
    let mut newest_run = None;
    let mut rows = 0;
    for segment in &segments {
        let (run, segment_rows) = read_run_info(segment)?;
        rows += segment_rows;
        newest_run = Some(run);
    }
    let Some(mut run) = newest_run else {
        return Err(Error::NoSegments { path: parts });
    };
    run.events = rows;
    let recording = is_being_recorded(&parts);
    Ok(Trace {
        path: trace_path.to_path_buf(),
        files: segments,
        run,
        finished: false,
        from_segments: true,
        recording,
    })
}

/// The complete segments in `parts`, ordered by number.
fn segments_in(parts: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(parts).map_err(|e| Error::io("list", parts, e))?;
    let mut numbered = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", parts, e))?;
        let name = entry.file_name();
        if let Some(number) = name.to_str().and_then(segment_number) {
            numbered.push((number, entry.path()));
        }
    }
    numbered.sort();
    Ok(numbered.into_iter().map(|(_, path)| path).collect())
}
