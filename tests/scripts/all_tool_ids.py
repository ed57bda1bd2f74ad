"""Takes every sys.monitoring tool id (as a process running a debugger, coverage and
profilers at once could), prints READY and works on: `tracer attach --exact` finds
no id for its hook."""
import sys
import time

for tool in range(6):
    sys.monitoring.use_tool_id(tool, "mine%d" % tool)


def work(x):
    return x + 1


print("READY", flush=True)
i = 0
while True:
    work(i)
    i += 1
    time.sleep(0.005)
