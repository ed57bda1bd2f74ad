//! Turning [`attach::Event`]s into Arrow record batches of the events table.
//!
//! [`EventBatchBuilder::push`] is on the recording hot path (once per event): it
//! appends to column builders without allocating except for the owned strings
//! (`args`, `value`, `exception`); repeated names go through dictionary builders.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder, StringDictionaryBuilder,
    TimestampNanosecondBuilder, UInt32Array, UInt32Builder, UInt64Array, UInt64Builder,
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
    thread_name: StringDictionaryBuilder<Int32Type>,
    seq: UInt64Builder,
    ts: TimestampNanosecondBuilder,
    kind: StringDictionaryBuilder<Int32Type>,
    source: StringDictionaryBuilder<Int32Type>,
    call_id: UInt64Builder,
    parent_id: UInt64Builder,
    depth: Int32Builder,
    function: StringDictionaryBuilder<Int32Type>,
    module: StringDictionaryBuilder<Int32Type>,
    file: StringDictionaryBuilder<Int32Type>,
    line: Int32Builder,
    caller: StringDictionaryBuilder<Int32Type>,
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
            thread_name: StringDictionaryBuilder::new(),
            seq: UInt64Builder::new(),
            ts: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            kind: StringDictionaryBuilder::new(),
            source: StringDictionaryBuilder::new(),
            call_id: UInt64Builder::new(),
            parent_id: UInt64Builder::new(),
            depth: Int32Builder::new(),
            function: StringDictionaryBuilder::new(),
            module: StringDictionaryBuilder::new(),
            file: StringDictionaryBuilder::new(),
            line: Int32Builder::new(),
            caller: StringDictionaryBuilder::new(),
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
        self.thread_name.append_option(event.thread_name.as_deref());
        self.seq.append_value(event.seq);
        self.ts.append_value(event.ts_ns);
        self.kind.append_value(event.kind.as_str());
        self.source.append_value(event.source.as_str());
        self.call_id.append_value(event.call_id);
        self.parent_id.append_option(event.parent_id);
        self.depth.append_value(event.depth);
        self.function.append_value(&*event.function);
        self.module.append_value(&*event.module);
        self.file.append_value(&*event.file);
        self.line.append_value(event.line);
        self.caller.append_option(event.caller.as_deref());
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
