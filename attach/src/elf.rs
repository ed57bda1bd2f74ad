//! ELF symbols of the interpreter binary (an executable or `libpython3.X.so`), read
//! with goblin from a memory-mapped file, and rebased to where the target loaded it.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use goblin::elf::{program_header::PT_LOAD, Elf};

use crate::error::{Error, Result};

/// The symbols and sections of one loaded binary that the reader needs.
#[derive(Debug, Clone, Default)]
pub struct BinaryInfo {
    /// Symbol name to address in the target (load bias applied).
    pub symbols: HashMap<String, u64>,
    /// Every NUL-terminated string of `.rodata` that looks like a version (`3.9.18`).
    pub version_strings: Vec<String>,
}

/// The symbols worth keeping (a libpython has tens of thousands).
const WANTED: &[&str] = &[
    "_PyRuntime",
    "Py_Version",
    "PyCode_Type",
    "PyFunction_Type",
    "PyRun_SimpleString",
    "Py_AddPendingCall",
];

impl BinaryInfo {
    /// Parses `path` (as seen from the tracer, e.g. `/proc/PID/root/usr/lib/...`) and
    /// rebases its symbols for a mapping whose file offset 0 starts at `map_base`.
    pub fn load(path: &Path, map_base: u64) -> Result<BinaryInfo> {
        let binary_err = |reason: String| Error::Binary {
            path: path.display().to_string(),
            reason,
        };
        let file = File::open(path).map_err(|e| binary_err(e.to_string()))?;
        // SAFETY: the file is opened read-only; a binary that a running process has
        // mapped is not truncated under us in practice, and goblin bounds-checks.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| binary_err(e.to_string()))?;
        let elf = Elf::parse(&map).map_err(|e| binary_err(e.to_string()))?;
        let first_load = elf
            .program_headers
            .iter()
            .filter(|ph| ph.p_type == PT_LOAD)
            .map(|ph| ph.p_vaddr & !0xfff)
            .min()
            .unwrap_or(0);
        let bias = if elf.header.e_type == goblin::elf::header::ET_EXEC {
            0
        } else {
            map_base.wrapping_sub(first_load)
        };
        let mut symbols = HashMap::new();
        for (syms, strtab) in [(&elf.dynsyms, &elf.dynstrtab), (&elf.syms, &elf.strtab)] {
            for sym in syms.iter() {
                if sym.st_value == 0 || sym.is_import() {
                    continue;
                }
                if let Some(name) = strtab.get_at(sym.st_name) {
                    if WANTED.contains(&name) || is_version_buffer(name) {
                        symbols
                            .entry(name.to_string())
                            .or_insert(sym.st_value.wrapping_add(bias));
                    }
                }
            }
        }
        let mut version_strings = Vec::new();
        for sh in &elf.section_headers {
            if elf.shdr_strtab.get_at(sh.sh_name) != Some(".rodata") {
                continue;
            }
            let start = sh.sh_offset as usize;
            let end = start.saturating_add(sh.sh_size as usize).min(map.len());
            if start < end {
                version_strings = find_version_strings(&map[start..end]);
            }
        }
        Ok(BinaryInfo {
            symbols,
            version_strings,
        })
    }

    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied()
    }
}

/// `Py_GetVersion`'s static buffer (`version`, or `version.0` as GCC names a
/// function-local static), which holds `sys.version` once the interpreter started.
/// Before 3.11 it is the only place in memory that gives the micro version.
pub fn is_version_buffer(name: &str) -> bool {
    name == "version"
        || name
            .strip_prefix("version.")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// NUL-delimited strings of the form `3.N.M` (optionally followed by a pre-release tag
/// or `+`): the `PY_VERSION` literal that `Py_GetVersion` formats.
fn find_version_strings(data: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for s in data.split(|&b| b == 0) {
        if s.len() < 5 || s.len() > 12 || !s.starts_with(b"3.") {
            continue;
        }
        let Ok(text) = std::str::from_utf8(s) else {
            continue;
        };
        let mut parts = text.splitn(3, '.');
        let (_, minor, micro) = (parts.next(), parts.next(), parts.next());
        let digits = |p: Option<&str>| {
            p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        };
        let micro_digits =
            micro.map(|m| m.trim_end_matches(|c: char| !c.is_ascii_digit() || c == '+'));
        let micro_ok = micro.is_some_and(|m| m.starts_with(|c: char| c.is_ascii_digit()))
            && micro_digits.is_some_and(|m| m.len() <= 9);
        if digits(minor) && micro_ok && !found.iter().any(|f: &String| f == text) {
            found.push(text.to_string());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_strings_are_found_between_nuls() {
        let data = b"\x00abc\x003.9.18\x00%.80s (%.80s) %.80s\x003.10\x003.12.0rc1\x00";
        assert_eq!(find_version_strings(data), vec!["3.9.18", "3.12.0rc1"]);
    }
}
