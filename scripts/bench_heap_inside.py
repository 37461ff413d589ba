#!/usr/bin/env python3
"""Work inside secret.do() vs the same work outside (spec §4: at most 1.5x),
with pyperf, both in one run:

  scripts/bench.sh heap [OUT.json] [pyperf options, e.g. --fast]

json.loads of a 50 KB document, a dict of 10 000 str, and a bytearray grown
to 1 MiB by appends of 64 B to 64 KiB. Prints the ratio of means and of
minima for each pair. Informative: never asserted in tests.
"""

import json

import pyperf

import secret
from bench_do import timed      # same directory

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


def main():
    runner = pyperf.Runner()
    runner.metadata["description"] = "work in secret.do() vs outside"
    cases = [("json.loads 50KB", j), ("dict 10k str", d)]
    cases += [("bytearray 1MiB/%dB" % step, grow(step))
              for step in (64, 256, 1024, 4096, 65536)]
    rows = []
    for name, fn in cases:
        out = runner.bench_time_func(name, timed(fn))
        ins = runner.bench_time_func("do(%s)" % name, timed(secret.do, fn))
        if out is not None and ins is not None:     # the manager process
            rows.append((name, out, ins))
    if rows:
        print()
        print("document: %d bytes" % len(DOC))
        print("| work | outside (mean) | in do (mean) | ratio (mean) "
              "| ratio (min) |")
        print("|---|---|---|---|---|")
        for name, out, ins in rows:
            print("| %s | %.1f us | %.1f us | %.2f | %.2f |" % (
                name, out.mean() * 1e6, ins.mean() * 1e6,
                ins.mean() / out.mean(),
                min(ins.get_values()) / min(out.get_values())))


if __name__ == "__main__":
    main()
