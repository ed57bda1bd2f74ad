#!/usr/bin/env bash
# The query benchmark: every named question of `tracer query` on a generated
# 10-million-event trace, and the same SQL in DuckDB on the same file, in one run.
# Writes bench/query/RESULTS.md. Rerun from anywhere:  bash bench/query/run.sh
# Environment: EVENTS (default 10000000), RUNS (timed runs per question, default 5),
# JOBS (cargo -j, default 2), PROFILE (cargo profile, default release; `dev` only to
# check the script quickly), RESULTS (default bench/query/RESULTS.md).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
events="${EVENTS:-10000000}"
runs="${RUNS:-5}"
profile="${PROFILE:-release}"
results="${RESULTS:-$here/RESULTS.md}"
if [ "$profile" = dev ]; then bin="$target/debug/examples"; else bin="$target/$profile/examples"; fi
work="$target/bench-query"
trace="$work/trace-$events.parquet"
venv="$work/venv"
mkdir -p "$work"

cd "$root"
# With -p cli too, cargo resolves the dependencies' features as for the tracer and
# reuses its build (with -p query alone it builds DataFusion over again).
cargo build --profile "$profile" -j "${JOBS:-2}" -p cli -p query --example gen_trace --example ask
if [ ! -f "$trace" ]; then
    "$bin/gen_trace" "$trace.tmp" "$events"
    mv "$trace.tmp" "$trace"
fi

# DuckDB, installed by this script into its own venv.
if ! "$venv/bin/python" -c "import duckdb, pytz" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check duckdb pytz
fi

"$bin/ask" "$trace" "$runs" > "$work/tracer.jsonl"

"$venv/bin/python" - "$trace" "$runs" "$work/tracer.jsonl" "$results" "$events" "$profile" <<'PY'
import datetime, json, os, platform, statistics, subprocess, sys, time
import duckdb

trace, runs, tracer_jsonl, results, events, profile = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
con = duckdb.connect()
quoted = "'" + trace.replace("'", "''") + "'"
con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet({quoted})")
# The runs table as tracer builds it: one row per file, from its tracer.run footer metadata.
con.execute("""
CREATE VIEW runs AS
SELECT r ->> 'run_id' AS run_id, r ->> 'status' AS status, true AS finished, r ->> 'mode' AS mode,
       array_to_string(CAST(r -> 'command' AS VARCHAR[]), ' ') AS command, CAST(r ->> 'pid' AS INTEGER) AS pid,
       r ->> 'python_version' AS python_version, CAST(r ->> 'started_at' AS TIMESTAMPTZ) AS started_at,
       CAST(r ->> 'ended_at' AS TIMESTAMPTZ) AS ended_at, CAST(r ->> 'exit_code' AS INTEGER) AS exit_code,
       CAST(r ->> 'events' AS UBIGINT) AS events, CAST(r ->> 'samples' AS UBIGINT) AS samples,
       CAST(r ->> 'dropped_events' AS UBIGINT) AS dropped_events, file_name AS path
FROM (SELECT file_name, CAST(decode(value) AS JSON) AS r FROM parquet_kv_metadata(""" + quoted + """) WHERE decode(key) = 'tracer.run')
""")

def timed(sql):
    con.execute(sql).fetchall()  # warm-up
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        rows = con.execute(sql).fetchall()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples), len(rows)

lines = [json.loads(line) for line in open(tracer_jsonl)]
open_ms = next(l["ms"] for l in lines if l["question"] == "open")
table = []
for line in lines:
    if line["question"] == "open":
        continue
    duck_ms, duck_rows = timed(line["sql"])
    name = "--" + line["question"] + (" " + line["argument"] if line.get("argument") else "")
    table.append((name, line["ms"], duck_ms, line["rows"], duck_rows))

cpu = "unknown"
try:
    for l in open("/proc/cpuinfo"):
        if l.startswith("model name"):
            cpu = l.split(":", 1)[1].strip()
            break
except OSError:
    pass
size_mb = os.path.getsize(trace) / 1e6
with open(results, "w") as out:
    out.write("# Query benchmark results\n\n")
    out.write(f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}\n")
    out.write(f"- machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}\n")
    out.write(f"- command: `bash bench/query/run.sh` (EVENTS={events}, RUNS={runs}, PROFILE={profile})\n")
    out.write(f"- trace: {events:,} events, {size_mb:.0f} MB (`query/examples/gen_trace.rs`)\n")
    out.write(f"- DuckDB {duckdb.__version__}; tracer: DataFusion via `query/examples/ask.rs`\n")
    out.write(f"- opening the trace (footers, tables): {open_ms:.1f} ms\n\n")
    out.write("Median of the timed runs after one warm-up, same SQL, same file, one session each.\n\n")
    out.write("| question | tracer (ms) | DuckDB (ms) | tracer / DuckDB | rows (tracer / DuckDB) |\n")
    out.write("|---|---:|---:|---:|---:|\n")
    for name, ours, duck, rows, duck_rows in table:
        out.write(f"| `{name}` | {ours:.1f} | {duck:.1f} | {ours / duck:.2f} | {rows} / {duck_rows} |\n")
print(open(results).read())
PY
