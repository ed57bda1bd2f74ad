"""The sampling benchmark's targets: fixed amounts of CPU-bound Python work.

    python workload.py deep DEPTH ROUNDS
        keeps a stack DEPTH frames deep (`<module>` and `main()` included) and spins
        on arithmetic in the innermost frame, ROUNDS rounds of about 0.1 ms in all;
        every 1000 rounds (about 0.1 s) it returns all the way up and descends again,
        so a sampler also sees calls end and begin.
    python workload.py calls DEPTH CALLS
        at DEPTH frames, makes CALLS short calls (a two-frame `step` -> `leaf` pair
        with arguments, well under a microsecond of work each): nearly every sample
        finds a new call whose arguments a tracer reads.
    python workload.py threads THREADS DEPTH ROUNDS
        THREADS threads each run `deep` at DEPTH frames for ROUNDS / THREADS rounds,
        all at once: a sampler has several busy stacks to read on every tick.

It prints READY when it starts, and when the work is done one JSON line:
`work_seconds` (wall time of the work alone), `lifetime_seconds` (since the first
line of this script ran), `cpu_seconds` (this process's user + system time, every
thread), and `hwm_kb` (its peak resident size since it started this interpreter,
VmHWM: unlike `ru_maxrss`, it holds nothing of the process it was forked from). It then leaves with `os._exit`,
so that nothing runs after those figures were taken: a driver that gets the CPU time
of a profiler together with its reaped child can subtract this process's share.
"""

import time

script_started = time.monotonic()

import json
import os
import resource
import sys
import threading

ROUNDS_PER_DESCENT = 1000


def spin(rounds):
    total = 0
    for _ in range(rounds):
        for i in range(2000):
            total += i * i
    return total


def descend(depth, rounds):
    if depth <= 1:
        return spin(rounds)
    return descend(depth - 1, rounds)


def deep(frames, rounds):
    """Spins `rounds` rounds at `frames` frames below the caller, 1000 at a time."""
    done = 0
    while done < rounds:
        batch = min(ROUNDS_PER_DESCENT, rounds - done)
        descend(frames, batch)
        done += batch


def leaf(index, label):
    return index * 2 + len(label)


def step(index, label):
    return leaf(index, label) + 1


def burst(depth, calls):
    if depth > 1:
        return burst(depth - 1, calls)
    total = 0
    for index in range(calls):
        total += step(index, "call")
    return total


def threads(count, frames, rounds):
    workers = [
        threading.Thread(target=deep, args=(frames, rounds // count), name=f"worker-{n}")
        for n in range(count)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def main():
    kind = sys.argv[1]
    args = [int(a) for a in sys.argv[2:]]
    print("READY", flush=True)
    started = time.perf_counter()
    # DEPTH counts every frame of the busiest stack: <module>, main() and the
    # workload's function, the recursion, and the innermost spin() or step() -> leaf().
    if kind == "deep":
        depth, rounds = args
        deep(depth - 4, rounds)
    elif kind == "calls":
        depth, calls = args
        burst(depth - 4, calls)
    elif kind == "threads":
        count, depth, rounds = args
        # A thread's stack has threading's _bootstrap(), _bootstrap_inner() and
        # run() where the main thread has <module> and main().
        threads(count, depth - 5, rounds)
    else:
        raise SystemExit(f"unknown workload {kind!r}: deep, calls or threads")
    work_seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/self/status") as status:
        hwm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    report = {
        "work_seconds": work_seconds,
        "lifetime_seconds": time.monotonic() - script_started,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "hwm_kb": hwm_kb,
    }
    print(json.dumps(report), flush=True)
    os._exit(0)


main()
