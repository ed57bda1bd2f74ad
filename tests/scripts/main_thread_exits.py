"""Target of tests/tests/dump.rs: the main thread ends (pthread_exit, as a C library
embedding Python may do) while another thread works on, so the process runs with
its main thread a zombie. Prints READY from the worker once the main thread is gone."""
import ctypes
import os
import threading
import time


def work(i):
    time.sleep(0.02)
    return i


def worker(main_tid):
    status = "/proc/%d/task/%d/status" % (os.getpid(), main_tid)
    said = False
    i = 0
    while True:
        work(i)
        i += 1
        if not said:
            try:
                with open(status) as f:
                    gone = "State:\tZ" in f.read()
            except OSError:
                gone = True
            if gone:
                print("READY", flush=True)
                said = True


threading.Thread(target=worker, args=(threading.get_native_id(),), name="survivor").start()
time.sleep(0.2)
ctypes.CDLL(None).pthread_exit(None)
