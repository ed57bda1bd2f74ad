#!/usr/bin/env bash
# The sampling benchmark: `tracer record` beside `py-spy record --nonblocking` (and
# py-spy's default blocking mode) at the same rates, on the same fixed CPU-bound
# workloads, in one run: target slowdown, profiler CPU and peak RSS, samples taken
# per second, file size. Writes bench/sampling/RESULTS.md.
#
# Build the tracer first (release, ~40 min on the 2-core project machine):
#     cargo build --release -p cli
# then, from anywhere:
#     bash bench/sampling/run.sh
#
# Environment:
#   TRACER     the tracer binary (default target/release/tracer); a binary under a
#              `debug` folder is reported as "debug build, not a figure"
#   PYSPY      py-spy (default: installed by this script into its own venv)
#   PYTHONS    interpreters, space-separated (default pyenv's 3.12.1 and 3.8.18)
#   RATES      sampling rates in Hz (default "1000 5000 20000": where each keeps up)
#   RUNS       runs of each row (default 3)
#   WORKLOADS  any of deep, calls, threads (default "deep calls"; threads adds 1-2 min)
#   RESULTS    the report (default bench/sampling/RESULTS.md for a release build,
#              target/bench-sampling/RESULTS.md otherwise, so that a debug build's
#              numbers are not committed by mistake)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
tracer="${TRACER:-$target/release/tracer}"
pythons="${PYTHONS:-/root/.pyenv/versions/3.12.1/bin/python /root/.pyenv/versions/3.8.18/bin/python}"
rates="${RATES:-1000 5000 20000}"
runs="${RUNS:-3}"
workloads="${WORKLOADS:-deep calls}"
work="$target/bench-sampling"
venv="$work/venv"

if [ ! -x "$tracer" ]; then
    echo "bench/sampling: no tracer binary at $tracer" >&2
    echo "build it with:  cargo build --release -p cli   (or set TRACER=path/to/tracer)" >&2
    exit 1
fi
tracer="$(realpath "$tracer")"
case "$tracer" in
    */release/*) results="${RESULTS:-$here/RESULTS.md}" ;;
    *) results="${RESULTS:-$work/RESULTS.md}" ;;
esac
for python in $pythons; do
    if [ ! -x "$python" ]; then
        echo "bench/sampling: no interpreter at $python (set PYTHONS)" >&2
        exit 1
    fi
done
mkdir -p "$work"
# Traces, py-spy outputs and logs of an earlier run go; the venv stays.
find "$work" -maxdepth 1 -type f -delete

# py-spy and pyarrow (to read the trace's run metadata), in this benchmark's own venv.
if ! "$venv/bin/python" -c "import pyarrow" 2>/dev/null || [ ! -x "$venv/bin/py-spy" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check py-spy pyarrow
fi
pyspy="${PYSPY:-$venv/bin/py-spy}"

# The command as given, with the settings that differ from the defaults.
command="bash bench/sampling/run.sh"
for name in TRACER PYSPY PYTHONS RATES RUNS WORKLOADS RESULTS; do
    if [ -n "${!name:-}" ]; then command="$name='${!name}' $command"; fi
done

args=(--root "$root" --work "$work" --tracer "$tracer" --pyspy "$pyspy" --runs "$runs"
      --results "$results" --command "$command")
for python in $pythons; do args+=(--python "$python"); done
for rate in $rates; do args+=(--rate "$rate"); done
for workload in $workloads; do args+=(--workload "$workload"); done

exec "$venv/bin/python" "$here/driver.py" "${args[@]}"
