"""Target of attach/tests/exact.rs: generators and coroutines continued by throw() and
close() (and by asyncio, with a failed task's exception or a cancellation), functions
whose exception leaves from a handler, and an async generator. Prints as JSON lines
what each driver saw, and the line of every statement marked with a comment
`@name` at its end, so the test can check kinds, values, parents and lines of the
rows.
"""

import asyncio
import json


def note(**record):
    print(json.dumps(record), flush=True)


def catcher():
    try:
        yield "first"  # @catcher-first
    except ValueError:
        yield "caught"  # @catcher-caught
    yield "last"


def repeater():
    while True:
        try:
            yield "tick"  # @repeater-yield
        except ValueError:
            pass


def closed():
    try:
        yield "open"
    finally:
        note(case="closed", finally_ran=True)  # @closed-finally


def never_started(tag):
    yield tag


def drive_generators():
    gen = catcher()
    seen = [next(gen), gen.throw(ValueError("into catcher")), next(gen), next(gen, "end")]
    note(case="catcher", seen=seen)
    gen = repeater()
    seen = [next(gen), gen.throw(ValueError("into repeater")), gen.throw(ValueError("again"))]
    gen.close()
    note(case="repeater", seen=seen)
    gen = closed()
    next(gen)
    gen.close()
    gen = never_started("early")
    try:
        gen.throw(KeyError("before start"))
    except KeyError as exc:
        note(case="never_started", exception=repr(exc))


def raise_from():
    try:
        {}["missing"]
    except KeyError as exc:
        raise ValueError("from") from exc  # @raise-from


def bare_reraise():
    try:
        {}["missing"]
    except KeyError:
        note(case="bare_reraise", handled=True)
        raise  # @bare-reraise


def no_match():
    try:
        {}["missing"]
    except ValueError:  # @no-match
        return "not reached"


def drive_raises():
    for function in (raise_from, bare_reraise, no_match):
        try:
            function()
        except Exception as exc:
            note(case=function.__name__, exception=type(exc).__name__)


async def failing():
    await asyncio.sleep(0)
    raise RuntimeError("task failed")


def after_failure(what):
    return what


async def cancelled(tag):
    return tag


async def ticker(n):
    yield n
    await asyncio.sleep(0)
    yield [n, "two"]


async def supervisor():
    task = asyncio.ensure_future(failing())
    try:
        await task  # @await-failing
    except RuntimeError as exc:
        note(case="supervisor", caught=str(exc))
    after_failure("after")
    doomed = asyncio.ensure_future(cancelled("never"))
    doomed.cancel()
    try:
        await doomed
    except asyncio.CancelledError:
        note(case="cancelled", cancelled=True)
    got = [item async for item in ticker(5)]
    note(case="ticker", got=got)
    return "done"


def main():
    lines = {}
    with open(__file__) as source:
        for number, text in enumerate(source, 1):
            _, marked, name = text.rstrip().rpartition("  # @")
            if marked and name.replace("-", "").isalpha():
                lines[name] = number
    note(case="lines", lines=lines)
    drive_generators()
    drive_raises()
    note(case="asyncio", result=asyncio.run(supervisor()))


main()
