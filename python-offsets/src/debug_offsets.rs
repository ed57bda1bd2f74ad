//! `_Py_DebugOffsets` (3.13+): the layout the interpreter publishes about itself as
//! the first field of `_PyRuntime` (CPython `Include/internal/pycore_debug_offsets.h`).
//!
//! A reader that trusts these numbers over its own table keeps working on builds whose
//! layout differs from the stock one (different configure options, patch releases).

use crate::{Layout, Version};

/// The cookie that starts `_Py_DebugOffsets`.
pub const COOKIE: &[u8; 8] = b"xdebugpy";

/// How many bytes of `_PyRuntime` to read to decode the 3.13 table:
/// `sizeof(struct _Py_DebugOffsets)`, 73 words.
pub const SIZE_313: usize = 8 * 73;

/// Why the debug offsets could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebugOffsetsError {
    /// The cookie is not `xdebugpy`: not a 3.13+ runtime, or the wrong address.
    BadCookie,
    /// The buffer is shorter than the table.
    Truncated,
    /// A free-threaded build (`--disable-gil`), whose object header differs.
    FreeThreaded,
}

/// The fields of `_Py_DebugOffsets` that the reader uses, in the 3.13 order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugOffsets {
    pub version: Version,
    pub interpreters_head: u64,
    pub interp_next: u64,
    pub interp_threads_head: u64,
    pub interp_modules: u64,
    pub interp_ceval_gil: u64,
    pub thread_next: u64,
    pub thread_interp: u64,
    pub thread_current_frame: u64,
    pub thread_id: u64,
    pub native_thread_id: u64,
    pub frame_previous: u64,
    pub frame_executable: u64,
    pub frame_instr_ptr: u64,
    pub frame_localsplus: u64,
    pub frame_owner: u64,
    pub code_filename: u64,
    pub code_name: u64,
    pub code_qualname: u64,
    pub code_linetable: u64,
    pub code_firstlineno: u64,
    pub code_argcount: u64,
    pub code_localsplusnames: u64,
    pub code_localspluskinds: u64,
    pub code_adaptive: u64,
    pub ob_type: u64,
    pub tp_name: u64,
    pub tp_flags: u64,
    pub tuple_items: u64,
    pub list_items: u64,
    pub dict_keys: u64,
    pub dict_values: u64,
    pub float_fval: u64,
    pub long_tag: u64,
    pub long_digits: u64,
    pub bytes_sval: u64,
    pub unicode_state: u64,
    pub unicode_length: u64,
    pub unicode_ascii_size: u64,
}

impl DebugOffsets {
    /// Decodes the 3.13 layout of the table from the first [`SIZE_313`] bytes of
    /// `_PyRuntime`.
    pub fn parse(bytes: &[u8]) -> Result<DebugOffsets, DebugOffsetsError> {
        if bytes.len() < 8 || &bytes[..8] != COOKIE {
            return Err(DebugOffsetsError::BadCookie);
        }
        if bytes.len() < SIZE_313 {
            return Err(DebugOffsetsError::Truncated);
        }
        let word = |i: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(word)
        };
        if word(2) != 0 {
            return Err(DebugOffsetsError::FreeThreaded);
        }
        // Word indexes: cookie 0, version 1, free_threaded 2; runtime_state 3..=5;
        // interpreter_state 6..=18; thread_state 19..=27; interpreter_frame 28..=33;
        // code_object 34..=43; pyobject 44..=45; type_object 46..=49; tuple 50..=52;
        // list 53..=55; dict 56..=58; float 59..=60; long 61..=63; bytes 64..=66;
        // unicode 67..=70; gc 71..=72. `tests/dwarf.rs` proves them against the DWARF.
        Ok(DebugOffsets {
            version: Version::from_hex(word(1) as u32),
            interpreters_head: word(5),
            interp_next: word(8),
            interp_threads_head: word(9),
            interp_modules: word(11),
            interp_ceval_gil: word(14),
            thread_next: word(21),
            thread_interp: word(22),
            thread_current_frame: word(23),
            thread_id: word(24),
            native_thread_id: word(25),
            frame_previous: word(29),
            frame_executable: word(30),
            frame_instr_ptr: word(31),
            frame_localsplus: word(32),
            frame_owner: word(33),
            code_filename: word(35),
            code_name: word(36),
            code_qualname: word(37),
            code_linetable: word(38),
            code_firstlineno: word(39),
            code_argcount: word(40),
            code_localsplusnames: word(41),
            code_localspluskinds: word(42),
            code_adaptive: word(43),
            ob_type: word(45),
            tp_name: word(47),
            tp_flags: word(49),
            tuple_items: word(51),
            list_items: word(54),
            dict_keys: word(57),
            dict_values: word(58),
            float_fval: word(60),
            long_tag: word(62),
            long_digits: word(63),
            bytes_sval: word(66),
            unicode_state: word(68),
            unicode_length: word(69),
            unicode_ascii_size: word(70),
        })
    }
}

impl Layout {
    /// Overrides this table with the numbers the target reports about itself.
    pub fn apply_debug_offsets(&mut self, d: &DebugOffsets) {
        self.version = d.version;
        self.runtime.interpreters_head = d.interpreters_head;
        self.interpreter.next = d.interp_next;
        self.interpreter.threads_head = d.interp_threads_head;
        self.interpreter.modules = d.interp_modules;
        self.interpreter.ceval_gil = Some(d.interp_ceval_gil);
        self.thread.next = d.thread_next;
        self.thread.interp = d.thread_interp;
        self.thread.current_frame = Some(d.thread_current_frame);
        self.thread.thread_id = d.thread_id;
        self.thread.native_thread_id = Some(d.native_thread_id);
        self.frame.previous = d.frame_previous;
        self.frame.code = d.frame_executable;
        self.frame.instr_ptr = Some(d.frame_instr_ptr);
        self.frame.localsplus = d.frame_localsplus;
        self.frame.owner = Some(d.frame_owner);
        self.code.filename = d.code_filename;
        self.code.name = d.code_name;
        self.code.qualname = Some(d.code_qualname);
        self.code.linetable = d.code_linetable;
        self.code.firstlineno = d.code_firstlineno;
        self.code.argcount = d.code_argcount;
        self.code.varnames = d.code_localsplusnames;
        self.code.localspluskinds = Some(d.code_localspluskinds);
        self.code.code_adaptive = Some(d.code_adaptive);
        self.object.ob_type = d.ob_type;
        self.object.tp_name = d.tp_name;
        self.object.tp_flags = d.tp_flags;
        self.object.tuple_items = d.tuple_items;
        self.object.list_items = d.list_items;
        self.object.dict.ma_keys = d.dict_keys;
        self.object.dict.ma_values = d.dict_values;
        self.object.float_fval = d.float_fval;
        self.object.long_tag = Some(d.long_tag);
        self.object.long_digits = d.long_digits;
        self.object.bytes_sval = d.bytes_sval;
        self.object.unicode.state = d.unicode_state;
        self.object.unicode.length = d.unicode_length;
        self.object.unicode.ascii_size = d.unicode_ascii_size;
    }
}
