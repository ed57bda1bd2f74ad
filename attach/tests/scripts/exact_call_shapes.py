"""Target of attach/tests/exact.rs: functions called in every way Python can bind
their arguments (positionally, by keyword, through * and **, defaults left out,
keyword-only, *args, a closure's cell, bound methods held and called later, a call
that fails), each call noted as a JSON line with the reprs its arguments must have."""

import json


def note(function, **args):
    print(json.dumps({"function": function, "args": args}))


class Shapes:
    def alone(self):
        return 1

    def pair(self, x):
        return x

    def __repr__(self):
        return "never called by the hook"


def one(n):
    return n


def keyword_only(*, k):
    return k


def star(*a):
    return a


def default(x=5):
    return x


def two(a, b):
    return a


def cell(v):
    def inner():
        return v

    return inner()


def main():
    s = Shapes()
    plain = "<__main__.Shapes object at 0x%x>" % id(s)
    for i in range(3):
        one(i)
        note("one", n=repr(i))
        one(n=i)
        note("one", n=repr(i))
        one(*[i])
        note("one", n=repr(i))
        one(**{"n": i})
        note("one", n=repr(i))
        keyword_only(k=i)
        note("keyword_only", k=repr(i))
        star(i, "s")
        note("star", a=repr((i, "s")))
        star()
        note("star", a="()")
        default()
        note("default", x="5")
        default(i)
        note("default", x=repr(i))
        two(i, [i])
        note("two", a=repr(i), b=repr([i]))
        cell(i)
        note("cell", v=repr(i))
        s.alone()
        note("Shapes.alone", self=plain)
        held = s.alone
        held()
        note("Shapes.alone", self=plain)
        s.pair(i)
        note("Shapes.pair", self=plain, x=repr(i))
        held = s.pair
        held(i)
        note("Shapes.pair", self=plain, x=repr(i))
        Shapes.pair(s, i)
        note("Shapes.pair", self=plain, x=repr(i))
        try:
            one(i, i)
        except TypeError:
            pass
        for n in map(one, ["m"]):
            note("one", n=repr(n))


main()
