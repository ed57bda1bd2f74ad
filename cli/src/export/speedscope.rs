//! The speedscope JSON (its file format, `https://www.speedscope.app/file-format-schema.json`):
//! one evented profile per thread, frames shared, times in nanoseconds since the
//! trace's origin.
//!
//! Each call opens (`"type": "O"`) its `module.function` frame at its start and closes
//! it (`"type": "C"`) at its end; the timeline's nesting makes the events of a
//! profile balanced and ordered by time, as the format requires. Sampled calls span
//! their lower bound. Calls into untraced code are aggregates, not intervals, and are
//! left out (the flame graph and the Chrome trace's args show them).

use std::collections::HashMap;

use query::Timeline;
use serde_json::{json, Value};

/// The schema URL speedscope recognises its own files by.
const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

/// The speedscope file of a timeline, named `name`.
pub fn speedscope(timeline: &Timeline, name: &str) -> Value {
    let mut frames: Vec<Value> = Vec::new();
    let mut frame_of: HashMap<(String, Option<String>, Option<i32>), usize> = HashMap::new();
    let origin = timeline.origin_ns;
    let end = timeline.end_ns() - origin;
    let mut profiles = Vec::new();
    for thread in &timeline.threads {
        let mut events = Vec::new();
        // (frame index, end) of the open spans, outermost first.
        let mut open: Vec<(usize, i64)> = Vec::new();
        let close_to = |open: &mut Vec<(usize, i64)>, level: usize, events: &mut Vec<Value>| {
            while open.len() > level {
                if let Some((frame, at)) = open.pop() {
                    events.push(json!({"type": "C", "frame": frame, "at": at}));
                }
            }
        };
        for span in &thread.spans {
            close_to(&mut open, span.level, &mut events);
            let key = (span.qualified_name(), span.file.clone(), span.line);
            let frame = *frame_of.entry(key).or_insert_with(|| {
                let mut frame = json!({"name": span.qualified_name()});
                if let Some(file) = &span.file {
                    frame["file"] = json!(file);
                }
                if let Some(line) = span.line {
                    frame["line"] = json!(line);
                }
                frames.push(frame);
                frames.len() - 1
            });
            events.push(json!({"type": "O", "frame": frame, "at": span.start_ns - origin}));
            open.push((frame, span.end_ns - origin));
        }
        close_to(&mut open, 0, &mut events);
        profiles.push(json!({
            "type": "evented",
            "name": format!("{} pid {}", thread.label(), thread.pid),
            "unit": "nanoseconds",
            "startValue": 0,
            "endValue": end,
            "events": events,
        }));
    }
    json!({
        "$schema": SCHEMA,
        "shared": {"frames": frames},
        "profiles": profiles,
        "name": name,
        "activeProfileIndex": 0,
        "exporter": format!("tracer {}", env!("CARGO_PKG_VERSION")),
    })
}
