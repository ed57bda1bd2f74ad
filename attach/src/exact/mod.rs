//! Exact mode: a hook inside each traced Python process reports every call, return,
//! yield, resume and exception of the included code, with argument and return-value
//! reprs and exact timing, over a private Unix socket; this module turns that into
//! [`Event`](crate::Event)s (`source = exact`).
//!
//! # Using it
//!
//! ```no_run
//! use std::process::Command;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use attach::exact::{ExactOptions, ExactSession};
//!
//! let session = ExactSession::new(ExactOptions::default())?;
//! let mut child = Command::new("python3")
//!     .arg("app.py")
//!     .envs(session.child_env())
//!     .spawn()?;
//! let stop = AtomicBool::new(false);
//! let mut events: Vec<attach::Event> = Vec::new();
//! let stats = std::thread::scope(|scope| {
//!     let receiver = scope.spawn(|| session.run(&mut events, &stop));
//!     let status = child.wait();
//!     stop.store(true, Ordering::SeqCst);
//!     status.map(|_| receiver.join())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`ExactSession::new`] makes a private folder (mode 0700) holding the socket, and
//! finds or writes the bootstrap (`sitecustomize.py`, the hook and its native module,
//! written from this crate) in the user's cache, where Python compiles the hook once
//! (see `cached_boot_dir`; a second private folder when that cannot be used);
//! [`ExactSession::child_env`] gives the variables that make a Python process load
//! the hook: the bootstrap folder first on `PYTHONPATH` and `TRACER_EXACT` (socket,
//! one-time token, options). [`ExactSession::run`] accepts connections and decodes
//! them until it is told to stop ([`ExactSession::wake`] makes it look at once) and
//! every connection has ended (or [`ExactOptions::grace`] after the stop, but for
//! what processes that have exited left in their sockets, which is read to the end),
//! then returns [`ExactStats`]. The private folder is removed when the session is
//! dropped; the cached bootstrap stays for the next session.
//!
//! Any process that presents the token is accepted, whoever started it, so a loader
//! injected into a running process can connect the same way ([`ExactSession::socket_path`],
//! [`ExactSession::token`]); a peer of another user is refused (`SO_PEERCRED`).
//!
//! # What the hook does in the target
//!
//! * 3.12+: `sys.monitoring` under a free tool id (3, 4, 5, then 1 and 0; never one
//!   in use, so coverage, debuggers and cProfile's id 2 keep working). The callbacks
//!   are native where the accelerator loads (see below), else Python. Global events
//!   `PY_START`, `PY_THROW` and `PY_UNWIND`; the first `PY_START` of a code object
//!   decides (the `--include`/`--exclude` rules of [`crate::filter`]) and either
//!   returns `DISABLE` or turns on `PY_RETURN`, `PY_YIELD`, `PY_RESUME` and `CALL`
//!   for that code alone. `PY_THROW` comes instead of `PY_RESUME` when `throw()` or
//!   `close()` continues a generator or coroutine: a resume (a start, when it had
//!   not run yet). `PY_UNWIND` carries the exception, so `RAISE`, `RERAISE` and
//!   `EXCEPTION_HANDLED` are not needed (a caught exception changes no call); its
//!   line is the frame's, which the last `RERAISE` of a handler set back to the
//!   raising instruction. A `CALL` from traced code to a C function or to code that
//!   is not traced is a gap. If every tool id is taken the hook reports it
//!   (`ExactStats::errors`) and traces nothing.
//! * 3.8–3.11: `sys.settrace` and `threading.settrace`. `sys.setprofile` cannot
//!   be used: it never shows the exception that ends a call (the interpreter stashes
//!   it while the profile function runs; `sys.exc_info()` is empty there), and
//!   cProfile replaces it. Included frames get a local tracer with line events off;
//!   the opcode at `f_lasti` tells a return (`RETURN_VALUE`), a yield (`YIELD_VALUE`,
//!   or before `YIELD_FROM` on ≤3.10) and an exit by exception apart (anything else,
//!   or a yield at the very instruction where an exception arrived: `close()`,
//!   `throw()`, unless a line event, turned on for that, showed the frame running
//!   on); the `exception` event gives type and message. Gaps are calls into
//!   Python code that is not traced (C functions are not seen by `settrace`). A
//!   program that already has a trace function keeps it and is not traced (reported).
//! * The native accelerator (`native/tracer_native.c`) is a CPython extension module
//!   built against the stable ABI by `build.rs`, carried in this crate and written
//!   into the bootstrap folder; the hook loads it on 3.12+ (unless
//!   [`ExactOptions::native`] is false) and registers its callbacks, which write the
//!   records of [`wire`] themselves: timestamps, thread ids, the include decision per
//!   code object (asked of Python once), gap counts, and the values the Python
//!   describer would describe without running Python code: exact `int`, `str`,
//!   `bytes`, `float`, `bool` and `None`, exact lists, tuples and dicts of them,
//!   functions, classes and plain objects (`<T object at 0x...>`, the type's name
//!   asked of Python once), and the value inside an async generator's wrapped
//!   yield, with the same bytes; other values (subclasses of the builtins, sets,
//!   named tuples, big ints) and exception texts are described by the Python code.
//!   If it cannot load, the Python callbacks run and [`ProcessStats::mechanism`]
//!   says why. 3.8–3.11 always use the Python tracer.
//! * Reprs never run the program's code (builtins' own C methods only; a failure
//!   prints `<repr failed: TYPE>`); the hook describes values and this crate prints
//!   them with sampled mode's rules and redaction ([`value`]).
//! * Events are queued and sent in batches by a background thread every 50 ms
//!   (5 ms while batches are large); the socket is non-blocking, so a slow tracer
//!   makes the hook hold up to 32 MiB (and the native buffer up to 8 MiB more) and
//!   then drop events, counted
//!   ([`ProcessStats::dropped_events`]). At exit (and before `os._exit` or an
//!   `os.exec*`) everything pending is sent, waiting at most 5 s (2 s before those).
//!   When the tracer goes away the hook removes itself within 50 ms and the program
//!   runs on.
//! * Without `subprocesses`, the hook restores `PYTHONPATH` and removes
//!   `TRACER_EXACT` from `os.environ` once started, so the program sees its own
//!   environment and its children run untraced; with it, both stay (the program can
//!   see them) and every Python child, `multiprocessing` workers included (forked
//!   ones reconnect), is traced on its own connection.
//! * `sys.argv`, `__main__`, `__file__`, output and exit status are untouched; the
//!   user's own `sitecustomize` is imported after the hook. Interpreters started
//!   with `-S`, `-E` or `-I` do not load the hook.

mod connection;
pub mod value;
pub mod wire;

use std::ffi::{OsStr, OsString};
use std::io::{ErrorKind, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

use crate::event::{EventSink, SinkError};
use crate::filter::{FilterError, ModuleGlob};
use crate::redact::SECRET_WORDS;
use crate::repr::ReprOptions;

use connection::{Connection, Counters, RecordError};
use wire::{Message, Reader, Record, WireError, MAX_FRAME};

/// How the hook is loaded (from its compiled code when there is one), shared by the
/// bootstrap and by [`ExactSession::loader_source`].
const LOAD_HOOK: &str = include_str!("load_hook.py");
/// The bootstrap Python imports first (it starts the hook).
const SITECUSTOMIZE: &str = concat!(
    include_str!("load_hook.py"),
    "\n\n",
    include_str!("sitecustomize_main.py")
);
/// The hook itself.
const HOOK: &str = include_str!("_tracer_exact_hook.py");
const HOOK_FILE: &str = "_tracer_exact_hook.py";
/// The hook's native accelerator (`native/tracer_native.c`, built by `build.rs` for
/// the target; empty where it could not be built).
const NATIVE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/_tracer_exact_native.so"));
/// The name the hook loads it from (`_tracer_exact_hook.py` `_NATIVE_FILE`).
const NATIVE_FILE: &str = "_tracer_exact_native.abi3.so";

/// The variable that carries the socket, token and options to the hook.
pub const CONFIG_VAR: &str = "TRACER_EXACT";

/// How long a connection may take to say who it is.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What to trace and how much of it to keep.
#[derive(Debug, Clone)]
pub struct ExactOptions {
    /// `--include` module globs (added to the program's own code).
    pub include: Vec<String>,
    /// `--exclude` module globs (they win).
    pub exclude: Vec<String>,
    /// `--no-args`: no argument or return values at all.
    pub no_args: bool,
    /// `--max-calls N`: full detail for the first N calls of each function per
    /// second, the rest only counted ([`ExactStats::limited_functions`]).
    pub max_calls: Option<u32>,
    /// `--subprocesses`: Python children load the hook too.
    pub subprocesses: bool,
    /// Repr length, depth, items and the extra `--redact` names.
    pub repr: ReprOptions,
    /// How long [`ExactSession::run`] waits, once told to stop, for connections to
    /// end before it ends them itself.
    pub grace: Duration,
    /// How many bytes of unsent events a hook holds for a tracer that is not reading
    /// before it drops (and counts) new ones.
    pub backlog_bytes: usize,
    /// Use the native accelerator on 3.12+ where it loads (the default); false forces
    /// the pure-Python callbacks. [`ProcessStats::mechanism`] says which ran.
    pub native: bool,
}

impl Default for ExactOptions {
    fn default() -> ExactOptions {
        ExactOptions {
            include: Vec::new(),
            exclude: Vec::new(),
            no_args: false,
            max_calls: None,
            subprocesses: false,
            repr: ReprOptions::default(),
            grace: Duration::from_secs(3),
            // About a million events: a burst of calls the tracer cannot decode and
            // write as fast is held rather than dropped (a fib(27) run's whole
            // stream fits), at a memory cost only while the tracer is behind.
            backlog_bytes: 32 << 20,
            native: true,
        }
    }
}

/// What went wrong in a session.
#[derive(Debug, thiserror::Error)]
pub enum ExactError {
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("{option} pattern {pattern:?} holds a control character")]
    ControlCharacter {
        option: &'static str,
        pattern: String,
    },
    #[error("writing events failed: {0}")]
    Sink(SinkError),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ExactError {
    let what = what.into();
    move |source| ExactError::Io { what, source }
}

/// One Python process that connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessStats {
    pub pid: u32,
    pub ppid: u32,
    pub python_version: String,
    pub python_executable: String,
    pub argv: Vec<String>,
    /// Its working directory when the hook started.
    pub cwd: String,
    /// `sys.monitoring tool N (native)` (the native accelerator's callbacks),
    /// `sys.monitoring tool N (python; WHY)` (the pure-Python ones, and why),
    /// `sys.settrace`, or `none` (see `errors`).
    pub mechanism: String,
    /// Rows written for it.
    pub events: u64,
    /// Events the hook dropped because the tracer did not keep up.
    pub dropped_events: u64,
    /// Ends of calls whose start was not seen (started before the hook, or dropped).
    pub unmatched_ends: u64,
    /// Whether it said goodbye (it exited normally, with everything sent).
    pub completed: bool,
}

/// A function whose calls beyond `max_calls` per second were only counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitedFunction {
    pub pid: u32,
    pub module: String,
    pub function: String,
    /// Calls counted but not recorded.
    pub calls_not_recorded: u64,
}

/// What a session saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExactStats {
    /// Every process that connected, in the order they did.
    pub processes: Vec<ProcessStats>,
    /// Rows written.
    pub events: u64,
    /// Events dropped by hooks, summed over processes.
    pub dropped_events: u64,
    pub limited_functions: Vec<LimitedFunction>,
    /// Hooks that could not trace (`pid 12: no free sys.monitoring tool id: ...`),
    /// connections refused, and streams that broke.
    pub errors: Vec<String>,
}

/// A private folder, socket and token that hooks report to.
#[derive(Debug)]
pub struct ExactSession {
    dir: PathBuf,
    boot_dir: PathBuf,
    socket_path: PathBuf,
    token: String,
    listener: UnixListener,
    /// A byte written to `wake_sender` ends the receiver's wait at once (see
    /// [`ExactSession::wake`]).
    wake_receiver: UnixStream,
    wake_sender: UnixStream,
    options: ExactOptions,
}

impl ExactSession {
    /// Creates the private folder (mode 0700 under the temporary directory) with the
    /// bootstrap files and a listening socket.
    pub fn new(options: ExactOptions) -> Result<ExactSession, ExactError> {
        for (option, patterns) in [
            ("--include", &options.include),
            ("--exclude", &options.exclude),
        ] {
            for pattern in patterns {
                ModuleGlob::new(pattern, option)?;
                if pattern.chars().any(char::is_control) {
                    return Err(ExactError::ControlCharacter {
                        option,
                        pattern: pattern.clone(),
                    });
                }
            }
        }
        let token = random_hex(16).map_err(io_error("read /dev/urandom"))?;
        let name = random_hex(8).map_err(io_error("read /dev/urandom"))?;
        let dir = std::env::temp_dir().join(format!("tracer-exact-{}-{name}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io_error(format!("create {}", dir.display())))?;
        let socket_path = dir.join("socket");
        let session = (|| {
            let boot_dir = match cached_boot_dir() {
                Some(cached) => cached,
                None => {
                    let boot_dir = dir.join("boot");
                    std::fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&boot_dir)
                        .map_err(io_error(format!("create {}", boot_dir.display())))?;
                    for (name, bytes) in boot_files() {
                        write_private(&boot_dir.join(name), bytes)?;
                    }
                    boot_dir
                }
            };
            let listener = UnixListener::bind(&socket_path)
                .map_err(io_error(format!("listen on {}", socket_path.display())))?;
            listener
                .set_nonblocking(true)
                .map_err(io_error("make the socket non-blocking"))?;
            let (wake_receiver, wake_sender) =
                UnixStream::pair().map_err(io_error("create a socket pair"))?;
            for end in [&wake_receiver, &wake_sender] {
                end.set_nonblocking(true)
                    .map_err(io_error("make the socket non-blocking"))?;
            }
            Ok((boot_dir, listener, wake_receiver, wake_sender))
        })();
        match session {
            Ok((boot_dir, listener, wake_receiver, wake_sender)) => Ok(ExactSession {
                dir,
                boot_dir,
                socket_path,
                token,
                listener,
                wake_receiver,
                wake_sender,
                options,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// Makes a running [`ExactSession::run`] look at its stop flag now rather than
    /// when its wait for the hooks times out: call it after setting the flag, so that
    /// a short program's recording ends as soon as the program does.
    pub fn wake(&self) {
        use std::io::Write;
        // A full socket already holds a wake-up; nothing else can fail here.
        let _ = (&self.wake_sender).write(&[1]);
    }

    /// The socket hooks connect to.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The token a hook must present.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The folder holding `sitecustomize.py` and the hook.
    pub fn bootstrap_dir(&self) -> &Path {
        &self.boot_dir
    }

    /// The variables to set on a child so that its Python processes load the hook,
    /// given this process's own `PYTHONPATH` (which the child would inherit).
    pub fn child_env(&self) -> Vec<(OsString, OsString)> {
        self.child_env_with(std::env::var_os("PYTHONPATH").as_deref())
    }

    /// [`ExactSession::child_env`] for a child whose `PYTHONPATH` would be
    /// `pythonpath` (`None`: unset).
    pub fn child_env_with(&self, pythonpath: Option<&OsStr>) -> Vec<(OsString, OsString)> {
        let mut path = self.boot_dir.as_os_str().to_os_string();
        if let Some(existing) = pythonpath.filter(|p| !p.is_empty()) {
            path.push(":");
            path.push(existing);
        }
        vec![
            (OsString::from("PYTHONPATH"), path),
            (OsString::from(CONFIG_VAR), self.config(pythonpath)),
        ]
    }

    /// Python source that starts this session's hook inside a process that is already
    /// running (the source a loader injected with [`crate::inject`] runs): it loads
    /// the hook from the bootstrap folder as the bootstrap does (from its compiled code,
    /// so the target's main thread does not spend ~20 ms compiling it), leaves
    /// `sys.path` and `sys.modules` as they were (so a later attach loads its own
    /// session's hook), and starts it with this session's configuration, without
    /// touching the program's environment.
    pub fn loader_source(&self) -> String {
        // A JSON string is a valid Python string literal (its escapes are Python's).
        let literal = |text: &str| serde_json::Value::from(text).to_string();
        let boot = literal(&self.boot_dir.display().to_string());
        let config = literal(&self.config(None).to_string_lossy());
        format!(
            "{LOAD_HOOK}\n\
             import os, sys\n\
             _load_hook(os, sys, {boot}).start({boot}, {config})\n"
        )
    }

    /// `key=value` fields separated by 0x1e, lists by 0x1f (no JSON parser needed in
    /// the target at startup).
    fn config(&self, pythonpath: Option<&OsStr>) -> OsString {
        let o = &self.options;
        let mut secrets: Vec<String> = SECRET_WORDS.iter().map(|w| w.to_string()).collect();
        secrets.extend(
            o.repr
                .redact_names
                .iter()
                .filter(|n| !n.is_empty())
                .map(|n| n.to_ascii_lowercase()),
        );
        let fields = [
            ("sock", self.socket_path.display().to_string()),
            ("token", self.token.clone()),
            ("include", o.include.join("\x1f")),
            ("exclude", o.exclude.join("\x1f")),
            ("noargs", u8::from(o.no_args).to_string()),
            ("maxcalls", o.max_calls.unwrap_or(0).to_string()),
            ("backlog", o.backlog_bytes.to_string()),
            ("sub", u8::from(o.subprocesses).to_string()),
            ("maxlen", o.repr.max_len.to_string()),
            ("depth", o.repr.max_depth.to_string()),
            ("items", o.repr.max_items.to_string()),
            ("secrets", secrets.join("\x1f")),
            ("native", u8::from(o.native).to_string()),
        ];
        let mut out: Vec<u8> = Vec::new();
        for (key, value) in fields {
            if !out.is_empty() {
                out.push(0x1e);
            }
            out.extend_from_slice(format!("{key}={value}").as_bytes());
        }
        if let Some(original) = pythonpath {
            out.extend_from_slice(b"\x1epp=");
            out.extend_from_slice(original.as_bytes());
        }
        OsString::from_vec(out)
    }

    /// Receives and decodes until `stop` is set and every connection has ended, or
    /// [`ExactOptions::grace`] after `stop`: then the connections of processes still
    /// running are closed (their calls still open end as `unfinished`), and those of
    /// processes that have exited are read to their end first (what they sent before
    /// exiting is kept, however far behind the tracer was), for at most 30 s after
    /// `stop`. Events reach `sink` in each process's own order; `sink.tick` is
    /// called at least every 100 ms.
    pub fn run(
        &self,
        sink: &mut dyn EventSink,
        stop: &AtomicBool,
    ) -> Result<ExactStats, ExactError> {
        let mut receiver = Receiver {
            session: self,
            connections: Vec::new(),
            counters: Counters::default(),
            stats: ExactStats::default(),
        };
        receiver.run(sink, stop)
    }
}

impl Drop for ExactSession {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The bootstrap files: the same for every session of this build.
fn boot_files() -> Vec<(&'static str, &'static [u8])> {
    let mut files = vec![
        ("sitecustomize.py", SITECUSTOMIZE.as_bytes()),
        (HOOK_FILE, HOOK.as_bytes()),
    ];
    if !NATIVE.is_empty() {
        files.push((NATIVE_FILE, NATIVE));
    }
    files
}

/// The bootstrap folder kept in the user's cache (`$XDG_CACHE_HOME/tracer/` or
/// `~/.cache/tracer/`), named after a hash of its files, so that Python compiles the
/// hook once (`load_hook.py` keeps its code beside it) instead of at every start: about 20 ms
/// of every traced process's start-up. The folders are the user's own, mode 0700,
/// and each file is checked to hold exactly this build's bytes before it is used;
/// `None` (a fresh private folder per session instead) when any of that fails.
fn cached_boot_dir() -> Option<PathBuf> {
    use std::hash::{DefaultHasher, Hasher};
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| Path::new(v).is_absolute())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))?;
    let mut hasher = DefaultHasher::new();
    for (name, bytes) in boot_files() {
        hasher.write(name.as_bytes());
        hasher.write(bytes);
    }
    let tracer_dir = base.join("tracer");
    let boot_dir = tracer_dir.join(format!(
        "exact-{}-{:016x}",
        env!("CARGO_PKG_VERSION"),
        hasher.finish()
    ));
    let own = nix::unistd::geteuid().as_raw();
    for dir in [&base, &tracer_dir, &boot_dir] {
        let made = std::fs::DirBuilder::new().mode(0o700).create(dir);
        if made.is_err() && !dir.is_dir() {
            return None;
        }
    }
    // Nobody else may write where the folders are, nor into them.
    let base_meta = std::fs::metadata(&base).ok()?;
    if (base_meta.uid() != own && base_meta.uid() != 0) || base_meta.mode() & 0o022 != 0 {
        return None;
    }
    for dir in [&tracer_dir, &boot_dir] {
        let meta = std::fs::symlink_metadata(dir).ok()?;
        if !meta.is_dir() || meta.uid() != own || meta.mode() & 0o077 != 0 {
            return None;
        }
    }
    for (name, bytes) in boot_files() {
        let path = boot_dir.join(name);
        let current = std::fs::symlink_metadata(&path)
            .ok()
            .filter(|meta| meta.is_file() && meta.uid() == own && meta.mode() & 0o077 == 0)
            .and_then(|_| std::fs::read(&path).ok());
        if current.as_deref() == Some(bytes) {
            continue;
        }
        // Written under a name of its own and renamed into place, so that a session
        // starting at the same moment never sees half a file. The name is random, not
        // just this process's id: two sessions of one process (threads of a test
        // binary) writing at once would otherwise remove and rename each other's
        // temporary file, putting half a file in place.
        let unique = random_hex(8).ok()?;
        let temp = boot_dir.join(format!(".{name}.{}.{unique}.tmp", std::process::id()));
        let written = write_private(&temp, bytes).is_ok() && std::fs::rename(&temp, &path).is_ok();
        if !written {
            let _ = std::fs::remove_file(&temp);
            return None;
        }
    }
    Some(boot_dir)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ExactError> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(format!("create {}", path.display())))?;
    file.write_all(bytes)
        .map_err(io_error(format!("write {}", path.display())))
}

fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A socket and what has arrived on it.
struct Stream {
    stream: UnixStream,
    buffer: Vec<u8>,
    /// Set by a valid HELLO.
    connection: Option<Connection>,
    accepted: Instant,
    /// Index into `ExactStats::processes`.
    process: Option<usize>,
    /// The peer's process id as this process sees it (`SO_PEERCRED`).
    peer_pid: i32,
}

struct Receiver<'s> {
    session: &'s ExactSession,
    connections: Vec<Stream>,
    counters: Counters,
    stats: ExactStats,
}

/// How long, after recording was told to stop, what processes that have exited left in
/// their sockets is still read (see [`ExactSession::run`]).
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// How much one connection is read before the others get their turn.
const READ_SLICE: usize = 1 << 20;

/// The most one `read` of a connection asks for.
const READ_CHUNK: usize = 256 << 10;

impl Receiver<'_> {
    fn run(
        &mut self,
        sink: &mut dyn EventSink,
        stop: &AtomicBool,
    ) -> Result<ExactStats, ExactError> {
        let mut stopped_at: Option<Instant> = None;
        loop {
            self.accept_all();
            let ready = self.poll()?;
            for (i, readable) in ready.into_iter().enumerate().rev() {
                if readable && !self.read(i, sink)? {
                    self.close(i, sink)?;
                }
            }
            let now = Instant::now();
            self.expire_silent(now, sink)?;
            sink.tick(now).map_err(ExactError::Sink)?;
            if stop.load(Ordering::SeqCst) {
                let since = *stopped_at.get_or_insert(now);
                self.accept_all();
                if self.connections.is_empty() {
                    break;
                }
                let grace = self.session.options.grace;
                if now.duration_since(since) >= grace {
                    // A process still running is cut off (it keeps sending as long as it
                    // is traced; closing its socket makes its hook remove itself). What a
                    // process that has exited left in its socket is finite and was
                    // recorded before it exited: it is read to the end of the stream (its
                    // forked children close their copy of the socket), however far behind
                    // the tracer was, for at most DRAIN_LIMIT after the stop.
                    let drain_over = now.duration_since(since) >= DRAIN_LIMIT.max(grace);
                    for i in (0..self.connections.len()).rev() {
                        if drain_over || process_is_running(self.connections[i].peer_pid) {
                            let _ = self.read(i, sink)?;
                            self.close(i, sink)?;
                        }
                    }
                    if self.connections.is_empty() {
                        break;
                    }
                }
            }
        }
        self.stats.events = self.counters.next_seq;
        Ok(std::mem::take(&mut self.stats))
    }

    fn accept_all(&mut self) {
        loop {
            match self.session.listener.accept() {
                Ok((stream, _)) => {
                    let own = nix::unistd::geteuid().as_raw();
                    let peer_pid = match getsockopt(&stream.as_fd(), PeerCredentials) {
                        Ok(cred) if cred.uid() == own => cred.pid(),
                        Ok(cred) => {
                            self.stats.errors.push(format!(
                                "refused a connection from pid {} of user {}",
                                cred.pid(),
                                cred.uid()
                            ));
                            continue;
                        }
                        Err(e) => {
                            self.stats
                                .errors
                                .push(format!("refused a connection: cannot tell its user: {e}"));
                            continue;
                        }
                    };
                    if let Err(e) = stream.set_nonblocking(true) {
                        self.stats.errors.push(format!(
                            "dropped a connection: cannot make it non-blocking: {e}"
                        ));
                        continue;
                    }
                    self.connections.push(Stream {
                        stream,
                        buffer: Vec::new(),
                        connection: None,
                        accepted: Instant::now(),
                        process: None,
                        peer_pid,
                    });
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    /// Waits up to 50 ms; which connections can be read.
    fn poll(&self) -> Result<Vec<bool>, ExactError> {
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(self.connections.len() + 2);
        fds.push(PollFd::new(
            self.session.wake_receiver.as_fd(),
            PollFlags::POLLIN,
        ));
        fds.push(PollFd::new(
            self.session.listener.as_fd(),
            PollFlags::POLLIN,
        ));
        for c in &self.connections {
            fds.push(PollFd::new(c.stream.as_fd(), PollFlags::POLLIN));
        }
        match nix::poll::poll(&mut fds, PollTimeout::from(50u8)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                return Err(ExactError::Io {
                    what: "wait for hook connections".into(),
                    source: e.into(),
                })
            }
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            let mut drained = [0u8; 64];
            while matches!((&self.session.wake_receiver).read(&mut drained), Ok(n) if n > 0) {}
        }
        Ok(fds[2..]
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect())
    }

    /// Reads what is there and decodes whole frames; false when the connection ended
    /// or must be closed.
    fn read(&mut self, i: usize, sink: &mut dyn EventSink) -> Result<bool, ExactError> {
        let mut total = 0;
        let mut open = true;
        let Stream { stream, buffer, .. } = &mut self.connections[i];
        while total < READ_SLICE {
            // Read straight into the buffer's free room.
            let filled = buffer.len();
            buffer.resize(filled + READ_CHUNK, 0);
            let result = stream.read(&mut buffer[filled..]);
            let got = match &result {
                Ok(n) => *n,
                Err(_) => 0,
            };
            buffer.truncate(filled + got);
            match result {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => total += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.stats
                        .errors
                        .push(format!("reading a hook's stream failed: {e}"));
                    open = false;
                    break;
                }
            }
        }
        match self.decode(i, sink) {
            Ok(()) => Ok(open),
            Err(RecordError::Sink(e)) => Err(ExactError::Sink(e)),
            Err(e) => {
                let pid = self.connections[i].connection.as_ref().map_or_else(
                    || "an unknown process".to_string(),
                    |c| format!("pid {}", c.hello.pid),
                );
                self.stats
                    .errors
                    .push(format!("closed the stream of {pid}: {e}"));
                Ok(false)
            }
        }
    }

    /// Decodes the whole frames at the start of connection `i`'s buffer, keeping a
    /// partial one for the next read.
    fn decode(&mut self, i: usize, sink: &mut dyn EventSink) -> Result<(), RecordError> {
        // Taken out while its frames are decoded in place, so that `frame` may borrow
        // the receiver.
        let buffer = std::mem::take(&mut self.connections[i].buffer);
        let mut consumed = 0;
        let result = loop {
            let rest = &buffer[consumed..];
            if rest.len() < 4 {
                break Ok(());
            }
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if len == 0 || len > MAX_FRAME {
                break Err(WireError(format!("frame of {len} bytes")).into());
            }
            if rest.len() < 4 + len {
                break Ok(());
            }
            consumed += 4 + len;
            if let Err(e) = self.frame(i, &rest[4..4 + len], sink) {
                break Err(e);
            }
        };
        let mut buffer = buffer;
        buffer.drain(..consumed);
        self.connections[i].buffer = buffer;
        result
    }

    fn frame(
        &mut self,
        i: usize,
        frame: &[u8],
        sink: &mut dyn EventSink,
    ) -> Result<(), RecordError> {
        let message = Message::parse(frame)?;
        let stream = &mut self.connections[i];
        let Some(connection) = stream.connection.as_mut() else {
            let Message::Hello(hello) = message else {
                return Err(WireError("the first message is not a HELLO".into()).into());
            };
            if hello.token != self.session.token {
                return Err(WireError(format!("pid {} presented a wrong token", hello.pid)).into());
            }
            sink.python_identified(hello.pid, &hello.python_version);
            self.stats.processes.push(ProcessStats {
                pid: hello.pid,
                ppid: hello.ppid,
                python_version: hello.python_version.clone(),
                python_executable: hello.executable.clone(),
                argv: hello.argv.clone(),
                cwd: hello.cwd.clone(),
                mechanism: hello.mechanism.clone(),
                events: 0,
                dropped_events: 0,
                unmatched_ends: 0,
                completed: false,
            });
            stream.process = Some(self.stats.processes.len() - 1);
            stream.connection = Some(Connection::new(hello));
            return Ok(());
        };
        match message {
            Message::Hello(_) => return Err(WireError("a second HELLO".into()).into()),
            Message::Error(text) => {
                self.stats
                    .errors
                    .push(format!("pid {}: {text}", connection.hello.pid));
            }
            Message::Batch {
                dropped,
                mut records,
            } => {
                connection.counts.dropped = connection.counts.dropped.max(dropped);
                batch(
                    connection,
                    &mut records,
                    &self.session.options.repr,
                    &mut self.counters,
                    sink,
                )?;
            }
            Message::Bye { dropped } => {
                connection.counts.dropped = connection.counts.dropped.max(dropped);
                if let Some(p) = stream.process {
                    self.stats.processes[p].completed = true;
                }
            }
        }
        Ok(())
    }

    /// Closes connections that never said who they are.
    fn expire_silent(&mut self, now: Instant, sink: &mut dyn EventSink) -> Result<(), ExactError> {
        for i in (0..self.connections.len()).rev() {
            let c = &self.connections[i];
            if c.connection.is_none() && now.duration_since(c.accepted) > HELLO_TIMEOUT {
                self.stats
                    .errors
                    .push("closed a connection that never identified itself".into());
                self.close(i, sink)?;
            }
        }
        Ok(())
    }

    /// Ends a connection: its open calls become `unfinished`, its counts go into the
    /// statistics.
    fn close(&mut self, i: usize, sink: &mut dyn EventSink) -> Result<(), ExactError> {
        let mut stream = self.connections.swap_remove(i);
        let Some(mut connection) = stream.connection.take() else {
            return Ok(());
        };
        connection
            .finish(&mut self.counters, sink)
            .map_err(ExactError::Sink)?;
        let counts = &connection.counts;
        if let Some(p) = stream.process {
            let process = &mut self.stats.processes[p];
            process.events = counts.events;
            process.dropped_events = counts.dropped;
            process.unmatched_ends = counts.unmatched;
        }
        self.stats.dropped_events += counts.dropped;
        let mut limited: Vec<(&u32, &u64)> = counts.limited.iter().collect();
        limited.sort();
        for (code, count) in limited {
            let (module, function) = connection.code_name(*code).map_or_else(
                || (String::new(), String::new()),
                |(m, f)| (m.to_string(), f.to_string()),
            );
            self.stats.limited_functions.push(LimitedFunction {
                pid: connection.hello.pid,
                module,
                function,
                calls_not_recorded: *count,
            });
        }
        Ok(())
    }
}

/// Whether process `pid` (of this process's pid namespace) still exists; a pid that
/// cannot be told (0: the peer's namespace does not map into ours) counts as running.
fn process_is_running(pid: i32) -> bool {
    use nix::errno::Errno;
    if pid <= 0 {
        return true;
    }
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(Errno::ESRCH)
    )
}

fn batch(
    connection: &mut Connection,
    records: &mut Reader<'_>,
    repr: &ReprOptions,
    counters: &mut Counters,
    sink: &mut dyn EventSink,
) -> Result<(), RecordError> {
    while !records.is_empty() {
        let record = Record::parse(records)?;
        connection.record(record, repr, counters, sink)?;
    }
    Ok(())
}
