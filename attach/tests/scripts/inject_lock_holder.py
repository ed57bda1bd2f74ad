"""Injection target: a thread takes the pending-call queue's lock (the way
`Py_AddPendingCall` does) and holds it for argv[3] seconds while the main thread
prints `tick N`. argv[1] is the lock's offset in `_PyRuntime`, argv[2] its kind:
`semaphore` (3.12: a `PyThread_type_lock` pointer) or `mutex` (3.13: a `PyMutex`)."""
import ctypes
import sys
import threading
import time

offset, kind, hold = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
api = ctypes.pythonapi
at = ctypes.addressof(ctypes.c_char.in_dll(api, "_PyRuntime")) + offset
if kind == "semaphore":
    lock = ctypes.c_void_p.from_address(at).value
    api.PyThread_acquire_lock.argtypes = [ctypes.c_void_p, ctypes.c_int]
    api.PyThread_release_lock.argtypes = [ctypes.c_void_p]

    def acquire():
        api.PyThread_acquire_lock(lock, 1)

    def release():
        api.PyThread_release_lock(lock)

else:
    api.PyMutex_Lock.argtypes = [ctypes.c_void_p]
    api.PyMutex_Unlock.argtypes = [ctypes.c_void_p]

    def acquire():
        api.PyMutex_Lock(at)

    def release():
        api.PyMutex_Unlock(at)


held = threading.Event()


def holder():
    acquire()
    held.set()
    time.sleep(hold)
    release()


threading.Thread(target=holder, name="holder", daemon=True).start()
held.wait()
print("READY", flush=True)
n = 0
while True:
    n += 1
    print(f"tick {n}", flush=True)
    time.sleep(0.01)
