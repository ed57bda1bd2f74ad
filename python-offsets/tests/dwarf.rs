//! Proves the offset tables against the DWARF debug info of the interpreters on this
//! machine.
//!
//! [`OFFSETS`] is the proof, one row per offset field of [`Layout`]: the C type and
//! member path whose offset the field must equal, per minor version. Where the table
//! says `None` the member must not exist in that version. [`DEBUG_OFFSETS`] does the
//! same for the 3.13 `_Py_DebugOffsets` decoder.
//!
//! The instance-dict offsets ([`InstanceDictModel`]) are negative and are not in the
//! DWARF: CPython computes them in macros and inline functions (3.11
//! `_PyObject_ValuesPointer` = object − 4 words and `_PyObject_ManagedDictPointer` =
//! object − 3 words; 3.12–3.13 `MANAGED_DICT_OFFSET` = `-3 * sizeof(PyObject *)`), and
//! pyenv's builds carry no `.debug_macro` to read a macro from. What the DWARF does
//! fix is where those words are: `_PyType_PreHeaderSize` allocates the managed-dict
//! words right before the object's `PyGC_Head` (a type with a managed dict is a GC
//! type), so "3 words before the object" is the first word before the GC header
//! exactly when `sizeof(PyGC_Head)` is 2 words. Those rows say `BeforeGcHead`, which
//! the test turns into `-(sizeof(PyGC_Head) + n * sizeof(void *))` from the DWARF; a
//! variant that does not apply to a version says `Nowhere` and why. The offsets
//! themselves are followed in live interpreters by `tests/instance_dict.rs`.
//!
//! Only the compilation units needed to find the named types are parsed, so the whole
//! check takes seconds.

mod dwarf_reader;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use dwarf_reader::{At, Binary, Found, Types};
use python_offsets::debug_offsets::{self, DebugOffsets};
use python_offsets::{
    CodeLayout, DictLayout, FrameLayout, GilLayout, InstanceDictModel, InterpreterLayout, Layout,
    ObjectLayout, RuntimeLayout, SetLayout, SplitValuesOrder, ThreadLayout, TypeLayout,
    UnicodeLayout, Version,
};

use At::{BeforeGcHead, Member, Nowhere, PointerArray, PointerTo, Size};

/// One [`Layout`] field and where it is, as `(first minor, last minor, place)`.
type Row = (&'static str, &'static [(u8, u8, At)]);

/// Why a version has no pre-header word of a kind (see the module doc).
const DICT_OFFSET: &str =
    "3.8-3.10 find an instance's dict through tp_dictoffset, not before the object";
const NO_VALUES_POINTER: &str = "3.12+ keep no separate values pointer before the object";
const DICT_IN_TAGGED_WORD: &str = "3.12 keeps the dict pointer in the tagged PyDictOrValues word";
const UNTAGGED: &str = "only 3.12 tags the word before the GC header";

/// Every offset of [`Layout`] and the DWARF it must match, 3.8 to 3.13.
#[rustfmt::skip]
const OFFSETS: &[Row] = &[
    // Layout field                    (first, last minor, place)
    // _PyRuntime
    ("runtime.interpreters_head",       &[(8, 13, Member("_PyRuntimeState", "interpreters.head"))]),
    ("runtime.tstate_current",          &[(8, 13, Member("_PyRuntimeState", "gilstate.tstate_current"))]),
    ("runtime.gil_last_holder",         &[(8, 13, Member("_PyRuntimeState", "ceval.gil.last_holder"))]),
    ("runtime.gil_locked",              &[(8, 13, Member("_PyRuntimeState", "ceval.gil.locked"))]),
    ("runtime.pending_calls_lock",      &[(8, 13, Member("_PyRuntimeState", "ceval.pending_mainthread.lock"))]),
    ("runtime.pending_calls_mutex",     &[(8, 13, Member("_PyRuntimeState", "ceval.pending_mainthread.mutex"))]),
    // PyInterpreterState
    ("interpreter.next",                &[(8, 13, Member("struct _is", "next"))]),
    ("interpreter.threads_head",        &[(8, 10, Member("struct _is", "tstate_head")),
                                          (11, 13, Member("struct _is", "threads.head"))]),
    ("interpreter.modules",             &[(8, 11, Member("struct _is", "modules")),
                                          (12, 13, Member("struct _is", "imports.modules"))]),
    ("interpreter.ceval_gil",           &[(8, 13, PointerTo("struct _is", "ceval.gil", "struct _gil_runtime_state"))]),
    // The GIL a 3.12+ interpreter points at
    ("gil.last_holder",                 &[(8, 13, Member("struct _gil_runtime_state", "last_holder"))]),
    ("gil.locked",                      &[(8, 13, Member("struct _gil_runtime_state", "locked"))]),
    // PyThreadState
    ("thread.next",                     &[(8, 13, Member("struct _ts", "next"))]),
    ("thread.interp",                   &[(8, 13, Member("struct _ts", "interp"))]),
    ("thread.frame",                    &[(8, 13, PointerTo("struct _ts", "frame", "struct _frame"))]),
    ("thread.cframe",                   &[(8, 13, PointerTo("struct _ts", "cframe", "_PyCFrame"))]),
    ("thread.cframe_current_frame",     &[(8, 13, Member("_PyCFrame", "current_frame"))]),
    ("thread.current_frame",            &[(8, 13, Member("struct _ts", "current_frame"))]),
    ("thread.thread_id",                &[(8, 13, Member("struct _ts", "thread_id"))]),
    ("thread.native_thread_id",         &[(8, 13, Member("struct _ts", "native_thread_id"))]),
    // Frames: PyFrameObject up to 3.10, _PyInterpreterFrame from 3.11
    ("frame.previous",                  &[(8, 10, Member("struct _frame", "f_back")),
                                          (11, 13, Member("_PyInterpreterFrame", "previous"))]),
    ("frame.code",                      &[(8, 10, Member("struct _frame", "f_code")),
                                          (11, 12, Member("_PyInterpreterFrame", "f_code")),
                                          (13, 13, Member("_PyInterpreterFrame", "f_executable"))]),
    ("frame.globals",                   &[(8, 10, Member("struct _frame", "f_globals")),
                                          (11, 13, Member("_PyInterpreterFrame", "f_globals"))]),
    ("frame.lasti",                     &[(8, 10, Member("struct _frame", "f_lasti")),
                                          (11, 13, Member("_PyInterpreterFrame", "f_lasti"))]),
    ("frame.instr_ptr",                 &[(8, 10, Member("struct _frame", "prev_instr")),
                                          (11, 12, Member("_PyInterpreterFrame", "prev_instr")),
                                          (13, 13, Member("_PyInterpreterFrame", "instr_ptr"))]),
    ("frame.owner",                     &[(8, 10, Member("struct _frame", "owner")),
                                          (11, 13, Member("_PyInterpreterFrame", "owner"))]),
    ("frame.localsplus",                &[(8, 10, Member("struct _frame", "f_localsplus")),
                                          (11, 13, Member("_PyInterpreterFrame", "localsplus"))]),
    ("frame.size",                      &[(8, 10, Size("struct _frame")),
                                          (11, 13, Size("_PyInterpreterFrame"))]),
    // PyCodeObject
    ("code.argcount",                   &[(8, 13, Member("PyCodeObject", "co_argcount"))]),
    ("code.posonlyargcount",            &[(8, 13, Member("PyCodeObject", "co_posonlyargcount"))]),
    ("code.kwonlyargcount",             &[(8, 13, Member("PyCodeObject", "co_kwonlyargcount"))]),
    ("code.nlocals",                    &[(8, 13, Member("PyCodeObject", "co_nlocals"))]),
    ("code.flags",                      &[(8, 13, Member("PyCodeObject", "co_flags"))]),
    ("code.firstlineno",                &[(8, 13, Member("PyCodeObject", "co_firstlineno"))]),
    ("code.varnames",                   &[(8, 10, Member("PyCodeObject", "co_varnames")),
                                          (11, 13, Member("PyCodeObject", "co_localsplusnames"))]),
    ("code.cellvars",                   &[(8, 13, Member("PyCodeObject", "co_cellvars"))]),
    ("code.freevars",                   &[(8, 13, Member("PyCodeObject", "co_freevars"))]),
    ("code.localspluskinds",            &[(8, 13, Member("PyCodeObject", "co_localspluskinds"))]),
    ("code.filename",                   &[(8, 13, Member("PyCodeObject", "co_filename"))]),
    ("code.name",                       &[(8, 13, Member("PyCodeObject", "co_name"))]),
    ("code.qualname",                   &[(8, 13, Member("PyCodeObject", "co_qualname"))]),
    ("code.linetable",                  &[(8, 9, Member("PyCodeObject", "co_lnotab")),
                                          (10, 13, Member("PyCodeObject", "co_linetable"))]),
    ("code.code_adaptive",              &[(8, 13, Member("PyCodeObject", "co_code_adaptive"))]),
    ("code.firsttraceable",             &[(8, 13, Member("PyCodeObject", "_co_firsttraceable"))]),
    // Objects
    ("object.ob_refcnt",                &[(8, 13, Member("PyObject", "ob_refcnt"))]),
    ("object.ob_type",                  &[(8, 13, Member("PyObject", "ob_type"))]),
    ("object.ob_size",                  &[(8, 13, Member("PyVarObject", "ob_size"))]),
    ("object.tp_name",                  &[(8, 13, Member("PyTypeObject", "tp_name"))]),
    ("object.tp_flags",                 &[(8, 13, Member("PyTypeObject", "tp_flags"))]),
    ("object.tuple_items",              &[(8, 13, Member("PyTupleObject", "ob_item"))]),
    ("object.list_items",               &[(8, 13, Member("PyListObject", "ob_item"))]),
    ("object.bytes_sval",               &[(8, 13, Member("PyBytesObject", "ob_sval"))]),
    ("object.float_fval",               &[(8, 13, Member("PyFloatObject", "ob_fval"))]),
    ("object.cell_ref",                 &[(8, 13, Member("PyCellObject", "ob_ref"))]),
    ("object.module_dict",              &[(8, 13, Member("PyModuleObject", "md_dict"))]),
    ("object.func_qualname",            &[(8, 13, Member("PyFunctionObject", "func_qualname"))]),
    ("object.types.tp_basicsize",       &[(8, 13, Member("PyTypeObject", "tp_basicsize"))]),
    ("object.types.tp_itemsize",        &[(8, 13, Member("PyTypeObject", "tp_itemsize"))]),
    ("object.types.tp_base",            &[(8, 13, Member("PyTypeObject", "tp_base"))]),
    ("object.types.tp_dict",            &[(8, 13, Member("PyTypeObject", "tp_dict"))]),
    ("object.types.tp_dictoffset",      &[(8, 13, Member("PyTypeObject", "tp_dictoffset"))]),
    ("object.types.ht_qualname",        &[(8, 13, Member("PyHeapTypeObject", "ht_qualname"))]),
    ("object.types.ht_cached_keys",     &[(8, 13, Member("PyHeapTypeObject", "ht_cached_keys"))]),
    // Instance attributes: macro offsets, placed relative to PyGC_Head (module doc)
    ("object.instance_dict.values",     &[(8, 10, Nowhere(DICT_OFFSET)),
                                          (11, 11, BeforeGcHead(2)),
                                          (12, 13, Nowhere(NO_VALUES_POINTER))]),
    ("object.instance_dict.dict",       &[(8, 10, Nowhere(DICT_OFFSET)),
                                          (11, 11, BeforeGcHead(1)),
                                          (12, 12, Nowhere(DICT_IN_TAGGED_WORD)),
                                          (13, 13, BeforeGcHead(1))]),
    ("object.instance_dict.tagged",     &[(8, 10, Nowhere(DICT_OFFSET)),
                                          (11, 11, Nowhere(UNTAGGED)),
                                          (12, 12, BeforeGcHead(1)),
                                          (13, 13, Nowhere(UNTAGGED))]),
    ("object.long_digits",              &[(8, 11, Member("PyLongObject", "ob_digit")),
                                          (12, 13, Member("PyLongObject", "long_value.ob_digit"))]),
    ("object.long_tag",                 &[(8, 13, Member("PyLongObject", "long_value.lv_tag"))]),
    ("object.unicode.length",           &[(8, 13, Member("PyASCIIObject", "length"))]),
    ("object.unicode.state",            &[(8, 13, Member("PyASCIIObject", "state"))]),
    ("object.unicode.ascii_size",       &[(8, 13, Size("PyASCIIObject"))]),
    ("object.unicode.compact_size",     &[(8, 13, Size("PyCompactUnicodeObject"))]),
    ("object.unicode.data_any",         &[(8, 13, Member("PyUnicodeObject", "data.any"))]),
    ("object.dict.ma_used",             &[(8, 13, Member("PyDictObject", "ma_used"))]),
    ("object.dict.ma_version_tag",      &[(8, 13, Member("PyDictObject", "ma_version_tag"))]),
    ("object.dict.ma_keys",             &[(8, 13, Member("PyDictObject", "ma_keys"))]),
    ("object.dict.ma_values",           &[(8, 13, Member("PyDictObject", "ma_values"))]),
    ("object.dict.dk_size",             &[(8, 10, Member("struct _dictkeysobject", "dk_size")),
                                          (11, 13, Member("struct _dictkeysobject", "dk_log2_size"))]),
    ("object.dict.dk_log2_index_bytes", &[(8, 13, Member("struct _dictkeysobject", "dk_log2_index_bytes"))]),
    ("object.dict.dk_kind",             &[(8, 13, Member("struct _dictkeysobject", "dk_kind"))]),
    ("object.dict.dk_nentries",         &[(8, 13, Member("struct _dictkeysobject", "dk_nentries"))]),
    ("object.dict.dk_indices",          &[(8, 13, Member("struct _dictkeysobject", "dk_indices"))]),
    ("object.dict.values_items",        &[(8, 10, PointerArray("PyDictObject", "ma_values")),
                                          (11, 13, Member("PyDictValues", "values"))]),
    ("object.dict.split_order.capacity",&[(8, 13, Member("struct _dictvalues", "capacity"))]),
    ("object.dict.split_order.size",    &[(8, 13, Member("struct _dictvalues", "size"))]),
    ("object.dict.split_order.valid",   &[(8, 13, Member("struct _dictvalues", "valid"))]),
    ("object.set.fill",                 &[(8, 13, Member("PySetObject", "fill"))]),
    ("object.set.used",                 &[(8, 13, Member("PySetObject", "used"))]),
    ("object.set.mask",                 &[(8, 13, Member("PySetObject", "mask"))]),
    ("object.set.table",                &[(8, 13, Member("PySetObject", "table"))]),
];

/// Every offset field of a layout by its [`OFFSETS`] name. The destructuring lists
/// every field (and the matches every variant), so a field added to [`Layout`] does
/// not compile here until it is given a name (and then a row). Offsets are signed:
/// the instance-dict ones count back from the object.
fn layout_offsets(layout: &Layout) -> Vec<(&'static str, Option<i128>)> {
    let Layout {
        version: _,
        runtime,
        interpreter,
        gil,
        thread,
        frame,
        code,
        object,
    } = *layout;
    let RuntimeLayout {
        interpreters_head,
        tstate_current,
        gil_last_holder,
        gil_locked,
        pending_calls_lock,
        pending_calls_mutex,
    } = runtime;
    let mut all = vec![
        ("runtime.interpreters_head", Some(interpreters_head)),
        ("runtime.tstate_current", tstate_current),
        ("runtime.gil_last_holder", gil_last_holder),
        ("runtime.gil_locked", gil_locked),
        ("runtime.pending_calls_lock", pending_calls_lock),
        ("runtime.pending_calls_mutex", pending_calls_mutex),
    ];
    let InterpreterLayout {
        next,
        threads_head,
        modules,
        ceval_gil,
    } = interpreter;
    all.extend([
        ("interpreter.next", Some(next)),
        ("interpreter.threads_head", Some(threads_head)),
        ("interpreter.modules", Some(modules)),
        ("interpreter.ceval_gil", ceval_gil),
    ]);
    let GilLayout {
        last_holder,
        locked,
    } = gil;
    all.extend([
        ("gil.last_holder", Some(last_holder)),
        ("gil.locked", Some(locked)),
    ]);
    let ThreadLayout {
        next,
        interp,
        frame: thread_frame,
        cframe,
        cframe_current_frame,
        current_frame,
        thread_id,
        native_thread_id,
    } = thread;
    all.extend([
        ("thread.next", Some(next)),
        ("thread.interp", Some(interp)),
        ("thread.frame", thread_frame),
        ("thread.cframe", cframe),
        ("thread.cframe_current_frame", cframe_current_frame),
        ("thread.current_frame", current_frame),
        ("thread.thread_id", Some(thread_id)),
        ("thread.native_thread_id", native_thread_id),
    ]);
    let FrameLayout {
        model: _,
        previous,
        code: frame_code,
        globals,
        lasti,
        instr_ptr,
        owner,
        localsplus,
        size,
    } = frame;
    all.extend([
        ("frame.previous", Some(previous)),
        ("frame.code", Some(frame_code)),
        ("frame.globals", Some(globals)),
        ("frame.lasti", lasti),
        ("frame.instr_ptr", instr_ptr),
        ("frame.owner", owner),
        ("frame.localsplus", Some(localsplus)),
        ("frame.size", Some(size)),
    ]);
    let CodeLayout {
        argcount,
        posonlyargcount,
        kwonlyargcount,
        nlocals,
        flags,
        firstlineno,
        varnames,
        cellvars,
        freevars,
        localspluskinds,
        filename,
        name,
        qualname,
        linetable,
        linetable_format: _,
        code_adaptive,
        firsttraceable,
    } = code;
    all.extend([
        ("code.argcount", Some(argcount)),
        ("code.posonlyargcount", Some(posonlyargcount)),
        ("code.kwonlyargcount", Some(kwonlyargcount)),
        ("code.nlocals", Some(nlocals)),
        ("code.flags", Some(flags)),
        ("code.firstlineno", Some(firstlineno)),
        ("code.varnames", Some(varnames)),
        ("code.cellvars", cellvars),
        ("code.freevars", freevars),
        ("code.localspluskinds", localspluskinds),
        ("code.filename", Some(filename)),
        ("code.name", Some(name)),
        ("code.qualname", qualname),
        ("code.linetable", Some(linetable)),
        ("code.code_adaptive", code_adaptive),
        ("code.firsttraceable", firsttraceable),
    ]);
    let ObjectLayout {
        ob_refcnt,
        ob_type,
        ob_size,
        tp_name,
        tp_flags,
        tuple_items,
        list_items,
        bytes_sval,
        float_fval,
        cell_ref,
        module_dict,
        func_qualname,
        types,
        instance_dict,
        long_digits,
        long_tag,
        long_format: _,
        unicode,
        dict,
        set,
    } = object;
    all.extend([
        ("object.ob_refcnt", Some(ob_refcnt)),
        ("object.ob_type", Some(ob_type)),
        ("object.ob_size", Some(ob_size)),
        ("object.tp_name", Some(tp_name)),
        ("object.tp_flags", Some(tp_flags)),
        ("object.tuple_items", Some(tuple_items)),
        ("object.list_items", Some(list_items)),
        ("object.bytes_sval", Some(bytes_sval)),
        ("object.float_fval", Some(float_fval)),
        ("object.cell_ref", Some(cell_ref)),
        ("object.module_dict", Some(module_dict)),
        ("object.func_qualname", Some(func_qualname)),
        ("object.long_digits", Some(long_digits)),
        ("object.long_tag", long_tag),
    ]);
    let TypeLayout {
        tp_basicsize,
        tp_itemsize,
        tp_base,
        tp_dict,
        tp_dictoffset,
        ht_qualname,
        ht_cached_keys,
    } = types;
    all.extend([
        ("object.types.tp_basicsize", Some(tp_basicsize)),
        ("object.types.tp_itemsize", Some(tp_itemsize)),
        ("object.types.tp_base", Some(tp_base)),
        ("object.types.tp_dict", Some(tp_dict)),
        ("object.types.tp_dictoffset", Some(tp_dictoffset)),
        ("object.types.ht_qualname", Some(ht_qualname)),
        ("object.types.ht_cached_keys", Some(ht_cached_keys)),
    ]);
    let UnicodeLayout {
        length,
        state,
        ascii_size,
        compact_size,
        data_any,
    } = unicode;
    all.extend([
        ("object.unicode.length", Some(length)),
        ("object.unicode.state", Some(state)),
        ("object.unicode.ascii_size", Some(ascii_size)),
        ("object.unicode.compact_size", Some(compact_size)),
        ("object.unicode.data_any", Some(data_any)),
    ]);
    let DictLayout {
        ma_used,
        ma_version_tag,
        ma_keys,
        ma_values,
        keys_format: _,
        dk_size,
        dk_log2_index_bytes,
        dk_kind,
        dk_nentries,
        dk_indices,
        values_items,
        split_order,
    } = dict;
    all.extend([
        ("object.dict.ma_used", Some(ma_used)),
        ("object.dict.ma_version_tag", Some(ma_version_tag)),
        ("object.dict.ma_keys", Some(ma_keys)),
        ("object.dict.ma_values", Some(ma_values)),
        ("object.dict.dk_size", Some(dk_size)),
        ("object.dict.dk_log2_index_bytes", dk_log2_index_bytes),
        ("object.dict.dk_kind", dk_kind),
        ("object.dict.dk_nentries", Some(dk_nentries)),
        ("object.dict.dk_indices", Some(dk_indices)),
        ("object.dict.values_items", Some(values_items)),
    ]);
    let (order_capacity, order_size, order_valid) = match split_order {
        SplitValuesOrder::Dense | SplitValuesOrder::BytesBefore => (None, None, None),
        SplitValuesOrder::BytesAfter {
            capacity,
            size,
            valid,
        } => (Some(capacity), Some(size), Some(valid)),
    };
    all.extend([
        ("object.dict.split_order.capacity", order_capacity),
        ("object.dict.split_order.size", order_size),
        ("object.dict.split_order.valid", order_valid),
    ]);
    let SetLayout {
        fill,
        used,
        mask,
        table,
    } = set;
    all.extend([
        ("object.set.fill", Some(fill)),
        ("object.set.used", Some(used)),
        ("object.set.mask", Some(mask)),
        ("object.set.table", Some(table)),
    ]);
    let (values_word, dict_word, tagged_word) = match instance_dict {
        InstanceDictModel::DictOffset => (None, None, None),
        InstanceDictModel::ValuesAndDict { values, dict } => (Some(values), Some(dict), None),
        InstanceDictModel::Tagged { offset } => (None, None, Some(offset)),
        InstanceDictModel::InlineValues { dict } => (None, Some(dict), None),
    };
    let mut signed: Vec<(&'static str, Option<i128>)> = all
        .into_iter()
        .map(|(name, offset)| (name, offset.map(i128::from)))
        .collect();
    signed.extend([
        ("object.instance_dict.values", values_word.map(i128::from)),
        ("object.instance_dict.dict", dict_word.map(i128::from)),
        ("object.instance_dict.tagged", tagged_word.map(i128::from)),
    ]);
    signed
}

/// Every field of [`DebugOffsets`] and its member of `struct _Py_DebugOffsets`.
const DEBUG_OFFSETS: &[(&str, &str)] = &[
    ("interpreters_head", "runtime_state.interpreters_head"),
    ("interp_next", "interpreter_state.next"),
    ("interp_threads_head", "interpreter_state.threads_head"),
    ("interp_modules", "interpreter_state.imports_modules"),
    ("interp_ceval_gil", "interpreter_state.ceval_gil"),
    ("thread_next", "thread_state.next"),
    ("thread_interp", "thread_state.interp"),
    ("thread_current_frame", "thread_state.current_frame"),
    ("thread_id", "thread_state.thread_id"),
    ("native_thread_id", "thread_state.native_thread_id"),
    ("frame_previous", "interpreter_frame.previous"),
    ("frame_executable", "interpreter_frame.executable"),
    ("frame_instr_ptr", "interpreter_frame.instr_ptr"),
    ("frame_localsplus", "interpreter_frame.localsplus"),
    ("frame_owner", "interpreter_frame.owner"),
    ("code_filename", "code_object.filename"),
    ("code_name", "code_object.name"),
    ("code_qualname", "code_object.qualname"),
    ("code_linetable", "code_object.linetable"),
    ("code_firstlineno", "code_object.firstlineno"),
    ("code_argcount", "code_object.argcount"),
    ("code_localsplusnames", "code_object.localsplusnames"),
    ("code_localspluskinds", "code_object.localspluskinds"),
    ("code_adaptive", "code_object.co_code_adaptive"),
    ("ob_type", "pyobject.ob_type"),
    ("tp_name", "type_object.tp_name"),
    ("tp_flags", "type_object.tp_flags"),
    ("tuple_items", "tuple_object.ob_item"),
    ("list_items", "list_object.ob_item"),
    ("dict_keys", "dict_object.ma_keys"),
    ("dict_values", "dict_object.ma_values"),
    ("float_fval", "float_object.ob_fval"),
    ("long_tag", "long_object.lv_tag"),
    ("long_digits", "long_object.ob_digit"),
    ("bytes_sval", "bytes_object.ob_sval"),
    ("unicode_state", "unicode_object.state"),
    ("unicode_length", "unicode_object.length"),
    ("unicode_ascii_size", "unicode_object.asciiobject_size"),
];

/// Every offset field of decoded debug offsets by its [`DEBUG_OFFSETS`] name (the
/// destructuring lists every field, as in [`layout_offsets`]).
fn debug_offset_values(d: &DebugOffsets) -> Vec<(&'static str, u64)> {
    let DebugOffsets {
        version: _,
        interpreters_head,
        interp_next,
        interp_threads_head,
        interp_modules,
        interp_ceval_gil,
        thread_next,
        thread_interp,
        thread_current_frame,
        thread_id,
        native_thread_id,
        frame_previous,
        frame_executable,
        frame_instr_ptr,
        frame_localsplus,
        frame_owner,
        code_filename,
        code_name,
        code_qualname,
        code_linetable,
        code_firstlineno,
        code_argcount,
        code_localsplusnames,
        code_localspluskinds,
        code_adaptive,
        ob_type,
        tp_name,
        tp_flags,
        tuple_items,
        list_items,
        dict_keys,
        dict_values,
        float_fval,
        long_tag,
        long_digits,
        bytes_sval,
        unicode_state,
        unicode_length,
        unicode_ascii_size,
    } = *d;
    vec![
        ("interpreters_head", interpreters_head),
        ("interp_next", interp_next),
        ("interp_threads_head", interp_threads_head),
        ("interp_modules", interp_modules),
        ("interp_ceval_gil", interp_ceval_gil),
        ("thread_next", thread_next),
        ("thread_interp", thread_interp),
        ("thread_current_frame", thread_current_frame),
        ("thread_id", thread_id),
        ("native_thread_id", native_thread_id),
        ("frame_previous", frame_previous),
        ("frame_executable", frame_executable),
        ("frame_instr_ptr", frame_instr_ptr),
        ("frame_localsplus", frame_localsplus),
        ("frame_owner", frame_owner),
        ("code_filename", code_filename),
        ("code_name", code_name),
        ("code_qualname", code_qualname),
        ("code_linetable", code_linetable),
        ("code_firstlineno", code_firstlineno),
        ("code_argcount", code_argcount),
        ("code_localsplusnames", code_localsplusnames),
        ("code_localspluskinds", code_localspluskinds),
        ("code_adaptive", code_adaptive),
        ("ob_type", ob_type),
        ("tp_name", tp_name),
        ("tp_flags", tp_flags),
        ("tuple_items", tuple_items),
        ("list_items", list_items),
        ("dict_keys", dict_keys),
        ("dict_values", dict_values),
        ("float_fval", float_fval),
        ("long_tag", long_tag),
        ("long_digits", long_digits),
        ("bytes_sval", bytes_sval),
        ("unicode_state", unicode_state),
        ("unicode_length", unicode_length),
        ("unicode_ascii_size", unicode_ascii_size),
    ]
}

#[test]
fn every_layout_offset_is_mapped_once_for_every_version() {
    let layout = Layout::for_version(Version::new(3, 13, 0)).expect("3.13 has a table");
    let fields: Vec<&str> = layout_offsets(&layout).iter().map(|f| f.0).collect();
    let rows: Vec<&str> = OFFSETS.iter().map(|r| r.0).collect();
    let fields_set: HashSet<&str> = fields.iter().copied().collect();
    let rows_set: HashSet<&str> = rows.iter().copied().collect();
    assert_eq!(
        fields_set.len(),
        fields.len(),
        "a Layout field is named twice"
    );
    assert_eq!(rows_set.len(), rows.len(), "OFFSETS has a field twice");
    let unmapped: Vec<_> = fields_set.difference(&rows_set).collect();
    let unknown: Vec<_> = rows_set.difference(&fields_set).collect();
    assert!(
        unmapped.is_empty(),
        "Layout fields without a DWARF row: {unmapped:?}"
    );
    assert!(
        unknown.is_empty(),
        "OFFSETS rows for no Layout field: {unknown:?}"
    );
    for (field, places) in OFFSETS {
        for minor in 8..=13u8 {
            let n = places
                .iter()
                .filter(|p| (p.0..=p.1).contains(&minor))
                .count();
            assert_eq!(n, 1, "{field}: 3.{minor} has {n} places in OFFSETS, not 1");
        }
    }
    let debug_fields: HashSet<&str> = debug_offset_values(&probe_debug_offsets())
        .iter()
        .map(|f| f.0)
        .collect();
    let debug_rows: HashSet<&str> = DEBUG_OFFSETS.iter().map(|r| r.0).collect();
    assert_eq!(
        debug_fields, debug_rows,
        "DebugOffsets fields and DEBUG_OFFSETS rows differ"
    );
}

#[test]
fn every_layout_offset_matches_the_dwarf_of_its_pyenv_interpreter() {
    let checks: Vec<(u8, Result<Vec<String>, String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = e2e::MINORS
            .iter()
            .map(|&minor| (minor, scope.spawn(move || check_pyenv_minor(minor))))
            .collect();
        handles
            .into_iter()
            .map(|(minor, h)| {
                let result = h
                    .join()
                    .unwrap_or_else(|_| Err("the check panicked".to_string()));
                (minor, result)
            })
            .collect()
    });
    let mut problems = Vec::new();
    for (minor, result) in checks {
        match result {
            Ok(mismatches) => problems.extend(mismatches),
            Err(e) => problems.push(format!("3.{minor}: {e}")),
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) with the offset tables:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Checks the table of pyenv's `3.minor` against its libpython's DWARF; the strings
/// are the mismatches, one per field.
fn check_pyenv_minor(minor: u8) -> Result<Vec<String>, String> {
    let interpreter = e2e::pyenv_interpreter(minor).ok_or_else(|| {
        format!(
            "pyenv's 3.{minor} is missing (expected under {}/versions/3.{minor}.*)",
            e2e::pyenv_root().display()
        )
    })?;
    let version = Version::parse_prefix(&interpreter.label)
        .ok_or_else(|| format!("no version in {}", interpreter.label))?;
    let library = libpython(&interpreter.path, minor)?;
    let binary = Binary::open(&library)?;
    let elf = binary.elf()?;
    let mut types = Types::load(&elf, &binary.data)
        .map_err(|e| format!("{}: {e}", library.display()))?
        .ok_or_else(|| format!("{} has no DWARF (.debug_info)", library.display()))?;
    compare_layout(&mut types, version)
}

/// pyenv's shared library next to `bin/python3.N`.
fn libpython(python: &Path, minor: u8) -> Result<PathBuf, String> {
    let prefix = python
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} is not in a bin/ folder", python.display()))?;
    Ok(prefix
        .join("lib")
        .join(format!("libpython3.{minor}.so.1.0")))
}

/// Compares every row of [`OFFSETS`] for `version` with the DWARF.
fn compare_layout(types: &mut Types<'_>, version: Version) -> Result<Vec<String>, String> {
    let layout = Layout::for_version(version).ok_or_else(|| format!("no table for {version}"))?;
    let minor = version.minor;
    let values: HashMap<&str, Option<i128>> = layout_offsets(&layout).into_iter().collect();
    let mut mismatches = Vec::new();
    for (field, places) in OFFSETS {
        let at = places
            .iter()
            .find(|p| (p.0..=p.1).contains(&minor))
            .map(|p| p.2)
            .ok_or_else(|| format!("{field} has no place for 3.{minor}"))?;
        let table = *values
            .get(field)
            .ok_or_else(|| format!("{field} is not a Layout field"))?;
        let found = types.locate(at)?;
        let problem = match (table, found) {
            (Some(t), Found::At(d)) if t == d => None,
            (Some(t), Found::At(d)) => Some(format!("table {t}, DWARF {d} ({})", describe(at))),
            (Some(t), Found::Absent(why)) => Some(format!("table {t}, DWARF has none: {why}")),
            (None, Found::At(d)) => Some(format!("table None, DWARF {d} ({})", describe(at))),
            (None, Found::Absent(_)) => None,
        };
        if let Some(problem) = problem {
            mismatches.push(format!("{version} {field}: {problem}"));
        }
    }
    Ok(mismatches)
}

fn describe(at: At) -> String {
    match at {
        Member(ty, path) => format!("{ty}.{path}"),
        PointerTo(ty, path, target) => format!("{ty}.{path}, a {target} *"),
        Size(ty) => format!("sizeof({ty})"),
        PointerArray(ty, path) => format!("{ty}.{path}[0]"),
        BeforeGcHead(words) => format!("word {words} before PyGC_Head"),
        Nowhere(why) => why.to_string(),
    }
}

#[test]
fn interpreters_without_dwarf_are_reported_as_not_checked() {
    let debian = Path::new("/usr/bin/python3.11");
    assert!(
        debian.exists(),
        "Debian's python3.11 is missing (apt-get install python3.11)"
    );
    let binary = Binary::open(debian).unwrap_or_else(|e| panic!("{e}"));
    let elf = binary.elf().unwrap_or_else(|e| panic!("{e}"));
    let loaded = Types::load(&elf, &binary.data).unwrap_or_else(|e| panic!("{e}"));
    match loaded {
        Some(mut types) => {
            let mismatches = compare_layout(&mut types, Version::new(3, 11, 0))
                .unwrap_or_else(|e| panic!("{}: {e}", debian.display()));
            assert!(
                mismatches.is_empty(),
                "{}:\n{}",
                debian.display(),
                mismatches.join("\n")
            );
        }
        None => {
            // Written to stderr directly so that it shows without --nocapture.
            let note = format!(
                "note: {} was NOT DWARF-checked: it is stripped (no .debug_info section); \
                 its 3.11 layout is checked live by the end-to-end tests, which run on it\n",
                debian.display()
            );
            std::io::stderr()
                .write_all(note.as_bytes())
                .unwrap_or_else(|e| panic!("cannot write to stderr: {e}"));
        }
    }
}

#[test]
fn debug_offsets_313_decode_the_interpreters_own_table_and_agree_with_ours() {
    let interpreter = e2e::pyenv_interpreter(13).unwrap_or_else(|| {
        panic!(
            "pyenv's 3.13 is missing (expected under {}/versions/3.13.*)",
            e2e::pyenv_root().display()
        )
    });
    let library = libpython(&interpreter.path, 13).unwrap_or_else(|e| panic!("{e}"));
    let binary = Binary::open(&library).unwrap_or_else(|e| panic!("{e}"));
    let elf = binary.elf().unwrap_or_else(|e| panic!("{e}"));
    let runtime = binary
        .py_runtime_bytes(&elf, debug_offsets::SIZE_313)
        .unwrap_or_else(|e| panic!("{}: {e}", library.display()));
    let mut types = Types::load(&elf, &binary.data)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("{} has no DWARF", library.display()));

    let member = |types: &mut Types<'_>, path: &'static str| -> u64 {
        match types.locate(Member("struct _Py_DebugOffsets", path)) {
            Ok(Found::At(offset)) => u64::try_from(offset)
                .unwrap_or_else(|e| panic!("_Py_DebugOffsets.{path} is at {offset}: {e}")),
            Ok(Found::Absent(why)) => panic!("_Py_DebugOffsets.{path}: {why}"),
            Err(e) => panic!("_Py_DebugOffsets.{path}: {e}"),
        }
    };
    assert_eq!(
        member(&mut types, "cookie"),
        0,
        "the cookie starts the table"
    );
    assert_eq!(member(&mut types, "version"), 8, "version is word 1");
    assert_eq!(
        member(&mut types, "free_threaded"),
        16,
        "free_threaded is word 2"
    );
    match types.locate(Size("struct _Py_DebugOffsets")) {
        Ok(Found::At(size)) => assert_eq!(
            size,
            debug_offsets::SIZE_313 as i128,
            "SIZE_313 is not sizeof(_Py_DebugOffsets)"
        ),
        other => panic!("sizeof(_Py_DebugOffsets): {other:?}"),
    }

    let decoded = DebugOffsets::parse(&runtime)
        .unwrap_or_else(|e| panic!("the file's _PyRuntime does not decode: {e:?}"));
    let words = debug_offset_values(&probe_debug_offsets());
    let mut problems = Vec::new();
    for ((field, value), (_, word)) in debug_offset_values(&decoded).into_iter().zip(words) {
        let Some((_, path)) = DEBUG_OFFSETS.iter().find(|r| r.0 == field) else {
            problems.push(format!("{field}: no row in DEBUG_OFFSETS"));
            continue;
        };
        let offset = member(&mut types, path);
        if word * 8 != offset {
            problems.push(format!(
                "{field}: decoded from word {word}, but _Py_DebugOffsets.{path} is word {}",
                offset / 8
            ));
        }
        let in_file = read_u64(&runtime, offset);
        if Some(value) != in_file {
            problems.push(format!(
                "{field}: decoded {value}, the file holds {in_file:?} at _Py_DebugOffsets.{path}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let expected = Version::parse_prefix(&interpreter.label).expect("pyenv names carry versions");
    assert_eq!(decoded.version, expected, "the version word");
    let table = Layout::for_version(decoded.version).expect("3.13 has a table");
    let mut applied = table;
    applied.apply_debug_offsets(&decoded);
    let changed: Vec<String> = layout_offsets(&table)
        .into_iter()
        .zip(layout_offsets(&applied))
        .filter(|(ours, theirs)| ours.1 != theirs.1)
        .map(|(ours, theirs)| format!("{}: table {:?}, interpreter {:?}", ours.0, ours.1, theirs.1))
        .collect();
    assert!(
        changed.is_empty(),
        "the interpreter's _Py_DebugOffsets disagree with the 3.13 table:\n{}",
        changed.join("\n")
    );
    assert_eq!(
        applied, table,
        "apply_debug_offsets changed a non-offset field"
    );
}

/// Debug offsets decoded from a buffer whose every word holds its own index, so each
/// field tells which word `DebugOffsets::parse` read it from.
fn probe_debug_offsets() -> DebugOffsets {
    let mut bytes = vec![0u8; debug_offsets::SIZE_313];
    for (i, word) in bytes.chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&(i as u64).to_le_bytes());
    }
    bytes[..8].copy_from_slice(debug_offsets::COOKIE);
    bytes[16..24].fill(0);
    DebugOffsets::parse(&bytes).unwrap_or_else(|e| panic!("the probe does not decode: {e:?}"))
}

fn read_u64(bytes: &[u8], offset: u64) -> Option<u64> {
    let start = usize::try_from(offset).ok()?;
    let word: [u8; 8] = bytes.get(start..start.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(word))
}
