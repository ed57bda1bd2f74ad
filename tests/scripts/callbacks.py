"""Target of tests/tests/record.rs: a function that C code calls again and again
(`map`, `sorted(key=...)`) and a loop whose variables do not change between calls
(`while q: slow(q.pop())`): each call sleeps 80 ms with another argument, in the frame
memory the call before it left, under a caller that shows no progress. Sampled, each
is its own call of about 80 ms."""
import time


def slow(x):
    time.sleep(0.08)
    return x * 10


def run_map():
    return list(map(slow, [1, 2, 3, 4]))


def run_sorted():
    return sorted([30, 10, 20], key=slow)


def run_queue():
    queue = [100, 200, 300]
    while queue:
        slow(queue.pop())


time.sleep(0.2)
run_map()
run_sorted()
run_queue()
print("done")
