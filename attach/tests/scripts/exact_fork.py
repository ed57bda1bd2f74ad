"""A program that forks from its own code: on 3.12+ os.fork() warns (on stderr) when
the process has more than one thread, so a hook that keeps a thread of its own
running across the fork would change the program's output. Forks twice: the hook's
work goes on after each."""
import os


def before(n):
    return n + 1


def in_child():
    return "child"


def after(n):
    return n * 2


for round_number in range(2):
    before(round_number)
    pid = os.fork()
    if pid == 0:
        in_child()
        os._exit(0)
    os.waitpid(pid, 0)
    print("forked", round_number, after(round_number), flush=True)
