//! The facts about one recording, stored as one JSON object under the Parquet
//! key-value metadata key `tracer.run` (DESIGN.md, "The events table").
//!
//! Every segment carries the [`RunInfo`] as known when it was written (status
//! `unfinished`); the finished trace carries the final one. Readers tolerate fields
//! they do not know and fields that are missing (defaults), so the object can grow.

use std::io::Read;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::schema::SCHEMA_VERSION;
use crate::utc::rfc3339;

/// How the events of a run were produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Read from outside by sampling stacks (the default).
    Sampled,
    /// Streamed by a hook inside the target (`--exact`).
    Exact,
}

impl Mode {
    /// The text stored in `tracer.run.mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sampled => "sampled",
            Mode::Exact => "exact",
        }
    }
}

/// Why a recording stopped (or that it has not, or was killed before it could say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// `record`: the command ran to its end and the trace was written.
    Completed,
    /// `attach`: the target process exited while it was traced.
    TargetExited,
    /// The user stopped the recording (Ctrl-C, SIGTERM).
    Interrupted,
    /// `attach --duration` ran out.
    DurationReached,
    /// `record --timeout` ran out and the command was stopped.
    Timeout,
    /// The recording stopped on an error of the tracer (the target could not be read).
    Failed,
    /// Still recording, or the tracer was killed before it finished the trace.
    Unfinished,
}

impl RunStatus {
    /// The text stored in `tracer.run.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Completed => "completed",
            RunStatus::TargetExited => "target_exited",
            RunStatus::Interrupted => "interrupted",
            RunStatus::DurationReached => "duration_reached",
            RunStatus::Timeout => "timeout",
            RunStatus::Failed => "failed",
            RunStatus::Unfinished => "unfinished",
        }
    }
}

/// The run-level facts of one recording (`tracer.run`). One trace file holds one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The events table's version ([`SCHEMA_VERSION`] when written by this crate).
    pub schema_version: u32,
    /// The version of the `tracer` that wrote the trace.
    pub tracer_version: String,
    /// The id in every row's `run_id` column ([`new_run_id`]).
    pub run_id: String,
    /// `record`: the command line launched; `attach`: the target's own command line.
    pub command: Vec<String>,
    /// The target's working directory.
    pub cwd: String,
    /// The traced process (with `--subprocesses`, the first one).
    pub pid: i32,
    /// The target's CPython version, `3.12.1`; null when it was never learnt (the
    /// launched command failed before Python started).
    pub python_version: Option<String>,
    /// The target's interpreter executable.
    pub python_executable: Option<String>,
    /// Sampled from outside or exact from a hook.
    pub mode: Mode,
    /// The sampling rate asked for (sampled mode); null in exact mode.
    pub rate_hz: Option<u32>,
    /// When recording started, RFC 3339 UTC.
    pub started_at: String,
    /// When recording stopped, RFC 3339 UTC; null while recording or when killed.
    pub ended_at: Option<String>,
    /// Why recording stopped.
    pub status: RunStatus,
    /// The target's exit code, when it exited while traced.
    pub exit_code: Option<i32>,
    /// Sampling ticks taken (sampled mode).
    pub samples: u64,
    /// Sampling ticks that failed to read a consistent stack and were skipped.
    pub sample_errors: u64,
    /// Sampled mode: sampling ticks that could not be taken on time and were skipped
    /// (the sampler fell behind the rate asked for).
    #[serde(default)]
    pub late_samples: u64,
    /// Sampled mode: the longest time between two consecutive samples, in
    /// nanoseconds (the sampler held off by a busy machine); calls shorter than this
    /// may be missing. Null in exact mode.
    #[serde(default)]
    pub max_sample_interval_ns: Option<u64>,
    /// Rows in the trace (the writer keeps this up to date).
    pub events: u64,
    /// Events lost before reaching the writer (a full transport buffer in exact mode).
    pub dropped_events: u64,
    /// `--include` module patterns, as given.
    #[serde(default)]
    pub include: Vec<String>,
    /// `--exclude` module patterns, as given.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `--redact` names added to the built-in secret names (names only, never values).
    #[serde(default)]
    pub redact: Vec<String>,
    /// False with `--no-args`: the `args` and `value` columns were not captured.
    #[serde(default = "default_true")]
    pub capture_args: bool,
    /// True when `record` launched the target, false when `attach` joined it.
    #[serde(default)]
    pub launched: bool,
    /// True with `--subprocesses`: child processes were traced into the same run.
    #[serde(default)]
    pub subprocesses: bool,
    /// The machine the run was recorded on, to tell traces from several hosts apart.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The process id of the tracer itself.
    #[serde(default)]
    pub tracer_pid: u32,
    /// Exact mode with `--max-calls`: the functions whose calls past the limit were
    /// counted, not recorded, so that the trace says so after the live report.
    #[serde(default)]
    pub limited_functions: Vec<LimitedFunction>,
}

/// A function `--max-calls` limited: how many of its calls were counted only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitedFunction {
    pub pid: i32,
    pub module: String,
    pub function: String,
    pub calls_not_recorded: u64,
}

fn default_true() -> bool {
    true
}

impl RunInfo {
    /// Sets the `--redact` names and redacts the command line with them and the
    /// built-in secret names ([`attach::redact::redact_command`]): the command is
    /// kept in every file's metadata, and a password given on it must not be.
    pub fn set_redact(&mut self, names: Vec<String>) {
        self.command = attach::redact::redact_command(&self.command, &names);
        self.redact = names;
    }

    /// A run starting now with a fresh id, status `unfinished` and zero counters; the
    /// caller fills in what it knows about the target.
    pub fn new(command: Vec<String>, pid: i32, mode: Mode) -> RunInfo {
        RunInfo {
            schema_version: SCHEMA_VERSION,
            tracer_version: env!("CARGO_PKG_VERSION").to_string(),
            run_id: new_run_id(),
            command,
            cwd: std::env::current_dir()
                .map(|dir| dir.to_string_lossy().into_owned())
                .unwrap_or_default(),
            pid,
            python_version: None,
            python_executable: None,
            mode,
            rate_hz: None,
            started_at: rfc3339(SystemTime::now()),
            ended_at: None,
            status: RunStatus::Unfinished,
            exit_code: None,
            samples: 0,
            sample_errors: 0,
            late_samples: 0,
            max_sample_interval_ns: None,
            events: 0,
            dropped_events: 0,
            include: Vec::new(),
            exclude: Vec::new(),
            redact: Vec::new(),
            capture_args: true,
            launched: false,
            subprocesses: false,
            hostname: hostname(),
            tracer_pid: std::process::id(),
            limited_functions: Vec::new(),
        }
    }

    /// The JSON stored under `tracer.run`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("RunInfo holds only JSON-representable values")
    }

    /// Parses the JSON stored under `tracer.run`.
    pub fn from_json(text: &str) -> Result<RunInfo, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// A fresh run id: 20 hex digits, the Unix time in seconds (8), the tracer's pid
/// (low 16 bits, 4) and 32 random bits from `/dev/urandom` (8). Ids sort by start
/// second, and two tracers starting in the same second differ by pid and randomness.
pub fn new_run_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let pid = std::process::id();
    format!("{:08x}{:04x}{:08x}", secs as u32, pid as u16, random_u32())
}

/// 32 random bits from `/dev/urandom`; if it cannot be read (a chroot without
/// `/dev`), the standard library's per-process random hash keys mixed with the clock.
fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    let from_urandom = std::fs::File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut bytes))
        .is_ok();
    if from_urandom {
        return u32::from_ne_bytes(bytes);
    }
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish() as u32
}

fn hostname() -> Option<String> {
    let text = std::fs::read_to_string(Path::new("/proc/sys/kernel/hostname")).ok()?;
    let name = text.trim();
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_mode_serialise_as_design_md_says() {
        let all = [
            (RunStatus::Completed, "completed"),
            (RunStatus::TargetExited, "target_exited"),
            (RunStatus::Interrupted, "interrupted"),
            (RunStatus::DurationReached, "duration_reached"),
            (RunStatus::Timeout, "timeout"),
            (RunStatus::Failed, "failed"),
            (RunStatus::Unfinished, "unfinished"),
        ];
        for (status, text) in all {
            assert_eq!(serde_json::to_value(status).unwrap(), text);
            assert_eq!(status.as_str(), text);
        }
        assert_eq!(serde_json::to_value(Mode::Exact).unwrap(), "exact");
        assert_eq!(serde_json::to_value(Mode::Sampled).unwrap(), "sampled");
    }

    #[test]
    fn run_ids_are_unique_hex_starting_with_the_time() {
        let ids: Vec<String> = (0..1000).map(|_| new_run_id()).collect();
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for id in &ids {
            assert_eq!(id.len(), 20, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
            let id_secs = u64::from_str_radix(&id[..8], 16).unwrap();
            assert!(secs.abs_diff(id_secs) <= 1, "{id} vs {secs}");
            assert_eq!(&id[8..12], format!("{:04x}", std::process::id() as u16));
        }
    }

    #[test]
    fn a_run_round_trips_through_json_and_old_objects_still_parse() {
        let mut run = RunInfo::new(vec!["python3".into(), "app.py".into()], 42, Mode::Sampled);
        run.include = vec!["myapp.*".into()];
        run.exit_code = Some(3);
        let back = RunInfo::from_json(&run.to_json()).unwrap();
        assert_eq!(back, run);

        let minimal = r#"{"schema_version":1,"tracer_version":"0.1.0","run_id":"x",
            "command":["a"],"cwd":"/","pid":1,"python_version":null,
            "python_executable":null,"mode":"exact","rate_hz":null,
            "started_at":"2024-01-01T00:00:00.000000Z","ended_at":null,
            "status":"interrupted","exit_code":null,"samples":0,"sample_errors":0,
            "events":5,"dropped_events":0,"a_field_from_the_future":true}"#;
        let parsed = RunInfo::from_json(minimal).unwrap();
        assert_eq!(parsed.status, RunStatus::Interrupted);
        assert_eq!(parsed.events, 5);
        assert!(parsed.include.is_empty());
        assert!(parsed.capture_args);
    }
}
