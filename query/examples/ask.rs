//! Times each named question on a trace, for the query benchmark
//! (`bench/query/run.sh`): `cargo run --release -p query --example ask -- TRACE [RUNS]`.
//!
//! Prints one JSON object per line: the question, its SQL (what DuckDB is then given),
//! the rows, and the median wall time of RUNS runs (default 5) after one warm-up, on
//! a session opened once; the first line times opening the session.

use std::path::Path;
use std::time::Instant;

use query::{Filters, QuerySession, Question};

fn median_ms(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(trace) = args.next() else {
        eprintln!("usage: ask TRACE [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(5).max(1);
    let started = Instant::now();
    let session = match QuerySession::open(Path::new(&trace)) {
        Ok(session) => session,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let open_ms = started.elapsed().as_secs_f64() * 1e3;
    println!("{}", serde_json::json!({"question": "open", "ms": open_ms}));
    let questions = [
        Question::Gaps,
        Question::Call("Handler3.method4".into()),
        Question::Flow,
        Question::Tree,
        Question::Top(20),
        Question::Slow(20),
        Question::Exceptions,
        Question::Threads,
        Question::Runs,
    ];
    for question in questions {
        let mut samples = Vec::new();
        let mut rows = 0;
        let mut sql = String::new();
        for run in 0..=runs {
            let started = Instant::now();
            match session.ask(&question, &Filters::default()) {
                Ok(answer) => {
                    rows = answer.num_rows();
                    sql = answer.sql;
                }
                Err(e) => {
                    eprintln!("error: {question:?}: {e}");
                    std::process::exit(1);
                }
            }
            if run > 0 {
                samples.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
        println!(
            "{}",
            serde_json::json!({
                "question": question.name(),
                "argument": question.argument(),
                "sql": sql,
                "rows": rows,
                "ms": median_ms(samples),
            })
        );
    }
}
