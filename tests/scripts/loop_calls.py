"""Target of tests/tests/record.rs: a loop calling one function of about 100 us with
a new `i` each time, so that each call starts in the frame the one before it just
left. Sampled, every call is one `call` row: no two rows may show the same `i`."""
import sys


def work(i, tag, sq):
    s = 0
    for k in range(3000):
        s += k
    return s


def main():
    calls = int(sys.argv[1])
    for i in range(calls):
        work(i, "t%d" % i, i * i)
    print("calls", calls)


main()
