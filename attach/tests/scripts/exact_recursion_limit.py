"""Target of attach/tests/exact.rs: a recursion that reaches the interpreter's limit,
whose RecursionError the program catches before it goes on. Prints what it saw."""

import sys

sys.setrecursionlimit(400)


def overflow(n):
    return overflow(n + 1)


def after(n):
    return n * 2


def main():
    try:
        overflow(0)
    except RecursionError:
        print("recursion error caught")
    print(after(21))


main()
