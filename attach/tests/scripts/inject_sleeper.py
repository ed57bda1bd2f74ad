"""Injection target: the main thread sleeps argv[1] seconds in one `time.sleep` while
another thread prints `alive N` every 50 ms; then the main thread prints how long it
slept and keeps printing `tick N`."""
import sys
import threading
import time

seconds = float(sys.argv[1])
print_lock = threading.Lock()


def say(line):
    with print_lock:
        print(line, flush=True)


def heartbeat():
    n = 0
    while True:
        n += 1
        say(f"alive {n}")
        time.sleep(0.05)


say("READY")
threading.Thread(target=heartbeat, name="heartbeat", daemon=True).start()
start = time.monotonic()
time.sleep(seconds)
say(f"woke after {time.monotonic() - start:.3f}")
n = 0
while True:
    n += 1
    say(f"tick {n}")
    time.sleep(0.01)
