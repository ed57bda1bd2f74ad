"""A program that starts Python children: a multiprocessing pool and a subprocess.

For `tracer record --subprocesses`: the workers' `square` calls and the child's
`child_work` call belong in the same trace as the parent's calls.
"""
import multiprocessing
import os
import subprocess
import sys
import time


def busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def square(x):
    busy(0.2)
    return x * x


def main():
    with multiprocessing.Pool(2) as pool:
        print(pool.map(square, range(6), chunksize=1), flush=True)
    child = os.path.join(os.path.dirname(os.path.abspath(__file__)), "subprocess_child.py")
    subprocess.run([sys.executable, child], check=True)


if __name__ == "__main__":
    main()
