"""Injection target: the main thread prints `tick N` every 10 ms while another thread
computes. `counter` is the global the injected source reads from `__main__`."""
import threading
import time

counter = 0


def compute():
    total = 0
    while True:
        total += sum(i * i for i in range(1000))


threading.Thread(target=compute, name="compute", daemon=True).start()
print("READY", flush=True)
while True:
    counter += 1
    print(f"tick {counter}", flush=True)
    time.sleep(0.01)
