"""Target of tests/tests/attach_exact.rs: a coroutine that was already running when
the hook was placed into the process (its PY_START came before the hook). It wakes
every 10 ms and calls `handle`; `tracer attach --exact` should see each wake-up as a
`resume` of `worker` and each `handle` as a call made by it."""
import asyncio


def handle(i):
    return i * 2


async def worker():
    i = 0
    while True:
        await asyncio.sleep(0.01)
        handle(i)
        i += 1


async def main():
    task = asyncio.ensure_future(worker())
    await asyncio.sleep(0.1)
    print("READY", flush=True)
    await asyncio.sleep(3600)
    task.cancel()


asyncio.run(main())
