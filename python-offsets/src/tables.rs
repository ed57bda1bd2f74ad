//! The offset tables, x86_64 GIL builds. Every number is checked against DWARF by
//! `tests/dwarf.rs` (the instance-dict offsets, which CPython keeps in macros, as far
//! as the DWARF goes, and in live interpreters by `tests/instance_dict.rs`); the
//! sources are in `shared/research/cpython-internals.md`.

use crate::*;

pub(crate) const SUPPORTED: &[(u8, u8)] = &[(3, 8), (3, 9), (3, 10), (3, 11), (3, 12), (3, 13)];

/// Object fields that did not move between 3.8 and 3.13 (3.12 and 3.13 adjust the
/// `int` and `str` parts below).
const OBJECT_BASE: ObjectLayout = ObjectLayout {
    ob_refcnt: 0,
    ob_type: 8,
    ob_size: 16,
    tp_name: 24,
    tp_flags: 168,
    tuple_items: 24,
    list_items: 24,
    bytes_sval: 32,
    float_fval: 16,
    cell_ref: 16,
    module_dict: 16,
    func_qualname: 104,
    types: TypeLayout {
        tp_basicsize: 32,
        tp_itemsize: 40,
        tp_base: 256,
        tp_dict: 264,
        tp_dictoffset: 288,
        ht_qualname: 864,
        ht_cached_keys: 872,
    },
    instance_dict: InstanceDictModel::DictOffset,
    long_digits: 24,
    long_tag: None,
    long_format: LongFormat::SignedSize,
    unicode: UnicodeLayout {
        length: 16,
        state: 32,
        ascii_size: 48,
        compact_size: 72,
        data_any: 72,
    },
    dict: DictLayout {
        ma_used: 16,
        ma_version_tag: 24,
        ma_keys: 32,
        ma_values: 40,
        keys_format: DictKeysFormat::Sized,
        dk_size: 8,
        dk_log2_index_bytes: None,
        dk_kind: None,
        dk_nentries: 32,
        dk_indices: 40,
        values_items: 0,
        split_order: SplitValuesOrder::Dense,
    },
    set: SetLayout {
        fill: 16,
        used: 24,
        mask: 32,
        table: 40,
    },
};

/// 3.9: `PyTypeObject` shrank from 416 to 408 bytes, so the heap type fields after
/// it moved back by 8.
const OBJECT_39: ObjectLayout = ObjectLayout {
    types: TypeLayout {
        ht_qualname: 856,
        ht_cached_keys: 864,
        ..OBJECT_BASE.types
    },
    ..OBJECT_BASE
};

/// 3.10: `PyFunctionObject` starts with the `PyFunction_COMMON` fields, so
/// `func_qualname` is at 40; `PyAsyncMethods` gained `am_send`, so `ht_qualname` is
/// at 864 again.
const OBJECT_310: ObjectLayout = ObjectLayout {
    func_qualname: 40,
    types: OBJECT_BASE.types,
    ..OBJECT_BASE
};

const OBJECT_311: ObjectLayout = ObjectLayout {
    instance_dict: InstanceDictModel::ValuesAndDict {
        values: -32,
        dict: -24,
    },
    dict: DictLayout {
        keys_format: DictKeysFormat::Log2,
        dk_size: 8,
        dk_log2_index_bytes: Some(9),
        dk_kind: Some(10),
        dk_nentries: 24,
        dk_indices: 32,
        split_order: SplitValuesOrder::BytesBefore,
        ..OBJECT_BASE.dict
    },
    ..OBJECT_310
};

const OBJECT_312: ObjectLayout = ObjectLayout {
    long_tag: Some(16),
    long_format: LongFormat::LvTag,
    unicode: UnicodeLayout {
        length: 16,
        state: 32,
        ascii_size: 40,
        compact_size: 56,
        data_any: 56,
    },
    types: TypeLayout {
        ht_qualname: 872,
        ht_cached_keys: 880,
        ..OBJECT_BASE.types
    },
    instance_dict: InstanceDictModel::Tagged { offset: -24 },
    ..OBJECT_311
};

const OBJECT_313: ObjectLayout = ObjectLayout {
    dict: DictLayout {
        values_items: 8,
        split_order: SplitValuesOrder::BytesAfter {
            capacity: 0,
            size: 1,
            valid: 3,
        },
        ..OBJECT_312.dict
    },
    instance_dict: InstanceDictModel::InlineValues { dict: -24 },
    ..OBJECT_312
};

const CODE_38: CodeLayout = CodeLayout {
    argcount: 16,
    posonlyargcount: 20,
    kwonlyargcount: 24,
    nlocals: 28,
    flags: 36,
    firstlineno: 40,
    varnames: 72,
    cellvars: Some(88),
    freevars: Some(80),
    localspluskinds: None,
    filename: 104,
    name: 112,
    qualname: None,
    linetable: 120,
    linetable_format: LineTableFormat::Lnotab,
    code_adaptive: None,
    firsttraceable: None,
};

const FRAME_38: FrameLayout = FrameLayout {
    model: FrameModel::FrameObject,
    previous: 24,
    code: 32,
    globals: 48,
    lasti: Some(104),
    instr_ptr: None,
    owner: None,
    localsplus: 360,
    size: 368,
};

const THREAD_38: ThreadLayout = ThreadLayout {
    next: 8,
    interp: 16,
    frame: Some(24),
    cframe: None,
    cframe_current_frame: None,
    current_frame: None,
    thread_id: 176,
    native_thread_id: None,
};

const GIL_312: GilLayout = GilLayout {
    last_holder: 8,
    locked: 16,
};

const V38: Layout = Layout {
    version: Version::new(3, 8, 0),
    runtime: RuntimeLayout {
        interpreters_head: 32,
        tstate_current: Some(1368),
        gil_last_holder: Some(1160),
        gil_locked: Some(1168),
        pending_calls_lock: None,
        pending_calls_mutex: None,
    },
    interpreter: InterpreterLayout {
        next: 0,
        threads_head: 8,
        modules: 56,
        ceval_gil: None,
    },
    gil: GIL_312,
    thread: THREAD_38,
    frame: FRAME_38,
    code: CODE_38,
    object: OBJECT_BASE,
};

const V39: Layout = Layout {
    version: Version::new(3, 9, 0),
    runtime: RuntimeLayout {
        interpreters_head: 32,
        tstate_current: Some(568),
        gil_last_holder: Some(360),
        gil_locked: Some(368),
        pending_calls_lock: None,
        pending_calls_mutex: None,
    },
    interpreter: InterpreterLayout {
        modules: 856,
        ..V38.interpreter
    },
    object: OBJECT_39,
    ..V38
};

const V310: Layout = Layout {
    version: Version::new(3, 10, 0),
    frame: FrameLayout {
        lasti: Some(96),
        localsplus: 352,
        size: 360,
        ..FRAME_38
    },
    code: CodeLayout {
        linetable_format: LineTableFormat::Linetable310,
        ..CODE_38
    },
    object: OBJECT_310,
    ..V39
};

const V311: Layout = Layout {
    version: Version::new(3, 11, 0),
    runtime: RuntimeLayout {
        interpreters_head: 40,
        tstate_current: Some(576),
        gil_last_holder: Some(368),
        gil_locked: Some(376),
        pending_calls_lock: None,
        pending_calls_mutex: None,
    },
    interpreter: InterpreterLayout {
        next: 0,
        threads_head: 16,
        modules: 888,
        ceval_gil: None,
    },
    gil: GIL_312,
    thread: ThreadLayout {
        frame: None,
        cframe: Some(56),
        cframe_current_frame: Some(8),
        thread_id: 152,
        native_thread_id: Some(160),
        ..THREAD_38
    },
    frame: FrameLayout {
        model: FrameModel::CFrame,
        previous: 48,
        code: 32,
        globals: 8,
        lasti: None,
        instr_ptr: Some(56),
        owner: Some(69),
        localsplus: 72,
        size: 80,
    },
    code: CodeLayout {
        argcount: 56,
        posonlyargcount: 60,
        kwonlyargcount: 64,
        nlocals: 80,
        flags: 48,
        firstlineno: 72,
        varnames: 96,
        cellvars: None,
        freevars: None,
        localspluskinds: Some(104),
        filename: 112,
        name: 120,
        qualname: Some(128),
        linetable: 136,
        linetable_format: LineTableFormat::Locations,
        code_adaptive: Some(184),
        firsttraceable: Some(168),
    },
    object: OBJECT_311,
};

const V312: Layout = Layout {
    version: Version::new(3, 12, 0),
    runtime: RuntimeLayout {
        interpreters_head: 40,
        tstate_current: None,
        gil_last_holder: None,
        gil_locked: None,
        pending_calls_lock: Some(2024),
        pending_calls_mutex: None,
    },
    interpreter: InterpreterLayout {
        next: 0,
        threads_head: 72,
        modules: 944,
        ceval_gil: Some(384),
    },
    thread: ThreadLayout {
        cframe_current_frame: Some(0),
        thread_id: 136,
        native_thread_id: Some(144),
        ..V311.thread
    },
    frame: FrameLayout {
        previous: 8,
        code: 0,
        globals: 24,
        owner: Some(70),
        ..V311.frame
    },
    code: CodeLayout {
        argcount: 52,
        posonlyargcount: 56,
        kwonlyargcount: 60,
        firstlineno: 68,
        code_adaptive: Some(192),
        firsttraceable: Some(176),
        ..V311.code
    },
    object: OBJECT_312,
    ..V311
};

const V313: Layout = Layout {
    version: Version::new(3, 13, 0),
    runtime: RuntimeLayout {
        interpreters_head: 632,
        pending_calls_lock: None,
        pending_calls_mutex: Some(2648),
        ..V312.runtime
    },
    interpreter: InterpreterLayout {
        next: 7264,
        threads_head: 7344,
        modules: 7656,
        ceval_gil: Some(16),
    },
    thread: ThreadLayout {
        cframe: None,
        cframe_current_frame: None,
        current_frame: Some(72),
        thread_id: 152,
        native_thread_id: Some(160),
        ..V312.thread
    },
    frame: FrameLayout {
        model: FrameModel::CurrentFrame,
        ..V312.frame
    },
    code: CodeLayout {
        code_adaptive: Some(200),
        firsttraceable: Some(184),
        ..V312.code
    },
    object: OBJECT_313,
    ..V312
};

pub(crate) fn for_version(version: Version) -> Option<Layout> {
    let table = match (version.major, version.minor) {
        (3, 8) => V38,
        (3, 9) => V39,
        (3, 10) => V310,
        (3, 11) => V311,
        (3, 12) => V312,
        (3, 13) => V313,
        _ => return None,
    };
    Some(Layout { version, ..table })
}
