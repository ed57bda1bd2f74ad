"""The benchmark's target: a CPU-bound workload at a fixed stack depth.

`python workload.py DEPTH SECONDS [ROUNDS]` keeps a stack DEPTH frames deep
(`<module>` and `main()` included) and spins on arithmetic in the innermost frame,
in rounds of about 0.1 ms; every ROUNDS rounds (default 1000, about 0.1 s) it
returns all the way up and descends again, so a sampler also sees new calls.
It prints READY when it starts, and at the end one JSON line: the rounds of work
done per second, which the benchmark compares with and without a sampler attached.
"""
import json
import sys
import time


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


def main():
    depth = int(sys.argv[1])
    seconds = float(sys.argv[2])
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    # main() and <module> are two frames: the recursion adds the rest.
    frames = depth - 2
    print("READY", flush=True)
    start = time.perf_counter()
    done = 0
    while time.perf_counter() - start < seconds:
        descend(frames - 1, rounds)
        done += rounds
    elapsed = time.perf_counter() - start
    print(json.dumps({"rounds_per_second": done / elapsed, "seconds": elapsed}), flush=True)


main()
