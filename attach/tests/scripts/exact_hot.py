"""Target of attach/tests/exact.rs: one function called many times (max_calls, slow
tracer), one called once."""

import sys


def hot(i):
    return i


def cold():
    return "cold"


for i in range(int(sys.argv[1])):
    hot(i)
print(cold(), "done", flush=True)
