"""A workload whose call structure and durations are known, for sampled-tracing tests.

Each traced function measures its own duration and appends a record; at the end the
program prints them as one JSON line prefixed with RESULTS, so the test can check the
trace against what really happened. Every call has distinct arguments, so it can be
told apart in the trace.
"""
import json
import sys
import threading
import time

RECORDS = []
LOCK = threading.Lock()


def busy(ms):
    end = time.perf_counter() + ms / 1000.0
    while time.perf_counter() < end:
        pass


def note(function, args, parent, depth, start):
    ns = time.perf_counter_ns() - start
    # A call in a thread that waits for the GIL keeps its frame on the stack while it
    # waits, before its first clock read and after its last: "threaded" tells the test
    # that the frame may outlive "ns" by a switch interval at each end.
    threaded = threading.current_thread() is not threading.main_thread()
    with LOCK:
        RECORDS.append(
            {
                "function": function,
                "args": args,
                "parent": parent,
                "depth": depth,
                "ns": ns,
                "end": time.time_ns(),
                "threaded": threaded,
                "switch_interval_ns": int(sys.getswitchinterval() * 1e9),
            }
        )


def leaf(n, parent, depth):
    start = time.perf_counter_ns()
    busy(20)
    note("leaf", {"n": repr(n)}, parent, depth, start)


def middle(k):
    start = time.perf_counter_ns()
    busy(5)
    leaf(2 * k, "middle", 4)
    leaf(2 * k + 1, "middle", 4)
    note("middle", {"k": repr(k)}, "outer", 3, start)


def outer(rounds):
    start = time.perf_counter_ns()
    for k in range(rounds):
        middle(k)
    note("outer", {"rounds": repr(rounds)}, "main", 2, start)


def recursive(depth, level):
    start = time.perf_counter_ns()
    busy(25)
    if depth > 0:
        recursive(depth - 1, level + 1)
    note("recursive", {"depth": repr(depth), "level": repr(level)}, "recursive" if level > 2 else "main", level, start)


def encode(payload):
    start = time.perf_counter_ns()
    text = ""
    end = time.perf_counter() + 0.03
    while time.perf_counter() < end:
        text = json.dumps(payload)
    # One call that lasts many sampling periods: the short ones above are each seen
    # by one sample at most, and a sampled call's lower bound is then 0, so only this
    # one gives json.dumps weight in a flame graph.
    json.dumps([payload] * 50000)
    note("encode", {"payload": repr(payload)}, "main", 2, start)
    return text


def worker(base):
    start = time.perf_counter_ns()
    for i in range(2):
        leaf(base + i, "worker", 1)
    note("worker", {"base": repr(base)}, None, 0, start)


def main():
    start = time.perf_counter_ns()
    outer(3)
    recursive(3, 2)
    encode({"a": 1})
    threads = [threading.Thread(target=worker, args=(100 * (i + 1),), name=f"w{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    note("main", {}, "<module>", 1, start)


if __name__ == "__main__":
    main()
    print("RESULTS " + json.dumps(RECORDS), flush=True)
    sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
