//! `tracer view` on a real trace of tests/scripts/workload.py: one HTML file that needs
//! no network, opened in headless Chromium, where the call tree, the timeline of each
//! thread and the per-function table show the workload's functions, with no console
//! error. The screenshot is kept beside the trace (`view.png`) for a person to look at.

use std::collections::BTreeSet;
use std::process::Command;

use e2e::browser::open_page;
use e2e::{pyenv_interpreter, record_script, tracer_bin};
use serde_json::Value;

/// What the page shows, read from its DOM once the timeline is drawn.
const PAGE_CONTENTS: &str = r##"({
  tree: document.getElementById("tree").innerText,
  rects: [...document.querySelectorAll("#timeline svg rect")].map((r) => r.dataset.name),
  labels: [...document.querySelectorAll("#timeline svg text")].map((t) => t.textContent),
  lanes: [...document.querySelectorAll("#timeline .thread-title")].map((t) => t.textContent),
  table: [...document.querySelectorAll("#functions td.fn")].map((t) => t.textContent),
  header: document.querySelector("header").innerText,
  laneWidth: document.querySelector("#timeline svg") ?
    document.querySelector("#timeline svg").getBoundingClientRect().width : 0,
})"##;

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[test]
fn view_page_renders_tree_timeline_and_table_offline_in_chromium() {
    let python = pyenv_interpreter(13).expect("CPython 3.13 is missing: `pyenv install 3.13`");
    let run = record_script(&python.path, "workload.py", &[], "view-3.13");
    let functions: BTreeSet<String> = run
        .printed("RESULTS ")
        .expect("workload.py prints RESULTS")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["function"].as_str().map(|f| format!("__main__.{f}")))
        .collect();

    let page = run.dir.join("view.html");
    let out = Command::new(tracer_bin())
        .arg("view")
        .arg(&run.trace)
        .arg("-o")
        .arg(&page)
        .output()
        .expect("run tracer view");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        page.display().to_string(),
        "view prints the page's path"
    );

    // Self-contained: no script, style sheet or image is loaded from anywhere.
    let html = std::fs::read_to_string(&page).expect("read the page");
    for outside in ["<script src", "<link", "@import", "url(", "<img", "<iframe"] {
        assert!(
            !html.contains(outside),
            "the page loads something ({outside})"
        );
    }

    let screenshot = run.dir.join("view.png");
    let report = open_page(
        &format!("file://{}", page.display()),
        &screenshot,
        "document.querySelectorAll('#timeline svg rect').length > 0 && \
         document.querySelectorAll('#functions td').length > 0",
        PAGE_CONTENTS,
        None,
    );
    assert!(report.ready, "the page never drew its timeline: {report:?}");
    assert!(
        report.errors().is_empty(),
        "errors on the page: {:?}",
        report.errors()
    );
    let shot = std::fs::metadata(&screenshot).expect("a screenshot").len();
    assert!(
        shot > 10_000,
        "the screenshot is {shot} bytes: an empty page?"
    );

    let tree = report.value["tree"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let rects: BTreeSet<String> = strings(&report.value["rects"]).into_iter().collect();
    let labels = strings(&report.value["labels"]).join("\n");
    let table: BTreeSet<String> = strings(&report.value["table"]).into_iter().collect();
    let lanes = strings(&report.value["lanes"]).join("\n");
    for function in &functions {
        assert!(
            tree.contains(function.as_str()),
            "the tree shows no {function}"
        );
        assert!(rects.contains(function), "the timeline draws no {function}");
        assert!(table.contains(function), "the table lists no {function}");
    }
    assert!(
        labels.contains("__main__.main"),
        "the timeline labels its widest calls: {labels}"
    );
    // One lane and one tree per thread, under the name the trace knows for it.
    let threads = Command::new(tracer_bin())
        .arg("query")
        .arg(&run.trace)
        .args(["--threads", "--format", "json"])
        .output()
        .expect("run tracer query");
    let threads: Value = serde_json::from_slice(&threads.stdout).expect("JSON answer");
    let threads = threads["rows"].as_array().cloned().unwrap_or_default();
    assert!(threads.len() >= 3, "the main thread and two workers");
    assert_eq!(
        strings(&report.value["lanes"]).len(),
        threads.len(),
        "one lane per thread: {lanes}"
    );
    for thread in &threads {
        let tid = thread["tid"].as_i64().unwrap_or(0);
        let label = match thread["thread_name"].as_str() {
            Some(name) => format!("{name} (tid {tid})"),
            None => format!("tid {tid}"),
        };
        assert!(
            lanes.contains(&label),
            "no timeline lane for {label}: {lanes}"
        );
        assert!(tree.contains(&label), "no tree for {label}");
    }
    // Arguments in the tree, as the program passed them, and calls into untraced code.
    assert!(
        tree.contains("__main__.outer(rounds=3)"),
        "outer's argument: {tree}"
    );
    assert!(
        tree.contains("__main__.encode(payload={'a': 1})"),
        "encode's argument: {tree}"
    );
    assert!(
        tree.contains("untraced: json.dumps x"),
        "encode's untraced calls: {tree}"
    );
    assert!(
        report.value["laneWidth"].as_f64().unwrap_or(0.0) > 1000.0,
        "the timeline spans the window"
    );
    assert!(
        report.value["header"]
            .as_str()
            .unwrap_or_default()
            .contains("workload.py"),
        "the header names the command"
    );
}
