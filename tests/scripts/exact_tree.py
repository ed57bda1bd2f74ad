"""A program for `tracer query --tree` in exact mode: the module's own call into
untraced code is counted while `main` runs, for long enough (about 0.3 s) that the
hook sends several batches meanwhile, so the module's gap row is written in the
middle of main's rows."""
import os.path
import time


def step(i):
    time.sleep(0.015)
    return i


def main():
    return sum(step(i) for i in range(20))


os.path.basename("a/b")
print(main())
