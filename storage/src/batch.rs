//! Turning [`attach::Event`]s into Arrow record batches of the events table.
//!
//! [`EventBatchBuilder::push`] is on the recording hot path (once per event): it
//! appends to column builders without allocating except for the owned strings
//! (`args`, `value`, `exception`); repeated names go through [`SharedNames`], which
//! finds a name by its address instead of hashing its text.

use std::sync::Arc;

use ahash::AHashMap;
use arrow::array::{
    ArrayRef, DictionaryArray, Int32Builder, Int64Builder, RecordBatch, StringArray, StringBuilder,
    StringDictionaryBuilder, TimestampNanosecondBuilder, UInt32Array, UInt32Builder, UInt64Array,
    UInt64Builder,
};
use arrow::compute::take_record_batch;
use arrow::datatypes::Int32Type;

use attach::Event;

use crate::error::Result;
use crate::schema::events_schema;

/// Column builders for one batch of events of one run.
pub(crate) struct EventBatchBuilder {
    run_id: Arc<str>,
    rows: usize,
    /// Bytes of `args`, `value` and `exception` text buffered, to bound memory.
    text_bytes: usize,
    /// Whether rows arrived in `seq` order (so no sort is needed).
    in_seq_order: bool,
    last_seq: Option<u64>,
    pid: Int32Builder,
    tid: Int64Builder,
    thread_name: SharedNames,
    seq: UInt64Builder,
    ts: TimestampNanosecondBuilder,
    kind: SharedNames,
    source: SharedNames,
    call_id: UInt64Builder,
    parent_id: UInt64Builder,
    depth: Int32Builder,
    function: SharedNames,
    module: SharedNames,
    file: SharedNames,
    line: Int32Builder,
    caller: SharedNames,
    caller_line: Int32Builder,
    args: StringBuilder,
    value: StringBuilder,
    exception: StringBuilder,
    duration_ns: Int64Builder,
    duration_max_ns: Int64Builder,
    count: UInt32Builder,
}

impl EventBatchBuilder {
    /// An empty builder whose rows will carry `run_id`.
    pub(crate) fn new(run_id: &str) -> EventBatchBuilder {
        EventBatchBuilder::with_capacity(Arc::from(run_id), 0, 0)
    }

    /// An empty builder with room for `rows` rows and `text_bytes` bytes of free
    /// text, so that a batch as large as the last one is built without its columns
    /// growing (and being copied) a dozen times on the way. Room not written to is
    /// address space only: the pages are not touched.
    fn with_capacity(run_id: Arc<str>, rows: usize, text_bytes: usize) -> EventBatchBuilder {
        EventBatchBuilder {
            run_id,
            rows: 0,
            text_bytes: 0,
            in_seq_order: true,
            last_seq: None,
            pid: Int32Builder::with_capacity(rows),
            tid: Int64Builder::with_capacity(rows),
            thread_name: SharedNames::with_capacity(rows),
            seq: UInt64Builder::with_capacity(rows),
            ts: TimestampNanosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            kind: SharedNames::with_capacity(rows),
            source: SharedNames::with_capacity(rows),
            call_id: UInt64Builder::with_capacity(rows),
            parent_id: UInt64Builder::with_capacity(rows),
            depth: Int32Builder::with_capacity(rows),
            function: SharedNames::with_capacity(rows),
            module: SharedNames::with_capacity(rows),
            file: SharedNames::with_capacity(rows),
            line: Int32Builder::with_capacity(rows),
            caller: SharedNames::with_capacity(rows),
            caller_line: Int32Builder::with_capacity(rows),
            args: StringBuilder::with_capacity(rows, text_bytes),
            value: StringBuilder::with_capacity(rows, text_bytes),
            exception: StringBuilder::with_capacity(rows, 0),
            duration_ns: Int64Builder::with_capacity(rows),
            duration_max_ns: Int64Builder::with_capacity(rows),
            count: UInt32Builder::with_capacity(rows),
        }
    }

    /// Rows buffered.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes of free text (`args`, `value`, `exception`) buffered.
    pub(crate) fn text_bytes(&self) -> usize {
        self.text_bytes
    }

    /// Appends one event as a row (hot path).
    pub(crate) fn push(&mut self, event: Event) {
        if self.last_seq.is_some_and(|last| event.seq < last) {
            self.in_seq_order = false;
        }
        self.last_seq = Some(event.seq);
        self.rows += 1;
        self.text_bytes += event.args.as_ref().map_or(0, String::len)
            + event.value.as_ref().map_or(0, String::len)
            + event.exception.as_ref().map_or(0, String::len);

        self.pid.append_value(event.pid);
        self.tid.append_value(event.tid);
        self.thread_name.append_option(event.thread_name.as_ref());
        self.seq.append_value(event.seq);
        self.ts.append_value(event.ts_ns);
        self.kind.append_static(event.kind.as_str());
        self.source.append_static(event.source.as_str());
        self.call_id.append_value(event.call_id);
        self.parent_id.append_option(event.parent_id);
        self.depth.append_value(event.depth);
        self.function.append(&event.function);
        self.module.append(&event.module);
        self.file.append(&event.file);
        self.line.append_value(event.line);
        self.caller.append_option(event.caller.as_ref());
        self.caller_line.append_option(event.caller_line);
        self.args.append_option(event.args);
        self.value.append_option(event.value);
        self.exception.append_option(event.exception);
        self.duration_ns.append_option(event.duration_ns);
        self.duration_max_ns.append_option(event.duration_max_ns);
        self.count.append_value(event.count);
    }

    /// The buffered rows as one batch sorted by `seq` (stable, so rows with equal
    /// `seq` keep their arrival order), leaving the builder empty.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch> {
        let rows = self.rows;
        let next = EventBatchBuilder::with_capacity(self.run_id.clone(), rows, self.text_bytes);
        let mut done = std::mem::replace(self, next);
        let mut run_id = StringDictionaryBuilder::<Int32Type>::new();
        run_id.append_values(&*done.run_id, rows);
        let seq = done.seq.finish();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(run_id.finish()),
            Arc::new(done.pid.finish()),
            Arc::new(done.tid.finish()),
            Arc::new(done.thread_name.finish()),
            Arc::new(seq.clone()),
            Arc::new(done.ts.finish()),
            Arc::new(done.kind.finish()),
            Arc::new(done.source.finish()),
            Arc::new(done.call_id.finish()),
            Arc::new(done.parent_id.finish()),
            Arc::new(done.depth.finish()),
            Arc::new(done.function.finish()),
            Arc::new(done.module.finish()),
            Arc::new(done.file.finish()),
            Arc::new(done.line.finish()),
            Arc::new(done.caller.finish()),
            Arc::new(done.caller_line.finish()),
            Arc::new(done.args.finish()),
            Arc::new(done.value.finish()),
            Arc::new(done.exception.finish()),
            Arc::new(done.duration_ns.finish()),
            Arc::new(done.duration_max_ns.finish()),
            Arc::new(done.count.finish()),
        ];
        let batch = RecordBatch::try_new(events_schema(), columns)?;
        if done.in_seq_order {
            return Ok(batch);
        }
        Ok(take_record_batch(&batch, &seq_order(&seq))?)
    }
}

/// Row indices that put `seq` in ascending order (stable).
fn seq_order(seq: &UInt64Array) -> UInt32Array {
    let values = seq.values();
    let mut order: Vec<u32> = (0..values.len() as u32).collect();
    order.sort_by_key(|&row| values[row as usize]);
    UInt32Array::from(order)
}

/// A dictionary column of names shared as `Arc<str>` (a function's, a thread's) or
/// `&'static str` (a kind). The same few names come back on every row, so a name is
/// looked up by its address, which costs no hashing of its text; only an address
/// not seen before is looked up by text. Every `Arc` seen is held until the column
/// is finished, so its address cannot be reused by another string meanwhile.
#[derive(Default)]
struct SharedNames {
    keys: Int32Builder,
    /// The last name appended, by address, and its key: consecutive rows often
    /// name the same function (a call and its return, recursion, a loop), and
    /// this skips their hash lookup.
    last: Option<((usize, usize), i32)>,
    /// The dictionary: the text of each key.
    values: Vec<Arc<str>>,
    by_address: AHashMap<(usize, usize), i32>,
    by_text: AHashMap<Arc<str>, i32>,
    /// `Arc`s whose text was already in the dictionary under another address.
    held: Vec<Arc<str>>,
}

impl SharedNames {
    fn with_capacity(rows: usize) -> SharedNames {
        SharedNames {
            keys: Int32Builder::with_capacity(rows),
            ..SharedNames::default()
        }
    }

    fn append(&mut self, name: &Arc<str>) {
        let address = (Arc::as_ptr(name).cast::<u8>() as usize, name.len());
        let key = match self.key_by_address(address) {
            Some(key) => key,
            None => {
                let key = self.key_of_text(name);
                // The dictionary holds the first `Arc` of each text; others are held here.
                if !Arc::ptr_eq(&self.values[key as usize], name) {
                    self.held.push(name.clone());
                }
                self.by_address.insert(address, key);
                key
            }
        };
        self.push_key(address, key);
    }

    fn append_option(&mut self, name: Option<&Arc<str>>) {
        match name {
            Some(name) => self.append(name),
            None => self.keys.append_null(),
        }
    }

    fn append_static(&mut self, name: &'static str) {
        let address = (name.as_ptr() as usize, name.len());
        let key = match self.key_by_address(address) {
            Some(key) => key,
            None => {
                let key = self.key_of_text(&Arc::from(name));
                self.by_address.insert(address, key);
                key
            }
        };
        self.push_key(address, key);
    }

    /// The key of a name seen before at `address` (the last one first).
    fn key_by_address(&self, address: (usize, usize)) -> Option<i32> {
        match self.last {
            Some((last, key)) if last == address => Some(key),
            _ => self.by_address.get(&address).copied(),
        }
    }

    fn push_key(&mut self, address: (usize, usize), key: i32) {
        self.last = Some((address, key));
        self.keys.append_value(key);
    }

    /// The key of `name`'s text, adding it to the dictionary if it is new.
    fn key_of_text(&mut self, name: &Arc<str>) -> i32 {
        if let Some(&key) = self.by_text.get(name) {
            return key;
        }
        let key = i32::try_from(self.values.len()).expect("fewer than 2^31 distinct names");
        self.values.push(name.clone());
        self.by_text.insert(name.clone(), key);
        key
    }

    /// The column, leaving the builder empty.
    fn finish(&mut self) -> DictionaryArray<Int32Type> {
        let keys = self.keys.finish();
        let values = StringArray::from_iter_values(self.values.iter().map(|name| &**name));
        self.values.clear();
        self.last = None;
        self.by_address.clear();
        self.by_text.clear();
        self.held.clear();
        DictionaryArray::new(keys, Arc::new(values))
    }
}
