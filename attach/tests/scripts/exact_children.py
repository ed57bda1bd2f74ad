"""Target of attach/tests/exact.rs: multiprocessing pools (forked and spawned
workers; closed and joined, or terminated by `with`) and a subprocess that says
whether it sees the hook's configuration."""

import multiprocessing
import subprocess
import sys


def square(x):
    return x * x


def cube(x):
    return x * x * x


if __name__ == "__main__":
    for method in ("fork", "spawn"):
        pool = multiprocessing.get_context(method).Pool(2)
        print(method, pool.map(square, range(6)), flush=True)
        pool.close()
        pool.join()
        # Leaving `with` terminates the workers (SIGTERM) right after the results.
        with multiprocessing.get_context(method).Pool(2) as pool:
            print("with", method, pool.map(cube, range(6)), flush=True)
    code = "import os; print('TRACER_EXACT' in os.environ)"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    print("child sees the hook's configuration:", child.stdout.strip(), flush=True)
