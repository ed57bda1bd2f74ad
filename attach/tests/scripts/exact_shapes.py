"""Target of attach/tests/exact.rs: classes (inheritance, properties, class and
static methods, a metaclass, decorators, dataclasses), generators (send, throw,
close, yield from), exceptions (caught levels up, chained, re-raised, 500 deep),
closures, context managers, keyword-only and positional-only arguments, calls
from C (map, sorted), and asyncio (gather with failures, async generators, a
cancelled task). The test compares exact mode's calls per function with
cProfile's and the output with a plain run."""

import asyncio
import contextlib
import dataclasses
import functools
import sys


def deco(f):
    @functools.wraps(f)
    def wrapper(*a, **k):
        return f(*a, **k)
    return wrapper

class Meta(type):
    def __call__(cls, *a, **k):
        return super().__call__(*a, **k)

class Base(metaclass=Meta):
    def __init__(self, x):
        self.x = x
    @property
    def double(self):
        return self.x * 2
    @staticmethod
    def helper(y):
        return y + 1
    @classmethod
    def build(cls, v):
        return cls(v)
    def __repr__(self):
        return "Base(%d)" % self.x
    def __eq__(self, other):
        return isinstance(other, Base) and self.x == other.x
    __hash__ = object.__hash__

class Child(Base):
    def __init__(self, x):
        super().__init__(x + 1)
    @deco
    def compute(self, n=3, *rest, scale=1, **extra):
        return sum(self.helper(i) for i in range(n)) * scale

@dataclasses.dataclass
class Point:
    x: int
    y: int
    def norm(self):
        return abs(self.x) + abs(self.y)

def main_classes():
    c = Child.build(4)
    print(c.double, c.compute(4, 9, scale=2, tag="t"), c == Child(4), repr(c))
    pts = sorted([Point(3, -1), Point(1, 1), Point(-5, 0)], key=lambda p: p.norm())
    print([p.norm() for p in pts])
    print(list(map(Base.helper, range(3))))
    sq = {k: v for k, v in ((i, i * i) for i in range(4))}
    print(sq)

def counter(n):
    total = 0
    for i in range(n):
        got = yield i
        if got:
            total += got
    return total

def delegator():
    r = yield from counter(3)
    yield r

def thrower():
    try:
        yield 1
    except ValueError as e:
        yield "caught %s" % e
    yield 3

def closer():
    try:
        yield 1
        yield 2
    finally:
        print("closed")

def main_generators():
    g = counter(4)
    print(next(g), g.send(10), g.send(5))
    try:
        g.send(1); g.send(1)
    except StopIteration as s:
        print("stop", s.value)
    print(list(delegator()))
    t = thrower()
    print(next(t), t.throw(ValueError("boom")), next(t))
    c = closer()
    print(next(c))
    c.close()
    gen = (x * 2 for x in range(3))
    print(sum(gen))

class AppError(Exception):
    pass

def level3(x):
    if x > 1:
        raise AppError("bad %d" % x)
    return x

def level2(x):
    return level3(x) + 1

def level1(x):
    try:
        return level2(x)
    finally:
        pass

def top(x):
    try:
        return level1(x)
    except AppError as e:
        return "caught: %s" % e

def chained():
    try:
        {}["missing"]
    except KeyError as e:
        raise AppError("wrapped") from e

def reraiser():
    try:
        chained()
    except AppError:
        raise

def deep(n):
    if n == 0:
        raise RuntimeError("bottom")
    return deep(n - 1)

def main_exceptions():
    print(top(1), top(5))
    try:
        reraiser()
    except AppError as e:
        print("outer", e, type(e.__cause__).__name__)
    try:
        deep(500)
    except RuntimeError as e:
        print("deep", e)
    try:
        level3(7)
    except AppError as e:
        print("escaped", e)

class Adder:
    def __init__(self, k):
        self.k = k
    def __call__(self, x):
        return x + self.k

class Ctx:
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return exc[0] is KeyError

@contextlib.contextmanager
def managed(tag):
    yield tag.upper()

def finally_override():
    try:
        return "try"
    finally:
        pass

def swallow():
    with Ctx():
        raise KeyError("x")
    return "after"

def is_even(n):
    return True if n == 0 else is_odd(n - 1)

def is_odd(n):
    return False if n == 0 else is_even(n - 1)

def make_counter():
    count = 0
    def inc():
        nonlocal count
        count += 1
        return count
    return inc

def weird_args(a, b=2, /, c=3, *, d, **kw):
    return a + b + c + d + len(kw)

def cyclic():
    x = [1]
    x.append(x)
    d = {"self": None}
    d["self"] = d
    return x, d

def secrets(password, token="ghp_abcdefghijklmnopqrstuvwxyz0123456789", normal="fine"):
    return "sk-" + "a" * 40

def unicode_text(s):
    return s[::-1]

def main_misc():
    add3 = Adder(3)
    print(list(map(add3, [1, 2])), sorted([3, 1, 2], key=functools.partial(lambda m, v: -v * m, 1)))
    with managed("tag") as t:
        print(t)
    print(finally_override(), swallow(), is_even(7))
    c = make_counter(); c(); print(c())
    print(weird_args(1, 2, 3, d=4, e=5))
    x, d = cyclic()
    print(len(x), len(d))
    print(secrets("hunter2")[:3])
    print(unicode_text("héllo \u2603 \U0001F600"))
    print(len(list(filter(lambda v: v % 2, range(10)))))

async def work(i):
    await asyncio.sleep(0.001 * i)
    if i == 2:
        raise ValueError("task %d failed" % i)
    return i * 10

async def agen(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i

async def consume():
    out = []
    async for v in agen(3):
        out.append(v)
    return out

async def main_async():
    results = await asyncio.gather(*(work(i) for i in range(4)), return_exceptions=True)
    print([r if not isinstance(r, Exception) else str(r) for r in results])
    print(await consume())
    try:
        await asyncio.gather(work(2), work(1))
    except ValueError as e:
        print("gather failed:", e)
    t = asyncio.ensure_future(work(3))
    await asyncio.sleep(0)
    t.cancel()
    try:
        await t
    except asyncio.CancelledError:
        print("cancelled")


def run_all():
    main_classes()
    main_generators()
    main_exceptions()
    main_misc()
    asyncio.run(main_async())


run_all()
