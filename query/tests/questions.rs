//! Each named question against traces whose content is known: the billing workload
//! (exact), a sampled run, a folder of both, and a killed run's segments.

mod support;

use std::path::PathBuf;

use query::arrow::array::{Array, AsArray};
use query::arrow::compute::cast;
use query::arrow::datatypes::{DataType, Int64Type};
use query::{Answer, Filters, QuerySession, Question, TimeBound};
use support::billing::*;
use support::{billing_run, sampled_run, TempDir, START_NS};

const BILLING: &str = "0000000000billing01";
const SAMPLED: &str = "0000000000sampled02";

fn billing_trace() -> (TempDir, PathBuf) {
    let dir = TempDir::new("billing");
    let path = dir.path().join("billing.parquet");
    billing_run(BILLING).write(&path);
    (dir, path)
}

fn ask(path: &std::path::Path, question: Question, filters: Filters) -> Answer {
    QuerySession::open(path)
        .expect("open trace")
        .ask(&question, &filters)
        .unwrap_or_else(|e| panic!("{question:?} failed: {e}"))
}

/// Column `name` of an answer as text (nulls as `None`).
fn texts(answer: &Answer, name: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for batch in &answer.batches {
        let column = batch
            .column_by_name(name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", answer.schema));
        let column = cast(column, &DataType::Utf8).expect("cast to text");
        let column = column.as_string::<i32>();
        out.extend(
            (0..column.len()).map(|i| column.is_valid(i).then(|| column.value(i).to_string())),
        );
    }
    out
}

/// Column `name` of an answer as integers (nulls as `None`).
fn ints(answer: &Answer, name: &str) -> Vec<Option<i64>> {
    let mut out = Vec::new();
    for batch in &answer.batches {
        let column = batch.column_by_name(name).expect("column");
        let column = cast(column, &DataType::Int64).expect("cast to int");
        let column = column.as_primitive::<Int64Type>();
        out.extend((0..column.len()).map(|i| column.is_valid(i).then(|| column.value(i))));
    }
    out
}

fn text(s: &str) -> Option<String> {
    Some(s.to_string())
}

#[test]
fn call_by_bare_name_lists_every_call_with_args_return_duration_and_caller() {
    let (_dir, path) = billing_trace();
    let answer = ask(&path, Question::Call("multiply".into()), Filters::default());
    let calls = (TOTALS * 2) as usize;
    assert_eq!(answer.num_rows(), calls);
    assert_eq!(
        texts(&answer, "function"),
        vec![text("myapp.mathutil.multiply"); calls]
    );
    assert_eq!(texts(&answer, "outcome"), vec![text("return"); calls]);
    assert_eq!(ints(&answer, "duration_ns"), vec![Some(MULTIPLY_NS); calls]);
    assert_eq!(
        texts(&answer, "caller"),
        vec![text("myapp.billing.Order.total"); calls]
    );
    assert_eq!(ints(&answer, "caller_line"), vec![Some(14); calls]);
    let mut expected_args = Vec::new();
    let mut expected_values = Vec::new();
    for i in 1..=TOTALS {
        for b in [2, 3] {
            expected_args.push(text(&format!("{{\"a\": \"{i}\", \"b\": \"{b}\"}}")));
            expected_values.push(text(&(i * b).to_string()));
        }
    }
    assert_eq!(texts(&answer, "args"), expected_args);
    assert_eq!(texts(&answer, "value"), expected_values);
    assert_eq!(
        texts(&answer, "calls_made"),
        vec![None; calls],
        "multiply calls nothing"
    );
    let ts = ints(&answer, "ts");
    assert!(
        ts.windows(2).all(|w| w[0] < w[1]),
        "calls in time order: {ts:?}"
    );
}

#[test]
fn call_by_qualified_name_shows_the_calls_it_made() {
    let (_dir, path) = billing_trace();
    let answer = ask(
        &path,
        Question::Call("Order.total".into()),
        Filters::default(),
    );
    assert_eq!(answer.num_rows(), TOTALS as usize);
    let made = format!("myapp.mathutil.multiply x2, json.dumps (untraced) x{DUMPS_PER_TOTAL}");
    assert_eq!(
        texts(&answer, "calls_made"),
        vec![Some(made); TOTALS as usize]
    );
    let values: Vec<_> = (1..=TOTALS)
        .map(|i| text(&format!("{}.0", i * 5)))
        .collect();
    assert_eq!(texts(&answer, "value"), values);
    assert_eq!(
        texts(&answer, "caller"),
        vec![text("__main__.main"); TOTALS as usize]
    );
    let durations = ints(&answer, "duration_ns");
    assert!(
        durations
            .iter()
            .all(|d| d.is_some_and(|d| d > 2 * MULTIPLY_NS)),
        "a total lasts longer than its two multiplies: {durations:?}"
    );
}

#[test]
fn call_by_module_qualified_name_matches_the_module() {
    let (_dir, path) = billing_trace();
    for (name, expected) in [
        ("myapp.billing.Order.total", TOTALS as usize),
        ("billing.Order.total", TOTALS as usize),
        ("otherapp.Order.total", 0),
        ("myapp.mathutil.multiply", (TOTALS * 2) as usize),
        ("Order.multiply", 0),
        ("total", TOTALS as usize),
    ] {
        let answer = ask(&path, Question::Call(name.into()), Filters::default());
        assert_eq!(answer.num_rows(), expected, "--call {name}");
    }
}

#[test]
fn call_that_raised_shows_the_exception() {
    let (_dir, path) = billing_trace();
    let answer = ask(&path, Question::Call("validate".into()), Filters::default());
    assert_eq!(answer.num_rows(), 1);
    assert_eq!(texts(&answer, "outcome"), vec![text("exception")]);
    assert_eq!(texts(&answer, "exception"), vec![text(VALIDATE_ERROR.0)]);
    assert_eq!(texts(&answer, "value"), vec![text(VALIDATE_ERROR.1)]);
    assert_eq!(texts(&answer, "args"), vec![text("{\"amount\": \"-1\"}")]);
}

#[test]
fn gaps_group_untraced_calls_and_tip_the_include_that_traces_them() {
    let (_dir, path) = billing_trace();
    let answer = ask(&path, Question::Gaps, Filters::default());
    assert_eq!(
        texts(&answer, "function"),
        vec![text("dumps"), text("socket.recv")]
    );
    assert_eq!(texts(&answer, "module"), vec![text("json"), text("socket")]);
    assert_eq!(
        texts(&answer, "caller"),
        vec![text("myapp.billing.Order.total"), text("myapp.net.fetch")]
    );
    assert_eq!(
        ints(&answer, "calls"),
        vec![
            Some(TOTALS * i64::from(DUMPS_PER_TOTAL)),
            Some(i64::from(RECV_CALLS))
        ]
    );
    assert_eq!(
        texts(&answer, "include"),
        vec![text("json.*"), text("socket.*")]
    );
    let tip = answer.tip.expect("gaps carry a tip");
    assert_eq!(
        tip.commands,
        vec!["tracer record --exact --include 'myapp.*' --include 'json.*' --include 'socket.*' -- python3 app.py --orders=3"]
    );
}

/// A module the run left out with `--exclude` is a gap like any other, but no
/// `--include` traces it while that exclude stays (an exclude wins): the tip's
/// command leaves out the excludes that match a module it is to trace, and says so.
/// Before, it kept them, and the command's own gaps gave the same tip again.
#[test]
fn gaps_tip_leaves_out_the_excludes_that_would_keep_its_modules_untraced() {
    let dir = TempDir::new("billing-excludes");
    let path = dir.path().join("billing.parquet");
    let mut run = billing_run(BILLING);
    run.set_metadata("exclude", serde_json::json!(["json.*", "myapp.billing"]));
    run.write(&path);
    let answer = ask(&path, Question::Gaps, Filters::default());
    let tip = answer.tip.expect("gaps carry a tip");
    assert_eq!(
        tip.commands,
        vec!["tracer record --exact --include 'myapp.*' --exclude myapp.billing --include 'json.*' --include 'socket.*' -- python3 app.py --orders=3"]
    );
    assert!(
        tip.text.contains("without --exclude 'json.*'"),
        "{}",
        tip.text
    );
}

#[test]
fn flow_lists_every_event_in_order_with_depth_and_says_when_cut() {
    let (_dir, path) = billing_trace();
    let rows = billing_run(BILLING).rows();
    let answer = ask(
        &path,
        Question::Flow,
        Filters {
            limit: Some(1000),
            ..Filters::default()
        },
    );
    assert_eq!(answer.num_rows(), rows);
    assert!(!answer.truncated);
    let seq = ints(&answer, "seq");
    assert_eq!(seq, (1..=rows as i64).map(Some).collect::<Vec<_>>());
    assert_eq!(texts(&answer, "function")[0], text("__main__.<module>"));
    assert_eq!(ints(&answer, "depth")[..3], [Some(0), Some(1), Some(0)]);
    let cut = ask(
        &path,
        Question::Flow,
        Filters {
            limit: Some(5),
            ..Filters::default()
        },
    );
    assert_eq!(cut.num_rows(), 5);
    assert!(cut.truncated);
}

#[test]
fn tree_orders_calls_per_thread_with_depth_and_durations() {
    let (_dir, path) = billing_trace();
    let answer = ask(&path, Question::Tree, Filters::default());
    let functions = texts(&answer, "function");
    let depths = ints(&answer, "depth");
    let tids = ints(&answer, "tid");
    let main_rows = tids.iter().filter(|t| **t == Some(MAIN_TID)).count();
    assert!(
        tids[..main_rows].iter().all(|t| *t == Some(MAIN_TID)),
        "one thread after another"
    );
    assert_eq!(functions[0], text("__main__.<module>"));
    assert_eq!(functions[1], text("__main__.main"));
    assert_eq!(functions[2], text("myapp.billing.Order.total"));
    assert_eq!(functions[3], text("myapp.mathutil.multiply"));
    assert_eq!(functions[5], text("json.dumps"));
    assert_eq!(
        depths[..6],
        [Some(0), Some(1), Some(2), Some(3), Some(3), Some(3)]
    );
    assert_eq!(ints(&answer, "duration_ns")[3], Some(MULTIPLY_NS));
    assert_eq!(texts(&answer, "outcome")[5], text("gap"));
    let worker: Vec<_> = functions[main_rows..].to_vec();
    assert_eq!(
        worker,
        vec![
            text("myapp.net.worker"),
            text("myapp.net.fetch"),
            text("socket.socket.recv"),
            text("myapp.net.slow_io")
        ]
    );
    let validate = functions
        .iter()
        .position(|f| *f == text("myapp.billing.validate"))
        .expect("validate");
    assert_eq!(texts(&answer, "outcome")[validate], text("exception"));
}

#[test]
fn top_counts_calls_and_tips_the_excludes() {
    let (_dir, path) = billing_trace();
    let answer = ask(&path, Question::Top(2), Filters::default());
    assert_eq!(
        texts(&answer, "function"),
        vec![text("multiply"), text("Order.total")]
    );
    assert_eq!(ints(&answer, "calls"), vec![Some(TOTALS * 2), Some(TOTALS)]);
    let all_calls = billing_calls();
    let share = texts(&answer, "share_pct")[0].clone().expect("share");
    // A percentage rounded to two decimals (4 of 58 calls is 6.90, not 6.89).
    let expected = ((TOTALS * 2) as f64 * 10000.0 / all_calls as f64).round() / 100.0;
    assert_eq!(share.parse::<f64>().ok(), Some(expected));
    assert!(answer.truncated, "more functions than 2");
    let tip = answer.tip.expect("top carries a tip");
    assert_eq!(
        tip.commands,
        vec!["tracer record --exact --include 'myapp.*' --exclude myapp.mathutil --exclude myapp.billing -- python3 app.py --orders=3"]
    );
}

/// Traced calls in the billing workload (gap rows are not calls).
fn billing_calls() -> i64 {
    // <module>, main, worker, fetch, validate, slow_io, the totals and their multiplies.
    6 + TOTALS * 3
}

#[test]
fn slow_ranks_functions_by_total_time() {
    let (_dir, path) = billing_trace();
    let answer = ask(&path, Question::Slow(20), Filters::default());
    let totals = ints(&answer, "total_ns");
    assert!(
        totals.windows(2).all(|w| w[0] >= w[1]),
        "by total time: {totals:?}"
    );
    let functions = texts(&answer, "function");
    let slow_io = functions
        .iter()
        .position(|f| *f == text("slow_io"))
        .expect("slow_io");
    assert_eq!(totals[slow_io], Some(SLOW_IO_NS));
    let multiply = functions
        .iter()
        .position(|f| *f == text("multiply"))
        .expect("multiply");
    assert_eq!(totals[multiply], Some(MULTIPLY_NS * TOTALS * 2));
    assert_eq!(ints(&answer, "mean_ns")[multiply], Some(MULTIPLY_NS));
    assert_eq!(ints(&answer, "calls")[multiply], Some(TOTALS * 2));
    let validate = functions
        .iter()
        .position(|f| *f == text("validate"))
        .expect("validate");
    assert_eq!(ints(&answer, "exceptions")[validate], Some(1));
    assert_eq!(
        answer.num_rows() as i64,
        6 + 2,
        "every traced function once"
    );
}

#[test]
fn exceptions_list_where_they_were_raised() {
    let (_dir, path) = billing_trace();
    let answer = ask(&path, Question::Exceptions, Filters::default());
    assert_eq!(answer.num_rows(), 1);
    assert_eq!(
        texts(&answer, "function"),
        vec![text("myapp.billing.validate")]
    );
    assert_eq!(texts(&answer, "exception"), vec![text(VALIDATE_ERROR.0)]);
    assert_eq!(texts(&answer, "message"), vec![text(VALIDATE_ERROR.1)]);
    assert_eq!(texts(&answer, "caller"), vec![text("__main__.main")]);
    assert_eq!(ints(&answer, "caller_line"), vec![Some(50)]);
    assert_eq!(texts(&answer, "args"), vec![text("{\"amount\": \"-1\"}")]);
}

#[test]
fn threads_have_one_row_each_with_names_and_counts() {
    let (_dir, path) = billing_trace();
    let answer = ask(&path, Question::Threads, Filters::default());
    assert_eq!(ints(&answer, "tid"), vec![Some(MAIN_TID), Some(WORKER_TID)]);
    assert_eq!(
        texts(&answer, "thread_name"),
        vec![text("MainThread"), text("worker-1")]
    );
    assert_eq!(ints(&answer, "calls"), vec![Some(3 + TOTALS * 3), Some(3)]);
    assert_eq!(ints(&answer, "exceptions"), vec![Some(1), Some(0)]);
}

#[test]
fn runs_come_from_the_footer_metadata() {
    let (_dir, path) = billing_trace();
    let answer = ask(&path, Question::Runs, Filters::default());
    assert_eq!(texts(&answer, "run_id"), vec![text(BILLING)]);
    assert_eq!(
        texts(&answer, "command"),
        vec![text("python3 app.py --orders=3")]
    );
    assert_eq!(texts(&answer, "status"), vec![text("completed")]);
    assert_eq!(texts(&answer, "finished"), vec![text("true")]);
    assert_eq!(
        ints(&answer, "events"),
        vec![Some(billing_run(BILLING).rows() as i64)]
    );
    assert_eq!(ints(&answer, "started_at"), vec![Some(START_NS)]);
    assert!(answer.notes.is_empty());
}

#[test]
fn filters_narrow_by_module_thread_and_time() {
    let (_dir, path) = billing_trace();
    let by_module = ask(
        &path,
        Question::Top(50),
        Filters {
            module: Some("myapp.*".into()),
            ..Filters::default()
        },
    );
    let modules = texts(&by_module, "module");
    assert!(!modules.is_empty());
    assert!(
        modules
            .iter()
            .all(|m| m.as_deref().is_some_and(|m| m.starts_with("myapp."))),
        "{modules:?}"
    );

    for thread in [WORKER_TID.to_string(), "worker-1".to_string()] {
        let flow = ask(
            &path,
            Question::Flow,
            Filters {
                thread: Some(thread.clone()),
                ..Filters::default()
            },
        );
        assert_eq!(
            flow.num_rows(),
            7,
            "--thread {thread}: worker, fetch, gap, return, slow_io, return, return"
        );
        assert!(ints(&flow, "tid").iter().all(|t| *t == Some(WORKER_TID)));
    }

    let since = ask(
        &path,
        Question::Flow,
        Filters {
            since: Some(TimeBound::AfterStart(SLOW_IO_NS / 10)),
            ..Filters::default()
        },
    );
    let ts = ints(&since, "ts");
    assert!(!ts.is_empty());
    assert!(ts
        .iter()
        .all(|t| t.is_some_and(|t| t >= START_NS + SLOW_IO_NS / 10)));
    let all = ask(&path, Question::Flow, Filters::default());
    assert!(since.num_rows() < all.num_rows());

    let until: TimeBound = "2024-05-01T12:00:00.001Z".parse().expect("time");
    let early = ask(
        &path,
        Question::Flow,
        Filters {
            until: Some(until),
            ..Filters::default()
        },
    );
    assert!(ints(&early, "ts")
        .iter()
        .all(|t| t.is_some_and(|t| t <= START_NS + 1_000_000)));
    assert!(early.num_rows() > 0 && early.num_rows() < all.num_rows());
}

/// `--since`/`--until` take whole calls, decided by when each call started: `--top`
/// and `--slow` count and time the same calls `--call` lists over the window. A
/// sampled return row's `ts` less its duration is later than the call's start (the
/// duration ends at the last sample that saw the call), which once let a window
/// count a call's time but not the call.
#[test]
fn a_window_counts_and_times_the_calls_that_started_in_it() {
    use support::{run_metadata, TraceBuilder};
    const TICK_NS: i64 = 50_000_000;
    const UNSEEN_NS: i64 = 5_000_000;
    let mut t = TraceBuilder::sampled(
        run_metadata(SAMPLED, &["python3", "ticks.py"], "sampled", "completed"),
        1_000_000,
    );
    t.thread(7, "MainThread");
    let module = t.call(7, "__main__", "<module>", 1, 0, "{}");
    let mut starts = Vec::new();
    for i in 0..5 {
        t.advance(1_000_000);
        starts.push(START_NS + t.elapsed());
        let tick = t.call(7, "__main__", "tick", 2, 9, &format!("{{\"i\": \"{i}\"}}"));
        t.advance(TICK_NS);
        t.ret_last_seen(7, tick, &i.to_string(), UNSEEN_NS);
    }
    t.advance(1_000_000);
    t.ret(7, module, "None");
    let dir = TempDir::new("window");
    let path = dir.path().join("ticks.parquet");
    t.write(&path);

    // Each bound falls after the third call's start and before its return row's
    // `ts` less its duration.
    let inside_third = TimeBound::At(starts[2] + UNSEEN_NS / 2);
    for (filters, calls) in [
        (
            Filters {
                since: Some(inside_third),
                ..Filters::default()
            },
            2,
        ),
        (
            Filters {
                until: Some(inside_third),
                ..Filters::default()
            },
            3,
        ),
    ] {
        let listed = ask(&path, Question::Call("tick".into()), filters.clone());
        let durations = ints(&listed, "duration_ns");
        assert_eq!(durations.len(), calls, "--call over {filters:?}");
        let total: i64 = durations.iter().map(|d| d.expect("a duration")).sum();
        assert_eq!(total, calls as i64 * (TICK_NS - UNSEEN_NS));
        for question in [Question::Top(10), Question::Slow(10)] {
            let answer = ask(&path, question.clone(), filters.clone());
            let tick = texts(&answer, "function")
                .iter()
                .position(|f| *f == text("tick"))
                .unwrap_or_else(|| panic!("{question:?} over {filters:?} has tick"));
            assert_eq!(
                (
                    ints(&answer, "calls")[tick],
                    ints(&answer, "total_ns")[tick]
                ),
                (Some(calls as i64), Some(total)),
                "{question:?} over {filters:?} agrees with --call"
            );
        }
    }
}

/// `--module 'pkg.*'` takes the package itself too, as `record --include 'pkg.*'`
/// traces it; `--thread 777` a thread named `777` as well as OS thread 777, and
/// `--thread NAME` the rows of that thread written before its name was known.
#[test]
fn a_package_glob_takes_the_package_and_a_number_takes_a_thread_so_named() {
    let dir = TempDir::new("package-thread");
    let path = dir.path().join("t.parquet");
    let mut t = support::TraceBuilder::exact(support::run_metadata(
        "00000000000package03",
        &["python3", "app.py"],
        "exact",
        "completed",
    ));
    t.thread(101, "MainThread");
    t.thread(102, "777");
    let main = t.call(101, "__main__", "main", 1, 0, "{}");
    t.advance(1_000);
    for (module, function, line) in [
        ("json", "dumps", 10),
        ("json.encoder", "encode", 20),
        ("jsonschema", "validate", 30),
    ] {
        let call = t.call(101, module, function, line, 5, "{}");
        t.advance(1_000);
        t.ret(101, call, "None");
    }
    let worker = t.call(102, "__main__", "work", 40, 0, "{}");
    t.advance(1_000);
    t.ret(102, worker, "None");
    // A sampled thread's first rows can come before its name was read.
    let early = t.call(103, "__main__", "serve", 50, 0, "{}");
    t.thread(103, "server");
    t.advance(1_000);
    t.ret(103, early, "None");
    t.ret(101, main, "None");
    t.write(&path);

    let top = ask(
        &path,
        Question::Top(50),
        Filters {
            module: Some("json.*".into()),
            ..Filters::default()
        },
    );
    let mut modules: Vec<String> = texts(&top, "module").into_iter().flatten().collect();
    modules.sort();
    assert_eq!(modules, ["json", "json.encoder"]);

    let named = ask(
        &path,
        Question::Flow,
        Filters {
            thread: Some("777".into()),
            ..Filters::default()
        },
    );
    assert_eq!(named.num_rows(), 2, "work's call and return");
    assert!(ints(&named, "tid").iter().all(|t| *t == Some(102)));

    let server = ask(
        &path,
        Question::Call("serve".into()),
        Filters {
            thread: Some("server".into()),
            ..Filters::default()
        },
    );
    assert_eq!(
        server.num_rows(),
        1,
        "the call row without the thread's name"
    );
}

/// A limit too large for SQL (up to 2^64 - 1, which the MCP tools' schema allows)
/// reads as "all the rows", not as an Arrow cast error.
#[test]
fn a_limit_too_large_for_sql_means_every_row() {
    let (_dir, path) = billing_trace();
    let huge = Filters {
        limit: Some(usize::MAX),
        ..Filters::default()
    };
    let all = ask(&path, Question::Flow, Filters::default());
    let session = QuerySession::open(&path).expect("open");
    for question in [Question::Top(usize::MAX), Question::Flow] {
        let answer = session
            .ask(&question, &huge)
            .unwrap_or_else(|e| panic!("{question:?}: {e}"));
        assert!(!answer.truncated, "{question:?}");
    }
    let flow = session.ask(&Question::Flow, &huge).expect("--flow");
    assert!(flow.num_rows() >= all.num_rows());
    let sql = session
        .sql_with_filters("SELECT COUNT(*) FROM events", &huge)
        .expect("--sql");
    assert_eq!(sql.num_rows(), 1);
    let timeline = session.timeline(&huge).expect("the timeline");
    assert!(!timeline.truncated);
}

fn two_run_folder() -> TempDir {
    let dir = TempDir::new("folder");
    billing_run(BILLING).write(&dir.path().join("20240501-120000-app.py-4242.parquet"));
    sampled_run(SAMPLED).write(&dir.path().join("20240501-130000-server.py-77.parquet"));
    dir
}

#[test]
fn a_folder_answers_for_every_run_and_run_picks_one() {
    let dir = two_run_folder();
    let runs = ask(dir.path(), Question::Runs, Filters::default());
    let mut ids = texts(&runs, "run_id");
    ids.sort();
    assert_eq!(ids, vec![text(BILLING), text(SAMPLED)]);

    let both = ask(
        dir.path(),
        Question::Call("multiply".into()),
        Filters::default(),
    );
    assert_eq!(both.num_rows(), (TOTALS * 2 + 2) as usize);

    let sampled = ask(
        dir.path(),
        Question::Call("multiply".into()),
        Filters {
            run: Some("0000000000sampled".into()),
            ..Filters::default()
        },
    );
    assert_eq!(sampled.num_rows(), 2);
    assert_eq!(texts(&sampled, "source"), vec![text("sampled"); 2]);
    assert_eq!(ints(&sampled, "duration_ns"), vec![Some(3_000_000); 2]);
    assert_eq!(
        ints(&sampled, "duration_max_ns"),
        vec![Some(4_000_000); 2],
        "bounds when sampled"
    );

    let unfinished = ask(
        dir.path(),
        Question::Slow(10),
        Filters {
            run: Some(SAMPLED.into()),
            ..Filters::default()
        },
    );
    let functions = texts(&unfinished, "function");
    let wait = functions
        .iter()
        .position(|f| *f == text("wait_forever"))
        .expect("wait_forever");
    assert_eq!(ints(&unfinished, "unfinished")[wait], Some(1));

    let session = QuerySession::open(dir.path()).expect("open");
    let error = session
        .ask(
            &Question::Runs,
            &Filters {
                run: Some("nosuchrun".into()),
                ..Filters::default()
            },
        )
        .expect_err("unknown run");
    assert!(
        matches!(error, query::QueryError::UnknownRun { .. }),
        "{error}"
    );
    assert!(error.to_string().contains(BILLING), "{error}");
}

#[test]
fn since_a_duration_counts_from_each_runs_start() {
    let dir = two_run_folder();
    let answer = ask(
        dir.path(),
        Question::Flow,
        Filters {
            since: "3ms".parse().ok(),
            limit: Some(1000),
            ..Filters::default()
        },
    );
    let ts = ints(&answer, "ts");
    assert!(ts
        .iter()
        .all(|t| t.is_some_and(|t| t >= START_NS + 3_000_000)));
    let runs = texts(&answer, "run_id");
    assert!(runs.contains(&text(BILLING)) && runs.contains(&text(SAMPLED)));
}

#[test]
fn a_killed_run_is_read_from_its_segments_and_says_so() {
    let dir = TempDir::new("killed");
    let trace = dir.path().join("killed.parquet");
    let run = billing_run(BILLING);
    let parts = run.write_killed(&trace, 10);
    let segments = run.rows().div_ceil(10);
    for path in [trace.clone(), parts.clone()] {
        let runs = ask(&path, Question::Runs, Filters::default());
        assert_eq!(texts(&runs, "status"), vec![text("unfinished")]);
        assert_eq!(texts(&runs, "finished"), vec![text("false")]);
        assert_eq!(ints(&runs, "events"), vec![Some(run.rows() as i64)]);
        assert_eq!(runs.notes.len(), 1);
        assert!(
            runs.notes[0].contains("did not finish"),
            "{}",
            runs.notes[0]
        );
        assert!(
            runs.notes[0].contains(&format!("{segments} segment(s)")),
            "{}",
            runs.notes[0]
        );
        let calls = ask(&path, Question::Call("multiply".into()), Filters::default());
        assert_eq!(calls.num_rows(), (TOTALS * 2) as usize);
        let flow = ask(
            &path,
            Question::Flow,
            Filters {
                limit: Some(1000),
                ..Filters::default()
            },
        );
        assert_eq!(flow.num_rows(), run.rows());
    }
    let folder = ask(dir.path(), Question::Runs, Filters::default());
    assert_eq!(
        texts(&folder, "status"),
        vec![text("unfinished")],
        "a folder reads a killed run too"
    );
}
