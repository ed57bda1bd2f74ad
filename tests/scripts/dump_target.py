"""A program whose threads each stop at a known place, for `tracer dump` tests.

Every line the tests look for carries a `# LINE:<name>` marker; the tests read the
line numbers from this file. The program prints READY when every thread is in place.
"""
import asyncio
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import módulo_ü  # noqa: E402

ready = threading.Barrier(10)
spinning = [True]


class Payment:
    def __init__(self, amount):
        self.amount = amount


class Worker:
    def run_sleep(self, seconds):
        def inner(depth):
            marker = "inner-local"
            ready.wait()
            time.sleep(seconds)  # LINE:inner_sleep

        inner(1)  # LINE:run_sleep_call


def read_socket(conn):
    ready.wait()
    return conn.recv(100)  # LINE:recv


def spin(limit):
    ready.wait()
    n = 0
    while spinning[0]: n += 1  # LINE:spin
    return n


def gen_values(count):
    for i in range(count):
        ready.wait()
        time.sleep(1000)  # LINE:gen_sleep
        yield i


def consume_generator():
    return list(gen_values(1))  # LINE:gen_consume


async def handler(request_id):
    ready.wait()
    time.sleep(1000)  # LINE:async_sleep
    return request_id


def run_async():
    asyncio.run(handler(7))  # LINE:async_run


def call_lambda():
    ready.wait()
    (lambda q: time.sleep(q))(1000)  # LINE:lambda


def unicode_call():
    ready.wait()
    módulo_ü.größe(42)  # LINE:unicode_call


def values(none, flag, small, big, neg, fl, text, data, items, pair, mapping, numbers, obj, *rest, key="k", **extra):
    ready.wait()
    time.sleep(1000)  # LINE:values_sleep


def login(user, password, note):
    time.sleep(1000)  # LINE:login_sleep


def recurse(n):
    if n == 0:
        ready.wait()
        login("alice", "hunter2", "ghp_" + "a" * 36)  # LINE:login_call
        return 0
    return recurse(n - 1) + 1  # LINE:recurse


def main():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname())
    conn, _ = server.accept()
    threads = [
        threading.Thread(target=Worker().run_sleep, args=(1000,), name="sleeper"),
        threading.Thread(target=read_socket, args=(conn,), name="socket-reader"),
        threading.Thread(target=spin, args=(10,), name="spinner"),
        threading.Thread(target=consume_generator, name="generator"),
        threading.Thread(target=run_async, name="asyncio"),
        threading.Thread(target=call_lambda, name="lambda"),
        threading.Thread(target=unicode_call, name="unicode"),
        threading.Thread(
            target=values,
            args=(None, True, 7, 2**100, -12, 1.5, "it's", b"\x00ab", [1, [2, 3]], (1,), {"a": 1, "token": "x"}, {3}, Payment(10), "extra1"),
            kwargs={"key": "v", "flag2": False},
            name="values",
        ),
    ]
    for t in threads:
        t.daemon = True
        t.start()
    watcher = threading.Thread(target=lambda: (ready.wait(), time.sleep(0.3), print("READY", flush=True)), daemon=True)
    watcher.start()
    recurse(120)  # LINE:main_recurse
    client.close()


if __name__ == "__main__":
    main()  # LINE:module_main
