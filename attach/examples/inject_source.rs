//! Makes a running Python 3.12 / 3.13 process run some Python source on its main
//! thread, `COUNT` times, and prints what happened and how long the main thread was
//! held in ptrace stops, one line per injection:
//!
//! ```text
//! cargo run --release -p attach --example inject_source -- PID 'SOURCE' [COUNT] [WAIT_SECONDS]
//! ```

use std::process::ExitCode;
use std::time::Duration;

use attach::inject::{run_python_source, InjectOptions, Injected};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(pid), Some(source)) = (args.first().and_then(|p| p.parse().ok()), args.get(1)) else {
        eprintln!("usage: inject_source PID 'SOURCE' [COUNT] [WAIT_SECONDS]");
        return ExitCode::from(2);
    };
    let count: u32 = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(1);
    let wait = args
        .get(3)
        .and_then(|w| w.parse().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(5));
    let options = InjectOptions {
        wait,
        ..InjectOptions::default()
    };
    let mut stops = Vec::new();
    for _ in 0..count {
        match run_python_source(pid, source, &options) {
            Ok(Injected::Ran(ran)) => {
                println!(
                    "ran: {:?}, waited {:.2?}, main thread stopped {:.1?} in all, pages unmapped: {}",
                    ran.outcome, ran.waited, ran.stopped, ran.unmapped
                );
                stops.push(ran.stopped);
            }
            Ok(Injected::Queued(queued)) => {
                println!("queued: {queued} (withdrawn)");
            }
            Err(e) => {
                eprintln!("error: {e}");
                if let Some(hint) = e.hint() {
                    eprintln!("hint: {hint}");
                }
                return ExitCode::FAILURE;
            }
        }
    }
    if !stops.is_empty() {
        stops.sort();
        println!(
            "stopped per injection (both stops): median {:.1?}, max {:.1?} over {}",
            stops[stops.len() / 2],
            stops[stops.len() - 1],
            stops.len()
        );
    }
    ExitCode::SUCCESS
}
