"""The works of issue 4's inside-do bounds, shared by `bench.py inside`
(wall clock, inside.py) and `bench.py callgrind in-do` (instructions):
json.loads of a 50 KB document, a dict of 10 000 str, a bytearray grown
to 1 MiB, and a float loop. And the exit collection's work, shared by
`bench.py exit-gc` and `bench.py callgrind exit-gc`: a process holds
EXIT_GC_HOLD lists, func makes EXIT_GC_MAKE.

Imported as `works` by the scripts run in a benchmark's interpreter (this
directory is their sys.path[0]); keep it to the standard library."""

import json

DOC = json.dumps({"items": [{"id": i, "name": "n%05d" % i,
                             "tags": ["a", "b", "c"], "v": i * 0.5}
                            for i in range(750)]})


def j():
    return len(json.loads(DOC))


def d():
    return len({str(i) * 3: i for i in range(10000)})


def grow(step):
    """Grow a bytearray to 1 MiB by appends of step bytes."""
    def b():
        ba = bytearray()
        chunk = b"x" * step
        for _ in range((1 << 20) // step):
            ba += chunk
        return len(ba)
    return b


def float_loop():
    x, y = 0.5, 1.5
    for i in range(100000):
        x = x * 1.0000001 + y * 0.5 - (x - y) * 0.25
    return x


EXIT_GC_HOLD = 3_000_000
EXIT_GC_MAKE = 30_000
