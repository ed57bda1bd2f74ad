#!/usr/bin/env bash
# The exact-mode benchmark: wall time of the whole process (writing included) for a
# call-heavy workload (recursive fib), two library-heavy ones after pyperformance
# (json, regex) and one of calls spread over thousands of functions (wide), untraced, under exact mode with and without values and with
# `--include '*'` or the default include, under cProfile, and under viztracer with
# and without its argument logging, in one run. Writes bench/exact/RESULTS.md.
#
# Build the tracer first, then run this from anywhere:
#     cargo build --release -p cli && bash bench/exact/run.sh
#
# Environment:
#   EXACT        the exact-mode command, options follow it (default: the release
#                `tracer record --exact --force -o target/bench-exact/exact.parquet`);
#                it is given --include, --no-args and `-- CMD`, and its report on
#                stderr gives the events, dropped events and mechanism columns
#   PY           the interpreter (default pyenv's 3.12.1)
#   RUNS         runs of each row (default 7; the report gives the best and the median)
#   WORKLOADS    any of fib json regex wide (default all)
#   FIB_N JSON_N REGEX_N   the size of each workload (defaults 27, 10, 1000)
#   WIDE_F WIDE_R          wide's functions and rounds (defaults 3000, 300)
#   PYTHON_HOOK  1 adds a row with the hook's pure-Python callbacks
#                (TRACER_EXACT_NATIVE=0)
#   SLOW         a row whose first run takes longer (seconds, default 60) runs once
#   VIZTRACER    viztracer (default: installed by this script into its own venv;
#                set to an empty string to skip it)
#   RESULTS      the report (default bench/exact/RESULTS.md)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
work="$target/bench-exact"
venv="$work/venv"
py="${PY:-/root/.pyenv/versions/3.12.1/bin/python}"
mkdir -p "$work"
exact="${EXACT:-$target/release/tracer record --exact --force -o $work/exact.parquet}"

if [ ! -x "${exact%% *}" ]; then
    echo "bench/exact: no tracer at ${exact%% *}" >&2
    echo "build it with:  cargo build --release -p cli   (or set EXACT)" >&2
    exit 1
fi
if [ ! -x "$py" ]; then
    echo "bench/exact: no interpreter at $py (set PY)" >&2
    exit 1
fi

if [ -z "${VIZTRACER+set}" ]; then
    if [ ! -x "$venv/bin/viztracer" ]; then
        "$py" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check viztracer
    fi
    VIZTRACER="$venv/bin/viztracer"
fi

PY="$py" EXACT="$exact" VIZTRACER="$VIZTRACER" WORKDIR="$work" \
    RESULTS="${RESULTS:-$here/RESULTS.md}" "$py" "$here/driver.py"
