"""The child that subprocesses.py starts with `subprocess.run`."""
import time


def child_work(n):
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        pass
    return n


print(child_work(7), flush=True)
