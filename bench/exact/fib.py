"""Call-heavy workload of bench/exact: recursive fib, one argument, one int return
per call. `python fib.py N` makes 2*fib(N+1)-1 calls."""

import sys


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def main():
    print(fib(int(sys.argv[1])))


main()
