"""Two or more tracer binaries on the same exact-mode run, interleaved: how a change
moved the whole process's wall time and CPU (tracer and Python) when the machine's own
speed drifts between separate bench runs.

    python bench/exact/compare.py OLD_TRACER NEW_TRACER [...]

Environment: PY (default pyenv's 3.12.1), RUNS (default 7), FIB_N (default 27). Each
binary runs `record --exact --include '*' [--no-args] -- PY bench/exact/fib.py FIB_N`
RUNS times with and without values; the report gives medians and minor page faults.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time


def main():
    tracers = sys.argv[1:]
    if not tracers:
        raise SystemExit(__doc__)
    here = os.path.dirname(os.path.abspath(__file__))
    python = os.environ.get("PY", "/root/.pyenv/versions/3.12.1/bin/python")
    runs = int(os.environ.get("RUNS", "7"))
    fib_n = os.environ.get("FIB_N", "27")
    out = os.path.join(tempfile.mkdtemp(prefix="tracer-compare-"), "trace.parquet")
    modes = {"--no-args": ["--no-args"], "values": []}
    results = {}
    for _ in range(runs):
        for tracer in tracers:
            for mode, extra in modes.items():
                command = [tracer, "record", "--exact", "--force", "-o", out,
                           "--include", "*", *extra, "--",
                           python, os.path.join(here, "fib.py"), fib_n]
                start = time.perf_counter()
                child = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
                stderr = child.stderr.read()
                _, status, usage = os.wait4(child.pid, 0)
                wall = time.perf_counter() - start
                if status != 0:
                    sys.stderr.write(stderr.decode("utf-8", "replace"))
                    raise SystemExit("compare: failed: %s" % " ".join(command))
                dropped = b"DROPPED" in stderr
                results.setdefault((tracer, mode), []).append(
                    (wall, usage.ru_utime + usage.ru_stime, usage.ru_minflt, dropped))
    print("fib(%s), %d runs each, medians" % (fib_n, runs))
    for (tracer, mode), rows in results.items():
        print("%-40s %-9s wall %6.0f ms  cpu %6.0f ms  minor faults %7.0f%s" % (
            tracer, mode,
            statistics.median(r[0] for r in rows) * 1000,
            statistics.median(r[1] for r in rows) * 1000,
            statistics.median(r[2] for r in rows),
            "  (events dropped in %d runs)" % sum(r[3] for r in rows)
            if any(r[3] for r in rows) else ""))


main()
