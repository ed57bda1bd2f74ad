//! The Python text the target's main thread runs: a fixed loader around the caller's
//! source.
//!
//! `PyRun_SimpleString` runs its text in `__main__.__dict__` and, if it raises, prints
//! the traceback and returns -1, which the eval loop then turns into a `SystemError`
//! in the program (research notes, §5.2). So the text given to it is one statement
//! that binds no name and cannot raise:
//!
//! ```text
//! try:
//!  __import__('builtins').exec(<DRIVER>, {'__name__': '__tracer__', '_tracer_source': <source>, '_tracer_dir': <dir>})
//! except BaseException:
//!  pass
//! ```
//!
//! (`exec` is reached through `builtins` so that a program with its own global
//! `exec` or `compile` cannot capture it; no `as` clause, which would delete a global.)
//! [`DRIVER`] runs in that fresh dict. It first claims the injection by renaming
//! `<dir>/armed` to `<dir>/started`; when the tracer gave up and withdrew it (removed
//! the file or the directory), the rename fails and the driver does nothing, so a
//! call that runs late is harmless. Then it compiles and runs the source in another
//! fresh dict `{'__name__': '__tracer__'}` (a `SyntaxError` is raised there, inside
//! the `try`), catches every `BaseException` (`SystemExit`, `KeyboardInterrupt`
//! included), and writes `ok` or `raised <type>: <message>` to `<dir>/result`
//! (through a rename, so the tracer never reads half a file).

use std::fmt::Write;

/// Runs in its own dict; `_tracer_source` and `_tracer_dir` are set by the loader.
pub(crate) const DRIVER: &str = "\
import os
try:
    os.rename(_tracer_dir + '/armed', _tracer_dir + '/started')
    _claimed = True
except BaseException:
    _claimed = False
if _claimed:
    try:
        exec(compile(_tracer_source, '<tracer>', 'exec', dont_inherit=True), {'__name__': '__tracer__'})
        _result = 'ok'
    except BaseException as _error:
        try:
            _result = 'raised ' + type(_error).__name__ + ': ' + str(_error)
        except BaseException:
            _result = 'raised'
    try:
        with open(_tracer_dir + '/result.tmp', 'w', encoding='utf-8', errors='replace') as _file:
            _file.write(_result)
        os.rename(_tracer_dir + '/result.tmp', _tracer_dir + '/result')
    except BaseException:
        pass
";

/// The text handed to `PyRun_SimpleString`: the loader around `source`, reporting in
/// `dir` (a path as the target sees it). Pure ASCII, no NUL, no newline inside the
/// literals, whatever `source` holds.
pub(crate) fn loader_text(source: &str, dir: &str) -> String {
    format!(
        "try:\n __import__('builtins').exec({}, {{'__name__': '__tracer__', \
         '_tracer_source': {}, '_tracer_dir': {}}})\nexcept BaseException:\n pass\n",
        python_literal(DRIVER),
        python_literal(source),
        python_literal(dir)
    )
}

/// A single-quoted Python `str` literal of `text` in ASCII: quotes, backslashes and
/// every character outside printable ASCII are escaped (`\n`, `\xHH`, `\uHHHH`,
/// `\UHHHHHHHH`).
pub(crate) fn python_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        let code = c as u32;
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            ' '..='~' => out.push(c),
            _ if code < 0x100 => {
                let _ = write!(out, "\\x{code:02x}");
            }
            _ if code < 0x10000 => {
                let _ = write!(out, "\\u{code:04x}");
            }
            _ => {
                let _ = write!(out, "\\U{code:08x}");
            }
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs `loader_text(source, dir)` the way `PyRun_SimpleString` does (in
    /// `__main__`'s dict) in a real 3.12, then prints whether `__main__` gained or lost
    /// a name, and the result file.
    fn run_loader(source: &str, armed: bool) -> (String, String) {
        let python = e2e::pyenv_interpreter(12)
            .expect("the loader tests need pyenv's Python 3.12 (under ~/.pyenv/versions/3.12.*)")
            .path;
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tracer-loader-test-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create test dir");
        if armed {
            std::fs::write(dir.join("armed"), b"").expect("arm");
        }
        let text = loader_text(source, dir.to_str().expect("utf-8 temp dir"));
        let harness = "import sys, __main__\n\
                       e = 'user e'\n\
                       def compile(*a): raise RuntimeError('user compile')\n\
                       def exec(*a): raise RuntimeError('user exec')\n\
                       builtins_exec = __builtins__.exec\n\
                       before = after = None\n\
                       before = set(vars(__main__))\n\
                       builtins_exec(sys.argv[1], vars(__main__))\n\
                       after = set(vars(__main__))\n\
                       print(sorted(after ^ before), e)\n";
        let out = Command::new(&python)
            .args(["-c", harness, &text])
            .output()
            .expect("run python");
        let result = std::fs::read_to_string(dir.join("result")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            out.stderr.is_empty(),
            "the loader wrote to stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (String::from_utf8_lossy(&out.stdout).into_owned(), result)
    }

    #[test]
    fn literals_of_awkward_text_are_ascii_without_nul_or_newline() {
        let lit = python_literal("a'b\"c\\d\ne\0f\u{e9}\u{20ac}\u{1f600}\t'''");
        assert!(lit.is_ascii());
        assert!(!lit.contains('\0') && !lit.contains('\n'));
        assert_eq!(
            lit,
            "'a\\'b\"c\\\\d\\ne\\x00f\\xe9\\u20ac\\U0001f600\\x09\\'\\'\\''"
        );
    }

    #[test]
    fn the_source_runs_in_its_own_namespace_and_main_is_untouched() {
        let source = "import __main__\nx = 'caf\u{e9} \u{1f600} \\'\"\\0'\n\
                      assert __name__ == '__tracer__'\n\
                      assert 'builtins_exec' in vars(__main__)\n\
                      assert x == 'caf\u{e9} \u{1f600} ' + chr(39) + chr(34) + chr(0)\n";
        let (stdout, result) = run_loader(source, true);
        assert_eq!(stdout.trim(), "[] user e");
        assert_eq!(result, "ok");
    }

    #[test]
    fn exceptions_syntax_errors_and_exit_are_reported_not_raised() {
        for (source, expected) in [
            ("raise ValueError('boom')", "raised ValueError: boom"),
            ("def f(:\n", "raised SyntaxError: "),
            ("import sys; sys.exit(3)", "raised SystemExit: 3"),
            ("raise KeyboardInterrupt", "raised KeyboardInterrupt: "),
        ] {
            let (stdout, result) = run_loader(source, true);
            assert_eq!(stdout.trim(), "[] user e", "for {source:?}");
            assert!(
                result.starts_with(expected),
                "for {source:?}: result {result:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn a_withdrawn_injection_does_nothing() {
        let (stdout, result) = run_loader("print('should not run')", false);
        assert_eq!(stdout.trim(), "[] user e");
        assert_eq!(result, "");
    }
}
