//! Reading another process's memory.
//!
//! Everything the reader knows about a target comes through [`ProcessMemory`], one
//! small trait, so the walker and the repr code can run on a live process
//! ([`RemoteMemory`], `process_vm_readv`) or on bytes captured in a test.

use std::io::IoSliceMut;

use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;

/// A read that did not return the bytes asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    #[error("cannot read {len} bytes at {addr:#x} in process {pid}: {reason}")]
    Read {
        pid: i32,
        addr: u64,
        len: usize,
        reason: String,
    },
    #[error("process {0} has exited")]
    Gone(i32),
    #[error("no permission to read process {0}")]
    Permission(i32),
}

/// Something that holds a target's memory.
pub trait ProcessMemory {
    /// Fills `buf` with the bytes at `addr`, all or nothing.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError>;

    /// Reads a little-endian u64 at `addr`.
    fn read_u64(&self, addr: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a little-endian i64 at `addr`.
    fn read_i64(&self, addr: u64) -> Result<i64, MemoryError> {
        Ok(self.read_u64(addr)? as i64)
    }

    /// Reads a little-endian u32 at `addr`.
    fn read_u32(&self, addr: u64) -> Result<u32, MemoryError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a little-endian i32 at `addr`.
    fn read_i32(&self, addr: u64) -> Result<i32, MemoryError> {
        Ok(self.read_u32(addr)? as i32)
    }

    /// Reads one byte at `addr`.
    fn read_u8(&self, addr: u64) -> Result<u8, MemoryError> {
        let mut b = [0u8; 1];
        self.read(addr, &mut b)?;
        Ok(b[0])
    }

    /// Reads `len` bytes at `addr` into a new vector.
    fn read_vec(&self, addr: u64, len: usize) -> Result<Vec<u8>, MemoryError> {
        let mut v = vec![0u8; len];
        self.read(addr, &mut v)?;
        Ok(v)
    }
}

/// A live process's memory, read with `process_vm_readv` (no ptrace stop; about 3 µs
/// per call here, so callers read whole structs at once).
#[derive(Debug, Clone, Copy)]
pub struct RemoteMemory {
    pid: i32,
}

impl RemoteMemory {
    pub fn new(pid: i32) -> RemoteMemory {
        RemoteMemory { pid }
    }

    /// The task whose address space is read (a process id, or a thread's when the
    /// main thread has exited).
    pub fn pid(&self) -> i32 {
        self.pid
    }
}

impl ProcessMemory for RemoteMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if buf.is_empty() {
            return Ok(());
        }
        let len = buf.len();
        let remote = [RemoteIoVec {
            base: addr as usize,
            len,
        }];
        let mut local = [IoSliceMut::new(buf)];
        match process_vm_readv(Pid::from_raw(self.pid), &mut local, &remote) {
            Ok(n) if n == len => Ok(()),
            Ok(n) => Err(MemoryError::Read {
                pid: self.pid,
                addr,
                len,
                reason: format!("short read of {n} bytes"),
            }),
            Err(nix::errno::Errno::ESRCH) => Err(MemoryError::Gone(self.pid)),
            Err(nix::errno::Errno::EPERM) => Err(MemoryError::Permission(self.pid)),
            Err(e) => Err(MemoryError::Read {
                pid: self.pid,
                addr,
                len,
                reason: e.desc().to_string(),
            }),
        }
    }
}

/// Memory captured as `(address, bytes)` regions: for tests and fuzzing the walker
/// without a live process.
#[derive(Debug, Clone, Default)]
pub struct SnapshotMemory {
    regions: Vec<(u64, Vec<u8>)>,
}

impl SnapshotMemory {
    pub fn new() -> SnapshotMemory {
        SnapshotMemory::default()
    }

    /// Adds `bytes` at `addr`.
    pub fn insert(&mut self, addr: u64, bytes: Vec<u8>) {
        self.regions.push((addr, bytes));
    }
}

impl ProcessMemory for SnapshotMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        for (start, bytes) in &self.regions {
            let end = start + bytes.len() as u64;
            if addr >= *start && addr + buf.len() as u64 <= end {
                let off = (addr - start) as usize;
                buf.copy_from_slice(&bytes[off..off + buf.len()]);
                return Ok(());
            }
        }
        Err(MemoryError::Read {
            pid: 0,
            addr,
            len: buf.len(),
            reason: "not in the snapshot".into(),
        })
    }
}
