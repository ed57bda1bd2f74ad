"""Target of tests/tests/record.rs: a recursion DEPTH deep (argv[1]) that works for
SECONDS (argv[2], 0.4 by default) at the bottom, deeper than the 1024 memory ranges the kernel reads in one
`process_vm_readv` and than 4096 frames, for sampled mode to record every level of
it."""
import sys
import time

sys.setrecursionlimit(10000)


def walk(n):
    if n == 0:
        end = time.time() + float(sys.argv[2] if len(sys.argv) > 2 else 0.4)
        while time.time() < end:
            pass
        return 0
    return walk(n - 1) + 1


print(walk(int(sys.argv[1])))
