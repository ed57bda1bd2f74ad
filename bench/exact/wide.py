"""Calls spread over many functions, as in a large application: `python wide.py F R`
makes F small functions (default 3000) and calls each of them R times (default 300),
round after round. Every event makes the exact hook look up its function and its line
in tables that grow with the functions traced; this workload keeps them honest (until
2026-12-07 every function's key for one line offset fell into one hash chain, and
3000 functions took 14x untraced where fib took 5x)."""

import sys
import types

FUNCTIONS = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 300


def template(x):
    y = x + 1
    return y


def make(i):
    """A function of its own code object (named `f<i>`, starting at line 1000 + i),
    as a module of thousands of functions has, without compiling thousands."""
    code = template.__code__.replace(
        co_name="f%d" % i, co_firstlineno=1000 + i, **qualname("f%d" % i)
    )
    return types.FunctionType(code, globals(), "f%d" % i)


def qualname(name):
    return {"co_qualname": name} if sys.version_info >= (3, 11) else {}


def main():
    functions = [make(i) for i in range(FUNCTIONS)]
    total = 0
    for r in range(ROUNDS):
        for f in functions:
            total += f(r)
    print(total)


main()
