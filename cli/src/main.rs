//! `tracer`: what did this Python process actually do?
//!
//! The binary wires the library crates together: `attach` reads processes, `storage`
//! writes traces, `query` answers questions about them. It owns argument parsing,
//! output formats and the words of every error; no tracing logic lives here.

mod dump;
mod error;
mod target_errors;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;

#[derive(Parser)]
#[command(
    name = "tracer",
    version,
    about = "Shows what a Python process actually did: stacks, calls, arguments, timing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One snapshot of every thread's stack, now.
    Dump(dump::DumpArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match &cli.command {
        Command::Dump(args) => dump::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.report();
            ExitCode::from(e.code as u8)
        }
    }
}

/// Whether stdout is a terminal (a person) rather than a pipe or file (a program).
pub fn stdout_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
}

impl From<attach::Error> for CliError {
    fn from(e: attach::Error) -> CliError {
        target_errors::describe(e)
    }
}
