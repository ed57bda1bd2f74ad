"""A program whose calls are known, for the tests of `tracer query` on a recorded run.

Every call lasts tens of milliseconds, so a sampler sees each one; at the end the
program prints what it did as one JSON line prefixed with RESULTS: each call of
`Cart.total` with its arguments and duration, and how often each function ran.
Run it from this folder: `shopkit` is the program's own package.
"""
import json
import threading
import time

from shopkit.billing import Cart, busy

CALLS = {}
TOTALS = []
LOCK = threading.Lock()


def count(function):
    with LOCK:
        CALLS[function] = CALLS.get(function, 0) + 1


def price(item):
    count("price")
    busy(30)
    return len(item)


def encode(amount):
    count("encode")
    text = ""
    end = time.perf_counter() + 0.04
    while time.perf_counter() < end:
        text = json.dumps({"amount": amount})
    return text


def checkout(cart_id, items):
    count("checkout")
    cart = Cart(cart_id, items)
    amount, ns = cart.total(0.25, price)
    TOTALS.append({"cart_id": cart_id, "items": len(items), "ns": ns})
    busy(10)
    return encode(amount)


def summarize(i):
    count("summarize")
    busy(40)


def reporter(n):
    count("reporter")
    for i in range(n):
        summarize(i)
        time.sleep(0.02)


def main():
    count("main")
    thread = threading.Thread(target=reporter, args=(3,), name="reporter")
    thread.start()
    for cart_id, items in enumerate([["apple", "kiwi"], ["pear"], ["fig", "plum", "lime"]]):
        checkout(cart_id, items)
    thread.join()


if __name__ == "__main__":
    main()
    print("RESULTS " + json.dumps({"calls": CALLS, "totals": TOTALS}), flush=True)
