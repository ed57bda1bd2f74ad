//! The flame graph: an SVG drawn by inferno from folded stacks weighted by self time.
//!
//! Each call adds its self time (its span, less the spans of the calls under it and
//! the lower bound of its calls into untraced code) to its stack of `module.function`
//! frames, outermost first. Calls into untraced code are frames of their own,
//! `module.function (untraced)`, weighted by their summed lower bound. Threads are
//! merged, as in py-spy's flame graphs. Sampled calls weigh their lower bound, so a
//! call seen by one sample only weighs nothing.

use std::collections::BTreeMap;

use inferno::flamegraph::{self, color::BasicPalette, Options, Palette};
use query::{Span, Timeline};

use crate::error::CliError;

/// The folded stacks of a timeline (`frame;frame;frame weight`), one line per
/// distinct stack with a positive weight, in stack order.
pub fn folded_stacks(timeline: &Timeline) -> Vec<String> {
    let mut weights: BTreeMap<String, u64> = BTreeMap::new();
    let mut add = |stack: String, ns: i64| {
        if ns > 0 {
            *weights.entry(stack).or_insert(0) += ns as u64;
        }
    };
    for thread in &timeline.threads {
        for untraced in &thread.untraced {
            add(
                frame(&format!(
                    "{}.{} (untraced)",
                    untraced.module, untraced.function
                )),
                untraced.duration_ns,
            );
        }
        // The frames of the spans enclosing the current one, outermost first.
        let mut stack: Vec<String> = Vec::new();
        for (index, span) in thread.spans.iter().enumerate() {
            stack.truncate(span.level);
            stack.push(frame(&span.qualified_name()));
            let path = stack.join(";");
            for untraced in &span.untraced {
                add(
                    format!(
                        "{path};{}",
                        frame(&format!(
                            "{}.{} (untraced)",
                            untraced.module, untraced.function
                        ))
                    ),
                    untraced.duration_ns,
                );
            }
            add(path, self_time(&thread.spans, index));
        }
    }
    weights
        .into_iter()
        .map(|(stack, ns)| format!("{stack} {ns}"))
        .collect()
}

/// A frame name that cannot break the folded format (`;` separates frames).
fn frame(name: &str) -> String {
    name.replace(';', ":")
}

/// The time of `spans[index]` not spent in the spans directly under it or in its
/// calls into untraced code.
fn self_time(spans: &[Span], index: usize) -> i64 {
    let span = &spans[index];
    let mut inner: i64 = span.untraced.iter().map(|u| u.duration_ns).sum();
    for child in spans[index + 1..]
        .iter()
        .take_while(|s| s.level > span.level)
        .filter(|s| s.level == span.level + 1)
    {
        inner += child.end_ns - child.start_ns;
    }
    (span.end_ns - span.start_ns - inner).max(0)
}

/// The SVG of the timeline's flame graph, titled `title`.
pub fn render_svg(timeline: &Timeline, title: &str) -> Result<Vec<u8>, CliError> {
    let lines = folded_stacks(timeline);
    if lines.is_empty() {
        return Err(CliError::new(
            "nothing to draw: no call in the selection has a measured duration \
             (a sampled call seen by one sample only lasts 0 ns at its lower bound)",
        )
        .hint("record at a higher --rate, or widen the filters (--module, --thread, --since, --until)"));
    }
    let mut options = Options::default();
    options.title = title.to_string();
    options.subtitle = Some(
        "self time per stack of module.function; sampled calls at their lower bound".to_string(),
    );
    options.count_name = "ns".to_string();
    options.name_type = "Call:".to_string();
    options.colors = Palette::Basic(BasicPalette::Hot);
    options.hash = true;
    let mut svg = Vec::new();
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg)
        .map_err(|e| CliError::new(format!("cannot draw the flame graph: {e}")))?;
    Ok(svg)
}
