//! Reading a target whose stacks change underneath, thousands of times: the reader
//! never panics and never returns a frame with a garbage name. Inconsistent reads
//! are errors the caller counts.

use std::collections::HashSet;
use std::time::Duration;

use attach::names::Names;
use attach::snapshot::{take_snapshot, SnapshotOptions};
use attach::{PythonProcess, Walker};
use e2e::{matrix, script, Target};

#[test]
fn thousands_of_reads_of_a_busy_target_never_show_garbage() {
    let known: HashSet<&str> = [
        "f0",
        "f1",
        "f2",
        "f3",
        "f4",
        "f5",
        "f6",
        "churn",
        "<module>",
        "<listcomp>",
        "<genexpr>",
    ]
    .into_iter()
    .collect();
    for interp in matrix() {
        let script_path = script("churn.py");
        let mut target = Target::start(&interp.path, &script_path, &[]);
        target.wait_for("READY", Duration::from_secs(20));
        let process = PythonProcess::open(target.pid()).expect("open target");
        let mut walker = Walker::new(process);
        let mut names = Names::new();
        let opts = SnapshotOptions::default();
        let (mut ok, mut errors) = (0, 0);
        for _ in 0..1000 {
            match take_snapshot(&mut walker, &mut names, &opts) {
                Ok(snap) => {
                    ok += 1;
                    for t in &snap.threads {
                        for f in &t.frames {
                            let from_script = f.file == script_path.to_str().unwrap();
                            let name = f.function.rsplit('.').next().unwrap_or("");
                            if from_script {
                                assert!(
                                    known.contains(name)
                                        || f.function.contains("<locals>")
                                        || name.starts_with('<'),
                                    "{}: garbage function name {:?} in {}",
                                    interp.label,
                                    f.function,
                                    f.file
                                );
                            } else {
                                assert!(
                                    f.file.ends_with("threading.py") || f.file.ends_with(".py"),
                                    "{}: garbage file name {:?}",
                                    interp.label,
                                    f.file
                                );
                            }
                        }
                    }
                }
                Err(_) => errors += 1,
            }
        }
        eprintln!("{}: {ok} of 1000 reads succeeded", interp.label);
        assert!(
            ok > 700,
            "{}: only {ok} of 1000 reads succeeded ({errors} errors)",
            interp.label
        );
    }
}
