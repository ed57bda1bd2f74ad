//! How the command line reports failure: one `error:` line, an optional `hint:` line,
//! and an exit code (1 error, 2 usage error), as DESIGN.md says.

use std::fmt;

/// An error on its way to the user.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub hint: Option<String>,
    pub code: i32,
}

impl CliError {
    /// An error (exit code 1).
    pub fn new(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            hint: None,
            code: 1,
        }
    }

    /// A usage error (exit code 2).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: 2,
            ..CliError::new(message)
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }

    /// Prints the error to stderr.
    pub fn report(&self) {
        eprintln!("error: {}", self.message);
        if let Some(hint) = &self.hint {
            eprintln!("hint: {hint}");
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    /// A command line clap could not parse, as one `error:` line and a `hint:` line
    /// like every other error (exit code 2). clap's own text spreads one error over
    /// several lines (a list of missing arguments, a tip, the usage); the list is
    /// joined into the error line, and the tip, or else the usage, becomes the hint,
    /// which names `subcommand`'s `--help` (the subcommand given, if any).
    pub fn from_clap(e: &clap::Error, subcommand: Option<&str>) -> CliError {
        let text = e.render().to_string();
        let mut message = String::new();
        let mut tip = None;
        let mut usage = None;
        for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
            if let Some(rest) = line.strip_prefix("error:") {
                message.push_str(rest.trim());
            } else if let Some(rest) = line.strip_prefix("tip:") {
                tip.get_or_insert_with(|| rest.trim().to_string());
            } else if let Some(rest) = line.strip_prefix("Usage:") {
                usage = Some(rest.trim().to_string());
            } else if line.starts_with("For more information") {
                continue;
            } else if usage.is_none() && tip.is_none() {
                // A continuation of the error, such as a missing argument's name.
                let joined = message.trim_end_matches(':').to_string();
                message = format!("{joined}: {line}");
            }
        }
        let help = match subcommand {
            Some(name) => format!("tracer {name} --help lists the options"),
            None => "tracer --help lists the commands".to_string(),
        };
        let hint = match (tip, usage) {
            (Some(tip), _) => format!("{tip}; {help}"),
            (None, Some(usage)) => format!("usage: {usage}; {help}"),
            (None, None) => help,
        };
        CliError::usage(message).hint(hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use clap::Parser;

    #[derive(Parser, Debug)]
    #[command(name = "tracer")]
    enum Commands {
        Attach {
            #[arg(long)]
            pid: u32,
        },
    }

    fn parse_error(args: &[&str]) -> CliError {
        CliError::from_clap(&Commands::try_parse_from(args).unwrap_err(), Some("attach"))
    }

    #[test]
    fn a_bad_value_is_one_error_line_and_a_hint() {
        let e = parse_error(&["tracer", "attach", "--pid", "abc"]);
        assert_eq!(e.code, 2);
        assert!(
            e.message
                .starts_with("invalid value 'abc' for '--pid <PID>'"),
            "{e:?}"
        );
        assert!(!e.message.contains('\n'), "{e:?}");
        let hint = e.hint.unwrap();
        assert!(hint.contains("tracer attach --help"), "{hint}");
    }

    #[test]
    fn missing_arguments_are_named_on_the_error_line() {
        let e = parse_error(&["tracer", "attach"]);
        assert_eq!(
            e.message,
            "the following required arguments were not provided: --pid <PID>"
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("usage: tracer attach --pid <PID>; tracer attach --help lists the options")
        );
    }

    #[test]
    fn an_unknown_argument_gets_the_usage_as_hint() {
        let e = parse_error(&["tracer", "attach", "--pid", "1", "--bogus"]);
        assert_eq!(e.message, "unexpected argument '--bogus' found");
        assert_eq!(
            e.hint.as_deref(),
            Some("usage: tracer attach --pid <PID>; tracer attach --help lists the options")
        );
    }
}
