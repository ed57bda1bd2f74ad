//! Reading Python objects out of a target's memory: strings, bytes, tuples, type
//! names, dicts ([`dict_items`]) and instance attributes ([`instance_attr`]). Every
//! read is bounded, so garbage never makes the reader allocate or loop without limit,
//! and pointers read from the target are checked ([`object_address`]) before any
//! arithmetic on them.

use python_offsets::{
    type_flags, unicode_state, DictKeysFormat, InstanceDictModel, Layout, SplitValuesOrder,
};

use crate::error::{Error, Result};
use crate::memory::ProcessMemory;

/// Strings longer than this (in characters) are read only up to it.
pub const MAX_STRING_CHARS: usize = 4096;

/// Tuples longer than this are refused as garbage (code object name tuples are small).
pub const MAX_TUPLE_ITEMS: usize = 1 << 16;

/// Addresses at or above this are not user space on x86_64 Linux (56 bits covers
/// 5-level paging).
const USER_SPACE_END: u64 = 1 << 56;

/// `addr` if it can be the address of a Python object or of one of its blocks:
/// above the first page, in user space, 8-byte aligned. A pointer read from the
/// target goes through this before the reader adds offsets to it.
pub fn object_address(addr: u64) -> Result<u64> {
    if !(0x1000..USER_SPACE_END).contains(&addr) || !addr.is_multiple_of(8) {
        return Err(Error::inconsistent(format!(
            "{addr:#x} is not an object address"
        )));
    }
    Ok(addr)
}

/// The `ob_type` pointer of the object at `addr`.
pub fn type_of<M: ProcessMemory + ?Sized>(mem: &M, layout: &Layout, addr: u64) -> Result<u64> {
    let ty = mem.read_u64(object_address(addr)? + layout.object.ob_type)?;
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
    Ok(mem.read_u64(object_address(type_addr)? + layout.object.tp_flags)?)
}

/// `tp_name` of the type at `type_addr` (a C string, read up to 128 bytes).
pub fn type_name<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    type_addr: u64,
) -> Result<String> {
    let ptr = mem.read_u64(object_address(type_addr)? + layout.object.tp_name)?;
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

/// Bytes read after a str's header in the first read, so that a short string (a
/// name, a small argument) costs one `process_vm_readv` instead of two.
const STR_FIRST_READ: usize = 128;

/// A `str` object's text, cut at `max_chars` characters; the second value is the
/// full length in characters. Lone surrogates (legal in a Python str) become U+FFFD.
pub fn read_str_prefix<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
    max_chars: usize,
) -> Result<(String, usize)> {
    let (code_points, length) = read_str_code_points(mem, layout, addr, max_chars)?;
    let text = code_points
        .into_iter()
        .map(|c| char::from_u32(c).unwrap_or('\u{fffd}'))
        .collect();
    Ok((text, length))
}

/// A `str` object's first `max_chars` code points (surrogates included, as Python
/// keeps them) and its full length. Compact strings of up to about 128 bytes cost one
/// read.
pub fn read_str_code_points<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
    max_chars: usize,
) -> Result<(Vec<u32>, usize)> {
    let u = &layout.object.unicode;
    let addr = object_address(addr)?;
    let mut first = vec![0u8; u.compact_size as usize + STR_FIRST_READ];
    if mem.read(addr, &mut first).is_err() {
        first.truncate(u.state as usize + 4);
        mem.read(addr, &mut first)?;
    }
    str_code_points_from(mem, layout, addr, &first, max_chars)
}

/// Like [`read_str_code_points`], starting from `first`, bytes already read at `addr`
/// (at least up to the `state` field); only what `first` lacks is read.
pub fn str_code_points_from<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
    first: &[u8],
    max_chars: usize,
) -> Result<(Vec<u32>, usize)> {
    let u = &layout.object.unicode;
    let addr = object_address(addr)?;
    let got = first.len();
    if got < u.state as usize + 4 {
        return Err(Error::inconsistent(format!(
            "str at {addr:#x}: {got} header bytes"
        )));
    }
    let length = le_u64(first, u.length as usize) as i64;
    let state = u32::from_le_bytes([
        first[u.state as usize],
        first[u.state as usize + 1],
        first[u.state as usize + 2],
        first[u.state as usize + 3],
    ]);
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
    let take = length.min(max_chars);
    let inline_start = if state & unicode_state::COMPACT == 0 {
        None
    } else if state & unicode_state::ASCII != 0 {
        Some(u.ascii_size as usize)
    } else {
        Some(u.compact_size as usize)
    };
    let raw = match inline_start {
        Some(start) if start + take * width <= got => first[start..start + take * width].to_vec(),
        Some(start) => mem.read_vec(addr + start as u64, take * width)?,
        None => mem.read_vec(mem.read_u64(addr + u.data_any)?, take * width)?,
    };
    let code_points = match width {
        1 => raw.iter().map(|&b| u32::from(b)).collect(),
        2 => raw
            .chunks_exact(2)
            .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        _ => raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    };
    Ok((code_points, length))
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
    Ok(mem.read_i64(object_address(addr)? + layout.object.ob_size)?)
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
    Ok(raw.chunks_exact(8).map(|c| le_u64(c, 0)).collect())
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

/// Dicts whose keys claim more entries than this are refused as garbage.
pub const MAX_DICT_ENTRIES: usize = 1 << 26;

/// Split tables (keys shared by the instances of a class) bigger than this are
/// refused as garbage: CPython keeps them small (30 keys from 3.11 on).
const MAX_SPLIT_ENTRIES: usize = 1 << 12;

/// How many dict entries one read covers at most while walking a big table.
const DICT_ENTRY_CHUNK: usize = 1024;

/// The `PyDictKeysObject` facts needed to walk its entries.
#[derive(Debug, Clone, Copy)]
struct DictKeys {
    /// Address of entry 0.
    entries: u64,
    /// 24 (`{hash, key, value}`) or 16 (3.11+ `{key, value}` for str-only keys).
    entry_size: usize,
    /// Offset of `me_key` in an entry (`me_value` follows it).
    key_offset: usize,
    /// `dk_nentries`: how many entries are in use (live or deleted).
    nentries: usize,
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Reads the header of the keys object at `addr`.
fn dict_keys<M: ProcessMemory + ?Sized>(mem: &M, layout: &Layout, addr: u64) -> Result<DictKeys> {
    let d = &layout.object.dict;
    let addr = object_address(addr)?;
    let header = mem.read_vec(addr, d.dk_indices as usize)?;
    let nentries = le_u64(&header, d.dk_nentries as usize) as usize;
    let (index_bytes, slots, entry_size, key_offset) = match d.keys_format {
        DictKeysFormat::Sized => {
            let size = le_u64(&header, d.dk_size as usize) as usize;
            if size > 1 << 40 {
                return Err(Error::inconsistent(format!(
                    "dict keys at {addr:#x}: size {size}"
                )));
            }
            let width = match size {
                0..=0xff => 1,
                0x100..=0xffff => 2,
                0x1_0000..=0xffff_ffff => 4,
                _ => 8,
            };
            (size * width, size, 24, 8)
        }
        DictKeysFormat::Log2 => {
            let (Some(index_bytes_at), Some(kind_at)) = (d.dk_log2_index_bytes, d.dk_kind) else {
                return Err(Error::inconsistent(
                    "layout has log2 dict keys without dk_log2_index_bytes or dk_kind",
                ));
            };
            let log2_size = u32::from(header[d.dk_size as usize]);
            let log2_index_bytes = u32::from(header[index_bytes_at as usize]);
            let kind = header[kind_at as usize];
            if log2_size > 40 || log2_index_bytes > 43 || kind > 2 {
                return Err(Error::inconsistent(format!(
                    "dict keys at {addr:#x}: log2 size {log2_size}, kind {kind}"
                )));
            }
            let (entry_size, key_offset) = if kind == 0 { (24, 8) } else { (16, 0) };
            (
                1usize << log2_index_bytes,
                1usize << log2_size,
                entry_size,
                key_offset,
            )
        }
    };
    if !slots.is_power_of_two() || nentries > slots || nentries > MAX_DICT_ENTRIES {
        return Err(Error::inconsistent(format!(
            "dict keys at {addr:#x}: {slots} slots, {nentries} entries"
        )));
    }
    Ok(DictKeys {
        entries: addr + d.dk_indices + index_bytes as u64,
        entry_size,
        key_offset,
        nentries,
    })
}

/// Reads the `(key, value)` pointers of entries `from..from + count`.
fn read_entries<M: ProcessMemory + ?Sized>(
    mem: &M,
    keys: &DictKeys,
    from: usize,
    count: usize,
) -> Result<Vec<(u64, u64)>> {
    let raw = mem.read_vec(
        keys.entries + (from * keys.entry_size) as u64,
        count * keys.entry_size,
    )?;
    Ok(raw
        .chunks_exact(keys.entry_size)
        .map(|e| (le_u64(e, keys.key_offset), le_u64(e, keys.key_offset + 8)))
        .collect())
}

/// Calls `visit(key, value)` for each item of the dict at `addr`, in insertion order,
/// until it returns `false`. Combined tables are read in chunks sized to the number of
/// items the caller still wants (`want`), so a small repr of a big dict costs one read.
fn visit_dict<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
    want: usize,
    mut visit: impl FnMut(u64, u64) -> bool,
) -> Result<()> {
    let d = &layout.object.dict;
    let header = mem.read_vec(object_address(addr)?, d.ma_values as usize + 8)?;
    let used = le_u64(&header, d.ma_used as usize) as usize;
    let keys_addr = le_u64(&header, d.ma_keys as usize);
    let values = le_u64(&header, d.ma_values as usize);
    if keys_addr == 0 || used > MAX_DICT_ENTRIES {
        return Err(Error::inconsistent(format!(
            "dict at {addr:#x}: keys {keys_addr:#x}, {used} items"
        )));
    }
    let keys = dict_keys(mem, layout, keys_addr)?;
    if values == 0 {
        return visit_combined(mem, &keys, used, want, visit);
    }
    let values = object_address(values)?;
    for (key, value) in split_items(mem, layout, &keys, values, used)? {
        if value != 0 && !visit(key, value) {
            break;
        }
    }
    Ok(())
}

fn visit_combined<M: ProcessMemory + ?Sized>(
    mem: &M,
    keys: &DictKeys,
    used: usize,
    want: usize,
    mut visit: impl FnMut(u64, u64) -> bool,
) -> Result<()> {
    let deleted = keys.nentries.saturating_sub(used);
    let mut wanted = want.min(used);
    let mut pos = 0;
    while pos < keys.nentries && wanted > 0 {
        let count = (wanted + deleted)
            .clamp(8, DICT_ENTRY_CHUNK)
            .min(keys.nentries - pos);
        for (key, value) in read_entries(mem, keys, pos, count)? {
            if key == 0 || value == 0 {
                continue;
            }
            wanted -= 1;
            if !visit(key, value) || wanted == 0 {
                return Ok(());
            }
        }
        pos += count;
    }
    Ok(())
}

/// The `(key, value)` pointers of a split table in insertion order (a NULL value is a
/// deleted attribute). `values` is `ma_values`.
fn split_items<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    keys: &DictKeys,
    values: u64,
    used: usize,
) -> Result<Vec<(u64, u64)>> {
    if keys.nentries > MAX_SPLIT_ENTRIES {
        return Err(Error::inconsistent(format!(
            "split dict values at {values:#x}: {} keys",
            keys.nentries
        )));
    }
    let entries = read_entries(mem, keys, 0, keys.nentries)?;
    let slots = split_values(mem, layout, values, keys.nentries)?;
    let order: Vec<usize> = match layout.object.dict.split_order {
        SplitValuesOrder::Dense => (0..used.min(keys.nentries)).collect(),
        SplitValuesOrder::BytesBefore => {
            // Byte `values - 3 - i` holds the index of the i-th inserted value.
            let n = used.min(u8::MAX as usize);
            let raw = mem.read_vec(values - 2 - n as u64, n)?;
            raw.iter().rev().map(|&b| usize::from(b)).collect()
        }
        SplitValuesOrder::BytesAfter { .. } => slots.order.clone(),
    };
    order
        .into_iter()
        .map(|index| {
            let key = entries.get(index).map(|e| e.0);
            let value = slots.values.get(index).copied();
            match (key, value) {
                (Some(key), Some(value)) => Ok((key, value)),
                _ => Err(Error::inconsistent(format!(
                    "split dict values at {values:#x}: index {index} out of range"
                ))),
            }
        })
        .collect()
}

/// A split table's values and, from 3.13, its insertion order.
struct SplitValues {
    values: Vec<u64>,
    order: Vec<usize>,
}

/// Reads the values block at `values` (`PyDictValues*`) in one read: `count` value
/// pointers (before 3.13), or in the 3.13 format all `capacity` slots and the order
/// bytes after them.
fn split_values<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    values: u64,
    count: usize,
) -> Result<SplitValues> {
    let d = &layout.object.dict;
    match d.split_order {
        SplitValuesOrder::BytesAfter { capacity, size, .. } => {
            let header = mem.read_vec(values, d.values_items as usize)?;
            let capacity = usize::from(header[capacity as usize]);
            let size = usize::from(header[size as usize]);
            if size > capacity {
                return Err(Error::inconsistent(format!(
                    "dict values at {values:#x}: size {size}, capacity {capacity}"
                )));
            }
            let raw = mem.read_vec(values + d.values_items, capacity * 8 + size)?;
            let (slots, order) = raw.split_at(capacity * 8);
            Ok(SplitValues {
                values: slots.chunks_exact(8).map(|c| le_u64(c, 0)).collect(),
                order: order.iter().map(|&b| usize::from(b)).collect(),
            })
        }
        _ => {
            let raw = mem.read_vec(values + d.values_items, count * 8)?;
            Ok(SplitValues {
                values: raw.chunks_exact(8).map(|c| le_u64(c, 0)).collect(),
                order: Vec::new(),
            })
        }
    }
}

/// The first `max` items of the dict at `addr` as `(key, value)` object addresses, in
/// insertion order (what iterating the dict in Python yields). Handles combined and
/// split tables of 3.8–3.13: 3.8–3.10 `dk_size` keys, 3.11+ `dk_log2_size` keys with
/// 16-byte entries for str-only keys, 3.11–3.12 order bytes before the values, and the
/// 3.13 `PyDictValues` header.
pub fn dict_items<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
    max: usize,
) -> Result<Vec<(u64, u64)>> {
    let mut items = Vec::new();
    if max == 0 {
        return Ok(items);
    }
    visit_dict(mem, layout, addr, max, |key, value| {
        items.push((key, value));
        items.len() < max
    })?;
    Ok(items)
}

/// The value stored under the str key `name` in the dict at `addr`.
pub fn dict_get_str<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
    name: &str,
) -> Result<Option<u64>> {
    let mut found = None;
    let mut failure = None;
    visit_dict(
        mem,
        layout,
        addr,
        usize::MAX,
        |key, value| match str_equals(mem, layout, key, name) {
            Ok(true) => {
                found = Some(value);
                false
            }
            Ok(false) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        },
    )?;
    match failure {
        Some(e) => Err(e),
        None => Ok(found),
    }
}

/// Whether the object at `addr` is a `str` equal to `text`. A compact ASCII string
/// (every identifier) is compared with one read.
pub fn str_equals<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
    text: &str,
) -> Result<bool> {
    let u = &layout.object.unicode;
    let addr = object_address(addr)?;
    let head = u.ascii_size as usize;
    let mut buf = vec![0u8; head + text.len()];
    let whole = mem.read(addr, &mut buf).is_ok();
    if !whole {
        mem.read(addr, &mut buf[..head])?;
    }
    let length = le_u64(&buf, u.length as usize);
    if length != text.chars().count() as u64 {
        return Ok(false);
    }
    let state = u32::from_le_bytes([
        buf[u.state as usize],
        buf[u.state as usize + 1],
        buf[u.state as usize + 2],
        buf[u.state as usize + 3],
    ]);
    let compact_ascii = unicode_state::COMPACT | unicode_state::ASCII;
    let same_text = if whole && state & compact_ascii == compact_ascii && text.is_ascii() {
        &buf[head..] == text.as_bytes()
    } else {
        read_str_prefix(mem, layout, addr, text.len() + 1)?.0 == text
    };
    if !same_text {
        return Ok(false);
    }
    let ty = type_of(mem, layout, addr)?;
    Ok(type_flags_of(mem, layout, ty)? & type_flags::UNICODE_SUBCLASS != 0)
}

/// The attribute `name` of the instance at `obj`, looked up in its `__dict__` only
/// (no class attributes, properties or slots): `Ok(None)` when the instance has no
/// such attribute or no `__dict__`.
///
/// Where the attributes live depends on the version ([`InstanceDictModel`]):
/// 3.8–3.10 a dict at `tp_dictoffset`; 3.11 a values array or a dict before the
/// object; 3.12 one tagged word before the object; 3.13 a dict before the object or
/// values inline after it. Values arrays are keyed by the class's `ht_cached_keys`.
/// Types without `Py_TPFLAGS_MANAGED_DICT` use `tp_dictoffset` in every version.
pub fn instance_attr<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    obj: u64,
    name: &str,
) -> Result<Option<u64>> {
    let obj = object_address(obj)?;
    let ty = object_address(type_of(mem, layout, obj)?)?;
    let t = &layout.object.types;
    let head = mem.read_vec(ty, t.tp_dictoffset as usize + 8)?;
    let flags = le_u64(&head, layout.object.tp_flags as usize);
    let managed = flags & type_flags::MANAGED_DICT != 0;
    let at = |offset: i64| obj.wrapping_add_signed(offset);
    match layout.object.instance_dict {
        InstanceDictModel::ValuesAndDict { values, dict } if managed => {
            let values = mem.read_u64(at(values))?;
            if values != 0 {
                return values_get(mem, layout, ty, object_address(values)?, name);
            }
            dict_at(mem, layout, mem.read_u64(at(dict))?, name)
        }
        InstanceDictModel::Tagged { offset } if managed => {
            let word = mem.read_u64(at(offset))?;
            if word & 1 == 1 {
                let values = object_address(word.wrapping_add(1))?;
                return values_get(mem, layout, ty, values, name);
            }
            dict_at(mem, layout, word, name)
        }
        InstanceDictModel::InlineValues { dict } if managed => {
            let dict = mem.read_u64(at(dict))?;
            if dict != 0 || flags & type_flags::INLINE_VALUES == 0 {
                return dict_at(mem, layout, dict, name);
            }
            let values = object_address(obj.wrapping_add(le_u64(&head, t.tp_basicsize as usize)))?;
            if let SplitValuesOrder::BytesAfter { valid, .. } = layout.object.dict.split_order {
                if mem.read_u8(values + valid)? == 0 {
                    return Ok(None);
                }
            }
            values_get(mem, layout, ty, values, name)
        }
        _ => {
            let offset = le_u64(&head, t.tp_dictoffset as usize) as i64;
            let dict_ptr = match offset {
                0 => return Ok(None),
                o if o > 0 => obj.wrapping_add(o as u64),
                o => {
                    // Negative: counted from the end of a variable-size object
                    // (CPython `_PyObject_GetDictPtr`).
                    let basic = le_u64(&head, t.tp_basicsize as usize);
                    let item = le_u64(&head, t.tp_itemsize as usize);
                    let n = var_size(mem, layout, obj)?.unsigned_abs();
                    let size = n.wrapping_mul(item).wrapping_add(basic).wrapping_add(7) & !7;
                    obj.wrapping_add(size).wrapping_add_signed(o)
                }
            };
            dict_at(mem, layout, mem.read_u64(object_address(dict_ptr)?)?, name)
        }
    }
}

fn dict_at<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    dict: u64,
    name: &str,
) -> Result<Option<u64>> {
    if dict == 0 {
        return Ok(None);
    }
    dict_get_str(mem, layout, object_address(dict)?, name)
}

/// Looks `name` up in a values array keyed by the type's shared keys.
fn values_get<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    ty: u64,
    values: u64,
    name: &str,
) -> Result<Option<u64>> {
    let keys_addr = mem.read_u64(ty + layout.object.types.ht_cached_keys)?;
    if keys_addr == 0 {
        return Err(Error::inconsistent(format!(
            "type at {ty:#x} has instance values but no cached keys"
        )));
    }
    let keys = dict_keys(mem, layout, keys_addr)?;
    if keys.nentries > MAX_SPLIT_ENTRIES {
        return Err(Error::inconsistent(format!(
            "cached keys of type {ty:#x}: {} keys",
            keys.nentries
        )));
    }
    let entries = read_entries(mem, &keys, 0, keys.nentries)?;
    for (index, (key, _)) in entries.into_iter().enumerate() {
        if key != 0 && str_equals(mem, layout, key, name)? {
            let slots = split_values(mem, layout, values, keys.nentries)?;
            return Ok(slots.values.get(index).copied().filter(|&v| v != 0));
        }
    }
    Ok(None)
}
