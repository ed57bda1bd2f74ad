//! Names a person reads: a frame's module (`__name__` of its globals), its qualified
//! function name, and Python's names for threads (`threading.Thread.name`).
//! Each is looked up once and cached by the address it came from.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use python_offsets::{type_flags, Layout, LongFormat, LONG_DIGIT_BITS};

use crate::error::{Error, Result};
use crate::memory::ProcessMemory;
use crate::objects;
use crate::walker::{RawFrame, Walker};

/// Caches of names by the address they were read from.
#[derive(Debug, Default)]
pub struct Names {
    /// Globals dict address to module name.
    modules: HashMap<u64, Arc<str>>,
    /// (code address, type address of the first argument) to qualified name, ≤3.10.
    methods: HashMap<(u64, u64), Arc<str>>,
}

impl Names {
    pub fn new() -> Names {
        Names::default()
    }

    /// The module a frame runs in: `__name__` of its globals, or the file's stem when
    /// the globals cannot be read.
    pub fn module_name(&mut self, walker: &Walker, frame: &RawFrame) -> Arc<str> {
        if let Some(name) = self.modules.get(&frame.globals) {
            return name.clone();
        }
        let mem = &walker.process.mem;
        let layout = walker.layout();
        let name: Arc<str> = objects::dict_get_str(mem, layout, frame.globals, "__name__")
            .ok()
            .flatten()
            .and_then(|v| objects::read_checked_str(mem, layout, v).ok())
            .unwrap_or_else(|| file_stem(&frame.code.filename))
            .into();
        if frame.globals != 0 {
            self.modules.insert(frame.globals, name.clone());
        }
        name
    }

    /// The qualified function name: `co_qualname` on 3.11+; on 3.8–3.10, `Class.name`
    /// when the first argument is `self` (its type) or `cls` (the class itself).
    pub fn function_name(
        &mut self,
        walker: &Walker,
        frame: &RawFrame,
        args: &[(Arc<str>, u64)],
    ) -> Arc<str> {
        let code = &frame.code;
        if walker.layout().code.qualname.is_some() || code.argcount == 0 {
            return code.qualname.clone();
        }
        let Some((first, value)) = args.first() else {
            return code.qualname.clone();
        };
        if value == &0 || !(&**first == "self" || &**first == "cls") {
            return code.qualname.clone();
        }
        let mem = &walker.process.mem;
        let layout = walker.layout();
        let Ok(ty) = objects::type_of(mem, layout, *value) else {
            return code.qualname.clone();
        };
        let class = if &**first == "cls" {
            let is_type = objects::type_flags_of(mem, layout, ty)
                .is_ok_and(|f| f & type_flags::TYPE_SUBCLASS != 0);
            if !is_type {
                return code.qualname.clone();
            }
            *value
        } else {
            ty
        };
        if let Some(name) = self.methods.get(&(code.addr, class)) {
            return name.clone();
        }
        let name: Arc<str> = match objects::type_name(mem, layout, class) {
            Ok(class_name) => {
                let short = class_name.rsplit('.').next().unwrap_or(&class_name);
                format!("{short}.{}", code.name).into()
            }
            Err(_) => code.qualname.clone(),
        };
        self.methods.insert((code.addr, class), name.clone());
        name
    }

    /// Python's thread names by thread ident (`threading._active`), empty when the
    /// program never imported `threading`.
    pub fn thread_names(&mut self, walker: &Walker) -> HashMap<u64, String> {
        read_thread_names(walker).unwrap_or_default()
    }
}

fn read_thread_names(walker: &Walker) -> Result<HashMap<u64, String>> {
    let mem = &walker.process.mem;
    let layout = walker.layout();
    let interp = walker.process.interpreter()?;
    let modules = mem.read_u64(interp + layout.interpreter.modules)?;
    let Some(threading) = objects::dict_get_str(mem, layout, modules, "threading")? else {
        return Ok(HashMap::new());
    };
    let module_dict = mem.read_u64(threading + layout.object.module_dict)?;
    let Some(active) = objects::dict_get_str(mem, layout, module_dict, "_active")? else {
        return Ok(HashMap::new());
    };
    let mut names = HashMap::new();
    for (key, thread) in objects::dict_items(mem, layout, active, 4096)? {
        let Ok(ident) = read_u64_int(mem, layout, key) else {
            continue;
        };
        if let Some(name) = objects::instance_attr(mem, layout, thread, "_name")? {
            if let Ok(text) = objects::read_checked_str(mem, layout, name) {
                names.insert(ident, text);
            }
        }
    }
    Ok(names)
}

/// A non-negative `int` that fits in 64 bits (a thread ident).
fn read_u64_int<M: ProcessMemory + ?Sized>(mem: &M, layout: &Layout, addr: u64) -> Result<u64> {
    let o = &layout.object;
    let (ndigits, negative) = match o.long_format {
        LongFormat::SignedSize => {
            let size = mem.read_i64(addr + o.ob_size)?;
            (size.unsigned_abs(), size < 0)
        }
        LongFormat::LvTag => {
            let tag = mem.read_u64(addr + o.long_tag.unwrap_or(o.ob_size))?;
            (tag >> 3, tag & 3 == 2)
        }
    };
    if negative || ndigits > 3 {
        return Err(Error::inconsistent("not a thread ident"));
    }
    let raw = mem.read_vec(addr + o.long_digits, ndigits as usize * 4)?;
    let mut value: u64 = 0;
    for (i, d) in raw.chunks_exact(4).enumerate() {
        let digit = u64::from(u32::from_le_bytes([d[0], d[1], d[2], d[3]]));
        value |= digit.checked_shl(LONG_DIGIT_BITS * i as u32).unwrap_or(0);
    }
    Ok(value)
}

fn file_stem(filename: &str) -> String {
    Path::new(filename)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| filename.to_string())
}
