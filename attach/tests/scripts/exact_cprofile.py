"""Target of attach/tests/exact.rs: a program that profiles itself with cProfile
(sys.monitoring tool 2 on 3.12+, the profile hook below) while being traced."""

import cProfile
import pstats


def work(n):
    return sum(range(n))


profile = cProfile.Profile()
profile.enable()
result = work(100)
profile.disable()
calls = sum(v[1] for k, v in pstats.Stats(profile).stats.items() if k[2] == "work")
print(result, calls)
