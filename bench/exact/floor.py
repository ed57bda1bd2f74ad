"""The floor under any sys.monitoring tracer on call-heavy code: fib(N)'s own time
untraced, with a C callback that does nothing registered for PY_START and PY_RETURN,
the same with CALL added (what the exact hook needs to see calls into untraced code),
and under cProfile. Whatever a tracer does per event comes on top of the second and
third rows.

The callback is `noop` of a three-line extension module (`floor_noop.c`, beside this
file) that the script compiles with the interpreter's headers and `cc`: a
`METH_FASTCALL` function that returns None, the least a callback can do. Without a
compiler it falls back to `"".format` (which takes any arguments and returns "", but
parses its empty format), an upper bound of the floor, and says so.

    python floor.py [N] [RUNS]      (defaults 27 and 5; medians in milliseconds)
"""

import cProfile
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

TOOL = 5


def no_op_callback():
    """The compiled no-op and its name, or `"".format` when it cannot be built."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = tempfile.mkdtemp(prefix="tracer-floor-")
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    target = os.path.join(out, "floor_noop" + suffix)
    command = [
        os.environ.get("CC", "cc"),
        "-O2",
        "-shared",
        "-fPIC",
        "-I" + sysconfig.get_paths()["include"],
        os.path.join(here, "floor_noop.c"),
        "-o",
        target,
    ]
    try:
        subprocess.run(command, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print("floor: cannot compile floor_noop.c (%s); using \"\".format, an upper bound" % e)
        return "".format, '"".format'
    sys.path.insert(0, out)
    import floor_noop

    return floor_noop.noop, "C no-op"


NOTHING, NOTHING_NAME = no_op_callback()


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def timed(n):
    start = time.perf_counter()
    fib(n)
    return (time.perf_counter() - start) * 1000


def monitored(n, events):
    mon = sys.monitoring
    mon.use_tool_id(TOOL, "floor")
    try:
        for event in events:
            mon.register_callback(TOOL, event, NOTHING)
        mask = 0
        for event in events:
            mask |= event
        mon.set_events(TOOL, mask)
        return timed(n)
    finally:
        mon.set_events(TOOL, 0)
        for event in events:
            mon.register_callback(TOOL, event, None)
        mon.free_tool_id(TOOL)


def profiled(n):
    profile = cProfile.Profile()
    profile.enable()
    try:
        return timed(n)
    finally:
        profile.disable()


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 27
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    ev = sys.monitoring.events
    rows = [
        ("untraced", lambda: timed(n)),
        ("PY_START+PY_RETURN -> " + NOTHING_NAME, lambda: monitored(n, (ev.PY_START, ev.PY_RETURN))),
        (
            "PY_START+PY_RETURN+CALL -> " + NOTHING_NAME,
            lambda: monitored(n, (ev.PY_START, ev.PY_RETURN, ev.CALL)),
        ),
        ("cProfile", lambda: profiled(n)),
    ]
    times = {name: [] for name, _ in rows}
    for _ in range(runs):
        for name, run in rows:
            times[name].append(run())
    base = statistics.median(times["untraced"])
    print("fib(%d), Python %s, median of %d runs" % (n, sys.version.split()[0], runs))
    for name, _ in rows:
        ms = statistics.median(times[name])
        print("  %-40s %8.1f ms  %5.2fx" % (name, ms, ms / base))


if __name__ == "__main__":
    main()
