"""The exact hook's own cost on recursive fib, without the tracer's decoding and
writing: fib's own time (`perf_counter` around the call) with the hook loaded as
`tracer record --exact --include '*'` loads it, but its socket drained by a thread of
this script that only reads, interleaved with untraced runs. The whole-process
figures of `run.sh` add the tracer's work on the same two cores; these show what the
program pays for the callbacks, the clock and the sends alone.

    python bench/exact/hook_only.py [TRACER] [RUNS]

TRACER defaults to the release build, RUNS to 11. Environment: PY (default pyenv's
3.12.1), FIB_N (27), NOARGS (1: `--no-args`; 0: values on).
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))

# fib's own time, printed on stderr; the program otherwise as fib.py runs it.
TIMED = (
    "import sys, time\n"
    "sys.argv = ['fib.py', sys.argv[1]]\n"
    "path = %r\n"
    "start = time.perf_counter()\n"
    "exec(compile(open(path).read(), path, 'exec'), {'__name__': '__main__'})\n"
    "sys.stderr.write('own %%.6f\\n' %% (time.perf_counter() - start))\n"
) % os.path.join(HERE, "fib.py")


def hook_environment(tracer, python):
    """PYTHONPATH and TRACER_EXACT as `tracer record --exact --include '*'` gives them
    to its command, read back from the command's /proc/self/environ."""
    out = tempfile.mkdtemp(prefix="tracer-hook-only-")
    shown = subprocess.run(
        [tracer, "record", "--exact", "--include", "*", "--force", "-o",
         os.path.join(out, "t.parquet"), "--", python, "-c",
         "import sys; sys.stdout.write(open('/proc/self/environ').read())"],
        capture_output=True, text=True, check=True,
    ).stdout
    env = dict(kv.split("=", 1) for kv in shown.split("\0") if "=" in kv)
    return env["PYTHONPATH"], env["TRACER_EXACT"]


def drained_socket():
    """A Unix socket whose connections are read and discarded."""
    path = os.path.join(tempfile.mkdtemp(prefix="tracer-drain-"), "socket")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(8)

    def drain(conn):
        while conn.recv(1 << 20):
            pass
        conn.close()

    def accept():
        while True:
            conn, _ = server.accept()
            threading.Thread(target=drain, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return path


def own_time(command, env):
    err = subprocess.run(command, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, check=True).stderr
    return float(err.rsplit("own ", 1)[1])


def main():
    tracer = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        HERE, "..", "..", "target", "release", "tracer")
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 11
    python = os.environ.get("PY", "/root/.pyenv/versions/3.12.1/bin/python")
    fib_n = os.environ.get("FIB_N", "27")
    no_args = os.environ.get("NOARGS", "1")
    boot, config = hook_environment(tracer, python)
    fields = [f for f in config.split("\x1e") if not f.startswith(("sock=", "noargs="))]
    config = "\x1e".join(["sock=" + drained_socket(), "noargs=" + no_args] + fields)
    hooked_env = dict(os.environ, PYTHONPATH=boot, TRACER_EXACT=config)
    plain_env = dict(os.environ)
    command = [python, "-c", TIMED, fib_n]
    hooked, plain = [], []
    for _ in range(runs):
        hooked.append(own_time(command, hooked_env))
        plain.append(own_time(command, plain_env))
    print("fib(%s) own time, %d runs each, %s, values %s" % (
        fib_n, runs, python, "off" if no_args == "1" else "on"))
    for label, times in (("untraced", plain), ("hook, socket drained", hooked)):
        print("  %-22s median %.3f s  best %.3f s  (%.2fx median)" % (
            label, statistics.median(times), min(times),
            statistics.median(times) / statistics.median(plain)))


main()
