"""Target of attach/tests/repr_live.rs.

Builds values of every kind the remote repr handles, keeps them alive, and prints one
JSON line per check before READY:

* {"kind": "value", "name", "id", "expect", "default"?}: `repr_value` of the object at
  address `id` (CPython's id() is the address) must equal `expect`, Python's own
  repr (or `object.__repr__` for objects whose class defines its own, or the
  documented base-class form for subclasses); `default`, when given, is the expected
  text under the default options before the 200-character cut (containers longer
  than 32 items or deeper than 6 levels).
* {"kind": "attr", "name", "obj", "attr", "value"}: `instance_attr(obj, attr)` must
  be the address `value` (null: no such attribute).
* {"kind": "items", "name", "id", "items"}: `dict_items(id)` must be these
  `[key id, value id]` pairs, in order.

Then it sleeps until killed.
"""

import collections
import json
import random
import struct
import threading
import time

MAX_ITEMS = 32
MAX_DEPTH = 6
REDACTED = "[REDACTED]"

KEEP = []


def emit(record):
    print(json.dumps(record))


def value(name, v, expect=None, default=None):
    KEEP.append(v)
    record = {
        "kind": "value",
        "name": name,
        "id": id(v),
        "expect": repr(v) if expect is None else expect,
    }
    if default is not None:
        record["default"] = default
    emit(record)


def attr(name, obj, attribute):
    KEEP.append(obj)
    present = attribute in getattr(obj, "__dict__", {})
    emit(
        {
            "kind": "attr",
            "name": name,
            "obj": id(obj),
            "attr": attribute,
            "value": id(obj.__dict__[attribute]) if present else None,
        }
    )


def items(name, d):
    KEEP.append(d)
    emit(
        {
            "kind": "items",
            "name": name,
            "id": id(d),
            "items": [[id(k), id(v)] for k, v in d.items()],
        }
    )


def first_items(open_, close, reprs):
    """The documented cut form: the first MAX_ITEMS items, then ', ...'."""
    return open_ + ", ".join(reprs[:MAX_ITEMS]) + ", ..." + close


class Plain:
    def __init__(self):
        self.name = "widget"
        self.count = 3
        self.tags = ["a", "b"]


class Slotted:
    __slots__ = ("x",)

    def __init__(self):
        self.x = 1


class Outer:
    class Inner:
        pass

    def method(self):
        pass


class Many:
    def __init__(self):
        for i in range(40):
            setattr(self, "a%d" % i, i * 1000)


class MyInt(int):
    pass


class MyStr(str):
    pass


class MyList(list):
    pass


class MyDict(dict):
    pass


class MyFloat(float):
    pass


class MySet(set):
    pass


class MyFrozen(frozenset):
    pass


Point = collections.namedtuple("Point", "x y")


class Point3(Point):
    pass


def top_level():
    pass


def make_inner():
    def inner():
        pass

    return inner


def main():
    # None, bools, ints.
    value("none", None)
    value("true", True)
    value("false", False)
    for n in [0, 1, -1, 42, -7, 2**30 - 1, 2**30, 2**60, 2**64 - 1, -(2**64),
              2**100, -(3**200), 10**150 + 7, 10**9, 10**18, 256, 257, -5]:
        value("int %d" % n if abs(n) < 10**20 else "int bits %d" % n.bit_length(), n)

    # Floats: the fixed cases, then random ones.
    fixed = [0.0, -0.0, 1.0, -1.5, 0.1, 0.2 + 0.1, 1e16, 1e15, 1e-5, 1e-4, 1.234e-4,
             123456789.123, 1.7976931348623157e308, 5e-324, 2.2250738585072014e-308,
             float("nan"), float("inf"), float("-inf"), 1 / 3, 2 / 3, 100.0, 1e22,
             1e23, 9007199254740993.0, 123456789012345678.0, 0.5, 1e100, -2.5e-10]
    for i, f in enumerate(fixed):
        value("float fixed %d" % i, f)
    rng = random.Random(20240601)
    for i in range(120):
        f = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        value("float bits %d" % i, f)
    for i in range(120):
        value("float scaled %d" % i, rng.random() * 10 ** rng.randint(-25, 25))

    # Strings: quoting, escapes, every storage kind.
    strings = ["", "hello", "it's", 'say "hi"', "both ' and \"", "line1\nline2\ttab\r",
               "back\\slash", "\x00\x01\x1f\x7f", "caf\xe9", "\xa0nbsp", "\xff",
               "\u65e5\u672c\u8a9e", "e\u0301", "\u200b zero width", "\u2028",
               "\ue000", "\u0378", "\U0001f389 party", "\U0001f600\U0001f389",
               "\ud800", "tab\there", "\x85", "\u00ad soft hyphen"]
    for i, s in enumerate(strings):
        value("str %d" % i, s)
    value("str long ascii", "x" * 1000)
    value("str long latin1", "\xe9" * 300)
    # Longer than the hook sends whole (4096 characters): cut before it is sent.
    value("str past the cut", "y" * 5000)
    value("str past the cut, astral", "\U0001f389" * 5000)
    value("str subclass", MyStr('sub"class'))

    # Bytes.
    for i, b in enumerate([b"", b"abc", b"it's", b"\x00\xff'\"\\\n\t\r", b'only "double"']):
        value("bytes %d" % i, b)
    value("bytes all", bytes(range(256)))

    # Lists and tuples.
    value("list empty", [])
    value("list flat", [1, 2, 3])
    value("list nested", [1, [2, [3, (4,)]], {"k": [5]}])
    long_list = list(range(1000))
    value("list long", long_list,
          default=first_items("[", "]", [repr(x) for x in long_list]))
    deep = [1]
    for _ in range(9):
        deep = [deep]
    value("list deep", deep, default="[" * MAX_DEPTH + "[...]" + "]" * MAX_DEPTH)
    recursive = [1]
    recursive.append(recursive)
    value("list recursive", recursive)
    value("tuple empty", ())
    value("tuple one", (1,))
    value("tuple pair", (1, "two"))
    value("tuple nested one", ((1,),))
    tuple40 = tuple(range(40))
    value("tuple 40", tuple40, default=first_items("(", ")", [repr(x) for x in tuple40]))

    # Dicts: str keys, int keys, mixed keys, deletions, sizes, recursion.
    value("dict empty", {})
    value("dict str keys", {"a": 1, "b": [1, 2]})
    value("dict int keys", {1: "one", 2: "two"})
    value("dict mixed keys", {1: "a", "b": 2, (3,): None})
    deleted = {"k%d" % i: i for i in range(20)}
    for k in ["k3", "k7", "k15", "k0"]:
        del deleted[k]
    deleted["new"] = 99
    deleted["k3"] = 333
    value("dict after deletions", deleted)
    items("dict after deletions", deleted)
    big = {i: i * i for i in range(300)}
    value("dict 300", big,
          default=first_items("{", "}", ["%r: %r" % kv for kv in big.items()]))
    items("dict 300", big)
    self_dict = {}
    self_dict["self"] = self_dict
    value("dict recursive", self_dict)
    value("dict subclass", MyDict(a=1), expect=dict.__repr__(MyDict(a=1)))
    ordered = collections.OrderedDict([("x", 1), ("y", 2)])
    value("ordered dict", ordered, expect=dict.__repr__(ordered))
    default_dict = collections.defaultdict(list, {"k": [1]})
    value("defaultdict", default_dict, expect=dict.__repr__(default_dict))
    counter = collections.Counter("aab")
    value("counter", counter, expect=dict.__repr__(counter))

    # Sets.
    value("set empty", set())
    value("set ints", {1, 2, 3})
    value("set str", {"a"})
    value("frozenset empty", frozenset())
    value("frozenset", frozenset({1, 2}))
    discarded = set(range(20))
    for n in [0, 5, 6, 19]:
        discarded.discard(n)
    value("set after discards", discarded)
    set100 = set(range(100))
    value("set 100", set100, default=first_items("{", "}", [repr(x) for x in set100]))
    value("set subclass", MySet({1}))
    value("set subclass empty", MySet())
    value("frozenset subclass", MyFrozen({2}))

    # Subclasses print like their base; named tuples by field.
    value("int subclass", MyInt(5), expect=int.__repr__(MyInt(5)))
    value("float subclass", MyFloat(1.5), expect=float.__repr__(MyFloat(1.5)))
    value("list subclass", MyList([1]), expect=list.__repr__(MyList([1])))
    value("namedtuple", Point(1, "y"))
    value("namedtuple subclass", Point3(1, 2))

    # Functions and classes.
    value("function", top_level)
    value("method function", Outer.method)
    value("lambda", lambda: None)
    value("nested function", make_inner())
    for cls in [Plain, int, threading.Thread, collections.OrderedDict, Outer.Inner,
                type, object, MyInt]:
        value("class %s" % cls.__qualname__, cls)

    # Other objects print as object.__repr__ does.
    lock = threading.Lock()
    worker = threading.Thread(target=time.sleep, args=(3600,), name="worker-7",
                              daemon=True)
    worker.start()
    plain = Plain()
    for name, obj in [("plain", plain), ("object", object()), ("inner", Outer.Inner()),
                      ("module", threading), ("lock", lock), ("slotted", Slotted()),
                      ("thread", worker), ("exception", ValueError("x"))]:
        value("object " + name, obj, expect=object.__repr__(obj))

    # Redaction: secret-looking text, secret dict keys.
    jwt = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
           "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")
    value("secret jwt", jwt, expect=REDACTED)
    value("secret aws", "AKIAIOSFODNN7EXAMPLE", expect=REDACTED)
    value("secret url", "postgres://app:hunter2@db.internal/prod", expect=REDACTED)
    value("url without password", "https://example.com:8443/a:b@c",
          expect="'https://example.com:8443/a:b@c'")
    value("secret card int", 4111111111111111, expect=REDACTED)
    value("secret token bytes", b"ghp_1234567890abcdefghijABCDEFGHIJ123456",
          expect=REDACTED)
    with_jwt = ["ok", jwt]
    value("list with secret", with_jwt, expect="['ok', %s]" % REDACTED)
    login = {"user": "bob", "password": "hunter2", "Api_Key": [1, 2]}
    value("dict secret keys", login,
          expect="{'user': 'bob', 'password': %s, 'Api_Key': %s}" % (REDACTED, REDACTED))

    # Instance attributes in every storage the versions use.
    for a in ["name", "count", "tags", "nope"]:
        attr("plain." + a, plain, a)
    materialized = Plain()
    materialized.__dict__["extra"] = 5
    for a in ["name", "extra"]:
        attr("materialized." + a, materialized, a)
    partial = Plain()
    del partial.count
    partial.count = 7
    for a in ["name", "count", "tags"]:
        attr("reinserted." + a, partial, a)
    removed = Plain()
    del removed.tags
    for a in ["name", "tags"]:
        attr("removed." + a, removed, a)
    many = Many()
    for a in ["a0", "a35", "a39"]:
        attr("many." + a, many, a)
    big_int = MyInt(12345678901234567890)
    big_int.label = "big"
    attr("int subclass.label", big_int, "label")
    attr("thread._name", worker, "_name")
    attr("main thread._name", threading.main_thread(), "_name")
    attr("slotted.x", Slotted(), "x")

    # The __dict__ of instances as dicts (split tables), in order.
    split = Plain()
    del split.name
    split.name = "again"
    items("split dict reinserted", vars(split))
    value("split dict reinserted", vars(split))
    sparse = Plain()
    del sparse.count
    items("split dict sparse", vars(sparse))
    value("split dict sparse", vars(sparse))

    print("READY", flush=True)
    time.sleep(3600)


main()
