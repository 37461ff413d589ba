#!/usr/bin/env python3
"""Work inside secret.do() vs the same work outside (spec §4: at most 1.5x).
Prints min-of-N timings and the ratio for: json.loads of a ~50 KB document,
a dict of 10 000 str, growing a bytearray to 1 MiB. Run on the experiment
interpreter; timings are informative, never asserted in tests."""

import json
import os
import time

import secret

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


def best(fn, n=30):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    print("document: %d bytes" % len(DOC))
    cases = [("json.loads 50KB", j), ("dict 10k str", d)]
    cases += [("bytearray 1MiB/%dB" % step, grow(step))
              for step in (64, 256, 1024, 4096, 65536)]
    for name, fn in cases:
        out = best(fn)
        ins = best(lambda: secret.do(fn))
        print("%-20s outside %8.1f us  inside %8.1f us  ratio %.2f"
              % (name, out * 1e6, ins * 1e6, ins / out))


if __name__ == "__main__":
    main()
