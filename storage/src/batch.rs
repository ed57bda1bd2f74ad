//! Turning [`attach::Event`]s into Arrow record batches of the events table.
//!
//! [`EventBatchBuilder::push`] is on the recording hot path (once per event): it
//! appends to column builders without allocating except for the owned strings
//! (`args`, `value`, `exception`); repeated names go through [`SharedNames`], which
//! finds a name by its address instead of hashing its text.

use std::sync::Arc;

use ahash::AHashMap;
use arrow::array::builder::NullBufferBuilder;
use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, DictionaryArray, PrimitiveArray, RecordBatch, StringArray,
    StringDictionaryBuilder, UInt32Array, UInt64Array,
};
use arrow::buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::compute::take_record_batch;
use arrow::datatypes::{Int32Type, Int64Type, TimestampNanosecondType, UInt32Type, UInt64Type};

use attach::{Event, EventKind, Source};

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
    columns: Columns,
}

/// The builders of every column but `run_id` (one text, built at the end).
struct Columns {
    pid: Values<Int32Type>,
    tid: Values<Int64Type>,
    thread_name: SharedNames,
    seq: Values<UInt64Type>,
    ts: Values<TimestampNanosecondType>,
    kind: FixedNames,
    source: FixedNames,
    call_id: Values<UInt64Type>,
    parent_id: OptionalValues<UInt64Type>,
    depth: Values<Int32Type>,
    function: SharedNames,
    module: SharedNames,
    file: SharedNames,
    line: Values<Int32Type>,
    caller: SharedNames,
    caller_line: OptionalValues<Int32Type>,
    args: Texts,
    value: Texts,
    exception: Texts,
    duration_ns: OptionalValues<Int64Type>,
    duration_max_ns: OptionalValues<Int64Type>,
    count: Values<UInt32Type>,
}

/// Bytes of text per free-text column of a batch.
#[derive(Clone, Copy, Default)]
struct TextBytes {
    args: usize,
    value: usize,
    exception: usize,
}

impl Columns {
    /// Builders with room for `rows` rows and `text` bytes of free text. A builder
    /// that grows as it goes copies its buffer at each doubling into fresh memory,
    /// which on call-heavy exact traces (a segment of 128k rows a few times a
    /// second) was a noticeable share of the receiving thread's time in copies and
    /// page faults.
    fn with_capacity(rows: usize, text: TextBytes) -> Columns {
        Columns {
            pid: Values::with_capacity(rows),
            tid: Values::with_capacity(rows),
            thread_name: SharedNames::with_capacity(rows),
            seq: Values::with_capacity(rows),
            ts: Values::with_capacity(rows),
            kind: FixedNames::with_capacity(rows, &KIND_NAMES),
            source: FixedNames::with_capacity(rows, &SOURCE_NAMES),
            call_id: Values::with_capacity(rows),
            parent_id: OptionalValues::with_capacity(rows),
            depth: Values::with_capacity(rows),
            function: SharedNames::with_capacity(rows),
            module: SharedNames::with_capacity(rows),
            file: SharedNames::with_capacity(rows),
            line: Values::with_capacity(rows),
            caller: SharedNames::with_capacity(rows),
            caller_line: OptionalValues::with_capacity(rows),
            args: Texts::with_capacity(rows, text.args),
            value: Texts::with_capacity(rows, text.value),
            exception: Texts::with_capacity(rows, text.exception),
            duration_ns: OptionalValues::with_capacity(rows),
            duration_max_ns: OptionalValues::with_capacity(rows),
            count: Values::with_capacity(rows),
        }
    }
}

/// A column of integers without nulls: a `Vec` pushed in line (an Arrow builder's
/// `append_value` is a call with its own checks per value, 29 million of them on an
/// exact trace of fib(27)), handed to Arrow without a copy.
struct Values<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
}

impl<T: ArrowPrimitiveType> Values<T> {
    fn with_capacity(rows: usize) -> Values<T> {
        Values {
            values: Vec::with_capacity(rows),
        }
    }

    #[inline]
    fn push(&mut self, value: T::Native) {
        self.values.push(value);
    }

    fn finish(self) -> PrimitiveArray<T> {
        PrimitiveArray::new(ScalarBuffer::from(self.values), None)
    }
}

/// A column of integers that may be null (a null's slot holds zero). Validity is a
/// byte a row, packed into a bitmap once when the column is finished: Arrow's
/// `NullBufferBuilder` sets a bit per row through a call with checks of its own,
/// four columns' worth on every row.
struct OptionalValues<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    valid: Vec<bool>,
}

impl<T: ArrowPrimitiveType> OptionalValues<T> {
    fn with_capacity(rows: usize) -> OptionalValues<T> {
        OptionalValues {
            values: Vec::with_capacity(rows),
            valid: Vec::with_capacity(rows),
        }
    }

    #[inline]
    fn push(&mut self, value: Option<T::Native>) {
        self.valid.push(value.is_some());
        self.values.push(value.unwrap_or_default());
    }

    fn finish(self) -> PrimitiveArray<T> {
        PrimitiveArray::new(ScalarBuffer::from(self.values), nulls_of(&self.valid))
    }
}

/// The validity of a column from a flag a row; `None` when no row is null.
fn nulls_of(valid: &[bool]) -> Option<NullBuffer> {
    let nulls = NullBuffer::new(BooleanBuffer::from(valid));
    (nulls.null_count() > 0).then_some(nulls)
}

/// A text column that may be null (`args`, `value`, `exception`): most rows have
/// no text, and a null is an offset and a flag pushed, where Arrow's `StringBuilder`
/// made a call per row and column to set a validity bit.
struct Texts {
    /// `offsets[i]..offsets[i + 1]` are row `i`'s bytes; starts with 0.
    offsets: Vec<i32>,
    bytes: Vec<u8>,
    valid: Vec<bool>,
}

impl Texts {
    fn with_capacity(rows: usize, bytes: usize) -> Texts {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Texts {
            offsets,
            bytes: Vec::with_capacity(bytes),
            valid: Vec::with_capacity(rows),
        }
    }

    #[inline]
    fn push(&mut self, text: Option<&str>) {
        if let Some(text) = text {
            self.bytes.extend_from_slice(text.as_bytes());
        }
        // A batch's text is bounded far below 2 GiB by the writer's text limit per
        // segment (`WriterOptions::max_segment_text_bytes`).
        let end = i32::try_from(self.bytes.len()).expect("under 2 GiB of text in a batch");
        self.offsets.push(end);
        self.valid.push(text.is_some());
    }

    fn finish(self) -> StringArray {
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        let nulls = nulls_of(&self.valid);
        // SAFETY: the offsets start at 0 and never fall (each row's end is the
        // length after its text was appended), the last is the length of `bytes`,
        // and every text appended was a `&str`, so each row's bytes are UTF-8.
        unsafe { StringArray::new_unchecked(offsets, Buffer::from_vec(self.bytes), nulls) }
    }
}

/// A dictionary column of a few fixed names (`kind`, `source`): a row's key is the
/// position of its name in `names`, pushed as it is, where [`SharedNames`] looked
/// the name up on every row.
struct FixedNames {
    keys: Vec<i32>,
    names: &'static [&'static str],
}

impl FixedNames {
    fn with_capacity(rows: usize, names: &'static [&'static str]) -> FixedNames {
        FixedNames {
            keys: Vec::with_capacity(rows),
            names,
        }
    }

    #[inline]
    fn push(&mut self, key: i32) {
        self.keys.push(key);
    }

    fn finish(self) -> DictionaryArray<Int32Type> {
        let keys = PrimitiveArray::<Int32Type>::new(ScalarBuffer::from(self.keys), None);
        let values = StringArray::from_iter_values(self.names.iter());
        // SAFETY: every key is a position in `names` (`kind_key`, `source_key`).
        unsafe { DictionaryArray::new_unchecked(keys, Arc::new(values)) }
    }
}

/// The `kind` column's names, in the order of [`kind_key`].
const KIND_NAMES: [&str; 7] = [
    "call",
    "return",
    "exception",
    "unfinished",
    "gap",
    "yield",
    "resume",
];

/// The position of a kind's name in [`KIND_NAMES`].
fn kind_key(kind: EventKind) -> i32 {
    match kind {
        EventKind::Call => 0,
        EventKind::Return => 1,
        EventKind::Exception => 2,
        EventKind::Unfinished => 3,
        EventKind::Gap => 4,
        EventKind::Yield => 5,
        EventKind::Resume => 6,
    }
}

/// The `source` column's names, in the order of [`source_key`].
const SOURCE_NAMES: [&str; 2] = ["sampled", "exact"];

fn source_key(source: Source) -> i32 {
    match source {
        Source::Sampled => 0,
        Source::Exact => 1,
    }
}

/// Room for rows in a new builder: the last batch's rows, so that a steady stream
/// fills its builders without growing them, within bounds that keep an idle run's
/// builders small and a burst's first allocation sane.
fn next_capacity(last_rows: usize) -> usize {
    last_rows.clamp(1024, 256 * 1024)
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
            columns: Columns::with_capacity(next_capacity(0), TextBytes::default()),
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

        let c = &mut self.columns;
        c.pid.push(event.pid);
        c.tid.push(event.tid);
        c.thread_name.append_option(event.thread_name.as_ref());
        c.seq.push(event.seq);
        c.ts.push(event.ts_ns);
        c.kind.push(kind_key(event.kind));
        c.source.push(source_key(event.source));
        c.call_id.push(event.call_id);
        c.parent_id.push(event.parent_id);
        c.depth.push(event.depth);
        c.function.append(&event.function);
        c.module.append(&event.module);
        c.file.append(&event.file);
        c.line.push(event.line);
        c.caller.append_option(event.caller.as_ref());
        c.caller_line.push(event.caller_line);
        c.args.push(event.args.as_deref());
        c.value.push(event.value.as_deref());
        c.exception.push(event.exception.as_deref());
        c.duration_ns.push(event.duration_ns);
        c.duration_max_ns.push(event.duration_max_ns);
        c.count.push(event.count);
    }

    /// The buffered rows as one batch sorted by `seq` (stable, so rows with equal
    /// `seq` keep their arrival order), leaving the builder empty.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch> {
        let rows = self.rows;
        let mut run_id = StringDictionaryBuilder::<Int32Type>::new();
        run_id.append_values(&*self.run_id, rows);
        // The next batch gets the room this one's text took, which the writer's
        // text limit per segment (`WriterOptions::max_segment_text_bytes`) bounds.
        let text = TextBytes {
            args: self.columns.args.bytes.len(),
            value: self.columns.value.bytes.len(),
            exception: self.columns.exception.bytes.len(),
        };
        let mut c = std::mem::replace(
            &mut self.columns,
            Columns::with_capacity(next_capacity(rows), text),
        );
        let seq = c.seq.finish();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(run_id.finish()),
            Arc::new(c.pid.finish()),
            Arc::new(c.tid.finish()),
            Arc::new(c.thread_name.finish()),
            Arc::new(seq.clone()),
            Arc::new(c.ts.finish().with_timezone("UTC")),
            Arc::new(c.kind.finish()),
            Arc::new(c.source.finish()),
            Arc::new(c.call_id.finish()),
            Arc::new(c.parent_id.finish()),
            Arc::new(c.depth.finish()),
            Arc::new(c.function.finish()),
            Arc::new(c.module.finish()),
            Arc::new(c.file.finish()),
            Arc::new(c.line.finish()),
            Arc::new(c.caller.finish()),
            Arc::new(c.caller_line.finish()),
            Arc::new(c.args.finish()),
            Arc::new(c.value.finish()),
            Arc::new(c.exception.finish()),
            Arc::new(c.duration_ns.finish()),
            Arc::new(c.duration_max_ns.finish()),
            Arc::new(c.count.finish()),
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
struct SharedNames {
    /// The keys of the rows before the current run.
    keys: Vec<i32>,
    nulls: NullBufferBuilder,
    /// The last name appended, by address, and its key: consecutive rows often
    /// name the same function (a call and its return, recursion, a loop), and
    /// this skips their hash lookup.
    last: Option<((usize, usize), i32)>,
    /// Rows at the end that name `last`, not yet in `keys`: most columns name the
    /// same text row after row (`source`, `module`, `file`, a thread's name, a
    /// recursive function), and a run is written out at once when it ends, instead
    /// of a key and a validity bit pushed per row.
    run: usize,
    /// The name before the last, when it was another: calls and returns alternate
    /// in `kind`, a function and its caller in `function`.
    before_last: Option<((usize, usize), i32)>,
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
            keys: Vec::with_capacity(rows),
            nulls: NullBufferBuilder::new(rows),
            last: None,
            run: 0,
            before_last: None,
            values: Vec::new(),
            by_address: AHashMap::new(),
            by_text: AHashMap::new(),
            held: Vec::new(),
        }
    }

    /// Appends `name`: most rows name what the row before named, which only
    /// lengthens the current run.
    #[inline]
    fn append(&mut self, name: &Arc<str>) {
        let address = (Arc::as_ptr(name).cast::<u8>() as usize, name.len());
        match self.last {
            Some((last, _)) if last == address => self.run += 1,
            _ => self.append_other(name, address),
        }
    }

    /// Appends `name`, at `address`, after a row that named another.
    fn append_other(&mut self, name: &Arc<str>, address: (usize, usize)) {
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

    #[inline]
    fn append_option(&mut self, name: Option<&Arc<str>>) {
        match name {
            Some(name) => self.append(name),
            None => {
                self.end_run();
                self.keys.push(0);
                self.nulls.append_null();
            }
        }
    }

    /// The key of a name seen before at `address` (the last two first).
    fn key_by_address(&self, address: (usize, usize)) -> Option<i32> {
        match (self.last, self.before_last) {
            (Some((last, key)), _) if last == address => Some(key),
            (_, Some((before, key))) if before == address => Some(key),
            _ => self.by_address.get(&address).copied(),
        }
    }

    #[inline]
    fn push_key(&mut self, address: (usize, usize), key: i32) {
        match self.last {
            Some((last, _)) if last == address => {
                self.run += 1;
                return;
            }
            Some(_) => {
                self.end_run();
                self.before_last = self.last;
            }
            None => {}
        }
        self.last = Some((address, key));
        self.run = 1;
    }

    /// Writes out the rows of the current run.
    fn end_run(&mut self) {
        if self.run > 0 {
            let key = self.last.map_or(0, |(_, key)| key);
            self.keys.extend(std::iter::repeat_n(key, self.run));
            self.nulls.append_n_non_nulls(self.run);
            self.run = 0;
        }
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
        self.end_run();
        let keys = PrimitiveArray::<Int32Type>::new(
            ScalarBuffer::from(std::mem::take(&mut self.keys)),
            self.nulls.finish(),
        );
        let values = StringArray::from_iter_values(self.values.iter().map(|name| &**name));
        self.values.clear();
        self.last = None;
        self.before_last = None;
        self.by_address.clear();
        self.by_text.clear();
        self.held.clear();
        if values.is_empty() {
            return DictionaryArray::new(keys, Arc::new(values));
        }
        // SAFETY: every key is an index into `values` (handed out by `key_of_text`
        // as the position of its text), and a null slot holds 0, which `values`,
        // not empty, has. Checking it again costs a pass over every row's key.
        unsafe { DictionaryArray::new_unchecked(keys, Arc::new(values)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow::array::AsArray;

    #[test]
    fn fixed_names_are_the_events_own() {
        use EventKind::*;
        for kind in [Call, Return, Exception, Unfinished, Gap, Yield, Resume] {
            assert_eq!(KIND_NAMES[kind_key(kind) as usize], kind.as_str());
        }
        for source in [Source::Sampled, Source::Exact] {
            assert_eq!(SOURCE_NAMES[source_key(source) as usize], source.as_str());
        }
    }

    #[test]
    fn names_in_runs_between_nulls_and_other_names_come_back_in_order() {
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        // Another `Arc` of the same text: the same dictionary entry.
        let a_again: Arc<str> = Arc::from("a");
        let kind: Arc<str> = Arc::from("kind");
        let rows = [
            Some(&a),
            Some(&a),
            None,
            Some(&a),
            Some(&b),
            Some(&a_again),
            Some(&a),
            None,
            None,
            Some(&b),
            Some(&b),
        ];
        let mut names = SharedNames::with_capacity(4);
        for _ in 0..2 {
            for row in rows {
                names.append_option(row);
            }
            names.append(&kind);
            let column = names.finish();
            let texts = column.values().as_string::<i32>();
            let read: Vec<Option<&str>> = column
                .keys()
                .iter()
                .map(|key| key.map(|key| texts.value(key as usize)))
                .collect();
            let mut expected: Vec<Option<&str>> = rows.iter().map(|r| r.map(|n| &**n)).collect();
            expected.push(Some("kind"));
            assert_eq!(read, expected);
            assert_eq!(texts.len(), 3, "one entry per text");
        }
    }
}
