"""A busy target whose stacks change all the time: threads call a family of
functions to random depths, so a reader that does not stop the process sees frames
appear and vanish under it. Prints READY, then runs until killed."""
import random
import threading


def f0(n): return n if n <= 0 else FUNCS[n % 7](n - 1) + 1
def f1(n): return n if n <= 0 else FUNCS[(n * 3) % 7](n - 1) + 1
def f2(n): return n if n <= 0 else FUNCS[(n + 1) % 7](n - 1) + 1
def f3(n): return n if n <= 0 else FUNCS[(n + 2) % 7](n - 1) + 1
def f4(n): return n if n <= 0 else [FUNCS[(n + 3) % 7](n - 1) for _ in range(1)][0] + 1
def f5(n): return n if n <= 0 else sum(FUNCS[(n + 4) % 7](n - 1) for _ in range(1)) + 1
def f6(n): return n if n <= 0 else FUNCS[(n + 5) % 7](n - 1) + 1


FUNCS = [f0, f1, f2, f3, f4, f5, f6]


def churn(seed):
    rng = random.Random(seed)
    while True:
        FUNCS[rng.randrange(7)](rng.randrange(1, 60))


for i in range(3):
    threading.Thread(target=churn, args=(i,), name=f"churn-{i}", daemon=True).start()
print("READY", flush=True)
churn(99)
