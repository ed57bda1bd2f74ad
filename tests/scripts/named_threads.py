"""Target of tests/tests/record.rs: four threads named w0..w3, each calling `leaf`
ten times from `worker` (20 ms of CPU each), for sampled mode to name the threads
of every call from the first one on; then four threads named s0..s3 one after the
other, each often given the ident of the one before (the same pthread memory)."""
import threading
import time


def leaf():
    start = time.time()
    while time.time() - start < 0.02:
        pass


def worker():
    for _ in range(10):
        leaf()


threads = [threading.Thread(target=worker, name="w%d" % i) for i in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for i in range(4):
    t = threading.Thread(target=worker, name="s%d" % i)
    t.start()
    t.join()
