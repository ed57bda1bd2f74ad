//! Follows where instances keep their attributes ([`InstanceDictModel`]) and how a
//! split table orders its values ([`SplitValuesOrder`], `DictLayout::values_items`)
//! in live interpreters.
//!
//! The instance-dict offsets come from CPython macros and inline functions, which
//! the DWARF read by `tests/dwarf.rs` cannot show (its module doc says why), and the
//! order bytes are placed by code, not by a struct. So each interpreter of the test
//! matrix (pyenv's 3.8 to 3.13 and Debian's stripped 3.11, which has no DWARF to
//! check) runs [`SCRIPT`], which builds three instances of one class and sleeps;
//! the test reads
//! the script's memory through `/proc/PID/mem`, follows the pointers the layout says
//! are there, and expects the ids the script printed.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::time::Duration;

use python_offsets::{InstanceDictModel, Layout, SplitValuesOrder, Version};

/// Prints `READY` and the ids the test looks for, then sleeps until it is killed.
/// `untouched` keeps its attributes the way a fresh instance does (a split dict up
/// to 3.10, a values array from 3.11); `materialized` had `__dict__` read, which
/// makes a dict in 3.11+; `replaced` had `__dict__` assigned.
const SCRIPT: &str = r#"
import time

class Point:
    def __init__(self):
        self.x = object()
        self.y = object()

untouched = Point()
materialized = Point()
materialized_dict = materialized.__dict__
replaced = Point()
replaced.__dict__ = {"z": object()}
print("READY", id(untouched), id(untouched.x), id(untouched.y),
      id(materialized), id(materialized_dict), id(replaced), id(replaced.__dict__),
      Point.__basicsize__, Point.__dictoffset__, flush=True)
time.sleep(600)
"#;

/// What [`SCRIPT`] printed.
struct Ids {
    untouched: u64,
    x: u64,
    y: u64,
    materialized: u64,
    materialized_dict: u64,
    replaced: u64,
    replaced_dict: u64,
    basicsize: u64,
    dictoffset: i64,
}

impl Ids {
    fn parse(line: &str) -> Result<Ids, String> {
        let fields: Vec<&str> = line.split_whitespace().skip(1).collect();
        let [untouched, x, y, materialized, materialized_dict, replaced, replaced_dict, basicsize, dictoffset] =
            fields[..]
        else {
            return Err(format!("the script printed {line:?}, not 9 numbers"));
        };
        let id = |s: &str| {
            s.parse::<u64>()
                .map_err(|e| format!("{s:?} in {line:?} is not an address: {e}"))
        };
        Ok(Ids {
            untouched: id(untouched)?,
            x: id(x)?,
            y: id(y)?,
            materialized: id(materialized)?,
            materialized_dict: id(materialized_dict)?,
            replaced: id(replaced)?,
            replaced_dict: id(replaced_dict)?,
            basicsize: id(basicsize)?,
            dictoffset: dictoffset
                .parse()
                .map_err(|e| format!("__dictoffset__ {dictoffset:?} is not a number: {e}"))?,
        })
    }
}

/// Another process's memory, read through `/proc/PID/mem`.
struct Memory(File);

impl Memory {
    fn open(pid: i32) -> Result<Memory, String> {
        File::open(format!("/proc/{pid}/mem"))
            .map(Memory)
            .map_err(|e| format!("cannot open /proc/{pid}/mem: {e}"))
    }

    fn read<const N: usize>(&self, address: u64) -> Result<[u8; N], String> {
        let mut bytes = [0u8; N];
        self.0
            .read_exact_at(&mut bytes, address)
            .map_err(|e| format!("cannot read {N} bytes at {address:#x}: {e}"))?;
        Ok(bytes)
    }

    fn word(&self, address: u64) -> Result<u64, String> {
        self.read(address).map(u64::from_le_bytes)
    }

    fn byte(&self, address: u64) -> Result<u8, String> {
        self.read::<1>(address).map(|b| b[0])
    }
}

/// `base + offset`, for offsets that count back from an object.
fn offset(base: u64, offset: i64) -> Result<u64, String> {
    base.checked_add_signed(offset)
        .ok_or_else(|| format!("{base:#x} {offset:+} is not an address"))
}

fn expect(what: &str, found: u64, expected: u64) -> Result<(), String> {
    if found == expected {
        Ok(())
    } else {
        Err(format!("{what}: found {found:#x}, expected {expected:#x}"))
    }
}

#[test]
fn instance_attributes_are_where_the_layout_says_in_every_interpreter() {
    let interpreters = e2e::matrix();
    let checks: Vec<(String, Result<(), String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = interpreters
            .iter()
            .map(|i| (i.label.clone(), scope.spawn(move || check_interpreter(i))))
            .collect();
        handles
            .into_iter()
            .map(|(label, h)| {
                let result = h
                    .join()
                    .unwrap_or_else(|_| Err("the check panicked".to_string()));
                (label, result)
            })
            .collect()
    });
    let problems: Vec<String> = checks
        .into_iter()
        .filter_map(|(label, result)| result.err().map(|e| format!("{label}: {e}")))
        .collect();
    assert!(
        problems.is_empty(),
        "the instance-dict layout is wrong:\n{}",
        problems.join("\n")
    );
}

fn check_interpreter(interpreter: &e2e::Interpreter) -> Result<(), String> {
    let version = Version::new(3, interpreter.minor, 0);
    let layout = Layout::for_version(version).ok_or_else(|| format!("no table for {version}"))?;
    let mut command = Command::new(&interpreter.path);
    command.arg("-c").arg(SCRIPT);
    let mut target = e2e::Target::spawn(command);
    let lines = target.wait_for("READY", Duration::from_secs(60));
    let ready = lines.last().ok_or("the script printed nothing")?;
    let ids = Ids::parse(ready)?;
    let memory = Memory::open(target.pid())?;
    check_untouched(&memory, &layout, &ids).map_err(|e| format!("untouched: {e}"))?;
    check_dict_pointer(
        &memory,
        &layout,
        &ids,
        ids.materialized,
        ids.materialized_dict,
    )
    .map_err(|e| format!("materialized: {e}"))?;
    check_dict_pointer(&memory, &layout, &ids, ids.replaced, ids.replaced_dict)
        .map_err(|e| format!("replaced: {e}"))?;
    check_replaced_values(&memory, &layout, &ids).map_err(|e| format!("replaced: {e}"))
}

/// A fresh instance: its values, found the way the layout says, are `x` then `y`.
fn check_untouched(memory: &Memory, layout: &Layout, ids: &Ids) -> Result<(), String> {
    let object = ids.untouched;
    let values = match layout.object.instance_dict {
        InstanceDictModel::DictOffset => {
            let dict = memory.word(offset(object, ids.dictoffset)?)?;
            if dict == 0 {
                return Err(format!(
                    "no dict at __dictoffset__ {} of the object",
                    ids.dictoffset
                ));
            }
            memory.word(dict + layout.object.dict.ma_values)?
        }
        InstanceDictModel::ValuesAndDict { values, dict } => {
            expect(
                "the dict word of an instance without a dict",
                memory.word(offset(object, dict)?)?,
                0,
            )?;
            memory.word(offset(object, values)?)?
        }
        InstanceDictModel::Tagged { offset: tagged } => {
            // CPython `_PyDictOrValues_SetValues` stores the values pointer minus one.
            let word = memory.word(offset(object, tagged)?)?;
            if word & 1 != 1 {
                return Err(format!(
                    "the tagged word {word:#x} is not a values pointer (low bit clear)"
                ));
            }
            word + 1
        }
        InstanceDictModel::InlineValues { dict } => {
            expect(
                "the dict word of an instance without a dict",
                memory.word(offset(object, dict)?)?,
                0,
            )?;
            object + ids.basicsize
        }
    };
    if values == 0 {
        return Err("the values pointer is NULL".to_string());
    }
    let items = values + layout.object.dict.values_items;
    expect("values[0]", memory.word(items)?, ids.x)?;
    expect("values[1]", memory.word(items + 8)?, ids.y)?;
    match layout.object.dict.split_order {
        SplitValuesOrder::Dense => Ok(()),
        SplitValuesOrder::BytesBefore => {
            expect("the first order byte", memory.byte(values - 3)?.into(), 0)?;
            expect("the second order byte", memory.byte(values - 4)?.into(), 1)
        }
        SplitValuesOrder::BytesAfter {
            capacity,
            size,
            valid,
        } => {
            expect("valid", memory.byte(values + valid)?.into(), 1)?;
            expect("size", memory.byte(values + size)?.into(), 2)?;
            let capacity = u64::from(memory.byte(values + capacity)?);
            if capacity < 2 {
                return Err(format!("capacity {capacity} holds fewer than 2 values"));
            }
            let order = items + 8 * capacity;
            expect("the first order byte", memory.byte(order)?.into(), 0)?;
            expect("the second order byte", memory.byte(order + 1)?.into(), 1)
        }
    }
}

/// An instance with a real dict: the layout's dict pointer points at it.
fn check_dict_pointer(
    memory: &Memory,
    layout: &Layout,
    ids: &Ids,
    object: u64,
    dict: u64,
) -> Result<(), String> {
    match layout.object.instance_dict {
        InstanceDictModel::DictOffset => expect(
            "the word at __dictoffset__",
            memory.word(offset(object, ids.dictoffset)?)?,
            dict,
        ),
        InstanceDictModel::ValuesAndDict {
            values,
            dict: dict_word,
        } => {
            expect(
                "the dict word",
                memory.word(offset(object, dict_word)?)?,
                dict,
            )?;
            expect("the values word", memory.word(offset(object, values)?)?, 0)
        }
        InstanceDictModel::Tagged { offset: tagged } => expect(
            "the tagged word",
            memory.word(offset(object, tagged)?)?,
            dict,
        ),
        InstanceDictModel::InlineValues { dict: dict_word } => expect(
            "the dict word",
            memory.word(offset(object, dict_word)?)?,
            dict,
        ),
    }
}

/// 3.13+: assigning `__dict__` marks the inline values of the instance invalid.
fn check_replaced_values(memory: &Memory, layout: &Layout, ids: &Ids) -> Result<(), String> {
    match layout.object.dict.split_order {
        SplitValuesOrder::BytesAfter { valid, .. } => expect(
            "valid after __dict__ was assigned",
            memory.byte(ids.replaced + ids.basicsize + valid)?.into(),
            0,
        ),
        SplitValuesOrder::Dense | SplitValuesOrder::BytesBefore => Ok(()),
    }
}
