"""Target of attach/tests/exact.rs: calls a function until the tracer's hook has
removed itself (the tracer went away), then says so and exits normally."""

import sys
import time


def work(i):
    return i * 2


def hooked():
    if sys.version_info >= (3, 12):
        return any(sys.monitoring.get_tool(t) == "tracer" for t in range(6))
    return sys.gettrace() is not None


print("READY", hooked(), flush=True)
start = time.monotonic()
n = 0
while hooked() and time.monotonic() - start < 60:
    work(n)
    n += 1
    time.sleep(0.001)
print("gone" if not hooked() else "still hooked", flush=True)
