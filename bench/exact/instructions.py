"""The cost exact mode puts on the traced program itself, as instructions: the Python
process of each bench/exact workload runs under valgrind's cachegrind (no cache
simulation: it counts the instructions executed), untraced, under exact mode and
under cProfile, and the report gives each row's count over the untraced one.

Wall time on a shared machine moves by tens of percent between identical runs (the
project's 2-core VM ran the same untraced command in 0.39 s and in 0.82 s within a
minute); an instruction count does not move, so a difference of a few percent, such
as what the default include costs a library-heavy program, can be told apart. It
counts the traced process alone: the tracer's own decoding and writing, in a
process of its own, is not in it (bench/exact/run.sh measures the whole). Under
valgrind the program runs some 50 times slower, so the hook's sending thread wakes
more often per event than at full speed: the figures are an upper bound of the
hook's own work.

    python bench/exact/instructions.py

Environment: PY (default pyenv's 3.12.1), TRACER (default target/release/tracer),
VALGRIND (default `valgrind`; Debian's package), FIB_N JSON_N REGEX_N (defaults 22, 2,
100: small, valgrind is slow), RESULTS (default bench/exact/INSTRUCTIONS.md).
"""

import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time

IREFS = re.compile(r"==\d+== I\s+refs:\s+([\d,]+)")
PROCESS_LINE = re.compile(r"pid \d+ \(Python [^)]*\): (?P<mechanism>.*), (?P<events>\d+) events")


def instructions(command, cwd):
    """(instructions of the process valgrind ran, stderr) of one run."""
    done = subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          check=False)
    stderr = done.stderr.decode("utf-8", "replace")
    counts = IREFS.findall(stderr)
    if done.returncode != 0 or not counts:
        sys.stderr.write(stderr)
        raise SystemExit("bench/exact/instructions: failed: %s" % shlex.join(command))
    return int(counts[0].replace(",", "")), stderr


def python_version(python):
    return subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                          capture_output=True, text=True, check=False).stdout.strip()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    python = os.environ.get("PY", "/root/.pyenv/versions/3.12.1/bin/python")
    tracer = os.environ.get("TRACER", os.path.join(root, "target", "release", "tracer"))
    valgrind = shlex.split(os.environ.get("VALGRIND", "valgrind"))
    results = os.environ.get("RESULTS", os.path.join(here, "INSTRUCTIONS.md"))
    for what, path in (("tracer", tracer), ("interpreter", python)):
        if not os.access(path, os.X_OK):
            raise SystemExit("bench/exact/instructions: no %s at %s" % (what, path))
    try:
        subprocess.run(valgrind + ["--version"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit("bench/exact/instructions: no valgrind (apt-get install valgrind, "
                         "or set VALGRIND)")
    out = os.path.join(tempfile.mkdtemp(prefix="tracer-instructions-"), "trace.parquet")
    counted = valgrind + ["--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    exact = [tracer, "record", "--exact", "--force", "-o", out]
    workloads = [
        ("fib", ["fib.py", os.environ.get("FIB_N", "22")]),
        ("json", ["bm_json.py", os.environ.get("JSON_N", "2")]),
        ("regex", ["bm_regex.py", os.environ.get("REGEX_N", "100")]),
    ]
    lines = [
        "# bench/exact instructions",
        "",
        "Written by `bench/exact/instructions.py` on %s: Python %s (`%s`), %s. Instructions"
        " executed by the Python process (valgrind's cachegrind, `--cache-sim=no`), one run"
        " a row (the count does not move between runs); the tracer's own process is not"
        " counted." % (time.strftime("%Y-%m-%d %H:%M"), python_version(python), python,
                       platform.platform()),
        "",
    ]
    # The first traced run of a tracer build compiles the hook into the tracer's cache
    # folder (once per build and Python version): not a cost of any row.
    subprocess.run(exact + ["--", python, "-c", "pass"], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    for name, script in workloads:
        target = counted + [python] + script
        rows = [
            ("untraced", target),
            ("exact --include '*' --no-args", exact + ["--include", "*", "--no-args", "--"] + target),
            ("exact --include '*'", exact + ["--include", "*", "--"] + target),
            ("exact (default include) --no-args", exact + ["--no-args", "--"] + target),
            ("exact (default include)", exact + ["--"] + target),
            ("cProfile", counted + [python, "-m", "cProfile", "-o", os.devnull] + script),
        ]
        lines += ["## %s (`python %s`)" % (name, " ".join(script)), "",
                  "| row | instructions | ratio | events | mechanism |", "|---|---|---|---|---|"]
        base = None
        for label, command in rows:
            count, stderr = instructions(command, here)
            base = base or count
            process = PROCESS_LINE.search(stderr)
            events = process.group("events") if process else ""
            mechanism = process.group("mechanism") if process else ""
            print("%-6s %-36s %15s instructions %6.2fx" % (name, label, "{:,}".format(count),
                                                            count / base), flush=True)
            lines.append("| %s | %s | %.2fx | %s | %s |" % (label, "{:,}".format(count),
                                                            count / base, events, mechanism))
        lines.append("")
    with open(results, "w") as f:
        f.write("\n".join(lines))
    print("bench/exact/instructions: wrote " + results)


main()
