"""Target of tests/tests/record.rs: calls as fast as Python makes them, for a second,
each with a new int argument whose memory the next call's temporaries reuse. Every
sampled `work` call must show an `i` the program passed (below the count it prints)
and every `leaf` call a dict whose `sq` is `i * i + 1000000` of its own `i`."""
import time


def leaf(d):
    x = 0
    for _ in range(200):
        x += 1
    return x


def work(i):
    return leaf({"i": i, "sq": i * i + 1000000})


def main():
    end = time.time() + 1.0
    i = 0
    while time.time() < end:
        work(i)
        i += 1
    print("calls", i)


main()
