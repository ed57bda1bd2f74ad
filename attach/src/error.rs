//! The errors of reading a target. Each carries the facts; the CLI turns them into
//! `error:` and `hint:` lines.

use crate::memory::MemoryError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no process with pid {0}")]
    NoSuchProcess(i32),
    #[error("no permission to read process {pid}: {detail}")]
    Permission { pid: i32, detail: String },
    #[error("process {pid} ({exe}) is not a Python interpreter: {detail}")]
    NotPython {
        pid: i32,
        exe: String,
        detail: String,
    },
    #[error("process {pid} runs Python {version}, which tracer does not support (3.8 to 3.13)")]
    UnsupportedVersion { pid: i32, version: String },
    #[error("process {0} exited while being read")]
    Exited(i32),
    #[error("cannot read {path}: {reason}")]
    Binary { path: String, reason: String },
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// Bytes were read but do not make sense (an object freed or moved mid-read, or
    /// garbage): the caller retries or counts it.
    #[error("inconsistent read: {0}")]
    Inconsistent(String),
}

impl Error {
    pub(crate) fn inconsistent(what: impl Into<String>) -> Error {
        Error::Inconsistent(what.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
