//! Samples a running Python process for a while and prints what it cost, as one
//! JSON object: the sampler's own cost without a trace writer (bench/sampling/run.sh
//! measures whole `tracer record` runs against py-spy).
//!
//! ```text
//! cargo run --release -p attach --example sample_pid -- PID SECONDS RATE_HZ [--include GLOB]...
//! ```
//!
//! Events are counted, not kept. `cpu_us_per_sample` is the sampler's own CPU time
//! (user + system, from `getrusage`) divided by the samples taken, waking up
//! included; `work_us_per_sample` is the time spent inside samples only.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use attach::event::SinkError;
use attach::{Event, EventSink, PythonProcess, Sampler, SamplerOptions};

/// Counts events instead of keeping them.
#[derive(Default)]
struct Counter {
    events: u64,
}

impl EventSink for Counter {
    fn event(&mut self, _event: &mut Event) -> Result<(), SinkError> {
        self.events += 1;
        Ok(())
    }
}

/// This process's CPU time so far (user + system), in microseconds.
fn cpu_us() -> i64 {
    // SAFETY: getrusage fills one rusage struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let us = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
    us(usage.ru_utime) + us(usage.ru_stime)
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: sample_pid PID SECONDS RATE_HZ [--include GLOB]...";
    let [pid, seconds, rate, rest @ ..] = args.as_slice() else {
        return Err(usage.into());
    };
    let pid: i32 = pid
        .parse()
        .map_err(|_| format!("bad pid {pid:?}; {usage}"))?;
    let seconds: f64 = seconds
        .parse()
        .map_err(|_| format!("bad seconds {seconds:?}; {usage}"))?;
    let rate_hz: u32 = rate
        .parse()
        .map_err(|_| format!("bad rate {rate:?}; {usage}"))?;
    let mut include = Vec::new();
    let mut rest = rest.iter();
    while let Some(flag) = rest.next() {
        match (flag.as_str(), rest.next()) {
            ("--include", Some(glob)) => include.push(glob.clone()),
            _ => return Err(usage.into()),
        }
    }
    let process = PythonProcess::open(pid).map_err(|e| e.to_string())?;
    let options = SamplerOptions {
        rate_hz,
        include,
        ..SamplerOptions::default()
    };
    let mut sampler = Sampler::new(process, options).map_err(|e| e.to_string())?;
    let mut sink = Counter::default();
    let stop = AtomicBool::new(false);
    let cpu_before = cpu_us();
    let started = Instant::now();
    let reason = sampler
        .run(
            &mut sink,
            &stop,
            Some(started + Duration::from_secs_f64(seconds)),
        )
        .map_err(|e| e.to_string())?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_us() - cpu_before;
    sampler.finish(&mut sink).map_err(|e| e.to_string())?;
    let stats = sampler.stats();
    let per_sample = cpu as f64 / stats.samples.max(1) as f64;
    println!(
        "{{\"pid\": {pid}, \"rate_hz\": {rate_hz}, \"seconds\": {wall:.3}, \"stop\": \"{reason:?}\", \
         \"samples\": {}, \"achieved_hz\": {:.1}, \"late_samples\": {}, \"sample_errors\": {}, \
         \"events\": {}, \"calls\": {}, \"returns\": {}, \"gaps\": {}, \"cpu_us\": {cpu}, \
         \"cpu_us_per_sample\": {per_sample:.2}, \"work_us_per_sample\": {:.2}, \"cpu_core_share\": {:.3}}}",
        stats.samples,
        stats.samples as f64 / wall,
        stats.late_samples,
        stats.sample_errors,
        sink.events,
        stats.calls,
        stats.returns,
        stats.gaps,
        stats.sampling_ns as f64 / 1e3 / stats.samples.max(1) as f64,
        cpu as f64 / 1e6 / wall,
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
