"""Target of tests/tests/attach_exact.rs: calls `tick` and forks right after, again
and again (a child that exits at once), printing READY first. On 3.13 the hook's
sending thread, ended before each fork, starts again only at the next traced call:
what it held has to leave at the fork, or a program that forks this often sends
nothing while the tracer is attached."""
import os
import sys
import time


def tick(i):
    return i * 3


print("READY", flush=True)
for i in range(40):
    tick(i)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    time.sleep(0.1)
sys.stdout.write("done\n")
