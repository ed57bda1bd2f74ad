"""Library-heavy workload of bench/exact, after pyperformance's json_dumps and
json_loads: the program's own loop is small, the time goes into the json module
(its C accelerator and the Python code around it). `python bm_json.py N` runs the
loop N times."""

import json
import sys

EMPTY = ({}, 2000)
SIMPLE_DATA = {
    "key1": 0,
    "key2": True,
    "key3": "value",
    "key4": "foo",
    "key5": "string",
}
SIMPLE = (SIMPLE_DATA, 1000)
NESTED_DATA = {
    "key1": 0,
    "key2": SIMPLE[0],
    "key3": "value",
    "key4": SIMPLE[0],
    "key5": SIMPLE[0],
    "key": "\u0105\u0107\u017c",
}
NESTED = (NESTED_DATA, 1000)
HUGE = ([NESTED[0]] * 1000, 1)
CASES = [EMPTY, SIMPLE, NESTED, HUGE]


def dumps_and_loads(cases):
    total = 0
    for obj, count in cases:
        for _ in range(count):
            text = json.dumps(obj)
            total += len(json.loads(text))
    return total


def main():
    total = 0
    for _ in range(int(sys.argv[1])):
        total += dumps_and_loads(CASES)
    print(total)


main()
