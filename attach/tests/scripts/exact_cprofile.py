"""Target of attach/tests/exact.rs: a program that profiles itself with cProfile
(sys.monitoring tool 2 on 3.12+, the profile hook below) while being traced.

It prints whether cProfile saw `work`, not how often: on 3.12 CPython itself may
deliver a function's PY_START twice to every tool when another thread asks for the
GIL just as the function starts (the hook's sender is such a thread); seen once in
CI, as cProfile counting 2."""

import cProfile
import pstats


def work(n):
    return sum(range(n))


profile = cProfile.Profile()
profile.enable()
result = work(100)
profile.disable()
calls = sum(v[1] for k, v in pstats.Stats(profile).stats.items() if k[2] == "work")
print(result, calls >= 1)
