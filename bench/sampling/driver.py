"""Runs the sampling benchmark and writes its markdown report; `run.sh` calls it.

Each measurement starts one process from the repository root and waits for it:
the workload alone, `tracer record`, `py-spy record --nonblocking`, or `py-spy
record` in its default blocking mode, at one sampling rate. Per run it keeps:

- the target's time for its fixed work, which the workload itself reports;
- the end-to-end wall time, from starting the profiler until it has exited;
- the profiler's own CPU time: the user + system time `wait4` returns for it, which
  includes the Python child it reaped, less the CPU time that child reported just
  before leaving with `os._exit` (the zombie's /proc stat tells whether it was reaped);
- the profiler's peak RSS: `wait4`'s max RSS when that is larger than both the
  child's own peak and this driver's (a process started by `posix_spawn` inherits
  the peak of the memory it was spawned from, and a child's is folded into its
  parent's when reaped: anything larger can only be the profiler's), otherwise its
  VmHWM as last polled (every 10 ms while it runs);
- the samples it took (tracer: `samples` in the trace's `tracer.run` metadata, read
  with pyarrow in a separate process at the end so that this one stays small;
  py-spy: `Samples:` in its summary) and its sample errors;
- the size of the file it wrote.

Runs of one interpreter and workload are interleaved (alone, then each profiler at
each rate, the starting point rotated every repetition) so that a change in the
machine's load falls on all of them alike. Figures are reported, never asserted.
"""

import argparse
import datetime
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time

# The amount of work of each workload, sized for about a second on 3.12 here.
WORKLOADS = {
    "deep": ["deep", "40", "6000"],
    "calls": ["calls", "40", "3500000"],
    "threads": ["threads", "4", "40", "4000"],
}
WORKLOAD_TEXT = {
    "deep": "40 frames deep, spinning in the innermost; returns to the top and descends again every ~0.1 s",
    "calls": "40 frames deep, 3.5 M short calls (`step(i, 'call')` -> `leaf(i, 'call')`, both with arguments)",
    "threads": "4 threads, each 40 frames deep and spinning as `deep` (they share the GIL)",
}
MODES = ["tracer", "py-spy --nonblocking", "py-spy (blocking)"]
RUN_TIMEOUT_S = 120.0
POLL_S = 0.01
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A run that did not produce its figures: the benchmark stops and says which."""


def read_hwm_kb(pid="self"):
    """The process's peak resident size so far, in KiB (0 once its memory is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reaped_children_cpu_s(pid):
    """CPU time of the children a zombie reaped (cutime + cstime), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    # Fields after the parenthesised command name; cutime and cstime are fields 16, 17.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[13]) + int(fields[14])) / CLOCK_TICKS


def run_once(argv, root, log_stem):
    """Starts argv, waits for it, and returns its wall time, rusage, VmHWM and output."""
    out_path, err_path = log_stem + ".out", log_stem + ".err"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    actions = [
        (os.POSIX_SPAWN_OPEN, 1, out_path, flags, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, err_path, flags, 0o644),
    ]
    cwd = os.getcwd()
    os.chdir(root)
    spawner_hwm_kb = read_hwm_kb()
    try:
        started = time.monotonic()
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    finally:
        os.chdir(cwd)
    hwm_kb = 0
    killed = False
    while True:
        hwm_kb = max(hwm_kb, read_hwm_kb(pid))
        exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if exited is not None:
            break
        if not killed and time.monotonic() - started > RUN_TIMEOUT_S:
            os.kill(pid, signal.SIGTERM)
            killed = True
        time.sleep(POLL_S)
    children_cpu_s = reaped_children_cpu_s(pid)
    _, status, usage = os.wait4(pid, 0)
    wall_s = time.monotonic() - started
    with open(out_path, errors="replace") as f:
        out = f.read()
    with open(err_path, errors="replace") as f:
        err = f.read()
    if killed:
        raise BenchError(
            f"{' '.join(argv)}: still running after {RUN_TIMEOUT_S:.0f} s, stopped; see {err_path}"
        )
    return {
        "wall_s": wall_s,
        "exit_status": os.waitstatus_to_exitcode(status),
        "rusage_cpu_s": usage.ru_utime + usage.ru_stime,
        "rusage_maxrss_kb": usage.ru_maxrss,
        "children_cpu_s": children_cpu_s,
        "hwm_kb": hwm_kb,
        "spawner_hwm_kb": spawner_hwm_kb,
        "out": out,
        "err": err,
        "err_path": err_path,
    }


def workload_report(out, argv, err_path):
    for line in reversed(out.splitlines()):
        if line.startswith('{"work_seconds"'):
            return json.loads(line)
    raise BenchError(f"{' '.join(argv)}: the workload printed no report; see {err_path}")


def measure(mode, rate, python, version, workload, rep, root, work, tracer, pyspy):
    """One run of one mode; returns its figures as a flat dict (a tracer run's
    samples are read later, by `read_trace_metadata`)."""
    target = [python, "bench/sampling/workload.py", *WORKLOADS[workload]]
    tag = f"{version}-{workload}-{mode.split()[0]}-{rate}"
    if mode == "py-spy (blocking)":
        tag += "-blocking"
    tag += f"-{rep}"
    output = None
    if mode == "alone":
        argv = target
    elif mode == "tracer":
        output = os.path.join(work, f"{tag}.parquet")
        argv = [tracer, "record", "--rate", str(rate), "-o", output, "--force", "--", *target]
    else:
        output = os.path.join(work, f"{tag}.txt")
        argv = [pyspy, "record", "--rate", str(rate)]
        if mode == "py-spy --nonblocking":
            argv.append("--nonblocking")
        argv += ["-o", output, "--format", "raw", "--", *target]
    run = run_once(argv, root, os.path.join(work, tag))
    if run["exit_status"] != 0:
        raise BenchError(f"{' '.join(argv)}: exit status {run['exit_status']}; see {run['err_path']}")
    report = workload_report(run["out"], argv, run["err_path"])
    row = {
        "python": python,
        "workload": workload,
        "mode": mode,
        "rate_hz": rate if mode != "alone" else None,
        "work_s": report["work_seconds"],
        "target_cpu_s": report["cpu_seconds"],
        "lifetime_s": report["lifetime_seconds"],
        "wall_s": run["wall_s"],
    }
    if mode == "alone":
        return row
    # The profiler's rusage holds its reaped child's: take the child's own out.
    child_reaped = run["children_cpu_s"] >= report["cpu_seconds"] / 2
    cpu_s = run["rusage_cpu_s"] - (report["cpu_seconds"] if child_reaped else 0.0)
    rss_kb = run["hwm_kb"]
    if run["rusage_maxrss_kb"] > max(report["hwm_kb"], run["spawner_hwm_kb"]):
        rss_kb = max(rss_kb, run["rusage_maxrss_kb"])
    samples, errors = None, None
    if mode != "tracer":
        found = re.search(r"Samples: (\d+) Errors: (\d+)", run["out"] + run["err"])
        if found is None:
            raise BenchError(f"{' '.join(argv)}: no 'Samples:' summary from py-spy; see {run['err_path']}")
        samples, errors = int(found.group(1)), int(found.group(2))
    row.update(
        {
            "profiler_cpu_s": cpu_s,
            "child_reaped": child_reaped,
            "peak_rss_kb": rss_kb,
            "samples": samples,
            "sample_errors": errors,
            "output": output,
            "output_bytes": os.path.getsize(output),
        }
    )
    return row


READ_METADATA = """
import json, sys
import pyarrow.parquet as pq
for path in sys.argv[1:]:
    print(json.dumps(json.loads(pq.read_metadata(path).metadata[b"tracer.run"])))
"""


def read_trace_metadata(rows):
    """Fills in the tracer runs' samples from their traces' `tracer.run` metadata."""
    traced = [r for r in rows if r["mode"] == "tracer"]
    if traced:
        result = subprocess.run(
            [sys.executable, "-c", READ_METADATA, *(r["output"] for r in traced)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BenchError(f"reading the traces' tracer.run metadata failed: {result.stderr.strip()}")
        for row, line in zip(traced, result.stdout.splitlines()):
            meta = json.loads(line)
            if meta.get("status") != "completed":
                raise BenchError(f"{row['output']}: trace status {meta.get('status')!r}")
            row["samples"], row["sample_errors"] = meta["samples"], meta["sample_errors"]
            row["late_samples"] = meta.get("late_samples", 0)
    for row in rows:
        if row["mode"] != "alone":
            row["samples_per_s"] = row["samples"] / row["lifetime_s"]


def late_samples(rows):
    """The median of the ticks the tracer skipped because it fell behind (py-spy does
    not count them: shown as "n/a")."""
    if not rows or "late_samples" not in rows[0]:
        return "n/a"
    return f"{median(rows, 'late_samples'):g}"


def marginal_cost(summary, low, high, mode):
    """The profiler's CPU per sample between two rates: what one more sample costs."""
    lo, hi = summary[(low, mode)], summary[(high, mode)]
    extra = hi["samples"] - lo["samples"]
    if extra <= 0:
        return f"{mode} n/a"
    return f"{mode} {(hi['cpu'] - lo['cpu']) / extra * 1e6:.0f} µs"


def median(rows, key):
    return statistics.median(r[key] for r in rows)


def spread(rows, key):
    return f"{min(r[key] for r in rows):.3f}–{max(r[key] for r in rows):.3f}"


def fmt_size(n):
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def interpreter_version(python):
    return subprocess.run(
        [python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def tool_version(argv):
    result = subprocess.run(argv, capture_output=True, text=True)
    return (result.stdout or result.stderr).strip().splitlines()[0] if result.returncode == 0 else "unknown"


def build_profile(tracer):
    parts = os.path.realpath(tracer).split(os.sep)
    if "release" in parts:
        return "release"
    if "debug" in parts:
        return "debug"
    return "unknown"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def report_header(args, versions, load_before, load_after, elapsed_s):
    """The report's opening: build, date, machine, command, versions, what each column means."""
    profile = build_profile(args.tracer)
    lines = []
    if profile == "release":
        lines.append("# Sampling benchmark results\n")
    else:
        lines.append(f"# Sampling benchmark results: {profile} build, not a figure\n")
        lines.append(
            f"**The tracer binary is a {profile} build: these numbers only check the script; "
            "they are not figures to publish. Rerun with the release binary.**\n"
        )
    now = datetime.datetime.now(datetime.timezone.utc)
    lines += [
        f"- date: {now.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {cpu_model()}, nproc {len(os.sched_getaffinity(0))}, {platform.system()} "
        f"{platform.release()}; load average {load_before} before, {load_after} after (the machine may be "
        "shared)",
        f"- command: `{args.command}` ({elapsed_s / 60:.1f} min)",
        f"- tracer: `{args.tracer}` ({profile} build), {versions['tracer']}",
        f"- py-spy: `{args.pyspy}`, {versions['py-spy']}",
        "- interpreters: " + ", ".join(f"{versions[p]} (`{p}`)" for p in args.python),
        f"- {args.runs} runs of each row, interleaved; medians; min–max of the target time in brackets",
        "- workloads (`bench/sampling/workload.py`, fixed work, started from the repository root):",
    ]
    for w in args.workload:
        lines.append(f"  - `{w}`: `python workload.py {' '.join(WORKLOADS[w])}`: {WORKLOAD_TEXT[w]}")
    lines += [
        "",
        "Commands measured, at each rate R:\n",
        "- alone: `python bench/sampling/workload.py ARGS`",
        "- tracer: `tracer record --rate R -o X.parquet --force -- python bench/sampling/workload.py ARGS`",
        "- py-spy --nonblocking: `py-spy record --rate R --nonblocking -o X.txt --format raw -- python ...`",
        "- py-spy (blocking): `py-spy record --rate R -o X.txt --format raw -- python ...`: py-spy's "
        "default, which stops the target while it reads each sample (tracer never stops the target)\n",
        "Columns: *target s* is the workload's own time for its fixed work, *slowdown* that over the same "
        "workload alone; *target CPU* the workload's own CPU time (alone: in seconds; profiled: over "
        "alone), less sensitive than its wall time to other load on the machine, but blind to the time a "
        "blocking profiler keeps it stopped; *wall s* runs from starting the command until it exited "
        "(profiler start-up and finishing included); *CPU s* is the profiler's own user + system time (its "
        "reaped child's taken out), *core* that over the wall time; *µs/sample* is CPU per sample taken, "
        "which is also ms per 1000 samples (start-up included: see the CPU per extra sample below each "
        "table); *RSS* the profiler's peak resident size; *samples/s* the samples taken over the target's "
        "lifetime, and the share of the requested rate. A tracer sample is a tick that reads every "
        "thread; a py-spy sample is one stack of one thread py-spy found active (by default it leaves out "
        "idle threads, and of threads sharing the GIL only the holder is active). *errors* are sample "
        "errors (tracer `sample_errors`, py-spy `Errors:`); *late* the ticks the tracer skipped because it "
        "fell behind its rate (`late_samples` in `tracer.run`; py-spy does not count them). *file* is what each wrote: tracer's Parquet "
        "trace of calls with arguments, py-spy's collapsed stacks.\n",
    ]
    return lines


def report_section(args, rows, python, version, workload):
    """One interpreter and workload: every row's medians, then tracer against py-spy."""
    sel = [r for r in rows if r["python"] == python and r["workload"] == workload]
    alone = [r for r in sel if r["mode"] == "alone"]
    alone_work = median(alone, "work_s")
    alone_cpu = median(alone, "target_cpu_s")
    lines = [
        f"## Python {version}, `{workload}`\n",
        "| rate (Hz) | profiler | target s | slowdown | target CPU | wall s | CPU s | core | µs/sample | RSS "
        "| samples/s | late | errors | file |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| | alone | {alone_work:.3f} ({spread(alone, 'work_s')}) | 1.000 | {alone_cpu:.3f} s "
        f"| {median(alone, 'wall_s'):.3f} | | | | | | | | |",
    ]
    summary = {}
    for rate in args.rate:
        for mode in MODES:
            m = [r for r in sel if r["mode"] == mode and r["rate_hz"] == rate]
            fig = {
                "work": median(m, "work_s"),
                "wall": median(m, "wall_s"),
                "cpu": median(m, "profiler_cpu_s"),
                "us_per_sample": statistics.median(
                    r["profiler_cpu_s"] / max(r["samples"], 1) * 1e6 for r in m
                ),
                "rss": median(m, "peak_rss_kb"),
                "rate": median(m, "samples_per_s"),
                "bytes": median(m, "output_bytes"),
                "samples": median(m, "samples"),
            }
            summary[(rate, mode)] = fig
            lines.append(
                f"| {rate} | {mode} | {fig['work']:.3f} ({spread(m, 'work_s')}) | {fig['work'] / alone_work:.3f} "
                f"| {median(m, 'target_cpu_s') / alone_cpu:.3f}× | {fig['wall']:.3f} | {fig['cpu']:.3f} "
                f"| {fig['cpu'] / fig['wall']:.0%} | {fig['us_per_sample']:.0f} | {fig['rss'] / 1024:.1f} MB "
                f"| {fig['rate']:.0f} ({fig['rate'] / rate:.0%}) "
                f"| {late_samples(m)} | {median(m, 'sample_errors'):g} "
                f"| {fmt_size(fig['bytes'])} |"
            )
    lines += [
        "",
        "tracer / `py-spy --nonblocking`, same run (below 1: tracer smaller):\n",
        "| rate (Hz) | slowdown (tracer, py-spy) | CPU | µs/sample | RSS | samples/s | file |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rate in args.rate:
        ours, theirs = summary[(rate, "tracer")], summary[(rate, "py-spy --nonblocking")]

        def ratio(key):
            return f"{ours[key] / theirs[key]:.2f}" if theirs[key] else "n/a"

        lines.append(
            f"| {rate} | {ours['work'] / alone_work:.3f}, {theirs['work'] / alone_work:.3f} | {ratio('cpu')} "
            f"| {ratio('us_per_sample')} | {ratio('rss')} | {ratio('rate')} | {ratio('bytes')} |"
        )
    lines.append("")
    low, high = min(args.rate), max(args.rate)
    if low != high:
        lines.append(
            f"CPU per extra sample from {low} to {high} Hz (start-up and finishing cancel out): "
            + ", ".join(marginal_cost(summary, low, high, mode) for mode in MODES)
            + ".\n"
        )
    return lines


def write_report(args, rows, versions, load_before, load_after, elapsed_s):
    lines = report_header(args, versions, load_before, load_after, elapsed_s)
    for python in args.python:
        for workload in args.workload:
            lines += report_section(args, rows, python, versions[python], workload)
    if not all(r.get("child_reaped", True) for r in rows):
        lines.append(
            "Note: in some runs the profiler did not reap its Python child; its CPU time there is its rusage "
            "as is.\n"
        )
    lines.append(f"Every run's figures: `{os.path.join(args.work, 'measurements.jsonl')}`.")
    with open(args.results, "w") as f:
        f.write("\n".join(lines) + "\n")


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="the repository root, where the workload runs")
    parser.add_argument("--work", required=True, help="a folder for traces, logs and measurements")
    parser.add_argument("--tracer", required=True)
    parser.add_argument("--pyspy", required=True)
    parser.add_argument("--python", action="append", required=True, help="an interpreter (repeatable)")
    parser.add_argument("--rate", action="append", type=int, required=True, help="a rate in Hz (repeatable)")
    parser.add_argument("--workload", action="append", choices=sorted(WORKLOADS), required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--results", required=True)
    parser.add_argument("--command", required=True, help="the command line to print in the report")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)

    versions = {p: interpreter_version(p) for p in args.python}
    versions["tracer"] = tool_version([args.tracer, "--version"])
    versions["py-spy"] = tool_version([args.pyspy, "--version"])
    profile = build_profile(args.tracer)
    if profile != "release":
        print(
            f"note: {args.tracer} is a {profile} build: the report will say these are not figures",
            file=sys.stderr,
        )

    configs = [("alone", None)] + [(mode, rate) for rate in args.rate for mode in MODES]
    total = len(args.python) * len(args.workload) * (len(configs) * args.runs + 1)
    print(f"{total} runs", file=sys.stderr)
    load_before = load_average()
    started = time.monotonic()
    rows = []
    done = 0
    for python in args.python:
        version = versions[python]
        for workload in args.workload:
            # One unrecorded run first: file caches warm, the interpreter's .pyc written.
            measure(
                "alone",
                None,
                python,
                version,
                workload,
                "warm",
                args.root,
                args.work,
                args.tracer,
                args.pyspy,
            )
            done += 1
            for rep in range(args.runs):
                shift = rep % len(configs)
                for mode, rate in configs[shift:] + configs[:shift]:
                    row = measure(
                        mode,
                        rate,
                        python,
                        version,
                        workload,
                        rep,
                        args.root,
                        args.work,
                        args.tracer,
                        args.pyspy,
                    )
                    row["repetition"] = rep
                    rows.append(row)
                    done += 1
                    print(
                        f"[{done}/{total}] {version} {workload} {mode} {rate or ''}: target {row['work_s']:.3f} s"
                        + (f", profiler CPU {row['profiler_cpu_s']:.3f} s" if mode != "alone" else ""),
                        file=sys.stderr,
                    )
    read_trace_metadata(rows)
    with open(os.path.join(args.work, "measurements.jsonl"), "w") as jsonl:
        for row in rows:
            jsonl.write(json.dumps(row) + "\n")
    write_report(args, rows, versions, load_before, load_average(), time.monotonic() - started)
    print(open(args.results).read())


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"bench/sampling: {e}", file=sys.stderr)
        sys.exit(1)
