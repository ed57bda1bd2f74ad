"""Target of attach/tests/exact.rs: a deterministic workload that prints, as JSON
lines, what it knows about its own calls (the function, the reprs of its arguments
and of its result, or the exception that ended it), so the test can compare exact
mode's rows with them. The same script runs under cProfile for call counts.
"""

import json
import sys

sys.setrecursionlimit(3000)


def note(**record):
    print(json.dumps(record), flush=True)


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def recurse(depth):
    if depth == 0:
        return "bottom"
    return recurse(depth - 1)


class Account:
    def __init__(self, owner, balance=0):
        self.owner = owner
        self.balance = balance

    def deposit(self, amount, *, memo=None):
        self.balance += amount
        return self.balance

    @classmethod
    def opened(cls, owner):
        return cls(owner, 10)


def countdown(n):
    while n > 0:
        yield n
        n -= 1
    return "liftoff"


def level4(key):
    raise KeyError(key)


def rejects(items):
    raise ValueError("bad items", items, {"at": 2})


class Refused(Exception):
    def __str__(self):
        return "refused (a __str__ of the program's, which the tracer does not run)"


def refuses(items):
    raise Refused("no", items)


def level3(key):
    return level4(key) + 1


def level2(key):
    return level3(key) * 2


def level1(key):
    try:
        return level2(key)
    except KeyError as exc:
        return "caught " + str(exc)


def variadic(first, *rest, flag=True, **options):
    return (first, rest, flag, sorted(options))


def shapes(kind):
    values = {
        "none": None,
        "tuple": (1, "two", 3.0),
        "dict": {"b": [1, 2], "a": {"nested": True}},
        "quote": "it's \"quoted\"\n",
        "float": 0.1 + 0.2,
        "big": 2**100,
        "bytes": b"\x00ab'",
        "set": {7},
    }
    return values[kind]


def main():
    note(function="fib", args={"n": repr(15)}, result=repr(fib(15)))
    note(function="recurse", args={"depth": repr(500)}, result=repr(recurse(500)))
    account = Account.opened("ann")
    note(
        function="Account.opened",
        args={"cls": repr(Account).replace("'", "'")},
        result=object.__repr__(account),
    )
    for amount in (5, 7):
        balance = account.deposit(amount, memo="m%d" % amount)
        note(
            function="Account.deposit",
            args={"self": object.__repr__(account), "amount": repr(amount), "memo": repr("m%d" % amount)},
            result=repr(balance),
        )
    note(function="countdown", yields=[repr(v) for v in countdown(3)], result=repr("liftoff"))
    result = level1("missing")
    note(function="level1", args={"key": repr("missing")}, result=repr(result))
    for name in ("level4", "level3", "level2"):
        note(function=name, exception="KeyError", message=str(KeyError("missing")))
    # An exception of builtin containers: its message is Python's own str() of it.
    try:
        rejects([1, (2, "x")])
    except ValueError as e:
        note(function="rejects", args={"items": repr([1, (2, "x")])}, exception="ValueError", message=str(e))
    # One with a __str__ of its own: its arguments, as repr() shows builtin values.
    try:
        refuses([1, {"k": (2,)}])
    except Refused as e:
        note(function="refuses", args={"items": repr([1, {"k": (2,)}])}, exception="__main__.Refused", message=repr(e.args))
    result = variadic(1, 2, 3, flag=False, x=1, y=2)
    note(
        function="variadic",
        args={"first": "1", "rest": repr((2, 3)), "flag": "False", "options": repr({"x": 1, "y": 2})},
        result=repr(result),
    )
    for kind in ("none", "tuple", "dict", "quote", "float", "big", "bytes", "set"):
        note(function="shapes", args={"kind": repr(kind)}, result=repr(shapes(kind)))
    # A class written in Python, called from traced code: a gap into its module.
    json.JSONDecoder()
    ordered = sorted([3, 1, 2], key=lambda x: -x)
    squares = [x * x for x in ordered]
    note(function="main", squares=squares)


main()
