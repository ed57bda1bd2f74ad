"""Measures bench/exact's rows and writes the report (run by run.sh, which says how).

Each row runs a whole process RUNS times, interleaved with the other rows so that
load on the machine spreads over all of them: wall time from start to exit (the
tracer's writing included) and the CPU time of every process involved (the driver's
reaped children: the tracer and the Python it starts). Each row reports its best
run and its median: on a shared machine (the project's 2-core VM ran the same
untraced command in 0.39 s and in 0.82 s within a minute) noise only ever adds
time, so the best of several interleaved runs is the steadiest estimate of what a
row costs, and the median shows how much the noise moved it. Ratios are over the
same workload untraced in the same run, best over best and median over median.
"""

import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import time


def env_list(name):
    return shlex.split(os.environ[name]) if os.environ.get(name) else []


def run_once(command, cwd):
    """(wall seconds, CPU seconds, stderr) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        sys.stderr.write(done.stderr.decode("utf-8", "replace"))
        raise SystemExit("bench/exact: failed (%d): %s" % (done.returncode, shlex.join(command)))
    return wall, cpu, done.stderr.decode("utf-8", "replace")


PROCESS_LINE = re.compile(r"pid \d+ \(Python [^)]*\): (?P<mechanism>.*), (?P<events>\d+) events")
DROPPED_LINE = re.compile(r"WARNING: (?P<dropped>\d+) events were DROPPED")


def exact_stats(stderr):
    """Events, dropped events and the hook's mechanism, from the lines of the report
    `tracer record --exact` prints on stderr (the first traced process)."""
    stats = {"dropped_events": 0}
    for line in stderr.splitlines():
        line = line.strip()
        process = PROCESS_LINE.search(line)
        if process and "events" not in stats:
            stats["events"] = int(process.group("events"))
            stats["mechanism"] = process.group("mechanism")
        dropped = DROPPED_LINE.search(line)
        if dropped:
            stats["dropped_events"] = int(dropped.group("dropped"))
    return stats


def main():
    python = os.environ["PY"]
    exact = env_list("EXACT")
    viztracer = os.environ.get("VIZTRACER", "")
    runs = int(os.environ.get("RUNS", "7"))
    slow = float(os.environ.get("SLOW", "60"))
    workdir = os.environ["WORKDIR"]
    here = os.path.dirname(os.path.abspath(__file__))
    results = os.environ["RESULTS"]
    workloads = [
        ("fib", ["fib.py", os.environ.get("FIB_N", "27")]),
        ("json", ["bm_json.py", os.environ.get("JSON_N", "10")]),
        ("regex", ["bm_regex.py", os.environ.get("REGEX_N", "1000")]),
        ("wide", ["wide.py", os.environ.get("WIDE_F", "3000"), os.environ.get("WIDE_R", "300")]),
    ]
    selected = set(os.environ.get("WORKLOADS", "fib json regex wide").split())
    workloads = [w for w in workloads if w[0] in selected]
    trace_out = os.path.join(workdir, "viztracer.json")

    def rows_for(script):
        target = [python] + script
        rows = [("untraced", target)]
        rows.append(("exact --include '*' --no-args", exact + ["--include", "*", "--no-args", "--"] + target))
        rows.append(("exact --include '*'", exact + ["--include", "*", "--"] + target))
        rows.append(("exact (default include) --no-args", exact + ["--no-args", "--"] + target))
        rows.append(("exact (default include)", exact + ["--"] + target))
        if os.environ.get("PYTHON_HOOK") == "1":
            rows.append(
                ("exact --include '*' --no-args, pure-Python hook",
                 ["env", "TRACER_EXACT_NATIVE=0"] + exact + ["--include", "*", "--no-args", "--"] + target)
            )
        rows.append(("cProfile", [python, "-m", "cProfile", "-o", os.devnull] + script))
        if viztracer:
            rows.append(("viztracer", [viztracer, "--quiet", "-o", trace_out] + script))
            rows.append(
                ("viztracer --log_func_args --log_func_retval",
                 [viztracer, "--quiet", "--log_func_args", "--log_func_retval", "-o", trace_out] + script)
            )
        return rows

    table = {}
    for name, script in workloads:
        rows = rows_for(script)
        measured = {label: [] for label, _ in rows}
        stats = {}
        for attempt in range(runs):
            for label, command in rows:
                if attempt > 0 and measured[label][0][0] > slow:
                    continue  # one run of a row this slow is enough
                wall, cpu, stderr = run_once(command, here)
                measured[label].append((wall, cpu))
                if label.startswith("exact"):
                    stats[label] = exact_stats(stderr)
                print("%-6s %-48s %7.3f s wall %7.3f s cpu" % (name, label, wall, cpu), flush=True)
        table[name] = (rows, measured, stats)

    write_report(results, python, exact, viztracer, runs, workloads, table)
    print("bench/exact: wrote " + results)


def describe(python, viztracer):
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()
    viz = ""
    if viztracer:
        viz = subprocess.run(
            [viztracer, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    return version, viz


def summary(runs):
    """Best and median wall time and best CPU time of a row's (wall, CPU) runs."""
    return {
        "wall": min(w for w, _ in runs),
        "median_wall": statistics.median(w for w, _ in runs),
        "cpu": min(c for _, c in runs),
    }


def write_report(results, python, exact, viztracer, runs, workloads, table):
    version, viz = describe(python, viztracer)
    load = os.getloadavg()
    lines = [
        "# bench/exact results",
        "",
        "Written by `bench/exact/run.sh` on %s: Python %s (`%s`), %d CPUs, load average"
        " %.1f %.1f %.1f at the end, %s, %d runs per row (interleaved; best and median)."
        % (time.strftime("%Y-%m-%d %H:%M"), version, python, os.cpu_count() or 0,
           load[0], load[1], load[2], platform.platform(), runs),
        "",
        "Exact mode: `%s`%s." % (shlex.join(exact), "; viztracer " + viz if viz else "; viztracer not run"),
        "Wall: the whole process from start to exit, writing included. CPU: every process"
        " of the row (tracer and Python), user + system.",
        "",
    ]
    for name, script in workloads:
        rows, measured, stats = table[name]
        base = summary(measured["untraced"])
        lines.append("## %s (`python %s`)" % (name, " ".join(script)))
        lines.append("")
        lines.append(
            "| row | runs | best wall s | best ratio | median wall s | median ratio"
            " | best CPU s | CPU ratio | events | dropped | mechanism |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for label, _ in rows:
            row = summary(measured[label])
            s = stats.get(label) or {}
            lines.append(
                "| %s | %d | %.3f | %.2fx | %.3f | %.2fx | %.3f | %.2fx | %s | %s | %s |"
                % (label, len(measured[label]),
                   row["wall"], row["wall"] / base["wall"],
                   row["median_wall"], row["median_wall"] / base["median_wall"],
                   row["cpu"], row["cpu"] / base["cpu"],
                   s.get("events", ""), s.get("dropped_events", ""),
                   s.get("mechanism", ""))
            )
        lines.append("")
    with open(results, "w") as f:
        f.write("\n".join(lines))


main()
