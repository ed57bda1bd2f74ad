//! The named questions of `tracer query`, each written as SQL over `events` and
//! `runs`, and the filters they share.
//!
//! Filters (all optional): `--module` is a glob over the `module` column (`*` any
//! text, `?` one character; `myapp.*` is `myapp` and every module in it, as with
//! `record --include`); `--thread` is an OS thread id or a Python thread name (a
//! number matches either); `--since` and
//! `--until` are either absolute times (RFC 3339, `2024-05-01T12:00:00.5Z`, or
//! `2024-05-01 12:00:00`, read as UTC) or durations since each run's start
//! (`tracer.run.started_at`): `1.5s`, `250ms`, `40us`, `900ns`, `2m`, `1h`, or a bare
//! number of seconds; both bounds are inclusive. `--run` picks one run of a folder
//! by its id or a unique prefix of it. `--limit` caps the rows (see
//! [`Question::default_limit`]).
//!
//! `--runs` uses only `--run` and `--limit`; `--threads` ignores `--module`.

use std::str::FromStr;

use attach::filter::ModuleGlob;

use crate::error::{QueryError, Result};

/// One named question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    /// Calls from traced code into code that was not traced, by callee and caller.
    Gaps,
    /// Every call of one function: `multiply`, `Order.total` or
    /// `myapp.billing.Order.total`.
    Call(String),
    /// Every event in order, with its depth.
    Flow,
    /// The calls as a tree per thread, with durations.
    Tree,
    /// The N most called functions.
    Top(usize),
    /// The N functions with the most total time.
    Slow(usize),
    /// Every exception row: where it was raised or passed through.
    Exceptions,
    /// One row per thread.
    Threads,
    /// One row per run.
    Runs,
}

impl Question {
    /// The question's name as the command line spells it, without the dashes.
    pub fn name(&self) -> &'static str {
        match self {
            Question::Gaps => "gaps",
            Question::Call(_) => "call",
            Question::Flow => "flow",
            Question::Tree => "tree",
            Question::Top(_) => "top",
            Question::Slow(_) => "slow",
            Question::Exceptions => "exceptions",
            Question::Threads => "threads",
            Question::Runs => "runs",
        }
    }

    /// The question's argument (`--call NAME`, `--top N`, `--slow N`), if any.
    pub fn argument(&self) -> Option<String> {
        match self {
            Question::Call(name) => Some(name.clone()),
            Question::Top(n) | Question::Slow(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// Whether the question's own filter keeps most rows of a trace (every call and
    /// end row), so that filtering decoded batches beats filtering rows inside the
    /// Parquet reader. Measured on the 10-million-event benchmark trace: `--top`
    /// 614 -> 501 ms, `--slow` 527 -> 401 ms; the others are faster with row filters.
    pub fn keeps_most_rows(&self) -> bool {
        matches!(self, Question::Top(_) | Question::Slow(_))
    }

    /// How many rows the answer holds when `--limit` is not given: enough to read on
    /// a terminal, and `--limit` asks for more. An answer cut short says so.
    pub fn default_limit(&self) -> usize {
        match self {
            Question::Gaps => 50,
            Question::Call(_) => 100,
            Question::Flow | Question::Tree => 200,
            Question::Top(n) | Question::Slow(n) => *n,
            Question::Exceptions => 100,
            Question::Threads | Question::Runs => 1000,
        }
    }
}

/// A `--since` / `--until` bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    /// An absolute time, nanoseconds since the Unix epoch (UTC).
    At(i64),
    /// Nanoseconds after each run's start.
    AfterStart(i64),
}

impl FromStr for TimeBound {
    type Err = QueryError;

    fn from_str(text: &str) -> Result<TimeBound> {
        let text = text.trim();
        if let Some(ns) = parse_duration_ns(text) {
            return Ok(TimeBound::AfterStart(ns));
        }
        datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(text)
            .map(TimeBound::At)
            .map_err(|_| QueryError::BadArgument {
                what: format!("time {text:?}"),
                message: "give a duration since the run's start (1.5s, 250ms, 40us, 2m) \
                          or a time (2024-05-01T12:00:00Z)"
                    .to_string(),
            })
    }
}

/// `1.5s`, `250ms`, `40us`, `900ns`, `2m`, `1h` or a bare number of seconds.
fn parse_duration_ns(text: &str) -> Option<i64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "s" | "sec" => 1e9,
        "ms" => 1e6,
        "us" | "µs" => 1e3,
        "ns" => 1.0,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        _ => return None,
    };
    let ns = value * scale;
    (ns.is_finite() && ns < i64::MAX as f64).then_some(ns as i64)
}

/// The filters every question accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// A glob over the `module` column.
    pub module: Option<String>,
    /// An OS thread id, or a Python thread name.
    pub thread: Option<String>,
    /// Events at or after this time.
    pub since: Option<TimeBound>,
    /// Events at or before this time.
    pub until: Option<TimeBound>,
    /// At most this many rows (else [`Question::default_limit`]).
    pub limit: Option<usize>,
    /// One run of a folder: its id or a unique prefix.
    pub run: Option<String>,
}

/// What the SQL of a question needs to know about the runs it reads.
pub(crate) struct RunScope {
    /// `(run_id, started_at in ns)` of each run the question reads.
    pub runs: Vec<(String, Option<i64>)>,
    /// True when `--run` narrowed the trace to one run.
    pub narrowed: bool,
}

/// A SQL string literal.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// An RFC 3339 UTC literal for a time in nanoseconds since the epoch, in the form
/// the engine compares with `ts`.
fn time_literal(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "'{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z'",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Whether `module` matches a `--include` / `--exclude` glob as the recorder reads
/// one: attach's own [`ModuleGlob`] (a glob ending in `.*` matches the package itself
/// too). A glob the recorder would refuse (empty) matches nothing.
pub(crate) fn module_glob_matches(glob: &str, module: &str) -> bool {
    ModuleGlob::new(glob, "--exclude").is_ok_and(|glob| glob.matches(module))
}

/// A `LIKE` pattern for a module glob (`*` and `?`), with `%`, `_` and `\` escaped.
fn like_pattern(glob: &str) -> String {
    let mut pattern = String::new();
    for c in glob.chars() {
        match c {
            '*' => pattern.push('%'),
            '?' => pattern.push('_'),
            '%' | '_' | '\\' => {
                pattern.push('\\');
                pattern.push(c);
            }
            other => pattern.push(other),
        }
    }
    pattern
}

/// The condition matching the calls `--call NAME` names, over `function` and
/// `module` (qualified by `alias`): the qualified name itself or its last parts
/// (`total` matches `Order.total`), or a module prefix and the function (any split
/// of `myapp.billing.Order.total` into a module, or the end of one, and a function).
pub(crate) fn call_name_condition(name: &str, alias: &str) -> String {
    let function = format!("{alias}function");
    let module = format!("{alias}module");
    let mut alternatives = vec![
        format!("{function} = {}", literal(name)),
        format!("ends_with({function}, {})", literal(&format!(".{name}"))),
    ];
    for (dot, _) in name.match_indices('.') {
        let (module_part, function_part) = (&name[..dot], &name[dot + 1..]);
        if module_part.is_empty() || function_part.is_empty() {
            continue;
        }
        alternatives.push(format!(
            "({function} = {} AND ({module} = {} OR ends_with({module}, {})))",
            literal(function_part),
            literal(module_part),
            literal(&format!(".{module_part}"))
        ));
    }
    format!("({})", alternatives.join(" OR "))
}

impl Filters {
    /// The conditions these filters put on `events` rows (qualified by `alias`, such
    /// as `"e."` or `""`), to be joined with `AND`; `--since`/`--until` keep the rows
    /// whose own `ts` is in the window.
    pub(crate) fn conditions(
        &self,
        alias: &str,
        scope: &RunScope,
        with_module: bool,
    ) -> Result<Vec<String>> {
        let time = |operator: &str, ns: i64| format!("{alias}ts {operator} {}", time_literal(ns));
        let mut conditions = Vec::new();
        if scope.narrowed {
            let ids: Vec<String> = scope.runs.iter().map(|(id, _)| literal(id)).collect();
            conditions.push(format!("{alias}run_id IN ({})", ids.join(", ")));
        }
        if let (Some(glob), true) = (&self.module, with_module) {
            let glob = glob.trim();
            let mut matches = if glob.contains(['*', '?']) {
                format!(
                    "{alias}module LIKE {} ESCAPE '\\'",
                    literal(&like_pattern(glob))
                )
            } else {
                format!("{alias}module = {}", literal(glob))
            };
            // As `record --include` has it: `pkg.*` is the package and what is in it.
            if let Some(package) = glob.strip_suffix(".*") {
                let package = if package.contains(['*', '?']) {
                    format!(
                        "{alias}module LIKE {} ESCAPE '\\'",
                        literal(&like_pattern(package))
                    )
                } else {
                    format!("{alias}module = {}", literal(package))
                };
                matches = format!("({matches} OR {package})");
            }
            conditions.push(matches);
        }
        if let Some(thread) = &self.thread {
            // A number is an OS thread id, or the name of a thread named so. A row
            // without a name (a sampled thread's first rows, read before the thread
            // registered its name) belongs to the thread whose id has that name.
            let thread = thread.trim();
            let named = literal(thread);
            let by_name = format!(
                "({alias}thread_name = {named} OR ({alias}thread_name IS NULL AND {alias}tid IN \
                 (SELECT DISTINCT tid FROM events WHERE thread_name = {named})))"
            );
            match thread.parse::<i64>() {
                Ok(tid) => conditions.push(format!("({alias}tid = {tid} OR {by_name})")),
                Err(_) => conditions.push(by_name),
            }
        }
        for (bound, operator) in [(self.since, ">="), (self.until, "<=")] {
            match bound {
                None => {}
                Some(TimeBound::At(ns)) => conditions.push(time(operator, ns)),
                Some(TimeBound::AfterStart(offset)) => {
                    let mut per_run = Vec::new();
                    for (run_id, started) in &scope.runs {
                        let started = started.ok_or_else(|| QueryError::BadArgument {
                            what: format!("run {run_id}"),
                            message: "its metadata has no started_at, so a duration since \
                                      the start means nothing; give an absolute time"
                                .to_string(),
                        })?;
                        per_run.push(format!(
                            "({alias}run_id = {} AND {})",
                            literal(run_id),
                            time(operator, started.saturating_add(offset))
                        ));
                    }
                    if per_run.is_empty() {
                        per_run.push("false".to_string());
                    }
                    conditions.push(format!("({})", per_run.join(" OR ")));
                }
            }
        }
        Ok(conditions)
    }

    /// The `FROM ... WHERE ...` of a question that counts calls on their `call` rows
    /// and times them on the rows that end them (`--top`, `--slow`): the `rows` (a
    /// condition on `kind`) of the calls these filters keep.
    ///
    /// A time window takes whole calls: a call is in it when the row that starts it
    /// (`call`, or `resume` for a generator's later stretch) has its `ts` in the
    /// window, and the rows that end it go with it wherever their own `ts` falls.
    /// This is the window `--call` applies to its call rows, so the calls and times
    /// agree with `--call`'s. An end row alone does not say when its call started:
    /// sampled, its `ts` is the first sample without the call and its `duration_ns`
    /// ends at the last sample with it, so the window is decided on the call rows
    /// and the end rows are joined to them by `(run_id, call_id)`.
    pub(crate) fn whole_calls(&self, scope: &RunScope, rows: &str) -> Result<String> {
        let conditions = self.conditions("", scope, true)?;
        if self.since.is_none() && self.until.is_none() {
            return Ok(format!("events WHERE {}", and_all(rows, &conditions)));
        }
        Ok(format!(
            "(SELECT run_id AS window_run_id, call_id AS window_call_id FROM events \
             WHERE {}) JOIN events ON run_id = window_run_id AND call_id = window_call_id \
             WHERE {rows}",
            and_all("kind IN ('call', 'resume')", &conditions)
        ))
    }
}

/// `AND`-joins conditions after a leading one.
fn and_all(first: &str, rest: &[String]) -> String {
    let mut all = vec![first.to_string()];
    all.extend(rest.iter().cloned());
    all.join(" AND ")
}

/// Rows whose call was not made by the same function: what a function's total time
/// adds up. A recursive call runs inside its caller's call of the same function, so
/// summing it too counted a recursion once per level (fib(27) "took" hours in a run
/// of a second); as cProfile's cumulative time, each recursion counts once. Direct
/// recursion only: a call made through another function (mutual recursion) still
/// adds its time.
pub const OUTERMOST: &str = "caller IS DISTINCT FROM module || '.' || function";

/// The SQL of a named question, returning at most `limit` rows. Questions that join
/// apply the limit before the join, so a large trace costs a scan, not a join of
/// every row.
pub(crate) fn question_sql(
    question: &Question,
    filters: &Filters,
    scope: &RunScope,
    limit: usize,
) -> Result<String> {
    let f = |alias: &str| filters.conditions(alias, scope, true);
    let whole_calls = |rows: &str| filters.whole_calls(scope, rows);
    // What ends a call row's call_id, with the time it ran: its end, or (exact mode)
    // the `yield` of a generator or coroutine, whose later `resume`s open call_ids of
    // their own. The time of a generator is the sum of its stretches.
    let segment_ends = "kind IN ('return', 'exception', 'unfinished', 'yield')";
    Ok(match question {
        Question::Gaps => format!(
            "SELECT module, function, caller, SUM(count) AS calls, \
             SUM(duration_ns) AS total_ns, \
             CASE WHEN MAX(COALESCE(file, '')) = '' THEN NULL \
             ELSE split_part(module, '.', 1) || '.*' END AS include \
             FROM events WHERE {} \
             GROUP BY module, function, caller \
             ORDER BY calls DESC, module, function, caller LIMIT {limit}",
            and_all("kind = 'gap'", &f("")?)
        ),
        Question::Call(name) => {
            let name_match = call_name_condition(name, "");
            format!(
                "WITH called AS (\
                   SELECT run_id, call_id, seq, ts, tid, thread_name, module, function, \
                          kind, args, caller, caller_line, source \
                   FROM events WHERE {calls} ORDER BY run_id, seq LIMIT {limit}), \
                 ended AS (\
                   SELECT run_id, call_id, kind AS outcome, value, exception, \
                          duration_ns, duration_max_ns \
                   FROM events WHERE {segment_ends} AND {name_match}), \
                 children AS (\
                   SELECT ch.run_id, ch.parent_id, \
                          ch.module || '.' || ch.function \
                            || CASE WHEN ch.kind = 'gap' THEN ' (untraced)' ELSE '' END \
                            || ' x' || CAST(SUM(ch.count) AS VARCHAR) AS callee, \
                          MIN(ch.seq) AS first_seq \
                   FROM events ch JOIN called c \
                     ON ch.run_id = c.run_id AND ch.parent_id = c.call_id \
                   WHERE ch.kind IN ('call', 'gap') \
                   GROUP BY ch.run_id, ch.parent_id, ch.module, ch.function, ch.kind), \
                 made AS (\
                   SELECT run_id, parent_id, \
                          string_agg(callee, ', ' ORDER BY first_seq) AS calls_made \
                   FROM children GROUP BY run_id, parent_id) \
                 SELECT c.ts, c.tid, c.thread_name, \
                        c.module || '.' || c.function AS function, c.kind, c.args, \
                        e.outcome, e.value, e.exception, e.duration_ns, e.duration_max_ns, \
                        c.source, c.caller, c.caller_line, m.calls_made, c.run_id, c.call_id \
                 FROM called c \
                 LEFT JOIN ended e ON e.run_id = c.run_id AND e.call_id = c.call_id \
                 LEFT JOIN made m ON m.run_id = c.run_id AND m.parent_id = c.call_id \
                 ORDER BY c.run_id, c.seq LIMIT {limit}",
                calls = and_all(
                    &format!("kind IN ('call', 'resume') AND {name_match}"),
                    &f("")?
                ),
            )
        }
        // In the order of time (`ts`, then `seq`): a gap row is written after the
        // calls that followed its first call (see the tree below), and by `seq` it
        // read as made after them.
        Question::Flow => {
            let conditions = f("")?;
            let filter = if conditions.is_empty() {
                String::new()
            } else {
                format!("WHERE {} ", conditions.join(" AND "))
            };
            format!(
                "SELECT ts, tid, depth, kind, module || '.' || function AS function, \
                 CASE kind WHEN 'call' THEN args \
                   WHEN 'exception' THEN exception || ': ' || value \
                   ELSE value END AS detail, \
                 duration_ns, line, count, run_id, seq \
                 FROM events {filter}ORDER BY run_id, ts, seq LIMIT {limit}"
            )
        }
        // In the order of time, not of `seq`: a gap row is written when the calls it
        // counts are over (exact mode: at the end of the call that made them, or when
        // the hook sends a batch), after the calls made later, while its `ts` is its
        // first call's, inside its parent and outside that parent's other children.
        // Ordered by `seq` the rows after a gap, indented by depth, read as its
        // children. A generator's or coroutine's resume is a call of its own (exact
        // mode), the parent of the calls made while it runs: without its row they
        // would read as calls made by the stretch before.
        Question::Tree => format!(
            "WITH node AS (\
               SELECT run_id, seq, ts, tid, thread_name, call_id, parent_id, depth, kind, \
                      module, function, count, duration_ns, duration_max_ns \
               FROM events WHERE {} ORDER BY run_id, tid, ts, seq LIMIT {limit}) \
             SELECT n.run_id, n.tid, n.thread_name, n.depth, \
                    n.module || '.' || n.function AS function, n.kind, n.count, \
                    COALESCE(e.kind, CASE WHEN n.kind = 'gap' THEN 'gap' END) AS outcome, \
                    COALESCE(e.duration_ns, n.duration_ns) AS duration_ns, \
                    COALESCE(e.duration_max_ns, n.duration_max_ns) AS duration_max_ns, \
                    n.call_id, n.parent_id \
             FROM node n LEFT JOIN events e \
               ON e.run_id = n.run_id AND e.call_id = n.call_id AND e.{segment_ends} \
             ORDER BY n.run_id, n.tid, n.ts, n.seq LIMIT {limit}",
            and_all("kind IN ('call', 'resume', 'gap')", &f("")?)
        ),
        // Call rows have no duration_ns (DESIGN.md), so the time needs no CASE; a
        // FILTER clause instead of CASE costs ~20% less on 10M rows. The counts are
        // cast back to BIGINT (COALESCE of a UInt64 sum and 0 would be a decimal).
        // The time of a call made by the function itself is inside its caller's:
        // summed too, a recursion's time would count once per level.
        Question::Top(_) => format!(
            "SELECT module, function, \
             CAST(COALESCE(SUM(count) FILTER (WHERE kind = 'call'), 0) AS BIGINT) AS calls, \
             ROUND(CAST(COALESCE(SUM(count) FILTER (WHERE kind = 'call'), 0) AS DOUBLE) * 100 \
                  / CAST(SUM(CAST(COALESCE(SUM(count) FILTER (WHERE kind = 'call'), 0) \
                  AS BIGINT)) OVER () AS DOUBLE), 2) AS share_pct, \
             SUM(duration_ns) FILTER (WHERE {OUTERMOST}) AS total_ns, \
             module AS exclude \
             FROM {} \
             GROUP BY module, function \
             ORDER BY calls DESC, module, function LIMIT {limit}",
            whole_calls(&format!("(kind = 'call' OR {segment_ends})"))?
        ),
        // Calls are counted on their `call` rows and timed on the rows that end a
        // stretch of running: a generator's or coroutine's time is the sum of its
        // stretches (exact mode), and its longest is its `max_ns`.
        Question::Slow(_) => format!(
            "SELECT module, function, \
             CAST(COALESCE(SUM(count) FILTER (WHERE kind = 'call'), 0) AS BIGINT) AS calls, \
             SUM(duration_ns) FILTER (WHERE {OUTERMOST}) AS total_ns, \
             SUM(duration_ns) / NULLIF(CAST(COALESCE(SUM(count) FILTER (WHERE kind = 'call'), 0) \
                 AS BIGINT), 0) AS mean_ns, \
             MAX(duration_ns) AS max_ns, \
             SUM(duration_max_ns) FILTER (WHERE {OUTERMOST}) AS total_max_ns, \
             SUM(CASE WHEN kind = 'exception' THEN 1 ELSE 0 END) AS exceptions, \
             SUM(CASE WHEN kind = 'unfinished' THEN 1 ELSE 0 END) AS unfinished \
             FROM {} \
             GROUP BY module, function \
             ORDER BY total_ns DESC NULLS LAST, module, function LIMIT {limit}",
            whole_calls(&format!("(kind = 'call' OR {segment_ends})"))?
        ),
        Question::Exceptions => format!(
            "WITH raised AS (\
               SELECT run_id, seq, call_id, ts, tid, thread_name, module, function, exception, \
                      value, file, line, caller, duration_ns \
               FROM events WHERE {} ORDER BY run_id, seq LIMIT {limit}) \
             SELECT r.ts, r.tid, r.thread_name, r.module || '.' || r.function AS function, \
                    r.exception, r.value AS message, c.args, r.file, r.line, \
                    COALESCE(r.caller, c.caller) AS caller, c.caller_line, r.duration_ns, \
                    r.run_id, r.call_id \
             FROM raised r LEFT JOIN events c \
               ON c.run_id = r.run_id AND c.call_id = r.call_id AND c.kind = 'call' \
             ORDER BY r.run_id, r.seq LIMIT {limit}",
            and_all("kind = 'exception'", &f("")?)
        ),
        Question::Threads => format!(
            "SELECT run_id, tid, MAX(thread_name) AS thread_name, MIN(ts) AS first_ts, \
             MAX(ts) AS last_ts, COUNT(*) AS events, \
             SUM(CASE WHEN kind = 'call' THEN 1 ELSE 0 END) AS calls, \
             SUM(CASE WHEN kind = 'exception' THEN 1 ELSE 0 END) AS exceptions, \
             MAX(depth) AS max_depth \
             FROM events WHERE {} GROUP BY run_id, tid ORDER BY run_id, first_ts, tid LIMIT {limit}",
            and_all("true", &filters.conditions("", scope, false)?)
        ),
        Question::Runs => {
            let filter = if scope.narrowed {
                let ids: Vec<String> = scope.runs.iter().map(|(id, _)| literal(id)).collect();
                format!("WHERE run_id IN ({}) ", ids.join(", "))
            } else {
                String::new()
            };
            format!(
                "SELECT run_id, status, finished, mode, command, pid, python_version, \
                 started_at, ended_at, exit_code, events, samples, dropped_events, path \
                 FROM runs {filter}ORDER BY started_at, run_id LIMIT {limit}"
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_since_start_parse_with_units() {
        assert_eq!(
            "1.5s".parse::<TimeBound>().ok(),
            Some(TimeBound::AfterStart(1_500_000_000))
        );
        assert_eq!(
            "250ms".parse::<TimeBound>().ok(),
            Some(TimeBound::AfterStart(250_000_000))
        );
        assert_eq!(
            "40us".parse::<TimeBound>().ok(),
            Some(TimeBound::AfterStart(40_000))
        );
        assert_eq!(
            "2m".parse::<TimeBound>().ok(),
            Some(TimeBound::AfterStart(120_000_000_000))
        );
        assert_eq!(
            "3".parse::<TimeBound>().ok(),
            Some(TimeBound::AfterStart(3_000_000_000))
        );
    }

    #[test]
    fn absolute_times_parse_as_utc() {
        assert_eq!(
            "1970-01-02T00:00:01Z".parse::<TimeBound>().ok(),
            Some(TimeBound::At(86_401_000_000_000))
        );
        assert!("yesterday".parse::<TimeBound>().is_err());
    }

    #[test]
    fn time_literals_round_trip_through_the_parser() {
        for ns in [0, 1_714_564_800_123_456_789, 951_782_400_000_000_001] {
            let text = time_literal(ns);
            let parsed = datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(
                text.trim_matches('\''),
            );
            assert_eq!(parsed.ok(), Some(ns), "{text}");
        }
    }

    #[test]
    fn module_globs_escape_like_wildcards() {
        assert_eq!(like_pattern("my_app.*"), "my\\_app.%");
        assert_eq!(like_pattern("a?c"), "a_c");
    }

    #[test]
    fn module_globs_match_as_the_recorder_matches_them() {
        assert!(module_glob_matches("pkg.sub.*", "pkg.sub.util"));
        assert!(module_glob_matches("pkg.sub.*", "pkg.sub"));
        assert!(!module_glob_matches("pkg.sub.*", "pkg.subway"));
        assert!(!module_glob_matches("pkg.sub.*", "pkg"));
        assert!(module_glob_matches("*", "json"));
        assert!(module_glob_matches("js?n", "json"));
        assert!(module_glob_matches("*.util", "pkg.sub.util"));
        assert!(!module_glob_matches("json", "json.decoder"));
    }
}
