//! `repr_value`, `dict_items` and `instance_attr` against live interpreters: for
//! every interpreter of the matrix, `scripts/repr_values.py` builds values and prints
//! each one's address with Python's own repr; the reader must print the same text.

use std::path::{Path, PathBuf};
use std::time::Duration;

use attach::objects::{dict_items, instance_attr};
use attach::redact::REDACTED;
use attach::repr::{repr_named_cached, repr_value_cached, ReprOptions, TypeCache};
use attach::{repr_value, RemoteMemory};
use e2e::{Interpreter, Target};
use python_offsets::{Layout, Version};
use serde_json::Value;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/repr_values.py")
}

/// The documented cut: at most `max_len` characters, the last three being `...`.
fn cut(text: &str, max_len: usize) -> String {
    if text.chars().count() <= max_len {
        return text.to_string();
    }
    let kept: String = text.chars().take(max_len - 3).collect();
    format!("{kept}...")
}

fn addr(record: &Value, field: &str) -> u64 {
    record[field]
        .as_u64()
        .unwrap_or_else(|| panic!("record without a numeric {field}: {record}"))
}

fn text<'a>(record: &'a Value, field: &str) -> &'a str {
    record[field]
        .as_str()
        .unwrap_or_else(|| panic!("record without a string {field}: {record}"))
}

/// Starts the target on `python` and returns it with its JSON records.
fn start(python: &Interpreter) -> (Target, Vec<Value>) {
    let mut target = Target::start(&python.path, &script(), &[]);
    let lines = target.wait_for("READY", Duration::from_secs(60));
    let records = lines[..lines.len() - 1]
        .iter()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: bad record {line:?}: {e}", python.label))
        })
        .collect();
    (target, records)
}

fn layout_of(python: &Interpreter) -> Layout {
    Layout::for_version(Version::new(3, python.minor, 0))
        .unwrap_or_else(|| panic!("no layout for {}", python.label))
}

#[test]
fn repr_matches_python_on_every_interpreter() {
    for python in e2e::matrix() {
        let (target, records) = start(&python);
        let mem = RemoteMemory::new(target.pid());
        let layout = layout_of(&python);
        let defaults = ReprOptions::default();
        let mut cache = TypeCache::new();
        let mut failures = Vec::new();
        let mut checked = 0;
        for record in records.iter().filter(|r| r["kind"] == "value") {
            let name = text(record, "name");
            let id = addr(record, "id");
            let expect = text(record, "expect");
            let unbounded = ReprOptions {
                max_len: expect.chars().count().max(defaults.max_len) + 16,
                max_depth: 1000,
                max_items: 1 << 20,
                ..ReprOptions::default()
            };
            let got = repr_value_cached(&mem, &layout, &mut cache, id, &unbounded);
            if got != expect {
                failures.push(format!(
                    "{name}: unbounded\n  got    {got}\n  python {expect}"
                ));
            }
            let bounded_expect = cut(
                record["default"].as_str().unwrap_or(expect),
                defaults.max_len,
            );
            let got = repr_value_cached(&mem, &layout, &mut cache, id, &defaults);
            if got != bounded_expect {
                failures.push(format!(
                    "{name}: default options\n  got    {got}\n  expect {bounded_expect}"
                ));
            }
            checked += 1;
        }
        assert!(checked > 300, "{}: only {checked} values", python.label);
        assert!(
            failures.is_empty(),
            "{}: {} of {checked} reprs differ from Python:\n{}",
            python.label,
            failures.len(),
            failures.join("\n")
        );
        assert!(!cache.is_empty(), "the type cache was not filled");
    }
}

#[test]
fn dict_items_and_instance_attrs_match_python_on_every_interpreter() {
    for python in e2e::matrix() {
        let (target, records) = start(&python);
        let mem = RemoteMemory::new(target.pid());
        let layout = layout_of(&python);
        let mut failures = Vec::new();
        let mut attrs = 0;
        let mut dicts = 0;
        for record in &records {
            let name = text(record, "name");
            match record["kind"].as_str() {
                Some("attr") => {
                    attrs += 1;
                    let expect = record["value"].as_u64();
                    match instance_attr(&mem, &layout, addr(record, "obj"), text(record, "attr")) {
                        Ok(got) if got == expect => {}
                        other => failures.push(format!(
                            "instance_attr {name}: got {other:x?}, python {expect:x?}"
                        )),
                    }
                }
                Some("items") => {
                    dicts += 1;
                    let expect: Vec<(u64, u64)> = record["items"]
                        .as_array()
                        .unwrap_or_else(|| panic!("items record without items: {record}"))
                        .iter()
                        .map(|pair| (pair[0].as_u64().unwrap_or(0), pair[1].as_u64().unwrap_or(0)))
                        .collect();
                    match dict_items(&mem, &layout, addr(record, "id"), usize::MAX) {
                        Ok(got) if got == expect => {}
                        other => failures.push(format!(
                            "dict_items {name}: got {other:x?}, python {expect:x?}"
                        )),
                    }
                    let first_two = dict_items(&mem, &layout, addr(record, "id"), 2);
                    if first_two.as_ref().ok() != Some(&expect[..2.min(expect.len())].to_vec()) {
                        failures.push(format!("dict_items {name} max 2: got {first_two:x?}"));
                    }
                }
                _ => {}
            }
        }
        assert!(
            attrs >= 15 && dicts >= 4,
            "{}: too few checks",
            python.label
        );
        assert!(
            failures.is_empty(),
            "{}:\n{}",
            python.label,
            failures.join("\n")
        );
    }
}

#[test]
fn names_redact_and_bad_addresses_print_as_unreadable() {
    for python in e2e::matrix() {
        let (target, records) = start(&python);
        let mem = RemoteMemory::new(target.pid());
        let layout = layout_of(&python);
        let hello = records
            .iter()
            .find(|r| r["name"] == "str 1")
            .unwrap_or_else(|| panic!("{}: no 'hello' record", python.label));
        let (id, expect) = (addr(hello, "id"), text(hello, "expect"));
        let opts = ReprOptions::default();
        let mut cache = TypeCache::new();
        let mut named = |name: &str, opts: &ReprOptions| {
            repr_named_cached(&mem, &layout, &mut cache, name, id, opts)
        };
        assert_eq!(named("greeting", &opts), expect, "{}", python.label);
        assert_eq!(named("db_password", &opts), REDACTED, "{}", python.label);
        assert_eq!(named("AuthToken", &opts), REDACTED, "{}", python.label);
        let extra = ReprOptions {
            redact_names: vec!["greet".into()],
            ..ReprOptions::default()
        };
        assert_eq!(named("greeting", &extra), REDACTED, "{}", python.label);

        assert_eq!(repr_value(&mem, &layout, 0, &opts), "<NULL>");
        assert_eq!(repr_value(&mem, &layout, 8, &opts), "<unreadable 0x8>");
    }
}
