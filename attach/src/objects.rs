//! Reading Python objects out of a target's memory: strings, bytes, tuples, type
//! names. Every read is bounded, so garbage never makes the reader allocate or loop
//! without limit.

use python_offsets::{type_flags, unicode_state, Layout};

use crate::error::{Error, Result};
use crate::memory::ProcessMemory;

/// Strings longer than this (in characters) are read only up to it.
pub const MAX_STRING_CHARS: usize = 4096;

/// Tuples longer than this are refused as garbage (code object name tuples are small).
pub const MAX_TUPLE_ITEMS: usize = 1 << 16;

/// The `ob_type` pointer of the object at `addr`.
pub fn type_of<M: ProcessMemory + ?Sized>(mem: &M, layout: &Layout, addr: u64) -> Result<u64> {
    let ty = mem.read_u64(addr + layout.object.ob_type)?;
    if ty == 0 {
        return Err(Error::inconsistent(format!(
            "object at {addr:#x} has no type"
        )));
    }
    Ok(ty)
}

/// `tp_flags` of the type at `type_addr`.
pub fn type_flags_of<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    type_addr: u64,
) -> Result<u64> {
    Ok(mem.read_u64(type_addr + layout.object.tp_flags)?)
}

/// `tp_name` of the type at `type_addr` (a C string, read up to 128 bytes).
pub fn type_name<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    type_addr: u64,
) -> Result<String> {
    let ptr = mem.read_u64(type_addr + layout.object.tp_name)?;
    read_c_string(mem, ptr, 128)
}

/// A NUL-terminated string of at most `max` bytes.
pub fn read_c_string<M: ProcessMemory + ?Sized>(mem: &M, addr: u64, max: usize) -> Result<String> {
    let mut buf = vec![0u8; max];
    // The string may end near the end of a mapping: fall back to smaller reads.
    let mut len = max;
    while mem.read(addr, &mut buf[..len]).is_err() {
        if len <= 8 {
            mem.read(addr, &mut buf[..1])?;
            len = 1;
            break;
        }
        len /= 2;
    }
    let end = buf[..len].iter().position(|&b| b == 0).unwrap_or(len);
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// A `str` object's text, cut at `max_chars` characters; the second value is the
/// full length in characters.
pub fn read_str_prefix<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
    max_chars: usize,
) -> Result<(String, usize)> {
    let u = &layout.object.unicode;
    let mut header = [0u8; 40];
    mem.read(addr, &mut header)?;
    let length = i64::from_le_bytes(
        header[u.length as usize..u.length as usize + 8]
            .try_into()
            .unwrap(),
    );
    let state = u32::from_le_bytes(
        header[u.state as usize..u.state as usize + 4]
            .try_into()
            .unwrap(),
    );
    if !(0..=(1 << 40)).contains(&length) {
        return Err(Error::inconsistent(format!(
            "str at {addr:#x} has length {length}"
        )));
    }
    let length = length as usize;
    let kind = (state >> unicode_state::KIND_SHIFT) & unicode_state::KIND_MASK;
    let width = match kind {
        1 | 2 | 4 => kind as usize,
        _ => {
            return Err(Error::inconsistent(format!(
                "str at {addr:#x} has kind {kind}"
            )))
        }
    };
    let data = if state & unicode_state::COMPACT != 0 {
        if state & unicode_state::ASCII != 0 {
            addr + u.ascii_size
        } else {
            addr + u.compact_size
        }
    } else {
        mem.read_u64(addr + u.data_any)?
    };
    let take = length.min(max_chars);
    let raw = mem.read_vec(data, take * width)?;
    let text = match width {
        1 => raw.iter().map(|&b| b as char).collect(),
        2 => {
            let units: Vec<u16> = raw
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        _ => raw
            .chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_le_bytes([c[0], c[1], c[2], c[3]])).unwrap_or('\u{fffd}')
            })
            .collect(),
    };
    Ok((text, length))
}

/// A `str` object's whole text (up to [`MAX_STRING_CHARS`]).
pub fn read_str<M: ProcessMemory + ?Sized>(mem: &M, layout: &Layout, addr: u64) -> Result<String> {
    if addr == 0 {
        return Err(Error::inconsistent("NULL str"));
    }
    Ok(read_str_prefix(mem, layout, addr, MAX_STRING_CHARS)?.0)
}

/// A `str` object's text, checking first that the object is a `str`.
pub fn read_checked_str<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
) -> Result<String> {
    let ty = type_of(mem, layout, addr)?;
    if type_flags_of(mem, layout, ty)? & type_flags::UNICODE_SUBCLASS == 0 {
        return Err(Error::inconsistent(format!(
            "object at {addr:#x} is not a str"
        )));
    }
    read_str(mem, layout, addr)
}

/// The size (`ob_size`) of a variable-size object.
pub fn var_size<M: ProcessMemory + ?Sized>(mem: &M, layout: &Layout, addr: u64) -> Result<i64> {
    Ok(mem.read_i64(addr + layout.object.ob_size)?)
}

/// A `bytes` object's content, refused beyond `max_len`.
pub fn read_bytes<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
    max_len: usize,
) -> Result<Vec<u8>> {
    let size = var_size(mem, layout, addr)?;
    if size < 0 || size as usize > max_len {
        return Err(Error::inconsistent(format!(
            "bytes at {addr:#x} has size {size}"
        )));
    }
    Ok(mem.read_vec(addr + layout.object.bytes_sval, size as usize)?)
}

/// The item pointers of a `tuple`.
pub fn tuple_items<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
) -> Result<Vec<u64>> {
    let size = var_size(mem, layout, addr)?;
    if size < 0 || size as usize > MAX_TUPLE_ITEMS {
        return Err(Error::inconsistent(format!(
            "tuple at {addr:#x} has size {size}"
        )));
    }
    let raw = mem.read_vec(addr + layout.object.tuple_items, size as usize * 8)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect())
}

/// The strings of a tuple of `str` (code objects' name tuples).
pub fn read_str_tuple<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
) -> Result<Vec<String>> {
    tuple_items(mem, layout, addr)?
        .into_iter()
        .map(|item| read_str(mem, layout, item))
        .collect()
}
