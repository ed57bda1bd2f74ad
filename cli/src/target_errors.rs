//! The words for every way reading a target can fail, each with the command or step
//! that fixes it.

use attach::Error;

use crate::error::CliError;

/// Turns a reader error into an `error:` line and a `hint:`.
pub fn describe(e: Error) -> CliError {
    match &e {
        Error::NoSuchProcess(pid) => CliError::new(format!("no process with pid {pid}"))
            .hint("list Python processes with `pgrep -a python`"),
        Error::Permission { pid, .. } => CliError::new(e.to_string()).hint(format!(
            "run tracer as the target's user or as root (`sudo tracer ... --pid {pid}`); \
             in a container, add the SYS_PTRACE capability"
        )),
        Error::NotPython { pid, .. } => CliError::new(e.to_string()).hint(format!(
            "tracer reads CPython 3.8 to 3.13; check what pid {pid} runs with `cat /proc/{pid}/cmdline | tr '\\0' ' '`"
        )),
        Error::UnsupportedVersion { .. } => CliError::new(e.to_string())
            .hint("run the program under CPython 3.8 to 3.13"),
        Error::Exited(_) => CliError::new(e.to_string()).hint("the process ended; start it again and retry"),
        Error::Binary { .. } => CliError::new(e.to_string())
            .hint("the interpreter's binary must be readable by tracer (through /proc/PID/root)"),
        Error::Memory(_) | Error::Inconsistent(_) => {
            CliError::new(format!("could not get a consistent read of the process: {e}"))
                .hint("the process changes very fast or is shutting down; try again")
        }
    }
}
