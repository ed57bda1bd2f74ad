"""A small shop that keeps computing orders: the example the README traces.

Run it and point tracer at it:
    python3 examples/shop.py --seconds 30 & tracer dump --pid $!
"""
import argparse
import json
import threading
import time


class Order:
    def __init__(self, order_id, items):
        self.order_id = order_id
        self.items = items

    def total(self, tax_rate):
        subtotal = sum(price * qty for price, qty in self.items)
        time.sleep(0.02)
        return round(subtotal * (1 + tax_rate), 2)


def fetch_prices(order_id):
    time.sleep(0.03)
    return [(9.99, 1 + order_id % 3), (4.5, 2)]


def process(order_id, tax_rate=0.2):
    order = Order(order_id, fetch_prices(order_id))
    total = order.total(tax_rate)
    return json.dumps({"order": order_id, "total": total})


def worker(name, stop, count):
    order_id = 0
    while not stop.is_set() and (count is None or order_id < count):
        process(order_id)
        order_id += 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--orders", type=int, default=None, help="stop after this many orders per worker")
    args = parser.parse_args()
    stop = threading.Event()
    workers = [threading.Thread(target=worker, args=(f"w{i}", stop, args.orders), name=f"worker-{i}") for i in range(2)]
    for w in workers:
        w.start()
    deadline = time.time() + args.seconds
    while time.time() < deadline and any(w.is_alive() for w in workers):
        time.sleep(0.1)
    stop.set()
    for w in workers:
        w.join()
    print("shop closed")


if __name__ == "__main__":
    main()
