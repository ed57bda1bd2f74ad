//! Recording a target script with `tracer record`, for the tests of what is done with
//! a trace afterwards (questions, exports, the page, the MCP server).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{scripts_dir, target_dir, tracer_bin};

/// A trace recorded from a script, with what the script printed.
#[derive(Debug)]
pub struct Recording {
    /// The trace file.
    pub trace: PathBuf,
    /// A folder of the test's own, holding the trace, for other outputs.
    pub dir: PathBuf,
    /// The script's stdout.
    pub stdout: String,
    /// `tracer record`'s stderr (the run report).
    pub report: String,
}

impl Recording {
    /// The JSON the script printed after `prefix` (`RESULTS `), if it did.
    pub fn printed(&self, prefix: &str) -> Option<Value> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|l| serde_json::from_str(l).ok())
    }
}

/// Records `python tests/scripts/<script> args...` (run from tests/scripts/) into a
/// fresh folder `target/e2e-tmp/<name>-<pid>/`; panics if the recording fails.
pub fn record_script(python: &Path, script: &str, args: &[&str], name: &str) -> Recording {
    let dir = target_dir()
        .join("e2e-tmp")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test's folder");
    let trace = dir.join("t.parquet");
    let out = Command::new(tracer_bin())
        .current_dir(scripts_dir())
        .args(["record", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(python)
        .arg(script)
        .args(args)
        .output()
        .expect("run tracer record");
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && trace.exists(),
        "tracer record {script} with {} wrote no trace: {report}",
        python.display()
    );
    Recording {
        trace,
        dir,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        report,
    }
}
