//! `tracer dump` against real interpreters: a target whose threads each stop at a
//! known place (tests/scripts/dump_target.py), checked frame by frame, and compared
//! with py-spy's view of the same process.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use e2e::{line_markers, matrix, script, test_venv_python, tracer_bin, Interpreter, Target};
use serde_json::Value;

struct Dumped {
    target: Target,
    json: Value,
}

fn dump_target(interp: &Interpreter, extra: &[&str]) -> Dumped {
    let mut target = Target::start(&interp.path, &script("dump_target.py"), &[]);
    target.wait_for("READY", Duration::from_secs(30));
    let json = dump_json(target.pid(), extra, &interp.label);
    Dumped { target, json }
}

fn dump_json(pid: i32, extra: &[&str], label: &str) -> Value {
    let out = Command::new(tracer_bin())
        .args(["dump", "--pid", &pid.to_string(), "--format", "json"])
        .args(extra)
        .output()
        .expect("run tracer dump");
    assert!(
        out.status.success(),
        "{label}: tracer dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{label}: dump is not JSON: {e}"))
}

fn thread<'a>(dump: &'a Value, name: &str) -> &'a Value {
    dump["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no thread named {name} in {dump:#}"))
}

/// `(function, line)` of a thread's frames, innermost first.
fn frames(thread: &Value) -> Vec<(String, i64)> {
    thread["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| {
            (
                f["function"].as_str().unwrap_or("").to_string(),
                f["line"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

fn args(frame: &Value) -> HashMap<String, String> {
    frame["args"]
        .as_object()
        .expect("args object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect()
}

/// The qualified name on 3.11+ (`co_qualname`), the bare or self-derived one before.
fn qual<'a>(interp: &Interpreter, modern: &'a str, legacy: &'a str) -> &'a str {
    if interp.minor >= 11 {
        modern
    } else {
        legacy
    }
}

#[test]
fn dump_shows_every_thread_stack_line_and_argument_on_every_interpreter() {
    let lines = line_markers(&script("dump_target.py"));
    let unicode_lines = line_markers(&script("módulo_ü.py"));
    let l = |name: &str| lines[name];
    for interp in matrix() {
        let label = &interp.label;
        let d = dump_target(&interp, &[]);
        let dump = &d.json;
        let pid = d.target.pid();
        assert_eq!(dump["pid"], pid, "{label}");
        assert!(
            dump["python_version"]
                .as_str()
                .unwrap()
                .starts_with(&format!("3.{}.", interp.minor)),
            "{label}: version {}",
            dump["python_version"]
        );

        // Main thread first: 120 recursive frames under main(), with login on top.
        let main = &dump["threads"][0];
        assert_eq!(main["is_main"], true, "{label}");
        assert_eq!(main["tid"], pid, "{label}");
        assert_eq!(main["name"], "MainThread", "{label}");
        assert_eq!(main["state"], "idle", "{label}: {main:#}");
        let main_frames = frames(main);
        assert_eq!(
            main_frames[0],
            ("login".to_string(), l("login_sleep")),
            "{label}"
        );
        assert_eq!(
            main_frames[1],
            ("recurse".to_string(), l("login_call")),
            "{label}"
        );
        for (i, f) in main_frames[2..122].iter().enumerate() {
            assert_eq!(
                f,
                &("recurse".to_string(), l("recurse")),
                "{label}: recurse frame {i}"
            );
        }
        assert_eq!(
            main_frames[122],
            ("main".to_string(), l("main_recurse")),
            "{label}"
        );
        assert_eq!(
            main_frames[123],
            ("<module>".to_string(), l("module_main")),
            "{label}"
        );
        assert_eq!(main_frames.len(), 124, "{label}");
        let login = args(&main["frames"][0]);
        assert_eq!(login["user"], "'alice'", "{label}");
        assert_eq!(login["password"], "[REDACTED]", "{label}: secret by name");
        assert_eq!(login["note"], "[REDACTED]", "{label}: secret by value");
        assert_eq!(args(&main["frames"][1])["n"], "0", "{label}");
        assert_eq!(args(&main["frames"][121])["n"], "120", "{label}");
        assert_eq!(main["frames"][0]["module"], "__main__", "{label}");

        let sleeper = thread(dump, "sleeper");
        let f = frames(sleeper);
        assert_eq!(
            f[0],
            (
                qual(&interp, "Worker.run_sleep.<locals>.inner", "inner").to_string(),
                l("inner_sleep")
            ),
            "{label}"
        );
        assert_eq!(
            f[1],
            ("Worker.run_sleep".to_string(), l("run_sleep_call")),
            "{label}"
        );
        assert_eq!(args(&sleeper["frames"][0])["depth"], "1", "{label}");
        let run_sleep_args = args(&sleeper["frames"][1]);
        assert_eq!(run_sleep_args["seconds"], "1000", "{label}");
        assert!(
            run_sleep_args["self"].starts_with("<__main__.Worker object at 0x"),
            "{label}: {}",
            run_sleep_args["self"]
        );
        assert!(
            f.iter().any(|(func, _)| func.ends_with("_bootstrap")),
            "{label}: {f:?}"
        );
        assert_eq!(sleeper["state"], "idle", "{label}");
        assert_eq!(sleeper["is_main"], false, "{label}");

        let reader = thread(dump, "socket-reader");
        assert_eq!(
            frames(reader)[0],
            ("read_socket".to_string(), l("recv")),
            "{label}"
        );
        assert_eq!(reader["state"], "blocked", "{label}: {reader:#}");
        assert_eq!(reader["syscall"]["name"], "recvfrom", "{label}: {reader:#}");
        let fd_target = reader["syscall"]["fd_target"].as_str().unwrap_or("");
        assert!(
            fd_target.starts_with("tcp 127.0.0.1:") && fd_target.contains(" -> 127.0.0.1:"),
            "{label}: fd target {fd_target:?}"
        );

        let spinner = thread(dump, "spinner");
        assert_eq!(
            frames(spinner)[0],
            ("spin".to_string(), l("spin")),
            "{label}"
        );
        let gil_holders: Vec<&Value> = dump["threads"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["holds_gil"] == true)
            .collect();
        assert!(
            gil_holders.iter().all(|t| t["name"] == "spinner"),
            "{label}: only the spinning thread may hold the GIL, got {:?}",
            gil_holders.iter().map(|t| &t["name"]).collect::<Vec<_>>()
        );

        let generator = thread(dump, "generator");
        let f = frames(generator);
        assert_eq!(f[0], ("gen_values".to_string(), l("gen_sleep")), "{label}");
        assert_eq!(
            f[1],
            ("consume_generator".to_string(), l("gen_consume")),
            "{label}"
        );
        assert_eq!(args(&generator["frames"][0])["count"], "1", "{label}");

        let asyncio = thread(dump, "asyncio");
        let f = frames(asyncio);
        assert_eq!(f[0], ("handler".to_string(), l("async_sleep")), "{label}");
        assert_eq!(args(&asyncio["frames"][0])["request_id"], "7", "{label}");
        assert!(
            f.contains(&("run_async".to_string(), l("async_run"))),
            "{label}: {f:?}"
        );

        let lambda = thread(dump, "lambda");
        let f = frames(lambda);
        assert_eq!(
            f[0],
            (
                qual(&interp, "call_lambda.<locals>.<lambda>", "<lambda>").to_string(),
                l("lambda")
            ),
            "{label}"
        );
        assert_eq!(args(&lambda["frames"][0])["q"], "1000", "{label}");

        let unicode = thread(dump, "unicode");
        assert_eq!(
            frames(unicode)[0],
            ("größe".to_string(), unicode_lines["groesse_sleep"]),
            "{label}"
        );
        assert_eq!(unicode["frames"][0]["module"], "módulo_ü", "{label}");
        assert!(
            unicode["frames"][0]["file"]
                .as_str()
                .unwrap()
                .ends_with("módulo_ü.py"),
            "{label}"
        );
        assert_eq!(args(&unicode["frames"][0])["wert"], "42", "{label}");

        let values = thread(dump, "values");
        assert_eq!(
            frames(values)[0],
            ("values".to_string(), l("values_sleep")),
            "{label}"
        );
        let a = args(&values["frames"][0]);
        let expect = [
            ("none", "None"),
            ("flag", "True"),
            ("small", "7"),
            ("big", "1267650600228229401496703205376"),
            ("neg", "-12"),
            ("fl", "1.5"),
            ("text", "\"it's\""),
            ("data", "b'\\x00ab'"),
            ("items", "[1, [2, 3]]"),
            ("pair", "(1,)"),
            ("mapping", "{'a': 1, 'token': [REDACTED]}"),
            ("numbers", "{3}"),
            ("rest", "('extra1',)"),
            ("key", "'v'"),
            ("extra", "{'flag2': False}"),
        ];
        for (name, repr) in expect {
            assert_eq!(
                a.get(name).map(String::as_str),
                Some(repr),
                "{label}: argument {name}"
            );
        }
        assert!(
            a["obj"].starts_with("<__main__.Payment object at 0x"),
            "{label}: {}",
            a["obj"]
        );
        let order: Vec<&String> = values["frames"][0]["args"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(
            order,
            [
                "none", "flag", "small", "big", "neg", "fl", "text", "data", "items", "pair",
                "mapping", "numbers", "obj", "key", "rest", "extra"
            ],
            "{label}: arguments in slot order (positional, keyword-only, *args, **kwargs)"
        );
    }
}

#[test]
fn dump_locals_adds_every_local_variable() {
    for interp in matrix() {
        let d = dump_target(&interp, &["--locals"]);
        let sleeper = thread(&d.json, "sleeper");
        let locals = sleeper["frames"][0]["locals"]
            .as_object()
            .expect("locals with --locals");
        assert_eq!(locals["marker"], "'inner-local'", "{}", interp.label);
        assert_eq!(locals["depth"], "1", "{}", interp.label);
        let without = dump_json(d.target.pid(), &[], &interp.label);
        assert!(
            thread(&without, "sleeper")["frames"][0]
                .get("locals")
                .is_none(),
            "{}",
            interp.label
        );
    }
}

#[test]
fn dump_text_reads_like_py_spy_with_state_columns() {
    let interp = &matrix()[0];
    let mut target = Target::start(&interp.path, &script("dump_target.py"), &[]);
    target.wait_for("READY", Duration::from_secs(30));
    let out = Command::new(tracer_bin())
        .args([
            "dump",
            "--pid",
            &target.pid().to_string(),
            "--format",
            "text",
        ])
        .output()
        .expect("run tracer dump");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let pid = target.pid();
    assert!(text.starts_with(&format!("Process {pid}: ")), "{text}");
    assert!(
        text.contains(&format!("Thread {pid} (idle, main): \"MainThread\"")),
        "{text}"
    );
    assert!(
        text.contains("    login (") && text.contains("dump_target.py:"),
        "{text}"
    );
    assert!(text.contains("            password: [REDACTED]"), "{text}");
    assert!(
        text.contains("    waiting in recvfrom on tcp 127.0.0.1:"),
        "{text}"
    );
}

/// A process stopped with SIGSTOP (or Ctrl-Z) is `stopped` in every thread (a thread
/// stopped outside a system call read as `blocked` in a call named `syscall_-1`);
/// continued, it reads as before.
#[test]
fn a_stopped_process_reads_as_stopped() {
    for interp in [&matrix()[0], &matrix()[matrix().len() - 1]] {
        let label = &interp.label;
        let mut target = Target::start(&interp.path, &script("dump_target.py"), &[]);
        target.wait_for("READY", Duration::from_secs(30));
        let pid = target.pid().to_string();
        let signal = |name: &str| {
            Command::new("kill")
                .args([name, &pid])
                .status()
                .expect("kill");
        };
        signal("-STOP");
        std::thread::sleep(Duration::from_millis(100));
        let dump = dump_json(target.pid(), &[], label);
        signal("-CONT");
        let threads = dump["threads"].as_array().expect("threads");
        assert!(!threads.is_empty(), "{label}");
        // A thread stopped in a system call keeps it (what it was waiting in);
        // one stopped outside any has none.
        for t in threads {
            assert_eq!(t["state"], "stopped", "{label}: {t:#}");
            let call = t["syscall"]["name"].as_str().unwrap_or("");
            assert!(!call.starts_with("syscall_-"), "{label}: {t:#}");
        }
        std::thread::sleep(Duration::from_millis(100));
        let dump = dump_json(target.pid(), &[], label);
        assert_eq!(dump["threads"][0]["state"], "idle", "{label}: continued");
    }
}

/// A process whose main thread has ended (pthread_exit) while another works on is
/// still a live Python process: dump shows the worker's stack, and sampling records
/// its calls (both said the process had exited).
#[test]
fn a_process_whose_main_thread_ended_is_read_through_another_thread() {
    for interp in [&matrix()[0], &matrix()[matrix().len() - 1]] {
        let label = &interp.label;
        let mut target = Target::start(&interp.path, &script("main_thread_exits.py"), &[]);
        target.wait_for("READY", Duration::from_secs(30));
        let dump = dump_json(target.pid(), &[], label);
        let survivor = thread(&dump, "survivor");
        let names: Vec<String> = frames(survivor).into_iter().map(|(f, _)| f).collect();
        assert_eq!(names[..2], ["work", "worker"], "{label}: {names:?}");
        let trace =
            e2e::temp_dir(&format!("main-exited-{}", label.replace('/', "_"))).join("t.parquet");
        let out = e2e::attach_sampled(target.pid(), "0.5", &trace);
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (rows, _) = e2e::read_trace(&trace);
        let works = rows
            .iter()
            .filter(|r| r["function"] == "work" && r["kind"] == "call")
            .count();
        assert!(works >= 5, "{label}: {works} calls of work in 0.5 s");
    }
}

#[test]
fn dump_into_a_reader_that_stops_early_ends_quietly() {
    let interp = &matrix()[0];
    let mut target = Target::start(&interp.path, &script("dump_target.py"), &[]);
    target.wait_for("READY", Duration::from_secs(30));
    for format in ["text", "json"] {
        // `tracer dump --pid P | head -1`: the reader closes the pipe before the
        // dump is written.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(tracer_bin())
            .args([
                "dump",
                "--pid",
                &target.pid().to_string(),
                "--format",
                format,
            ])
            .stdout(writer)
            .output()
            .expect("run tracer dump");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{format}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{format}: {stderr}");
    }
}

/// py-spy's frames for each OS thread: `(name, line)`, innermost first.
fn py_spy_frames(pid: i32) -> HashMap<i64, Vec<(String, i64)>> {
    let venv = test_venv_python();
    let py_spy = venv.parent().expect("venv bin").join("py-spy");
    let out = Command::new(&py_spy)
        .args(["dump", "--pid", &pid.to_string(), "--json"])
        .output()
        .expect("run py-spy dump");
    assert!(
        out.status.success(),
        "py-spy dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("py-spy JSON");
    json.as_array()
        .expect("py-spy threads")
        .iter()
        .map(|t| {
            let frames = t["frames"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    (
                        f["name"].as_str().unwrap_or("").to_string(),
                        f["line"].as_i64().unwrap_or(-1),
                    )
                })
                .collect();
            (t["os_thread_id"].as_i64().unwrap_or(0), frames)
        })
        .collect()
}

#[test]
fn dump_agrees_with_py_spy_on_functions_and_lines() {
    for interp in matrix() {
        let d = dump_target(&interp, &[]);
        let theirs = py_spy_frames(d.target.pid());
        let ours = dump_json(d.target.pid(), &[], &interp.label);
        for t in ours["threads"].as_array().unwrap() {
            if t["name"] == "spinner" {
                continue;
            }
            let tid = t["tid"].as_i64().unwrap();
            let Some(spy) = theirs.get(&tid) else {
                panic!(
                    "{}: py-spy does not see thread {tid} ({})",
                    interp.label, t["name"]
                );
            };
            let mine = frames(t);
            assert_eq!(
                mine.len(),
                spy.len(),
                "{}: thread {}: {mine:?} vs {spy:?}",
                interp.label,
                t["name"]
            );
            for ((func, line), (name, spy_line)) in mine.iter().zip(spy) {
                assert!(
                    func == name || func.ends_with(&format!(".{name}")),
                    "{}: thread {}: function {func} vs py-spy {name}",
                    interp.label,
                    t["name"]
                );
                assert_eq!(
                    line, spy_line,
                    "{}: thread {}: {func}",
                    interp.label, t["name"]
                );
            }
        }
    }
}

/// A process dumped as it exits says it exited: its executable link goes before it
/// is a zombie, and the dump said "not a Python interpreter: it has no executable (a
/// kernel thread)". One dumped right after it was launched is read once Python has
/// set itself up, not refused as not Python while it exec's.
#[test]
fn a_process_dumped_as_it_starts_or_exits_is_not_called_not_python() {
    let interp = &matrix()[0];
    let label = &interp.label;
    // 200 MB to free makes the exit slow enough to be caught in it.
    let program = "big = [bytearray(1 << 20) for _ in range(200)]\n\
                   import time\ntime.sleep(0.3)\n";
    for _ in 0..8 {
        let mut child = Command::new(&interp.path)
            .args(["-c", program])
            .spawn()
            .expect("start python");
        let pid = child.id().to_string();
        let first = Command::new(tracer_bin())
            .args(["dump", "--pid", &pid, "--format", "json"])
            .output()
            .expect("run tracer dump");
        let first_err = String::from_utf8_lossy(&first.stderr);
        // Read, or not ready to be read yet ("not initialised yet"): never "not a
        // Python interpreter".
        assert!(
            first.status.success() || !first_err.contains("not a Python interpreter"),
            "{label}: dump at the start: {first_err}"
        );
        let last = loop {
            let out = Command::new(tracer_bin())
                .args(["dump", "--pid", &pid, "--format", "json"])
                .output()
                .expect("run tracer dump");
            if !out.status.success() {
                break String::from_utf8_lossy(&out.stderr).into_owned();
            }
        };
        child.wait().expect("wait for python");
        assert!(
            last.contains("exited") || last.contains("no process"),
            "{label}: dump as it exited: {last}"
        );
    }
}
