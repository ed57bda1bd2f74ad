//! `tracer`: what did this Python process actually do?
//!
//! The binary wires the library crates together: `attach` reads processes, `storage`
//! writes traces, `query` answers questions about them. It owns argument parsing,
//! output formats and the words of every error; no tracing logic lives here.

mod dump;
mod error;
mod exact_cmd;
mod export;
mod mcp;
mod output;
mod query_cmd;
mod report;
mod report_cmd;
mod signals;
mod target_errors;
mod trace_cmd;
mod view;

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
    /// Launch a command and trace the Python process(es) it starts.
    Record(trace_cmd::RecordArgs),
    /// Trace a running Python process until Ctrl-C, --duration or its exit.
    Attach(trace_cmd::AttachArgs),
    /// One snapshot of every thread's stack, now.
    Dump(dump::DumpArgs),
    /// Ask a trace: gaps, calls, flow, tree, top, slow, exceptions, threads, runs, SQL.
    Query(Box<query_cmd::QueryArgs>),
    /// Print the run report of a trace again.
    Report(report_cmd::ReportArgs),
    /// Write a trace as a flame graph (SVG), a Chrome trace-event or a speedscope JSON.
    Export(Box<export::ExportArgs>),
    /// Write one self-contained HTML page of a trace: call tree, timelines, functions.
    View(Box<view::ViewArgs>),
    /// Serve the commands as tools of a Model Context Protocol server on stdio.
    Mcp(mcp::McpArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version, and the help a bare `tracer` gets, are printed as
        // clap writes them.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            let e = CliError::from_clap(&e, subcommand_named().as_deref());
            e.report();
            return ExitCode::from(e.code as u8);
        }
    };
    let result = match &cli.command {
        Command::Record(args) => trace_cmd::record(args),
        Command::Attach(args) => trace_cmd::attach(args),
        Command::Dump(args) => dump::run(args).map(|()| 0),
        Command::Query(args) => query_cmd::run(args).map(|()| 0),
        Command::Report(args) => report_cmd::run(args).map(|()| 0),
        Command::Export(args) => export::run(args).map(|()| 0),
        Command::View(args) => view::run(args).map(|()| 0),
        Command::Mcp(args) => mcp::run(args).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            e.report();
            ExitCode::from(e.code as u8)
        }
    }
}

/// The subcommand the command line names (its first word that is one), for the
/// hint of a command line clap could not parse.
fn subcommand_named() -> Option<String> {
    let command = <Cli as clap::CommandFactory>::command();
    std::env::args().skip(1).find(|word| {
        command
            .get_subcommands()
            .any(|sub| sub.get_name() == word.as_str())
    })
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
