//! Answers as the reader wants them: a table (or, for `--tree`, a drawn tree) on a
//! terminal, JSON for a pipe or an agent, and JSON lines or CSV on request.
//!
//! * `table`: durations (`*_ns` columns) in readable units, a sampled duration and
//!   its upper bound (`X_ns` with `X_max_ns`) shown as one range; the tip follows.
//! * `json`: one object `{question, argument, rows, row_count, limit, truncated,
//!   tip, notes, sql}`; `rows` is a list of objects, column name to value (numbers
//!   as numbers, times as RFC 3339 text).
//! * `jsonl`: one row object per line, nothing else.
//! * `csv`: a header line and one line per row (RFC 4180 quoting).

use std::io::{self, IsTerminal, Write};
use std::sync::Arc;

use query::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray};
use query::arrow::compute::cast;
use query::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, UInt64Type};
use query::arrow::util::display::{ArrayFormatter, FormatOptions};
use query::arrow::util::pretty::pretty_format_batches;
use query::Answer;
use serde_json::{json, Map, Value};

/// An output format (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for a person at a terminal.
    Table,
    /// One JSON object with the question, the rows, the tip and notes.
    Json,
    /// One JSON object per row, one per line.
    Jsonl,
    /// Comma-separated values with a header line.
    Csv,
}

impl Format {
    /// `table` when stdout is a terminal, `json` otherwise (a pipe, a file, an
    /// agent's tool call).
    pub fn for_stdout() -> Format {
        if io::stdout().is_terminal() {
            Format::Table
        } else {
            Format::Json
        }
    }
}

/// Writes `text` to stdout: a reader that stopped reading (`tracer dump | head`) ends
/// the output quietly, as it does for other Unix tools, instead of a panic of
/// `print!`.
pub fn print_stdout(text: &str) -> Result<(), crate::error::CliError> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(crate::error::CliError::new(
            format!("cannot write to stdout: {e}"),
        )),
        _ => Ok(()),
    }
}

/// Writes `answer` to `out` in `format`. Notes, the cut at a limit and (outside
/// `table` and `json`) the tip go to `err`, so `out` holds only the answer.
pub fn write_answer(
    answer: &Answer,
    format: Format,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<()> {
    for note in &answer.notes {
        writeln!(err, "note: {note}")?;
    }
    if answer.num_rows() == 0 {
        match (answer.question.as_str(), &answer.argument) {
            ("call", Some(name)) => writeln!(
                err,
                "no rows: no call of {name} was recorded (with these filters); \
                 `tracer query --top` lists the functions that were"
            )?,
            _ => writeln!(err, "no rows")?,
        }
    } else if answer.truncated {
        if let Some(limit) = answer.limit {
            let more = match answer.question.as_str() {
                "top" => "--top N",
                "slow" => "--slow N",
                _ => "--limit N",
            };
            writeln!(
                err,
                "note: showing the first {limit} rows; {more} shows more"
            )?;
        }
    }
    match format {
        Format::Json => {
            let object = answer_json(answer);
            serde_json::to_writer_pretty(&mut *out, &object)?;
            writeln!(out)?;
        }
        Format::Jsonl => {
            for row in rows_json(answer) {
                serde_json::to_writer(&mut *out, &row)?;
                writeln!(out)?;
            }
            write_tip(answer, err)?;
        }
        Format::Csv => {
            if answer.num_rows() > 0 {
                write_csv(answer, out)?;
            }
            write_tip(answer, err)?;
        }
        Format::Table => {
            if answer.num_rows() > 0 {
                if answer.question == "tree" {
                    write_tree(answer, out)?;
                } else {
                    write_table(answer, out)?;
                }
            }
            write_tip(answer, out)?;
        }
    }
    Ok(())
}

fn write_tip(answer: &Answer, out: &mut dyn Write) -> io::Result<()> {
    if let Some(tip) = &answer.tip {
        writeln!(out, "tip: {}", tip.text)?;
        for command in &tip.commands {
            writeln!(out, "  {command}")?;
        }
    }
    Ok(())
}

/// The JSON object of a whole answer.
pub fn answer_json(answer: &Answer) -> Value {
    json!({
        "question": answer.question,
        "argument": answer.argument,
        "rows": rows_json(answer),
        "row_count": answer.num_rows(),
        "limit": answer.limit,
        "truncated": answer.truncated,
        "tip": answer.tip.as_ref().map(|tip| json!({"text": tip.text, "commands": tip.commands})),
        "notes": answer.notes,
        "sql": answer.sql,
    })
}

/// Each row as an object of column name to JSON value.
pub fn rows_json(answer: &Answer) -> Vec<Value> {
    let mut rows = Vec::with_capacity(answer.num_rows());
    for batch in &answer.batches {
        let columns: Vec<Vec<Value>> = batch.columns().iter().map(column_json).collect();
        for row in 0..batch.num_rows() {
            let mut object = Map::new();
            for (field, values) in batch.schema().fields().iter().zip(&columns) {
                object.insert(field.name().clone(), values[row].clone());
            }
            rows.push(Value::Object(object));
        }
    }
    rows
}

/// The cells of one column as JSON values: integers and floats as numbers,
/// booleans as booleans, everything else as its display text.
fn column_json(column: &ArrayRef) -> Vec<Value> {
    let len = column.len();
    let valid = |i: usize| column.is_valid(i);
    let data_type = column.data_type();
    if data_type.is_signed_integer() {
        if let Ok(values) = cast(column, &DataType::Int64) {
            let values = values.as_primitive::<Int64Type>();
            return (0..len)
                .map(|i| {
                    if valid(i) {
                        json!(values.value(i))
                    } else {
                        Value::Null
                    }
                })
                .collect();
        }
    }
    if data_type.is_unsigned_integer() {
        if let Ok(values) = cast(column, &DataType::UInt64) {
            let values = values.as_primitive::<UInt64Type>();
            return (0..len)
                .map(|i| {
                    if valid(i) {
                        json!(values.value(i))
                    } else {
                        Value::Null
                    }
                })
                .collect();
        }
    }
    if data_type.is_floating() {
        if let Ok(values) = cast(column, &DataType::Float64) {
            let values = values.as_primitive::<Float64Type>();
            return (0..len)
                .map(|i| {
                    if valid(i) {
                        serde_json::Number::from_f64(values.value(i))
                            .map_or(Value::Null, Value::Number)
                    } else {
                        Value::Null
                    }
                })
                .collect();
        }
    }
    if let Some(values) = column.as_any().downcast_ref::<BooleanArray>() {
        return (0..len)
            .map(|i| {
                if valid(i) {
                    json!(values.value(i))
                } else {
                    Value::Null
                }
            })
            .collect();
    }
    display_texts(column)
        .into_iter()
        .map(|text| text.map_or(Value::Null, Value::String))
        .collect()
}

/// The display text of each cell (`None` for null). Times print as RFC 3339.
fn display_texts(column: &ArrayRef) -> Vec<Option<String>> {
    let options = FormatOptions::default();
    match ArrayFormatter::try_new(column.as_ref(), &options) {
        Ok(formatter) => (0..column.len())
            .map(|i| column.is_valid(i).then(|| formatter.value(i).to_string()))
            .collect(),
        Err(_) => vec![None; column.len()],
    }
}

fn write_csv(answer: &Answer, out: &mut dyn Write) -> io::Result<()> {
    let header: Vec<String> = answer
        .schema
        .fields()
        .iter()
        .map(|f| csv_cell(f.name()))
        .collect();
    writeln!(out, "{}", header.join(","))?;
    for batch in &answer.batches {
        let columns: Vec<Vec<Option<String>>> = batch.columns().iter().map(display_texts).collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = columns
                .iter()
                .map(|c| c[row].as_deref().map(csv_cell).unwrap_or_default())
                .collect();
            writeln!(out, "{}", cells.join(","))?;
        }
    }
    Ok(())
}

fn csv_cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// A duration in nanoseconds in the unit that reads best.
pub fn human_duration(ns: i64) -> String {
    let abs = ns.unsigned_abs() as f64;
    let sign = if ns < 0 { "-" } else { "" };
    if abs < 1e3 {
        format!("{ns} ns")
    } else if abs < 1e6 {
        format!("{sign}{:.1} µs", abs / 1e3)
    } else if abs < 1e9 {
        format!("{sign}{:.2} ms", abs / 1e6)
    } else {
        format!("{sign}{:.3} s", abs / 1e9)
    }
}

/// Durations of an `*_ns` column (and its `*_max_ns` bound) as readable text.
fn duration_texts(low: &ArrayRef, high: Option<&ArrayRef>) -> Option<Vec<Option<String>>> {
    let ints = |column: &ArrayRef| {
        cast(column, &DataType::Int64)
            .ok()
            .map(|c| c.as_primitive::<Int64Type>().clone())
    };
    let low = ints(low)?;
    let high = match high {
        Some(high) => Some(ints(high)?),
        None => None,
    };
    Some(
        (0..low.len())
            .map(|i| {
                if low.is_null(i) {
                    return None;
                }
                let text = human_duration(low.value(i));
                Some(match &high {
                    Some(high) if high.is_valid(i) => {
                        format!("{text} to {}", human_duration(high.value(i)))
                    }
                    _ => text,
                })
            })
            .collect(),
    )
}

/// A batch for the terminal: `X_ns` columns as readable durations named `X`, with
/// a `X_max_ns` bound folded into the same cell.
fn readable_batch(batch: &RecordBatch) -> RecordBatch {
    let schema = batch.schema();
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (index, field) in schema.fields().iter().enumerate() {
        let name = field.name();
        let column = batch.column(index);
        if let Some(base) = name.strip_suffix("_max_ns") {
            if schema.index_of(&format!("{base}_ns")).is_ok() {
                continue;
            }
        }
        if let Some(base) = name.strip_suffix("_ns") {
            let high = batch.column_by_name(&format!("{base}_max_ns"));
            if let Some(texts) = duration_texts(column, high) {
                fields.push(Field::new(base, DataType::Utf8, true));
                columns.push(Arc::new(StringArray::from(texts)));
                continue;
            }
        }
        fields.push(field.as_ref().clone());
        columns.push(column.clone());
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap_or_else(|_| batch.clone())
}

/// `text` with its control characters written as escapes (`\n`, `\r`, `\t`,
/// `\x1b`, ...), keeping line breaks when `keep_newlines`. Traces hold text the
/// traced program chose (exception messages, thread names): printed raw, an escape
/// sequence in it could clear the terminal or rewrite the lines above it.
pub fn escape_controls(text: &str, keep_newlines: bool) -> std::borrow::Cow<'_, str> {
    let escaped = |c: char| c.is_control() && !(keep_newlines && c == '\n');
    if !text.chars().any(escaped) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            _ if !escaped(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A batch whose text cells have their control characters escaped, for a terminal.
fn escaped_batch(batch: &RecordBatch) -> RecordBatch {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|column| {
            let is_text = matches!(column.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
                || matches!(column.data_type(), DataType::Dictionary(_, value) if matches!(**value, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View));
            if !is_text {
                return column.clone();
            }
            let texts: Vec<Option<String>> = display_texts(column)
                .into_iter()
                .map(|text| text.map(|t| escape_controls(&t, false).into_owned()))
                .collect();
            Arc::new(StringArray::from(texts)) as ArrayRef
        })
        .collect();
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .zip(&columns)
        .map(|(field, column)| Field::new(field.name(), column.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap_or_else(|_| batch.clone())
}

fn write_table(answer: &Answer, out: &mut dyn Write) -> io::Result<()> {
    let batches: Vec<RecordBatch> = answer
        .batches
        .iter()
        .map(|batch| escaped_batch(&readable_batch(batch)))
        .collect();
    let table = pretty_format_batches(&batches).map_err(io::Error::other)?;
    writeln!(out, "{table}")
}

/// One drawn line of `--tree`.
struct TreeLine {
    group: String,
    level: usize,
    label: String,
}

/// Draws `--tree` rows (ordered by run, thread and sequence) as one tree per
/// thread, with box-drawing branches, durations and outcomes.
fn write_tree(answer: &Answer, out: &mut dyn Write) -> io::Result<()> {
    let mut lines = Vec::new();
    // The level of each call drawn so far in the current group, by its `call_id`.
    let mut shown_levels: std::collections::HashMap<String, usize> = Default::default();
    for batch in &answer.batches {
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .map(display_texts)
                .unwrap_or_else(|| vec![None; batch.num_rows()])
        };
        let (run, tid, thread, function, kind, count, outcome) = (
            text("run_id"),
            text("tid"),
            text("thread_name"),
            text("function"),
            text("kind"),
            text("count"),
            text("outcome"),
        );
        let (call_id, parent_id) = (text("call_id"), text("parent_id"));
        let durations = match batch.column_by_name("duration_ns") {
            Some(low) => duration_texts(low, batch.column_by_name("duration_max_ns"))
                .unwrap_or_else(|| vec![None; batch.num_rows()]),
            None => vec![None; batch.num_rows()],
        };
        for row in 0..batch.num_rows() {
            let thread_label = match &thread[row] {
                Some(name) => format!("thread {} ({name})", tid[row].as_deref().unwrap_or("?")),
                None => format!("thread {}", tid[row].as_deref().unwrap_or("?")),
            };
            let mut label = function[row].clone().unwrap_or_default();
            match kind[row].as_deref() {
                Some("gap") => label.push_str(&format!(
                    " (untraced x{})",
                    count[row].as_deref().unwrap_or("1")
                )),
                Some("resume") => label.push_str(" (resumed)"),
                _ => {}
            }
            if let Some(duration) = &durations[row] {
                label.push_str(&format!("  {duration}"));
            }
            match outcome[row].as_deref() {
                Some("exception") => label.push_str("  raised"),
                Some("unfinished") => label.push_str("  (unfinished)"),
                Some("yield") => label.push_str("  (yielded)"),
                None => label.push_str("  (no end recorded)"),
                _ => {}
            }
            let label = escape_controls(&label, false).into_owned();
            let thread_label = escape_controls(&thread_label, false);
            let group = format!("run {}, {thread_label}", run[row].as_deref().unwrap_or("?"));
            if lines.last().is_none_or(|l: &TreeLine| l.group != group) {
                shown_levels.clear();
            }
            // Nested under its parent when the parent is shown; a row whose parent a
            // filter left out starts at the margin (nesting by depth drew it under
            // whichever shown row came before, which need not be its caller).
            let level = parent_id[row]
                .as_ref()
                .and_then(|parent| shown_levels.get(parent))
                .map_or(0, |parent_level| parent_level + 1);
            if let Some(id) = &call_id[row] {
                shown_levels.insert(id.clone(), level);
            }
            lines.push(TreeLine {
                group,
                level,
                label,
            });
        }
    }
    let mut start = 0;
    while start < lines.len() {
        let end = lines[start..]
            .iter()
            .position(|line| line.group != lines[start].group)
            .map_or(lines.len(), |offset| start + offset);
        writeln!(out, "{}", lines[start].group)?;
        for drawn in draw_tree(&lines[start..end]) {
            writeln!(out, "{drawn}")?;
        }
        start = end;
    }
    Ok(())
}

/// Prefixes each line with its branches. Levels are relative to the shallowest
/// line, so a filtered tree still starts at the left margin.
fn draw_tree(lines: &[TreeLine]) -> Vec<String> {
    let base = lines.iter().map(|l| l.level).min().unwrap_or(0);
    let levels: Vec<usize> = lines.iter().map(|l| l.level - base).collect();
    let mut has_next_sibling = vec![false; lines.len()];
    let mut seen: Vec<bool> = Vec::new();
    for (i, &level) in levels.iter().enumerate().rev() {
        has_next_sibling[i] = seen.get(level).copied().unwrap_or(false);
        seen.resize(level + 1, false);
        seen[level] = true;
    }
    let mut open: Vec<bool> = Vec::new();
    let mut drawn = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let level = levels[i];
        open.resize(level + 1, false);
        open[level] = has_next_sibling[i];
        let mut prefix = String::new();
        for &continues in open.iter().take(level).skip(1) {
            prefix.push_str(if continues { "│  " } else { "   " });
        }
        if level > 0 {
            prefix.push_str(if has_next_sibling[i] {
                "├─ "
            } else {
                "└─ "
            });
        }
        drawn.push(format!("{prefix}{}", line.label));
    }
    drawn
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(level: usize, label: &str) -> TreeLine {
        TreeLine {
            group: String::new(),
            level,
            label: label.to_string(),
        }
    }

    #[test]
    fn trees_draw_branches_for_siblings_and_last_children() {
        let lines = [
            line(0, "<module>"),
            line(1, "main"),
            line(2, "total"),
            line(3, "multiply"),
            line(3, "multiply"),
            line(2, "validate"),
            line(1, "exit"),
        ];
        assert_eq!(
            draw_tree(&lines),
            vec![
                "<module>",
                "├─ main",
                "│  ├─ total",
                "│  │  ├─ multiply",
                "│  │  └─ multiply",
                "│  └─ validate",
                "└─ exit",
            ]
        );
    }

    #[test]
    fn durations_read_in_their_unit() {
        assert_eq!(human_duration(850), "850 ns");
        assert_eq!(human_duration(12_340), "12.3 µs");
        assert_eq!(human_duration(4_560_000), "4.56 ms");
        assert_eq!(human_duration(1_234_000_000), "1.234 s");
    }

    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        let hostile = "fake\x1b[2J: all \r\tgood\nnext\u{7f}\u{9b}";
        assert_eq!(
            escape_controls(hostile, false),
            "fake\\x1b[2J: all \\r\\tgood\\nnext\\x7f\\x9b"
        );
        assert_eq!(
            escape_controls(hostile, true),
            "fake\\x1b[2J: all \\r\\tgood\nnext\\x7f\\x9b"
        );
        assert!(matches!(
            escape_controls("plain ünïcode", false),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn csv_cells_are_quoted_when_needed() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(
            csv_cell("{\"a\": \"1\", \"b\": \"2\"}"),
            "\"{\"\"a\"\": \"\"1\"\", \"\"b\"\": \"\"2\"\"}\""
        );
    }
}
