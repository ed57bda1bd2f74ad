//! CPython struct layouts, one table of plain offsets per minor version.
//!
//! `tracer` reads a live interpreter's memory from outside, so it has to know where
//! each field it reads sits in CPython's structs. That knowledge lives here and
//! nowhere else:
//!
//! * [`Layout`]: every offset the reader uses (runtime, interpreter and thread state,
//!   frames, code objects, and the object types a repr needs), for 3.8 to 3.13 on
//!   x86_64 GIL builds. [`Layout::for_version`] gives the table of a version.
//! * [`debug_offsets`]: from 3.13 on the interpreter carries its own layout in
//!   `_Py_DebugOffsets` at the start of `_PyRuntime`; [`Layout::apply_debug_offsets`]
//!   overrides the table with the numbers the target itself reports.
//! * [`linetable`]: the three line-number table formats (3.8–3.9 `co_lnotab`, 3.10
//!   `co_linetable`, 3.11+ location table), decoded from raw bytes.
//! * [`Version`]: parsing `PY_VERSION_HEX` (`Py_Version`) and version strings.
//!
//! The test `tests/dwarf.rs` reads the DWARF debug info of every interpreter on the
//! machine and checks each offset in these tables against it. The instance-dict
//! offsets ([`InstanceDictModel`]) come from CPython macros, not structs, so
//! `tests/instance_dict.rs` follows them (and the split-dict order bytes) in live
//! interpreters instead.
//!
//! ```
//! use python_offsets::{Layout, Version};
//! let layout = Layout::for_version(Version::new(3, 12, 1)).unwrap();
//! assert_eq!(layout.thread.next, 8);
//! ```

pub mod debug_offsets;
pub mod linetable;
mod tables;
mod version;

pub use version::Version;

/// How a thread state reaches its innermost frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameModel {
    /// 3.8–3.10: `tstate->frame` is a `PyFrameObject*`, chained by `f_back`.
    FrameObject,
    /// 3.11–3.12: `tstate->cframe->current_frame` is a `_PyInterpreterFrame*`.
    CFrame,
    /// 3.13+: `tstate->current_frame` is a `_PyInterpreterFrame*`.
    CurrentFrame,
}

/// Which line table a code object carries (see [`linetable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineTableFormat {
    /// 3.8–3.9 `co_lnotab`; `f_lasti` is a byte offset.
    Lnotab,
    /// 3.10 `co_linetable` (PEP 626); `f_lasti` counts code units.
    Linetable310,
    /// 3.11+ location table; the instruction pointer points into `co_code_adaptive`.
    Locations,
}

/// How a dict's keys object is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DictKeysFormat {
    /// 3.8–3.10: `dk_size` (a count) and `dk_nentries`; 24-byte `{hash, key, value}` entries.
    Sized,
    /// 3.11+: `dk_log2_size`, `dk_log2_index_bytes`, `dk_kind`; 24-byte general entries,
    /// 16-byte `{key, value}` entries for unicode-only keys.
    Log2,
}

/// Where a split dict's insertion order is kept (split tables share their keys with
/// every instance of a class; each instance has its own values array).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitValuesOrder {
    /// 3.8–3.10: split tables are dense and in key order: value `i` belongs to entry
    /// `i`, for `i < ma_used` (a deletion turns the table into a combined one).
    Dense,
    /// 3.11–3.12: `ma_values` is preceded by a byte array; the `i`-th inserted entry's
    /// index is the byte at `ma_values - 3 - i` (CPython `get_index_from_order`).
    BytesBefore,
    /// 3.13+: `PyDictValues {uint8_t capacity, size, embedded, valid; values[]}`; the
    /// insertion order bytes follow `values[capacity]` (CPython
    /// `get_insertion_order_array`). The fields are offsets in `struct _dictvalues`.
    BytesAfter {
        /// `_dictvalues.capacity` (u8).
        capacity: u64,
        /// `_dictvalues.size` (u8): how many order bytes are in use.
        size: u64,
        /// `_dictvalues.valid` (u8): 0 once an object's inline values were moved
        /// into a real dict.
        valid: u64,
    },
}

/// Where an instance of a Python class keeps its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceDictModel {
    /// 3.8–3.10: a `PyDictObject*` at `tp_dictoffset` from the object (a negative
    /// offset counts from the end of a variable-size object).
    DictOffset,
    /// 3.11: types with `Py_TPFLAGS_MANAGED_DICT` keep a `PyDictValues*` at `values`
    /// and a `PyDictObject*` at `dict`, both before the object (CPython
    /// `_PyObject_ValuesPointer`, `_PyObject_ManagedDictPointer`); the keys of the
    /// values are the type's `ht_cached_keys`.
    ValuesAndDict { values: i64, dict: i64 },
    /// 3.12: one `PyDictOrValues` word at `offset` before the object: odd means a
    /// values pointer minus one, even a dict pointer (CPython
    /// `_PyObject_DictOrValuesPointer`, `_PyDictOrValues_GetValues`).
    Tagged { offset: i64 },
    /// 3.13+: a `PyDictObject*` at `dict` before the object; with
    /// `Py_TPFLAGS_INLINE_VALUES` and no dict yet, a `PyDictValues` sits right after
    /// the object at `tp_basicsize` (CPython `_PyObject_InlineValues`).
    InlineValues { dict: i64 },
}

/// How an `int` stores its size and sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongFormat {
    /// ≤3.11: `ob_size` is the signed number of 30-bit digits.
    SignedSize,
    /// 3.12+: `lv_tag`: digit count in bits 3.., sign in bits 0–1 (0 +, 1 zero, 2 −).
    LvTag,
}

/// `_PyRuntime` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeLayout {
    /// `interpreters.head`: the first `PyInterpreterState*`.
    pub interpreters_head: u64,
    /// 3.8–3.11: `gilstate.tstate_current`, the thread state running Python now.
    pub tstate_current: Option<u64>,
    /// 3.8–3.11: `ceval.gil.last_holder` (a `PyThreadState*`).
    pub gil_last_holder: Option<u64>,
    /// 3.8–3.11: `ceval.gil.locked` (an int).
    pub gil_locked: Option<u64>,
    /// 3.12: `ceval.pending_mainthread.lock`, the `PyThread_type_lock` (on Linux a
    /// `sem_t*`, value 1 when free) that guards the queue `Py_AddPendingCall` fills.
    /// Injection reads it to prove that the thread it stopped does not hold it.
    pub pending_calls_lock: Option<u64>,
    /// 3.13+: `ceval.pending_mainthread.mutex`, the one-byte `PyMutex` (bit 0 set
    /// while held) that guards the same queue.
    pub pending_calls_mutex: Option<u64>,
}

/// `PyInterpreterState` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterpreterLayout {
    pub next: u64,
    /// `tstate_head` (≤3.10) / `threads.head` (3.11+).
    pub threads_head: u64,
    /// `modules` / `imports.modules`: the `sys.modules` dict.
    pub modules: u64,
    /// 3.12+: `ceval.gil`, a pointer to the `_gil_runtime_state` in use.
    pub ceval_gil: Option<u64>,
}

/// `struct _gil_runtime_state` fields (3.12+, reached through [`InterpreterLayout::ceval_gil`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GilLayout {
    pub last_holder: u64,
    pub locked: u64,
}

/// `PyThreadState` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadLayout {
    pub next: u64,
    pub interp: u64,
    /// 3.8–3.10: `frame` (`PyFrameObject*`).
    pub frame: Option<u64>,
    /// 3.11–3.12: `cframe` (`_PyCFrame*`).
    pub cframe: Option<u64>,
    /// 3.11–3.12: `_PyCFrame.current_frame`.
    pub cframe_current_frame: Option<u64>,
    /// 3.13+: `current_frame`.
    pub current_frame: Option<u64>,
    /// `thread_id`: the `pthread_t` of the thread.
    pub thread_id: u64,
    /// 3.11+: `native_thread_id`, the kernel's TID.
    pub native_thread_id: Option<u64>,
}

/// Frame fields: `PyFrameObject` (≤3.10) or `_PyInterpreterFrame` (3.11+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLayout {
    pub model: FrameModel,
    /// `f_back` / `previous`.
    pub previous: u64,
    /// `f_code` / `f_executable`.
    pub code: u64,
    /// `f_globals`: the module's globals dict (its `__name__` names the module).
    pub globals: u64,
    /// ≤3.10: `f_lasti` (an int; bytes before 3.10, code units in 3.10).
    pub lasti: Option<u64>,
    /// 3.11+: `prev_instr` (3.11, 3.12: last executed) / `instr_ptr` (3.13: current).
    pub instr_ptr: Option<u64>,
    /// 3.11+: `owner` (a char; see the `OWNED_BY_*` constants).
    pub owner: Option<u64>,
    /// `f_localsplus` / `localsplus`: the array of local variable slots.
    pub localsplus: u64,
    /// `sizeof` the struct. In 3.11+ it counts the first `localsplus` slot, so a
    /// reader of the fixed part reads up to [`FrameLayout::localsplus`] instead.
    pub size: u64,
}

/// `PyCodeObject` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeLayout {
    pub argcount: u64,
    pub posonlyargcount: u64,
    pub kwonlyargcount: u64,
    pub nlocals: u64,
    pub flags: u64,
    pub firstlineno: u64,
    /// `co_varnames` (≤3.10) / `co_localsplusnames` (3.11+): a tuple of str.
    pub varnames: u64,
    /// ≤3.10: `co_cellvars` (tuple of str).
    pub cellvars: Option<u64>,
    /// ≤3.10: `co_freevars` (tuple of str).
    pub freevars: Option<u64>,
    /// 3.11+: `co_localspluskinds` (bytes, one kind per local slot).
    pub localspluskinds: Option<u64>,
    pub filename: u64,
    pub name: u64,
    /// 3.11+: `co_qualname`.
    pub qualname: Option<u64>,
    /// `co_lnotab` (≤3.9) / `co_linetable` (3.10+): a bytes object.
    pub linetable: u64,
    pub linetable_format: LineTableFormat,
    /// 3.11+: `co_code_adaptive`, the inline bytecode.
    pub code_adaptive: Option<u64>,
    /// 3.11+: `_co_firsttraceable`, in code units.
    pub firsttraceable: Option<u64>,
}

/// Fields of the object types a repr needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLayout {
    /// `PyObject.ob_refcnt`: at least 1 in a live object (3.12+: immortal ones hold
    /// 2^32 - 1); 0 in one freed onto a free list, a pointer in one freed to the
    /// allocator.
    pub ob_refcnt: u64,
    pub ob_type: u64,
    /// `PyVarObject.ob_size`.
    pub ob_size: u64,
    pub tp_name: u64,
    pub tp_flags: u64,
    /// `PyTupleObject.ob_item[]` (inline array).
    pub tuple_items: u64,
    /// `PyListObject.ob_item` (pointer to an array).
    pub list_items: u64,
    pub bytes_sval: u64,
    pub float_fval: u64,
    pub cell_ref: u64,
    /// `PyModuleObject.md_dict`: a module's globals.
    pub module_dict: u64,
    /// `PyFunctionObject.func_qualname` (a str).
    pub func_qualname: u64,
    /// `PyTypeObject` and `PyHeapTypeObject` fields beyond the name and flags.
    pub types: TypeLayout,
    /// Where instances keep their attributes.
    pub instance_dict: InstanceDictModel,
    /// `PyLongObject` digits (`ob_digit` / `long_value.ob_digit`).
    pub long_digits: u64,
    /// 3.12+: `long_value.lv_tag`.
    pub long_tag: Option<u64>,
    pub long_format: LongFormat,
    pub unicode: UnicodeLayout,
    pub dict: DictLayout,
    pub set: SetLayout,
}

/// `PyTypeObject` (`struct _typeobject`) and `PyHeapTypeObject` fields for naming a
/// type the way Python's `repr` does and for finding instance attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeLayout {
    /// `_typeobject.tp_basicsize`.
    pub tp_basicsize: u64,
    /// `_typeobject.tp_itemsize`.
    pub tp_itemsize: u64,
    /// `_typeobject.tp_base`: the first base class.
    pub tp_base: u64,
    /// `_typeobject.tp_dict`: the class namespace (holds `__module__` for classes).
    pub tp_dict: u64,
    /// `_typeobject.tp_dictoffset`.
    pub tp_dictoffset: u64,
    /// `PyHeapTypeObject.ht_qualname` (a str).
    pub ht_qualname: u64,
    /// `PyHeapTypeObject.ht_cached_keys`: the keys shared by instances' split dicts.
    pub ht_cached_keys: u64,
}

/// `PyASCIIObject` / `PyCompactUnicodeObject` / `PyUnicodeObject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnicodeLayout {
    pub length: u64,
    /// The `state` bitfield (see the `UNICODE_STATE_*` constants).
    pub state: u64,
    /// `sizeof(PyASCIIObject)`: compact ASCII data starts here.
    pub ascii_size: u64,
    /// `sizeof(PyCompactUnicodeObject)`: compact non-ASCII data starts here.
    pub compact_size: u64,
    /// `PyUnicodeObject.data.any` for non-compact strings.
    pub data_any: u64,
}

/// `PyDictObject` and its keys object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DictLayout {
    pub ma_used: u64,
    /// `ma_version_tag` (u64): moves on every change of the dict (3.12+: in steps
    /// of 256, the low bits naming its watchers); the sampler reads it from a module
    /// body's globals, where that body keeps its variables.
    pub ma_version_tag: u64,
    pub ma_keys: u64,
    pub ma_values: u64,
    pub keys_format: DictKeysFormat,
    /// ≤3.10: `dk_size`; 3.11+: `dk_log2_size` (u8).
    pub dk_size: u64,
    /// 3.11+: `dk_log2_index_bytes` (u8).
    pub dk_log2_index_bytes: Option<u64>,
    /// 3.11+: `dk_kind` (u8; 0 general, 1 unicode, 2 split).
    pub dk_kind: Option<u64>,
    pub dk_nentries: u64,
    /// Start of `dk_indices`.
    pub dk_indices: u64,
    /// Where the value array starts in the block `ma_values` points to: 8 in 3.13
    /// (`PyDictValues.values[]` after four u8 counters), 0 before (3.11–3.12
    /// `PyDictValues` is just the array; ≤3.10 `ma_values` is a `PyObject **`).
    pub values_items: u64,
    /// Where a split table keeps its insertion order.
    pub split_order: SplitValuesOrder,
}

/// `PySetObject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetLayout {
    pub fill: u64,
    pub used: u64,
    pub mask: u64,
    /// `table`: a pointer to `{key, hash}` entries of 16 bytes.
    pub table: u64,
}

/// Everything the reader needs to know about one CPython version's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub version: Version,
    pub runtime: RuntimeLayout,
    pub interpreter: InterpreterLayout,
    pub gil: GilLayout,
    pub thread: ThreadLayout,
    pub frame: FrameLayout,
    pub code: CodeLayout,
    pub object: ObjectLayout,
}

impl Layout {
    /// The table for `version`, or `None` when the minor version is not supported.
    pub fn for_version(version: Version) -> Option<Layout> {
        tables::for_version(version)
    }

    /// The minor versions that have a table, oldest first.
    pub fn supported() -> &'static [(u8, u8)] {
        tables::SUPPORTED
    }
}

/// `tp_flags` bits that tell a builtin type (and its subclasses) apart.
pub mod type_flags {
    pub const LONG_SUBCLASS: u64 = 1 << 24;
    pub const LIST_SUBCLASS: u64 = 1 << 25;
    pub const TUPLE_SUBCLASS: u64 = 1 << 26;
    pub const BYTES_SUBCLASS: u64 = 1 << 27;
    pub const UNICODE_SUBCLASS: u64 = 1 << 28;
    pub const DICT_SUBCLASS: u64 = 1 << 29;
    pub const BASE_EXC_SUBCLASS: u64 = 1 << 30;
    pub const TYPE_SUBCLASS: u64 = 1 << 31;
    /// 3.12+: instances keep their `__dict__` in managed storage before the object.
    pub const MANAGED_DICT: u64 = 1 << 4;
    /// 3.13+: instance attribute values live inline after the object header.
    pub const INLINE_VALUES: u64 = 1 << 2;
    pub const HEAPTYPE: u64 = 1 << 9;
    /// Set on every type once `PyType_Ready` ran (all 3.8–3.13).
    pub const READY: u64 = 1 << 12;
}

/// Code flags (`co_flags`).
pub mod code_flags {
    /// Locals in slots: a function's code; a module or class body has it unset and
    /// keeps its variables in a dict.
    pub const OPTIMIZED: u32 = 0x1;
    pub const VARARGS: u32 = 0x4;
    pub const VARKEYWORDS: u32 = 0x8;
    pub const GENERATOR: u32 = 0x20;
    pub const COROUTINE: u32 = 0x80;
    pub const ASYNC_GENERATOR: u32 = 0x200;
}

/// 3.11+ `co_localspluskinds` bits.
pub mod local_kinds {
    pub const ARG_VAR: u8 = 0x08;
    pub const HIDDEN: u8 = 0x10;
    pub const CELL: u8 = 0x40;
    pub const FREE: u8 = 0x80;
    pub const LOCAL: u8 = 0x20;
}

/// 3.11+ `_PyInterpreterFrame.owner` values.
pub mod frame_owner {
    pub const THREAD: u8 = 0;
    pub const GENERATOR: u8 = 1;
    pub const FRAME_OBJECT: u8 = 2;
    /// 3.12+: the entry (shim) frame of a C call into Python; not a Python frame.
    pub const CSTACK: u8 = 3;
}

/// `PyASCIIObject.state` bits.
pub mod unicode_state {
    /// Bits 2–4: bytes per character (1, 2 or 4).
    pub const KIND_SHIFT: u32 = 2;
    pub const KIND_MASK: u32 = 0b111;
    pub const COMPACT: u32 = 1 << 5;
    pub const ASCII: u32 = 1 << 6;
}

/// Digits of an `int` are 30-bit values stored in u32s.
pub const LONG_DIGIT_BITS: u32 = 30;
