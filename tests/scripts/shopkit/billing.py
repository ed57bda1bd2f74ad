"""Billing for questions_app.py: a method whose module-qualified name is known."""
import time


def busy(ms):
    end = time.perf_counter() + ms / 1000.0
    while time.perf_counter() < end:
        pass


class Cart:
    def __init__(self, cart_id, items):
        self.cart_id = cart_id
        self.items = items

    def total(self, tax_rate, price):
        start = time.perf_counter_ns()
        amount = 0
        for item in self.items:
            amount += price(item)
        busy(10)
        return amount * (1 + tax_rate), time.perf_counter_ns() - start
