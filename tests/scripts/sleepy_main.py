"""A process whose main thread sleeps for a long time while another thread works:
`tracer attach --exact` must wait for a safe point and give up cleanly."""
import threading
import time


def work():
    while True:
        sum(range(1000))
        time.sleep(0.001)


threading.Thread(target=work, name="worker", daemon=True).start()
print("READY", flush=True)
time.sleep(600)
