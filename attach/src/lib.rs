//! Read a live CPython process from outside.
//!
//! * [`memory`]: [`ProcessMemory`], the one trait through which every byte of the
//!   target is read (`process_vm_readv` for a live process, snapshots in tests).
//! * [`event`]: [`Event`] and [`EventSink`], the seam between producers of a trace
//!   and its consumers.

pub mod event;
pub mod memory;

pub use event::{Event, EventKind, EventSink, Source};
pub use memory::{MemoryError, ProcessMemory, RemoteMemory};
pub mod error;
pub mod objects;

pub use error::{Error, Result};
pub mod elf;
pub mod process;
pub mod threads;
pub mod walker;

pub use process::PythonProcess;
pub use walker::Walker;
