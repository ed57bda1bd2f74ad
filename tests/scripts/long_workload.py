"""Runs for the number of seconds given (default 10), always inside spin_for, which
calls tick over and over: a long recording with a steady stream of calls."""
import sys
import time


def tick(i):
    end = time.perf_counter() + 0.005
    while time.perf_counter() < end:
        pass
    return i


def spin_for(seconds):
    end = time.time() + seconds
    i = 0
    while time.time() < end:
        tick(i)
        i += 1


print("READY", flush=True)
spin_for(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)
