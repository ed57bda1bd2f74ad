//! `tracer dump --pid PID [--locals] [--format text|json]`: every thread's state and
//! stack, now, without stopping the process.

use std::fmt::Write as _;

use attach::names::Names;
use attach::repr::ReprOptions;
use attach::snapshot::{take_snapshot, ProcessSnapshot, SnapshotOptions};
use attach::{PythonProcess, Walker};
use clap::{Args, ValueEnum};

use crate::error::{CliError, CliResult};

#[derive(Args)]
pub struct DumpArgs {
    /// The process to read.
    #[arg(long, allow_negative_numbers = true)]
    pid: i32,
    /// Also show every local variable of every frame.
    #[arg(long)]
    locals: bool,
    /// `text` for a person, `json` for a program (default: text on a terminal, json otherwise).
    #[arg(long, value_enum)]
    format: Option<DumpFormat>,
    /// Names whose values are stored as [REDACTED] (added to the built-in secret names).
    #[arg(long = "redact", value_name = "NAME")]
    redact: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum DumpFormat {
    Text,
    Json,
}

pub fn run(args: &DumpArgs) -> CliResult {
    let snapshot = snapshot(args.pid, args.locals, &args.redact)?;
    let format = args.format.unwrap_or(if crate::stdout_is_terminal() {
        DumpFormat::Text
    } else {
        DumpFormat::Json
    });
    let out = match format {
        DumpFormat::Json => serde_json::to_string_pretty(&snapshot)
            .map_err(|e| CliError::new(format!("cannot encode the dump: {e}")))?,
        DumpFormat::Text => render_text(
            &snapshot,
            &crate::trace_cmd::command_line(args.pid, &args.redact).join(" "),
        ),
    };
    crate::output::print_stdout(&format!("{out}\n"))
}

/// One snapshot of every thread of `pid` (with locals when `locals`), values of
/// the `redact` names (and the built-in secret names) redacted.
pub fn snapshot(pid: i32, locals: bool, redact: &[String]) -> CliResult<ProcessSnapshot> {
    let process = PythonProcess::open_named(pid)?;
    let mut walker = Walker::new(process);
    let opts = SnapshotOptions {
        locals,
        repr: ReprOptions {
            redact_names: redact.to_vec(),
            ..ReprOptions::default()
        },
    };
    Ok(take_snapshot(&mut walker, &mut Names::new(), &opts)?)
}

/// The text form: py-spy's dump layout, plus GIL, state and system call columns.
pub fn render_text(s: &ProcessSnapshot, command: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Process {}: {command}", s.pid);
    let _ = writeln!(
        out,
        "Python v{} ({})",
        s.python_version, s.python_executable
    );
    for t in &s.threads {
        let _ = writeln!(out);
        let mut flags = vec![serde_json::to_value(t.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()];
        if t.holds_gil {
            flags.push("holds GIL".into());
        }
        if t.is_main {
            flags.push("main".into());
        }
        let name = t
            .name
            .as_deref()
            .map(|n| format!(" \"{n}\""))
            .unwrap_or_default();
        let _ = writeln!(out, "Thread {} ({}):{name}", t.tid, flags.join(", "));
        if let Some(sc) = &t.syscall {
            match &sc.fd_target {
                Some(target) => {
                    let _ = writeln!(out, "    waiting in {} on {target}", sc.name);
                }
                None => {
                    let _ = writeln!(out, "    waiting in {}", sc.name);
                }
            }
        }
        for f in &t.frames {
            let _ = writeln!(out, "    {} ({}:{})", f.function, f.file, f.line);
            let sections = [("Arguments", Some(&f.args)), ("Locals", f.locals.as_ref())];
            for (title, values) in sections {
                let Some(values) = values.filter(|v| !v.is_empty()) else {
                    continue;
                };
                let _ = writeln!(out, "        {title}:");
                for (k, v) in values {
                    let _ = writeln!(out, "            {k}: {}", v.as_str().unwrap_or_default());
                }
            }
        }
    }
    out
}
