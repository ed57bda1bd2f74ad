//! Where the pieces of a trace live on disk (DESIGN.md, "Where traces go").
//!
//! A trace `T.parquet` is recorded as segments `T.parquet.parts/part-000001.parquet`,
//! `part-000002.parquet`, ...; each is written as `part-NNNNNN.parquet.tmp` and renamed
//! when complete, so a name ending in `.parquet` is always a whole Parquet file. The
//! finished trace is written as `T.parquet.tmp` and renamed the same way.

use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::utc::UtcTime;

/// The folder `tracer` writes to when no `-o` is given.
pub const TRACES_DIR: &str = "traces";

/// The suffix of a segments folder: `T.parquet` records into `T.parquet.parts`.
pub const PARTS_SUFFIX: &str = ".parts";

/// The suffix of a file still being written.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Mode of every file a trace consists of: they hold argument values.
pub const FILE_MODE: u32 = 0o600;

/// Mode of the segments folder and of folders created for a trace.
pub const DIR_MODE: u32 = 0o700;

/// The segments folder of the trace `trace`: `T.parquet` -> `T.parquet.parts`.
pub fn parts_dir(trace: &Path) -> PathBuf {
    with_suffix(trace, PARTS_SUFFIX)
}

/// The trace a segments folder belongs to (`T.parquet.parts` -> `T.parquet`), or
/// `None` when `path` is not named like one.
pub fn trace_of_parts_dir(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let trace_name = name.strip_suffix(PARTS_SUFFIX)?;
    trace_name
        .ends_with(".parquet")
        .then(|| path.with_file_name(trace_name))
}

/// The temporary name `path` is written under before it is renamed into place.
pub fn temp_path(path: &Path) -> PathBuf {
    with_suffix(path, TEMP_SUFFIX)
}

/// The file name of segment number `number` (from 1): `part-000001.parquet`.
pub fn segment_file_name(number: u64) -> String {
    format!("part-{number:06}.parquet")
}

/// The number of a segment named `part-NNNNNN.parquet`; `None` for any other name
/// (including a segment left under its temporary name).
pub fn segment_number(file_name: &str) -> Option<u64> {
    let digits = file_name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The default trace of a run: `<traces_dir>/<YYYYmmdd-HHMMSS>-<program>-<pid>.parquet`,
/// with `program` reduced to its file name and to characters safe in a file name.
pub fn default_trace_path(
    traces_dir: &Path,
    program: &str,
    pid: i32,
    started: SystemTime,
) -> PathBuf {
    let base = Path::new(program)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut safe: String = base
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        safe.push_str("python");
    }
    let stamp = UtcTime::from_system_time(started).compact();
    traces_dir.join(format!("{stamp}-{safe}-{pid}.parquet"))
}

/// Creates `dir` and its missing parents with mode 0700 (existing ones are left as
/// they are).
pub(crate) fn create_dirs(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| Error::io("create the folder", dir, e))
}

/// Creates the segments folder `dir` with mode 0700, failing if it exists.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new().mode(DIR_MODE).create(dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::AlreadyExists {
                path: dir.to_path_buf(),
            }
        } else {
            Error::io("create the folder", dir, e)
        }
    })
}

/// Creates `path` for writing with mode 0600, replacing a leftover file of that name
/// (a temporary name from a writer that was killed).
pub(crate) fn create_private_file(path: &Path) -> Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("remove the leftover", path, e)),
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| Error::io("create", path, e))
}

/// Opens the segments folder `dir` and locks it for the writer's lifetime. The
/// kernel drops the lock when the writer closes it or dies (SIGKILL included), so a
/// reader can tell a run being recorded from a killed one ([`is_being_recorded`]).
pub(crate) fn lock_parts_dir(dir: &Path) -> Result<File> {
    let handle = File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    handle
        .try_lock()
        .map_err(|e| Error::io("lock", dir, std::io::Error::from(e)))?;
    Ok(handle)
}

/// Whether a live writer holds the segments folder `dir` (see [`lock_parts_dir`]).
pub fn is_being_recorded(dir: &Path) -> bool {
    let Ok(handle) = File::open(dir) else {
        return false;
    };
    matches!(
        handle.try_lock_shared(),
        Err(std::fs::TryLockError::WouldBlock)
    )
}

/// Renames a complete file from its temporary name into place.
pub(crate) fn rename_into_place(temp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(temp, path).map_err(|e| Error::io("rename into place", temp, e))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn segment_names_round_trip_and_temporary_names_are_not_segments() {
        assert_eq!(segment_file_name(1), "part-000001.parquet");
        assert_eq!(segment_file_name(1_234_567), "part-1234567.parquet");
        assert_eq!(segment_number("part-000001.parquet"), Some(1));
        assert_eq!(segment_number("part-1234567.parquet"), Some(1_234_567));
        assert_eq!(segment_number("part-000001.parquet.tmp"), None);
        assert_eq!(segment_number("part-.parquet"), None);
        assert_eq!(segment_number("part-00x001.parquet"), None);
        assert_eq!(segment_number("other.parquet"), None);
    }

    #[test]
    fn parts_dir_and_trace_name_map_to_each_other() {
        let trace = Path::new("/tmp/t/run 1.parquet");
        let parts = parts_dir(trace);
        assert_eq!(parts, Path::new("/tmp/t/run 1.parquet.parts"));
        assert_eq!(trace_of_parts_dir(&parts).as_deref(), Some(trace));
        assert_eq!(trace_of_parts_dir(Path::new("/tmp/t/folder.parts")), None);
        assert_eq!(temp_path(trace), Path::new("/tmp/t/run 1.parquet.tmp"));
    }

    #[test]
    fn default_trace_name_has_time_program_and_pid() {
        // `date -u -d @1714566896` = Wed May  1 12:34:56 UTC 2024.
        let started = UNIX_EPOCH + Duration::from_secs(1_714_566_896);
        let path = default_trace_path(Path::new("traces"), "/usr/bin/my app", 4321, started);
        assert_eq!(
            path,
            Path::new("traces/20240501-123456-my_app-4321.parquet")
        );
        let path = default_trace_path(Path::new("traces"), "", 7, started);
        assert_eq!(path, Path::new("traces/20240501-123456-python-7.parquet"));
    }
}
