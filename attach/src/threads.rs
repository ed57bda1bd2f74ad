//! What an OS thread is doing, from `/proc`: on CPU or not, the system call it waits
//! in, and what the file descriptor of that call refers to (a socket's addresses, a
//! pipe, a file). This is what a person asks first about a hung process.

use std::collections::HashMap;

use serde::Serialize;

use crate::memory::{ProcessMemory, RemoteMemory};

/// What a thread is doing, as DESIGN.md names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThreadState {
    /// On a CPU or ready to run (kernel state `R`).
    Running,
    /// Sleeping by its own choice: `time.sleep`, `signal.pause`, or not in a system
    /// call at all while not running.
    Idle,
    /// Waiting in a system call for something else: I/O, a socket, a lock, a child.
    Blocked,
    /// Stopped by a signal (`SIGSTOP`, Ctrl-Z) or held by a debugger (kernel state
    /// `T` or `t`): it runs no further until it is continued, whatever it was doing.
    Stopped,
}

/// The system call a thread waits in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Syscall {
    pub name: String,
    /// The six argument registers, in hex.
    pub args: Vec<String>,
    /// What the call's file descriptor refers to: `tcp 127.0.0.1:8000 (listening)`,
    /// `pipe:[1234]`, a file path.
    pub fd_target: Option<String>,
}

/// The OS side of one thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OsThread {
    pub state: ThreadState,
    pub syscall: Option<Syscall>,
}

/// Reads the state of thread `tid` of process `pid`. A thread that has exited reads
/// as idle with no system call.
pub fn os_thread(pid: i32, tid: i64, sockets: &mut SocketTable) -> OsThread {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap_or_default();
    let kernel_state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].trim_start().chars().next())
        .unwrap_or('?');
    if kernel_state == 'R' {
        return OsThread {
            state: ThreadState::Running,
            syscall: None,
        };
    }
    let stopped = matches!(kernel_state, 'T' | 't');
    let raw =
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).unwrap_or_default();
    let mut fields = raw.split_whitespace();
    // -1: in the kernel but not in a system call (stopped outside one, a page fault).
    let nr = fields
        .next()
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|&nr| nr >= 0);
    let Some(nr) = nr else {
        if stopped {
            return OsThread {
                state: ThreadState::Stopped,
                syscall: None,
            };
        }
        return OsThread {
            state: if raw.starts_with("running") {
                ThreadState::Running
            } else {
                ThreadState::Idle
            },
            syscall: None,
        };
    };
    let args: Vec<u64> = fields
        .take(6)
        .filter_map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .collect();
    let mut info = syscall_info(nr);
    // Python ≤3.10's time.sleep is a select() on no descriptors.
    if matches!(nr, 23 | 270) && args.first() == Some(&0) {
        info.sleeps = true;
    }
    let fd = match info.fd {
        FdArg::First => args.first().map(|&a| a as i32),
        FdArg::PollArray => args
            .first()
            .filter(|_| args.get(1).is_some_and(|&n| n > 0))
            .and_then(|&ptr| RemoteMemory::new(pid).read_i32(ptr).ok()),
        FdArg::None => None,
    };
    let fd_target = fd
        .filter(|&fd| fd >= 0)
        .and_then(|fd| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok())
        .map(|link| sockets.describe(pid, &link.to_string_lossy()));
    OsThread {
        state: if stopped {
            ThreadState::Stopped
        } else if info.sleeps {
            ThreadState::Idle
        } else {
            ThreadState::Blocked
        },
        syscall: Some(Syscall {
            name: info.name.into_owned(),
            args: args.iter().map(|a| format!("{a:#x}")).collect(),
            fd_target,
        }),
    }
}

/// Where a system call keeps the file descriptor it waits on.
#[derive(Debug, Clone, Copy)]
enum FdArg {
    None,
    First,
    /// `poll`/`ppoll`: the first argument points at `struct pollfd[]`; its first fd.
    PollArray,
}

struct SyscallInfo {
    name: std::borrow::Cow<'static, str>,
    fd: FdArg,
    /// Whether waiting in it is a voluntary sleep (idle) rather than blocked.
    sleeps: bool,
}

/// x86_64 system call numbers of the calls a waiting thread is commonly found in.
fn syscall_info(nr: i64) -> SyscallInfo {
    use FdArg::*;
    let (name, fd, sleeps) = match nr {
        0 => ("read", First, false),
        1 => ("write", First, false),
        7 => ("poll", PollArray, false),
        17 => ("pread64", First, false),
        18 => ("pwrite64", First, false),
        19 => ("readv", First, false),
        20 => ("writev", First, false),
        23 => ("select", None, false),
        34 => ("pause", None, true),
        35 => ("nanosleep", None, true),
        42 => ("connect", First, false),
        43 => ("accept", First, false),
        44 => ("sendto", First, false),
        45 => ("recvfrom", First, false),
        46 => ("sendmsg", First, false),
        47 => ("recvmsg", First, false),
        61 => ("wait4", None, false),
        72 => ("fcntl", First, false),
        73 => ("flock", First, false),
        74 => ("fsync", First, false),
        128 => ("rt_sigtimedwait", None, true),
        130 => ("rt_sigsuspend", None, true),
        202 => ("futex", None, false),
        230 => ("clock_nanosleep", None, true),
        232 => ("epoll_wait", First, false),
        247 => ("waitid", None, false),
        270 => ("pselect6", None, false),
        271 => ("ppoll", PollArray, false),
        281 => ("epoll_pwait", First, false),
        288 => ("accept4", First, false),
        299 => ("recvmmsg", First, false),
        307 => ("sendmmsg", First, false),
        441 => ("epoll_pwait2", First, false),
        _ => {
            return SyscallInfo {
                name: format!("syscall_{nr}").into(),
                fd: None,
                sleeps: false,
            }
        }
    };
    SyscallInfo {
        name: name.into(),
        fd,
        sleeps,
    }
}

/// The sockets of a process by inode, read from `/proc/PID/net/*` once per snapshot.
#[derive(Debug, Default)]
pub struct SocketTable {
    by_inode: Option<HashMap<u64, String>>,
}

impl SocketTable {
    /// A readable description of what `link` (a `/proc/PID/fd/N` target) refers to.
    pub fn describe(&mut self, pid: i32, link: &str) -> String {
        let Some(inode) = link
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return link.to_string();
        };
        let table = self.by_inode.get_or_insert_with(|| read_sockets(pid));
        table
            .get(&inode)
            .cloned()
            .unwrap_or_else(|| link.to_string())
    }
}

fn read_sockets(pid: i32) -> HashMap<u64, String> {
    let mut map = HashMap::new();
    for proto in ["tcp", "tcp6", "udp", "udp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{proto}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let (Some(local), Some(remote), Ok(inode)) =
                (parse_addr(f[1]), parse_addr(f[2]), f[9].parse::<u64>())
            else {
                continue;
            };
            let kind = proto.trim_end_matches('6');
            let text = if f[3] == "0A" && kind == "tcp" {
                format!("{kind} {local} (listening)")
            } else if remote.ends_with(":0")
                && (remote.starts_with("0.0.0.0") || remote.starts_with("[::]"))
            {
                format!("{kind} {local}")
            } else {
                format!("{kind} {local} -> {remote}")
            };
            map.insert(inode, text);
        }
    }
    if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/unix")) {
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 7 {
                continue;
            }
            if let Ok(inode) = f[6].parse::<u64>() {
                let path = f.get(7).copied().unwrap_or("");
                let text = if path.is_empty() {
                    "unix socket (unnamed)".to_string()
                } else {
                    format!("unix {path}")
                };
                map.insert(inode, text);
            }
        }
    }
    map
}

/// `0100007F:1F90` (IPv4, little-endian words) or a 32-hex-digit IPv6 address.
fn parse_addr(field: &str) -> Option<String> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    match addr.len() {
        8 => {
            let v = u32::from_str_radix(addr, 16).ok()?;
            let b = v.to_le_bytes();
            Some(format!("{}.{}.{}.{}:{port}", b[0], b[1], b[2], b[3]))
        }
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in addr.as_bytes().chunks(8).enumerate() {
                let word = u32::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word.to_le_bytes());
            }
            Some(format!("[{}]:{port}", std::net::Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_addresses() {
        assert_eq!(
            parse_addr("0100007F:1F90").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(
            parse_addr("00000000000000000000000001000000:0050").as_deref(),
            Some("[::1]:80")
        );
    }
}
