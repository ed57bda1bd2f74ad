//! The flame graph: an SVG drawn by inferno from folded stacks weighted by self time.
//!
//! Each call adds its self time (its span, less the spans of the calls under it and
//! the lower bound of its calls into untraced code) to its stack of `module.function`
//! frames, outermost first. Calls into untraced code are frames of their own,
//! `module.function (untraced)`, weighted by their summed lower bound, or by the
//! share of it that the span's time left by its traced calls holds (an untraced call
//! that ran traced code holds that code's time as well). Threads are
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
            let (children_ns, untraced_share) = inner_time(&thread.spans, index);
            for untraced in &span.untraced {
                add(
                    format!(
                        "{path};{}",
                        frame(&format!(
                            "{}.{} (untraced)",
                            untraced.module, untraced.function
                        ))
                    ),
                    (untraced.duration_ns as f64 * untraced_share) as i64,
                );
            }
            let untraced_ns: i64 = span
                .untraced
                .iter()
                .map(|u| (u.duration_ns as f64 * untraced_share) as i64)
                .sum();
            add(
                path,
                (span.end_ns - span.start_ns - children_ns - untraced_ns).max(0),
            );
        }
    }
    weights
        .into_iter()
        .map(|(stack, ns)| format!("{stack} {ns}"))
        .collect()
}

/// A frame name that cannot break the folded format: `;` separates frames, and a
/// line's last space-separated numbers are its weights, so a name ending in a space
/// and digits (`step 2`) keeps that space as a no-break space.
fn frame(name: &str) -> String {
    let name = name.replace(';', ":");
    match name.rsplit_once(' ') {
        Some((head, tail)) if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{head}\u{a0}{tail}")
        }
        _ => name,
    }
}

/// The time of the spans directly under `spans[index]`, and the share of their
/// lower bound its calls into untraced code weigh: all of it, or as much as the
/// span's time left by those spans. An untraced call that ran traced code (asyncio's
/// `run` running the program's coroutines, seen as calls of the module below it)
/// holds that code's time too, which would count it twice.
fn inner_time(spans: &[Span], index: usize) -> (i64, f64) {
    let span = &spans[index];
    let children: i64 = spans[index + 1..]
        .iter()
        .take_while(|s| s.level > span.level)
        .filter(|s| s.level == span.level + 1)
        .map(|child| child.end_ns - child.start_ns)
        .sum();
    let untraced: i64 = span.untraced.iter().map(|u| u.duration_ns).sum();
    let room = (span.end_ns - span.start_ns - children).max(0);
    let share = if untraced > room {
        room as f64 / untraced as f64
    } else {
        1.0
    };
    (children, share)
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

#[cfg(test)]
mod tests {
    use super::*;

    use query::{Outcome, ThreadTimeline, UntracedCalls};

    fn span(level: usize, function: &str, start_ns: i64, end_ns: i64) -> Span {
        Span {
            call_id: 0,
            parent_id: None,
            depth: level as i32,
            level,
            module: "app".into(),
            function: function.into(),
            file: None,
            line: None,
            args: None,
            source: "sampled".into(),
            start_ns,
            end_ns,
            outcome: Outcome::Returned,
            value: None,
            exception: None,
            duration_ns: Some(end_ns - start_ns),
            duration_max_ns: None,
            untraced: Vec::new(),
        }
    }

    fn weights(spans: Vec<Span>) -> BTreeMap<String, u64> {
        let timeline = Timeline {
            threads: vec![ThreadTimeline {
                run_id: "r".into(),
                pid: 1,
                tid: 1,
                thread_name: None,
                spans,
                untraced: Vec::new(),
            }],
            origin_ns: 0,
            truncated: false,
            sql: String::new(),
            notes: Vec::new(),
        };
        folded_stacks(&timeline)
            .into_iter()
            .map(|line| {
                let (stack, ns) = line.rsplit_once(' ').expect("a weight");
                (stack.to_string(), ns.parse().expect("a number"))
            })
            .collect()
    }

    /// `asyncio.run` (untraced) ran the module's coroutines, which sampling sees as
    /// calls of the module: its 600 of the module's 900 are theirs, and the graph
    /// weighs 900 in all, not 1500.
    #[test]
    fn an_untraced_call_that_ran_traced_code_weighs_what_they_leave() {
        let mut module = span(0, "<module>", 0, 900);
        module.untraced.push(UntracedCalls {
            module: "asyncio.runners".into(),
            function: "run".into(),
            calls: 1,
            duration_ns: 800,
            duration_max_ns: None,
        });
        let spans = vec![
            module,
            span(1, "work", 100, 300),
            span(1, "work", 300, 500),
            span(1, "work", 500, 700),
        ];
        let weights = weights(spans);
        assert_eq!(weights.values().sum::<u64>(), 900, "{weights:?}");
        assert_eq!(weights["app.<module>;asyncio.runners.run (untraced)"], 300);
        assert_eq!(weights["app.<module>;app.work"], 600);
    }

    /// An untraced call beside the traced ones keeps its whole weight.
    #[test]
    fn an_untraced_call_beside_traced_ones_keeps_its_time() {
        let mut module = span(0, "<module>", 0, 900);
        module.untraced.push(UntracedCalls {
            module: "json".into(),
            function: "dumps".into(),
            calls: 3,
            duration_ns: 250,
            duration_max_ns: None,
        });
        let weights = weights(vec![module, span(1, "work", 100, 500)]);
        assert_eq!(weights["app.<module>;json.dumps (untraced)"], 250);
        assert_eq!(weights["app.<module>;app.work"], 400);
        assert_eq!(weights["app.<module>"], 250);
    }

    #[test]
    fn a_name_ending_in_a_number_is_not_read_as_a_weight() {
        assert_eq!(frame("app.step 2"), "app.step\u{a0}2");
        assert_eq!(frame("app.a;b"), "app.a:b");
        assert_eq!(frame("json.dumps (untraced)"), "json.dumps (untraced)");
    }
}
