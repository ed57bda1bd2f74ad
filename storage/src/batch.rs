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
        EventBatchBuilder {
            run_id: Arc::from(run_id),
            rows: 0,
            text_bytes: 0,
            in_seq_order: true,
            last_seq: None,
            pid: Int32Builder::new(),
            tid: Int64Builder::new(),
            thread_name: SharedNames::default(),
            seq: UInt64Builder::new(),
            ts: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            kind: SharedNames::default(),
            source: SharedNames::default(),
            call_id: UInt64Builder::new(),
            parent_id: UInt64Builder::new(),
            depth: Int32Builder::new(),
            function: SharedNames::default(),
            module: SharedNames::default(),
            file: SharedNames::default(),
            line: Int32Builder::new(),
            caller: SharedNames::default(),
            caller_line: Int32Builder::new(),
            args: StringBuilder::new(),
            value: StringBuilder::new(),
            exception: StringBuilder::new(),
            duration_ns: Int64Builder::new(),
            duration_max_ns: Int64Builder::new(),
            count: UInt32Builder::new(),
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
    pub(crate) fn push(&mut self, event: &Event) {
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
        self.args.append_option(event.args.as_deref());
        self.value.append_option(event.value.as_deref());
        self.exception.append_option(event.exception.as_deref());
        self.duration_ns.append_option(event.duration_ns);
        self.duration_max_ns.append_option(event.duration_max_ns);
        self.count.append_value(event.count);
    }

    /// The buffered rows as one batch sorted by `seq` (stable, so rows with equal
    /// `seq` keep their arrival order), leaving the builder empty.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch> {
        let rows = self.rows;
        let mut run_id = StringDictionaryBuilder::<Int32Type>::new();
        run_id.append_values(&*self.run_id, rows);
        let seq = self.seq.finish();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(run_id.finish()),
            Arc::new(self.pid.finish()),
            Arc::new(self.tid.finish()),
            Arc::new(self.thread_name.finish()),
            Arc::new(seq.clone()),
            Arc::new(self.ts.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.call_id.finish()),
            Arc::new(self.parent_id.finish()),
            Arc::new(self.depth.finish()),
            Arc::new(self.function.finish()),
            Arc::new(self.module.finish()),
            Arc::new(self.file.finish()),
            Arc::new(self.line.finish()),
            Arc::new(self.caller.finish()),
            Arc::new(self.caller_line.finish()),
            Arc::new(self.args.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.exception.finish()),
            Arc::new(self.duration_ns.finish()),
            Arc::new(self.duration_max_ns.finish()),
            Arc::new(self.count.finish()),
        ];
        let in_seq_order = self.in_seq_order;
        self.rows = 0;
        self.text_bytes = 0;
        self.in_seq_order = true;
        self.last_seq = None;

        let batch = RecordBatch::try_new(events_schema(), columns)?;
        if in_seq_order {
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
