"""The main thread blocks in one sleep of the seconds given, then prints which
sys.monitoring tool ids are in use (`TOOLS [...]`) and sleeps on: an `attach --exact`
stopped while it waited for a safe point must have placed nothing."""
import sys
import time

print("READY", flush=True)
time.sleep(float(sys.argv[1]))
print("TOOLS", [sys.monitoring.get_tool(t) for t in range(6)], flush=True)
time.sleep(600)
