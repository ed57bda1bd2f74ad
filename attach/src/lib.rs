//! Read a live CPython process from outside.
//!
//! * [`memory`]: [`ProcessMemory`], the one trait through which every byte of the
//!   target is read (`process_vm_readv` for a live process, snapshots in tests).
//! * [`event`]: [`Event`] and [`EventSink`], the seam between producers of a trace
//!   and its consumers.
//! * [`objects`]: reading Python objects (str, bytes, tuples, dicts, instance
//!   attributes) out of the target.
//! * [`repr`]: [`repr_value`], Python's own `repr()` text of a remote value, bounded
//!   in length, depth and items, with secrets redacted by [`redact`].
//! * [`sampler`]: [`Sampler`], which reads a process's stacks at a fixed rate and
//!   rebuilds calls from them (sampled mode).
//! * [`exact`]: [`exact::ExactSession`], which launches nothing itself but hands out
//!   the environment that makes Python processes load a hook, and turns what the
//!   hooks send into the same [`Event`]s (exact mode).
//! * [`inject`]: [`inject::run_python_source`], which makes a live 3.12 / 3.13
//!   process run Python source on its main thread at a safe point (ptrace +
//!   `Py_AddPendingCall`).

pub mod event;
pub mod memory;

pub use event::{Event, EventKind, EventSink, Source};
pub use memory::{MemoryError, ProcessMemory, RemoteMemory};
pub mod error;
pub mod objects;

pub mod redact;
pub mod repr;

pub use error::{Error, Result};
pub mod calls;
pub mod elf;
pub mod exact;
pub mod filter;
pub mod inject;
pub mod names;
pub mod process;
pub mod sampler;
pub mod snapshot;
pub mod threads;
pub mod walker;

pub use process::PythonProcess;
pub use repr::{repr_named, repr_value, ReprOptions, TypeCache};
pub use sampler::{Sampler, SamplerOptions, SamplerStats, StopReason};
pub use walker::Walker;
