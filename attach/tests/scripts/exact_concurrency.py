"""Target of attach/tests/exact.rs: threads and asyncio tasks whose calls interleave,
so that parent links must follow the real caller. Prints nothing; the test checks
the rows' structure.
"""

import asyncio
import threading


def leaf(tag):
    return tag


def in_thread(n):
    for i in range(3):
        leaf("t%d-%d" % (n, i))


async def step(i):
    return leaf("s%d" % i)


async def task(i):
    leaf("before%d" % i)
    await asyncio.sleep(0)
    await step(i)
    await asyncio.sleep(0)
    leaf("after%d" % i)
    return i


async def gathered():
    return await asyncio.gather(*(task(i) for i in range(3)))


def main():
    threads = [threading.Thread(target=in_thread, args=(n,), name="w%d" % n) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(asyncio.run(gathered()))


main()
