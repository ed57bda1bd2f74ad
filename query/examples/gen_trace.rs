//! Writes a large synthetic trace for the query benchmark (`bench/query/run.sh`):
//! `cargo run --release -p query --example gen_trace -- OUT.parquet [EVENTS]`
//! (default 10,000,000 events).
//!
//! The workload: a main thread and four workers serving requests; each request is a
//! tree of nested calls (up to 7 deep) over 300 functions in 30 modules, with
//! untraced calls (gap rows, about 2% of calls) and exceptions (about 0.5%).

#[path = "../tests/support/mod.rs"]
mod support;

use support::{run_metadata, CallId, TraceBuilder};

/// A small deterministic generator (xorshift64*), so every run writes the same trace.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const MODULES: usize = 30;
const FUNCTIONS_PER_MODULE: usize = 10;
const WORKERS: i64 = 4;
const MAX_DEPTH: u64 = 7;

fn function_name(module: usize, function: usize) -> (String, String) {
    let module_name = match module % 3 {
        0 => format!("shop.orders.m{module}"),
        1 => format!("shop.billing.m{module}"),
        _ => format!("shop.util.m{module}"),
    };
    let function_name = if function.is_multiple_of(2) {
        format!("Handler{module}.method{function}")
    } else {
        format!("func{function}")
    };
    (module_name, function_name)
}

fn request(t: &mut TraceBuilder, tid: i64, rng: &mut Rng, depth: u64) {
    let module = rng.below(MODULES as u64) as usize;
    let function = rng.below(FUNCTIONS_PER_MODULE as u64) as usize;
    let (module_name, function_name) = function_name(module, function);
    let args = format!(
        "{{\"self\": \"<{module_name}.Handler object at 0x7f{:06x}>\", \"n\": \"{}\"}}",
        rng.below(1 << 24),
        rng.below(1000)
    );
    let call: CallId = t.call(
        tid,
        &module_name,
        &function_name,
        (function * 10 + 1) as i32,
        (rng.below(400) + 1) as i32,
        &args,
    );
    t.advance(rng.below(20_000) as i64);
    if depth < MAX_DEPTH {
        let children = rng.below(if depth < 2 { 5 } else { 3 });
        for _ in 0..children {
            request(t, tid, rng, depth + 1);
        }
    }
    if rng.below(50) == 0 {
        let (gap_module, gap_function) = match rng.below(3) {
            0 => ("json", "dumps"),
            1 => ("re", "compile"),
            _ => ("socket", "socket.recv"),
        };
        t.gap(
            tid,
            gap_module,
            gap_function,
            (rng.below(3) + 1) as u32,
            5_000,
        );
    }
    t.advance(rng.below(10_000) as i64);
    if rng.below(200) == 0 {
        t.raise(
            tid,
            call,
            "ValueError",
            "invalid literal for int() with base 10: 'x'",
        );
    } else {
        t.ret(tid, call, &rng.below(100_000).to_string());
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next() else {
        eprintln!("usage: gen_trace OUT.parquet [EVENTS]");
        std::process::exit(2);
    };
    let events: usize = match args.next().map(|n| n.parse()) {
        None => 10_000_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("EVENTS: {e}");
            std::process::exit(2);
        }
    };
    let metadata = run_metadata(
        "66320f00bench0000001",
        &["python3", "-m", "shop.server", "--port", "8080"],
        "exact",
        "completed",
    );
    let mut t = TraceBuilder::exact(metadata);
    let mut writer = t.streaming_writer(std::path::Path::new(&out), events);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let main_tid = 100;
    t.thread(main_tid, "MainThread");
    let root = t.call(main_tid, "__main__", "<module>", 1, 0, "{}");
    let mut roots = Vec::new();
    for worker in 1..=WORKERS {
        let tid = main_tid + worker;
        t.thread(tid, &format!("worker-{worker}"));
        roots.push((tid, t.call(tid, "shop.server", "Worker.run", 40, 0, "{}")));
    }
    let mut written = 0;
    let reserve = 2 + 2 * roots.len();
    while written + t.rows() + reserve + 200 < events {
        let tid = main_tid + 1 + rng.below(WORKERS as u64) as i64;
        request(&mut t, tid, &mut rng, 1);
        if t.rows() >= 500_000 {
            written += t.rows();
            t.flush_to(&mut writer);
        }
    }
    for (tid, call) in roots {
        t.ret(tid, call, "None");
    }
    t.ret(main_tid, root, "None");
    written += t.rows();
    t.flush_to(&mut writer);
    if let Err(e) = writer.close() {
        eprintln!("closing {out}: {e}");
        std::process::exit(1);
    }
    println!("wrote {written} events to {out}");
}
