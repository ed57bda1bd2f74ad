//! Finding the interpreter in a target process: which binary holds `_PyRuntime`
//! (a shared `libpython3.X.so` or a static executable), where it is loaded, which
//! Python version it is, and so which [`Layout`] to read it with.

use std::path::{Path, PathBuf};

use python_offsets::debug_offsets::{DebugOffsets, SIZE_313};
use python_offsets::{Layout, Version};

use crate::elf::BinaryInfo;
use crate::error::{Error, Result};
use crate::memory::{MemoryError, ProcessMemory, RemoteMemory};

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub offset: u64,
    pub path: String,
}

/// Parses `/proc/PID/maps`.
pub fn read_maps(pid: i32) -> Result<Vec<MapEntry>> {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| proc_error(pid, e))?;
    Ok(text.lines().filter_map(parse_map_line).collect())
}

fn parse_map_line(line: &str) -> Option<MapEntry> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let perms = fields.next()?.to_string();
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let _dev = fields.next()?;
    let _inode = fields.next()?;
    let path = fields.collect::<Vec<_>>().join(" ");
    let (start, end) = range.split_once('-')?;
    Some(MapEntry {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        perms,
        offset,
        path,
    })
}

/// `pid`, or when its main thread has ended (a zombie while the process runs on) the
/// first of its threads that has not.
fn live_task(pid: i32) -> i32 {
    let ended = |path: String| {
        std::fs::read_to_string(path).is_ok_and(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("State:"))
                .is_some_and(|state| state.trim_start().starts_with(['Z', 'X']))
        })
    };
    if !ended(format!("/proc/{pid}/status")) {
        return pid;
    }
    let mut tasks = crate::walker::task_ids(pid);
    tasks.sort_unstable();
    tasks
        .into_iter()
        .filter_map(|tid| i32::try_from(tid).ok())
        .find(|&tid| tid != pid && !ended(format!("/proc/{pid}/task/{tid}/status")))
        .unwrap_or(pid)
}

/// Turns an error of reading `/proc/PID/...` into the user's words.
pub(crate) fn proc_error(pid: i32, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            if Path::new(&format!("/proc/{pid}")).exists() {
                Error::Exited(pid)
            } else {
                Error::NoSuchProcess(pid)
            }
        }
        std::io::ErrorKind::PermissionDenied => Error::Permission {
            pid,
            detail: e.to_string(),
        },
        _ => Error::Binary {
            path: format!("/proc/{pid}"),
            reason: e.to_string(),
        },
    }
}

/// The kernel's flag of a kernel thread (`PF_KTHREAD`, include/linux/sched.h).
const PF_KTHREAD: u64 = 0x0020_0000;

/// A task's `/proc/PID/stat`, read once, for its numbered fields.
pub(crate) struct ProcStat(String);

impl ProcStat {
    pub(crate) fn read(pid: i32) -> Option<ProcStat> {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .map(ProcStat)
    }

    /// Field `n` as `proc(5)` numbers them (3 state, 9 flags, 22 starttime, 26
    /// start_code, 28 start_stack), for `n >= 3`: the fields after the command name,
    /// which is in parentheses and may hold spaces.
    pub(crate) fn field<T: std::str::FromStr>(&self, n: usize) -> Option<T> {
        let rest = &self.0[self.0.rfind(')')? + 1..];
        rest.split_whitespace().nth(n.checked_sub(3)?)?.parse().ok()
    }
}

/// How long after its start a process that does not look like Python is looked at
/// again (see [`PythonProcess::open_named`]).
const YOUNG_PROCESS: std::time::Duration = std::time::Duration::from_millis(500);

/// How long ago process `pid` started (`/proc/PID/stat` field 22, in clock ticks
/// since boot, against `/proc/uptime`).
fn process_age(pid: i32) -> Option<std::time::Duration> {
    let start_ticks: f64 = ProcStat::read(pid)?.field(22)?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf only reads a system constant.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks_per_second <= 0 {
        return None;
    }
    let age = uptime - start_ticks / ticks_per_second as f64;
    Some(std::time::Duration::from_secs_f64(age.max(0.0)))
}

/// A Python process, found and ready to be read.
#[derive(Debug, Clone)]
pub struct PythonProcess {
    pub pid: i32,
    pub mem: RemoteMemory,
    pub layout: Layout,
    pub version: Version,
    /// The target's executable (`/proc/PID/exe`).
    pub executable: String,
    /// Address of `_PyRuntime`.
    pub runtime: u64,
    /// Address of `PyCode_Type`, to tell code objects from other executables (3.13).
    pub code_type: Option<u64>,
    /// False while `version.micro` is still to be read: before 3.11 the micro is read
    /// from the buffer `Py_GetVersion` fills while the interpreter starts, and a
    /// process opened before that has only its binary's name to go by (micro 0).
    /// True once read, or when the binary has no such buffer to wait for.
    pub micro_known: bool,
}

impl PythonProcess {
    /// Finds the interpreter of the process a user named (`dump --pid`, `attach
    /// --pid`): as [`PythonProcess::open`], but a process younger than
    /// [`YOUNG_PROCESS`] that does not look like Python yet is looked at again every
    /// few milliseconds until it is that old. One opened as it is exec'ing (`python
    /// x.py & tracer dump --pid $!`) can show Python's executable before its memory
    /// holds Python's symbols. (Loops that look at every child again and again use
    /// `open`, which does not wait.)
    pub fn open_named(pid: i32) -> Result<PythonProcess> {
        loop {
            match PythonProcess::open(pid) {
                Err(Error::NotPython { .. })
                    if process_age(pid).is_some_and(|age| age < YOUNG_PROCESS) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                found => return found,
            }
        }
    }

    /// Finds the interpreter of process `pid`.
    pub fn open(pid: i32) -> Result<PythonProcess> {
        if pid <= 0 || !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(Error::NoSuchProcess(pid));
        }
        // Read through a live thread: a process whose main thread has ended (it
        // called pthread_exit) runs on, but its own id no longer has an address space.
        let reader = live_task(pid);
        let executable = match std::fs::read_link(format!("/proc/{reader}/exe")) {
            Ok(path) => path.to_string_lossy().into_owned(),
            // A kernel thread has no executable, and lives on. A process that is
            // exiting has none either (its memory is gone before it is a zombie).
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && !crate::sampler::target_gone(reader) =>
            {
                let flags = ProcStat::read(reader).and_then(|stat| stat.field::<u64>(9));
                if flags.is_some_and(|flags| flags & PF_KTHREAD == 0) {
                    return Err(Error::Exited(pid));
                }
                let comm =
                    std::fs::read_to_string(format!("/proc/{reader}/comm")).unwrap_or_default();
                return Err(Error::NotPython {
                    pid,
                    exe: format!("[{}]", comm.trim()),
                    detail: "it has no executable (a kernel thread)".into(),
                });
            }
            Err(e) => return Err(proc_error(pid, e)),
        };
        let maps = read_maps(reader)?;
        let (binary, name) = find_python_binary(reader, &maps, &executable)?;
        let mem = RemoteMemory::new(reader);
        let runtime = binary
            .symbol("_PyRuntime")
            .ok_or_else(|| Error::NotPython {
                pid,
                exe: executable.clone(),
                detail: "no _PyRuntime symbol".into(),
            })?;
        let (version, micro_known) =
            detect_version(&mem, &binary, &name).ok_or_else(|| Error::NotPython {
                pid,
                exe: executable.clone(),
                detail: "cannot tell the Python version".into(),
            })?;
        let mut layout = Layout::for_version(version).ok_or_else(|| Error::UnsupportedVersion {
            pid,
            // Before the interpreter has set up, an old Python's micro is not known
            // yet (it reads as 0): `3.7`, not `3.7.0` for a 3.7.16.
            version: if micro_known {
                version.to_string()
            } else {
                format!("{}.{}", version.major, version.minor)
            },
        })?;
        if version.minor >= 13 {
            let bytes = mem
                .read_vec(runtime, SIZE_313)
                .map_err(|e| read_error(pid, e))?;
            match DebugOffsets::parse(&bytes) {
                Ok(debug) => layout.apply_debug_offsets(&debug),
                Err(e) => {
                    return Err(Error::NotPython {
                        pid,
                        exe: executable,
                        detail: format!("_Py_DebugOffsets unusable: {e:?}"),
                    })
                }
            }
        }
        Ok(PythonProcess {
            pid,
            mem,
            layout,
            version: layout.version,
            executable,
            runtime,
            code_type: binary.symbol("PyCode_Type"),
            micro_known,
        })
    }

    /// The first interpreter state (`_PyRuntime.interpreters.head`), checked to hold at
    /// least one thread that points back at it.
    pub fn interpreter(&self) -> Result<u64> {
        let head = self
            .mem
            .read_u64(self.runtime + self.layout.runtime.interpreters_head)
            .map_err(|e| read_error(self.pid, e))?;
        if head == 0 {
            return Err(Error::inconsistent(
                "the interpreter is not initialised yet",
            ));
        }
        Ok(head)
    }
}

/// A failed read, told apart from a process that has gone.
pub(crate) fn read_error(pid: i32, e: MemoryError) -> Error {
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Error::Exited(pid);
    }
    match e {
        MemoryError::Permission(pid) => Error::Permission {
            pid,
            detail: "process_vm_readv was refused (ptrace permission)".into(),
        },
        MemoryError::Gone(pid) => Error::Exited(pid),
        other => Error::Memory(other),
    }
}

/// `X.Y` of a file named `pythonX.Y...` or `libpythonX.Y...` when that is a CPython
/// older than 3.8.
fn old_python_named(path: &str) -> Option<String> {
    let name = Path::new(path).file_name()?.to_str()?;
    let rest = name
        .strip_prefix("libpython")
        .or_else(|| name.strip_prefix("python"))?;
    let (major, rest) = rest.split_once('.')?;
    let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let (major, minor): (u32, u32) = (major.parse().ok()?, minor.parse().ok()?);
    (major < 3 || (major == 3 && minor < 8)).then(|| format!("{major}.{minor}"))
}

/// The loaded binary that holds `_PyRuntime`: a `libpython3.X` if one is mapped,
/// else the executable. Returns its symbols and its file name.
pub(crate) fn find_python_binary(
    pid: i32,
    maps: &[MapEntry],
    executable: &str,
) -> Result<(BinaryInfo, String)> {
    let is_libpython = |path: &str| {
        Path::new(path)
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("libpython3") && n.contains(".so"))
    };
    let mut candidates: Vec<(String, PathBuf)> = Vec::new();
    if let Some(lib) = maps.iter().find(|m| is_libpython(&m.path)) {
        let local = PathBuf::from(format!("/proc/{pid}/root{}", lib.path));
        candidates.push((lib.path.clone(), local));
    }
    candidates.push((
        executable.to_string(),
        PathBuf::from(format!("/proc/{pid}/exe")),
    ));
    let mut last_error = None;
    for (path, local) in candidates {
        let Some(base) = maps
            .iter()
            .filter(|m| m.path == path || (path == executable && m.path.starts_with(executable)))
            .map(|m| m.start - m.offset)
            .min()
        else {
            continue;
        };
        match BinaryInfo::load(&local, base) {
            Ok(info) if info.symbol("_PyRuntime").is_some() => {
                return Ok((info, path));
            }
            Ok(_) => {}
            Err(Error::Binary { reason, .. }) if reason.contains("ermission") => {
                return Err(Error::Permission {
                    pid,
                    detail: reason,
                });
            }
            Err(e) => last_error = Some(e),
        }
    }
    if last_error.is_none() {
        // CPython before 3.7 has no `_PyRuntime`: a `python2.7` or `libpython3.6m.so`
        // is told as the old Python it is, not as something else.
        let names = std::iter::once(executable).chain(maps.iter().map(|m| m.path.as_str()));
        if let Some(version) = names.filter_map(old_python_named).next() {
            return Err(Error::UnsupportedVersion {
                pid,
                version: format!("{version} (by its file name)"),
            });
        }
    }
    Err(Error::NotPython {
        pid,
        exe: executable.to_string(),
        detail: match last_error {
            Some(e) => e.to_string(),
            None => "neither the executable nor a mapped libpython has a _PyRuntime symbol".into(),
        },
    })
}

/// The version from `Py_Version` (3.11+), else from the binary's name for the minor
/// and its `PY_VERSION` string for the micro; and whether the micro is settled: found,
/// or not to be found later (no version buffer that the interpreter fills).
fn detect_version(mem: &RemoteMemory, binary: &BinaryInfo, name: &str) -> Option<(Version, bool)> {
    if let Some(addr) = binary.symbol("Py_Version") {
        if let Ok(hex) = mem.read_u32(addr) {
            let v = Version::from_hex(hex);
            if v.major == 3 {
                return Some((v, true));
            }
        }
    }
    let file_name = Path::new(name).file_name()?.to_string_lossy().into_owned();
    let from_name = Version::parse_prefix(&file_name);
    let mut strings: Vec<Version> = binary
        .symbols
        .iter()
        .filter(|(name, _)| crate::elf::is_version_buffer(name))
        .filter_map(|(_, &addr)| mem.read_vec(addr, 16).ok())
        .filter_map(|raw| {
            let end = raw
                .iter()
                .position(|&b| b == b' ' || b == 0)
                .unwrap_or(raw.len());
            std::str::from_utf8(&raw[..end])
                .ok()
                .and_then(Version::parse_prefix)
        })
        .collect();
    strings.extend(
        binary
            .version_strings
            .iter()
            .filter_map(|s| Version::parse_prefix(s)),
    );
    let will_be_written = binary
        .symbols
        .keys()
        .any(|name| crate::elf::is_version_buffer(name));
    match from_name {
        Some(v) => Some(
            strings
                .into_iter()
                .find(|s| s.minor == v.minor)
                .map_or((v, !will_be_written), |s| (s, true)),
        ),
        None if strings.len() == 1 => strings.first().map(|&s| (s, true)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_python_is_told_by_its_file_name() {
        assert_eq!(
            old_python_named("/usr/bin/python2.7").as_deref(),
            Some("2.7")
        );
        assert_eq!(
            old_python_named("/opt/lib/libpython3.6m.so.1.0").as_deref(),
            Some("3.6")
        );
        assert_eq!(old_python_named("/usr/bin/python3.11"), None);
        assert_eq!(old_python_named("/usr/bin/python3"), None);
        assert_eq!(old_python_named("/usr/bin/node"), None);
    }

    #[test]
    fn map_lines_with_and_without_paths() {
        let m = parse_map_line(
            "7f1c2a000000-7f1c2a200000 r-xp 00001000 08:01 1234   /usr/lib/libpython3.9.so.1.0",
        )
        .unwrap();
        assert_eq!(m.start, 0x7f1c2a000000);
        assert_eq!(m.offset, 0x1000);
        assert_eq!(m.path, "/usr/lib/libpython3.9.so.1.0");
        let anon = parse_map_line("7ffd1000-7ffd2000 rw-p 00000000 00:00 0").unwrap();
        assert_eq!(anon.path, "");
    }
}
