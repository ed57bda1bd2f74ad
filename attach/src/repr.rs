//! Python's own `repr()` text for a value in another process.
//!
//! [`repr_value`] reads the object at an address and prints what `repr()` would print
//! in the target, for the types a debugging user sees most: `None`, `bool`, `int` (any
//! size, in decimal), `float` (shortest round-trip, as Python prints it), `str` and
//! `bytes` (Python's quoting and escapes), `list`, `tuple` (and named tuples),
//! `dict`, `set` and `frozenset`, functions (`<function Outer.f at 0x...>`) and
//! classes (`<class 'mod.Name'>`, also for classes whose metaclass has its own
//! `__repr__`, such as enums). Any other object prints as `object.__repr__` would:
//! `<module.Qualname object at 0x...>`, or `<tp_name object at 0x...>` for a type
//! defined in C or in `builtins`. Its own `__repr__` is never run (nothing runs in the
//! target), so a class with a custom `__repr__` still prints that default form.
//!
//! Deliberate differences from Python:
//!
//! * Subclasses of `int`, `str`, `bytes`, `list`, `tuple`, `dict` and `float` print
//!   like their base (`IntEnum` members as numbers, `OrderedDict`, `defaultdict` and
//!   `Counter` as plain dicts), whatever `__repr__` they define. Subclasses of `set`
//!   and `frozenset` print as Python does, `Name({1, 2})`. Tuple subclasses with
//!   `_fields` print as named tuples, `Point(x=1, y=2)`.
//! * Output is cut at [`ReprOptions::max_len`] characters: the first `max_len - 3`
//!   characters followed by `...`. Containers deeper than
//!   [`ReprOptions::max_depth`] print as `[...]`, `(...)`, `{...}` or `Name(...)` for
//!   sets (the text Python uses for a container that contains itself, which is also
//!   printed for such cycles), and after [`ReprOptions::max_items`] items a container
//!   ends with `, ...` (`[0, 1, ...]`).
//! * Only the first [`STR_READ_CHARS`] characters of a str (bytes of a bytes) are
//!   read: a longer value chooses its quote character from that prefix.
//! * An `int` of more than [`MAX_INT_DIGITS`] 30-bit digits prints as
//!   `<int of about N bits at 0x...>` (Python itself refuses to print more than 4300
//!   decimal digits).
//! * Printable characters are those Rust's `char::escape_debug` leaves alone, which
//!   follows the same rule as Python's `str.isprintable` (not in categories Cc, Cf,
//!   Cs, Co, Cn, Zl, Zp, Zs, except the space) over Rust's Unicode version; a
//!   character assigned after the target's Unicode version prints unescaped.
//! * A NULL pointer prints as `<NULL>`; memory that cannot be read, or that does not
//!   hold a consistent object, as `<unreadable 0x...>`.
//!
//! Redaction ([`crate::redact`]): a str, bytes or int whose text
//! [`looks_secret`] prints as [`REDACTED`], and so does a dict value whose key is a
//! str that [`is_secret_name`]. [`repr_named`] also redacts by the value's own name.
//!
//! Cost (the sampler reprs arguments on its hot path): one `process_vm_readv` of
//! [`HEADER_READ`] bytes per value covers `None`, bools, ints up to 2**60 and more,
//! floats, strs up to about 200 ASCII characters, and tuples of up to 29 items; a list
//! adds one read for its items, a dict three (object, keys header, entries). Type
//! facts are read once per type and kept in a [`TypeCache`].

use std::collections::HashMap;
use std::sync::Arc;

use python_offsets::{type_flags, Layout, LongFormat, LONG_DIGIT_BITS};

use crate::error::{Error, Result};
use crate::memory::ProcessMemory;
use crate::objects;
use crate::redact::{is_secret_name, looks_secret, REDACTED};

/// How much of a value to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReprOptions {
    /// The longest text returned, in characters, `...` included (DESIGN.md: 200).
    pub max_len: usize,
    /// How many containers deep to print (6, like `reprlib`); deeper ones print as
    /// `[...]`.
    pub max_depth: usize,
    /// How many items of one container to print before `, ...`.
    pub max_items: usize,
    /// Extra secret names (`--redact`), added to the built-in ones.
    pub redact_names: Vec<String>,
}

impl Default for ReprOptions {
    fn default() -> ReprOptions {
        ReprOptions {
            max_len: 200,
            max_depth: 6,
            max_items: 32,
            redact_names: Vec::new(),
        }
    }
}

/// How many characters of a str (bytes of a bytes) are read at most.
pub const STR_READ_CHARS: usize = 4096;

/// The biggest `int` printed in decimal, in 30-bit digits (about 13,500 decimal
/// digits; the conversion is quadratic).
pub const MAX_INT_DIGITS: usize = 1500;

/// Bytes read at a value's address in the first read.
pub const HEADER_READ: usize = 256;

/// The marker that ends a cut repr.
const ELLIPSIS: &str = "...";

/// Types remembered at most; the cache starts over beyond this (garbage pointers
/// must not grow it without bound).
const TYPE_CACHE_MAX: usize = 4096;

/// Longest base-class chain followed to find a builtin base.
const MAX_BASE_CHAIN: usize = 64;

/// What a type's instances are, as far as printing them goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    None,
    Bool,
    Int,
    Float,
    Str,
    Bytes,
    List,
    Tuple,
    Dict,
    Set,
    Function,
    Type,
    Other,
}

/// What is known about one type.
#[derive(Debug)]
struct TypeInfo {
    kind: Kind,
    /// `tp_name` (for a class defined in Python, its bare name).
    tp_name: String,
    /// The name `object.__repr__` and `type.__repr__` print: `module.Qualname` for a
    /// class defined outside `builtins`, else `tp_name`.
    qualified: String,
    /// Sets: whether the type is exactly `set` (printed `{1, 2}`, not `Name({1, 2})`).
    plain_set: bool,
    /// Named tuples: the field names (`_fields`).
    fields: Option<Vec<String>>,
}

/// Type address -> what its instances are, kept by the caller between calls so that
/// a type's name, flags and bases are read once. A class freed and another allocated
/// at its address would keep the old entry; [`TypeCache::clear`] starts over.
#[derive(Debug, Default)]
pub struct TypeCache {
    types: HashMap<u64, Arc<TypeInfo>>,
}

impl TypeCache {
    /// An empty cache.
    pub fn new() -> TypeCache {
        TypeCache::default()
    }

    /// Forgets every type (after the target may have freed classes).
    pub fn clear(&mut self) {
        self.types.clear();
    }

    /// How many types are remembered.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Whether no type is remembered yet.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// What the type at `ty` is, read once.
    fn info<M: ProcessMemory + ?Sized>(
        &mut self,
        mem: &M,
        layout: &Layout,
        ty: u64,
    ) -> Result<Arc<TypeInfo>> {
        self.info_at_depth(mem, layout, ty, 0)
    }

    fn info_at_depth<M: ProcessMemory + ?Sized>(
        &mut self,
        mem: &M,
        layout: &Layout,
        ty: u64,
        depth: usize,
    ) -> Result<Arc<TypeInfo>> {
        if let Some(info) = self.types.get(&ty) {
            return Ok(info.clone());
        }
        let ty = objects::object_address(ty)?;
        if depth > MAX_BASE_CHAIN {
            return Err(Error::Inconsistent(format!(
                "type at {ty:#x}: base chain longer than {MAX_BASE_CHAIN}"
            )));
        }
        let info = Arc::new(self.classify(mem, layout, ty, depth)?);
        if self.types.len() >= TYPE_CACHE_MAX {
            self.types.clear();
        }
        self.types.insert(ty, info.clone());
        Ok(info)
    }

    fn classify<M: ProcessMemory + ?Sized>(
        &mut self,
        mem: &M,
        layout: &Layout,
        ty: u64,
        depth: usize,
    ) -> Result<TypeInfo> {
        let o = &layout.object;
        let head = mem.read_vec(ty, o.types.tp_dictoffset as usize + 8)?;
        let flags = word(&head, o.tp_flags);
        // A torn read can hand over a pointer to something that is not a type;
        // caching it under that address would outlive the garbage.
        let metatype = word(&head, o.ob_type);
        let is_type = flags & type_flags::READY != 0
            && objects::type_flags_of(mem, layout, metatype)? & type_flags::TYPE_SUBCLASS != 0;
        if !is_type {
            return Err(Error::Inconsistent(format!("{ty:#x} is not a type")));
        }
        let tp_name = objects::read_c_string(mem, word(&head, o.tp_name), 128)?;
        let heap = flags & type_flags::HEAPTYPE != 0;
        let flagged = [
            (type_flags::LONG_SUBCLASS, Kind::Int),
            (type_flags::LIST_SUBCLASS, Kind::List),
            (type_flags::TUPLE_SUBCLASS, Kind::Tuple),
            (type_flags::BYTES_SUBCLASS, Kind::Bytes),
            (type_flags::UNICODE_SUBCLASS, Kind::Str),
            (type_flags::DICT_SUBCLASS, Kind::Dict),
            (type_flags::TYPE_SUBCLASS, Kind::Type),
        ]
        .into_iter()
        .find(|(bit, _)| flags & bit != 0)
        .map(|(_, kind)| kind);
        let kind = match flagged {
            Some(Kind::Int) if !heap && tp_name == "bool" => Kind::Bool,
            Some(kind) => kind,
            None if !heap => match tp_name.as_str() {
                "NoneType" => Kind::None,
                "float" => Kind::Float,
                "set" | "frozenset" => Kind::Set,
                "function" => Kind::Function,
                _ => Kind::Other,
            },
            None => match word(&head, o.types.tp_base) {
                0 => Kind::Other,
                base => match self.info_at_depth(mem, layout, base, depth + 1)?.kind {
                    kind @ (Kind::Float | Kind::Set) => kind,
                    _ => Kind::Other,
                },
            },
        };
        let qualified = if heap {
            heap_type_name(mem, layout, ty, &head, &tp_name)?
        } else {
            tp_name.clone()
        };
        let fields = if kind == Kind::Tuple && heap {
            named_tuple_fields(mem, layout, &head)?
        } else {
            None
        };
        Ok(TypeInfo {
            kind,
            plain_set: !heap && tp_name == "set",
            tp_name,
            qualified,
            fields,
        })
    }
}

fn word(bytes: &[u8], offset: u64) -> u64 {
    let at = offset as usize;
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(w)
}

/// `module.Qualname` of a class, or its `tp_name` when its `__module__` is
/// `builtins` or not a str (CPython `object_repr`, `type_repr`).
fn heap_type_name<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    ty: u64,
    head: &[u8],
    tp_name: &str,
) -> Result<String> {
    let t = &layout.object.types;
    let type_dict = word(head, t.tp_dict);
    let module = match type_dict {
        0 => None,
        dict => objects::dict_get_str(mem, layout, dict, "__module__")?,
    };
    let module = match module {
        Some(m) => read_str_if_str(mem, layout, m)?,
        None => None,
    };
    let Some(module) = module.filter(|m| m != "builtins") else {
        return Ok(tp_name.to_string());
    };
    let qualname = mem.read_u64(ty + t.ht_qualname)?;
    let qualname = objects::read_str_prefix(mem, layout, qualname, 512)?.0;
    Ok(format!("{module}.{qualname}"))
}

/// The text of the object at `addr` if it is a str.
fn read_str_if_str<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
) -> Result<Option<String>> {
    let ty = objects::type_of(mem, layout, addr)?;
    if objects::type_flags_of(mem, layout, ty)? & type_flags::UNICODE_SUBCLASS == 0 {
        return Ok(None);
    }
    Ok(Some(objects::read_str_prefix(mem, layout, addr, 512)?.0))
}

/// The `_fields` of a tuple subclass (its own or a Python base class's), if they are
/// a tuple of str: a named tuple.
fn named_tuple_fields<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    head: &[u8],
) -> Result<Option<Vec<String>>> {
    let t = &layout.object.types;
    let mut dict = word(head, t.tp_dict);
    let mut base = word(head, t.tp_base);
    for _ in 0..MAX_BASE_CHAIN {
        if dict == 0 {
            return Ok(None);
        }
        if let Some(fields) = objects::dict_get_str(mem, layout, dict, "_fields")? {
            let ty = objects::type_of(mem, layout, fields)?;
            let flags = objects::type_flags_of(mem, layout, ty)?;
            if flags & type_flags::TUPLE_SUBCLASS == 0 {
                return Ok(None);
            }
            let mut names = Vec::new();
            for item in objects::tuple_items(mem, layout, fields)? {
                match read_str_if_str(mem, layout, item)? {
                    Some(name) => names.push(name),
                    None => return Ok(None),
                }
            }
            return Ok(Some(names));
        }
        if base == 0 {
            return Ok(None);
        }
        let base_head = mem.read_vec(base, t.tp_dictoffset as usize + 8)?;
        if word(&base_head, layout.object.tp_flags) & type_flags::HEAPTYPE == 0 {
            return Ok(None);
        }
        dict = word(&base_head, t.tp_dict);
        base = word(&base_head, t.tp_base);
    }
    Ok(None)
}

/// Python's `repr()` of the object at `addr` in `mem`, bounded by `opts`, with
/// secrets redacted. Never fails: what cannot be read prints as
/// `<unreadable 0x...>`. Uses a fresh [`TypeCache`]; a caller that reprs many values
/// keeps one and calls [`repr_value_cached`].
pub fn repr_value<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    addr: u64,
    opts: &ReprOptions,
) -> String {
    repr_value_cached(mem, layout, &mut TypeCache::new(), addr, opts)
}

/// [`repr_value`] with the caller's [`TypeCache`]: the sampler's hot path (see the
/// module documentation for the reads each kind of value costs).
pub fn repr_value_cached<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    cache: &mut TypeCache,
    addr: u64,
    opts: &ReprOptions,
) -> String {
    write_repr(mem, layout, cache, addr, opts).0
}

/// The repr of the object at `addr`, and whether an object on the way had been
/// freed (see [`live_reference_count`]).
fn write_repr<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    cache: &mut TypeCache,
    addr: u64,
    opts: &ReprOptions,
) -> (String, bool) {
    let mut writer = Writer {
        mem,
        layout,
        cache,
        opts,
        out: Out::new(opts.max_len),
        active: Vec::new(),
        met_freed: false,
    };
    writer.value(addr, 0, false);
    (writer.out.finish(), writer.met_freed)
}

/// The repr of a value called `name` (an argument, a local): [`REDACTED`] when the
/// name is secret ([`is_secret_name`] with `opts.redact_names`), else
/// [`repr_value`].
pub fn repr_named<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    name: &str,
    addr: u64,
    opts: &ReprOptions,
) -> String {
    repr_named_cached(mem, layout, &mut TypeCache::new(), name, addr, opts)
}

/// [`repr_named`] with the caller's [`TypeCache`].
pub fn repr_named_cached<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    cache: &mut TypeCache,
    name: &str,
    addr: u64,
    opts: &ReprOptions,
) -> String {
    if is_secret_name(name, &opts.redact_names) {
        return REDACTED.to_string();
    }
    repr_value_cached(mem, layout, cache, addr, opts)
}

/// [`repr_named_cached`] of a value that may have been freed since its address was
/// read (a sampled call's argument, read after the stack): `None` when an object on
/// the way had been freed. The call that held it has then ended, and whatever the
/// rest of its memory reads as belongs to other values.
pub fn repr_named_live<M: ProcessMemory + ?Sized>(
    mem: &M,
    layout: &Layout,
    cache: &mut TypeCache,
    name: &str,
    addr: u64,
    opts: &ReprOptions,
) -> Option<String> {
    if is_secret_name(name, &opts.redact_names) {
        return Some(REDACTED.to_string());
    }
    let (text, met_freed) = write_repr(mem, layout, cache, addr, opts);
    (!met_freed).then_some(text)
}

/// The text being built, which stops growing once it is known to be too long.
pub(crate) struct Out {
    text: String,
    chars: usize,
    limit: usize,
}

impl Out {
    pub(crate) fn new(max_len: usize) -> Out {
        Out::with_text(String::new(), max_len)
    }

    /// Writes into `text`'s memory (its contents are cleared).
    pub(crate) fn with_text(mut text: String, max_len: usize) -> Out {
        text.clear();
        Out {
            text,
            chars: 0,
            limit: max_len.max(ELLIPSIS.len()),
        }
    }

    /// True once more than `limit` characters were written: nothing more is needed.
    pub(crate) fn full(&self) -> bool {
        self.chars > self.limit
    }

    pub(crate) fn push(&mut self, c: char) {
        if !self.full() {
            self.text.push(c);
            self.chars += 1;
        }
    }

    pub(crate) fn push_str(&mut self, s: &str) {
        // Most texts fit whole: copied at once instead of a character at a time.
        let chars = if s.is_ascii() {
            s.len()
        } else {
            s.chars().count()
        };
        if self.chars + chars <= self.limit + 1 {
            self.text.push_str(s);
            self.chars += chars;
            return;
        }
        for c in s.chars() {
            if self.full() {
                return;
            }
            self.push(c);
        }
    }

    pub(crate) fn finish(mut self) -> String {
        if self.full() {
            let keep = self.limit - ELLIPSIS.len();
            let cut = self
                .text
                .char_indices()
                .nth(keep)
                .map_or(self.text.len(), |(i, _)| i);
            self.text.truncate(cut);
            self.text.push_str(ELLIPSIS);
        }
        self.text
    }
}

/// Whether `refcnt` can be a live object's reference count. A sampled frame's
/// argument may be read after its call ended: an object freed onto one of
/// CPython's free lists (dicts, lists, tuples, floats) keeps a count of 0, and a
/// small object freed to the allocator holds there the address of the next free
/// block (arenas are mapped far above 2^40), while its memory still reads as the
/// object it was, pointing at items since reused for other values. A live count is
/// at least 1 and far below 2^40, also for an immortal object (3.12+: 2^32 - 1, a
/// little more when an extension built for older versions counted it).
fn live_reference_count(refcnt: u64) -> bool {
    (1..1 << 40).contains(&refcnt)
}

/// The first bytes of an object, read in one go.
struct Header {
    bytes: Vec<u8>,
}

impl Header {
    fn read<M: ProcessMemory + ?Sized>(mem: &M, addr: u64) -> Result<Header> {
        // Reading past a small object is harmless unless it ends a mapping: then
        // shorter reads follow.
        let mut bytes = vec![0u8; HEADER_READ];
        for len in [HEADER_READ, 48] {
            bytes.truncate(len);
            if mem.read(addr, &mut bytes).is_ok() {
                return Ok(Header { bytes });
            }
        }
        bytes.truncate(16);
        mem.read(addr, &mut bytes)?;
        Ok(Header { bytes })
    }

    /// The 8-byte word at `offset` of the object at `addr`, from the header when it
    /// covers it.
    fn word<M: ProcessMemory + ?Sized>(&self, mem: &M, addr: u64, offset: u64) -> Result<u64> {
        let end = offset as usize + 8;
        if end <= self.bytes.len() {
            return Ok(word(&self.bytes, offset));
        }
        Ok(mem.read_u64(addr + offset)?)
    }

    /// `len` bytes at `offset` of the object at `addr`.
    fn bytes<M: ProcessMemory + ?Sized>(
        &self,
        mem: &M,
        addr: u64,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>> {
        let start = offset as usize;
        if start + len <= self.bytes.len() {
            return Ok(self.bytes[start..start + len].to_vec());
        }
        Ok(mem.read_vec(addr + offset, len)?)
    }
}

/// Item pointers of a container, read before anything of it is written.
struct Items {
    addrs: Vec<u64>,
    /// How many items the container has.
    total: usize,
}

struct Writer<'a, M: ProcessMemory + ?Sized> {
    mem: &'a M,
    layout: &'a Layout,
    cache: &'a mut TypeCache,
    opts: &'a ReprOptions,
    out: Out,
    /// Containers being printed, to print a cycle as Python does (`[...]`).
    active: Vec<u64>,
    /// Whether an object met had been freed.
    met_freed: bool,
}

impl<M: ProcessMemory + ?Sized> Writer<'_, M> {
    /// Writes the repr of the object at `addr`. With `is_key`, returns whether it is
    /// a str whose text is a secret name (a dict key whose value must be hidden).
    fn value(&mut self, addr: u64, depth: usize, is_key: bool) -> bool {
        if self.out.full() {
            return false;
        }
        if addr == 0 {
            self.out.push_str("<NULL>");
            return false;
        }
        match self.value_inner(addr, depth, is_key) {
            Ok(secret_key) => secret_key,
            Err(_) => {
                self.out.push_str(&format!("<unreadable {addr:#x}>"));
                false
            }
        }
    }

    /// Every kind reads all it needs before writing anything, so an error leaves no
    /// half-written value behind.
    fn value_inner(&mut self, addr: u64, depth: usize, is_key: bool) -> Result<bool> {
        let o = &self.layout.object;
        let addr = objects::object_address(addr)?;
        let header = Header::read(self.mem, addr)?;
        let ty = header.word(self.mem, addr, o.ob_type)?;
        if ty == 0 {
            return Err(Error::Inconsistent(format!(
                "object at {addr:#x} has no type"
            )));
        }
        let refcnt = header.word(self.mem, addr, o.ob_refcnt)?;
        if !live_reference_count(refcnt) {
            self.met_freed = true;
            return Err(Error::Inconsistent(format!(
                "object at {addr:#x} was freed (reference count {refcnt:#x})"
            )));
        }
        let info = self.cache.info(self.mem, self.layout, ty)?;
        match info.kind {
            Kind::None => self.out.push_str("None"),
            Kind::Bool => {
                let text = self.bool_text(addr, &header)?;
                self.out.push_str(text);
            }
            Kind::Int => {
                let text = self.int_text(addr, &header)?;
                write_maybe_secret(&mut self.out, &text);
            }
            Kind::Float => {
                let bits = header.word(self.mem, addr, o.float_fval)?;
                self.out.push_str(&float_repr(f64::from_bits(bits)));
            }
            Kind::Str => {
                let (code_points, _) = objects::str_code_points_from(
                    self.mem,
                    self.layout,
                    addr,
                    &header.bytes,
                    STR_READ_CHARS.max(self.opts.max_len),
                )?;
                return Ok(write_str(
                    &mut self.out,
                    &code_points,
                    is_key,
                    &self.opts.redact_names,
                ));
            }
            Kind::Bytes => {
                let size = self.size(addr, &header)?;
                let data = header.bytes(
                    self.mem,
                    addr,
                    o.bytes_sval,
                    size.min(STR_READ_CHARS.max(self.opts.max_len)),
                )?;
                write_bytes(&mut self.out, &data);
            }
            Kind::List | Kind::Tuple | Kind::Dict | Kind::Set => {
                self.container(addr, &header, &info, depth)?;
            }
            Kind::Function => {
                let qualname = header.word(self.mem, addr, o.func_qualname)?;
                let qualname = objects::read_str_prefix(self.mem, self.layout, qualname, 512)?.0;
                self.out
                    .push_str(&format!("<function {qualname} at {addr:#x}>"));
            }
            Kind::Type => {
                let class = self.cache.info(self.mem, self.layout, addr)?;
                self.out.push_str(&format!("<class '{}'>", class.qualified));
            }
            Kind::Other => {
                self.out
                    .push_str(&format!("<{} object at {addr:#x}>", info.qualified));
            }
        }
        Ok(false)
    }

    /// `ob_size` of a variable-size object, checked.
    fn size(&self, addr: u64, header: &Header) -> Result<usize> {
        let size = header.word(self.mem, addr, self.layout.object.ob_size)? as i64;
        if !(0..=1 << 40).contains(&size) {
            return Err(Error::Inconsistent(format!(
                "object at {addr:#x} has size {size}"
            )));
        }
        Ok(size as usize)
    }

    /// An int's sign (true when negative) and number of 30-bit digits.
    fn int_size(&self, addr: u64, header: &Header) -> Result<(bool, usize)> {
        let o = &self.layout.object;
        let (negative, count) = match o.long_format {
            LongFormat::SignedSize => {
                let size = header.word(self.mem, addr, o.ob_size)? as i64;
                (size < 0, size.unsigned_abs())
            }
            LongFormat::LvTag => {
                let tag = header.word(self.mem, addr, o.long_tag.unwrap_or(o.ob_size))?;
                match tag & 3 {
                    1 => (false, 0),
                    sign => (sign == 2, tag >> 3),
                }
            }
        };
        if count > 1 << 40 {
            return Err(Error::Inconsistent(format!(
                "int at {addr:#x} has {count} digits"
            )));
        }
        Ok((negative, count as usize))
    }

    /// `count` 30-bit digits of an int, least significant first.
    fn int_digits(&self, addr: u64, header: &Header, count: usize) -> Result<Vec<u32>> {
        let raw = header.bytes(self.mem, addr, self.layout.object.long_digits, count * 4)?;
        let digits: Vec<u32> = raw
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if digits.iter().any(|&d| d >> LONG_DIGIT_BITS != 0) {
            return Err(Error::Inconsistent(format!(
                "int at {addr:#x} has a digit over 30 bits"
            )));
        }
        Ok(digits)
    }

    fn bool_text(&self, addr: u64, header: &Header) -> Result<&'static str> {
        let (_, count) = self.int_size(addr, header)?;
        let digits = self.int_digits(addr, header, count.min(1))?;
        Ok(if digits.iter().any(|&d| d != 0) {
            "True"
        } else {
            "False"
        })
    }

    fn int_text(&self, addr: u64, header: &Header) -> Result<String> {
        let (negative, count) = self.int_size(addr, header)?;
        if count > MAX_INT_DIGITS {
            let bits = count as u64 * u64::from(LONG_DIGIT_BITS);
            return Ok(format!("<int of about {bits} bits at {addr:#x}>"));
        }
        let decimal = digits_to_decimal(&self.int_digits(addr, header, count)?);
        Ok(if negative && decimal != "0" {
            format!("-{decimal}")
        } else {
            decimal
        })
    }

    /// A list, tuple, dict or set.
    fn container(
        &mut self,
        addr: u64,
        header: &Header,
        info: &TypeInfo,
        depth: usize,
    ) -> Result<()> {
        if depth >= self.opts.max_depth || self.active.contains(&addr) {
            let placeholder = match (info.kind, &info.fields) {
                (Kind::List, _) => "[...]".to_string(),
                (Kind::Tuple, None) => "(...)".to_string(),
                (Kind::Tuple, Some(_)) => format!("{}(...)", info.tp_name),
                (Kind::Set, _) => format!("{}(...)", info.tp_name),
                _ => "{...}".to_string(),
            };
            self.out.push_str(&placeholder);
            return Ok(());
        }
        match info.kind {
            Kind::Dict => {
                let used = header.word(self.mem, addr, self.layout.object.dict.ma_used)?;
                let total = usize::try_from(used)
                    .ok()
                    .filter(|&n| n <= objects::MAX_DICT_ENTRIES)
                    .ok_or_else(|| {
                        Error::Inconsistent(format!("dict at {addr:#x} has {used} items"))
                    })?;
                let items = objects::dict_items(self.mem, self.layout, addr, self.opts.max_items)?;
                self.write_dict(addr, &items, total, depth);
            }
            Kind::Set => {
                let items = self.set_items(addr, header)?;
                self.write_set(addr, &items, info, depth);
            }
            Kind::List => {
                let total = self.size(addr, header)?;
                let shown = total.min(self.opts.max_items);
                let array = header.word(self.mem, addr, self.layout.object.list_items)?;
                let raw = if shown == 0 {
                    Vec::new()
                } else {
                    self.mem.read_vec(array, shown * 8)?
                };
                let items = Items {
                    addrs: raw.chunks_exact(8).map(|c| word(c, 0)).collect(),
                    total,
                };
                self.write_sequence(addr, "[", "]", &items, depth, None);
            }
            _ => {
                let total = self.size(addr, header)?;
                let shown = total.min(self.opts.max_items);
                let raw =
                    header.bytes(self.mem, addr, self.layout.object.tuple_items, shown * 8)?;
                let items = Items {
                    addrs: raw.chunks_exact(8).map(|c| word(c, 0)).collect(),
                    total,
                };
                match &info.fields {
                    Some(fields) if fields.len() == total => {
                        self.write_named_tuple(addr, &info.tp_name, fields, &items, depth)
                    }
                    _ => self.write_sequence(addr, "(", ")", &items, depth, Some(",")),
                }
            }
        }
        Ok(())
    }

    /// Items separated by `, `, `, ...` when cut; `one_item_suffix` is the `,` of a
    /// 1-tuple.
    fn write_sequence(
        &mut self,
        addr: u64,
        open: &str,
        close: &str,
        items: &Items,
        depth: usize,
        one_item_suffix: Option<&str>,
    ) {
        self.out.push_str(open);
        self.active.push(addr);
        for (i, &item) in items.addrs.iter().enumerate() {
            if self.out.full() {
                break;
            }
            if i > 0 {
                self.out.push_str(", ");
            }
            self.value(item, depth + 1, false);
        }
        self.active.pop();
        self.write_more(items.addrs.len(), items.total);
        if let (Some(suffix), 1) = (one_item_suffix, items.total) {
            self.out.push_str(suffix);
        }
        self.out.push_str(close);
    }

    /// `, ...` (or `...` alone) when only `shown` of `total` items were printed.
    fn write_more(&mut self, shown: usize, total: usize) {
        if total > shown {
            self.out
                .push_str(if shown == 0 { ELLIPSIS } else { ", ..." });
        }
    }

    fn write_named_tuple(
        &mut self,
        addr: u64,
        name: &str,
        fields: &[String],
        items: &Items,
        depth: usize,
    ) {
        self.out.push_str(name);
        self.out.push('(');
        self.active.push(addr);
        for (i, (&item, field)) in items.addrs.iter().zip(fields).enumerate() {
            if self.out.full() {
                break;
            }
            if i > 0 {
                self.out.push_str(", ");
            }
            self.out.push_str(field);
            self.out.push('=');
            if is_secret_name(field, &self.opts.redact_names) {
                self.out.push_str(REDACTED);
            } else {
                self.value(item, depth + 1, false);
            }
        }
        self.active.pop();
        self.write_more(items.addrs.len(), items.total);
        self.out.push(')');
    }

    fn write_dict(&mut self, addr: u64, items: &[(u64, u64)], total: usize, depth: usize) {
        self.out.push('{');
        self.active.push(addr);
        for (i, &(key, value)) in items.iter().enumerate() {
            if self.out.full() {
                break;
            }
            if i > 0 {
                self.out.push_str(", ");
            }
            let secret = self.value(key, depth + 1, true);
            self.out.push_str(": ");
            if secret {
                self.out.push_str(REDACTED);
            } else {
                self.value(value, depth + 1, false);
            }
        }
        self.active.pop();
        self.write_more(items.len(), total);
        self.out.push('}');
    }

    /// The first `max_items` keys of a set, in table order (as iterating it yields),
    /// and its size.
    fn set_items(&self, addr: u64, header: &Header) -> Result<Items> {
        let s = &self.layout.object.set;
        let used = header.word(self.mem, addr, s.used)? as i64;
        let mask = header.word(self.mem, addr, s.mask)?;
        let table = objects::object_address(header.word(self.mem, addr, s.table)?)?;
        let slots = mask.wrapping_add(1);
        if !slots.is_power_of_two() || slots > 1 << 32 || !(0..=slots as i64).contains(&used) {
            return Err(Error::Inconsistent(format!(
                "set at {addr:#x}: mask {mask:#x}, {used} used"
            )));
        }
        let (slots, total) = (slots as usize, used as usize);
        let want = total.min(self.opts.max_items);
        let mut addrs = Vec::with_capacity(want);
        let mut pos = 0;
        while addrs.len() < want && pos < slots {
            let count = (want * 4).clamp(16, 1024).min(slots - pos);
            let raw = self.mem.read_vec(table + pos as u64 * 16, count * 16)?;
            for entry in raw.chunks_exact(16) {
                let (key, hash) = (word(entry, 0), word(entry, 8) as i64);
                // A removed key leaves a dummy entry whose hash is -1.
                if key != 0 && hash != -1 && addrs.len() < want {
                    addrs.push(key);
                }
            }
            pos += count;
        }
        Ok(Items { addrs, total })
    }

    fn write_set(&mut self, addr: u64, items: &Items, info: &TypeInfo, depth: usize) {
        if items.total == 0 {
            self.out.push_str(&format!("{}()", info.tp_name));
            return;
        }
        if !info.plain_set {
            self.out.push_str(&info.tp_name);
            self.out.push('(');
        }
        self.write_sequence(addr, "{", "}", items, depth, None);
        if !info.plain_set {
            self.out.push(')');
        }
    }
}

/// Writes `text`, or [`REDACTED`] if it looks like a secret.
pub(crate) fn write_maybe_secret(out: &mut Out, text: &str) {
    if looks_secret(text) {
        out.push_str(REDACTED);
    } else {
        out.push_str(text);
    }
}

/// Writes a str's repr (or [`REDACTED`]); returns whether, as a dict key, its text
/// is a secret name.
pub(crate) fn write_str(
    out: &mut Out,
    code_points: &[u32],
    is_key: bool,
    redact_names: &[String],
) -> bool {
    let text: String = code_points
        .iter()
        .map(|&c| char::from_u32(c).unwrap_or('\u{fffd}'))
        .collect();
    if looks_secret(&text) {
        out.push_str(REDACTED);
        return false;
    }
    let has_single = code_points.contains(&u32::from(b'\''));
    let has_double = code_points.contains(&u32::from(b'"'));
    let quote = if has_single && !has_double { '"' } else { '\'' };
    out.push(quote);
    for &c in code_points {
        if out.full() {
            break;
        }
        escape_code_point(out, c, quote);
    }
    out.push(quote);
    is_key && is_secret_name(&text, redact_names)
}

/// One character of a str repr (CPython `unicode_repr`).
fn escape_code_point(out: &mut Out, c: u32, quote: char) {
    let ch = char::from_u32(c);
    match ch {
        Some(ch) if ch == quote || ch == '\\' => {
            out.push('\\');
            out.push(ch);
        }
        Some('\t') => out.push_str("\\t"),
        Some('\n') => out.push_str("\\n"),
        Some('\r') => out.push_str("\\r"),
        Some(_) if c < 0x20 || c == 0x7f => out.push_str(&format!("\\x{c:02x}")),
        Some(ch) if c < 0x7f => out.push(ch),
        Some(ch) if is_printable(ch) => out.push(ch),
        _ if c <= 0xff => out.push_str(&format!("\\x{c:02x}")),
        _ if c <= 0xffff => out.push_str(&format!("\\u{c:04x}")),
        _ => out.push_str(&format!("\\U{c:08x}")),
    }
}

/// A bytes repr (CPython `PyBytes_Repr`), or [`REDACTED`].
pub(crate) fn write_bytes(out: &mut Out, data: &[u8]) {
    let latin1: String = data.iter().map(|&b| char::from(b)).collect();
    if looks_secret(&latin1) {
        out.push_str(REDACTED);
        return;
    }
    let quote = if data.contains(&b'\'') && !data.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    out.push('b');
    out.push(char::from(quote));
    for &b in data {
        if out.full() {
            break;
        }
        match b {
            b'\\' => out.push_str("\\\\"),
            _ if b == quote => {
                out.push('\\');
                out.push(char::from(b));
            }
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push(char::from(quote));
}

/// Whether Python would print `c` (not ASCII) as is in a str repr.
fn is_printable(c: char) -> bool {
    // `str::escape_debug` escapes a character that is not printable (categories Cc,
    // Cf, Cs, Co, Cn, Zl, Zp, Zs but the space: Python's rule) and also grapheme
    // extenders, but the latter only at the start of the string: after an 'a',
    // only unprintable characters are escaped.
    let mut buf = [0u8; 8];
    buf[0] = b'a';
    let len = 1 + c.encode_utf8(&mut buf[1..]).len();
    match std::str::from_utf8(&buf[..len]) {
        Ok(s) => s.escape_debug().count() == 2,
        Err(_) => false,
    }
}

/// The decimal text of an unsigned number given as 30-bit digits, least significant
/// first.
pub(crate) fn digits_to_decimal(digits: &[u32]) -> String {
    const BASE: u64 = 1_000_000_000;
    // Little-endian limbs of nine decimal digits each.
    let mut limbs: Vec<u64> = Vec::new();
    for &digit in digits.iter().rev() {
        let mut carry = u64::from(digit);
        for limb in limbs.iter_mut() {
            let v = (*limb << LONG_DIGIT_BITS) | carry;
            *limb = v % BASE;
            carry = v / BASE;
        }
        while carry > 0 {
            limbs.push(carry % BASE);
            carry /= BASE;
        }
    }
    let Some((top, rest)) = limbs.split_last() else {
        return "0".to_string();
    };
    let mut text = top.to_string();
    for limb in rest.iter().rev() {
        text.push_str(&format!("{limb:09}"));
    }
    text
}

/// Python's `repr()` of a float: the shortest digits that round-trip, in fixed
/// notation when the decimal exponent is in `-4..16` (`1e-05`, `0.0001`,
/// `1000000000000000.0`, `1e+16`), `inf`, `-inf`, `nan`, `-0.0` (CPython
/// `float_repr`, `format_float_short` with mode `'r'`).
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0.0");
    }
    // Rust's `{:e}` prints the shortest round-trip digits: `d[.ddd]e[-]x`.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i32 = exponent.parse().unwrap_or(0);
    // Python's `decpt`: the value is 0.DIGITS * 10**decpt.
    let decpt = exponent + 1;
    let n = digits.len() as i32;
    let body = if decpt <= -4 || decpt > 16 {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{first}{fraction}e{exp_sign}{:02}", exponent.abs())
    } else if decpt <= 0 {
        format!("0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= n {
        format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
    } else {
        let (int_part, frac_part) = digits.split_at(decpt as usize);
        format!("{int_part}.{frac_part}")
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::SnapshotMemory;
    use python_offsets::Version;

    /// Memory of pseudo-random words, half of them pointers back into it, so that
    /// garbage "types", "items" and "keys" lead somewhere, and many small numbers
    /// and type flag bits, so that headers pass the first checks.
    fn garbage(seed: u64, base: u64, words: usize) -> SnapshotMemory {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut bytes = Vec::with_capacity(words * 8);
        for _ in 0..words {
            let r = next();
            let word = match r % 8 {
                0..=3 => base + (next() % words as u64) * 8,
                4 => (r >> 8) % 64,
                // Flags of a ready type whose instances are types too, with a
                // builtin's subclass bit, so that garbage "types" pass as types and
                // classify as int, list, tuple, bytes, str, dict or type.
                5 => type_flags::READY | type_flags::TYPE_SUBCLASS | 1 << (24 + (r >> 8) % 8),
                6 => (r >> 8) % 1000,
                _ => next(),
            };
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        let mut mem = SnapshotMemory::new();
        mem.insert(base, bytes);
        mem
    }

    #[test]
    fn garbage_memory_never_panics_and_stays_bounded() {
        let base = 0x10_0000;
        let words = 4096;
        let opts = ReprOptions {
            max_len: 80,
            ..ReprOptions::default()
        };
        for &(major, minor) in Layout::supported() {
            let Some(layout) = Layout::for_version(Version::new(major, minor, 0)) else {
                panic!("no layout for {major}.{minor}");
            };
            for seed in 1..9u64 {
                let mem = garbage(seed * 7919 + u64::from(minor), base, words);
                let mut cache = TypeCache::new();
                for i in 0..words as u64 {
                    let addr = base + i * 8;
                    let text = repr_value_cached(&mem, &layout, &mut cache, addr, &opts);
                    assert!(text.chars().count() <= opts.max_len, "{text}");
                    let _ = objects::dict_items(&mem, &layout, addr, 8);
                    let _ = objects::instance_attr(&mem, &layout, addr, "_name");
                }
            }
        }
    }

    #[test]
    fn decimal_of_digits() {
        assert_eq!(digits_to_decimal(&[]), "0");
        assert_eq!(digits_to_decimal(&[42]), "42");
        // 2**30 = digits [0, 1].
        assert_eq!(digits_to_decimal(&[0, 1]), (1u64 << 30).to_string());
        // 2**64 - 1 in 30-bit digits.
        let v = u64::MAX;
        let digits = [
            (v & 0x3fff_ffff) as u32,
            ((v >> 30) & 0x3fff_ffff) as u32,
            (v >> 60) as u32,
        ];
        assert_eq!(digits_to_decimal(&digits), v.to_string());
        let v: u128 = 10u128.pow(30) + 7;
        let digits: Vec<u32> = (0..5)
            .map(|i| ((v >> (30 * i)) & 0x3fff_ffff) as u32)
            .collect();
        assert_eq!(digits_to_decimal(&digits), v.to_string());
    }

    #[test]
    fn out_cuts_with_marker() {
        let mut out = Out::new(10);
        out.push_str("0123456789");
        assert_eq!(out.finish(), "0123456789", "exactly max_len is not cut");
        let mut out = Out::new(10);
        out.push_str("0123456789A");
        assert_eq!(out.finish(), "0123456...");
    }
}
