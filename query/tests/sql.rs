//! `--sql`: results equal DuckDB's for the same SQL on the same file, and the
//! read-only gate refuses everything that is not a query over the trace.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use query::arrow::util::display::{ArrayFormatter, FormatOptions};
use query::{Filters, Limits, QueryError, QuerySession, Question};
use support::{billing_run, TempDir};

fn billing_trace() -> (TempDir, PathBuf) {
    let dir = TempDir::new("sql");
    let path = dir.path().join("billing.parquet");
    billing_run("0000000000billing01").write(&path);
    (dir, path)
}

/// Rows of a `--sql` answer as text cells (nulls as `None`).
fn engine_rows(session: &QuerySession, sql: &str) -> Vec<Vec<Option<String>>> {
    let answer = session
        .sql(sql, None)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut rows = Vec::new();
    for batch in &answer.batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| {
                ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()).expect("formatter")
            })
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                batch
                    .columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(column, f)| column.is_valid(row).then(|| f.value(row).to_string()))
                    .collect(),
            );
        }
    }
    rows
}

const DUCKDB: &str = r#"
import duckdb, json, sys
files, sql = json.loads(sys.argv[1]), sys.argv[2]
con = duckdb.connect()
quoted = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet([{quoted}])")
rows = con.execute(sql).fetchall()
print(json.dumps([[None if v is None else str(v) for v in row] for row in rows]))
"#;

/// Rows DuckDB returns for `sql` with `events` over `files`.
fn duckdb_rows(files: &[&Path], sql: &str) -> Vec<Vec<Option<String>>> {
    let python = e2e::test_venv_python();
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let out = e2e::run_python(
        &python,
        DUCKDB,
        &[&serde_json::to_string(&files).expect("json"), sql],
    );
    serde_json::from_str(&out).expect("duckdb printed JSON rows")
}

/// Queries whose answers print the same in both engines (no floats or times). The
/// GROUP BYs and DISTINCTs over text columns go through the session's integer ids
/// for dictionary text (`dictionary_groups`): nullable keys, keys mixed with other
/// columns, HAVING and joins on the grouped names, min/max of text. The last two
/// mix, without GROUP BY, a min/max of a plain column with min/max of expressions
/// or with FILTER, which DataFusion's aggregate dynamic filter (off in the session)
/// answered from the files the plain column's bound left unpruned.
const SAME_AS_DUCKDB: [&str; 16] = [
    "SELECT kind, COUNT(*) AS n FROM events GROUP BY kind ORDER BY kind",
    "SELECT module, function, SUM(duration_ns) AS total FROM events WHERE kind = 'return' \
     GROUP BY module, function ORDER BY total DESC, module, function",
    "SELECT seq, function, depth, parent_id, caller, caller_line, args FROM events \
     WHERE kind = 'call' ORDER BY seq",
    "SELECT p.function AS parent, c.function AS child, c.depth FROM events p \
     JOIN events c ON c.parent_id = p.call_id AND c.kind = 'call' \
     WHERE p.kind = 'call' ORDER BY c.seq",
    "SELECT tid, thread_name, COUNT(*) AS n, MAX(depth) AS deepest FROM events \
     GROUP BY tid, thread_name ORDER BY tid",
    "WITH ended AS (SELECT call_id, duration_ns FROM events WHERE kind IN ('return', 'exception')) \
     SELECT COUNT(*) AS n, MAX(duration_ns) AS longest, MIN(duration_ns) AS shortest FROM ended",
    "SELECT exception, value, module, function FROM events WHERE exception IS NOT NULL",
    "SELECT module, SUM(count) AS calls FROM events WHERE kind = 'gap' GROUP BY module \
     HAVING SUM(count) > 1 ORDER BY calls DESC",
    "SELECT DISTINCT caller FROM events ORDER BY caller",
    "SELECT run_id, thread_name, kind, tid, COUNT(*) AS n, MIN(module) AS first_module, \
     MAX(function) AS last_function FROM events GROUP BY run_id, thread_name, kind, tid \
     HAVING kind <> 'gap' ORDER BY thread_name, kind",
    "SELECT g.function, g.n, c.seq FROM (SELECT function, COUNT(*) AS n FROM events \
     GROUP BY function) g JOIN events c ON c.function = g.function AND c.kind = 'call' \
     ORDER BY c.seq",
    "SELECT module, COUNT(DISTINCT function) AS functions, COUNT(DISTINCT caller) AS callers \
     FROM events GROUP BY module ORDER BY module",
    "SELECT k, SUM(n) AS n FROM (SELECT function AS k, COUNT(*) AS n FROM events GROUP BY 1 \
     UNION ALL SELECT function, COUNT(*) FROM events GROUP BY 1) GROUP BY 1 ORDER BY k",
    "SELECT k, SUM(n) AS n FROM (SELECT caller AS k, COUNT(*) AS n FROM events GROUP BY 1 \
     UNION ALL SELECT module, COUNT(*) FROM events GROUP BY 1) GROUP BY 1 ORDER BY k",
    "SELECT MIN(seq) AS first_seq, MAX(length(value)) AS longest_value, \
     MAX(CASE WHEN kind = 'exception' THEN seq END) AS exception_seq FROM events",
    "SELECT MIN(seq) AS first_seq, MAX(duration_ns) FILTER (WHERE function = 'validate') \
     AS validate_ns, MIN(depth) FILTER (WHERE kind = 'gap') AS gap_depth FROM events",
];

#[test]
fn sql_answers_equal_duckdbs_on_the_same_file() {
    let (_dir, path) = billing_trace();
    let session = QuerySession::open(&path).expect("open");
    for sql in SAME_AS_DUCKDB {
        let ours = engine_rows(&session, sql);
        assert!(!ours.is_empty(), "{sql} returned no rows");
        assert_eq!(ours, duckdb_rows(&[&path], sql), "{sql}");
    }
}

#[test]
fn sql_over_a_killed_runs_segments_equals_duckdb_over_the_parts() {
    let dir = TempDir::new("sql-killed");
    let trace = dir.path().join("killed.parquet");
    let parts = billing_run("0000000000billing01").write_killed(&trace, 7);
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&parts)
        .expect("parts")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    segments.sort();
    let segments: Vec<&Path> = segments.iter().map(PathBuf::as_path).collect();
    let session = QuerySession::open(&trace).expect("open killed run");
    for sql in &SAME_AS_DUCKDB {
        assert_eq!(
            engine_rows(&session, sql),
            duckdb_rows(&segments, sql),
            "{sql}"
        );
    }
}

#[test]
fn group_by_text_columns_groups_integer_ids() {
    let (_dir, path) = billing_trace();
    let session = QuerySession::open(&path).expect("open");
    let plan = engine_rows(
        &session,
        "EXPLAIN SELECT module, function, COUNT(*) FROM events GROUP BY module, function",
    );
    let text: String = plan.into_iter().flatten().flatten().collect();
    assert!(
        text.contains("tracer_text_id(module") && text.contains("tracer_text_id(function"),
        "the aggregate does not group by text ids:\n{text}"
    );
}

#[test]
fn with_and_explain_queries_are_allowed() {
    let (_dir, path) = billing_trace();
    let session = QuerySession::open(&path).expect("open");
    let rows = engine_rows(
        &session,
        "WITH c AS (SELECT * FROM events WHERE kind = 'call') SELECT COUNT(*) FROM c JOIN runs USING (run_id)",
    );
    assert_eq!(rows, vec![vec![Some("15".to_string())]]);
    let explain = session
        .sql(
            "EXPLAIN SELECT function FROM events WHERE kind = 'gap'",
            None,
        )
        .expect("explain");
    assert!(explain.num_rows() > 0);
}

/// Walking up the callers of a call through `parent_id` needs `WITH RECURSIVE`,
/// whose recursion reads its own rows so far: allowed, and equal to DuckDB's answer.
#[test]
fn a_recursive_with_query_walks_the_callers_as_duckdb_does() {
    let (_dir, path) = billing_trace();
    let session = QuerySession::open(&path).expect("open");
    let sql = "WITH RECURSIVE up AS (\
                 SELECT call_id, parent_id, function, 0 AS level FROM events \
                 WHERE kind = 'call' AND function = 'multiply' AND call_id = \
                   (SELECT MIN(call_id) FROM events WHERE function = 'multiply') \
                 UNION ALL \
                 SELECT e.call_id, e.parent_id, e.function, up.level + 1 FROM events e \
                 JOIN up ON e.call_id = up.parent_id WHERE e.kind = 'call') \
               SELECT function FROM up ORDER BY level";
    let ours = engine_rows(&session, sql);
    let names: Vec<&str> = ours
        .iter()
        .flatten()
        .flatten()
        .map(String::as_str)
        .collect();
    assert_eq!(names, ["multiply", "Order.total", "main", "<module>"]);
    assert_eq!(ours, duckdb_rows(&[&path], sql));
}

/// `tracer query --run/--thread/--module/--since/--until --sql`: the query sees the
/// rows the filters keep, as a named question does, and `runs` the chosen run.
#[test]
fn filters_narrow_what_a_sql_query_reads() {
    let dir = TempDir::new("sql-filters");
    billing_run("0000000000billing01").write(&dir.path().join("a.parquet"));
    billing_run("0000000000billing02").write(&dir.path().join("b.parquet"));
    let session = QuerySession::open(dir.path()).expect("open the folder");
    let count = |sql: &str, filters: &Filters| -> String {
        let answer = session
            .sql_with_filters(sql, filters)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let column = answer.batches[0].column(0);
        let formatter =
            ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default()).expect("formatter");
        formatter.value(0).to_string()
    };
    let all = Filters::default();
    let one_run = Filters {
        run: Some("0000000000billing02".into()),
        ..Filters::default()
    };
    let runs_sql = "SELECT COUNT(DISTINCT run_id) FROM events";
    assert_eq!(count(runs_sql, &all), "2");
    assert_eq!(count(runs_sql, &one_run), "1");
    assert_eq!(count("SELECT COUNT(*) FROM runs", &one_run), "1");
    let worker = Filters {
        thread: Some("worker-1".into()),
        ..one_run.clone()
    };
    assert_eq!(
        count("SELECT COUNT(DISTINCT thread_name) FROM events", &worker),
        "1"
    );
    let billing = Filters {
        module: Some("myapp.*".into()),
        ..one_run.clone()
    };
    let modules = count(
        "SELECT COUNT(*) FROM events WHERE module NOT LIKE 'myapp.%'",
        &billing,
    );
    assert_eq!(modules, "0");
    // The answer is the same as the named question's over the same filters.
    let calls = count(
        "SELECT COUNT(*) FROM events WHERE kind = 'call' AND function = 'multiply'",
        &one_run,
    );
    let asked = session
        .ask(&Question::Call("multiply".into()), &one_run)
        .expect("--call");
    assert_eq!(calls, asked.num_rows().to_string());
}

#[test]
fn statements_that_write_copy_create_drop_set_or_read_other_files_are_refused() {
    let (dir, path) = billing_trace();
    let other_csv = dir.path().join("other.csv");
    std::fs::write(&other_csv, "a,b\n1,2\n").expect("csv");
    let out = dir.path().join("out.parquet");
    let session = QuerySession::open(&path).expect("open");
    let before = dir.files();
    let statements = [
        format!("COPY (SELECT * FROM events) TO '{}'", out.display()),
        format!("COPY events TO '{}' STORED AS CSV", out.display()),
        "CREATE TABLE copy_of_events AS SELECT * FROM events".to_string(),
        format!(
            "CREATE EXTERNAL TABLE other STORED AS CSV LOCATION '{}'",
            other_csv.display()
        ),
        "CREATE VIEW v AS SELECT 1".to_string(),
        "INSERT INTO events SELECT * FROM events".to_string(),
        "DELETE FROM events".to_string(),
        "DROP TABLE events".to_string(),
        "SET datafusion.execution.batch_size = 1".to_string(),
        "SELECT * INTO events_copy FROM events".to_string(),
        format!("SELECT * FROM read_parquet('{}')", path.display()),
        format!("SELECT * FROM read_csv('{}')", other_csv.display()),
        format!("SELECT * FROM '{}'", other_csv.display()),
        format!(
            "SELECT * FROM events e JOIN '{}' o ON true",
            other_csv.display()
        ),
        "SELECT * FROM generate_series(1, 3)".to_string(),
        "SELECT 1; DROP TABLE events".to_string(),
        format!("EXPLAIN COPY (SELECT 1) TO '{}'", out.display()),
        "SHOW TABLES".to_string(),
        "SELECT * FROM information_schema.tables".to_string(),
    ];
    for sql in &statements {
        match session.sql(sql, None) {
            Err(QueryError::Refused { reason }) => {
                assert!(reason.contains("read-only query"), "{sql}: {reason}")
            }
            other => panic!("{sql} was not refused: {other:?}"),
        }
    }
    assert_eq!(dir.files(), before, "no file was created");
    let still_there = session
        .sql("SELECT COUNT(*) FROM events", None)
        .expect("events intact");
    assert_eq!(still_there.num_rows(), 1);
}

#[test]
fn an_unknown_column_lists_the_available_ones() {
    let (_dir, path) = billing_trace();
    let session = QuerySession::open(&path).expect("open");
    let error = session
        .sql("SELECT durration FROM events", None)
        .expect_err("unknown column");
    let QueryError::UnknownColumn { name, available } = &error else {
        panic!("not an unknown-column error: {error:?}");
    };
    assert_eq!(name, "durration");
    for column in ["duration_ns", "function", "module", "ts", "args"] {
        assert!(
            available.iter().any(|a| a == column),
            "{column} missing from {available:?}"
        );
    }
    assert!(error.to_string().contains("duration_ns"), "{error}");
    assert!(error.is_usage());
}

#[test]
fn a_syntax_error_is_a_usage_error() {
    let (_dir, path) = billing_trace();
    let session = QuerySession::open(&path).expect("open");
    let error = session
        .sql("SELEC function FROM events", None)
        .expect_err("syntax");
    assert!(error.is_usage(), "{error:?}");
}

#[test]
fn a_query_past_its_time_limit_is_stopped() {
    let (_dir, path) = billing_trace();
    let limits = Limits {
        timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let session = QuerySession::open_with_limits(&path, limits).expect("open");
    let started = Instant::now();
    let error = session
        .sql(
            "SELECT SUM(a.seq * b.seq + c.seq * d.seq + e.seq * f.seq) \
             FROM events a, events b, events c, events d, events e, events f",
            None,
        )
        .expect_err("34^6 rows take longer than 300 ms");
    assert!(matches!(error, QueryError::Timeout { .. }), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped promptly: {:?}",
        started.elapsed()
    );
}

#[test]
fn a_query_past_its_memory_limit_fails_without_spilling() {
    let (_dir, path) = billing_trace();
    let limits = Limits {
        memory_limit_mib: 1,
        ..Limits::default()
    };
    let session = QuerySession::open_with_limits(&path, limits).expect("open");
    let error = session
        .sql(
            "SELECT a.args || b.args || c.args AS x FROM events a, events b, events c ORDER BY x",
            None,
        )
        .expect_err("sorting 39 thousand long rows needs more than 1 MiB");
    assert!(matches!(error, QueryError::MemoryLimit { .. }), "{error:?}");
}
