"""Injection target: the main thread blocks in `os.read` on its stdin (a pipe), prints
what it got, then keeps printing `tick N`."""
import os
import time

print("READY", flush=True)
data = os.read(0, 100)
print(f"got {data!r}", flush=True)
n = 0
while True:
    n += 1
    print(f"tick {n}", flush=True)
    time.sleep(0.01)
