//! The Chrome trace-event JSON (the "JSON Object Format" of the Trace Event Format):
//! what Perfetto UI, `chrome://tracing` and speedscope open as per-thread timelines.
//!
//! * One complete event (`"ph": "X"`) per call, on its process (`pid`) and OS thread
//!   (`tid`), with `ts` and `dur` in microseconds since the trace's origin (fractions
//!   keep the nanoseconds). Calls nest per thread: a callee lies inside its caller.
//! * `args` holds the call's arguments (name to repr), `return` (the return value's
//!   repr), `yielded` (a generator's value) or `exception` and its `message`,
//!   `outcome`, `duration_ns` and, for sampled calls, `duration_max_ns` (the upper
//!   bound; the slice is the lower bound), the source file and line, and the calls
//!   into untraced code it made.
//! * Metadata events (`"ph": "M"`) name each process (`process_name`: the run's
//!   command) and each thread whose Python name is known (`thread_name`); viewers
//!   add the pid and tid themselves.

use std::collections::HashMap;

use query::{Span, ThreadTimeline, Timeline};
use serde_json::{json, Map, Value};

/// Microseconds since `origin_ns`, keeping nanoseconds as the fraction.
fn micros(ns: i64, origin_ns: i64) -> f64 {
    (ns - origin_ns) as f64 / 1000.0
}

/// The trace-event JSON object of a timeline. `commands` maps a run id to the
/// command line shown as its process name; `about` goes to `otherData`.
pub fn chrome_trace(
    timeline: &Timeline,
    commands: &HashMap<String, String>,
    about: Map<String, Value>,
) -> Value {
    let mut events = Vec::new();
    let mut named_processes = Vec::new();
    for thread in &timeline.threads {
        if !named_processes.contains(&thread.pid) {
            named_processes.push(thread.pid);
            let command = commands
                .get(&thread.run_id)
                .map(String::as_str)
                .unwrap_or("python");
            events.push(json!({
                "name": "process_name", "ph": "M", "pid": thread.pid, "tid": thread.tid,
                "args": {"name": command},
            }));
        }
        if let Some(name) = &thread.thread_name {
            events.push(json!({
                "name": "thread_name", "ph": "M", "pid": thread.pid, "tid": thread.tid,
                "args": {"name": name},
            }));
        }
    }
    for thread in &timeline.threads {
        for span in &thread.spans {
            events.push(complete_event(thread, span, timeline.origin_ns));
        }
    }
    let mut other = about;
    other.insert(
        "timing".into(),
        json!(
            "sampled calls span their lower bound (first to last sample that saw them); \
               args.duration_max_ns is the upper bound"
        ),
    );
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": other,
    })
}

fn complete_event(thread: &ThreadTimeline, span: &Span, origin_ns: i64) -> Value {
    let mut args = Map::new();
    if let Some(text) = &span.args {
        let parsed = serde_json::from_str::<Value>(text).unwrap_or_else(|_| json!(text));
        args.insert("args".into(), parsed);
    }
    match span.outcome {
        query::Outcome::Raised => {
            args.insert("exception".into(), json!(span.exception));
            args.insert("message".into(), json!(span.value));
        }
        query::Outcome::Yielded => {
            args.insert("yielded".into(), json!(span.value));
        }
        _ => {
            if let Some(value) = &span.value {
                args.insert("return".into(), json!(value));
            }
        }
    }
    args.insert("outcome".into(), json!(span.outcome.name()));
    args.insert("source".into(), json!(span.source));
    if let Some(ns) = span.duration_ns {
        args.insert("duration_ns".into(), json!(ns));
    }
    if let Some(ns) = span.duration_max_ns {
        args.insert("duration_max_ns".into(), json!(ns));
    }
    if let Some(file) = &span.file {
        args.insert("file".into(), json!(file));
    }
    if let Some(line) = span.line {
        args.insert("line".into(), json!(line));
    }
    if !span.untraced.is_empty() {
        let untraced: Vec<Value> = span
            .untraced
            .iter()
            .map(|u| {
                json!({
                    "function": format!("{}.{}", u.module, u.function),
                    "calls": u.calls,
                    "duration_ns": u.duration_ns,
                    "duration_max_ns": u.duration_max_ns,
                })
            })
            .collect();
        args.insert("untraced_calls".into(), json!(untraced));
    }
    args.insert("call_id".into(), json!(span.call_id));
    json!({
        "name": span.qualified_name(),
        "cat": span.source,
        "ph": "X",
        "ts": micros(span.start_ns, origin_ns),
        "dur": (span.end_ns - span.start_ns) as f64 / 1000.0,
        "pid": thread.pid,
        "tid": thread.tid,
        "args": args,
    })
}
